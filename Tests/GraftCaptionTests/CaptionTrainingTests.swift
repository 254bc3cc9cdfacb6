import Foundation
import GraftCaption
import XCTest

final class CaptionTrainingTests: XCTestCase {
  /// Training writes a run folder with the adapter tensors only; loading it gives the same
  /// captions, and a folder is refused on another backbone or decoder.
  func testRunFolderRoundTripsAndRefusesOtherModels() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let annotations = try CaptionFixtures.clipSet(
      in: folder.appendingPathComponent("clips"),
      actions: [0: ["A shape slides to the left"], 2: ["A shape moves up", "It rises"]],
      train: 1, val: 1, test: 1)
    let data = try CaptionClips(path: annotations.deletingLastPathComponent())
    XCTAssertEqual(data.entries(split: "train").count, 2)
    let backbone = try CaptionFixtures.backbone()
    let decoder = try CaptionDecoder.load(
      folder: try CaptionFixtures.decoderFolder(in: folder, initializerRange: 0.6))
    var g = RandomGenerator(seed: 1)
    let captioner = try PLLaVACaptioner(
      config: PLLaVAConfig(), backbone: backbone, decoder: decoder, generator: &g)
    var options = CaptionTrainingOptions()
    options.epochs = 2
    options.batchSize = 2
    options.lr = 1e-2
    let out = folder.appendingPathComponent("run")
    let history = try CaptionTrainer(
      captioner: captioner, backbone: backbone, decoder: decoder, options: options
    ).train(on: data, out: out)
    XCTAssertEqual(history.count, 2)
    XCTAssertNotNil(history[1].valLoss)
    let stored = try SafetensorsFile(
      contentsOf: out.appendingPathComponent("adapter_model.safetensors")
    ).tensors()
    XCTAssertEqual(Set(stored.keys), Set(captioner.trainableParameters().map(\.name)))
    XCTAssertTrue(stored.keys.allSatisfy { $0.hasPrefix("projector.") || $0.hasPrefix("lora.") })
    // LoRA trained away from its zero start.
    XCTAssertGreaterThan(stored["lora.blocks.0.v.lora_B"]!.scalars.map(abs).max()!, 0)
    let config = try CaptionAdapter.readConfig(out)
    XCTAssertEqual(config.decoderHash, decoder.weightsHash)
    XCTAssertEqual(config.baseModelHash, backbone.weightsHash)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: out.appendingPathComponent("history.json").path))

    let loaded = try CaptionAdapter.load(out, backbone: backbone, decoder: decoder).captioner
    let test = try data.entries(split: "test").map {
      try VideoDecoding.sample($0.url, count: 8, sampling: .pllava)
    }
    for beams in [1, 3] {
      XCTAssertEqual(
        try loaded.caption(test, beams: beams), try captioner.caption(test, beams: beams),
        "\(beams) beams")
    }
    XCTAssertThrowsError(
      try CaptionAdapter.load(
        out, backbone: try CaptionFixtures.backbone(seed: 7), decoder: decoder)
    ) { e in XCTAssertEqual((e as? CaptionError)?.kind, .backboneMismatch, "\(e)") }
    let other = try CaptionDecoder.load(
      folder: try CaptionFixtures.decoderFolder(in: folder, seed: 3, name: "other"))
    XCTAssertThrowsError(try CaptionAdapter.load(out, backbone: backbone, decoder: other)) { e in
      XCTAssertEqual((e as? CaptionError)?.kind, .decoderMismatch, "\(e)")
    }
    XCTAssertThrowsError(try CaptionAdapter.load(folder)) { e in
      XCTAssertEqual((e as? CaptionError)?.kind, .badAdapter, "\(e)")
    }
  }

  /// A video that does not decode stops training with an error naming the file.
  func testUndecodableVideoIsANamedError() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let annotations = try CaptionFixtures.clipSet(
      in: folder, actions: [0: ["A shape slides to the left"]], train: 1, val: 0, test: 0)
    try Data("not a video".utf8).write(
      to: folder.appendingPathComponent("videos/clip0.mp4"))
    let backbone = try CaptionFixtures.backbone()
    let decoder = try CaptionDecoder.load(folder: try CaptionFixtures.decoderFolder(in: folder))
    var g = RandomGenerator(seed: 1)
    let captioner = try PLLaVACaptioner(
      config: PLLaVAConfig(), backbone: backbone, decoder: decoder, generator: &g)
    let trainer = CaptionTrainer(captioner: captioner, backbone: backbone, decoder: decoder)
    XCTAssertThrowsError(try trainer.train(on: try CaptionClips(path: annotations))) { e in
      XCTAssertTrue(e is VideoError, "\(e)")
      XCTAssertTrue("\(e)".contains("clip0.mp4"), "\(e)")
    }
    XCTAssertThrowsError(try CaptionClips(path: folder.appendingPathComponent("none.json")))
  }

  /// The behavioural check: after a short run, clips of different actions get
  /// different captions, each naming its action. Full-decoder mode on the tiny random decoder
  /// (a frozen random decoder steered by the prefix alone learns too slowly for a test).
  func testClipsOfDifferentActionsGetDifferentCaptions() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let annotations = try CaptionFixtures.clipSet(
      in: folder, actions: [0: ["a shape slides to the left"], 2: ["a shape moves up"]],
      train: 3, val: 0, test: 1)
    let data = try CaptionClips(path: annotations)
    let backbone = try CaptionFixtures.backbone()
    let decoder = try CaptionDecoder.load(folder: try CaptionFixtures.decoderFolder(in: folder))
    var g = RandomGenerator(seed: 1)
    let captioner = try PLLaVACaptioner(
      config: try PLLaVAConfig.parse(["mode": "full"]), backbone: backbone, decoder: decoder,
      generator: &g)
    var options = CaptionTrainingOptions()
    options.epochs = 60
    options.batchSize = 6
    options.lr = 1e-2
    let trainer = CaptionTrainer(
      captioner: captioner, backbone: backbone, decoder: decoder, options: options)
    let history = try trainer.train(on: data)
    print("caption run: train loss", history.map { String(format: "%.3f", $0.trainLoss) })
    XCTAssertLessThan(history.last!.trainLoss, history.first!.trainLoss / 4)
    let test = data.entries(split: "test")
    let captions = try captioner.caption(
      try test.map { try VideoDecoding.sample($0.url, count: 8, sampling: .pllava) })
    print("caption run: test captions", captions)
    XCTAssertNotEqual(captions[0], captions[1])
    XCTAssertTrue(captions[0].contains("left"), captions[0])
    XCTAssertTrue(captions[1].contains("up"), captions[1])
  }
}
