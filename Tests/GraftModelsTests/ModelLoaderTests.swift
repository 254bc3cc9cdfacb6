import Foundation
import GraftData
import XCTest

@testable import GraftModels

/// A fresh scratch folder per test, removed afterwards.
class EmbedScratchTestCase: XCTestCase {
  var scratch: URL!

  override func setUpWithError() throws {
    scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-embed-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: scratch)
  }

  func file(_ name: String) -> URL { scratch.appendingPathComponent(name) }

  /// The error `body` throws, failing the test when it throws none.
  func thrown(
    file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) -> (any Error)? {
    do {
      try body()
      XCTFail("expected an error", file: file, line: line)
      return nil
    } catch {
      return error
    }
  }

  /// Fails unless `error`'s description mentions each of `parts`.
  func assertMentions(
    _ error: (any Error)?, _ parts: [String], file: StaticString = #filePath, line: UInt = #line
  ) {
    let text = error.map { "\($0)" } ?? "<no error>"
    for part in parts {
      XCTAssertTrue(
        text.contains(part), "'\(text)' does not mention '\(part)'", file: file, line: line)
    }
  }

  /// A `.safetensors` holding `pixels`, in the scratch folder.
  func pixelsFile(_ pixels: Tensor, _ name: String = "pixels.safetensors") throws -> URL {
    let url = file(name)
    try Safetensors.write(["pixels": pixels], to: url)
    return url
  }

  /// The fixtures' augreg ViT (32×32 input, 10 classes, Inception mean/std, crop 0.9).
  var augreg: URL { vitFixtures.appendingPathComponent("vit_augreg") }

  /// The files in the scratch folder, sorted.
  func scratchListing() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted()
  }
}

// MARK: - ModelLoader

final class ModelLoaderTests: EmbedScratchTestCase {
  /// `google_vit.npz`'s model (Tools/make_npz_fixtures.py): width 32, depth 2, 2 heads, MLP 128,
  /// 8×8 patches, 32×32 images, 5 classes; no timm name has these sizes, so the architecture is
  /// a real name with its sizes adjusted.
  private func tinyArchitecture(imgSize: Size2D = Size2D(32, 32)) throws -> TimmArchitecture {
    var arch = try TimmArchitecture("vit_small_patch8_224.augreg_in21k")
    arch.config.embedDim = 32
    arch.config.depth = 2
    arch.config.numHeads = 2
    arch.config.imgSize = imgSize
    return arch
  }

