import Foundation
import XCTest

@testable import GraftModels

final class TimmLoaderTests: XCTestCase {
  private var scratch: URL!

  override func setUpWithError() throws {
    scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-timm-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: scratch)
  }

  /// A copy of fixture folder `name` in the scratch directory, to damage.
  private func copyFixture(_ name: String) throws -> URL {
    let dst = scratch.appendingPathComponent(name)
    try FileManager.default.copyItem(at: vitFixtures.appendingPathComponent(name), to: dst)
    return dst
  }

  private func readJSON(_ url: URL) throws -> [String: JSONValue] {
    try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url)).objectValue!
  }

  /// Writes `object` as `folder/config.json`.
  private func writeConfig(_ object: [String: JSONValue], to folder: URL) throws {
    func encode(_ v: JSONValue) -> Any {
      switch v {
      case .null: NSNull()
      case .bool(let b): b
      case .number(let n): n
      case .string(let s): s
      case .array(let a): a.map(encode)
      case .object(let o): o.mapValues(encode)
      }
    }
    let data = try JSONSerialization.data(withJSONObject: encode(.object(object)))
    try data.write(to: folder.appendingPathComponent("config.json"))
  }

  /// Rewrites `folder/model.safetensors` after `edit` changes its tensors.
  private func editWeights(_ folder: URL, _ edit: (inout [String: Tensor]) -> Void) throws {
    let url = folder.appendingPathComponent("model.safetensors")
    var tensors = try SafetensorsFile(contentsOf: url).tensors().mapValues { $0.copy() }
    edit(&tensors)
    try Safetensors.write(tensors, metadata: ["format": "pt"], to: url)
  }

  private func loadError(_ folder: URL) -> (any Error)? {
    do {
      _ = try TimmModelFolder.load(folder)
      return nil
    } catch {
      return error
    }
  }

  // MARK: Loading the fixture folders

  func testFamiliesResolveWithTheirSettings() throws {
    func load(_ name: String) throws -> TimmModel {
      try TimmModelFolder.load(vitFixtures.appendingPathComponent(name))
    }
    let augreg = try load("vit_augreg")
    XCTAssertEqual(augreg.architecture.family, .vit)
    XCTAssertEqual(augreg.architecture.name, "vit_small_patch16_224")
    XCTAssertEqual(augreg.architecture.tag, "augreg_in21k_ft_in1k")
    // model_args override the name's ViT-S/16 at 224.
    let c = augreg.model.config
    XCTAssertEqual(
      [c.embedDim, c.depth, c.numHeads, c.numClasses, c.mlpHidden], [32, 2, 2, 10, 128])
    XCTAssertEqual(c.imgSize, Size2D(32, 32))
    XCTAssertEqual(c.patchSize, Size2D(8, 8))
    XCTAssertEqual(c.normEps, 1e-6)
    // augreg weights use the Inception mean and std, and timm's bicubic / 0.9 crop.
    XCTAssertEqual(augreg.pretrainedCfg.mean, [0.5, 0.5, 0.5])
    XCTAssertEqual(augreg.pretrainedCfg.std, [0.5, 0.5, 0.5])
    XCTAssertEqual(augreg.pretrainedCfg.interpolation, "bicubic")
    XCTAssertEqual(augreg.pretrainedCfg.cropPct, 0.9)
    XCTAssertEqual(augreg.pretrainedCfg.inputSize, [3, 32, 32])

    let clip = try load("clip").model.config
    XCTAssertTrue(clip.preNorm)
    XCTAssertFalse(clip.patchBias)
    XCTAssertEqual(clip.normEps, 1e-5)
    XCTAssertEqual(clip.activation, .gelu)
    XCTAssertEqual(try load("clip_quickgelu").model.config.activation, .quickGELU)
    XCTAssertEqual(try load("clip").pretrainedCfg.mean, [0.48145466, 0.4578275, 0.40821073])

    let deit3 = try load("deit3").model.config
    XCTAssertFalse(deit3.qkvBias)
    XCTAssertTrue(deit3.noEmbedClass)
    XCTAssertEqual(deit3.initValues, 1e-6)

    let distilled = try load("deit_distilled")
    XCTAssertEqual(distilled.architecture.family, .deitDistilled)
    XCTAssertEqual(distilled.model.prefixTokens, 2)
    XCTAssertNotNil(distilled.model.headDist)

    let dinov2 = try load("dinov2")
    XCTAssertEqual(dinov2.model.config.patchSize, Size2D(14, 14))
    XCTAssertEqual(dinov2.model.config.numClasses, 0)
    XCTAssertNil(dinov2.model.head)
    let reg = try load("dinov2_reg").model.config
    XCTAssertEqual(reg.regTokens, 4)
    XCTAssertTrue(reg.noEmbedClass && reg.dynamicImgSize)
    XCTAssertEqual(reg.initValues, 1e-5)

    let mae = try load("mae")
    XCTAssertEqual(mae.architecture.tag, "mae")
    XCTAssertEqual(mae.model.config.globalPool, .avg)
    XCTAssertNil(mae.model.norm)
    XCTAssertNotNil(mae.model.fcNorm)
  }

  /// F32 weights are the file's memory: loading allocates only the LayerNorm vectors.
  func testWeightsAreBorrowedFromTheMapping() throws {
    let folder = vitFixtures.appendingPathComponent("vit_augreg")
    let before = StorageStats.liveBytes
    let loaded = try TimmModelFolder.load(folder)
    let allocated = StorageStats.liveBytes - before
    let total = loaded.model.parameters().reduce(0) { $0 + $1.byteCount }
    let norms = loaded.model.namedParameters().filter { $0.name.contains("norm") }
      .reduce(0) { $0 + $1.tensor.byteCount }
    XCTAssertGreaterThan(total, 100_000)
    XCTAssertLessThanOrEqual(allocated, norms + 1024, "only LayerNorm vectors are copied")
    // Training a borrowed weight changes this process's copy, not the file.
    let w = loaded.model.blocks[0].attn.qkv.weight
    let original = w.pointer[0]
    w.pointer[0] += 1
    let again = try TimmModelFolder.load(folder)
    XCTAssertEqual(again.model.blocks[0].attn.qkv.weight.pointer[0], original)
  }

  // MARK: Architecture names against timm

  /// Every architecture name Graft claims, resolved from the `config.json` timm writes for it
  /// (with `model_args`) and from the same file without them (as the Hub serves older exports),
  /// gives what timm builds, down to a hash of every state-dict name and shape.
  func testArchitecturesResolveAsTimmBuildsThem() throws {
    let table = try readJSON(vitFixtures.appendingPathComponent("architectures.json"))
    let supported = table["supported"]!.objectValue!
    XCTAssertGreaterThan(supported.count, 60)
    for (name, entry) in supported.sorted(by: { $0.key < $1.key }) {
      let e = entry.objectValue!
      let timm = e["timm"]!.objectValue!
      var json = e["config"]!.objectValue!
      for variant in ["with model_args", "hub style"] {
        if variant == "hub style" { json["model_args"] = nil }
        let (arch, c) = try TimmHubConfig(json: json).vitConfig()
        XCTAssertEqual(arch.name, name)
        func same<T: Equatable>(_ key: String, _ value: T, _ expected: T?) {
          XCTAssertEqual(value, expected, "\(name) (\(variant)): \(key)")
        }
        func int(_ k: String) -> Int? { timm[k]?.intValue }
        func bool(_ k: String) -> Bool? { timm[k]?.boolValue }
        func pair(_ k: String) -> [Int]? { timm[k]?.arrayValue?.compactMap(\.intValue) }
        same("embed_dim", c.embedDim, int("embed_dim"))
        same("depth", c.depth, int("depth"))
        same("num_heads", c.numHeads, int("num_heads"))
        same("mlp_hidden", c.mlpHidden, int("mlp_hidden"))
        same("qkv_bias", c.qkvBias, bool("qkv_bias"))
        same("patch_size", [c.patchSize.height, c.patchSize.width], pair("patch_size"))
        same("img_size", [c.imgSize.height, c.imgSize.width], pair("img_size"))
        same("in_chans", c.inChans, int("in_chans"))
        same("patch_bias", c.patchBias, bool("patch_bias"))
        same("class_token", c.classToken, bool("class_token"))
        same("reg_tokens", c.regTokens, int("reg_tokens"))
        same("no_embed_class", c.noEmbedClass, bool("no_embed_class"))
        same("pre_norm", c.preNorm, bool("pre_norm"))
        same("norm", c.finalNorm && !c.usesFcNorm, bool("norm"))
        same("fc_norm", c.finalNorm && c.usesFcNorm, bool("fc_norm"))
        same("global_pool", c.globalPool.rawValue, timm["global_pool"]?.stringValue)
        same("num_classes", c.numClasses, int("num_classes"))
        let initValues: Float? = timm["init_values"]?.doubleValue.map { Float($0) }
        XCTAssertEqual(c.initValues, initValues, "\(name) (\(variant)): init_values")
        let act = ["gelu": "GELU", "quick_gelu": "QuickGELU", "gelu_tanh": "GELUTanh"]
        same("act", act[c.activation.rawValue], timm["act"]?.stringValue)
        same("eps", c.normEps, timm["eps"]?.doubleValue.map { Float($0) })
        same("distilled", c.distilled, bool("distilled"))
        same("dynamic_img_size", c.dynamicImgSize, bool("dynamic_img_size"))
        let shapes = c.stateShapes
        same("state_count", shapes.count, int("state_count"))
        let lines = shapes.map {
          "\($0.name):\($0.shape.map(String.init).joined(separator: ","))\n"
        }
        same("state_hash", fnv1a64(lines.joined()), timm["state_hash"]?.stringValue)
      }
    }
  }

  /// The other ViT-like names timm registers (rope, siglip `map` pooling, relpos, giant DINOv2
  /// with SwiGLU, hybrids, …) are refused, never built wrong.
  func testOtherTimmNamesAreRefused() throws {
    let table = try readJSON(vitFixtures.appendingPathComponent("architectures.json"))
    let refused = table["refused"]!.arrayValue!.compactMap(\.stringValue)
    XCTAssertGreaterThan(refused.count, 100)
    for name in refused {
      XCTAssertThrowsError(try TimmArchitecture(name), name) {
        XCTAssertTrue($0 is UnknownArchitectureError, "\(name): \($0)")
      }
    }
    XCTAssertThrowsError(try TimmArchitecture("vit_giant_patch14_dinov2.lvd142m")) {
      XCTAssertTrue("\($0)".contains("SwiGLU"), "\($0)")
    }
  }

  private func fnv1a64(_ text: String) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }

  // MARK: Bad folders

  func testMissingConfigNamesTheFile() {
    let error = loadError(scratch)
    XCTAssertTrue(error is FileError)
    XCTAssertTrue("\(error!)".contains(scratch.appendingPathComponent("config.json").path))
    XCTAssertTrue("\(error!)".contains("no such file"), "\(error!)")
  }

  func testMalformedConfigNamesTheFile() throws {
    try Data("{\"architecture\": ".utf8).write(to: scratch.appendingPathComponent("config.json"))
    XCTAssertTrue("\(loadError(scratch)!)".contains("config.json: not valid JSON"))
    try writeConfig(["num_classes": .number(3)], to: scratch)
    XCTAssertTrue("\(loadError(scratch)!)".contains("no 'architecture'"))
  }

  func testUnknownArchitectureListsTheKnownFamilies() throws {
    try writeConfig(
      ["architecture": .string("resnet50"), "pretrained_cfg": .object([:])], to: scratch)
    let message = "\(loadError(scratch)!)"
    XCTAssertTrue(message.hasPrefix(scratch.appendingPathComponent("config.json").path), message)
    XCTAssertTrue(message.contains("unknown timm architecture 'resnet50'"), message)
    for family in ViTFamily.allCases {
      XCTAssertTrue(message.contains(family.pattern), "\(family) missing from: \(message)")
    }
  }

  func testWrongShapeNamesTheTensorAndBothShapes() throws {
    let folder = try copyFixture("vit_augreg")
    try editWeights(folder) { $0["blocks.1.mlp.fc1.weight"] = Tensor.zeros([64, 32]) }
    let error = loadError(folder)
    let e = try XCTUnwrap(error as? StateDictError, "\(String(describing: error))")
    XCTAssertEqual(
      e.misshaped, [.init(name: "blocks.1.mlp.fc1.weight", expected: [128, 32], got: [64, 32])])
    let message = "\(e)"
    XCTAssertTrue(message.contains("blocks.1.mlp.fc1.weight expected [128, 32] got [64, 32]"))
    XCTAssertTrue(message.contains(folder.appendingPathComponent("model.safetensors").path))
  }

  func testMissingAndUnexpectedTensorsAreListed() throws {
    let folder = try copyFixture("deit3")
    try editWeights(folder) {
      $0["norm.bias"] = nil
      $0["blocks.0.ls1.gamma"] = nil
      $0["extra.weight"] = Tensor.zeros([2])
    }
    let e = try XCTUnwrap(loadError(folder) as? StateDictError)
    XCTAssertEqual(e.missing, ["blocks.0.ls1.gamma", "norm.bias"])
    XCTAssertEqual(e.unexpected, ["extra.weight"])
    XCTAssertEqual(e.source, folder.appendingPathComponent("model.safetensors").path)
  }

  func testMissingWeightsFile() throws {
    let folder = try copyFixture("dinov2")
    try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
    let message = "\(loadError(folder)!)"
    XCTAssertTrue(message.contains("model.safetensors: no such file"), message)
  }

  /// Without its `model_args` the tiny model's folder describes a full ViT-S/16, and its tensors
  /// do not fit: the overrides are what make it load.
  func testModelArgsAreHonoured() throws {
    let folder = try copyFixture("vit_augreg")
    var json = try readJSON(folder.appendingPathComponent("config.json"))
    json["model_args"] = nil
    try writeConfig(json, to: folder)
    let e = try XCTUnwrap(loadError(folder) as? StateDictError)
    XCTAssertTrue(e.missing.contains("blocks.11.attn.qkv.weight"))
    XCTAssertTrue(
      e.misshaped.contains(.init(name: "cls_token", expected: [1, 1, 384], got: [1, 1, 32])))
  }

  func testUnsupportedArgumentsAreRefused() throws {
    let folder = try copyFixture("deit")
    let original = try readJSON(folder.appendingPathComponent("config.json"))
    func attempt(_ key: String, _ value: JSONValue) throws -> String {
      var json = original
      var args = json["model_args"]!.objectValue!
      args[key] = value
      json["model_args"] = .object(args)
      try writeConfig(json, to: folder)
      return "\(loadError(folder).map { "\($0)" } ?? "loaded")"
    }
    XCTAssertTrue(try attempt("qk_norm", .bool(true)).contains("qk_norm = true is not supported"))
    XCTAssertTrue(try attempt("mystery", .number(1)).contains("model_args.mystery"))
    XCTAssertTrue(try attempt("global_pool", .string("map")).contains("global_pool 'map'"))
    XCTAssertTrue(try attempt("depth", .string("two")).contains("expected an integer"))
    // Harmless training-only settings load.
    XCTAssertEqual(try attempt("drop_path_rate", .number(0.1)), "loaded")
    XCTAssertEqual(try attempt("qk_norm", .bool(false)), "loaded")
  }

  /// timm's legacy config form: one object that is the pretrained cfg itself.
  func testLegacySingleDictConfig() throws {
    let cfg = try TimmHubConfig(json: [
      "architecture": .string("vit_base_patch16_384"), "num_classes": .number(21843),
      "input_size": .array([.number(3), .number(384), .number(384)]),
      "fixed_input_size": .bool(true), "mean": .array([.number(0.5), .number(0.5), .number(0.5)]),
    ])
    let (arch, c) = try cfg.vitConfig()
    XCTAssertEqual(arch.family, .vit)
    XCTAssertEqual(c.numClasses, 21843)
    XCTAssertEqual(c.imgSize, Size2D(384, 384))
    XCTAssertEqual(c.posEmbedLength, 577)
    XCTAssertEqual(cfg.pretrainedCfg.mean, [0.5, 0.5, 0.5])
    XCTAssertEqual(cfg.pretrainedCfg.std, [0.229, 0.224, 0.225], "timm's default std")
  }
}
