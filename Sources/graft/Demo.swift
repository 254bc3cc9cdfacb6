import ArgumentParser
import Foundation
import GraftTasks

/// Shared by `graft demo` and `graft bench graft1k`: runs the sweep, writes `summary.json` and
/// `report.html` into `out`, prints the table (or the JSON summary).
func runSweep(
  title: String, backbone: String, methods: [String], tasks: [String], settings: [String],
  out: URL, fresh: Bool, quiet: Bool, json: Bool, methodSettings: [String: [String]] = [:],
  jobs: Int = 1
) throws {
  for m in methods { _ = try MethodRegistry.descriptor(m) }
  // A method listed twice would run twice and fill two identical rows.
  if let twice = methods.firstRepeated {
    throw ValidationError("--methods: \(twice) is given twice")
  }
  let started = Date()
  let progress = ProgressReporter(style: .automatic(quiet: quiet), totalSteps: 1)
  try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
  // Prepare the tasks here once (the children would race to do it), and keep the first one's
  // test images for the report.
  var first: ImageTuneData? = nil
  var testLabels: [String: [Int]] = [:]
  for task in tasks {
    if task.hasPrefix("graft1k/") {
      let name = String(task.dropFirst("graft1k/".count))
      if !Graft1k.isPrepared(name) {
        progress.log("preparing \(task) in \(Graft1k.defaultRoot().path)")
      }
    }
    let data = try ImageTuneData.load(task)
    if first == nil { first = data }
    testLabels[task] = ReportWriter.testLabels(data)
  }
  let runner = SweepRunner(
    backbone: backbone, settings: settings, out: out, fresh: fresh,
    progress: ProgressReporter(
      style: .automatic(quiet: quiet), totalSteps: methods.count * tasks.count),
    quiet: quiet, methodSettings: methodSettings, jobs: jobs)
  let (records, failures) = try runner.run(methods: methods, tasks: tasks)
  guard !records.isEmpty else {
    throw RunsFailed(description: "every run failed:\n" + failures.joined(separator: "\n"))
  }
  let summary = SweepSummary(
    backbone: backbone, tasks: tasks, runs: records,
    wallSeconds: Date().timeIntervalSince(started))
  try summary.write(to: out)
  try ReportWriter.write(
    summary, title: title, classNames: first!.classNames,
    testSamples: ReportWriter.gridSamples(first!), testLabels: testLabels, to: out)
  if json {
    let d = try JSONSerialization.data(withJSONObject: summary.json, options: [.sortedKeys])
    print(String(decoding: d, as: UTF8.self))
  } else {
    print(sweepTable(summary))
    for line in ReportWriter.belowProbe(summary, testLabels: testLabels) { print("\n" + line) }
    print(
      String(
        format: "\n%.0f s in all; wrote %@ and %@", summary.wallSeconds,
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

/// `graft demo`: the image demo (`graft demo images`, the default) or the point-cloud one
/// (`graft demo points`).
struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "The demos: images (the default), points and video.",
    subcommands: [DemoImages.self, DemoPoints.self, DemoVideo.self],
    defaultSubcommand: DemoImages.self)
}

/// `graft demo` / `graft demo images`: the main job.
struct DemoImages: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "images",
    abstract: "Adapt the bundled backbone to the Graft-1k MNIST task with six methods.",
    discussion: """
      Prepares graft1k/mnist on first use (from Data/), then trains each method in its own \
      process and writes <out>/<method>/ run folders, <out>/summary.json and \
      <out>/report.html. --protocol vtab (the default) is VTAB-1k's protocol's last stage: each \
      method's learning rate and weight decay as the protocol chose them on this task's \
      validation split (recorded from graft bench graft1k --protocol vtab --tasks mnist), \
      trained on train + validation for the method's recipe epochs (its converged schedule), \
      tested once. --protocol search runs the whole protocol (each method's grid on \
      validation first, widened where its edge wins; --seeds final runs). --protocol default \
      trains each preset recipe on the training split with \
      \(DemoImages.defaultSettings.joined(separator: ", ")), as earlier versions did. Finished \
      runs in <out> are reused; --fresh redoes them.
      """)

  /// What `--protocol default` changes in every method's preset (the protocols use each
  /// method's recipe epochs).
  static let defaultSettings = ["train.epochs=10"]

  @Option(help: "vtab (the protocol's choices, train+val), search (the whole protocol) or default.")
  var `protocol` = "vtab"

  @Option(help: "With --protocol search: seeds of the final runs (0..<N).")
  var seeds = 1

  @Option(
    help: ArgumentHelp(
      "Run folder (default runs/demo; runs/demo-search or runs/demo-recipes for the other "
        + "protocols, so that their runs never mix)."))
  var out: String?

  @Option(help: "Backbone: bundled name, model folder or .npz.")
  var backbone = "vit-nano-fmnist"

  @Option(help: "Task (a --data reference).")
  var task = "graft1k/mnist"

  @Option(help: "Comma-separated methods.")
  var methods = "linear,mp,vpt-deep,lst,lora,full"

  @OptionGroup var widenOption: WidenOption

  @OptionGroup var jobsOption: JobsOption

  @OptionGroup var settings: SetOptions
  var overrides: [String] { settings.overrides }

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @OptionGroup var quietFlag: QuietFlag
  var quiet: Bool { quietFlag.quiet }

  func run() throws {
    let names = methods.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    // An unknown name is that, whichever protocol would have run it.
    for m in names { _ = try MethodRegistry.descriptor(m) }
    let title = "Graft demo: \(backbone) on \(task)"
    let folder = URL(
      fileURLWithPath: out
        ?? ["default": "runs/demo-recipes", "search": "runs/demo-search"][`protocol`]
        ?? "runs/demo")
    switch `protocol` {
    case "default":
      try runSweep(
        title: title, backbone: backbone, methods: names, tasks: [task],
        settings: Self.defaultSettings + overrides, out: folder, fresh: fresh,
        quiet: quiet, json: json, jobs: jobsOption.jobs)
    case "vtab":
      guard task == "graft1k/mnist" else {
        throw ValidationError(
          "--protocol vtab replays the choices made on graft1k/mnist; for \(task) use "
            + "--protocol search (the whole protocol) or --protocol default")
      }
      var chosen: [String: [String]] = [:]
      for m in names {
        guard let choice = DemoChoices.mnist[m] else {
          throw ValidationError(
            "--protocol vtab: no recorded choice for '\(m)' (the demo's are "
              + "\(DemoChoices.mnist.keys.sorted().joined(separator: ", "))); use --protocol search"
          )
        }
        // The recorded choice first, so that the user's --set still wins.
        chosen[m] = choice + ProtocolSweep.finalSettings
      }
      try runSweep(
        title: title + " (VTAB-1k protocol: choices from validation, train + val)",
        backbone: backbone, methods: names, tasks: [task], settings: overrides, out: folder,
        fresh: fresh,
        quiet: quiet, json: json, methodSettings: chosen, jobs: jobsOption.jobs)
    case "search":
      guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
      var grids: [String: [GridAxis]] = [:]
      for m in names { grids[m] = try TuneConfig.defaultGrid(for: m) }
      try runProtocol(
        title: title + " (VTAB-1k protocol)", backbone: backbone, methods: names, tasks: [task],
        grids: grids, settings: overrides,
        seeds: (0..<UInt64(seeds)).map { $0 }, gridSeedCount: 1, widen: widenOption.widen,
        out: folder, fresh: fresh, quiet: quiet, json: json, jobs: jobsOption.jobs)
    default:
      throw ValidationError("--protocol '\(`protocol`)': expected vtab, search or default")
    }
  }
}