  /// The timm model folder equivalent to `google_vit.npz`: timm's own state dict of the model
  /// the npz was written from, with the config timm would save for it.
  private func equivalentTimmFolder() throws -> URL {
    let folder = file("timm_equivalent")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: npzFixture("google_vit_reference.safetensors"),
      to: folder.appendingPathComponent("model.safetensors"))
    let config = """
      {"architecture": "vit_small_patch8_224", "num_classes": 5, "global_pool": "token",
       "model_args": {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 32,
                      "patch_size": 8, "num_classes": 5},
       "pretrained_cfg": {"input_size": [3, 32, 32], "fixed_input_size": true}}
      """
    try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
    return folder
  }

  /// `google_vit.npz` without its `pre_logits` layer (every other array bit for bit).
  private func npzWithoutPreLogits() throws -> URL {
    let archive = try NumpyArchive(contentsOf: npzFixture("google_vit.npz"))
    var members: [TestArchive.Member] = []
    for name in archive.names where !name.hasPrefix("pre_logits/") {
      let t = try archive.array(name)
      members.append(
        .init(
          name: name + ".npy",
          data: TestArchive.npy(descr: "<f4", shape: t.shape, data: TestArchive.floats(t.scalars))))
    }
    XCTAssertLessThan(members.count, archive.names.count, "the fixture has a pre_logits layer")
    let url = file("google_vit_no_pre_logits.npz")
    try Data(TestArchive.zip(members)).write(to: url)
    return url
  }

  private func randomPixels(_ shape: [Int], seed: UInt64 = 7) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor.randn(shape, generator: &g)
  }

  // MARK: Folders

  func testLoadsTimmFolderWithItsPreprocessing() throws {
    let loaded = try ModelLoader.load(augreg.path)
    XCTAssertEqual(loaded.format, .timmFolder)
    XCTAssertEqual(loaded.name, "vit_small_patch16_224.augreg_in21k_ft_in1k")
    XCTAssertEqual(loaded.source, augreg)
    XCTAssertTrue(loaded.hasHead)
    XCTAssertEqual(loaded.notes, [])
    // The values in the fixture's pretrained_cfg (timm's augreg cfg at the 32-pixel size).
    XCTAssertEqual(
      loaded.preprocessing,
      ImagePreprocessConfig(
        inputSize: [3, 32, 32], interpolation: .bicubic, cropPct: 0.9, cropMode: .center,
        mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]))
    // A dynamic-size model keeps its pretrained input size (DINOv2: 518, ImageNet mean).
    let dino = try ModelLoader.load(vitFixtures.appendingPathComponent("dinov2_reg").path)
    XCTAssertEqual(dino.preprocessing?.inputSize, [3, 518, 518])
    XCTAssertEqual(dino.preprocessing?.mean, ImagePreprocessConfig.imagenetMean)
    XCTAssertEqual(dino.preprocessing?.cropPct, 1.0)
  }

  func testFixedSizeModelGetsItsOwnInputSize() throws {
    let folder = file("resized")
    try FileManager.default.copyItem(at: augreg, to: folder)
    let configURL = folder.appendingPathComponent("config.json")
    var text = try String(contentsOf: configURL, encoding: .utf8)
    // pretrained_cfg says 48 (as a hand-edited config might); model_args keep the model at 32.
    let original = "\"input_size\": [\n      3,\n      32,\n      32\n    ]"
    XCTAssertTrue(text.contains(original))
    text = text.replacingOccurrences(of: original, with: "\"input_size\": [3, 48, 48]")
    try Data(text.utf8).write(to: configURL)
    let loaded = try ModelLoader.load(folder.path)
    XCTAssertEqual(loaded.model.config.imgSize, Size2D(32, 32))
    XCTAssertEqual(loaded.preprocessing?.inputSize, [3, 32, 32])
    XCTAssertEqual(loaded.notes.count, 1)
  }

  func testArchWithAFolderMustAgree() throws {
    XCTAssertNoThrow(try ModelLoader.load(augreg.path, arch: "vit_small_patch16_224.other_tag"))
    let error = thrown { _ = try ModelLoader.load(self.augreg.path, arch: "vit_base_patch16_224") }
    assertMentions(error, ["config.json", "vit_small_patch16_224", "vit_base_patch16_224"])
    let unknown = thrown { _ = try ModelLoader.load(self.augreg.path, arch: "resnet50") }
    assertMentions(unknown, ["resnet50"])
  }

  func testMissingReferencesSayWhereTheyLooked() throws {
    let missing = file("no_such_model").path
    assertMentions(thrown { _ = try ModelLoader.load(missing) }, [missing, "no such file"])
    assertMentions(
      thrown { _ = try ModelLoader.load("weights.npz", arch: "vit_base_patch16_224") },
      ["weights.npz", "no such file"])
    let models = file("models")
    let error = thrown { _ = try ModelLoader.load("tiny-vit", searchPaths: [models]) }
    XCTAssertTrue(error is FileError)
    assertMentions(
      error, ["tiny-vit", models.appendingPathComponent("tiny-vit").path, "GRAFT_MODELS"])
    assertMentions(
      thrown { _ = try ModelLoader.load("tiny-vit", searchPaths: []) }, ["GRAFT_MODELS"])
    assertMentions(thrown { _ = try ModelLoader.load("") }, ["empty"])
  }

  func testOtherFilesAreRefusedWithAReason() throws {
    let weights = augreg.appendingPathComponent("model.safetensors").path
    assertMentions(thrown { _ = try ModelLoader.load(weights) }, [weights, "config.json"])
    let config = augreg.appendingPathComponent("config.json").path
    assertMentions(thrown { _ = try ModelLoader.load(config) }, [config, "not a model"])
  }

  func testBundledNamesAreFoundInTheSearchPath() throws {
    let models = file("models")
    let empty = file("empty")
    for dir in [models, empty] {
      try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    try FileManager.default.copyItem(at: augreg, to: models.appendingPathComponent("tiny-vit"))
    let loaded = try ModelLoader.load("tiny-vit", searchPaths: [empty, models])
    XCTAssertEqual(loaded.name, "tiny-vit")
    XCTAssertEqual(
      loaded.source.standardizedFileURL.path, models.appendingPathComponent("tiny-vit").path)
    let fx = try ViTFixture("vit_augreg")
    assertMatches(
      withNoGrad { loaded.model.features(try! fx.tensor("input")) }, try fx.tensor("features"),
      "bundled model features")
  }

  func testBundledDirectoriesComeFromTheEnvironmentThenTheRepository() throws {
    let repo = file("repo")
    let bin = repo.appendingPathComponent(".build/debug")
    try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
    try Data().write(to: repo.appendingPathComponent("Package.swift"))
    let dirs = ModelLoader.bundledModelDirectories(
      environment: ["GRAFT_MODELS": "/opt/models::/srv/graft/"],
      executable: bin.appendingPathComponent("graft"))
    XCTAssertEqual(
      dirs.map(\.path), ["/opt/models", "/srv/graft", repo.appendingPathComponent("Models").path])
    // GRAFT_MODELS naming the repository's own Models/ lists it once (an error lists them all).
    let same = ModelLoader.bundledModelDirectories(
      environment: ["GRAFT_MODELS": repo.appendingPathComponent("Models").path + "/"],
      executable: bin.appendingPathComponent("graft"))
    XCTAssertEqual(same.map(\.path), [repo.appendingPathComponent("Models").path])
    // No repository above the executable, no variable: nowhere to look.
    XCTAssertEqual(
      ModelLoader.bundledModelDirectories(
        environment: [:], executable: URL(fileURLWithPath: "/graft-nowhere/graft")),
      [])
  }

  // MARK: Google .npz checkpoints

  func testNpzWithoutArchSaysHowToNameIt() throws {
    let npz = npzFixture("google_vit.npz").path
    let error = thrown { _ = try ModelLoader.load(npz) }
    XCTAssertTrue(error is FileError)
    assertMentions(error, [npz, "--arch"])
  }

  func testArchThatDoesNotFitTheNpzNamesBothSides() throws {
    let npz = npzFixture("google_vit.npz").path
    let error = thrown { _ = try ModelLoader.load(npz, arch: "vit_small_patch16_224") }
    // Checkpoint: width 32, depth 2, 2 heads, MLP 128, 8×8 patches; ViT-S/16: 384, 12, 6, 1536.
    assertMentions(
      error,
      [
        npz, "vit_small_patch16_224", "width 32 vs 384", "depth 2 vs 12", "heads 2 vs 6",
        "MLP width 128 vs 1536", "patch 8×8 vs 16×16",
      ])
    assertMentions(
      thrown { _ = try ModelLoader.load(npz, arch: "vit_nonsense") },
      [npz, "vit_nonsense", "known families"])
    assertMentions(
      thrown { _ = try ModelLoader.load(npz, arch: "deit3_small_patch16_224") },
      [npz, "deit3_small_patch16_224", "vit_*"])
  }

  func testMAPHeadCheckpointIsRefused() throws {
    var arch = try tinyArchitecture()
    arch.config.embedDim = 16
    arch.config.depth = 3
    let npz = npzFixture("bigvision_vit.npz")
    assertMentions(
      thrown { _ = try ModelLoader.loadNumpy(npz, architecture: arch) }, [npz.path, "MAP"])
  }

  func testNpzMatchesTheEquivalentTimmFolder() throws {
    let timm = try ModelLoader.load(try equivalentTimmFolder().path)
    let x = randomPixels([3, 3, 32, 32])
    let expected = withNoGrad { timm.model.forward(x, hiddenStates: false) }

    // With its pre_logits layer the checkpoint's head is left out: features only.
    let npz = try ModelLoader.loadNumpy(
      npzFixture("google_vit.npz"), architecture: tinyArchitecture())
    XCTAssertEqual(npz.format, .googleNPZ)
    XCTAssertEqual(npz.name, "vit_small_patch8_224.augreg_in21k")
    XCTAssertFalse(npz.hasHead)
    XCTAssertEqual(npz.notes.count, 1)
    assertMatches(withNoGrad { npz.model.features(x) }, expected.features, "npz features")

    // Without it the 5-class head is mapped and the logits are timm's.
    let plain = try ModelLoader.loadNumpy(npzWithoutPreLogits(), architecture: tinyArchitecture())
    XCTAssertEqual(plain.model.config.numClasses, 5)
    XCTAssertEqual(plain.notes, [])
    let out = withNoGrad { plain.model.forward(x, hiddenStates: false) }
    assertMatches(out.features, expected.features, "npz features")
    assertMatches(
      withNoGrad { plain.model.logits(out) }, withNoGrad { timm.model.logits(expected) },
      "npz logits")
  }

  func testNpzPositionTableIsResampledToTheArchitecturesGrid() throws {
    let loaded = try ModelLoader.loadNumpy(
      npzFixture("google_vit.npz"), architecture: tinyArchitecture(imgSize: Size2D(24, 48)))
    XCTAssertEqual(loaded.model.config.gridSize, Size2D(3, 6))
    // timm's `_load_weights` into a 24×48 model of the same sizes.
    let reference = try SafetensorsFile(
      contentsOf: npzFixture("google_vit_grid3x6_reference.safetensors"))
    assertMatches(loaded.model.posEmbed, try reference.tensor("pos_embed"), "pos_embed")
    XCTAssertTrue(loaded.notes.contains { $0.contains("resampled") })
    XCTAssertEqual(loaded.preprocessing?.inputSize, [3, 24, 48])
  }

  func testNpzPreprocessingIsTimmsDefaultForTheArchitecture() throws {
    // timm's vision_transformer.py `_cfg`: bicubic, crop_pct 0.9, Inception mean/std; its
    // 384-pixel augreg cfgs: crop_pct 1.0. deit.py `_cfg`: crop_pct 0.9, ImageNet mean/std.
    let vit = ModelLoader.defaultPreprocessing(
      for: try TimmArchitecture("vit_base_patch16_224.augreg_in21k_ft_in1k"))
    XCTAssertEqual(
      vit,
      ImagePreprocessConfig(
        inputSize: [3, 224, 224], interpolation: .bicubic, cropPct: 0.9, cropMode: .center,
        mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]))
    let vit384 = ModelLoader.defaultPreprocessing(for: try TimmArchitecture("vit_base_patch16_384"))
    XCTAssertEqual(vit384.inputSize, [3, 384, 384])
    XCTAssertEqual(vit384.cropPct, 1.0)
    let deit = ModelLoader.defaultPreprocessing(for: try TimmArchitecture("deit_small_patch16_224"))
    XCTAssertEqual(deit.mean, [0.485, 0.456, 0.406])
    XCTAssertEqual(deit.std, [0.229, 0.224, 0.225])
    XCTAssertEqual(deit.cropPct, 0.9)
  }

  // MARK: Default decoders

  func testDatasetsDecodePNGAndNetpbmByDefault() throws {
    let root = file("classes")
    let a = root.appendingPathComponent("a")
    let b = root.appendingPathComponent("b")
    for dir in [a, b] {
      try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    let red = RGBImage(width: 2, height: 1, pixels: [255, 0, 0, 250, 1, 2])
    let grey = RGBImage(width: 1, height: 2, pixels: [7, 7, 7, 9, 9, 9])
    try ImageCodec.encodePNG(red).write(to: a.appendingPathComponent("x.png"))
    try PNMCodec.write(grey, to: b.appendingPathComponent("y.ppm"))
    // A PNG under a Netpbm name still decodes: the format comes from the bytes.
    try ImageCodec.encodePNG(grey).write(to: b.appendingPathComponent("z.pgm"))
    let dataset = try ImageFolderDataset(root: root)
    XCTAssertEqual(dataset.count, 3)
    XCTAssertEqual(try dataset.image(at: 0), red)
    XCTAssertEqual(try dataset.image(at: 1), grey)
    XCTAssertEqual(try dataset.image(at: 2), grey)

    try Data("a/x.png 0\nb/y.ppm 1\n".utf8).write(to: root.appendingPathComponent("train800.txt"))
    let list = try VTABListDataset(root: root, split: .train800)
    XCTAssertEqual(list.count, 2)
    XCTAssertEqual(try list.image(at: 1), grey)
  }
}

