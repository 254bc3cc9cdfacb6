import Foundation
import GraftCaption
import XCTest

final class CaptionBenchmarkTests: XCTestCase {
  /// Every caption the clip set's grammar writes names its own action and no other, whatever
  /// the nouns; captions of no or two actions name none.
  func testEveryTemplateNamesItsAction() {
    let nouns = [("sneaker", "digit 7"), ("pair of trousers", "t-shirt"), ("ankle boot", "bag")]
    for (action, templates) in ClipSetGenerator.captionTemplates {
      for template in templates {
        for (a, b) in nouns {
          let caption = template.replacingOccurrences(of: "{a}", with: "a " + a)
            .replacingOccurrences(of: "{the}", with: "the " + a)
            .replacingOccurrences(of: "{b}", with: "a " + b)
            .replacingOccurrences(of: "{theb}", with: "the " + b)
          XCTAssertEqual(ActionMentions.action(of: caption), action, caption)
        }
      }
    }
    XCTAssertEqual(Set(ClipSetGenerator.captionTemplates.keys), Set(ActionMentions.phrases.keys))
    XCTAssertNil(ActionMentions.action(of: "A bag on a black background"))
    XCTAssertNil(ActionMentions.action(of: "A bag rises and slides to the left"))
    // Whole words: "disappears" is not "appears".
    XCTAssertEqual(ActionMentions.action(of: "The coat disappears"), "disappear")
    let counted = ActionMentions.named(
      ["A bag spins in place", "A bag falls", "A bag"], labels: ["turn", "move-up", nil])
    XCTAssertEqual(counted.named, 1)
    XCTAssertEqual(counted.of, 2)
  }

  /// Without video the prefix is the same for any clip; with video it is not.
  func testNoVideoPrefixIgnoresTheFrames() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let backbone = try CaptionFixtures.backbone()
    let decoder = try CaptionDecoder.load(folder: try CaptionFixtures.decoderFolder(in: folder))
    var g = RandomGenerator(seed: 4)
    let a = Tensor.randn([1, 8, 4, 4, 16], generator: &g)
    let b = Tensor.randn([1, 8, 4, 4, 16], generator: &g)
    for video in [true, false] {
      var config = PLLaVAConfig()
      config.video = video
      var generator = RandomGenerator(seed: 1)
      let captioner = try PLLaVACaptioner(
        config: config, backbone: backbone, decoder: decoder, generator: &generator)
      let difference = (captioner.visualPrefix(a) - captioner.visualPrefix(b)).scalars.map(abs)
        .max()!
      if video {
        XCTAssertGreaterThan(difference, 1e-3)
      } else {
        XCTAssertEqual(difference, 0)
      }
    }
  }

  /// Both arms of `graft bench captions` train and caption every test clip; the no-video arm
  /// writes one caption for all clips while the video arm's differ, its run folder records
  /// `video = false`, and the report shows each test clip's frames and captions.
  func testVideoAndNoVideoArms() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let annotations = try CaptionFixtures.clipSet(
      in: folder.appendingPathComponent("clips"),
      actions: [0: ["A square slides to the left"], 6: ["A ring turns clockwise"]],
      train: 2, val: 0, test: 1)
    let data = try CaptionClips(path: annotations.deletingLastPathComponent())
    let backbone = try CaptionFixtures.backbone()
    var options = CaptionTrainingOptions()
    options.epochs = 4
    options.batchSize = 4
    options.lr = 2e-2
    var results: [CaptionArmResult] = []
    for video in [true, false] {
      // A fresh decoder per arm: `full` trains its weights in place.
      let decoder = try CaptionDecoder.load(
        folder: try CaptionFixtures.decoderFolder(
          in: folder, name: "decoder-\(video)", initializerRange: 0.6))
      let arm = CaptionArm(mode: .full, video: video)
      let out = folder.appendingPathComponent(arm.name)
      let result = try CaptionBenchmark.run(
        arm, base: PLLaVAConfig(), options: options, backbone: backbone, decoder: decoder,
        data: data, out: out)
      XCTAssertEqual(result.captions.map(\.videoID), data.entries(split: "test").map(\.videoID))
      XCTAssertEqual(result.actionCounted, 2)
      XCTAssertEqual(result.history.count, 4)
      XCTAssertEqual(try CaptionBenchmark.readResult(in: out)?.captions, result.captions)
      XCTAssertEqual(
        try CaptionAdapter.readConfig(out).hyperparameters["video"], video ? "true" : "false")
      results.append(result)
    }
    XCTAssertEqual(results.map(\.arm), ["full", "full-no-video"])
    XCTAssertEqual(results[0].trainable, results[1].trainable)
    XCTAssertEqual(results[1].distinctCaptions, 1, "\(results[1].captions)")
    XCTAssertEqual(results[0].distinctCaptions, 2, "\(results[0].captions)")
    XCTAssertEqual(CaptionReport.baselinePairs(results).count, 1)
    let page = try CaptionReport.html(results, title: "t", notes: ["n"], data: data)
    XCTAssertEqual(
      page.components(separatedBy: "<img ").count - 1, 2 * CaptionReport.stripFrames)
    for r in results {
      for c in r.captions {
        XCTAssertTrue(page.contains(ReportWriter.escape(c.caption)), c.caption)
      }
    }
    XCTAssertThrowsError(try CaptionArm.parse("lora-no-audio"))
    XCTAssertEqual(
      try CaptionArm.parse("projector-no-video"), CaptionArm(mode: .projector, video: false))
  }

  /// A missing decoder is an error that names where it was looked for.
  func testMissingDecoderIsNamed() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    XCTAssertThrowsError(try CaptionDecoder.resolve("no-such-decoder", searchPaths: [folder])) {
      e in
      XCTAssertEqual((e as? CaptionError)?.kind, .missingDecoder)
      XCTAssertTrue("\(e)".contains(folder.appendingPathComponent("no-such-decoder").path), "\(e)")
    }
    // With no folder to look in, the message says why rather than listing nothing.
    XCTAssertThrowsError(try CaptionDecoder.resolve("gpt2-wordnet", searchPaths: [])) { e in
      XCTAssertTrue("\(e)".contains("no model folder to look in"), "\(e)")
      XCTAssertTrue("\(e)".contains("GRAFT_MODELS"), "\(e)")
    }
    let found = try CaptionFixtures.decoderFolder(in: folder, name: "bundled")
    XCTAssertEqual(
      try CaptionDecoder.resolve("bundled", searchPaths: [folder]).standardizedFileURL.path,
      found.standardizedFileURL.path)
  }
}