/// `graft bench graft1k`.
struct BenchGraft1k: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graft1k",
    abstract: "Every method on every Graft-1k task with the bundled backbone (VTAB-style table).",
    discussion: """
      Each method trains with its preset recipe (\(BenchGraft1k.defaultSettings.joined(separator: ", "))) \
      in its own process (so each peak RSS is its own). Writes <out>/<task>/<method>/ run \
      folders, <out>/summary.json and <out>/report.html. Finished runs are reused; --fresh \
      redoes them. --protocol vtab runs VTAB-1k's protocol instead (see `graft sweep`) with \
      each method's recipe epochs (its converged schedule): each method's preset grid (lr × \
      weight decay, widened where its edge wins) on train/val, then the best point on train + \
      val for --seeds seeds (default 3), tested once; default --out runs/graft1k-vtab.
      """)

  /// The row name of PVP's warm start (`--pvp-from`): vpt-deep from another task's prompts.
  static let pvpRow = "vpt-deep+pvp"

  /// What the default protocol changes in every method's preset: 10 epochs keep the 65 runs
  /// within an hour on two cores (`--protocol vtab` uses each method's recipe epochs).
  static let defaultSettings = ["train.epochs=10"]

  @Option(help: "Run folder (default runs/graft1k, or runs/graft1k-vtab with --protocol vtab).")
  var out: String?

  @Option(help: "default (one run per method and task) or vtab (grid on validation, train+val).")
  var `protocol` = "default"

  @Option(help: "Seeds of the final runs with --protocol vtab (seeds 0..<N).")
  var seeds = 3

  @Option(
    help: ArgumentHelp(
      "With --protocol vtab: add PVP's row, vpt-deep started from the prompts of its final run "
        + "(seed 0) on this task, with a fresh head, on every other task.", valueName: "task"))
  var pvpFrom: String?

  @Option(help: "Backbone: bundled name, model folder or .npz.")
  var backbone = "vit-nano-fmnist"

  @Option(help: "Comma-separated methods (default: all that take images).")
  var methods: String?

  @Option(help: "Comma-separated Graft-1k tasks (default: all).")
  var tasks: String?

  @OptionGroup var widenOption: WidenOption

  @OptionGroup var jobsOption: JobsOption

  @OptionGroup var settings: SetOptions
  var overrides: [String] { settings.overrides }

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @OptionGroup var quietFlag: QuietFlag
  var quiet: Bool { quietFlag.quiet }

  func run() throws {
    let list = { (s: String) in
      s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    let taskNames = tasks.map(list) ?? Graft1k.tasks.map(\.name)
    // Graft-1k is images: methods that take point clouds (P2P) run on the 3-D tasks instead.
    let methodNames =
      methods.map(list) ?? MethodRegistry.all.filter { !$0.takesPointClouds }.map(\.name)
    var taskRefs = taskNames.map { $0.hasPrefix("graft1k/") ? $0 : "graft1k/" + $0 }
    if pvpFrom != nil, `protocol` != "vtab" {
      throw ValidationError("--pvp-from needs --protocol vtab")
    }
    switch `protocol` {
    case "default":
      try runSweep(
        title: "Graft-1k: \(backbone)", backbone: backbone, methods: methodNames,
        tasks: taskRefs, settings: Self.defaultSettings + overrides,
        out: URL(fileURLWithPath: out ?? "runs/graft1k"), fresh: fresh, quiet: quiet, json: json,
        jobs: jobsOption.jobs)
    case "vtab":
      guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
      let folder = URL(fileURLWithPath: out ?? "runs/graft1k-vtab")
      var rows = methodNames
      var variants: [String: SweepVariant] = [:]
      if let pvpFrom {
        let source = pvpFrom.hasPrefix("graft1k/") ? pvpFrom : "graft1k/" + pvpFrom
        guard taskRefs.contains(source), taskRefs.count > 1 else {
          throw ValidationError("--pvp-from \(pvpFrom): give it among at least two --tasks")
        }
        // The source task first, so that its vpt-deep final runs exist before the PVP rows
        // start from them (the protocol runs task by task).
        taskRefs = [source] + taskRefs.filter { $0 != source }
        if !rows.contains("vpt-deep") { rows.append("vpt-deep") }
        let sourceRun = folder.appendingPathComponent(
          source.replacingOccurrences(of: "/", with: "_")
        )
        .appendingPathComponent("vpt-deep/final/seed-0")
        rows.append(Self.pvpRow)
        variants[Self.pvpRow] = SweepVariant(
          method: "vpt-deep", arguments: ["--init-from", sourceRun.path, "--fresh-head"],
          tasks: Set(taskRefs.dropFirst()))
      }
      var grids: [String: [GridAxis]] = [:]
      for m in rows { grids[m] = try TuneConfig.defaultGrid(for: variants[m]?.method ?? m) }
      try runProtocol(
        title: "Graft-1k, VTAB-1k protocol: \(backbone)", backbone: backbone,
        methods: rows, tasks: taskRefs, grids: grids, settings: overrides,
        seeds: (0..<UInt64(seeds)).map { $0 },
        gridSeedCount: 1, widen: widenOption.widen, out: folder, fresh: fresh, quiet: quiet,
        json: json,
        variants: variants, jobs: jobsOption.jobs)
    default:
      throw ValidationError("--protocol '\(`protocol`)': expected default or vtab")
    }
  }
}
