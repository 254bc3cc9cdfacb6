import XCTest

@testable import GraftTasks

/// `Trainer.initialise(from:)` (`graft tune --init-from`): a new run starts from a finished
/// run's (or an imported adapter's) tensors, and refuses an adapter that does not fit.
final class InitFromTests: XCTestCase {
  func testStartsFromTheAdaptersTensorsAndRefusesOnesThatDoNotFit() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let backbone = tinyBackbone()
    let first = root.appendingPathComponent("first")
    _ = try shortRun(
      "lora", extra: ["train.epochs=1", "data.train_samples=64"], folder: first,
      backbone: backbone)
    let saved = try SafetensorsFile(
      contentsOf: first.appendingPathComponent(AdapterCheckpoint.weightsFile)
    ).tensors()

    func trainer(_ method: String, classes: [String] = digits.classNames) throws -> Trainer {
      try Trainer(
        backbone: backbone, config: try TuneConfig.preset(for: method), classNames: classes)
    }
    // A fresh LoRA has zero B matrices; started from the run it has the run's tensors.
    let next = try trainer("lora")
    let fresh = Dictionary(uniqueKeysWithValues: next.method.trainableTensors())
    XCTAssertTrue(
      fresh.contains { $0.key.contains("lora_B") && $0.value.scalars.allSatisfy { $0 == 0 } })
    try next.initialise(from: first)
    for (name, t) in next.method.trainableTensors() {
      XCTAssertEqual(t.scalars, try XCTUnwrap(saved[name], name).scalars, name)
    }
    // Another method, another class count, another backbone: named refusals.
    XCTAssertThrowsError(try trainer("bitfit").initialise(from: first)) {
      XCTAssertTrue("\($0)".contains("method 'lora'"), "\($0)")
      XCTAssertTrue("\($0)".contains(first.path), "\($0)")
    }
    var rank4 = try TuneConfig.preset(for: "lora")
    try rank4.set(assignment: "method.rank=4")
    let smaller = try Trainer(backbone: backbone, config: rank4, classNames: digits.classNames)
    XCTAssertThrowsError(try smaller.initialise(from: first)) {
      XCTAssertTrue("\($0)".contains("--set method.rank="), "\($0)")
    }
    let other = try Trainer(
      backbone: tinyBackbone(seed: 99), config: try TuneConfig.preset(for: "lora"),
      classNames: digits.classNames)
    XCTAssertThrowsError(try other.initialise(from: first)) {
      XCTAssertTrue("\($0)".contains("backbone weights"), "\($0)")
    }
  }

  /// PVP's warm start: another task's run (other classes), or `freshHead`, gives the method's
  /// tensors and leaves the head (and MP's second classifier) as freshly initialised.
  func testAnotherTasksRunGivesTheMethodTensorsAndAFreshHead() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let backbone = tinyBackbone()
    for method in ["vpt-deep", "mp"] {
      let first = root.appendingPathComponent(method)
      _ = try shortRun(
        method, extra: ["train.epochs=1", "data.train_samples=64"], folder: first,
        backbone: backbone)
      let saved = try SafetensorsFile(
        contentsOf: first.appendingPathComponent(AdapterCheckpoint.weightsFile)
      ).tensors()
      for (classes, freshHead) in [(["a", "b", "c"], false), (digits.classNames, true)] {
        let next = try Trainer(
          backbone: backbone, config: try TuneConfig.preset(for: method), classNames: classes)
        let before = Dictionary(
          uniqueKeysWithValues: next.method.trainableTensors().map { ($0.name, $0.tensor.scalars) })
        let note = try next.initialise(from: first, freshHead: freshHead)
        XCTAssertTrue(note.contains("the head starts fresh"), note)
        var heads = 0
        for (name, t) in next.method.trainableTensors() {
          if next.method.isClassifierTensor(name) {
            heads += 1
            XCTAssertEqual(t.scalars, before[name], "\(method) \(name) kept its initialisation")
          } else {
            XCTAssertEqual(t.scalars, try XCTUnwrap(saved[name], name).scalars, name)
          }
        }
        XCTAssertEqual(heads, method == "mp" ? 4 : 2, method)
      }
    }
    // The same classes without freshHead: the head comes too (continued training).
    let same = try Trainer(
      backbone: backbone, config: try TuneConfig.preset(for: "vpt-deep"),
      classNames: digits.classNames)
    let note = try same.initialise(from: root.appendingPathComponent("vpt-deep"))
    XCTAssertTrue(note.contains("its head included"), note)
    XCTAssertFalse(note.contains("--fresh-head"), note)
    // As many classes under other names: the head comes, with a note saying how not to.
    let renamed = try Trainer(
      backbone: backbone, config: try TuneConfig.preset(for: "vpt-deep"),
      classNames: digits.classNames.map { "class " + $0 })
    let renamedNote = try renamed.initialise(from: root.appendingPathComponent("vpt-deep"))
    XCTAssertTrue(renamedNote.contains("its head included"), renamedNote)
    XCTAssertTrue(renamedNote.contains("--fresh-head"), renamedNote)
  }
}
