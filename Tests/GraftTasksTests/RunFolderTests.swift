import XCTest

@testable import GraftTasks

final class RunFolderTests: XCTestCase {
  func testResumedRunEndsLikeAnUninterruptedOne() throws {
    let straight = temporaryFolder()
    let resumed = temporaryFolder()
    defer {
      try? FileManager.default.removeItem(at: straight)
      try? FileManager.default.removeItem(at: resumed)
    }
    // Dropout in the method so the per-epoch random streams matter too.
    let extra = ["train.epochs=3", "data.train_samples=200", "method.dropout=0.1"]
    let a = try XCTUnwrap(shortRun("lora", extra: extra, folder: straight).1)
    // Interrupted after one epoch, then resumed in a fresh trainer (a new process).
    let (_, none) = try shortRun("lora", extra: extra, folder: resumed, stopAfter: 1)
    XCTAssertNil(none)
    let b = try XCTUnwrap(shortRun("lora", extra: extra, folder: resumed, resume: true).1)
    XCTAssertEqual(a.test, b.test)
    XCTAssertEqual(a.bestEpoch, b.bestEpoch)
    let file = AdapterCheckpoint.weightsFile
    XCTAssertEqual(
      try Data(contentsOf: straight.appendingPathComponent(file)),
      try Data(contentsOf: resumed.appendingPathComponent(file)))
    XCTAssertEqual(
      try Data(contentsOf: straight.appendingPathComponent("test_logits.safetensors")),
      try Data(contentsOf: resumed.appendingPathComponent("test_logits.safetensors")))
    // metrics.jsonl: one line per epoch, the same numbers except wall time.
    func lines(_ folder: URL) throws -> [[String: Any]] {
      try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        .split(separator: "\n").map {
          var o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
          o["seconds"] = nil
          return o
        }
    }
    let la = try lines(straight)
    let lb = try lines(resumed)
    XCTAssertEqual(la.count, 3)
    XCTAssertEqual(
      la.map { NSDictionary(dictionary: $0) }, lb.map { NSDictionary(dictionary: $0) })
  }

