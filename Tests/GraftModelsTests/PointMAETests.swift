import Foundation
import GraftPoints
import XCTest

@testable import GraftModels

/// `Fixtures/point_mae`, written by Tools/make_point_mae_fixtures.py from the official code.
let pointMAEFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  .appendingPathComponent("point_mae")

/// The fixture's model folder (trans_dim 32, depth 2, 2 heads, 8 groups of 8, npoints 128,
/// 5 classes) and the official model's outputs.
struct PointMAEFixture {
  let folder = pointMAEFixtures.appendingPathComponent("model")
  let reference: SafetensorsFile

  init() throws {
    reference = try SafetensorsFile(
      contentsOf: pointMAEFixtures.appendingPathComponent("reference.safetensors"))
  }

  func tensor(_ name: String) throws -> Tensor { try reference.tensor(name) }
  func model() throws -> PointMAE { try PointMAE.load(folder: folder) }
}

/// max |actual − expected| / max |expected|.
func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
  let scale = expected.scalars.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
  let worst = zip(actual.scalars, expected.scalars).reduce(Float(0)) {
    Swift.max($0, Swift.abs($1.0 - $1.1))
  }
  return worst / Swift.max(scale, 1e-12)
}

/// Hooks that change nothing but use every attach point, so blocks run unfused.
private final class Unfused: BackboneHooks {
  var attachPoints: AttachPoints { .all }
}

final class PointMAETests: EmbedScratchTestCase {
  // MARK: Parity with the official model

  func testOutputsMatchTheOfficialModel() throws {
    let fx = try PointMAEFixture()
    let model = try fx.model()
    XCTAssertNotNil(model.clsHeadFinetune)
    let points = try fx.tensor("points")
    for hooks in [nil, Unfused()] as [(any BackboneHooks)?] {
      let out = withNoGrad { model.forward(points, hooks: hooks) }
      guard case .points(let centres) = out.layout else { return XCTFail("layout") }
      let logits = withNoGrad { model.logits(out) }
      let errors = [
        ("centres", relativeError(centres, try fx.tensor("centres"))),
        ("features", relativeError(out.features, try fx.tensor("features"))),
        ("logits", relativeError(logits, try fx.tensor("logits"))),
      ]
      print("Point-MAE parity (\(hooks == nil ? "fused" : "unfused")): \(errors)")
      assertMatches(centres, try fx.tensor("centres"), relative: 1e-6, "centres")
      assertMatches(out.features, try fx.tensor("features"), "features")
      assertMatches(logits, try fx.tensor("logits"), "logits")
      XCTAssertEqual(out.features.shape, [2, 64])
      XCTAssertEqual(out.tokens.shape, [2, 1 + 8, 32])
      XCTAssertEqual(out.hiddenStates.count, 2)
    }
    // The origin skip matters for the second cloud: without it FPS picks other centres.
    let plain = PointOps.farthestPointSample(points, count: 8, skipNearOrigin: false)
    let skipped = PointOps.farthestPointSample(points, count: 8, skipNearOrigin: true)
    XCTAssertNotEqual(plain.values[8...], skipped.values[8...])
  }

  func testStateDictKeepsTheOfficialNames() throws {
    let fx = try PointMAEFixture()
    let file = try SafetensorsFile(
      contentsOf: fx.folder.appendingPathComponent("model.safetensors"))
    let config = try fx.model().config
    let expected = config.stateShapes
    XCTAssertEqual(Set(expected.map(\.name)), Set(file.names))
    for (name, shape) in expected { XCTAssertEqual(try file.info(name).shape, shape, name) }
    let names = Set(expected.map(\.name))
    for name in [
      "cls_token", "cls_pos", "encoder.first_conv.0.weight", "encoder.first_conv.1.running_var",
      "encoder.second_conv.1.num_batches_tracked", "pos_embed.2.weight",
      "blocks.blocks.1.attn.qkv.weight", "blocks.blocks.0.attn.proj.bias", "norm.bias",
      "cls_head_finetune.5.running_mean", "cls_head_finetune.8.bias",
    ] {
      XCTAssertTrue(names.contains(name), name)
    }
    XCTAssertFalse(names.contains("blocks.blocks.0.attn.qkv.bias"), "qkv has no bias")
    // Buffers are state, not parameters: only parameters train or count.
    let model = try fx.model()
    let parameters = Set(model.namedParameters().map(\.name))
    XCTAssertFalse(parameters.contains("encoder.first_conv.1.running_mean"))
    XCTAssertEqual(model.stateDict()["encoder.first_conv.1.num_batches_tracked"]?.item, 1234)
  }

