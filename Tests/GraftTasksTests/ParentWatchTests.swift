import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A sweep's running `graft tune` ends when the sweep is killed on its own (`kill -9`, an
/// out-of-memory kill): before, it trained on to the end of its epochs with nobody to read it.
final class ParentWatchTests: XCTestCase {
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

  func testASweepKilledOnItsOwnTakesItsRunningChildWithIt() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let sweep = Process()
    sweep.executableURL = try graftExecutable()
    // One grid point of 100,000 epochs: the child trains for hours unless it is stopped.
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
    defer { kill(child, SIGKILL) }
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
