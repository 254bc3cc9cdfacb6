import ArgumentParser
import Foundation
import GraftTasks
import GraftTensor

/// Runs of a sweep, a benchmark or the demo that failed: a failure of the work, not of the
/// command line, so it exits with status 1 and no usage text (a `ValidationError` printed the
/// command's whole usage under each failed run and exited 64).
struct RunsFailed: Error, CustomStringConvertible {
  /// What failed, with each run's reason.
  var description: String
}

/// A row of a sweep that runs `method` with more `graft tune` arguments, on some tasks only:
/// PVP's warm start is `vpt-deep` with `--init-from` another task's run and `--fresh-head`.
struct SweepVariant {
  /// The method it trains.
  var method: String
  /// What its child runs get beyond a plain run of `method`.
  var arguments: [String]
  /// The tasks it runs on (nil: all).
  var tasks: Set<String>?
}

/// Runs methods on tasks, each `graft tune` in a child process of this executable, so that every
/// run's peak RSS is its own. A run folder that already holds a finished run (`summary.json`) is
/// reused and an interrupted one resumed, if it was trained as a new run would be (`RunReuse`;
/// otherwise it is redone); `fresh` starts every run over.
struct SweepRunner {
  /// The backbone reference given to `graft tune`.
  var backbone: String
  /// Extra `--set` assignments for every run (the recipe stays each method's preset).
  var settings: [String]
  /// Where the runs go: `<out>/<task name>/<method>` (or `<out>/<method>` with one task).
  var out: URL
  /// Redo finished runs.
  var fresh: Bool
  /// Progress of the whole sweep.
  var progress: ProgressReporter
  /// Whether the children print their own progress.
  var quiet: Bool
  /// The backbone of particular methods, instead of `backbone` (P2P takes an image backbone in
  /// a point-cloud sweep).
  var methodBackbones: [String: String] = [:]
  /// Extra `--set` assignments of particular methods, before `settings`.
  var methodSettings: [String: [String]] = [:]
  /// Rows that run a method with more `graft tune` arguments (by row name; the row's folder
  /// and results carry the row's name).
  var variants: [String: SweepVariant] = [:]
  /// Arguments every new child run gets (`graft sweep --init-from DIR`).
  var childArguments: [String] = []
  /// Seeds: every method runs once per seed (`--set seed=S`) in `<folder>/seed-S`; empty: once,
  /// with the settings' seed, in the folder itself.
  var seeds: [UInt64] = []
  /// Decides which finished or interrupted runs stand for the runs asked (`RunReuse`).
  var reuse = RunReuse()
  /// Child runs at once (`--jobs`); with more than one, each child gets `childThreads` threads
  /// (twice its share of the cores, at most all of them).
  var jobs = 1

  /// The run folder of `method` on `task`.
  func folder(task: String, method: String, single: Bool) -> URL {
    single
      ? out.appendingPathComponent(method)
      : out.appendingPathComponent(task.replacingOccurrences(of: "/", with: "_"))
        .appendingPathComponent(method)
  }

  /// Runs every method on every task and returns the records in task-major order, with the
  /// runs that failed (a failed run does not stop the others).
  func run(methods: [String], tasks: [String]) throws -> (
    records: [RunRecord], failures: [String]
  ) {
    let runSeeds: [UInt64?] = seeds.isEmpty ? [nil] : seeds.map { $0 }
    let total = methods.count * tasks.count * runSeeds.count
    progress.beginPhase("runs", steps: total)
    var requests: [RunRequest] = []
    for task in tasks {
      for method in methods {
        for seed in runSeeds {
          let base = folder(task: task, method: method, single: tasks.count == 1)
          requests.append(
            RunRequest(
              method: method, task: task,
              dir: seed.map { base.appendingPathComponent("seed-\($0)") } ?? base, seed: seed,
              what: "\(method) on \(task)" + (seed.map { " (seed \($0))" } ?? ""),
              counter: "[\(requests.count + 1)/\(total)]"))
        }
      }
    }
    let outcome = Self.split(try runMany(requests))
    progress.finish()
    return outcome
  }

  /// One child run: `method` on `task` in `dir`, with `extra` settings after the method's and
  /// the sweep's, then the seed; `what` and `counter` name it in the log.
  struct RunRequest {
    var method: String
    var task: String
    var dir: URL
    var extra: [String] = []
    var seed: UInt64?
    var what: String
    var counter: String
  }

