import XCTest

@testable import GraftTasks

/// Early stopping (`train.patience`) and training on train + validation (`data.train_on`).
final class EarlyStoppingTests: XCTestCase {
  // MARK: train.patience

  /// With a zero learning rate validation never improves after epoch 1, so patience 2 stops
  /// the run after epoch 3 and keeps epoch 1; a run interrupted before the stop and resumed
  /// ends the same way.
  func testPatienceStopsAfterStalledEpochsAndKeepsTheBest() throws {
    let settings = ["optim.lr=0", "train.epochs=6", "train.patience=2"]
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(shortRun("linear", extra: settings, folder: folder).1)
    XCTAssertEqual(summary.epochsTrained, 3)
    XCTAssertEqual(summary.bestEpoch, 1)
    let lines = try String(
      contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8
    ).split(separator: "\n")
    XCTAssertEqual(lines.count, 3)
    let stored = try TuneSummary.read(from: folder.appendingPathComponent("summary.json"))
    XCTAssertEqual(stored.epochsTrained, 3)

    let resumed = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: resumed) }
    XCTAssertNil(try shortRun("linear", extra: settings, folder: resumed, stopAfter: 2).1)
    let again = try XCTUnwrap(
      shortRun("linear", extra: settings, folder: resumed, resume: true).1)
    XCTAssertEqual(again.epochsTrained, 3)
    XCTAssertEqual(again.bestEpoch, 1)
    XCTAssertEqual(again.test.top1, summary.test.top1)
  }

  /// Off by default: every epoch runs.
  func testPatienceIsOffByDefault() throws {
    XCTAssertEqual(TuneConfig(method: "linear").patience, 0)
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(
      shortRun("linear", extra: ["optim.lr=0", "train.epochs=3"], folder: folder).1)
    XCTAssertEqual(summary.epochsTrained, 3)
  }

  /// Early stopping needs a held-out split: with train+val it is refused before anything runs.
  func testPatienceWithTrainAndValidationIsRefused() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    XCTAssertThrowsError(
      try shortRun(
        "linear", extra: ["train.patience=2", "data.train_on=train+val"], folder: folder)
    ) { error in
      XCTAssertTrue("\(error)".contains("train.patience"), "\(error)")
    }
    XCTAssertFalse(Trainer.holdsRun(folder))
  }

  // MARK: data.train_on

  /// Training on train + validation: the training set is the union (training samples, then
  /// validation ones), validation and test are untouched.
  func testJoiningValidationIsTheUnionAndLeavesTestAlone() throws {
    let joined = try digits.joiningValidation()
    XCTAssertEqual(joined.train.count, digits.train.count + digits.validation.count)
    XCTAssertEqual(joined.train.labels, digits.train.labels + digits.validation.labels)
    XCTAssertEqual(joined.train.classNames, digits.classNames)
    let n = digits.train.count
    for (i, j) in [(0, 0), (n - 1, n - 1)] {
      XCTAssertEqual(try joined.train.sample(at: i), try digits.train.sample(at: j))
    }
    for k in [0, digits.validation.count - 1] {
      XCTAssertEqual(try joined.train.sample(at: n + k), try digits.validation.sample(at: k))
    }
    XCTAssertEqual(joined.test.count, digits.test.count)
    XCTAssertEqual(joined.test.labels, digits.test.labels)
    XCTAssertEqual(try joined.test.sample(at: 5), try digits.test.sample(at: 5))
    XCTAssertEqual(joined.validation.labels, digits.validation.labels)
  }

  /// `data.train_on=train+val` keeps the last epoch's adapter (nothing is held out to select
  /// on) and tests on the whole, untouched test split.
  func testTrainingOnTrainAndValidationKeepsTheLastEpoch() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(
      shortRun(
        "linear", extra: ["data.train_on=train+val", "train.epochs=2", "data.train_samples=0"],
        folder: folder
      ).1)
    XCTAssertEqual(summary.bestEpoch, 2)
    XCTAssertEqual(summary.test.count, digits.test.count)
    var config = TuneConfig(method: "linear")
    XCTAssertThrowsError(try config.set("data.train_on", "val"))
  }
}
