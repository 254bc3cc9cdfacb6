import GraftTasks
import XCTest

@testable import GraftBench

/// `PointsBenchmark` (the Graft side of `graft bench points`) on a tiny Point-MAE.
final class PointsBenchmarkTests: XCTestCase {
  // D = 32, 2 blocks, 2 heads, 8 groups of 8 points, 128-point clouds, 5 classes.
  let config = PointMAEConfig(
    transDim: 32, depth: 2, numHeads: 2, groupSize: 8, numGroup: 8, numClasses: 5, npoints: 128)

  /// The FLOP count against one read off the model's own weights: every weight element of a
  /// layer is one multiply-add per row the layer runs on (each grouped point for the
  /// mini-PointNet, each centre for the position MLP, each token for the blocks, each cloud for
  /// the head), plus attention's two n×n×D products per block.
  func testForwardFLOPsMatchTheModelsLayers() throws {
    for c in [config, PointsBenchmark.smallConfig()] {
      var rng = RandomGenerator(seed: 0)
      let model = try PointMAE(config: c, generator: &rng)
      let tokens = Double(c.numGroup + 1)
      var macs = 0.0
      for (name, tensor) in model.namedParameters() where tensor.rank >= 2 {
        guard !name.hasSuffix("_token") && !name.hasSuffix("_pos") else { continue }
        let rows: Double
        if name.hasPrefix("encoder.") {
          rows = Double(c.numGroup * c.groupSize)
        } else if name.hasPrefix("pos_embed.") {
          rows = Double(c.numGroup)
        } else if name.hasPrefix("blocks.") {
          rows = tokens
        } else {
          XCTAssertTrue(name.hasPrefix("cls_head_finetune."), name)
          rows = 1
        }
        macs += rows * Double(tensor.count)
      }
      macs += Double(c.depth) * 2 * tokens * tokens * Double(c.transDim)
      XCTAssertEqual(PointsBenchmark.forwardFLOPs(c), 2 * macs, accuracy: 1e-6 * macs)
    }
    // Point-MAE-small: the official sizes, a ModelNet40 head, several GFLOP per cloud.
    let small = PointsBenchmark.smallConfig()
    XCTAssertEqual(small.transDim, 384)
    XCTAssertEqual(small.numClasses, 40)
    XCTAssertGreaterThan(PointsBenchmark.forwardFLOPs(small), 4e9)
  }

  func testBothModesGiveSaneFigures() throws {
    let inference = try PointsBenchmark.measure(
      config: config, batch: 4, mode: .inference, iterations: 1)
    let train = try PointsBenchmark.measure(
      config: config, batch: 4, mode: .trainFull, iterations: 1)
    for m in [inference, train] {
      XCTAssertTrue(m.cloudsPerSecond.isFinite && m.cloudsPerSecond > 0)
      XCTAssertGreaterThan(m.peakRSSMiB, 1)
      XCTAssertGreaterThan(m.peakTensorMiB, 0)
    }
    XCTAssertEqual(inference.tapeMiB, 0)
    // Training keeps at least the mini-PointNet's widest activations: [B·G·S, 512], twice.
    let rows = 4 * config.numGroup * config.groupSize
    XCTAssertGreaterThan(train.tapeMiB * 1_048_576, Double(2 * rows * 512 * 4))
  }

  func testOpsAreNamedAsThePyTorchScriptNamesThem() {
    let ops = PointsBenchmark.measureOps(iterations: 1, largePoints: 4096, largeCount: 64)
    XCTAssertEqual(
      ops.map(\.name),
      ["fps_b32_1024_64", "fps_1_4096_64", "knn_b32_64x1024_k32", "group_b32_1024_64x32"])
    for op in ops { XCTAssertTrue(op.milliseconds.isFinite && op.milliseconds > 0, op.name) }
    let full = PointsBenchmark.measureOps(iterations: 1, largePoints: 100_000, largeCount: 2)
    XCTAssertEqual(full[1].name, "fps_1_100k_2")
  }
}
