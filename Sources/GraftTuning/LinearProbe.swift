import Foundation

/// `linear`: a new head on the frozen backbone's final features. No gradient reaches the
/// backbone, so it runs with recording off and keeps no activations for backward.
public final class LinearProbe: TuningMethod {
  /// No options. Recipe: SGD momentum 0.9, lr 0.1, no decay, cosine, warm-up 1, 100 epochs
  /// (linear probing practice, MAE/DINO: long schedules; with the feature cache an epoch reads
  /// stored features and costs milliseconds, see `TuneConfig.epochs` for the evidence).
  public struct Config: MethodConfig {
    /// The defaults.
    public init() {}
    /// None.
    public static let options: [ConfigOption<Config>] = []
    /// SGD, lr 0.1, no decay, warm-up 1, 100 epochs.
    public static let recipe = Recipe(.sgd, lr: 0.1, weightDecay: 0, warmupEpochs: 1, epochs: 100)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "linear", summary: "new head on the final features; backbone run without recording",
    config: Config.self
  ) { backbone, classes, config, generator in
    LinearProbe(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// A linear probe with a timm-initialised head.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    super.init(
      name: "linear", prefix: "linear", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    finishSetUp()
  }

  /// No backbone gradient.
  public override var needsBackboneGradient: Bool { false }
  /// The head reads the pooled features only.
  public override var backboneReads: BackboneReads? { [.features] }
}
