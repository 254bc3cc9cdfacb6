import XCTest

@testable import GraftTasks

/// A tiny pretraining setting on the committed digits (8×8): D = 16, one block.
func tinyPretrainConfig(epochs: Int = 3) throws -> PretrainConfig {
  var c = PretrainConfig()
  for (k, v) in [
    ("model.image_size", "8"), ("model.patch_size", "4"), ("model.embed_dim", "16"),
    ("model.depth", "1"), ("model.num_heads", "2"), ("train.epochs", "\(epochs)"),
    ("train.batch_size", "64"), ("train.warmup_epochs", "1"), ("train.workers", "0"),
    ("optim.lr", "0.003"), ("train.crop_scale", "0.9"),
  ] {
    try c.set(k, v)
  }
  c.mean = [0.5, 0.5, 0.5]
  c.std = [0.5, 0.5, 0.5]
  return c
}

final class PretrainTests: XCTestCase {
  /// A short pretraining run learns (well above chance on held-out digits) and writes a model
  /// folder that the loader reads back to the same logits.
  func testPretrainWritesALoadableModelThatLearned() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let pretrainer = try Pretrainer(
      config: tinyPretrainConfig(epochs: 6), classNames: digits.classNames)
    let result = try XCTUnwrap(
      pretrainer.run(train: digits.train, test: digits.test, out: out))
    XCTAssertGreaterThan(result.testTop1, 0.5, "chance is 0.1")

    let loaded = try ModelLoader.load(out.path)
    XCTAssertEqual(loaded.model.config, pretrainer.model.config)
    XCTAssertEqual(loaded.preprocessing, pretrainer.preprocessing)
    var rng = RandomGenerator(seed: 9)
    let x = Tensor.randn([3, 3, 8, 8], generator: &rng)
    pretrainer.model.eval()
    loaded.model.eval()
    let a = withNoGrad { pretrainer.model(x) }
    let b = withNoGrad { loaded.model(x) }
    XCTAssertEqual(a.scalars, b.scalars)
    // One metrics line per epoch; the record names the test accuracy.
    let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n")
    XCTAssertEqual(lines.count, 6)
    let record = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("pretrain.json")))
        as? [String: Any])
    XCTAssertEqual(try XCTUnwrap(record["test_top1"] as? Double), result.testTop1, accuracy: 1e-12)
  }

  /// An interrupted run continued with `resume` ends with the same weights as one that was not.
  func testResumeGivesTheSameWeights() throws {
    let whole = temporaryFolder()
    let split = temporaryFolder()
    defer {
      try? FileManager.default.removeItem(at: whole)
      try? FileManager.default.removeItem(at: split)
    }
    let config = try tinyPretrainConfig(epochs: 3)
    let a = try Pretrainer(config: config, classNames: digits.classNames)
    try a.run(train: digits.train, test: digits.test, out: whole)
    let b1 = try Pretrainer(config: config, classNames: digits.classNames)
    XCTAssertNil(try b1.run(train: digits.train, test: digits.test, out: split, stopAfter: 1))
    let b2 = try Pretrainer(config: config, classNames: digits.classNames)
    try b2.run(train: digits.train, test: digits.test, out: split, resume: true)
    try assertSameWeights(whole, split)

    // Resuming with other settings is refused, naming the file.
    var other = config
    other.lr = 0.01
    let c = try Pretrainer(config: other, classNames: digits.classNames)
    XCTAssertThrowsError(
      try c.run(train: digits.train, test: digits.test, out: split, resume: true)
    ) { XCTAssertTrue("\($0)".contains("state.json"), "\($0)") }
  }

  /// A run interrupted before `CheckpointStore` kept its last epoch as flat files in
  /// `checkpoint/`: it resumes from them to the same weights, and the first new commit removes
  /// them (else a later resume could read them again).
  func testResumeFromTheFlatCheckpointLayout() throws {
    let whole = temporaryFolder()
    let split = temporaryFolder()
    defer {
      try? FileManager.default.removeItem(at: whole)
      try? FileManager.default.removeItem(at: split)
    }
    let config = try tinyPretrainConfig(epochs: 2)
    try Pretrainer(config: config, classNames: digits.classNames)
      .run(train: digits.train, test: digits.test, out: whole)
    XCTAssertNil(
      try Pretrainer(config: config, classNames: digits.classNames)
        .run(train: digits.train, test: digits.test, out: split, stopAfter: 1))
    // Epoch 1's committed folder rewritten as the flat layout.
    let checkpoints = split.appendingPathComponent("checkpoint")
    let committed = try XCTUnwrap(CheckpointStore(folder: checkpoints).latest())
    let flat = ["state.json", "model.safetensors", "optimizer.safetensors"]
    for name in flat {
      try FileManager.default.moveItem(
        at: committed.file(name), to: checkpoints.appendingPathComponent(name))
    }
    try FileManager.default.removeItem(at: committed.folder)
    XCTAssertTrue(Pretrainer.holdsRun(split))

    try Pretrainer(config: config, classNames: digits.classNames)
      .run(train: digits.train, test: digits.test, out: split, resume: true)
    try assertSameWeights(whole, split)
    for name in flat {
      XCTAssertFalse(
        FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent(name).path),
        name)
    }
    XCTAssertEqual(try CheckpointStore(folder: checkpoints).latest()?.epoch, 2)
  }

  /// The two run folders' `model.safetensors` hold the same tensors, bit for bit.
  private func assertSameWeights(
    _ a: URL, _ b: URL, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let wa = try SafetensorsFile(contentsOf: a.appendingPathComponent("model.safetensors"))
      .tensors()
    let wb = try SafetensorsFile(contentsOf: b.appendingPathComponent("model.safetensors"))
      .tensors()
    XCTAssertEqual(Set(wa.keys), Set(wb.keys), file: file, line: line)
    for (name, t) in wa {
      XCTAssertEqual(t.scalars, wb[name]?.scalars, name, file: file, line: line)
    }
  }

  func testUnknownKeyIsAClearError() {
    var c = PretrainConfig()
    XCTAssertThrowsError(try c.set("train.epoch", "3")) {
      XCTAssertTrue("\($0)".contains("unknown key 'train.epoch'"), "\($0)")
    }
    XCTAssertThrowsError(try c.set("optim.lr", "fast")) {
      XCTAssertTrue("\($0)".contains("optim.lr"), "\($0)")
    }
  }
}

