import Foundation

/// `ln-tune`: the affine scale and shift of every LayerNorm of the backbone (`norm_pre`,
/// `blocks.*.norm1/norm2`, `norm` or `fc_norm`) and a new head.
public final class LNTuning: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "ln-tune", summary: "every LayerNorm scale and shift and a new head", options: []
  ) { backbone, classes, options, generator in
    LNTuning(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// LN-tuning with a timm-initialised head.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) {
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    super.init(
      name: "ln-tune", prefix: "ln_tune", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    finishSetUp()
  }

  /// Nothing inside the blocks: they run fused.
  public override var usesBlockInternals: Bool { false }

  /// The LayerNorms' names in a timm ViT.
  public override var unfrozenPatterns: [String] {
    ["norm_pre.*", "blocks.*.norm1.*", "blocks.*.norm2.*", "norm.*", "fc_norm.*"]
  }
}
