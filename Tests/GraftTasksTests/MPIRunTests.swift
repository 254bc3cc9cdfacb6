import XCTest

@testable import GraftTasks

/// `mpirun -np K graft tune`: K ranks give one process's results (to float reordering), a rank
/// that dies ends the job quickly with the last checkpoint intact, and a run resumes on any
/// number of ranks. Needs Open MPI's `mpirun` (Tools/setup-debian.sh installs it).
final class MPIRunTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = temporaryFolder()
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// `mpirun` on PATH (or in /usr/bin).
  func mpirun() throws -> URL {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
    for dir in path.split(separator: ":").map(String.init) + ["/usr/bin"] {
      let url = URL(fileURLWithPath: dir).appendingPathComponent("mpirun")
      if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw ConfigError("mpirun not found: install openmpi-bin (Tools/setup-debian.sh does)")
  }

  /// Starts `graft arguments` as `ranks` MPI ranks (plainly when `ranks` is 0).
  func start(ranks: Int, _ arguments: [String]) throws -> (Process, Pipe) {
    let process = Process()
    if ranks == 0 {
      process.executableURL = try graftExecutable()
      process.arguments = arguments
    } else {
      process.executableURL = try mpirun()
      process.arguments =
        ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", try graftExecutable().path]
        + arguments
    }
    var environment = ProcessInfo.processInfo.environment
    // Containers often forbid the cross-memory attach Open MPI uses between local ranks.
    environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
    process.environment = environment
    process.currentDirectoryURL = repositoryRoot
    let err = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = err
    try process.run()
    return (process, err)
  }

  /// Runs `graft arguments` as `ranks` ranks (0: plainly) to the end; status and stderr.
  func run(ranks: Int, _ arguments: [String]) throws -> (status: Int32, err: String) {
    let (process, err) = try start(ranks: ranks, arguments)
    let text = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: text, as: UTF8.self))
  }

  func tune(_ method: [String], out: URL, epochs: Int = 2, samples: Int = 100) -> [String] {
    [
      "tune", "--backbone", tinyTimmFolder, "--data", "digits", "--set",
      "train.epochs=\(epochs)", "--set", "data.train_samples=\(samples)", "--set",
      "train.batch_size=16", "--set", "train.workers=0", "--out", out.path, "--quiet",
    ] + method
  }

  func metrics(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").map {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
  }

  func testPredictions(_ run: URL) throws -> [Int] {
    let logits = try XCTUnwrap(
      SafetensorsFile(contentsOf: run.appendingPathComponent("test_logits.safetensors"))
        .tensors()["logits"])
    return logits.argmax(axis: 1)
  }

  /// Per-epoch training losses within `tolerance` (relative), the same validation top-1 every
  /// epoch and the same test predictions.
  func assertSameRun(
    _ a: URL, _ b: URL, tolerance: Double = 1e-5, _ what: String, line: UInt = #line
  ) throws {
    let (ma, mb) = (try metrics(a), try metrics(b))
    XCTAssertEqual(ma.count, mb.count, what, line: line)
    for (x, y) in zip(ma, mb) {
      let (lx, ly) = (x["train_loss"] as! Double, y["train_loss"] as! Double)
      XCTAssertLessThanOrEqual(
        abs(lx - ly) / abs(lx), tolerance, "\(what): \(lx) vs \(ly)", line: line)
      XCTAssertEqual(x["val_top1"] as? Double, y["val_top1"] as? Double, what, line: line)
      XCTAssertEqual(x["train_top1"] as? Double, y["train_top1"] as? Double, what, line: line)
    }
    XCTAssertEqual(try testPredictions(a), try testPredictions(b), what, line: line)
  }

  /// LoRA with dropout on its input (per-sample masks drawn for the whole global batch) on 1, 2
  /// and 3 ranks (100 samples in batches of 16: parts of 8/8, 6/5/5 and a last batch of 4 as
  /// 2/1/1), and HST, whose side network's BatchNorms synchronise their statistics, on 3.
  func testRanksGiveOneProcesssResults() throws {
    let lora = ["--method", "lora", "--set", "method.dropout=0.3"]
    let single = folder.appendingPathComponent("lora-1")
    let one = try run(ranks: 0, tune(lora, out: single))
    XCTAssertEqual(one.status, 0, one.err)
    for ranks in [2, 3] {
      let out = folder.appendingPathComponent("lora-\(ranks)")
      let r = try run(ranks: ranks, tune(lora, out: out))
      XCTAssertEqual(r.status, 0, r.err)
      try assertSameRun(single, out, "lora on \(ranks) ranks")
      let summary = try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
      let parallel = try XCTUnwrap(summary["data_parallel"] as? [String: Any])
      XCTAssertEqual(parallel["ranks"] as? Int, ranks)
      XCTAssertEqual(parallel["buckets"] as? Int, 0)
      XCTAssertEqual(parallel["steps"] as? Int, 14)
      // The trainable gradients (float32) and the step's four figures.
      let trainable = try XCTUnwrap(summary["trainable_parameters"] as? Int)
      XCTAssertEqual(parallel["allreduce_bytes_per_step"] as? Int, 4 * (trainable + 4))
    }
    // Gradients in buckets of about 1 KiB, allreduced (MPI_Iallreduce) during the backward.
    let bucketed = folder.appendingPathComponent("lora-buckets")
    let b = try run(ranks: 2, tune(lora + ["--set", "train.bucket_mb=0.001"], out: bucketed))
    XCTAssertEqual(b.status, 0, b.err)
    try assertSameRun(single, bucketed, "lora on 2 ranks, bucketed")
    let bucketSummary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: bucketed.appendingPathComponent("summary.json")))
        as? [String: Any])
    let buckets = try XCTUnwrap(
      (bucketSummary["data_parallel"] as? [String: Any])?["buckets"] as? Int)
    XCTAssertGreaterThan(buckets, 2)
    let hst = ["--method", "hst"]
    let hstSingle = folder.appendingPathComponent("hst-1")
    let hstThree = folder.appendingPathComponent("hst-3")
    let h1 = try run(ranks: 0, tune(hst, out: hstSingle))
    XCTAssertEqual(h1.status, 0, h1.err)
    let h3 = try run(ranks: 3, tune(hst, out: hstThree))
    XCTAssertEqual(h3.status, 0, h3.err)
    try assertSameRun(hstSingle, hstThree, "hst on 3 ranks")
    // Rank 0 alone wrote the folder: one lock, no leftovers.
    let names = try FileManager.default.contentsOfDirectory(atPath: hstThree.path)
    XCTAssertFalse(names.contains { $0.hasPrefix(".tmp") }, "\(names)")
  }

  /// A rank killed in the middle of a run ends the whole job within seconds, with a message;
  /// the last committed epoch resumes on 3 ranks and finishes as an uninterrupted run does.
  func testAKilledRankEndsTheJobAndTheRunResumesOnOtherRanks() throws {
    let args = ["--method", "lora"]
    let reference = folder.appendingPathComponent("uninterrupted")
    let r = try run(ranks: 0, tune(args, out: reference, epochs: 4, samples: 600))
    XCTAssertEqual(r.status, 0, r.err)

    let out = folder.appendingPathComponent("killed")
    let (job, err) = try start(ranks: 2, tune(args, out: out, epochs: 4, samples: 600))
    let first = out.appendingPathComponent("checkpoint/epoch-000001")
    let deadline = Date().addingTimeInterval(120)
    while !FileManager.default.fileExists(atPath: first.path) && job.isRunning
      && Date() < deadline
    {
      usleep(5_000)
    }
    XCTAssertTrue(job.isRunning, "the job ended before a rank could be killed")
    let ranks = childProcesses(of: job.processIdentifier)
    XCTAssertEqual(ranks.count, 2, "mpirun's children: \(ranks)")
    let killedAt = Date()
    kill(try XCTUnwrap(ranks.last), SIGKILL)
    let text = err.fileHandleForReading.readDataToEndOfFile()
    job.waitUntilExit()
    XCTAssertLessThan(Date().timeIntervalSince(killedAt), 30, "the job took too long to end")
    XCTAssertNotEqual(job.terminationStatus, 0)
    let message = String(decoding: text, as: UTF8.self)
    XCTAssertTrue(message.contains("signal 9") || message.contains("Killed"), message)
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: out.appendingPathComponent("summary.json").path))

    let resumed = try run(ranks: 3, ["tune", "--resume", out.path, "--quiet"])
    XCTAssertEqual(resumed.status, 0, resumed.err)
    try assertSameRun(reference, out, "resumed on 3 ranks after a kill")
  }

  /// Another command started as several ranks refuses, instead of K processes writing alike.
  func testOtherCommandsRefuseToRunAsSeveralRanks() throws {
    let r = try run(ranks: 2, ["methods"])
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.err.contains("only 'graft tune' trains data-parallel"), r.err)
  }

  /// The processes whose parent is `pid` (from /proc).
  func childProcesses(of pid: Int32) -> [Int32] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.flatMap { task -> [Int32] in
      let text =
        (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8))
        ?? ""
      return text.split(separator: " ").compactMap { Int32($0) }
    }.sorted()
  }
}
