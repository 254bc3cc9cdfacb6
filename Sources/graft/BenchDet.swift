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
      Runs graft tune --task detection for each method on --data (default: the canvas-det \
      folder of graft data prepare canvas-det) with the bundled backbone, each in its own \
      process so each peak RSS is its own, with the method's preset recipe and \
      \(BenchDet.defaultSettings.joined(separator: ", ")) (--set adds or overrides). HST \
      detects on its 4-scale side maps; every other method on a ViTDet simple feature pyramid \
      of its last token map. Writes <out>/<method>/ run folders, <out>/summary.json and \
      <out>/report.html (the table, AP against trainable parameters, and test images with \
      true and predicted boxes). Finished runs are reused, interrupted ones resumed; --fresh \
      redoes them.
      """)

  /// Every method with a detection route (MP and P2P are classification-only; IDPT needs a
  /// point backbone).
  static let defaultMethods = [
    "linear", "full", "bitfit", "ln-tune", "vpt-deep", "lora", "adapter", "mp+", "lst", "hst",
    "unipt",
  ]

  /// The benchmark's changes to every preset: 64-pixel images (the canvases' own size), a
  /// 64-channel neck, two tower layers, batch 16, 8 epochs with one warm-up epoch.
  static let defaultSettings = [
    "train.epochs=8", "train.batch_size=16", "optim.warmup_epochs=1", "det.image_size=64",
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

  @OptionGroup var settings: SetOptions

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  @OptionGroup var quietFlag: QuietFlag

  /// The defaults with `--set` applied: a key given again replaces the default's entry.
  var effectiveSettings: [String] {
    func key(_ s: String) -> Substring { s.split(separator: "=", maxSplits: 1).first ?? "" }
    let given = Set(settings.overrides.map(key))
    return Self.defaultSettings.filter { !given.contains(key($0)) } + settings.overrides
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
    var rows: [DetectionReport.Row] = []
    var failures: [String] = []
    for (n, method) in list.enumerated() {
      let dir = root.appendingPathComponent(method)
      let fm = FileManager.default
      if fresh { try? fm.removeItem(at: dir) }
      let what = "[\(n + 1)/\(list.count)] \(method)"
      if fm.fileExists(atPath: dir.appendingPathComponent("summary.json").path) {
        log("\(what): finished earlier, reusing \(dir.path)")
      } else {
        log(what)
        var args: [String]
        if Trainer.holdsRun(dir) {
          args = ["tune", "--resume", dir.path, "--json"]
        } else {
          try? fm.removeItem(at: dir)
          args = [
            "tune", "--task", "detection", "--backbone", backbone, "--method", method, "--data",
            dataRef, "--out", dir.path, "--json",
          ]
          for s in effectiveSettings { args += ["--set", s] }
        }
        if quietFlag.quiet { args.append("--quiet") }
        let process = Process()
        process.executableURL =
          Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
          failures.append("\(method): graft \(args.joined(separator: " ")) failed")
          log("    failed (exit \(process.terminationStatus))")
          continue
        }
      }
      let summary = try DetectionSummary.read(from: dir.appendingPathComponent("summary.json"))
      let detections = try COCOResults.load(
        path: dir.appendingPathComponent("test_detections.json").path,
        groundTruth: dataset.test.dataset)
      rows.append(DetectionReport.Row(method: method, summary: summary, detections: detections))
      log(
        String(
          format: "    test AP %.1f AP50 %.1f  %d trainable  %.0f s  %.0f MiB",
          100 * summary.test.stats[0],
          100 * summary.test.stats[1], summary.trainableParameters, summary.trainSeconds,
          Double(summary.peakRSSBytes) / 1_048_576))
    }
    let settingsText =
      "backbone \(backbone); data \(dataRef) (\(dataset.description)); settings "
      + effectiveSettings.joined(separator: ", ")
      + " over each method's preset recipe"
    var summary: [String: Any] = [
      "backbone": backbone, "data": dataRef,
      "settings": effectiveSettings,
      "runs": rows.map { r -> [String: Any] in
        var o = r.summary.json
        o["folder"] = root.appendingPathComponent(r.method).path
        return o
      },
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
      throw ValidationError("\(failures.count) runs failed:\n" + failures.joined(separator: "\n"))
    }
  }

  /// The text table: COCO's six AP numbers (percent), trainable parameters and share, training
  /// seconds and peak RSS.
  func table(_ rows: [DetectionReport.Row]) -> String {
    var lines = [
      "method          AP  AP50  AP75   APs   APm   APl   trainable    share  train s  RSS MiB"
    ]
    for r in rows {
      let s = r.summary
      let t = s.test.stats.prefix(6).map { $0 < 0 ? "    –" : String(format: "%5.1f", 100 * $0) }
      lines.append(
        r.method.padding(toLength: 12, withPad: " ", startingAt: 0) + " " + t.joined(separator: " ")
          + String(
            format: " %11d %7.2f%% %8.0f %8.0f", s.trainableParameters,
            100 * Double(s.trainableParameters) / Double(max(s.backboneParameters, 1)),
            s.trainSeconds, Double(s.peakRSSBytes) / 1_048_576))
    }
    return lines.joined(separator: "\n")
  }
}
