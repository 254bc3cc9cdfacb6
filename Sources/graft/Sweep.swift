import ArgumentParser
import Foundation
import GraftTasks
import GraftTensor

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
/// reused; an interrupted one is resumed; `fresh` starts every run over.
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
    var records: [RunRecord] = []
    var failures: [String] = []
    let runSeeds: [UInt64?] = seeds.isEmpty ? [nil] : seeds.map { $0 }
    let total = methods.count * tasks.count * runSeeds.count
    progress.beginPhase("runs", steps: total)
    for task in tasks {
      for method in methods {
        for seed in runSeeds {
          let base = folder(task: task, method: method, single: tasks.count == 1)
          let dir = seed.map { base.appendingPathComponent("seed-\($0)") } ?? base
          let what = "\(method) on \(task)" + (seed.map { " (seed \($0))" } ?? "")
          let n = records.count + failures.count + 1
          do {
            records.append(
              try runOne(
                method: method, task: task, dir: dir, seed: seed, what: what,
                counter: "[\(n)/\(total)]"))
          } catch let error as ChildFailure {
            failures.append(error.message)
          }
        }
      }
    }
    progress.finish()
    return (records, failures)
  }

  /// A child `graft tune` that failed (the sweep goes on without it).
  struct ChildFailure: Error {
    var message: String
  }

  /// Runs `method` on `task` in `dir` as a child `graft tune` with the method's settings, the
  /// sweep's, then `extra`, then the seed; a finished run there is reused and an interrupted
  /// one resumed. Advances the progress by one step and logs the result; a child that fails
  /// throws `ChildFailure` (logged), other errors (an unreadable finished run) propagate.
  func runOne(
    method: String, task: String, dir: URL, extra: [String] = [], seed: UInt64?, what: String,
    counter: String
  ) throws -> RunRecord {
    let summary = dir.appendingPathComponent("summary.json")
    let fm = FileManager.default
    if fresh { try? fm.removeItem(at: dir) }
    let wanted =
      (methodSettings[method] ?? []) + settings + extra + (seed.map { ["seed=\($0)"] } ?? [])
    let arguments = childArguments + (variants[method]?.arguments ?? [])
    let initFrom = arguments.firstIndex(of: "--init-from").map { arguments[$0 + 1] }
    if fm.fileExists(atPath: dir.path),
      isStale(
        dir, method: variants[method]?.method ?? method, settings: wanted, initFrom: initFrom,
        freshHead: arguments.contains("--fresh-head"))
    {
      progress.log("\(counter) \(what): \(dir.path) was trained otherwise; redoing it")
      try fm.removeItem(at: dir)
    }
    if fm.fileExists(atPath: summary.path) {
      progress.log("\(counter) \(what): finished earlier, reusing \(dir.path)")
    } else {
      progress.log("\(counter) \(what)")
      var args: [String]
      if Trainer.holdsRun(dir) {
        args = ["tune", "--resume", dir.path, "--json"]
      } else {
        try? fm.removeItem(at: dir)
        args = [
          "tune", "--backbone", methodBackbones[method] ?? backbone, "--method",
          variants[method]?.method ?? method, "--data", task, "--out", dir.path, "--json",
        ]
        args += arguments
        // The method's own settings first (its recipe for this sweep), so the sweep's and
        // the user's settings win; the seed last.
        for s in wanted { args += ["--set", s] }
      }
      if quiet { args.append("--quiet") }
      do {
        try runChild(args, what: what)
      } catch {
        progress.step()
        progress.log("    failed: \(error)")
        throw ChildFailure(message: "\(error)")
      }
    }
    var record = try RunRecord.load(folder: dir, task: task)
    record.seed = seed
    progress.step()
    progress.log(
      String(
        format: "    val top-1 %.2f%%  test top-1 %.2f%%  %d trainable  %.1f s  %.0f MiB peak RSS",
        100 * record.validationTop1, 100 * record.testTop1, record.trainableParameters,
        record.trainSeconds, record.peakRSSMiB))
    return record
  }

  /// Whether the run in `dir` (finished or interrupted) was trained otherwise than a new run
  /// would be: its `tune_config.yaml` differs from `method`'s preset with `settings` (the
  /// `--set` assignments a new run gets) in a setting that changes results (so a changed grid,
  /// choice, recipe or a removed setting counts, `train.recompute` does not), or its `run.json`
  /// names another `--init-from` folder, other contents of it, or another `--fresh-head`. A
  /// sweep then redoes the run instead of reusing it.
  func isStale(
    _ dir: URL, method: String, settings: [String], initFrom: String?, freshHead: Bool
  ) -> Bool {
    let url = dir.appendingPathComponent("tune_config.yaml")
    guard let yaml = try? String(contentsOf: url, encoding: .utf8) else { return false }
    do {
      var stored = TuneConfig(method: method)
      try stored.apply(yaml: yaml, source: url.path)
      var wanted = try TuneConfig.preset(for: method)
      for s in settings { try wanted.set(assignment: s) }
      guard try wanted.resumeConflicts(with: stored).isEmpty else { return true }
    } catch {
      return true
    }
    let run = try? MappedFile.contents(of: dir.appendingPathComponent("run.json"))
    let object = run.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
    guard object?["init_from"] as? String == initFrom else { return true }
    guard let initFrom else { return false }
    return object?["fresh_head"] as? Bool != freshHead
      || object?["init_from_hash"] as? String
        != (try? AdapterCheckpoint.tensorsHash(URL(fileURLWithPath: initFrom)))
  }

  /// Runs this executable with `arguments`; its standard error passes through, its standard
  /// output (the JSON summary) is discarded (the run folder holds it).
  private func runChild(_ arguments: [String], what: String) throws {
    let process = Process()
    process.executableURL =
      Bundle.main.executableURL
      ?? URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw ValidationError(
        "\(what) failed (graft \(arguments.joined(separator: " ")) exited with "
          + "\(process.terminationStatus))")
    }
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
