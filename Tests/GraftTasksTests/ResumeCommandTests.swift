import XCTest

@testable import GraftTasks

/// `graft tune --resume`: what it accepts beside the run folder, and a finished run.
final class ResumeCommandTests: XCTestCase {
  func testResumeRefusesConflictingSettingsAndKeepsAFinishedRun() throws {
    let work = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: work) }
    let run = work.appendingPathComponent("run").path
    let settings = ["--set", "train.epochs=1", "--set", "data.train_samples=40"]
    let first = try runGraft(
      [
        "tune", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits", "--out",
        run,
        "--quiet",
      ] + settings)
    XCTAssertEqual(first.status, 0, first.err)
    let summaryURL = URL(fileURLWithPath: run).appendingPathComponent("summary.json")
    let summary = try Data(contentsOf: summaryURL)

    for (extra, expected) in [
      (["--method", "lora"], "--method"), (["--set", "optim.lr=0.5"], "optim.lr"),
      (["--data", "graft1k/mnist"], "--data"), (["--backbone", "vit-nano-fmnist"], "--backbone"),
    ] {
      let r = try runGraft(["tune", "--resume", run, "--quiet"] + extra)
      XCTAssertNotEqual(r.status, 0, "\(extra)")
      XCTAssertTrue(r.err.contains(expected) && r.err.contains("conflicts"), "\(extra): \(r.err)")
    }
    // The same values are no conflict; the finished run is reported, not rewritten.
    let again = try runGraft(
      [
        "tune", "--resume", run, "--method", "linear", "--data", "digits", "--backbone",
        tinyTimmFolder, "--json",
      ] + settings)
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertTrue(again.out.contains("\"test\""), again.out)
    XCTAssertEqual(try Data(contentsOf: summaryURL), summary)
    // What the blocks recompute changes memory, not results: a resume may change it.
    let leaner = try runGraft(["tune", "--resume", run, "--quiet", "--set", "train.recompute=all"])
    XCTAssertEqual(leaner.status, 0, leaner.err)
    XCTAssertEqual(try Data(contentsOf: summaryURL), summary)
  }
}
