import Foundation

/// `bitfit` (Ben Zaken et al., 2022): every bias of the backbone (for a ViT: linear layers,
/// LayerNorms, the patch projection) and a new head.
public final class BitFit: TuningMethod {
  /// No options. Recipe: AdamW lr 1e-2, no decay, cosine, warm-up 1. BitFit uses 1e-3 over many
  /// more steps; in 10 epochs of 800 images that underfits (Graft-1k validation top-1, mnist /
  /// fmnist-rotation: 51.5 / 74.5 at 1e-3, 67.0 / 90.0 at 1e-2, 73.5 / 89.5 at 3e-2), so the lr
  /// was chosen on validation, taking 1e-2 where 3e-2 was within noise.
  public struct Config: MethodConfig {
    /// The defaults.
    public init() {}
    /// None.
    public static let options: [ConfigOption<Config>] = []
    /// AdamW, lr 1e-2, no decay, warm-up 1.
    public static let recipe = Recipe(.adamw, lr: 1e-2, weightDecay: 0, warmupEpochs: 1, epochs: 40)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "bitfit", summary: "every backbone bias and a new head", config: Config.self
  ) { backbone, classes, config, generator in
    BitFit(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// BitFit with a timm-initialised head.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    super.init(
      name: "bitfit", prefix: "bitfit", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    finishSetUp()
  }

  /// The backbone's biases, as it names them.
  public override var unfrozenPatterns: [String] { backbone.parameterPatterns(.biases) }
}
