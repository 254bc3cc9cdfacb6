import ArgumentParser
import Foundation
import GraftTasks

/// VTAB-1k's protocol over child `graft tune` runs (`GridSearch` decides, `SweepRunner` runs):
/// for each task and method, every grid point on train (scored on validation) for each grid
/// seed, then the best point on train + validation for each seed, tested once.
///
/// Folders: `<out>[/<task>]/<method>/grid/<point>/seed-S` and `<out>[/<task>]/<method>/final/seed-S`
/// (the task level only with several tasks). Finished runs are reused and interrupted ones
/// resumed, so a sweep stopped anywhere continues where it was.
struct ProtocolSweep {
  /// Runs the children (its `out` is the sweep's folder, its settings apply to every run).
  var runner: SweepRunner
  /// The grid of each method.
  var grids: [String: [GridAxis]]
  /// Seeds of the final runs.
  var seeds: [UInt64]
  /// How many of `seeds` (the first ones) each grid point runs with; its score is the mean.
  var gridSeedCount: Int
  /// How many times a method's learning-rate axis may grow by one step beyond the edge its
  /// choice sits on (`--widen`): the choice is made again on the wider grid each time.
  var widenLimit: Int

  /// Settings every grid run gets last: train on the training split only.
  static let gridSettings = ["data.train_on=train"]
  /// Settings every final run gets last: train + validation, all epochs (nothing held out to
  /// stop early on).
  static let finalSettings = ["data.train_on=train+val", "train.patience=0"]
  /// How often a grid may widen by default (`--widen`): on Graft-1k's MNIST task, at 10
  /// epochs, six of the thirteen methods chose the top rate of their preset grid and one its
  /// bottom.
  static let defaultWidenLimit = 2

  /// Runs the protocol; returns the results (task-major, methods in order) and the failed
  /// runs. A method whose grid runs all failed gets no final run (and no result).
  func run(methods: [String], tasks: [String]) throws -> (
    results: [ProtocolResult], failures: [String]
  ) {
    let gridSeeds = Array(seeds.prefix(gridSeedCount))
    func runs(_ method: String, on task: String) -> Bool {
      runner.variants[method]?.tasks?.contains(task) ?? true
    }
    var total = tasks.map { task in
      methods.filter { runs($0, on: task) }.map { m in
        GridSearch.points(grids[m] ?? []).count * gridSeeds.count + seeds.count
      }.reduce(0, +)
    }.reduce(0, +)
    // The whole job is these runs: its ETA counts them, not the reporter's placeholder step.
    runner.progress.totalSteps = total
    runner.progress.beginPhase("runs", steps: total)
    var done = 0
    var results: [ProtocolResult] = []
    var failures: [String] = []
    func counter() -> String {
      done += 1
      return "[\(done)/\(total)]"
    }
    for task in tasks {
      for method in methods where runs(method, on: task) {
        var axes = grids[method] ?? []
        let base = runner.folder(task: task, method: method, single: tasks.count == 1)
        // Validation scores by point folder, so that a widened grid keeps the runs it had.
        var scored: [String: [Double?]] = [:]
        // The first grid seed's validation curve by point folder: the chosen one's tells
        // whether its schedule converged.
        var curves: [String: [Double]] = [:]
        var widenings = 0
        var points: [[Int]] = []
        var validation: [[Double?]] = []
        var means: [Double] = []
        var chosen = 0
        while true {
          points = GridSearch.points(axes)
          // Every point not scored yet, every grid seed: one batch, so that `--jobs` runs
          // them side by side.
          var requests: [SweepRunner.RunRequest] = []
          var names: [String] = []
          for point in points {
            let name = GridSearch.folderName(point, axes: axes)
            if scored[name] != nil || names.contains(name) { continue }
            names.append(name)
            for seed in gridSeeds {
              requests.append(
                SweepRunner.RunRequest(
                  method: method, task: task,
                  dir: base.appendingPathComponent("grid").appendingPathComponent(name)
                    .appendingPathComponent("seed-\(seed)"),
                  extra: GridSearch.settings(point, axes: axes) + Self.gridSettings, seed: seed,
                  what: "\(method) on \(task), grid \(name) (seed \(seed))", counter: counter()))
            }
          }
          let outcomes = try runner.runMany(requests)
          for (n, name) in names.enumerated() {
            scored[name] = outcomes[(n * gridSeeds.count)..<((n + 1) * gridSeeds.count)].map {
              outcome -> Double? in
              switch outcome {
              case .success(let record):
                if record.seed == gridSeeds.first { curves[name] = record.validationCurve }
                return record.validationTop1
              case .failure(let failure):
                failures.append(failure.message)
                return nil
              }
            }
          }
          validation = points.map { scored[GridSearch.folderName($0, axes: axes)] ?? [] }
          means = ProtocolResult.meanScores(validation)
          guard means.contains(where: { $0 >= 0 }) else { break }
          chosen = GridSearch.best(axes: axes, points: points, scores: means)
          // A grid whose edge wins cannot tell whether the best rate lies beyond it: widen.
          guard widenings < widenLimit,
            let edge = GridSearch.lrEdge(points[chosen], axes: axes),
            let wider = GridSearch.widened(axes, beyond: edge)
          else { break }
          let added = GridSearch.points(wider).count - points.count
          let rates = wider.first { $0.key == "optim.lr" }?.values ?? []
          runner.progress.log(
            "\(method) on \(task): the grid's \(edge.rawValue) rate won on validation; optim.lr "
              + "now \(rates.joined(separator: ", ")) (\(added * gridSeeds.count) more runs)")
          axes = wider
          widenings += 1
          total += added * gridSeeds.count
          runner.progress.addSteps(added * gridSeeds.count)
        }
        guard means.contains(where: { $0 >= 0 }) else {
          failures.append("\(method) on \(task): every grid run failed; no final run")
          done += seeds.count
          continue
        }
        let settings = GridSearch.settings(points[chosen], axes: axes)
        runner.progress.log(
          String(
            format: "%@ on %@: chose %@ (validation top-1 %.2f%%)", method, task,
            settings.joined(separator: " "), 100 * means[chosen]))
        let requests = seeds.map { seed in
          SweepRunner.RunRequest(
            method: method, task: task,
            dir: base.appendingPathComponent("final").appendingPathComponent("seed-\(seed)"),
            extra: settings + Self.finalSettings, seed: seed,
            what: "\(method) on \(task), final on train+val (seed \(seed))", counter: counter())
        }
        let (finals, failed) = SweepRunner.split(try runner.runMany(requests))
        failures += failed
        results.append(
          ProtocolResult(
            method: method, task: task, axes: axes, points: points, validation: validation,
            gridSeeds: gridSeeds, chosen: chosen, finals: finals, widenings: widenings,
            chosenCurve: curves[GridSearch.folderName(points[chosen], axes: axes)] ?? []))
      }
    }
    runner.progress.finish()
    return (results, failures)
  }
}

