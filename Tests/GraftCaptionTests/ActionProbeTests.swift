import Foundation
import GraftCaption
import XCTest

/// The action probe of `graft demo video`: a linear head on the captioner's pooled frame tokens.
final class ActionProbeTests: XCTestCase {
  /// Four motions, two pairs of reverses (left/right, up/down), on a tiny random ViT: the probe
  /// reads them from the pooled tokens (whose time order it keeps) well above chance (1 in 4),
  /// with the counts, classes and width it reports; pooled over time, it cannot.
  func testTheProbeTellsMotionsAndTheirReversesApart() throws {
    let root = try CaptionFixtures.temporaryFolder(self)
    let annotations = try CaptionFixtures.clipSet(
      in: root, actions: [0: ["a"], 1: ["b"], 2: ["c"], 3: ["d"]], train: 4, val: 0, test: 3)
    var config = PLLaVAConfig()
    config.frames = 8
    config.pool = [4, 2, 2]
    let probe = try ActionProbe.measure(
      CaptionClips(path: annotations), backbone: CaptionFixtures.backbone(), config: config)
    XCTAssertEqual(probe.classes, ["move-down", "move-up", "slide-left", "slide-right"])
    XCTAssertEqual(probe.trainClips, 16)
    XCTAssertEqual(probe.testClips, 12)
    XCTAssertEqual(probe.width, 4 * 2 * 2 * 16, "t·h·w·D of the tiny ViT's pooled tokens")
    XCTAssertGreaterThanOrEqual(probe.accuracy, 0.75, "\(probe.testCorrect) of 12")

    // Deterministic: the same probe again gives the same count.
    let again = try ActionProbe.measure(
      CaptionClips(path: annotations), backbone: CaptionFixtures.backbone(), config: config)
    XCTAssertEqual(again, probe)

    // With time pooled away an action and its reverse give the same feature: the pairs blur.
    let timeless = try ActionProbe.measure(
      CaptionClips(path: annotations),
      encoder: PLLaVACaptioner.frameEncoder(backbone: CaptionFixtures.backbone(), config: config),
      frames: 8, pool: (1, 2, 2))
    XCTAssertLessThanOrEqual(timeless.accuracy, 0.5, "\(timeless.testCorrect) of 12")
  }

  /// A split without labelled clips, or a test action no training clip has, is an error that
  /// names the annotation file.
  func testMissingOrUnseenLabelsAreNamed() throws {
    let root = try CaptionFixtures.temporaryFolder(self)
    let noTest = try CaptionFixtures.clipSet(
      in: root.appendingPathComponent("a"), actions: [0: ["a"]], train: 1, val: 0, test: 0)
    XCTAssertThrowsError(
      try ActionProbe.measure(
        CaptionClips(path: noTest), backbone: CaptionFixtures.backbone(), config: PLLaVAConfig())
    ) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .noData)
      XCTAssertTrue("\(error)".contains(noTest.path), "\(error)")
    }

    // Relabel one test clip with an action the training clips lack.
    let unseen = try CaptionFixtures.clipSet(
      in: root.appendingPathComponent("b"), actions: [0: ["a"]], train: 1, val: 0, test: 1)
    var set = try CaptionedClipSet(contentsOf: unseen)
    let last = set.videos.count - 1
    set.videos[last].label = "turn"
    try JSONEncoder().encode(set).write(to: unseen)
    XCTAssertThrowsError(
      try ActionProbe.measure(
        CaptionClips(path: unseen), backbone: CaptionFixtures.backbone(), config: PLLaVAConfig())
    ) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .noData)
      XCTAssertTrue("\(error)".contains("'turn'"), "\(error)")
    }
  }
}
