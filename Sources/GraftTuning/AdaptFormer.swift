import Foundation

/// One AdaptFormer adapter: `up(relu(down(x)))`, `down` D → bottleneck, `up` bottleneck → D.
public final class BottleneckAdapter: Module {
  /// D → bottleneck (PyTorch's Linear default init).
  public let down: Linear
  /// bottleneck → D (zeros, so training starts from the frozen model).
  public let up: Linear

  /// A fresh adapter; `down`'s bias is zero as in AdaptFormer's `lora` init.
  public init(width: Int, bottleneck: Int, generator: inout RandomGenerator) {
    let bound = 1 / Float(width).squareRoot()
    down = Linear(
      weight: Tensor.rand([bottleneck, width], low: -bound, high: bound, generator: &generator),
      bias: Tensor.zeros([bottleneck]))
    up = Linear(weight: Tensor.zeros([width, bottleneck]), bias: Tensor.zeros([width]))
    super.init()
    registerModule("down", down)
    registerModule("up", up)
  }

  /// `up(relu(down(x)))`.
  public func callAsFunction(_ x: Tensor) -> Tensor { up(down(x).relu()) }
}

/// `adapter`: AdaptFormer (Chen et al., NeurIPS 2022) parallel bottleneck adapters on the MLP
/// branch of every block: `x + mlp(norm2(x)) + scale·up(relu(down(x)))`, with `x` the
/// residual stream after attention; and a new head.
///
/// Tensors: `adapter.blocks.<i>.down.weight/bias`, `adapter.blocks.<i>.up.weight/bias`,
/// `adapter.head.weight/bias`.
public final class AdaptFormer: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "adapter", summary: "AdaptFormer parallel bottleneck adapters on every MLP, new head",
    options: [
      MethodOption("bottleneck", "64", "hidden width of each adapter"),
      MethodOption("scale", "0.1", "factor on the adapter output"),
    ]
  ) { backbone, classes, options, generator in
    try AdaptFormer(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// The adapters, one per block.
  public let blocks: ModuleList<BottleneckAdapter>
  /// Factor on each adapter's output.
  public let scale: Float

  /// AdaptFormer on `backbone`.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) throws {
    let bottleneck = try options.int("bottleneck", atLeast: 1)
    scale = try options.float("scale")
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    var list: [BottleneckAdapter] = []
    for _ in 0..<backbone.depth {
      list.append(
        BottleneckAdapter(width: backbone.width, bottleneck: bottleneck, generator: &generator))
    }
    blocks = ModuleList(list)
    super.init(
      name: "adapter", prefix: "adapter", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    registerModule("blocks", blocks)
    finishSetUp()
  }

  /// Adds the scaled adapter of the residual stream to the MLP branch.
  public override func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    output + blocks[index](input) * scale
  }
}