  /// A child `graft tune` that failed (the sweep goes on without it).
  struct ChildFailure: Error {
    var message: String
  }

  /// The records of the runs that finished and the messages of those that failed, in order.
  static func split(_ outcomes: [Result<RunRecord, ChildFailure>]) -> (
    records: [RunRecord], failures: [String]
  ) {
    var records: [RunRecord] = []
    var failures: [String] = []
    for outcome in outcomes {
      switch outcome {
      case .success(let record): records.append(record)
      case .failure(let failure): failures.append(failure.message)
      }
    }
    return (records, failures)
  }

  /// Runs each request as a child `graft tune` with the method's settings, the sweep's, then
  /// its `extra`, then its seed, up to `jobs` children at once, and returns the results in the
  /// order asked. A finished run in a request's folder is reused and an interrupted one
  /// resumed. Each run advances the progress by one step and logs its figures; a child that
  /// fails gives its `ChildFailure` (logged), other errors (an unreadable finished run)
  /// propagate once the children started so far have finished.
  ///
  /// With one job (or one run to train) a child's progress passes through as it runs. With
  /// several side by side, every child gets `childThreads` threads (`GRAFT_NUM_THREADS`) and
  /// runs quietly, its standard error kept in a temporary file that a failure's message
  /// quotes: interleaved epoch lines of several runs would say nothing.
  func runMany(_ requests: [RunRequest]) throws -> [Result<RunRecord, ChildFailure>] {
    try lockOut()
    var results = [Result<RunRecord, ChildFailure>?](repeating: nil, count: requests.count)
    var launches: [(index: Int, arguments: [String])] = []
    for (i, request) in requests.enumerated() {
      if let arguments = try childCommand(for: request) {
        launches.append((i, arguments))
      } else {
        results[i] = .success(try finish(request))
      }
    }
    // A batch of fewer runs than jobs shares the cores among the runs it has.
    let sideBySide = min(max(jobs, 1), launches.count)
    let finished = FinishedChildren()
    var running: [Int: RunningChild] = [:]
    var next = 0
    var firstError: Error? = nil
    while next < launches.count || !running.isEmpty {
      while firstError == nil, running.count < sideBySide, next < launches.count {
        let (i, arguments) = launches[next]
        next += 1
        let request = requests[i]
        progress.log("\(request.counter) \(request.what)")
        do {
          running[i] = try launch(
            arguments, index: i, sideBySide: sideBySide, finished: finished)
        } catch {
          progress.step()
          progress.log("    failed: \(error)")
          results[i] = .failure(ChildFailure(message: "\(request.what): \(error)"))
        }
      }
      guard !running.isEmpty else { break }
      let i = finished.take()
      guard let child = running.removeValue(forKey: i) else { continue }
      let request = requests[i]
      if let problem = child.problem(what: request.what) {
        progress.step()
        progress.log("    failed: \(problem)")
        results[i] = .failure(ChildFailure(message: problem))
        continue
      }
      do {
        results[i] = .success(try finish(request))
      } catch {
        firstError = firstError ?? error
      }
    }
    if let firstError { throw firstError }
    return results.map { $0! }
  }

  /// The sweep folders this process writes, each locked on first use until the process ends.
  nonisolated(unsafe) private static var lockedFolders: [String: RunFolder.Lock] = [:]
  private static let lockedFoldersGuard = NSLock()

  /// Locks `out` for this process (once): a second sweep into the same folder at once is
  /// refused, naming the process that holds it. Two at once removed and retrained each other's
  /// runs and reported results that were no longer on disk.
  func lockOut() throws {
    Self.lockedFoldersGuard.lock()
    defer { Self.lockedFoldersGuard.unlock() }
    let key = out.standardizedFileURL.resolvingSymlinksInPath().path
    guard Self.lockedFolders[key] == nil else { return }
    Self.lockedFolders[key] = try RunFolder.Lock(out, what: "this graft sweep")
  }