  /// A run whose `tune_config.yaml` was emptied or lost a key is not resumed with defaults: the
  /// fingerprint in `run.json` no longer matches, and the error names the file; restored, the
  /// run resumes. A run recorded before the fingerprint still needs a file that names a method.
  func testResumeRefusesAChangedOrEmptiedConfigFile() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let extra = ["train.epochs=2", "data.train_samples=100"]
    XCTAssertNil(try shortRun("linear", extra: extra, folder: folder, stopAfter: 1).1)
    let file = folder.appendingPathComponent("tune_config.yaml")
    let original = try String(contentsOf: file, encoding: .utf8)
    let withoutEpochs =
      original.split(separator: "\n").filter { !$0.hasPrefix("train.epochs:") }
      .joined(separator: "\n") + "\n"
    for text in ["", withoutEpochs] {
      try text.write(to: file, atomically: true, encoding: .utf8)
      XCTAssertThrowsError(try shortRun("linear", extra: extra, folder: folder, resume: true)) {
        XCTAssertTrue("\($0)".contains(file.path), "\($0)")
        XCTAssertTrue("\($0)".contains("not the settings the run started with"), "\($0)")
      }
    }
    // Before the fingerprint: an empty file names no method.
    let runJSON = folder.appendingPathComponent("run.json")
    let run = try String(contentsOf: runJSON, encoding: .utf8)
    XCTAssertTrue(run.contains("config_fnv1a64"), run)
    var object = try JSONSerialization.jsonObject(with: Data(run.utf8)) as! [String: Any]
    object["config_fnv1a64"] = nil
    try JSONSerialization.data(withJSONObject: object).write(to: runJSON)
    try "".write(to: file, atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try shortRun("linear", extra: extra, folder: folder, resume: true)) {
      XCTAssertTrue("\($0)".contains("names no method"), "\($0)")
    }
    try original.write(to: file, atomically: true, encoding: .utf8)
    XCTAssertNotNil(try shortRun("linear", extra: extra, folder: folder, resume: true).1)
  }

  func testRunFolderLoadsAndReproducesTheRunsLogits() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let backbone = tinyBackbone()
    let (trainer, summary) = try shortRun(
      "vpt-deep", extra: ["train.epochs=2", "data.train_samples=100", "method.prompt_length=2"],
      folder: folder, backbone: backbone)
    let s = try XCTUnwrap(summary)
    let fm = FileManager.default
    for name in [
      "adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "summary.json",
      "tune_config.yaml", "run.json",
    ] {
      XCTAssertTrue(fm.fileExists(atPath: folder.appendingPathComponent(name).path), name)
    }
    let summaryJSON = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: folder.appendingPathComponent("summary.json"))) as? [String: Any])
    for key in [
      "test", "validation", "best_epoch", "trainable_parameters", "backbone_parameters",
      "trainable_share", "wall_seconds", "peak_rss_bytes", "train_images_per_second",
    ] {
      XCTAssertNotNil(summaryJSON[key], key)
    }
    // D = 32, L = 2, p = 2: prompts L·p·D, head D·10 + 10.
    XCTAssertEqual(summaryJSON["trainable_parameters"] as? Int, 2 * 2 * 32 + 330)
    let test = try XCTUnwrap(summaryJSON["test"] as? [String: Any])
    let confusion = try XCTUnwrap(test["confusion"] as? [[Int]])
    XCTAssertEqual(confusion.flatMap { $0 }.reduce(0, +), 359)
    // Only the trainable tensors, under the method's prefix.
    let weights = try SafetensorsFile(
      contentsOf: folder.appendingPathComponent(AdapterCheckpoint.weightsFile))
    XCTAssertEqual(
      Set(weights.names),
      ["vpt.prompt_embeddings", "vpt.deep_prompt_embeddings", "vpt.head.weight", "vpt.head.bias"])
    XCTAssertEqual(weights.metadata["format"], "pt")
    let config = try AdapterCheckpoint.readConfig(folder)
    XCTAssertEqual(config.method, "vpt-deep")
    XCTAssertEqual(config.hyperparameters["prompt_length"], "2")
    XCTAssertEqual(config.baseModelHash, backbone.weightsHash)
    XCTAssertTrue(config.baseModelHash.hasPrefix("fnv1a64:"))
    // A fresh copy of the same backbone: the run's test logits, bit for bit.
    let loaded = try AdapterCheckpoint.load(folder, backbone: tinyBackbone())
    let (result, logits) = try loaded.evaluate(digits.test)
    let saved = try SafetensorsFile(
      contentsOf: folder.appendingPathComponent("test_logits.safetensors")
    ).tensor("logits")
    XCTAssertEqual(logits.scalars, saved.scalars)
    XCTAssertEqual(result, s.test)
    // predict on the whole test split (the same batches): the same bits; on a few images (other
    // GEMM shapes): the same within rounding.
    let images = try (0..<digits.test.count).map { try digits.test.image(at: $0) }
    XCTAssertEqual(try loaded.predict(images).scalars, saved.scalars)
    for (a, b) in zip(try loaded.predict(Array(images[0..<3])).scalars, saved.scalars[0..<30]) {
      XCTAssertEqual(a, b, accuracy: 1e-4)
    }
    _ = trainer
  }

  func testAnotherBackboneOrClassCountIsRefused() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    _ = try shortRun(
      "bitfit", extra: ["train.epochs=1", "data.train_samples=50"], folder: folder)
    XCTAssertThrowsError(try AdapterCheckpoint.load(folder, backbone: tinyBackbone(seed: 2))) {
      XCTAssertTrue("\($0)".contains("refusing a different backbone"), "\($0)")
    }
    let loaded = try AdapterCheckpoint.load(folder, backbone: tinyBackbone())
    let fewer = try InMemoryDataset(
      images: [digits.test.image(at: 0)], labels: [1], classNames: ["a", "b", "c"])
    XCTAssertThrowsError(try loaded.evaluate(fewer)) {
      XCTAssertTrue("\($0)".contains("has 10"), "\($0)")
    }
  }

  func testRealModelFolderIsRecordedAndReloaded() throws {
    // A timm fixture folder copied to a temporary place, loaded by path.
    let fixture = repositoryRoot.appendingPathComponent(
      "Tests/GraftModelsTests/Fixtures/vit/vit_augreg")
    let work = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: work) }
    let model = work.appendingPathComponent("model")
    try FileManager.default.copyItem(at: fixture, to: model)
    let backbone = try TuneBackbone.load(model.path)
    XCTAssertEqual(backbone.preprocessing?.inputSize, [3, 32, 32])
    XCTAssertEqual(
      backbone.weightsHash,
      try FNV1a64.file(model.appendingPathComponent("model.safetensors")))
    let run = work.appendingPathComponent("run")
    _ = try shortRun(
      "linear", extra: ["train.epochs=1", "data.train_samples=40"], folder: run,
      backbone: backbone)
    let loaded = try AdapterCheckpoint.load(run)
    XCTAssertEqual(loaded.backbone.reference, model.path)
    // Changing one byte of the weights changes the hash: the adapter is refused.
    let weights = model.appendingPathComponent("model.safetensors")
    var bytes = try Data(contentsOf: weights)
    bytes[bytes.count - 1] ^= 1
    try bytes.write(to: weights)
    XCTAssertThrowsError(try AdapterCheckpoint.load(run))
  }

  /// The binding covers what defines the backbone's function, not only its weights file: a
  /// changed architecture or preprocessing in `config.json` is refused, naming what changed;
  /// a change that does not touch the function (a licence) is not; a run folder of an earlier
  /// Graft, which recorded only the weights' hash, loads with a note saying so.
  func testTheBindingCoversTheArchitectureAndPreprocessing() throws {
    let fixture = repositoryRoot.appendingPathComponent(
      "Tests/GraftModelsTests/Fixtures/vit/vit_augreg")
    let work = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: work) }
    let model = work.appendingPathComponent("model")
    try FileManager.default.copyItem(at: fixture, to: model)
    let run = work.appendingPathComponent("run")
    _ = try shortRun(
      "linear", extra: ["train.epochs=1", "data.train_samples=40"], folder: run,
      backbone: try TuneBackbone.load(model.path))
    let configURL = model.appendingPathComponent("config.json")
    let original = try Data(contentsOf: configURL)
    func edit(_ change: (inout [String: Any]) -> Void) throws {
      var json = try JSONSerialization.jsonObject(with: original) as! [String: Any]
      change(&json)
      try JSONSerialization.data(withJSONObject: json).write(to: configURL)
    }
    // num_heads 2 → 4: the same tensors, another function.
    try edit { json in
      var args = json["model_args"] as! [String: Any]
      args["num_heads"] = 4
      json["model_args"] = args
    }
    XCTAssertThrowsError(try AdapterCheckpoint.load(run)) {
      XCTAssertTrue("\($0)".contains("architecture or preprocessing"), "\($0)")
    }
    // Another normalisation.
    try edit { json in
      var cfg = json["pretrained_cfg"] as! [String: Any]
      cfg["mean"] = [0.4, 0.5, 0.5]
      json["pretrained_cfg"] = cfg
    }
    XCTAssertThrowsError(try AdapterCheckpoint.load(run))
    // A licence does not change the function.
    try edit { json in
      var cfg = json["pretrained_cfg"] as! [String: Any]
      cfg["license"] = "mit"
      json["pretrained_cfg"] = cfg
    }
    XCTAssertTrue(try AdapterCheckpoint.load(run).notes.isEmpty)
    // An earlier Graft's folder: only the weights' hash, checked; a note says the rest was not.
    let adapterURL = run.appendingPathComponent(AdapterCheckpoint.configFile)
    var adapter =
      try JSONSerialization.jsonObject(with: Data(contentsOf: adapterURL))
      as! [String: Any]
    adapter["base_model_config_hash"] = nil
    adapter["format_version"] = 1
    try JSONSerialization.data(withJSONObject: adapter).write(to: adapterURL)
    try original.write(to: configURL)
    let old = try AdapterCheckpoint.load(run)
    XCTAssertTrue(
      old.notes.joined().contains("only the hash of the backbone's weights"), "\(old.notes)")
  }

  func testFNV1aKnownValues() {
    // Published FNV-1a 64 test vectors: "" and "a".
    var h = FNV1a64()
    XCTAssertEqual(h.tagged, "fnv1a64:cbf29ce484222325")
    Array("a".utf8).withUnsafeBytes { h.update($0) }
    XCTAssertEqual(h.tagged, "fnv1a64:af63dc4c8601ec8c")
  }

  func testDryRunReport() throws {
    var config = try TuneConfig.preset(for: "lora")
    try config.set(assignment: "method.rank=2")
    let trainer = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: (0..<5).map(String.init))
    let report = trainer.dryRunReport()
    // D = 32, 2 blocks, q and v: 2·2·(2·32 + 32·2), head 32·5 + 5.
    XCTAssertEqual(report["trainable_parameters"] as? Int, 2 * 2 * (2 * 32 + 32 * 2) + 165)
    let tensors = report["tensors"] as! [String: Int]
    XCTAssertEqual(tensors["lora.blocks.1.v.lora_B"], 32 * 2)
    XCTAssertEqual(tensors.count, 2 * 2 * 2 + 2)
  }
}