// MARK: - Embedding

final class EmbeddingTests: EmbedScratchTestCase {
  private func read(_ url: URL) throws -> SafetensorsFile { try SafetensorsFile(contentsOf: url) }

  /// Embeds the `vit_augreg` fixture's input in `precision` and checks the features against
  /// timm's FP32 ones: within `tolerance` (relative L2) and not FP32's own where the CPU runs
  /// the precision natively (`available`); else the run says so, records fp32 and gives FP32's.
  private func assertEmbedding(
    in precision: BackbonePrecision, available: Bool, tolerance: Float,
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let fx = try ViTFixture("vit_augreg")
    let pixels = try pixelsFile(try fx.tensor("input"), "\(precision.rawValue).safetensors")
    let out = self.file("\(precision.rawValue)-out.safetensors")
    let summary = try Embedding.run(
      model: fx.folder.path, inputs: [pixels.path], output: out.path, precision: precision)
    let result = try read(out)
    let features = try result.tensor("features")
    let expected = try fx.tensor("features")
    let diff = zip(features.scalars, expected.scalars).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
    let relative = (diff / expected.scalars.map { $0 * $0 }.reduce(0, +)).squareRoot()
    if available {
      XCTAssertEqual(result.metadata["precision"], precision.rawValue, file: file, line: line)
      XCTAssertLessThan(relative, tolerance, file: file, line: line)
      XCTAssertGreaterThan(
        relative, 1e-5, "the products ran in low precision", file: file, line: line)
    } else {
      XCTAssertEqual(result.metadata["precision"], "fp32", file: file, line: line)
      XCTAssertTrue(
        summary.notes.contains { $0.contains("running FP32") }, "\(summary.notes)", file: file,
        line: line)
      XCTAssertLessThan(relative, 1e-5, file: file, line: line)
    }
  }