  /// Removes the run folder `dir` unless a process is writing it (a `graft tune` the user
  /// started there): that is an error naming the process, not a run deleted under it.
  /// The folder's lock is held through the removal, so a run that starts meanwhile is refused
  /// rather than writing into a folder being removed.
  private func removeRun(_ dir: URL) throws {
    let lock: RunFolder.Lock
    do {
      lock = try RunFolder.Lock(dir, what: "this sweep")
    } catch let error as FileError {
      throw FileError(
        path: dir.path,
        message:
          "the sweep cannot redo this run: \(error.message)")
    }
    defer { lock.release() }
    try FileManager.default.removeItem(at: dir)
  }

  /// The arguments of the child `graft tune` that `request` needs (a new run or a resumed
  /// one), or nil when its folder holds a finished run trained as a new one would be. Removes
  /// a folder trained otherwise (and an unfinished one that cannot resume).
  private func childCommand(for request: RunRequest) throws -> [String]? {
    let dir = request.dir
    let method = request.method
    let summary = dir.appendingPathComponent("summary.json")
    let fm = FileManager.default
    if fresh && fm.fileExists(atPath: dir.path) { try removeRun(dir) }
    let wanted =
      (methodSettings[method] ?? []) + settings + request.extra
      + (request.seed.map { ["seed=\($0)"] } ?? [])
    let arguments = childArguments + (variants[method]?.arguments ?? [])
    let initFrom = arguments.firstIndex(of: "--init-from").map { arguments[$0 + 1] }
    if fm.fileExists(atPath: dir.path),
      reuse.isStale(
        dir, method: variants[method]?.method ?? method, settings: wanted,
        backbone: methodBackbones[method] ?? backbone, data: request.task, initFrom: initFrom,
        freshHead: arguments.contains("--fresh-head"))
    {
      progress.log(
        "\(request.counter) \(request.what): \(dir.path) was trained otherwise; redoing it")
      try removeRun(dir)
    }
    if fm.fileExists(atPath: summary.path) {
      progress.log("\(request.counter) \(request.what): finished earlier, reusing \(dir.path)")
      return nil
    }
    var args: [String]
    if Trainer.holdsRun(dir) {
      args = ["tune", "--resume", dir.path, "--json"]
    } else {
      if fm.fileExists(atPath: dir.path) { try removeRun(dir) }
      args = [
        "tune", "--backbone", methodBackbones[method] ?? backbone, "--method",
        variants[method]?.method ?? method, "--data", request.task, "--out", dir.path, "--json",
      ]
      args += arguments
      // The method's own settings first (its recipe for this sweep), so the sweep's and
      // the user's settings win; the seed last.
      for s in wanted { args += ["--set", s] }
    }
    if quiet { args.append("--quiet") }
    return args
  }

  /// Reads the finished run of `request`, advances the progress and logs its figures.
  private func finish(_ request: RunRequest) throws -> RunRecord {
    var record = try RunRecord.load(folder: request.dir, task: request.task)
    record.seed = request.seed
    progress.step()
    progress.log(
      String(
        format:
          "    %@val top-1 %.2f%%  test top-1 %.2f%%  %d trainable  %.1f s  %.0f MiB peak RSS",
        jobs > 1 ? request.counter + " " : "", 100 * record.validationTop1,
        100 * record.testTop1, record.trainableParameters, record.trainSeconds,
        record.peakRSSMiB))
    return record
  }

  /// The threads of each of `sideBySide` children at once: twice its share of the cores, at
  /// most all of them. An even share would leave cores idle whenever fewer runs are left than
  /// jobs (the last run of a sweep trains alone on its share); with twice as many threads as
  /// cores, whichever runs are left use them all. The oversubscription costs little: a pool's
  /// threads claim the chunks of a job as they get a core, so a descheduled thread's share
  /// goes to one that runs, and nobody polls while the cores are oversubscribed (`WorkerPool`).
  /// Two jobs on any machine give each child every core, as `--jobs 1` does, so their results
  /// are the same bits.
  static func childThreads(sideBySide: Int) -> Int {
    min(Parallel.threadCount, max(1, 2 * Parallel.threadCount / max(sideBySide, 1)))
  }