final class ConfigTests: XCTestCase {
  func testPresetsOverridesAndYAML() throws {
    var c = try TuneConfig.preset(for: "vpt-deep")
    XCTAssertEqual(c.optimizer, .sgd)
    // VPT's base lr 2.0 (chosen on validation from its grid), scaled to the batch of 32.
    XCTAssertEqual(c.lr, 0.25)
    XCTAssertEqual(c.batchSize, 32)
    try c.apply(
      yaml: "optim:\n  lr: 0.02\ntrain: {epochs: 7}\nmethod:\n  prompt_length: 3\nseed: 4\n",
      source: "x.yaml")
    try c.set(assignment: "train.batch_size=16")
    XCTAssertEqual(c.lr, 0.02)
    XCTAssertEqual(c.epochs, 7)
    XCTAssertEqual(c.batchSize, 16)
    XCTAssertEqual(c.seed, 4)
    XCTAssertEqual(c.methodOptions["prompt_length"], "3")
    // The written YAML reads back to the same resolved configuration.
    var back = TuneConfig(method: "vpt-deep")
    try back.apply(yaml: try c.yaml(), source: "resolved")
    XCTAssertEqual(try back.yaml(), try c.yaml())
    var lora = try TuneConfig.preset(for: "lora")
    try lora.apply(yaml: "method:\n  targets: [q, k, fc1]\n", source: "l.yaml")
    XCTAssertEqual(lora.methodOptions["targets"], "q,k,fc1")
  }

