import GraftTasks
import XCTest

@testable import GraftBench

/// `TuneBenchmark` (the Graft row of `graft bench tune`) on a tiny ViT.
final class TuneBenchmarkTests: XCTestCase {
  // 16×16 input, 4×4 patches → 16 patches + class token; D = 32, 2 blocks, 10 classes.
  let config = ViTConfig(
    imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10)
  let batch = 4
  var tokens: Int { 16 + 1 }

  func testEveryMethodGivesSaneFigures() throws {
    for name in MethodRegistry.names {
      let m = try TuneBenchmark.measure(config: config, method: name, batch: batch, iterations: 1)
      XCTAssertEqual(m.method, name)
      XCTAssertTrue(m.imagesPerSecond.isFinite && m.imagesPerSecond > 0, name)
      XCTAssertGreaterThan(m.peakRSSMiB, 1, name)
      XCTAssertGreaterThan(m.peakTensorMiB, 0, name)
      XCTAssertGreaterThan(m.tapeMiB, 0, name)  // at least the head and the loss
      XCTAssertGreaterThan(m.trainableParameters, 0, name)
    }
  }

  /// Every method trains with its frozen backbone in BF16 (a finite, changing loss is the
  /// trainer tests' business; here: every step runs); without native BF16 the row is refused
  /// with the reason.
  func testEveryMethodRunsWithABF16Backbone() throws {
    for name in MethodRegistry.names {
      guard BF16Support.isAvailable else {
        XCTAssertThrowsError(
          try TuneBenchmark.measure(
            config: config, method: name, batch: batch, iterations: 1, precision: .bf16)
        ) { XCTAssertTrue("\($0)".contains("BF16"), "\($0)") }
        continue
      }
      let m = try TuneBenchmark.measure(
        config: config, method: name, batch: batch, iterations: 1, precision: .bf16)
      XCTAssertTrue(m.imagesPerSecond.isFinite && m.imagesPerSecond > 0, name)
    }
  }

  func testLinearKeepsNoBackboneActivationsAndFullKeepsThemAll() throws {
    let d = config.embedDim
    let classes = config.numClasses
    let linear = try TuneBenchmark.measure(
      config: config, method: "linear", batch: batch, iterations: 1)
    let full = try TuneBenchmark.measure(
      config: config, method: "full", batch: batch, iterations: 1)
    // Closed-form trainable counts: the head D·C + C; full adds every backbone tensor:
    // patch embedding (3·4·4·D + D), class token D, position embedding 17·D, per block
    // 2 norms (4D) + qkv (3D² + 3D) + proj (D² + D) + fc1 (4D² + 4D) + fc2 (4D² + D), final
    // norm 2D.
    let head = d * classes + classes
    let perBlock = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    let backbone = (3 * 16 * d + d) + d + tokens * d + config.depth * perBlock + 2 * d
    XCTAssertEqual(linear.trainableParameters, head)
    XCTAssertEqual(full.trainableParameters, backbone + head)
    // linear: the tape holds only the head's input [B, D] and the loss's [B, C] tensors.
    let linearTape = linear.tapeMiB * 1_048_576
    XCTAssertLessThanOrEqual(linearTape, Double(4 * (batch * d + 2 * batch * classes) + 1024))
    // full: at least four [B, N, D] activations per block.
    let fullTape = full.tapeMiB * 1_048_576
    XCTAssertGreaterThan(fullTape, Double(4 * config.depth * 4 * batch * tokens * d))
    XCTAssertGreaterThan(fullTape, 50 * linearTape)
  }

  func testTimmNameBuildsTheNamedArchitectureWithA1000ClassHead() throws {
    XCTAssertThrowsError(
      try TuneBenchmark.measure(architecture: "no_such_model", method: "linear", batch: 1))
    XCTAssertThrowsError(
      try TuneBenchmark.measure(config: config, method: "no-such-method", batch: 1))
    // The head size defaults to timm's 1000 when the config has no head.
    var headless = config
    headless.numClasses = 0
    let m = try TuneBenchmark.measure(config: headless, method: "linear", batch: 2, iterations: 1)
    XCTAssertEqual(m.trainableParameters, config.embedDim * 1000 + 1000)
  }

  /// On a point encoder the rows run every point method, and IDPT's row carries its prompt
  /// generator's share of the step (a fraction of it, measured); other rows carry none.
  func testPointEncoderRowsAndIDPTsGeneratorShare() throws {
    let pointConfig = PointMAEConfig(
      transDim: 32, depth: 2, numHeads: 2, groupSize: 8, numGroup: 16, npoints: 128)
    var rows: [String: TuneBenchmark.Measurement] = [:]
    for name in ["linear", "idpt", "vpt-deep"] {
      var rng = RandomGenerator(seed: 0)
      let backbone = try PointMAE(config: pointConfig, generator: &rng)
      rows[name] = try TuneBenchmark.measure(
        backbone: backbone, input: [4, 128, 3], method: name, classes: 10, iterations: 1,
        generator: &rng)
      XCTAssertGreaterThan(rows[name]!.imagesPerSecond, 0, name)
    }
    let share = try XCTUnwrap(rows["idpt"]?.promptGeneratorShare)
    XCTAssertGreaterThan(share, 0)
    XCTAssertLessThan(share, 1, "the generator is part of the step, not more than it")
    XCTAssertNil(rows["linear"]?.promptGeneratorShare)
    XCTAssertNil(rows["vpt-deep"]?.promptGeneratorShare)
  }
}
