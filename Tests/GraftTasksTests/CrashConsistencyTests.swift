import XCTest

@testable import GraftTasks

/// A small slice of digits (48 training, 16 validation, 16 test images), so that a run of a few
/// epochs takes a fraction of a second and a test can afford dozens of them.
let smallDigits: ImageTuneData = {
  let d = digits
  return try! ImageTuneData(
    train: Subset(d.train, indices: Array(0..<48)),
    validation: Subset(d.validation, indices: Array(0..<16)),
    test: Subset(d.test, indices: Array(0..<16)), description: "small digits")
}()

/// Runs `method` (by default the linear probe: the fastest, and AdamW's state matters as much)
/// for `epochs` epochs on `smallDigits` in `folder`.
func smallRun(
  folder: URL, method: String = "linear", epochs: Int = 2, resume: Bool = false,
  extra: [String] = [],
  log: (String) -> Void = { _ in }
) throws -> TuneSummary? {
  var config = try TuneConfig.preset(for: method)
  for s in [
    "train.epochs=\(epochs)", "train.workers=0", "train.batch_size=16", "optim.name=adamw",
    "optim.lr=0.01",
  ] + extra {
    try config.set(assignment: s)
  }
  let trainer = try Trainer(
    backbone: tinyBackbone(), config: config, classNames: smallDigits.classNames)
  return try trainer.run(
    data: smallDigits, folder: folder, dataReference: "small-digits", resume: resume, log: log)
}