/// Runs the protocol and writes `summary.json` and `report.html` into `out`, prints the table
/// (or the JSON summary); shared by `graft sweep` and `graft bench graft1k --protocol vtab`.
func runProtocol(
  title: String, backbone: String, methods: [String], tasks: [String], grids: [String: [GridAxis]],
  settings: [String], seeds: [UInt64], gridSeedCount: Int, widen: Int, out: URL, fresh: Bool,
  quiet: Bool,
  json: Bool, variants: [String: SweepVariant] = [:], childArguments: [String] = [],
  jobs: Int = 1
) throws {
  for m in methods { _ = try MethodRegistry.descriptor(variants[m]?.method ?? m) }
  // Every key must be one `graft tune` takes, before hours of runs start.
  for m in methods {
    var config = try TuneConfig.preset(for: variants[m]?.method ?? m)
    for s in settings { try config.set(assignment: s) }
    for axis in grids[m] ?? [] {
      for v in axis.values { try config.set(axis.key, v) }
    }
  }
  let started = Date()
  try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
  let progress = ProgressReporter(style: .automatic(quiet: quiet), totalSteps: 1)
  // Prepare (and check) the tasks here once: the children would race to do it.
  for task in tasks {
    if task.hasPrefix("graft1k/"),
      !Graft1k.isPrepared(String(task.dropFirst("graft1k/".count)))
    {
      progress.log("preparing \(task) in \(Graft1k.defaultRoot().path)")
    }
    _ = try ImageTuneData.load(task)
  }
  let sweep = ProtocolSweep(
    runner: SweepRunner(
      backbone: backbone, settings: settings, out: out, fresh: fresh, progress: progress,
      quiet: quiet, variants: variants, childArguments: childArguments, jobs: jobs),
    grids: grids, seeds: seeds, gridSeedCount: gridSeedCount, widenLimit: widen)
  let (results, failures) = try sweep.run(methods: methods, tasks: tasks)
  guard !results.isEmpty else {
    throw RunsFailed(description: "every run failed:\n" + failures.joined(separator: "\n"))
  }
  let summary = ProtocolSummary(
    backbone: backbone, tasks: tasks, results: results,
    wallSeconds: Date().timeIntervalSince(started))
  try summary.write(to: out)
  try ReportWriter.writeProtocol(summary, title: title, to: out)
  if json {
    let d = try JSONSerialization.data(
      withJSONObject: summary.json, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: d, as: UTF8.self))
  } else {
    print(summary.table())
    print(
      String(
        format:
          "\n\"tied\": each mean inside the other's 95%% interval (Student t, %d seeds)."
          + "\n%.0f s in all; wrote %@ and %@", seeds.count, summary.wallSeconds,
        out.appendingPathComponent("summary.json").path,
        out.appendingPathComponent("report.html").path))
  }
  if !failures.isEmpty {
    throw RunsFailed(
      description:
        "\(failures.count) run(s) failed (the others are in the table):\n"
        + failures.joined(separator: "\n"))
  }
}

