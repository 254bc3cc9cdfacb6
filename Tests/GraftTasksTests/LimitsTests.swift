import XCTest

@testable import GraftTasks

/// Sizes that would allocate without bound (or divide by zero) are refused with named errors
/// before anything is allocated, and quickly.
final class LimitsTests: XCTestCase {
  /// A copy of the tiny timm fixture with `change` applied to its `config.json`.
  func editedModel(in work: URL, _ change: (inout [String: Any]) -> Void) throws -> URL {
    let model = work.appendingPathComponent("model-\(UUID().uuidString)")
    try FileManager.default.copyItem(
      at: URL(fileURLWithPath: tinyTimmFolder), to: model)
    let url = model.appendingPathComponent("config.json")
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    change(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: url)
    return model
  }

  /// `model_args.<key> = value`.
  func modelArg(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
    { json in
      var args = json["model_args"] as! [String: Any]
      args[key] = value
      json["model_args"] = args
    }
  }

  func testAHugeDepthInConfigJSONIsRefusedAtOnce() throws {
    let work = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: work) }
    for depth in [1_000_000_000, 100_000] {
      let model = try editedModel(in: work, modelArg("depth", depth))
      let started = Date()
      XCTAssertThrowsError(try TuneBackbone.load(model.path)) {
        XCTAssertTrue($0 is FileError, "\($0)")
        XCTAssertTrue("\($0)".contains("config.json") && "\($0)".contains("depth"), "\($0)")
      }
      XCTAssertLessThan(Date().timeIntervalSince(started), 2, "depth \(depth)")
    }
  }

  func testAHugeWidthOrHeadInConfigJSONIsRefused() throws {
    let work = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: work) }
    for (key, value) in [
      ("embed_dim", 1 << 30), ("num_classes", 2_147_483_647), ("img_size", 1 << 20),
      ("reg_tokens", 1 << 30), ("mlp_ratio", 1e9),
    ] as [(String, Any)] {
      let model = try editedModel(in: work, modelArg(key, value))
      XCTAssertThrowsError(try TuneBackbone.load(model.path), key) {
        XCTAssertTrue("\($0)".contains("config.json"), "\(key): \($0)")
      }
    }
  }

  func testAHugeMethodSizeIsRefused() throws {
    for (method, assignment) in [
      ("lora", "method.rank=100000000"), ("adapter", "method.bottleneck=100000000"),
      ("vpt-deep", "method.prompt_length=100000000"), ("mp", "method.heads=100000000"),
      ("mp+", "method.psrp_rank=100000000"), ("lst", "method.reduction=100000000"),
      ("unipt", "method.reduction=100000000"), ("hst", "method.meta_tokens=100000000"),
    ] {
      var config = try TuneConfig.preset(for: method)
      XCTAssertThrowsError(try config.set(assignment: assignment), assignment) {
        XCTAssertTrue($0 is ConfigError, "\($0)")
        XCTAssertTrue(
          "\($0)".contains(String(assignment.prefix { $0 != "=" })), "\(assignment): \($0)")
      }
    }
  }

  func testAHugeClassCountIsRefused() throws {
    var generator = RandomGenerator(seed: 0)
    XCTAssertThrowsError(
      try MethodRegistry.make(
        "linear", backbone: tinyBackbone().model, classes: 2_147_483_647, generator: &generator)
    ) { XCTAssertTrue("\($0)".contains("classes"), "\($0)") }
  }

  func testAHugeVTABLabelIsRefused() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    for label in [2_147_483_647, 1_000_000] {
      for split in ["train800", "val200", "test"] {
        let line = split == "test" ? "a.png \(label)\n" : "a.png 1\n"
        try line.write(
          to: root.appendingPathComponent(split + ".txt"), atomically: true, encoding: .utf8)
      }
      XCTAssertThrowsError(try ImageTuneData.load(root.path), "\(label)") {
        XCTAssertTrue($0 is DatasetError, "\($0)")
        XCTAssertTrue("\($0)".contains("test.txt") && "\($0)".contains("\(label)"), "\($0)")
      }
    }
  }

  func testAnAdapterConfigWithABadEvalBatchSizeOrClassCountIsRefused() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    _ = try shortRun("linear", extra: ["train.epochs=1", "data.train_samples=20"], folder: folder)
    let url = folder.appendingPathComponent(AdapterCheckpoint.configFile)
    let original = try Data(contentsOf: url)
    for (key, value) in [
      ("eval_batch_size", 0), ("eval_batch_size", -3), ("num_classes", 2_147_483_647),
      ("num_classes", 0),
    ] {
      var json = try JSONSerialization.jsonObject(with: original) as! [String: Any]
      json[key] = value
      try JSONSerialization.data(withJSONObject: json).write(to: url)
      XCTAssertThrowsError(try AdapterCheckpoint.load(folder, backbone: tinyBackbone())) {
        XCTAssertTrue($0 is ConfigError, "\($0)")
        XCTAssertTrue("\($0)".contains(url.path) && "\($0)".contains(key), "\(key): \($0)")
      }
    }
  }

  func testPretrainingRefusesAHugeModel() throws {
    var config = PretrainConfig()
    try config.set("model.depth", "1000000000")
    XCTAssertThrowsError(try Pretrainer(config: config, classNames: ["a", "b"])) {
      XCTAssertTrue("\($0)".contains("depth"), "\($0)")
    }
  }
}