  /// `--precision bf16`: the matrices in BF16 on oneDNN, features within 2e-2 (relative L2) of
  /// timm's FP32 ones; the file records the precision it ran in. Without native BF16 the run
  /// says so and its features are FP32's.
  func testBF16EmbeddingStaysNearFP32() throws {
    try assertEmbedding(in: .bf16, available: BF16Support.isAvailable, tolerance: 2e-2)
  }

  /// `--precision int8`: s8 matrices with per-channel scales, each input row quantized on the
  /// fly; features within 5e-2 (relative L2) of timm's FP32 ones.
  func testInt8EmbeddingStaysNearFP32() throws {
    try assertEmbedding(in: .int8, available: Int8Support.isAvailable, tolerance: 5e-2)
  }

  /// `graft embed` on each fixture's recorded input reproduces timm's features and logits, in
  /// batches of one and of the whole input.
  func testPixelsReproduceTimmOutputs() throws {
    for (family, inputKey, prefix) in [
      ("vit_augreg", "input", ""), ("deit_distilled", "input", ""), ("mae", "input", ""),
      ("dinov2", "input", ""), ("dinov2_reg", "dyn.input", "dyn."),
    ] {
      let fx = try ViTFixture(family)
      let pixels = try pixelsFile(try fx.tensor(inputKey), "\(family).safetensors")
      for batch in [1, 32] {
        let out = file("\(family)-\(batch).safetensors")
        let summary = try Embedding.run(
          model: fx.folder.path, inputs: [pixels.path], output: out.path, batchSize: batch)
        let result = try read(out)
        assertMatches(
          try result.tensor("features"), try fx.tensor(prefix + "features"), "\(family) features")
        XCTAssertEqual(summary.count, 2)
        if family == "dinov2" {
          // No head: features only.
          XCTAssertEqual(result.names, ["features"])
          XCTAssertNil(summary.logitsShape)
        } else {
          assertMatches(
            try result.tensor("logits"), try fx.tensor(prefix + "logits"), "\(family) logits")
        }
        XCTAssertEqual(result.metadata["input_kind"], "pixels")
        XCTAssertEqual(result.metadata["inputs"], "[\"\(pixels.path)\"]")
        XCTAssertEqual(result.metadata["model_source"], fx.folder.path)
        XCTAssertEqual(result.metadata["graft_version"], GraftVersion.string)
      }
    }
  }

