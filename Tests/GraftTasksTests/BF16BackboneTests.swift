import XCTest

@testable import GraftTasks

/// `backbone.precision=bf16`: the frozen matrices get BF16 copies, trained tensors stay FP32,
/// the run records the precision, loading the folder runs the backbone so again (so evaluation
/// reproduces the run's logits).
/// (The feature cache keeping precisions apart is in FeatureCacheTests.)
final class BF16BackboneTests: XCTestCase {
  func testLoRARunInBF16() throws {
    let (fp32Folder, bf16Folder) = (temporaryFolder(), temporaryFolder())
    defer {
      try? FileManager.default.removeItem(at: fp32Folder)
      try? FileManager.default.removeItem(at: bf16Folder)
    }
    let fp32 = try XCTUnwrap(shortRun("lora", folder: fp32Folder).1)
    let (trainer, run) = try shortRun(
      "lora", extra: ["backbone.precision=bf16"], folder: bf16Folder)
    let bf16 = try XCTUnwrap(run)
    XCTAssertEqual(fp32.backbonePrecision, .fp32)
    guard BF16Support.isAvailable else {
      XCTAssertEqual(bf16.backbonePrecision, .fp32)
      XCTAssertTrue(trainer.precisionNote?.contains("running FP32") ?? false)
      XCTAssertEqual(bf16.test.top1, fp32.test.top1)
      return
    }
    XCTAssertNil(trainer.precisionNote)
    XCTAssertEqual(bf16.backbonePrecision, .bf16)
    let read = try TuneSummary.read(from: bf16Folder.appendingPathComponent("summary.json"))
    XCTAssertEqual(read.backbonePrecision, .bf16)
    XCTAssertEqual(try AdapterCheckpoint.readConfig(bf16Folder).backbonePrecision, .bf16)
    XCTAssertNil(try AdapterCheckpoint.readConfig(fp32Folder).backbonePrecision)

    // The frozen matrices run in BF16; LoRA's own matrices train in FP32.
    let model = trainer.backbone.model
    for (name, tensor) in model.namedParameters() where tensor.rank == 2 {
      XCTAssertEqual(tensor.productsRunInBF16, !tensor.requiresGrad, name)
    }
    XCTAssertFalse(trainer.method.trainableTensors().isEmpty)
    for (name, tensor) in trainer.method.trainableTensors() {
      XCTAssertFalse(tensor.productsRunInBF16, name)
    }
    // Same task, same recipe: the BF16 run learns as the FP32 one does.
    XCTAssertGreaterThan(bf16.test.top1, 0.4)
    XCTAssertEqual(bf16.test.top1, fp32.test.top1, accuracy: 0.05)

    // Loading the folder on a fresh backbone runs it in BF16 again: the run's logits, exactly.
    let loaded = try AdapterCheckpoint.load(bf16Folder, backbone: tinyBackbone())
    let (result, logits) = try loaded.evaluate(digits.test)
    let saved = try SafetensorsFile(
      contentsOf: bf16Folder.appendingPathComponent("test_logits.safetensors")
    ).tensor("logits")
    XCTAssertEqual(logits.scalars, saved.scalars)
    XCTAssertEqual(result.top1, bf16.test.top1)
  }

  /// A process that ran a BF16 run and then an FP32 one on the same backbone object runs the
  /// second in FP32 (the copies are dropped), to the result of a fresh backbone.
  func testFP32RunAfterBF16RunOnTheSameBackbone() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let folders = (0..<3).map { _ in temporaryFolder() }
    defer { for f in folders { try? FileManager.default.removeItem(at: f) } }
    let shared = tinyBackbone()
    _ = try shortRun(
      "linear", extra: ["backbone.precision=bf16"], folder: folders[0], backbone: shared)
    let after = try XCTUnwrap(shortRun("linear", folder: folders[1], backbone: shared).1)
    let fresh = try XCTUnwrap(shortRun("linear", folder: folders[2]).1)
    XCTAssertEqual(after.backbonePrecision, .fp32)
    XCTAssertEqual(after.test.loss, fresh.test.loss)
  }

  /// A detector's frozen backbone follows `backbone.precision` as a classifier's does.
  func testDetectorBackboneInBF16() throws {
    var config = try TuneConfig.preset(for: "lora")
    for s in ["backbone.precision=bf16", "det.image_size=64"] { try config.set(assignment: s) }
    let detector = try DetectionModel(backbone: tinyBackbone(), config: config, numClasses: 3)
    let model = try XCTUnwrap(detector.method.backbone as? VisionTransformer)
    let frozen = model.namedParameters().filter { $0.tensor.rank == 2 && !$0.tensor.requiresGrad }
    XCTAssertFalse(frozen.isEmpty)
    for (name, tensor) in frozen {
      XCTAssertEqual(tensor.productsRunInBF16, BF16Support.isAvailable, name)
    }
    XCTAssertEqual(detector.precisionNote == nil, BF16Support.isAvailable)
  }

  /// INT8 is for inference: a tuning run refuses it, and evaluating a run folder with it gives
  /// nearly the FP32 accuracy with every frozen matrix in s8.
  func testInt8IsForInference() throws {
    var config = try TuneConfig.preset(for: "lora")
    XCTAssertThrowsError(try config.set(assignment: "backbone.precision=int8")) {
      XCTAssertTrue("\($0)".contains("inference"), "\($0)")
    }
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(shortRun("lora", folder: folder).1)
    let loaded = try AdapterCheckpoint.load(folder, backbone: tinyBackbone(), precision: .int8)
    // Without VNNI the note says that INT8 was asked for now, not that the FP32 run used it.
    XCTAssertEqual(
      loaded.notes.contains { $0.contains("asked to run in int8") }, !Int8Support.isAvailable,
      "\(loaded.notes)")
    XCTAssertFalse(loaded.notes.contains { $0.contains("the run's backbone ran in") })
    let model = loaded.backbone.model
    for (name, tensor) in model.namedParameters() where tensor.rank == 2 && !tensor.requiresGrad {
      XCTAssertEqual(tensor.productsRunInInt8, Int8Support.isAvailable, name)
    }
    // The trained matrices run in INT8 as well: the head and LoRA's own.
    XCTAssertEqual(loaded.method.head.weight.productsRunInInt8, Int8Support.isAvailable)
    XCTAssertTrue(loaded.method.trainableTensors().isEmpty)
    let (result, _) = try loaded.evaluate(digits.test)
    XCTAssertEqual(result.top1, summary.test.top1, accuracy: 0.03)
  }

  /// A run folder whose recorded precision is not one Graft knows is refused, naming the file.
  func testUnknownRecordedPrecisionIsANamedError() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    _ = try shortRun("linear", extra: ["train.epochs=1"], folder: folder)
    for (file, key) in [
      ("summary.json", "backbone_precision"), ("adapter_config.json", "backbone_precision"),
    ] {
      let url = folder.appendingPathComponent(file)
      var object = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
      object[key] = "fp16"
      try JSONSerialization.data(withJSONObject: object).write(to: url)
    }
    XCTAssertThrowsError(
      try TuneSummary.read(from: folder.appendingPathComponent("summary.json"))
    ) {
      XCTAssertTrue("\($0)".contains("summary.json"), "\($0)")
      XCTAssertTrue("\($0)".contains("fp16"), "\($0)")
    }
    XCTAssertThrowsError(try AdapterCheckpoint.readConfig(folder)) {
      XCTAssertTrue("\($0)".contains("adapter_config.json"), "\($0)")
    }
  }
}
