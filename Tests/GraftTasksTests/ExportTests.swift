import XCTest

@testable import GraftTasks

/// `graft export` / `graft import`: the rank-2r algebra, the folds into a timm folder (merged
/// model logits equal the adapter's) and the PEFT round trip, on the bundled backbone.
final class ExportTests: XCTestCase {
  private var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-export-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

  private func random(_ shape: [Int], _ g: inout RandomGenerator) -> Tensor {
    Tensor.rand(shape, low: -0.5, high: 0.5, generator: &g)
  }

  /// A run folder of `method` on the bundled backbone with every trainable tensor randomised
  /// (so LoRA's B and BitFit's biases are not their zero start). Returns the folder and method.
  private func makeRun(
    _ method: String, options: [String: String] = [:], backbone name: String = "vit-nano-fmnist"
  ) throws -> (URL, TuningMethod) {
    let backbone = try TuneBackbone.load(name)
    var g = RandomGenerator(seed: 7)
    let m = try MethodRegistry.make(
      method, backbone: backbone.model, classes: 3, options: options, generator: &g)
    withNoGrad {
      for (_, t) in m.trainableTensors() { t.assign(t + random(t.shape, &g) * 0.2) }
    }
    let run = folder.appendingPathComponent("\(name)-\(method)")
    try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
    let config = AdapterConfig(
      method: method, formatVersion: AdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: backbone.reference,
      baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
      baseModelConfigHash: backbone.configHash, numClasses: 3, classNames: ["a", "b", "c"],
      hyperparameters: m.options, preprocessing: backbone.preprocessing,
      pointInput: backbone.pointInput, evalBatchSize: 4)
    try AdapterCheckpoint.writeConfig(config, to: run)
    try AdapterCheckpoint.writeWeights(m, to: run)
    return (run, m)
  }

  private func pixels() -> Tensor {
    var g = RandomGenerator(seed: 3)
    return Tensor.rand([2, 3, 28, 28], low: -1, high: 1, generator: &g)
  }

