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
  /// The adapter's options. Recipe: AdamW lr 1e-2, wd 0.05, cosine, warm-up 2 (AdaptFormer's 1e-3
  /// underfits 10 epochs of small data: Graft-1k validation top-1, mnist / fmnist-rotation,
  /// 61.0 / 85.0 at 1e-3, 80.0 / 91.0 at 1e-2, 80.0 / 91.5 at 3e-2).
  public struct Config: MethodConfig {
    /// Hidden width of each adapter.
    public var bottleneck = 64
    /// Factor on the adapter output.
    public var scale: Float = 0.1

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int("bottleneck", \.bottleneck, in: 1...16384, "hidden width of each adapter"),
      ConfigOption("scale", \.scale, "factor on the adapter output"),
    ]
    /// AdamW, lr 1e-2, wd 0.05, warm-up 2.
    public static let recipe = Recipe(
      .adamw, lr: 1e-2, weightDecay: 0.05, warmupEpochs: 2, epochs: 40)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "adapter", summary: "AdaptFormer parallel bottleneck adapters on every MLP, new head",
    config: Config.self, requires: .blockInternals
  ) { backbone, classes, config, generator in
    AdaptFormer(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// The adapters, one per block.
  public let blocks: ModuleList<BottleneckAdapter>
  /// Factor on each adapter's output.
  public let scale: Float

  /// AdaptFormer on `backbone`.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    scale = config.scale
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    var list: [BottleneckAdapter] = []
    for _ in 0..<backbone.depth {
      list.append(
        BottleneckAdapter(
          width: backbone.width, bottleneck: config.bottleneck, generator: &generator))
    }
    blocks = ModuleList(list)
    super.init(
      name: "adapter", prefix: "adapter", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("blocks", blocks)
    finishSetUp()
  }

  /// The residual branches inside every block.
  public override var attachPoints: AttachPoints { .residualBranches }

  /// Adds the scaled adapter of the residual stream to the MLP branch.
  public override func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    output + blocks[index](input) * scale
  }
}
