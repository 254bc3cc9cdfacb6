import ArgumentParser
import Foundation
import GraftDetection
import GraftTasks

/// `graft bench det`: every method that detects, on `canvas-det`, each run in its own process.
struct BenchDet: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "det",
    abstract: "Every method as an FCOS detector on canvas-det (COCO AP, parameters, time, RSS).",
    discussion: """
      Runs graft tune --task detection for each method and seed on --data (default: the \
      canvas-det folder of graft data prepare canvas-det) with the bundled backbone, each in \
      its own process so each peak RSS is its own, with the method's preset recipe, \
      \(BenchDet.defaultSettings.joined(separator: ", ")) and det.lr by the recipe's \
      optimizer (SGD 0.01, AdamW 0.001) for the pyramid and head (--set adds or overrides). \
      HST detects on its 4-scale side maps; every other method on a ViTDet simple feature \
      pyramid of its last token map. Writes <out>/<method>/seed-<s>/ run folders, \
      <out>/summary.json and <out>/report.html (the table with mean ± std over seeds and each \
      method against the linear floor, AP against trainable parameters, and test images with \
      true and predicted boxes). Finished runs are reused, interrupted ones resumed, when they \
      were trained with the same settings, backbone and data (others are redone); --fresh \
      redoes them.
      """)

  /// Every method with a detection route (MP and P2P are classification-only; IDPT needs a
  /// point backbone) but `vpt-shallow`: VPT-deep stands for prompt tuning (`--methods` adds
  /// it).
  static let defaultMethods = [
    "linear", "full", "bitfit", "ln-tune", "vpt-deep", "lora", "adapter", "mp+", "lst", "hst",
    "unipt",
  ]

  /// The benchmark's changes to every preset: 64-pixel images (the canvases' own size), a
  /// 64-channel neck, two tower layers, batch 16, 10 epochs with one warm-up epoch.
  static let defaultSettings = [
    "train.epochs=10", "train.batch_size=16", "optim.warmup_epochs=1", "det.image_size=64",
    "det.neck=64", "det.convs=2",
  ]

  @Option(help: "Run folder.")
  var out = "runs/det"

  @Option(help: "Backbone: bundled name or timm folder.")
  var backbone = "vit-nano-fmnist"

  @Option(help: "Detection data: a canvas-det folder or a COCO .json.")
  var data: String?

  @Option(help: "Comma-separated methods (default: every method that detects).")
  var methods: String?

  @Option(help: "Comma-separated seeds (default 0,1,2: one seed misleads on small test sets).")
  var seeds = "0,1,2"

  @OptionGroup var settings: SetOptions

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  @OptionGroup var quietFlag: QuietFlag

  /// The defaults with `--set` applied: a key given again replaces the default's entry.
  var effectiveSettings: [String] {
    let given = Set(settings.overrides.map(Self.key))
    return Self.defaultSettings.filter { !given.contains(Self.key($0)) } + settings.overrides
  }

  static func key(_ setting: String) -> Substring {
    setting.split(separator: "=", maxSplits: 1).first ?? ""
  }

  /// The pyramid and head's learning rate (`det.lr`) for `method` when `--set` gives none:
  /// FCOS's own SGD rate (0.01 at batch 16) when the method's recipe is SGD, 1e-3 when it is
  /// AdamW. The recipes' own rates suit their tensors, not new layers: the linear probe's SGD
  /// 0.1 left the frozen pyramid at 2.6 validation AP against 4.6 at 0.01, full fine-tuning's
  /// AdamW 1e-4 at 1.6 against 3.0 with the new layers at 1e-3 (README, "Measured").
  static func detectionLR(for method: String) throws -> String {
    try TuneConfig.preset(for: method).optimizer == .sgd ? "0.01" : "0.001"
  }

  /// The settings of `method`'s runs: the effective settings, with its det.lr unless given.
  func settings(for method: String) throws -> [String] {
    var all = effectiveSettings
    if !all.contains(where: { Self.key($0) == "det.lr" }) {
      all.append("det.lr=\(try Self.detectionLR(for: method))")
    }
    return all
  }

  func run() throws {
    let dataRef = data ?? DataHome.folder("canvas-det").path
    let dataset = try DetectionTuneData.load(dataRef)
    let list =
      methods.map {
        $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      } ?? Self.defaultMethods
    let root = URL(fileURLWithPath: out)
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    let log: (String) -> Void = {
      if !quietFlag.quiet { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    }
    let seedValues = try parseSeeds(seeds)
    if settings.overrides.contains(where: { Self.key($0) == "seed" }) {
      throw ValidationError("--set seed=…: give the seeds with --seeds")
    }
    var rows: [DetectionReport.Row] = []
    var runs: [[String: Any]] = []
    var failures: [String] = []
    let fm = FileManager.default
    let reuse = RunReuse()
    for (n, method) in list.enumerated() {
      let methodSettings = try settings(for: method)
      var summaries: [DetectionSummary] = []
      var seedsDone: [UInt64] = []
      var firstDetections: [Detection]?
      for seed in seedValues {
        let dir = root.appendingPathComponent(method).appendingPathComponent("seed-\(seed)")
        if fresh { try? fm.removeItem(at: dir) }
        let what = "[\(n + 1)/\(list.count)] \(method) seed \(seed)"
        // A run trained with other settings, backbone or data is redone, not reported as new.
        if fm.fileExists(atPath: dir.path),
          reuse.isStale(
            dir, method: method, settings: ["seed=\(seed)"] + methodSettings, backbone: backbone,
            data: dataRef)
        {
          log("\(what): \(dir.path) was trained otherwise; redoing it")
          try fm.removeItem(at: dir)
        }
        if fm.fileExists(atPath: dir.appendingPathComponent("summary.json").path) {
          log("\(what): finished earlier, reusing \(dir.path)")
        } else {
          log(what)
          var args: [String]
          if Trainer.holdsRun(dir) {
            args = ["tune", "--resume", dir.path, "--json"]
          } else {
            try? fm.removeItem(at: dir)
            try fm.createDirectory(
              at: dir.deletingLastPathComponent(), withIntermediateDirectories: true)
            args = [
              "tune", "--task", "detection", "--backbone", backbone, "--method", method,
              "--data", dataRef, "--out", dir.path, "--json", "--set", "seed=\(seed)",
            ]
            for s in methodSettings { args += ["--set", s] }
          }
          if quietFlag.quiet { args.append("--quiet") }
          let process = Process()
          process.executableURL =
            Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
          process.arguments = args
          process.environment = ParentWatch.childEnvironment()
          process.standardOutput = FileHandle.nullDevice
          try process.run()
          process.waitUntilExit()
          guard process.terminationStatus == 0 else {
            failures.append("\(method) seed \(seed): graft \(args.joined(separator: " ")) failed")
            log("    failed (exit \(process.terminationStatus))")
            continue
          }
        }
        let summary = try DetectionSummary.read(from: dir.appendingPathComponent("summary.json"))
        if firstDetections == nil {
          firstDetections = try COCOResults.load(
            path: dir.appendingPathComponent("test_detections.json").path,
            groundTruth: dataset.test.dataset)
        }
        summaries.append(summary)
        seedsDone.append(seed)
        var run = summary.json
        run["folder"] = dir.path
        run["seed"] = Int(seed)
        run["settings"] = methodSettings + ["seed=\(seed)"]
        runs.append(run)
        log(
          String(
            format: "    test AP %.1f AP50 %.1f  %d trainable  %.0f s  %.0f MiB",
            100 * summary.test.stats[0],
            100 * summary.test.stats[1], summary.trainableParameters, summary.trainSeconds,
            Double(summary.peakRSSBytes) / 1_048_576))
      }
      if let firstDetections {
        rows.append(
          DetectionReport.Row(
            method: method, summaries: summaries, seeds: seedsDone, detections: firstDetections))
      }
    }
    let settingsText =
      "backbone \(backbone); data \(dataRef) (\(dataset.description)); seeds "
      + seedValues.map(String.init).joined(separator: ", ") + "; settings "
      + effectiveSettings.joined(separator: ", ")
      + " over each method's preset recipe; det.lr by the recipe's optimizer (SGD 0.01, "
      + "AdamW 0.001) unless set"
    let floor = rows.first { $0.method == DetectionReport.floorMethod }
    var summary: [String: Any] = [
      "backbone": backbone, "data": dataRef,
      "settings": effectiveSettings, "seeds": seedValues.map { Int($0) },
      "methods": rows.map { $0.json(floor: floor) },
      "runs": runs,
    ]
    if !failures.isEmpty { summary["failures"] = failures }
    try AtomicFile.write(
      JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        + Data("\n".utf8), to: root.appendingPathComponent("summary.json"))
    try AtomicFile.write(
      Data(
        try DetectionReport.html(
          title: "graft bench det: \(backbone) on canvas-det", settings: settingsText, rows: rows,
          test: dataset.test
        ).utf8), to: root.appendingPathComponent("report.html"))
    if jsonFlag.json {
      let d = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    } else {
      print(table(rows))
      print("report: \(root.appendingPathComponent("report.html").path)")
    }
    if !failures.isEmpty {
      throw RunsFailed(
        description: "\(failures.count) runs failed:\n" + failures.joined(separator: "\n"))
    }
  }

  /// The text table: COCO's six AP numbers (percent, mean ± std over seeds for AP), validation
  /// AP, the comparison with the linear floor, trainable parameters and share, training seconds
  /// (mean) and peak RSS (largest).
  func table(_ rows: [DetectionReport.Row]) -> String {
    let floor = rows.first { $0.method == DetectionReport.floorMethod }
    var lines = [
      "method           AP          AP50  AP75   APs   APm   APl  val AP  vs linear  seeds"
        + "   trainable    share  train s  RSS MiB"
    ]
    for r in rows {
      let s = r.summary
      let ap = DetectionReport.pct(r.test(0)).padding(toLength: 11, withPad: " ", startingAt: 0)
      let t = (1..<6).map { i -> String in
        let v = r.test(i)
        return v.count == 0 ? "    –" : String(format: "%5.1f", 100 * v.mean)
      }
      lines.append(
        r.method.padding(toLength: 16, withPad: " ", startingAt: 0) + " " + ap + " "
          + t.joined(separator: " ")
          + String(format: " %7.1f", 100 * r.validationAP.mean) + "  "
          + r.comparison(with: floor).padding(toLength: 9, withPad: " ", startingAt: 0)
          + String(
            format: " %5d %11d %7.2f%% %8.0f %8.0f", r.seeds.count, s.trainableParameters,
            100 * Double(s.trainableParameters) / Double(max(s.backboneParameters, 1)),
            r.meanTrainSeconds, Double(r.largestPeakRSSBytes) / 1_048_576))
    }
    return lines.joined(separator: "\n")
  }
}
