import Foundation

/// `ln-tune`: the affine scale and shift of every normalisation layer of the backbone (for a
/// ViT: `norm_pre`, `blocks.*.norm1/norm2`, `norm` or `fc_norm`) and a new head.
public final class LNTuning: TuningMethod {
  /// No options. Recipe: AdamW lr 1e-2, no decay, cosine, warm-up 1. LN-tuning's papers use
  /// 1e-3 over many more steps; in 10 epochs of 800 images that underfits (Graft-1k validation
  /// top-1, mnist / fmnist-rotation: 64.0 / 81.5 at 3e-3, 71.5 / 89.0 at 1e-2), so the lr was
  /// chosen on validation.
  public struct Config: MethodConfig {
    /// The defaults.
    public init() {}
    /// None.
    public static let options: [ConfigOption<Config>] = []
    /// AdamW, lr 1e-2, no decay, warm-up 1.
    public static let recipe = Recipe(.adamw, lr: 1e-2, weightDecay: 0, warmupEpochs: 1, epochs: 20)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "ln-tune", summary: "every LayerNorm scale and shift and a new head", config: Config.self
  ) { backbone, classes, config, generator in
    LNTuning(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// LN-tuning with a timm-initialised head.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    super.init(
      name: "ln-tune", prefix: "ln_tune", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    finishSetUp()
  }

  /// The backbone's normalisation layers, as it names them.
  public override var unfrozenPatterns: [String] { backbone.parameterPatterns(.norms) }
}
