import Foundation

/// `full`: every backbone tensor trains, with a new head (the reference point for the others).
public final class FullFineTuning: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "full", summary: "every backbone tensor and a new head", options: []
  ) { backbone, classes, options, generator in
    FullFineTuning(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// Full fine-tuning with a timm-initialised head.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    super.init(
      name: "full", prefix: "full", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    finishSetUp()
  }

  /// Nothing inside the blocks: they run fused.
  public override var usesBlockInternals: Bool { false }

  /// Everything.
  public override var unfrozenPatterns: [String] { ["*"] }
}
