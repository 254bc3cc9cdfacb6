import XCTest

@testable import GraftTasks

/// `train.recompute`: a run that rebuilds activations in backward learns exactly what a run
/// keeping them learns, and the key names its values when misspelt.
final class RecomputeRunTests: XCTestCase {
  func testARecomputingRunEqualsTheRunThatKeepsEverything() throws {
    let folders = (0..<2).map { _ in temporaryFolder() }
    defer { for f in folders { try? FileManager.default.removeItem(at: f) } }
    let kept = try XCTUnwrap(shortRun("vpt-deep", folder: folders[0]).1)
    let (trainer, run) = try shortRun(
      "vpt-deep", extra: ["train.recompute=all"], folder: folders[1])
    let rebuilt = try XCTUnwrap(run)
    let blocks = try XCTUnwrap((trainer.backbone.model as? VisionTransformer)?.blocks)
    XCTAssertTrue(blocks.allSatisfy { $0.recompute == .all })
    XCTAssertEqual(rebuilt.test.loss, kept.test.loss)
    XCTAssertEqual(rebuilt.test.top1, kept.test.top1)
    XCTAssertGreaterThan(rebuilt.test.top1, 0.4)
    let logits = try folders.map { folder in
      try SafetensorsFile(contentsOf: folder.appendingPathComponent("test_logits.safetensors"))
        .tensor("logits").scalars
    }
    XCTAssertEqual(logits[0], logits[1])
  }

  func testAnUnknownSettingIsNamed() throws {
    var config = try TuneConfig.preset(for: "bitfit")
    XCTAssertThrowsError(try config.set(assignment: "train.recompute=attention")) {
      XCTAssertTrue("\($0)".contains("train.recompute"), "\($0)")
    }
    try config.set(assignment: "train.recompute=mlp")
    XCTAssertEqual(config.recompute, .mlp)
    let yaml = try config.yaml()
    XCTAssertTrue(yaml.contains("train.recompute: \"mlp\""), yaml)
  }
}
