import Foundation

/// `bitfit` (Ben Zaken et al., 2022): every bias of the backbone (linear layers, LayerNorms,
/// the patch projection) and a new head.
public final class BitFit: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "bitfit", summary: "every backbone bias and a new head", options: []
  ) { backbone, classes, options, generator in
    BitFit(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// BitFit with a timm-initialised head.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    super.init(
      name: "bitfit", prefix: "bitfit", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    finishSetUp()
  }

  /// Nothing inside the blocks: they run fused.
  public override var usesBlockInternals: Bool { false }

  /// Every tensor named `….bias`.
  public override var unfrozenPatterns: [String] { ["*.bias"] }
}
