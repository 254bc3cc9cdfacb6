import Foundation

/// `full`: every backbone tensor trains, with a new head (the reference point for the others).
public final class FullFineTuning: TuningMethod {
  /// No options. Recipe: AdamW lr 1e-4, wd 0.05, cosine, warm-up 2 (DeiT/timm fine-tuning).
  public struct Config: MethodConfig {
    /// The defaults.
    public init() {}
    /// None.
    public static let options: [ConfigOption<Config>] = []
    /// AdamW, lr 1e-4, wd 0.05, warm-up 2.
    public static let recipe = Recipe(
      .adamw, lr: 1e-4, weightDecay: 0.05, warmupEpochs: 2, epochs: 20)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "full", summary: "every backbone tensor and a new head", config: Config.self
  ) { backbone, classes, config, generator in
    FullFineTuning(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// Full fine-tuning with a timm-initialised head.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    super.init(
      name: "full", prefix: "full", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    finishSetUp()
  }

  /// Everything.
  public override var unfrozenPatterns: [String] { ["*"] }
}
