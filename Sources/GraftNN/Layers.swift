// Basic layers with PyTorch's parameter names, shapes and default initialisation.

/// `y = x·Wᵀ + b` on the last axis (PyTorch's `nn.Linear`): `weight` [out, in], `bias` [out].
public final class Linear: Module, UnaryModule {
  /// Weight, [outFeatures, inFeatures].
  public let weight: Tensor
  /// Bias, [outFeatures], if the layer has one.
  public let bias: Tensor?

  /// Input width.
  public var inFeatures: Int { weight.shape[1] }
  /// Output width.
  public var outFeatures: Int { weight.shape[0] }

  /// A layer initialised as PyTorch does: weight from kaiming-uniform with a = √5, which is
  /// U(−1/√in, 1/√in), and bias from the same bound.
  public convenience init(
    _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: inout RandomGenerator
  ) {
    precondition(inFeatures > 0 && outFeatures > 0, "Linear(\(inFeatures), \(outFeatures))")
    let bound = 1 / Float(inFeatures).squareRoot()
    let w = Tensor.rand(
      [outFeatures, inFeatures], low: -bound, high: bound, generator: &generator)
    let b = bias ? Tensor.rand([outFeatures], low: -bound, high: bound, generator: &generator) : nil
    self.init(weight: w, bias: b)
  }

  /// A layer over the given tensors (which it registers and marks trainable).
  public init(weight: Tensor, bias: Tensor?) {
    precondition(weight.rank == 2, "Linear weight must be [out, in], got \(weight.shape)")
    if let bias {
      precondition(
        bias.shape == [weight.shape[0]], "Linear bias \(bias.shape) for weight \(weight.shape)")
    }
    self.weight = weight
    self.bias = bias
    super.init()
    registerParameter("weight", weight)
    if let bias { registerParameter("bias", bias) }
  }

  /// `x·Wᵀ + b` for `x` of shape [..., inFeatures]; one GEMM over all leading axes, with the
  /// bias folded in (`Tensor.linear(weight:bias:)`).
  public func callAsFunction(_ x: Tensor) -> Tensor {
    precondition(
      x.rank >= 1 && x.shape[x.rank - 1] == inFeatures,
      "Linear(\(inFeatures)→\(outFeatures)) applied to \(x.shape)")
    return x.linear(weight: weight, bias: bias)
  }
}

/// Layer normalisation over the last axis (PyTorch's `nn.LayerNorm` with one normalised axis):
/// `weight` (ones) and `bias` (zeros), both [dim].
public final class LayerNorm: Module, UnaryModule {
  /// Scale, [dim], if the layer has an affine part.
  public let weight: Tensor?
  /// Shift, [dim], if the layer has an affine part.
  public let bias: Tensor?
  /// Added to the variance before the square root.
  public let eps: Float
  /// Width of the normalised axis.
  public let dim: Int

  /// A layer over `dim` features. PyTorch's default `eps` is 1e-5; timm's ViTs use 1e-6.
  public init(_ dim: Int, eps: Float = 1e-5, elementwiseAffine: Bool = true) {
    precondition(dim > 0, "LayerNorm(\(dim))")
    self.dim = dim
    self.eps = eps
    weight = elementwiseAffine ? Tensor.ones([dim]) : nil
    bias = elementwiseAffine ? Tensor.zeros([dim]) : nil
    super.init()
    if let weight { registerParameter("weight", weight) }
    if let bias { registerParameter("bias", bias) }
  }

  /// Normalises `x` of shape [..., dim] with the biased variance, then scales and shifts.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    precondition(
      x.rank >= 1 && x.shape[x.rank - 1] == dim, "LayerNorm(\(dim)) applied to \(x.shape)")
    return x.layerNorm(weight: weight, bias: bias, eps: eps)
  }
}

/// A lookup table of `count` vectors of width `dim` (PyTorch's `nn.Embedding`): `weight`
/// [count, dim], initialised N(0, 1) as PyTorch does.
public final class Embedding: Module {
  /// The table, [count, dim].
  public let weight: Tensor

  /// A table of standard normal samples.
  public convenience init(_ count: Int, _ dim: Int, generator: inout RandomGenerator) {
    precondition(count > 0 && dim > 0, "Embedding(\(count), \(dim))")
    self.init(weight: Tensor.randn([count, dim], generator: &generator))
  }

  /// A table over `weight` [count, dim].
  public init(weight: Tensor) {
    precondition(weight.rank == 2, "Embedding weight must be [count, dim], got \(weight.shape)")
    self.weight = weight
    super.init()
    registerParameter("weight", weight)
  }

  /// Rows `indices` of the table, shaped `shape + [dim]` (`shape` defaults to
  /// `[indices.count]`); the backward pass scatter-adds into the rows used.
  public func callAsFunction(_ indices: [Int], shape: [Int]? = nil) -> Tensor {
    let shape = shape ?? [indices.count]
    precondition(
      shape.reduce(1, *) == indices.count, "\(indices.count) indices for shape \(shape)")
    return weight.indexSelect(0, indices).reshaped(shape + [weight.shape[1]])
  }
}

/// A parameter-free pointwise function as a module, for `Sequential`.
public final class Activation: Module, UnaryModule {
  /// The function's name, for descriptions.
  public let kind: String
  private let function: (Tensor) -> Tensor

  /// Wraps `function` under the name `kind`.
  public init(_ kind: String, _ function: @escaping (Tensor) -> Tensor) {
    self.kind = kind
    self.function = function
    super.init()
  }

  /// Applies the function.
  public func callAsFunction(_ x: Tensor) -> Tensor { function(x) }

  /// Exact (erf) GELU, PyTorch's `nn.GELU()`.
  public static var gelu: Activation { Activation("gelu") { $0.gelu() } }
  /// Tanh-approximated GELU, `nn.GELU(approximate="tanh")`.
  public static var geluTanh: Activation { Activation("gelu_tanh") { $0.geluTanh() } }
  /// CLIP's `x·σ(1.702x)`.
  public static var quickGELU: Activation { Activation("quick_gelu") { $0.quickGELU() } }
  /// max(x, 0).
  public static var relu: Activation { Activation("relu") { $0.relu() } }
  /// Hyperbolic tangent.
  public static var tanh: Activation { Activation("tanh") { $0.tanh() } }
}

/// Two linear layers with an activation between, named as timm's `Mlp`: `fc1`, `fc2`.
public final class MLP: Module, UnaryModule {
  /// First layer, in → hidden.
  public let fc1: Linear
  /// The activation between the layers (no parameters).
  public let act: Activation
  /// Second layer, hidden → out.
  public let fc2: Linear

  /// An MLP `in → hidden → out` (out defaults to in) with GELU unless told otherwise.
  public init(
    _ inFeatures: Int, hidden: Int, out: Int? = nil, activation: Activation = .gelu,
    generator: inout RandomGenerator
  ) {
    fc1 = Linear(inFeatures, hidden, generator: &generator)
    act = activation
    fc2 = Linear(hidden, out ?? inFeatures, generator: &generator)
    super.init()
    registerModule("fc1", fc1)
    registerModule("act", act)
    registerModule("fc2", fc2)
  }

  /// `fc2(act(fc1(x)))`.
  public func callAsFunction(_ x: Tensor) -> Tensor { fc2(act(fc1(x))) }
}