/// A new folder in memory (`/dev/shm`) where there is one, for tests that write many small
/// files: flushing them to disk is what a run's checkpoints spend most time on at this size.
func memoryFolder() -> URL {
  let shm = URL(fileURLWithPath: "/dev/shm")
  guard access(shm.path, W_OK) == 0 else { return temporaryFolder() }
  let url = shm.appendingPathComponent("graft-tasks-\(UUID().uuidString)")
  try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// Every file below `folder`, relative, sorted (with the folders themselves).
func listing(_ folder: URL) -> [String] {
  let e = FileManager.default.enumerator(atPath: folder.path)
  var out: [String] = []
  while let name = e?.nextObject() as? String { out.append(name) }
  return out.sorted()
}

final class CrashConsistencyTests: XCTestCase {
  override func tearDown() {
    CrashPoint.hook = nil
    super.tearDown()
  }

  /// A crash (a kill, a power loss, a full disk) at each fsync, rename and directory sync from
  /// the first epoch's checkpoint to the end of the run, then a resume in a fresh trainer: the
  /// result is the uninterrupted run's, bit for bit, and no temporary file is left behind.
  func testACrashAtEveryStepOfTheCheckpointsResumesToTheSameResult() throws {
    let straight = memoryFolder()
    defer { try? FileManager.default.removeItem(at: straight) }
    // The uninterrupted run, with the steps it reaches after its first epoch's training.
    var steps: [String] = []
    var trained = false
    CrashPoint.hook = { step, path in
      if trained && path.hasPrefix(straight.path) { steps.append("\(step) \(path)") }
    }
    let reference = try XCTUnwrap(
      smallRun(folder: straight, log: { if $0.hasPrefix("epoch 1/") { trained = true } }))
    CrashPoint.hook = nil
    XCTAssertGreaterThan(steps.count, 10)
    let referenceFiles = try [
      AdapterCheckpoint.weightsFile, "test_logits.safetensors",
    ].map { try Data(contentsOf: straight.appendingPathComponent($0)) }

    for (index, step) in steps.enumerated() {
      let folder = memoryFolder()
      defer { try? FileManager.default.removeItem(at: folder) }
      var reached = 0
      var armed = false
      CrashPoint.hook = { _, path in
        guard armed && path.hasPrefix(folder.path) else { return }
        if reached == index { throw SimulatedCrash() }
        reached += 1
      }
      XCTAssertThrowsError(
        try smallRun(folder: folder, log: { if $0.hasPrefix("epoch 1/") { armed = true } }),
        step
      ) { XCTAssertTrue($0 is SimulatedCrash, "\(step): \($0)") }
      CrashPoint.hook = nil
      let resumed: TuneSummary
      do {
        resumed = try XCTUnwrap(smallRun(folder: folder, resume: true), step)
      } catch {
        XCTFail("\(step): resuming failed: \(error)")
        continue
      }
      // (A run found finished returns its summary.json, whose numbers went through text.)
      XCTAssertEqual(resumed.test.confusion, reference.test.confusion, step)
      XCTAssertEqual(resumed.test.loss, reference.test.loss, accuracy: 1e-12, step)
      XCTAssertEqual(
        try TuneSummary.read(from: folder.appendingPathComponent("summary.json")).test,
        try TuneSummary.read(from: straight.appendingPathComponent("summary.json")).test, step)
      XCTAssertEqual(resumed.bestEpoch, reference.bestEpoch, step)
      XCTAssertEqual(
        try [AdapterCheckpoint.weightsFile, "test_logits.safetensors"].map {
          try Data(contentsOf: folder.appendingPathComponent($0))
        }, referenceFiles, step)
      let files = listing(folder)
      XCTAssertFalse(files.contains { $0.contains(".tmp-") }, "\(step): \(files)")
      // One committed epoch is kept: the last.
      XCTAssertEqual(
        files.filter { $0.hasPrefix("checkpoint/") && !$0.dropFirst(11).contains("/") },
        ["checkpoint/epoch-000002", "checkpoint/finished"], step)
    }
  }

  /// A run folder of the layout before epoch folders (`checkpoint/state.json` beside the
  /// tensors) still resumes, to the same result.
  func testALegacyCheckpointStillResumes() throws {
    let straight = memoryFolder()
    let legacy = memoryFolder()
    defer {
      try? FileManager.default.removeItem(at: straight)
      try? FileManager.default.removeItem(at: legacy)
    }
    let reference = try XCTUnwrap(smallRun(folder: straight))
    var config = try TuneConfig.preset(for: "linear")
    for s in [
      "train.epochs=2", "train.workers=0", "train.batch_size=16", "optim.name=adamw",
      "optim.lr=0.01",
    ] {
      try config.set(assignment: s)
    }
    let trainer = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: smallDigits.classNames)
    XCTAssertNil(
      try trainer.run(
        data: smallDigits, folder: legacy, dataReference: "small-digits", stopAfter: 1))
    let checkpoint = legacy.appendingPathComponent("checkpoint")
    let epoch = checkpoint.appendingPathComponent("epoch-000001")
    for name in ["state.json", "last.safetensors", "optimizer.safetensors"] {
      try FileManager.default.moveItem(
        at: epoch.appendingPathComponent(name), to: checkpoint.appendingPathComponent(name))
    }
    try FileManager.default.removeItem(at: epoch)
    XCTAssertTrue(Trainer.holdsRun(legacy))
    let resumed = try XCTUnwrap(smallRun(folder: legacy, resume: true))
    XCTAssertEqual(resumed.test, reference.test)
    XCTAssertEqual(
      try Data(contentsOf: legacy.appendingPathComponent("test_logits.safetensors")),
      try Data(contentsOf: straight.appendingPathComponent("test_logits.safetensors")))
    // The legacy files are superseded by the epoch folder.
    XCTAssertEqual(
      listing(checkpoint).filter { !$0.contains("/") }, ["epoch-000002", "finished"])
  }

  /// A checkpoint file damaged after its commit is reported by name, never loaded.
  func testADamagedCheckpointIsReportedByName() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var config = try TuneConfig.preset(for: "linear")
    for s in ["train.epochs=2", "train.workers=0", "train.batch_size=16"] {
      try config.set(assignment: s)
    }
    let trainer = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: smallDigits.classNames)
    XCTAssertNil(try trainer.run(data: smallDigits, folder: folder, stopAfter: 1))
    let last = folder.appendingPathComponent("checkpoint/epoch-000001/last.safetensors")
    var bytes = try Data(contentsOf: last)
    bytes[bytes.count - 1] ^= 0x40
    try bytes.write(to: last)
    let again = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: smallDigits.classNames)
    XCTAssertThrowsError(try again.run(data: smallDigits, folder: folder, resume: true)) {
      XCTAssertTrue($0 is FileError, "\($0)")
      XCTAssertTrue("\($0)".contains(last.path) && "\($0)".contains("manifest"), "\($0)")
    }
  }

  /// Loading a run that has not finished (no summary.json) works, as eval, predict and export
  /// need, with a note saying so and whether a process is training it now; a run that has not
  /// saved its adapter yet is named as one, not as "not a graft tune run folder". Both loaded
  /// silently or misleadingly before.
  func testAnUnfinishedRunLoadsWithANote() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    XCTAssertNotNil(try smallRun(folder: folder, epochs: 1))
    XCTAssertNil(AdapterCheckpoint.unfinishedNote(folder), "a finished run")
    XCTAssertTrue(
      try AdapterCheckpoint.load(folder, backbone: tinyBackbone()).notes.allSatisfy {
        !$0.contains("not finished")
      })
    try FileManager.default.removeItem(at: folder.appendingPathComponent("summary.json"))
    let stopped = try AdapterCheckpoint.load(folder, backbone: tinyBackbone()).notes
    XCTAssertTrue(
      stopped.contains {
        $0.contains("not finished") && $0.contains("graft tune --resume \(folder.path)")
      }, "\(stopped)")
    let lock = try RunFolder.Lock(folder)
    XCTAssertTrue(
      AdapterCheckpoint.unfinishedNote(folder)?.contains("process \(getpid()) is training it")
        == true)
    lock.release()
    try FileManager.default.removeItem(
      at: folder.appendingPathComponent(AdapterCheckpoint.configFile))
    XCTAssertThrowsError(try AdapterCheckpoint.load(folder, backbone: tinyBackbone())) {
      XCTAssertTrue("\($0)".contains("has not saved its adapter"), "\($0)")
    }
  }

  /// An output folder given as a link to nowhere names the link and its target (it said only
  /// "cannot write in the folder: No such file or directory").
  func testADanglingLinkAsTheOutputIsNamedAsOne() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let link = folder.appendingPathComponent("out")
    let target = folder.appendingPathComponent("gone").path
    try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target)
    XCTAssertThrowsError(try RunFolder.createFolder(link)) {
      XCTAssertTrue("\($0)".contains("is a link to \(target)"), "\($0)")
    }
  }

  /// A run folder is locked while a run writes it: a second run into it fails at once, naming
  /// the process that holds it, and succeeds once the lock is released.
  func testASecondRunIntoALockedFolderFailsNamingTheHolder() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    XCTAssertNil(RunFolder.lockHolder(of: folder), "no lock file yet")
    let lock = try RunFolder.Lock(folder, what: "a test")
    // What eval, predict and export ask of an unfinished run.
    XCTAssertEqual(RunFolder.lockHolder(of: folder), "process \(getpid())")
    XCTAssertThrowsError(try smallRun(folder: folder)) {
      XCTAssertTrue($0 is FileError, "\($0)")
      XCTAssertTrue("\($0)".contains("in use: process \(getpid())"), "\($0)")
    }
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: folder.appendingPathComponent("run.json").path))
    lock.release()
    XCTAssertNil(RunFolder.lockHolder(of: folder), "released")
    XCTAssertNotNil(try smallRun(folder: folder))
    // The lock is released when the run ends: the folder can be locked again.
    XCTAssertNoThrow(try RunFolder.Lock(folder))
  }
}