  private func assertClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float = 1e-4) {
    XCTAssertEqual(a.shape, b.shape)
    let scale = max(b.scalars.map(abs).max() ?? 1, 1e-3)
    let worst = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst / scale, tolerance)
  }

  func testSlicesFuseIntoOneBlockDiagonalLoRAAndSplitBack() {
    var g = RandomGenerator(seed: 1)
    let (d, r) = (4, 2)
    let q = (a: random([r, d], &g), b: random([d, r], &g))
    let v = (a: random([r, d], &g), b: random([d, r], &g))
    let fused = PEFTLoRA.fuse(["q": q, "v": v], width: d)
    XCTAssertEqual(fused.a.shape, [2 * r, d])
    XCTAssertEqual(fused.b.shape, [3 * d, 2 * r])
    let expected = Tensor.concat(
      [q.b.matmul(q.a), Tensor.zeros([d, d]), v.b.matmul(v.a)], axis: 0)
    assertClose(fused.b.matmul(fused.a), expected, 1e-6)
    let parts = PEFTLoRA.split(a: fused.a, b: fused.b, width: d)
    XCTAssertEqual(Set(parts?.keys ?? [:].keys), ["q", "v"])
    XCTAssertEqual(parts?["q"]?.a.scalars, q.a.scalars)
    XCTAssertEqual(parts?["v"]?.b.scalars, v.b.scalars)
    // A dense B is not block-diagonal: it stays one qkv LoRA.
    XCTAssertNil(PEFTLoRA.split(a: fused.a, b: random([3 * d, 2 * r], &g), width: d))
  }

  func testMergeableMethodsFoldIntoATimmFolderWithTheSameLogits() throws {
    for method in ["lora", "bitfit", "ln-tune", "full"] {
      let (run, m) = try makeRun(method, options: method == "lora" ? ["alpha": "16"] : [:])
      let out = folder.appendingPathComponent("\(method)-timm")
      try TimmExport.export(run: run, to: out)
      let merged = try ModelLoader.loadFolder(out)
      let x = pixels()
      m.setTraining(false)
      assertClose(withNoGrad { merged.model(x) }, withNoGrad { m(x) })
      let json =
        try JSONSerialization.jsonObject(
          with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
      XCTAssertEqual(json["num_classes"] as? Int, 3)
      XCTAssertEqual((json["model_args"] as? [String: Any])?["num_classes"] as? Int, 3)
      let cfg = json["pretrained_cfg"] as? [String: Any]
      XCTAssertEqual(cfg?["label_names"] as? [String], ["a", "b", "c"])
    }
  }

  func testMethodsThatDoNotFoldAreRefusedWithTheReason() throws {
    let (adapter, _) = try makeRun("adapter")
    XCTAssertThrowsError(
      try TimmExport.export(run: adapter, to: folder.appendingPathComponent("x"))
    ) { XCTAssertTrue("\($0)".contains("ReLU"), "\($0)") }
    let (vpt, _) = try makeRun("vpt-deep")
    XCTAssertThrowsError(try TimmExport.export(run: vpt, to: folder.appendingPathComponent("y"))) {
      XCTAssertTrue("\($0)".contains("--to onnx"), "\($0)")
    }
    // Every method ONNX writes is sent there; none is told that ONNX does not cover it.
    for method in ONNXExport.methods.subtracting(TimmExport.mergeable) {
      let text = try XCTUnwrap(TimmExport.refusal(method: method), method)
      XCTAssertTrue(text.contains("with `--to onnx` instead"), "\(method): \(text)")
      XCTAssertFalse(text.contains("does not cover"), "\(method): \(text)")
    }
    XCTAssertThrowsError(try PEFTLoRA.export(run: vpt, to: folder.appendingPathComponent("z"))) {
      XCTAssertTrue("\($0)".contains("lora runs"), "\($0)")
    }
  }

  /// Every point-backbone method `--to onnx` lists writes a graph on the bundled Point-MAE, and
  /// they are every method that runs on it.
  func testEveryListedPointMethodWritesAnONNXGraph() throws {
    let backbone = try TuneBackbone.load("point-mae-furniture")
    let fitting = try MethodRegistry.names.filter { name in
      var g = RandomGenerator(seed: 1)
      let builds =
        (try? MethodRegistry.make(
          name, backbone: backbone.model, classes: 3, options: [:], generator: &g)) != nil
      return try builds && !MethodRegistry.descriptor(name).takesPointClouds
    }
    XCTAssertEqual(Set(fitting), ONNXExport.pointMethods)
    for method in ONNXExport.pointMethods.sorted() {
      let (run, m) = try makeRun(method, backbone: "point-mae-furniture")
      let out = folder.appendingPathComponent("points-\(method).onnx")
      XCTAssertNoThrow(try ONNXExport.export(run: run, to: out), method)
      let size = (try? FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int) ?? 0
      let backbone = m.backbone.namedParameters().reduce(0) { $0 + $1.1.count }
      XCTAssertGreaterThan(size, 4 * backbone / 2, method)
    }
  }

  /// Every method `--to onnx` lists writes a graph on the bundled backbone: the export finds
  /// each tensor it names, and the file holds at least the backbone's and the method's trained
  /// values as float32. (onnxruntime's logits are compared in Tools/check_export.py.)
  func testEveryListedMethodWritesAnONNXGraph() throws {
    for method in ONNXExport.methods.sorted() {
      let (run, m) = try makeRun(method)
      let out = folder.appendingPathComponent("\(method).onnx")
      XCTAssertNoThrow(try ONNXExport.export(run: run, to: out), method)
      let size = (try? FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int) ?? 0
      let backbone = m.backbone.namedParameters().reduce(0) { $0 + $1.1.count }
      XCTAssertGreaterThan(size, 4 * backbone, method)
      let trained = m.trainableTensors().reduce(0) { $0 + $1.1.count }
      XCTAssertGreaterThan(size, 4 * trained, method)
    }
  }

  /// Runs on the bundled point backbone (Point-MAE) are refused by every exporter with the
  /// reason: timm and PEFT name modules of a timm Vision Transformer, and the ONNX graphs are
  /// written for one; nothing is left in the output.
  func testPointBackboneRunsAreRefusedNamingTheRun() throws {
    let (linear, _) = try makeRun("linear", backbone: "point-mae-furniture")
    let (lora, _) = try makeRun("lora", backbone: "point-mae-furniture")
    let timmOut = folder.appendingPathComponent("timm")
    XCTAssertThrowsError(try TimmExport.export(run: linear, to: timmOut)) {
      XCTAssertTrue("\($0)".contains(linear.path), "\($0)")
      XCTAssertTrue("\($0)".contains("Vision Transformer"), "\($0)")
    }
    let peftOut = folder.appendingPathComponent("peft")
    XCTAssertThrowsError(try PEFTLoRA.export(run: lora, to: peftOut)) {
      XCTAssertTrue("\($0)".contains(lora.path), "\($0)")
      XCTAssertTrue("\($0)".contains("not a timm Vision Transformer"), "\($0)")
    }
    // (ONNX takes every one of them: `testEveryListedPointMethodWritesAnONNXGraph`.)
    for out in [timmOut, peftOut] {
      XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), out.path)
    }
  }

  func testPEFTExportIsRank2rOnQKVAndImportsBackToTheSameLoRA() throws {
    let (run, m) = try makeRun("lora", options: ["rank": "2", "alpha": "3"])
    let peft = folder.appendingPathComponent("peft")
    try PEFTLoRA.export(run: run, to: peft)
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: peft.appendingPathComponent("adapter_config.json")))
      as! [String: Any]
    XCTAssertEqual(config["peft_type"] as? String, "LORA")
    XCTAssertEqual(config["r"] as? Int, 4)
    XCTAssertEqual(config["lora_alpha"] as? Double, 6)
    XCTAssertEqual(config["target_modules"] as? [String], ["attn.qkv"])
    XCTAssertEqual(config["modules_to_save"] as? [String], ["head"])
    let tensors = try SafetensorsFile(
      contentsOf: peft.appendingPathComponent("adapter_model.safetensors")
    ).tensors()
    XCTAssertEqual(tensors["base_model.model.blocks.5.attn.qkv.lora_A.weight"]?.shape, [4, 128])
    XCTAssertEqual(tensors["base_model.model.blocks.5.attn.qkv.lora_B.weight"]?.shape, [384, 4])
    XCTAssertNotNil(tensors["base_model.model.head.weight"])
    XCTAssertEqual(tensors.count, 6 * 2 + 2)

    let back = folder.appendingPathComponent("imported")
    try PEFTLoRA.importAdapter(
      peft: peft, backbone: "vit-nano-fmnist", classNames: ["a", "b", "c"], to: back)
    let loaded = try AdapterCheckpoint.load(back)
    XCTAssertEqual(loaded.method.options["targets"], "q,v")
    XCTAssertEqual(loaded.method.options["rank"], "2")
    let original = m.trainableState()
    for (name, t) in loaded.method.trainableState() {
      XCTAssertEqual(t.scalars, original[name]?.scalars, name)
    }
    let x = pixels()
    m.setTraining(false)
    assertClose(withNoGrad { loaded.method(x) }, withNoGrad { m(x) }, 1e-6)
  }

  func testMixedTargetsExportWithARankPatternAndImportBack() throws {
    let (run, m) = try makeRun("lora", options: ["rank": "2", "targets": "q,v,fc1"])
    let peft = folder.appendingPathComponent("peft-mixed")
    try PEFTLoRA.export(run: run, to: peft)
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: peft.appendingPathComponent("adapter_config.json")))
      as! [String: Any]
    XCTAssertEqual(config["r"] as? Int, 2)
    XCTAssertEqual(config["target_modules"] as? [String], ["attn.qkv", "mlp.fc1"])
    XCTAssertEqual(config["rank_pattern"] as? [String: Int], ["attn.qkv": 4])
    XCTAssertEqual(config["alpha_pattern"] as? [String: Double], ["attn.qkv": 16])
    let back = folder.appendingPathComponent("imported-mixed")
    try PEFTLoRA.importAdapter(peft: peft, backbone: "vit-nano-fmnist", to: back)
    let loaded = try AdapterCheckpoint.load(back)
    XCTAssertEqual(loaded.method.options["targets"], "q,v,fc1")
    let x = pixels()
    m.setTraining(false)
    assertClose(withNoGrad { loaded.method(x) }, withNoGrad { m(x) }, 1e-6)
  }

  func testImportNamesTheBadFile() throws {
    XCTAssertThrowsError(
      try PEFTLoRA.importAdapter(
        peft: folder, backbone: "vit-nano-fmnist", to: folder.appendingPathComponent("o"))
    ) { XCTAssertTrue("\($0)".contains("adapter_config.json"), "\($0)") }
    let (run, _) = try makeRun("lora")
    let peft = folder.appendingPathComponent("peft")
    try PEFTLoRA.export(run: run, to: peft)
    // A LoRA for another width does not fit the backbone: refused, naming the tensors file.
    var g = RandomGenerator(seed: 2)
    try Safetensors.write(
      [
        "base_model.model.blocks.0.attn.qkv.lora_A.weight": random([4, 64], &g),
        "base_model.model.blocks.0.attn.qkv.lora_B.weight": random([192, 4], &g),
      ], to: peft.appendingPathComponent("adapter_model.safetensors"))
    XCTAssertThrowsError(
      try PEFTLoRA.importAdapter(
        peft: peft, backbone: "vit-nano-fmnist", to: folder.appendingPathComponent("o"))
    ) { XCTAssertTrue("\($0)".contains("adapter_model.safetensors"), "\($0)") }
  }

  /// Import never writes into a folder that holds anything (a finished run would be left half
  /// replaced, its summary and checkpoints describing another method), and class names given
  /// twice are refused; in both cases nothing is written.
  func testImportRefusesAFolderInUseAndRepeatedClassNames() throws {
    let (run, _) = try makeRun("lora")
    let peft = folder.appendingPathComponent("peft")
    try PEFTLoRA.export(run: run, to: peft)
    let before = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
    let config = try Data(contentsOf: run.appendingPathComponent("adapter_config.json"))
    XCTAssertThrowsError(
      try PEFTLoRA.importAdapter(peft: peft, backbone: "vit-nano-fmnist", to: run)
    ) {
      XCTAssertTrue("\($0)".contains(run.path) && "\($0)".contains("new or empty folder"), "\($0)")
    }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run.path).sorted(), before)
    XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("adapter_config.json")), config)
    let fresh = folder.appendingPathComponent("fresh")
    XCTAssertThrowsError(
      try PEFTLoRA.importAdapter(
        peft: peft, backbone: "vit-nano-fmnist", classNames: ["a", "b", "a"], to: fresh)
    ) { XCTAssertTrue("\($0)".contains("given twice: a"), "\($0)") }
    XCTAssertFalse(FileManager.default.fileExists(atPath: fresh.path))
    // An empty folder is fine.
    try FileManager.default.createDirectory(at: fresh, withIntermediateDirectories: true)
    try PEFTLoRA.importAdapter(peft: peft, backbone: "vit-nano-fmnist", to: fresh)
    XCTAssertNoThrow(try AdapterCheckpoint.load(fresh))
  }
}