/// `graft sweep`: VTAB-1k's protocol for one or more methods on one task.
struct SweepCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sweep",
    abstract: "Choose lr and weight decay on validation, retrain on train+val, test per seed.",
    discussion: """
      VTAB-1k's protocol as VPT and V-PETL Bench run it. Every point of the grid (the product \
      of the --grid axes; default: each method's preset grid, see `graft methods`) trains on \
      the training split and is scored by its best validation top-1; the best point (ties: \
      the smaller optim.lr, then the smaller optim.weight_decay) is retrained on train + \
      validation (data.train_on=train+val; VTAB-1k: 800 + 200) for the same epochs, once per \
      seed, and only that run is tested (its last epoch). Each run is a child `graft tune` in \
      <out>/<method>/grid/<point>/seed-S or <out>/<method>/final/seed-S; finished runs are \
      reused, interrupted ones resumed. Writes <out>/summary.json (every point's validation \
      top-1, the choice, test top-1 per seed, mean, std and 95% interval, Student t) and \
      <out>/report.html (the grid's validation heat maps).
      """)

  @Option(help: "Backbone: bundled name, model folder or .npz.")
  var backbone = "vit-nano-fmnist"

  @Option(name: .customLong("method"), help: "Method (repeatable).")
  var methods: [String] = []

  @Option(help: "Task (a --data reference: graft1k/<task>, a VTAB-1k folder, …).")
  var data: String

  @Option(
    name: .customLong("grid"),
    help: "KEY=V1,V2,… axis of the grid (repeatable; default: each method's preset grid).")
  var grid: [String] = []

  @Option(help: "Number of seeds of the final runs (seeds 0..<N).")
  var seeds = 1

  @Option(help: "How many of those seeds each grid point runs with (its score is the mean).")
  var gridSeeds = 1

  @OptionGroup var widenOption: WidenOption

  @OptionGroup var jobsOption: JobsOption

  @OptionGroup var settings: SetOptions

  @Option(help: "Run folder.")
  var out: String

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @Option(
    help: ArgumentHelp(
      "Every run starts from this run's tensors (graft tune --init-from).", valueName: "dir"))
  var initFrom: String?

  @Flag(help: "With --init-from: the head starts fresh (PVP's warm start).")
  var freshHead = false

  @OptionGroup var jsonFlag: JSONFlag
  @OptionGroup var quietFlag: QuietFlag

  func validate() throws {
    guard !methods.isEmpty else { throw ValidationError("give at least one --method") }
    if let twice = methods.firstRepeated {
      throw ValidationError("--method \(twice) is given twice")
    }
    if freshHead, initFrom == nil {
      throw ValidationError("--fresh-head belongs with --init-from")
    }
    guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
    guard (1...seeds).contains(gridSeeds) else {
      throw ValidationError("--grid-seeds must be between 1 and --seeds (\(seeds))")
    }
  }

  func run() throws {
    let axes = try grid.map { try GridAxis(parsing: $0) }
    let keys = axes.map(\.key)
    if let twice = keys.firstRepeated {
      throw ValidationError("--grid \(twice) is given twice")
    }
    var grids: [String: [GridAxis]] = [:]
    for m in methods {
      grids[m] = axes.isEmpty ? try TuneConfig.defaultGrid(for: m) : axes
    }
    try runProtocol(
      title: "graft sweep: \(backbone) on \(data)", backbone: backbone, methods: methods,
      tasks: [data], grids: grids, settings: settings.overrides,
      seeds: (0..<UInt64(seeds)).map { $0 }, gridSeedCount: gridSeeds, widen: widenOption.widen,
      out: URL(fileURLWithPath: out), fresh: fresh, quiet: quietFlag.quiet,
      json: jsonFlag.json,
      childArguments: initFrom.map {
        ["--init-from", URL(fileURLWithPath: $0).path] + (freshHead ? ["--fresh-head"] : [])
      } ?? [], jobs: jobsOption.jobs)
  }
}

/// `--widen N`, shared by the commands that run the protocol.
struct WidenOption: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "How many times a method's optim.lr axis may grow one step (the ratio of its two edge "
        + "rates, ×2.5 for the preset grids) beyond an edge that wins on validation; 0: never.",
      valueName: "n"))
  var widen = ProtocolSweep.defaultWidenLimit

  func validate() throws {
    guard widen >= 0 else { throw ValidationError("--widen must be 0 or more") }
  }
}

/// `--jobs N`: how many child runs a sweep trains at once.
struct JobsOption: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Child runs at once, each on twice the cores divided by N, at most all of them "
        + "(GRAFT_NUM_THREADS), so the last runs use the cores the others left; several small "
        + "runs side by side use the cores better than one run on all of them.",
      valueName: "n"))
  var jobs = 1

  func validate() throws {
    guard jobs >= 1 else { throw ValidationError("--jobs must be 1 or more") }
  }
}
