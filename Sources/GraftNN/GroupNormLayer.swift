/// Group normalisation (PyTorch's `nn.GroupNorm`): the channels of `[N, C, ...]` split into
/// `groups` groups of consecutive channels, each sample's group normalised with its own mean and
/// biased variance, then scaled and shifted per channel. Tensors: `weight` (ones) and `bias`
/// (zeros), [C], when affine. No running statistics: training and evaluation are the same.
public final class GroupNorm: Module, UnaryModule {
  /// Scale, [C], when affine.
  public let weight: Tensor?
  /// Shift, [C], when affine.
  public let bias: Tensor?
  /// Number of groups.
  public let groups: Int
  /// Number of channels C.
  public let channels: Int
  /// Added to the variance before the square root.
  public let eps: Float

  /// `groups` groups over `channels` channels (divisible by `groups`), PyTorch's eps 1e-5.
  public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true) {
    precondition(
      groups > 0 && channels > 0 && channels % groups == 0,
      "GroupNorm(\(groups), \(channels)): channels must be a multiple of groups")
    self.groups = groups
    self.channels = channels
    self.eps = eps
    weight = affine ? Tensor.ones([channels]) : nil
    bias = affine ? Tensor.zeros([channels]) : nil
    super.init()
    if let weight { registerParameter("weight", weight) }
    if let bias { registerParameter("bias", bias) }
  }

  /// Normalises `x` [N, C, ...].
  public func callAsFunction(_ x: Tensor) -> Tensor {
    precondition(
      x.rank >= 2 && x.shape[1] == channels,
      "GroupNorm(\(groups), \(channels)) applied to \(x.shape)")
    return x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
  }
}