/// The protobuf writer behind `--to onnx`, against encodings from the protobuf spec.
final class ExportONNXTests: XCTestCase {
  func testProtobufEncodings() {
    var p = ProtoWriter()
    p.int(1, 150)  // the spec's example: 08 96 01
    XCTAssertEqual(p.bytes, [0x08, 0x96, 0x01])
    p = ProtoWriter()
    p.string(2, "testing")  // 12 07 74 65 73 74 69 6e 67
    XCTAssertEqual(p.bytes, [0x12, 0x07] + Array("testing".utf8))
    p = ProtoWriter()
    p.int(3, -1)  // int64 -1: ten bytes of varint
    XCTAssertEqual(p.bytes, [0x18] + Array(repeating: 0xff, count: 9) + [0x01])
    p = ProtoWriter()
    p.float(2, 1)  // fixed32, little-endian 1.0f
    XCTAssertEqual(p.bytes, [0x15, 0x00, 0x00, 0x80, 0x3f])
  }

  func testGraphNamesEveryWeightOnceAndRefusesAMissingOne() throws {
    let g = ONNXGraph(state: ["w": Tensor([1, 2, 3, 4], shape: [2, 2])])
    XCTAssertEqual(try g.weight("w"), "w")
    XCTAssertEqual(try g.weight("w"), "w")
    XCTAssertThrowsError(try g.weight("missing")) { XCTAssertTrue("\($0)".contains("missing")) }
    let bytes = g.model(input: ("x", ["batch", "2"]), output: ("w", ["2", "2"]))
    // ModelProto starts with ir_version = 8 (field 1, varint).
    XCTAssertEqual(Array(bytes.prefix(2)), [0x08, 0x08])
  }
}
