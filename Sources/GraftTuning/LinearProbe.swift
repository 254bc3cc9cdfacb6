import Foundation

/// `linear`: a new head on the frozen backbone's final features. No gradient reaches the
/// backbone, so it runs with recording off and keeps no activations for backward.
public final class LinearProbe: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "linear", summary: "new head on the final features; backbone run without recording",
    options: []
  ) { backbone, classes, options, generator in
    LinearProbe(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// A linear probe with a timm-initialised head.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    super.init(
      name: "linear", prefix: "linear", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    finishSetUp()
  }

  /// Nothing inside the blocks: they run fused.
  public override var usesBlockInternals: Bool { false }

  /// No backbone gradient.
  public override var needsBackboneGradient: Bool { false }
}
