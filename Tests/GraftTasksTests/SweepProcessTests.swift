import Foundation
import XCTest

@testable import GraftTasks

#if canImport(Glibc)
  import Glibc
#endif

/// Sweeps as processes: a sweep's running `graft tune` ends when the sweep is killed on its own
/// (`kill -9`, an out-of-memory kill; before, it trained on to the end of its epochs with
/// nobody to read it), and a second sweep into the folder of a running one is refused.
final class SweepProcessTests: XCTestCase {
  /// The parent process id and state letter of `pid` (`/proc/<pid>/stat`), nil once it is gone.
  private func stat(_ pid: pid_t) -> (parent: pid_t, state: Character)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = text.lastIndex(of: ")")
    else { return nil }
    // "pid (comm) state ppid …": the command name may hold spaces, so fields start after ')'.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 2, let state = fields[0].first, let parent = pid_t(fields[1]) else {
      return nil
    }
    return (parent, state)
  }

  /// The children of `parent` now.
  private func children(of parent: pid_t) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid_t($0) }.filter { stat($0)?.parent == parent }
  }

  /// One grid point of 100,000 epochs into `out`: its child trains for hours unless stopped.
  private func startLongSweep(_ out: URL) throws -> Process {
    let sweep = Process()
    sweep.executableURL = try graftExecutable()
    sweep.arguments = [
      "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
      "--grid", "optim.lr=0.1", "--grid", "optim.weight_decay=0", "--widen", "0",
      "--set", "train.epochs=100000", "--set", "data.train_samples=100", "--out", out.path,
      "--quiet",
    ]
    sweep.currentDirectoryURL = repositoryRoot
    sweep.standardOutput = FileHandle.nullDevice
    sweep.standardError = FileHandle.nullDevice
    try sweep.run()
    return sweep
  }

  /// A second sweep into the folder of one that is running stops at once, naming the running
  /// one, and leaves its run alone: before, it removed the first sweep's grid run as "trained
  /// otherwise" (another epoch count) while that trained, and both reported tables of runs
  /// that were not on disk.
  func testASecondSweepIntoAFolderInUseIsRefused() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let first = try startLongSweep(out)
    defer {
      kill(first.processIdentifier, SIGKILL)
      first.waitUntilExit()
    }
    let run = out.appendingPathComponent("linear/grid/lr-0.1_wd-0/seed-0")
    let deadline = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: run.appendingPathComponent("run.json").path),
      Date() < deadline, first.isRunning
    {
      usleep(50_000)
    }
    XCTAssertTrue(FileManager.default.fileExists(atPath: run.path), "the first sweep's run")
    let second = try runGraft([
      "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
      "--grid", "optim.lr=0.1", "--grid", "optim.weight_decay=0", "--widen", "0",
      "--set", "train.epochs=2", "--set", "data.train_samples=100", "--out", out.path, "--quiet",
    ])
    XCTAssertNotEqual(second.status, 0, second.out)
    XCTAssertTrue(
      second.err.contains("in use") && second.err.contains("process \(first.processIdentifier)"),
      second.err)
    XCTAssertTrue(first.isRunning)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: run.appendingPathComponent("run.json").path))
  }

  /// A run the sweep would redo (trained otherwise) is left alone while a process holds its
  /// lock (a `graft tune` the user started there): the sweep names that process.
  func testASweepDoesNotRemoveARunAProcessIsWriting() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    func sweep(epochs: Int) throws -> (status: Int32, out: String, err: String) {
      try runGraft([
        "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
        "--grid", "optim.lr=0.1", "--grid", "optim.weight_decay=0", "--widen", "0",
        "--set", "train.epochs=\(epochs)", "--set", "data.train_samples=100", "--out", out.path,
        "--quiet",
      ])
    }
    XCTAssertEqual(try sweep(epochs: 1).status, 0)
    let run = out.appendingPathComponent("linear/grid/lr-0.1_wd-0/seed-0")
    let lock = try RunFolder.Lock(run, what: "a test")
    let second = try sweep(epochs: 2)
    lock.release()
    XCTAssertNotEqual(second.status, 0, second.out)
    XCTAssertTrue(
      second.err.contains("cannot redo this run") && second.err.contains("process \(getpid())"),
      second.err)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: run.appendingPathComponent("summary.json").path))
  }

  func testASweepKilledOnItsOwnTakesItsRunningChildWithIt() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let sweep = try startLongSweep(out)
    var child: pid_t? = nil
    let deadline = Date().addingTimeInterval(60)
    while child == nil && Date() < deadline && sweep.isRunning {
      child = children(of: sweep.processIdentifier).first
      if child == nil { usleep(50_000) }
    }
    guard let child else {
      sweep.terminate()
      sweep.waitUntilExit()
      return XCTFail("the sweep started no child within a minute")
    }
    // Only while it is still the sweep's former child (its id may be reused once it ends).
    defer { if let state = stat(child)?.state, state != "Z" { kill(child, SIGKILL) } }
    // Let the child get into training, then kill the sweep alone (not its process group).
    sleep(2)
    XCTAssertNotNil(stat(child), "the child ended before its sweep was killed")
    kill(sweep.processIdentifier, SIGKILL)
    sweep.waitUntilExit()
    let killedAt = Date()
    while let state = stat(child)?.state, state != "Z", Date().timeIntervalSince(killedAt) < 20 {
      usleep(100_000)
    }
    let after = stat(child)
    XCTAssertTrue(
      after == nil || after?.state == "Z",
      "the child graft tune (pid \(child)) still runs 20 s after its sweep was killed")
  }
}