  /// Starts this executable with `arguments` (its standard output, the JSON summary, is
  /// discarded: the run folder holds it); `finished` hears of its exit under `index`. With
  /// `sideBySide` children at once it gets `childThreads` threads and runs quietly.
  private func launch(
    _ arguments: [String], index: Int, sideBySide: Int, finished: FinishedChildren
  ) throws -> RunningChild {
    let process = Process()
    process.executableURL =
      Bundle.main.executableURL
      ?? URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    // The child stops when this sweep is gone (`ParentWatch`).
    var environment = ParentWatch.childEnvironment()
    var log: (url: URL, handle: FileHandle)? = nil
    if sideBySide > 1 {
      if !arguments.contains("--quiet") { process.arguments = arguments + ["--quiet"] }
      environment["GRAFT_NUM_THREADS"] = "\(Self.childThreads(sideBySide: sideBySide))"
      let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "graft-sweep-\(getpid())-\(index).log")
      guard FileManager.default.createFile(atPath: url.path, contents: nil),
        let handle = FileHandle(forWritingAtPath: url.path)
      else { throw ValidationError("cannot create \(url.path) for a child's messages") }
      process.standardError = handle
      log = (url, handle)
    }
    process.environment = environment
    process.terminationHandler = { _ in finished.add(index) }
    do {
      try process.run()
    } catch {
      if let log {
        try? log.handle.close()
        try? FileManager.default.removeItem(at: log.url)
      }
      throw error
    }
    return RunningChild(process: process, arguments: arguments, log: log)
  }
}

/// A child `graft tune` a sweep started.
private struct RunningChild {
  var process: Process
  var arguments: [String]
  /// Where its standard error goes when it does not pass through (several jobs at once), and
  /// the parent's handle on that file.
  var log: (url: URL, handle: FileHandle)?

  /// Once it has exited: nil when it succeeded, else what went wrong (with the end of its
  /// messages when they were kept). Closes and removes the messages' file either way.
  func problem(what: String) -> String? {
    defer {
      if let log {
        try? log.handle.close()
        try? FileManager.default.removeItem(at: log.url)
      }
    }
    guard process.terminationStatus != 0 else { return nil }
    var message =
      "\(what) failed (graft \(arguments.joined(separator: " ")) exited with "
      + "\(process.terminationStatus))"
    if let log, let text = try? String(contentsOf: log.url, encoding: .utf8) {
      let lines = text.split(separator: "\n", omittingEmptySubsequences: true).suffix(10)
      if !lines.isEmpty { message += ":\n" + lines.joined(separator: "\n") }
    }
    return message
  }
}

/// The indices of exited children, as their termination handlers (on Foundation's threads)
/// report them; `take` waits for the next.
private final class FinishedChildren: @unchecked Sendable {
  private let lock = NSLock()
  private let signal = DispatchSemaphore(value: 0)
  private var indices: [Int] = []

  func add(_ index: Int) {
    lock.withLock { indices.append(index) }
    signal.signal()
  }

  func take() -> Int {
    signal.wait()
    return lock.withLock { indices.removeFirst() }
  }
}

/// Text table of a sweep: one row per method, a column per task (and the mean), trainable
/// parameters and share, training time and peak RSS.
func sweepTable(_ s: SweepSummary) -> String {
  let short = s.tasks.map { $0.replacingOccurrences(of: "graft1k/", with: "") }
  var header = pad("method", 13)
  for t in short { header += pad(t, max(9, t.count + 2), right: true) }
  if s.tasks.count > 1 { header += pad("mean", 9, right: true) }
  header +=
    pad("trainable", 11, right: true) + pad("share", 10, right: true)
    + pad("train s", 9, right: true) + pad("RSS MiB", 9, right: true)
  var lines = [header]
  for m in s.methods {
    var line = pad(m, 13)
    for (t, name) in zip(s.tasks, short) {
      line += pad(
        s.run(m, task: t).map { String(format: "%.1f", 100 * $0.testTop1) } ?? "–",
        max(9, name.count + 2), right: true)
    }
    if s.tasks.count > 1 {
      line += pad(String(format: "%.1f", 100 * s.meanTop1(m)), 9, right: true)
    }
    let mine = s.runs.filter { $0.method == m }
    line +=
      pad("\(mine[0].trainableParameters)", 11, right: true)
      + pad(String(format: "%.2f%%", 100 * mine[0].trainableShare), 10, right: true)
      + pad(String(format: "%.1f", mine.map(\.trainSeconds).reduce(0, +)), 9, right: true)
      + pad(String(format: "%.0f", mine.map(\.peakRSSMiB).max() ?? 0), 9, right: true)
    lines.append(line)
  }
  return lines.joined(separator: "\n")
}