  func testImagesGiveOneRowEach() throws {
    var g = RandomGenerator(seed: 3)
    func noise(_ w: Int, _ h: Int) -> RGBImage {
      RGBImage(
        width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in UInt8(g.nextInt(below: 256)) })
    }
    let a = file("a.png")
    let b = file("b.png")
    let c = file("c.jpg")
    let imageA = noise(50, 40)
    try ImageCodec.encodePNG(imageA).write(to: a)
    try ImageCodec.encodePNG(noise(37, 61)).write(to: b)
    try ImageCodec.encodePNG(imageA).write(to: c)  // same pixels, misleading extension
    let out = file("out.safetensors")
    let summary = try Embedding.run(
      model: augreg.path, inputs: [a.path, b.path, c.path], output: out.path, batchSize: 2)
    XCTAssertEqual(summary.featureShape, [3, 32])
    XCTAssertEqual(summary.logitsShape, [3, 10])
    let result = try read(out)
    let f = try result.tensor("features")
    XCTAssertEqual(f.shape, [3, 32])
    XCTAssertEqual(try result.tensor("logits").shape, [3, 10])
    let rows = (0..<3).map { f.narrow(0, start: $0, length: 1) }
    // Same image in another batch: same features up to the GEMM's summation order.
    assertMatches(rows[2], rows[0], relative: 1e-5, "the same image in another batch")
    let difference = zip(rows[0].scalars, rows[1].scalars).map { Swift.abs($0 - $1) }.max()!
    XCTAssertGreaterThan(difference, 1e-3, "different images give different features")
    XCTAssertEqual(result.metadata["input_kind"], "images")
    XCTAssertEqual(result.metadata["model"], "vit_small_patch16_224.augreg_in21k_ft_in1k")
    XCTAssertTrue(result.metadata["preprocessing"]?.contains("\"crop_pct\":0.9") == true)
  }

  /// A one-colour image survives resizing and cropping unchanged, so its model input is known
  /// by hand: (value / 255 − 0.5) / 0.5 per channel. The image path must agree with pixels.
  func testUniformImageMatchesHandMadePixels() throws {
    let (w, h) = (45, 38)
    let colour: [UInt8] = [200, 30, 121]
    let image = RGBImage(
      width: w, height: h, pixels: (0..<(w * h)).flatMap { _ in colour })
    let png = file("uniform.png")
    try ImageCodec.encodePNG(image).write(to: png)
    let pixels = Tensor(shape: [1, 3, 32, 32])
    for ch in 0..<3 {
      let v = (Float(colour[ch]) / 255 - 0.5) / 0.5
      for i in 0..<(32 * 32) { pixels.pointer[ch * 32 * 32 + i] = v }
    }
    let fromImage = file("image.safetensors")
    let fromPixels = file("pixels-out.safetensors")
    try Embedding.run(model: augreg.path, inputs: [png.path], output: fromImage.path)
    try Embedding.run(
      model: augreg.path, inputs: [try pixelsFile(pixels).path], output: fromPixels.path)
    assertMatches(
      try read(fromImage).tensor("features"), try read(fromPixels).tensor("features"),
      relative: 1e-5, "uniform image features")
    assertMatches(
      try read(fromImage).tensor("logits"), try read(fromPixels).tensor("logits"),
      relative: 1e-5, "uniform image logits")
  }

  func testNpzWithArchEmbedsThroughTheCommand() throws {
    // No timm name fits the tiny checkpoint, so only the refusal goes through `run`; the
    // mapping itself is checked in ModelLoaderTests.
    let pixels = try pixelsFile(Tensor(shape: [1, 3, 32, 32]))
    let npz = npzFixture("google_vit.npz").path
    let out = file("out.safetensors")
    assertMentions(
      thrown {
        try Embedding.run(model: npz, inputs: [pixels.path], output: out.path)
      }, [npz, "--arch"])
    assertMentions(
      thrown {
        try Embedding.run(
          model: npz, arch: "vit_small_patch16_224", inputs: [pixels.path], output: out.path)
      }, [npz, "width 32 vs 384"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
  }

  func testBundledModelThroughTheCommand() throws {
    let models = file("models")
    try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: augreg, to: models.appendingPathComponent("tiny"))
    let fx = try ViTFixture("vit_augreg")
    let out = file("out.safetensors")
    try Embedding.run(
      model: "tiny", inputs: [try pixelsFile(try fx.tensor("input")).path], output: out.path,
      searchPaths: [models])
    let result = try read(out)
    XCTAssertEqual(result.metadata["model"], "tiny")
    assertMatches(try result.tensor("features"), try fx.tensor("features"), "bundled features")
  }

  // MARK: Bad input

  func testWrongPixelsAreRefusedBeforeTheModelRuns() throws {
    let out = file("out.safetensors")
    func run(_ pixels: Tensor, _ name: String) -> (any Error)? {
      thrown {
        try Embedding.run(
          model: self.augreg.path, inputs: [try self.pixelsFile(pixels, name).path],
          output: out.path)
      }
    }
    let small = file("small.safetensors").path
    assertMentions(
      run(Tensor(shape: [2, 3, 24, 24]), "small.safetensors"), [small, "32×32", "24×24"])
    let grey = file("grey.safetensors").path
    assertMentions(run(Tensor(shape: [2, 1, 32, 32]), "grey.safetensors"), [grey, "3 channels"])
    let flat = file("flat.safetensors").path
    assertMentions(run(Tensor(shape: [3, 32, 32]), "flat.safetensors"), [flat, "[B, 3, H, W]"])
    let empty = file("empty.safetensors").path
    assertMentions(run(Tensor(shape: [0, 3, 32, 32]), "empty.safetensors"), [empty, "no samples"])
    // A dynamic-size model takes other sizes, but only multiples of its patch (14).
    let odd = try pixelsFile(Tensor(shape: [1, 3, 28, 30]), "odd.safetensors")
    assertMentions(
      thrown {
        try Embedding.run(
          model: vitFixtures.appendingPathComponent("dinov2_reg").path, inputs: [odd.path],
          output: out.path)
      }, [odd.path, "14×14"])
    // A safetensors file without `pixels`.
    let other = file("other.safetensors")
    try Safetensors.write(["images": Tensor(shape: [1, 3, 32, 32])], to: other)
    assertMentions(
      thrown { try Embedding.run(model: self.augreg.path, inputs: [other.path], output: out.path) },
      [other.path, "'pixels'", "images"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
  }

  func testCorruptImageIsNamedAndTheOldOutputSurvives() throws {
    let good = file("good.png")
    try ImageCodec.encodePNG(
      RGBImage(width: 8, height: 8, pixels: [UInt8](repeating: 90, count: 192))
    )
    .write(to: good)
    let bad = file("bad.png")
    var bytes = [UInt8](
      try ImageCodec.encodePNG(
        RGBImage(width: 8, height: 8, pixels: [UInt8](repeating: 10, count: 192))))
    bytes = Array(bytes.prefix(40))  // the signature and header, then nothing
    try Data(bytes).write(to: bad)
    let out = file("out.safetensors")
    let previous = Data("results of an earlier run".utf8)
    try previous.write(to: out)
    let before = try scratchListing()
    // The bad image comes in the second batch, after the first has run.
    let error = thrown {
      try Embedding.run(
        model: self.augreg.path, inputs: [good.path, bad.path], output: out.path, batchSize: 1)
    }
    XCTAssertTrue(error is ImageError, "\(String(describing: error))")
    assertMentions(error, [bad.path])
    XCTAssertEqual(try Data(contentsOf: out), previous)
    XCTAssertEqual(try scratchListing(), before, "no temporary file left behind")

    let text = file("notes.txt")
    try Data("hello".utf8).write(to: text)
    assertMentions(
      thrown { try Embedding.run(model: self.augreg.path, inputs: [text.path], output: out.path) },
      [text.path, "unknown image format"])
    let missing = file("missing.png").path
    assertMentions(
      thrown { try Embedding.run(model: self.augreg.path, inputs: [missing], output: out.path) },
      [missing, "no such file"])
  }

  func testOutputProblemsAreFoundFirst() throws {
    let pixels = try pixelsFile(Tensor(shape: [1, 3, 32, 32]))
    let nowhere = file("no/such/folder/out.safetensors").path
    // The output is checked before anything is loaded: even a missing model reports it.
    assertMentions(
      thrown {
        try Embedding.run(model: "/no/model", inputs: [pixels.path], output: nowhere)
      }, [nowhere, "does not exist"])
    assertMentions(
      thrown {
        try Embedding.run(model: self.augreg.path, inputs: [pixels.path], output: self.scratch.path)
      }, [scratch.path, "folder"])
    assertMentions(
      thrown {
        try Embedding.run(model: self.augreg.path, inputs: [pixels.path], output: pixels.path)
      }, ["overwrite an input"])
    XCTAssertEqual(try read(pixels).names, ["pixels"], "the input is intact")
  }

  func testInputListProblems() throws {
    let out = file("out.safetensors").path
    assertMentions(
      thrown { try Embedding.run(model: self.augreg.path, inputs: [], output: out) },
      ["no inputs"])
    let pixels = try pixelsFile(Tensor(shape: [1, 3, 32, 32]))
    let png = file("a.png")
    try ImageCodec.encodePNG(RGBImage(width: 1, height: 1, pixels: [1, 2, 3])).write(to: png)
    assertMentions(
      thrown {
        try Embedding.run(model: self.augreg.path, inputs: [png.path, pixels.path], output: out)
      }, [pixels.path, "only input"])
    assertMentions(
      thrown {
        _ = try Embedding.embed(
          ModelLoader.load(self.augreg.path), .pixels(pixels), batchSize: 0)
      }, ["at least 1"])
    assertMentions(
      thrown {
        try Embedding.run(model: self.augreg.path, inputs: [self.scratch.path], output: out)
      },
      [scratch.path, "folder"])
  }
}
