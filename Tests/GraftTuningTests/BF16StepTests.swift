import XCTest

@testable import GraftTuning

/// A training step with the frozen backbone in BF16 follows the FP32 step: the products read
/// rounded operands (about 3 significant digits), so logits and gradients move by about 1e-2
/// relative, never more. A broken BF16 forward or backward (a wrong rounding, transpose or
/// kept tensor) moves them by order one.
final class BF16StepTests: XCTestCase {
  func testEveryMethodsStepInBF16FollowsItsFP32Step() throws {
    try XCTSkipUnless(BF16Support.isAvailable, "this CPU runs BF16 backbones in FP32")
    var checked = 0
    for name in MethodRegistry.names {
      let backbone = try backbone(depth: 4)
      let method = try makeMethod(name, backbone: backbone)
      guard method.taskInput == .backbone else { continue }
      let task = images()
      method.setTraining(false)  // no dropout: the two steps see the same network
      let fp32 = trainingStep(method, task, targets: [0, 1, 2, 3])
      XCTAssertEqual(applyPrecision(.bf16, to: backbone).0, .bf16, name)
      let bf16 = trainingStep(method, task, targets: [0, 1, 2, 3])
      applyPrecision(.fp32, to: backbone)
      XCTAssertLessThan(relative(bf16.logits, fp32.logits), 2e-2, "\(name): logits")
      // Tensors whose gradient is tiny against the method's largest (a key bias, whose exact
      // gradient is zero under softmax) are rounding noise on both sides: not compared.
      let scale = fp32.grads.map { rms($0.values) }.max() ?? 0
      for (a, b) in zip(fp32.grads, bf16.grads) where rms(a.values) > 1e-2 * scale {
        XCTAssertLessThan(relative(b.values, a.values), 0.1, "\(name): \(a.name)")
      }
      checked += 1
    }
    XCTAssertGreaterThanOrEqual(checked, 13)
  }

  /// `train.recompute` on the BF16 backbone: the rebuilt qkv and MLP pre-activation repeat the
  /// forward pass's own BF16 products, so every setting gives the logits and gradients of
  /// keeping them, bit for bit, with a smaller tape (what makes BF16 + `all` the lean and fast
  /// setting in the README's "Frugal backward").
  func testRecomputeOnTheBF16BackboneChangesNoGradient() throws {
    try XCTSkipUnless(BF16Support.isAvailable, "this CPU runs BF16 backbones in FP32")
    for name in ["vpt-deep", "lora", "bitfit", "ln-tune", "adapter", "hst"] {
      let backbone = try backbone(depth: 2)
      let method = try makeMethod(name, backbone: backbone)
      method.setTraining(false)
      XCTAssertEqual(applyPrecision(.bf16, to: backbone).0, .bf16, name)
      let task = images()
      backbone.setBlockRecompute(.none)
      let kept = trainingStep(method, task, targets: [0, 1, 2, 0])
      for recompute in [BlockRecompute.qkv, .mlp, .all] {
        backbone.setBlockRecompute(recompute)
        let rebuilt = trainingStep(method, task, targets: [0, 1, 2, 0])
        XCTAssertEqual(rebuilt.logits, kept.logits, "\(name) \(recompute)")
        XCTAssertEqual(
          rebuilt.grads.map(\.values), kept.grads.map(\.values), "\(name) \(recompute)")
        XCTAssertLessThan(rebuilt.tape, kept.tape, "\(name) \(recompute)")
      }
    }
  }

  /// A ViT wider than the tiny backbone of MethodTests, so that rounding averages as in a real
  /// model instead of hinging on a few values; the same weights on every call.
  private func backbone(depth: Int) throws -> VisionTransformer {
    var config = ViTConfig(
      imgSize: 16, patchSize: 4, embedDim: 64, depth: depth, numHeads: 4, numClasses: 3)
    config.globalPool = .token
    var generator = RandomGenerator(seed: 1)
    return try VisionTransformer(config: config, generator: &generator)
  }

  /// Four random 16 × 16 images, the same on every call.
  private func images() -> Tensor {
    var generator = RandomGenerator(seed: 5)
    return Tensor.randn([4, 3, 16, 16], generator: &generator)
  }

  private func rms(_ x: [Float]) -> Double {
    (x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(x.count, 1))).squareRoot()
  }

  /// ‖x − reference‖ / ‖reference‖.
  private func relative(_ x: [Float], _ reference: [Float]) -> Double {
    var (num, den) = (0.0, 0.0)
    for (p, q) in zip(x, reference) {
      num += Double(p - q) * Double(p - q)
      den += Double(q) * Double(q)
    }
    return (num / max(den, 1e-30)).squareRoot()
  }
}
