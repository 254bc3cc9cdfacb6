/// Batch normalisation over axis 1 of `[N, C, ...]` (PyTorch's `nn.BatchNorm1d` for `[N, C]` or
/// `[N, C, L]`, `nn.BatchNorm2d` for `[N, C, H, W]`).
///
/// In training mode it normalises with the batch's statistics and updates the running ones
/// (`running ← (1 − momentum)·running + momentum·batch`, unbiased variance); in evaluation mode
/// it uses the running statistics. Tensors: `weight` (ones) and `bias` (zeros), [C], when
/// `affine`; buffers `running_mean` (zeros) and `running_var` (ones), [C], which are state (saved
/// in state dicts) but never trained. PyTorch's `num_batches_tracked` is not kept: it only
/// matters for `momentum=None` (a cumulative average), which this layer does not offer.
///
/// One difference from PyTorch, so that a trailing batch of one sample cannot stop a training
/// run: a training-mode call with a single value per channel (PyTorch raises) normalises with the
/// running statistics and leaves them unchanged.
public final class BatchNorm: Module, UnaryModule {
  /// Scale, [C], when affine.
  public let weight: Tensor?
  /// Shift, [C], when affine.
  public let bias: Tensor?
  /// Running mean, [C] (buffer).
  public let runningMean: Tensor
  /// Running unbiased variance, [C] (buffer).
  public let runningVar: Tensor
  /// Added to the variance before the square root.
  public let eps: Float
  /// Weight of the newest batch in the running statistics.
  public let momentum: Float
  /// Number of channels C.
  public let features: Int

  /// A layer over `features` channels with PyTorch's defaults (eps 1e-5, momentum 0.1, affine).
  public init(_ features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
    precondition(features > 0, "BatchNorm(\(features))")
    precondition((0...1).contains(momentum), "BatchNorm momentum \(momentum) must lie in [0, 1]")
    self.features = features
    self.eps = eps
    self.momentum = momentum
    weight = affine ? Tensor.ones([features]) : nil
    bias = affine ? Tensor.zeros([features]) : nil
    runningMean = Tensor.zeros([features])
    runningVar = Tensor.ones([features])
    super.init()
    if let weight { registerParameter("weight", weight) }
    if let bias { registerParameter("bias", bias) }
    registerBuffer("running_mean", runningMean)
    registerBuffer("running_var", runningVar)
  }

  /// Normalises `x` [N, C, ...]: batch statistics in training mode, running ones in evaluation.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    precondition(
      x.rank >= 2 && x.shape[1] == features, "BatchNorm(\(features)) applied to \(x.shape)")
    // In a data-parallel step the statistics are the global batch's: every rank branches alike.
    let valuesPerChannel = DataParallel.globalCount(x.count / features)
    return x.batchNorm(
      weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
      training: isTraining && valuesPerChannel > 1, momentum: momentum, eps: eps)
  }

  /// Resets the running statistics to zeros and ones.
  public func resetRunningStatistics() {
    runningMean.assign(Tensor.zeros([features]))
    runningVar.assign(Tensor.ones([features]))
  }
}