  /// A side method's `keep_mib` changes how much of the step is recomputed, not its results:
  /// resuming with another value (or a run recorded before the key existed) is no conflict,
  /// unlike a setting that changes the method.
  func testSideMethodsResumeWithAnotherKeepBudget() throws {
    for method in ["lst", "unipt"] {
      let recorded = try TuneConfig.preset(for: method)
      var leaner = recorded
      try leaner.set(assignment: "method.keep_mib=0")
      XCTAssertTrue(try leaner.resumeConflicts(with: recorded).isEmpty, method)
      var other = recorded
      try other.set(assignment: "method.reduction=4")
      XCTAssertEqual(try other.resumeConflicts(with: recorded).map(\.key), ["method.reduction"])
    }
  }

  /// `--config` given a folder, a device, a binary file or nothing is an error naming the path
  /// and what it is (they used to read as Foundation's "error 256" or "no permission").
  func testConfigFilesThatAreNotYAMLTextAreNamed() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let binary = folder.appendingPathComponent("weights.bin")
    try Data([0xff, 0xfe, 0x00, 0x81]).write(to: binary)
    let good = folder.appendingPathComponent("good.yaml")
    try "train:\n  epochs: 3\n".write(to: good, atomically: true, encoding: .utf8)
    for (path, text) in [
      (folder.path, "is a directory"), ("/dev/null", "not a regular file"),
      (binary.path, "not UTF-8 text"), (folder.path + "/none.yaml", "no such file"),
    ] {
      var config = try TuneConfig.preset(for: "lora")
      XCTAssertThrowsError(try config.apply(yamlFile: path)) {
        XCTAssertTrue("\($0)".contains(path) && "\($0)".contains(text), "\($0)")
      }
    }
    var config = try TuneConfig.preset(for: "lora")
    try config.apply(yamlFile: good.path)
    XCTAssertEqual(config.epochs, 3)
  }

  /// Size keys have upper bounds (near 2⁶³ a batch size wrapped the batch count: a crash, or a
  /// run of no step reported as a result), so do P2P's and LST's, and a cosine floor above its
  /// peak is refused.
  func testSizesHaveUpperBoundsAndTheCosineCannotRise() throws {
    var config = try TuneConfig.preset(for: "lora")
    for assignment in [
      "train.batch_size=9223372036854775807", "train.eval_batch_size=100000",
      "optim.warmup_epochs=4611686018427387904", "train.epochs=1000000", "eval.votes=1000",
      "det.neck=9223372036854775807", "det.image_size=4611686018427387904", "det.convs=100000",
      "data.frames=100000000",
    ] {
      let key = String(assignment.split(separator: "=")[0])
      XCTAssertThrowsError(try config.set(assignment: assignment)) {
        XCTAssertTrue("\($0)".contains(key), "\($0)")
      }
    }
    for (method, option) in [
      ("p2p", ["graph_dim": "4611686018427387904"]), ("p2p", ["trans_dim": "9223372036854775807"]),
      ("lst", ["gate_T": "1e-45"]),
    ] {
      XCTAssertThrowsError(
        try MethodRegistry.make(
          method, backbone: tinyBackbone().model, classes: 3, options: option,
          generator: &generator)
      ) { XCTAssertTrue("\($0)".contains(option.keys.first!), "\($0)") }
    }
    try config.set(assignment: "optim.min_lr=10")
    XCTAssertThrowsError(
      try Trainer(backbone: tinyBackbone(), config: config, classNames: ["a", "b"])
    ) { XCTAssertTrue("\($0)".contains("optim.min_lr"), "\($0)") }
  }

  private var generator = RandomGenerator(seed: 1)

  func testBadKeysAreClearErrors() throws {
    var c = try TuneConfig.preset(for: "lora")
    XCTAssertThrowsError(try c.set(assignment: "optim.lrr=1")) {
      XCTAssertTrue("\($0)".contains("unknown key 'optim.lrr'"), "\($0)")
    }
    XCTAssertThrowsError(try c.set(assignment: "method.prompt_length=3")) {
      XCTAssertTrue("\($0)".contains("method.rank"), "\($0)")
    }
    XCTAssertThrowsError(try c.set(assignment: "train.epochs=zero"))
    XCTAssertThrowsError(try c.set(assignment: "train.epochs"))
    XCTAssertThrowsError(try c.apply(yaml: "optim: {lr: 1, bogus: 2}", source: "f.yaml")) {
      XCTAssertTrue("\($0)".contains("f.yaml"), "\($0)")
    }
    // A key given twice (literally, or once nested and once dotted) is an error naming it.
    for yaml in [
      "optim:\n  lr: 0.1\n  lr: 0.2\n", "seed: 1\nseed: 2\n", "optim.lr: 0.1\noptim: {lr: 0.2}\n",
    ] {
      XCTAssertThrowsError(try c.apply(yaml: yaml, source: "d.yaml"), yaml) {
        XCTAssertTrue($0 is ConfigError, "\($0)")
        XCTAssertTrue("\($0)".contains("d.yaml") && "\($0)".contains("twice"), "\($0)")
      }
    }
    // A key that is not a plain name (a mapping or a list as a key): Yams 5.0 traps on it
    // (found by Tools/fuzz.sh yaml), so it is refused first.
    for yaml in ["? lr: 5.02\n", "? [a, b]\n: 1\n", "optim:\n  ? {lr: 1}\n  : 2\n"] {
      XCTAssertThrowsError(try c.apply(yaml: yaml, source: "k.yaml"), yaml) {
        XCTAssertTrue("\($0)".contains("k.yaml") && "\($0)".contains("not a plain name"), "\($0)")
      }
    }
    XCTAssertThrowsError(try TuneConfig.preset(for: "prefix")) {
      XCTAssertTrue("\($0)".contains("unknown method"), "\($0)")
    }
  }
}