final class ProgressTests: XCTestCase {
  /// Plain-line mode writes a line at the first step, then at the end of each phase (or after
  /// `lineInterval`), with the phase, the step count, the loss and the time left; quiet writes
  /// nothing; log lines pass through.
  func testLinesAndQuiet() {
    var written: [String] = []
    let p = ProgressReporter(style: .lines, totalSteps: 6) { written.append($0) }
    p.lineInterval = 1e9
    p.beginPhase("epoch 1/2", steps: 3)
    p.step(samples: 8, loss: 0.5)
    XCTAssertEqual(written.count, 1, "the first step shows the work started")
    p.step(samples: 8, loss: 0.4)
    XCTAssertEqual(written.count, 1, "no line before the interval or the phase end")
    p.step(samples: 8, loss: 0.25)
    XCTAssertEqual(written.count, 2)
    XCTAssertTrue(written[1].contains("img/s"), written[1])
    XCTAssertTrue(
      written[1].hasPrefix("epoch 1/2  [####################] 3/3  loss 0.2500"), written[1])
    XCTAssertTrue(written[1].contains("ETA "), written[1])
    p.log("done")
    XCTAssertEqual(written.last, "done\n")

    var none: [String] = []
    let q = ProgressReporter(style: .quiet, totalSteps: 2) { none.append($0) }
    q.beginPhase("x", steps: 2)
    q.step(loss: 1)
    q.log("hidden")
    XCTAssertTrue(none.isEmpty)

    var clouds: [String] = []
    let c = ProgressReporter(style: .lines, totalSteps: 1, unit: "clouds") { clouds.append($0) }
    c.beginPhase("epoch 1/1", steps: 1)
    usleep(1000)
    c.step(samples: 4)
    XCTAssertTrue(clouds.first?.contains("clouds/s") == true, "\(clouds)")
  }

  /// The bar redraws one line in place and clears it before a log line.
  func testBarRedrawsInPlace() {
    var written: [String] = []
    let p = ProgressReporter(style: .bar, totalSteps: 2) { written.append($0) }
    p.beginPhase("epoch 1/1", steps: 2)
    p.step(loss: 1)
    XCTAssertTrue(written[0].hasPrefix("\r") && !written[0].contains("\n"))
    p.log("result")
    XCTAssertEqual(written.suffix(2), ["\r\u{1B}[K", "result\n"])
  }

  func testClock() {
    XCTAssertEqual(ProgressReporter.clock(75), "1:15")
    XCTAssertEqual(ProgressReporter.clock(3725), "1:02:05")
  }
}

final class PretrainFolderTests: XCTestCase {
  /// `resume` on a folder that holds no pretraining run is an error that leaves the folder as
  /// it was (no `checkpoint/` created).
  func testResumingAFolderWithoutARunCreatesNothing() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    try Data("notes\n".utf8).write(to: out.appendingPathComponent("notes.txt"))
    let p = try Pretrainer(config: tinyPretrainConfig(epochs: 1), classNames: digits.classNames)
    XCTAssertThrowsError(
      try p.run(train: digits.train, test: digits.test, out: out, resume: true)
    ) { XCTAssertTrue("\($0)".contains("nothing to resume"), "\($0)") }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), ["notes.txt"])
  }
}