  func testSavedModelRoundTrips() throws {
    var g = RandomGenerator(seed: 7)
    let config = PointMAEConfig(
      transDim: 16, depth: 1, numHeads: 2, groupSize: 4, numGroup: 6, numClasses: 0,
      npoints: 40)
    let model = try PointMAE(config: config, generator: &g)
    XCTAssertNil(model.clsHeadFinetune)
    let folder = file("fresh")
    try model.save(folder: folder)
    let loaded = try ModelLoader.loadBackbone(folder.path)
    guard case .pointMAE(let point) = loaded else { return XCTFail("not loaded as Point-MAE") }
    XCTAssertEqual(point.model.config, config)
    XCTAssertFalse(loaded.hasHead)
    XCTAssertEqual(loaded.architectureName, "point_mae")
    XCTAssertNil(loaded.imagePreprocessing)
    let x = Tensor.randn([2, 40, 3], generator: &g)
    XCTAssertEqual(
      withNoGrad { point.model(x) }.scalars, withNoGrad { model(x) }.scalars,
      "features without a head")
    XCTAssertEqual(withNoGrad { model(x) }.shape, [2, 32])
  }

  // MARK: Named errors

  func testACheckpointThatDoesNotFitIsANamedError() throws {
    let fx = try PointMAEFixture()
    var weights = try SafetensorsFile(
      contentsOf: fx.folder.appendingPathComponent("model.safetensors")
    ).tensors()
    weights["cls_pos"] = nil
    weights["norm.weight"] = Tensor.zeros([31])
    weights["decoder_pos_embed.0.weight"] = Tensor.zeros([128, 3])
    let folder = file("broken")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: fx.folder.appendingPathComponent("config.json"),
      to: folder.appendingPathComponent("config.json"))
    try Safetensors.write(weights, to: folder.appendingPathComponent("model.safetensors"))
    let error = thrown { _ = try ModelLoader.loadBackbone(folder.path) }
    XCTAssertTrue(error is StateDictError, "\(String(describing: error))")
    assertMentions(
      error, ["model.safetensors", "cls_pos", "norm.weight", "[32]", "[31]", "decoder_pos_embed"])
    // A config that does not fit the tensors is the same error (depth 3: block 2 is missing).
    try Data(
      #"{"architecture": "point_mae", "num_classes": 5, "model_args": {"trans_dim": 32, "depth": 3, "num_heads": 2, "group_size": 8, "num_group": 8}}"#
        .utf8
    ).write(to: folder.appendingPathComponent("config.json"))
    try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
    try FileManager.default.copyItem(
      at: fx.folder.appendingPathComponent("model.safetensors"),
      to: folder.appendingPathComponent("model.safetensors"))
    assertMentions(
      thrown { _ = try ModelLoader.loadBackbone(folder.path) }, ["blocks.blocks.2.norm1.weight"])
    // The ViT loader names the family it found.
    assertMentions(
      thrown { _ = try ModelLoader.load(fx.folder.path) }, ["Point-MAE", "config.json"])
    assertMentions(
      thrown { _ = try ModelLoader.loadBackbone(fx.folder.path, arch: "vit_small_patch16_224") },
      ["Point-MAE", "--arch"])
  }

  func testBadConfigsAreNamedErrors() throws {
    func error(_ args: String, top: String = "") -> String {
      let text =
        #"{"architecture": "point_mae", "num_classes": 0, "# + top
        + #""model_args": {"# + args + "}}"
      do {
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)).objectValue!
        _ = try PointMAEConfig(json: json)
        return "<no error>"
      } catch let e as PointMAEConfigError {
        return e.message
      } catch {
        return "other error \(error)"
      }
    }
    let cases: [(String, String, [String])] = [
      (#""trans_dim": -4"#, "", ["trans_dim -4"]),
      (#""trans_dim": 384, "num_heads": 5"#, "", ["not divisible by num_heads 5"]),
      (#""group_size": 2048"#, "", ["group_size 2048", "npoints 1024"]),
      (#""num_group": 600, "npoints": 512"#, "", ["num_group 600", "npoints 512"]),
      (#""depth": 100000"#, "", ["depth 100000"]),
      (#""trans_dim": 10000000000"#, "", ["trans_dim 10000000000"]),
      (#""encoder_dims": 256"#, "", ["encoder_dims 256", "trans_dim 384"]),
      (#""num_heads": 6.5"#, "", ["num_heads", "integer"]),
      (#""patch_size": 16"#, "", ["model_args.patch_size", "not a Point-MAE setting"]),
      (#""cls_dim": 40"#, "", ["num_classes = 0", "cls_dim = 40"]),
      (#""qkv_bias": true"#, "", ["qkv"]),
      ("", #""npoints": 0, "#, ["npoints 0"]),
    ]
    for (args, top, parts) in cases {
      let message = error(args, top: top)
      for part in parts { XCTAssertTrue(message.contains(part), "\(args): \(message)") }
    }
    // The official defaults, and a training-only setting ignored.
    XCTAssertEqual(error(#""drop_path_rate": 0.1"#), "<no error>")
    // Through a folder: the error names config.json.
    let folder = file("bad")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try Data(
      #"{"architecture": "point_mae", "model_args": {"trans_dim": 30, "num_heads": 4}}"#.utf8
    ).write(to: folder.appendingPathComponent("config.json"))
    assertMentions(
      thrown { _ = try ModelLoader.loadBackbone(folder.path) },
      ["config.json", "not divisible by num_heads 4"])
    var c = PointMAEConfig()
    c.numHeads = 0
    XCTAssertThrowsError(try c.validate())
    var g = RandomGenerator(seed: 1)
    XCTAssertThrowsError(try PointMAE(config: c, generator: &g))
  }

  // MARK: graft embed

  func testEmbedPointsTensorReproducesTheOfficialOutputs() throws {
    let fx = try PointMAEFixture()
    let input = file("points.safetensors")
    try Safetensors.write(["points": try fx.tensor("points")], to: input)
    for batch in [1, 2] {
      let out = file("out-\(batch).safetensors")
      let summary = try Embedding.run(
        model: fx.folder.path, inputs: [input.path], output: out.path, batchSize: batch)
      XCTAssertEqual(summary.featureShape, [2, 64])
      XCTAssertEqual(summary.logitsShape, [2, 5])
      XCTAssertEqual(summary.centresShape, [2, 8, 3])
      let result = try SafetensorsFile(contentsOf: out)
      assertMatches(try result.tensor("features"), try fx.tensor("features"), "features")
      assertMatches(try result.tensor("logits"), try fx.tensor("logits"), "logits")
      assertMatches(try result.tensor("centres"), try fx.tensor("centres"), "centres")
      XCTAssertEqual(result.metadata["input_kind"], "points")
      XCTAssertEqual(result.metadata["architecture"], "point_mae")
      XCTAssertEqual(result.metadata["model_format"], "point-mae-folder")
      XCTAssertEqual(result.metadata["npoints"], "128")
    }
  }

  /// Cloud files go through normalisation and FPS to npoints as the official evaluation loop:
  /// the bunny's and the mushroom's vertices, written as PLY and PCD clouds, give the features
  /// the official model gives the prepared clouds.
  func testEmbedCloudFilesNormalisesAndSamples() throws {
    let fx = try PointMAEFixture()
    let bunny = file("bunny.ply")
    let mushroom = file("mushroom.pcd")
    _ = try PointFile.write(
      PointCloud(positions: try fx.tensor("raw.bunny").scalars), to: bunny)
    _ = try PointFile.write(
      PointCloud(positions: try fx.tensor("raw.mushroom").scalars), to: mushroom)
    let prepared = try [bunny, mushroom].map {
      try Embedding.preparedClouds($0, for: fx.model().config)[0]
    }
    assertMatches(
      Tensor.stack(prepared, axis: 0), try fx.tensor("prepared"), relative: 1e-6, "prepared")
    let out = file("clouds.safetensors")
    let summary = try Embedding.run(
      model: fx.folder.path, inputs: [bunny.path, mushroom.path], output: out.path)
    XCTAssertEqual(summary.count, 2)
    let result = try SafetensorsFile(contentsOf: out)
    assertMatches(try result.tensor("features"), try fx.tensor("prepared.features"), "features")
    assertMatches(try result.tensor("logits"), try fx.tensor("prepared.logits"), "logits")
    XCTAssertEqual(result.metadata["input_kind"], "clouds")
    XCTAssertTrue(result.metadata["preprocessing"]?.contains("\"npoints\":128") == true)
    // A mesh is sampled over its surface first: the real mushroom mesh embeds too.
    let mesh = repositoryFixture("Tests/GraftPointsTests/Fixtures/real/mushroom.off")
    let meshOut = file("mesh.safetensors")
    try Embedding.run(model: fx.folder.path, inputs: [mesh.path], output: meshOut.path)
    XCTAssertEqual(try SafetensorsFile(contentsOf: meshOut).tensor("centres").shape, [1, 8, 3])
  }

  func testBadPointInputsAreNamed() throws {
    let fx = try PointMAEFixture()
    let out = file("out.safetensors")
    let small = file("small.pcd")
    _ = try PointFile.write(
      PointCloud(positions: [Float](repeating: 0.5, count: 3 * 40)), to: small)
    assertMentions(
      thrown { try Embedding.run(model: fx.folder.path, inputs: [small.path], output: out.path) },
      [small.path, "40 points", "128"])
    func tensorFile(_ t: Tensor, _ key: String = "points") throws -> URL {
      let url = file("\(key)-\(t.shape).safetensors")
      try Safetensors.write([key: t], to: url)
      return url
    }
    let cases: [(Tensor, String, String)] = [
      (Tensor.zeros([2, 128, 2]), "points", "[B, N, 3]"),
      (Tensor.zeros([2, 4, 3]), "points", "at least 8 points"),
      (Tensor.zeros([0, 128, 3]), "points", "no clouds"),
      (Tensor.zeros([1, 128, 3]), "pixels", "no 'points' tensor"),
      (Tensor.full([1, 128, 3], .nan), "points", "NaN"),
    ]
    for (t, key, part) in cases {
      let url = try tensorFile(t, key)
      assertMentions(
        thrown { try Embedding.run(model: fx.folder.path, inputs: [url.path], output: out.path) },
        [url.path, part])
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
  }

  /// A file of the repository (this file is `Tests/GraftModelsTests/PointMAETests.swift`).
  private func repositoryFixture(_ path: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent(path)
  }
}
