import ArgumentParser
import Foundation
import GraftTasks

/// A sweep of methods over point-cloud tasks: `graft bench graft3d` and `graft demo points`.
struct PointSweep {
  /// The point backbone (every method but P2P).
  var backbone: String
  /// The image backbone P2P draws the clouds for.
  var imageBackbone: String
  /// Methods, in table order.
  var methods: [String]
  /// Tasks (`--data` references of point-cloud sets).
  var tasks: [String]
  /// `--set` assignments for every run.
  var settings: [String]
  /// Seeds per task and method (empty: one run with the settings' seed).
  var seeds: [UInt64]
  /// Where the runs, `summary.json` and `report.html` go.
  var out: URL
  /// Redo finished runs.
  var fresh: Bool
  /// No progress output.
  var quiet: Bool
  /// Print the JSON summary instead of the table.
  var json: Bool
  /// Child runs at once (`--jobs`).
  var jobs = 1

  /// P2P's settings for `imageBackbone`: its input normalisation, which P2P cannot read from
  /// the model (see `P2P`'s documentation), and the point backbone's cloud size, so that P2P
  /// sees the same clouds as the other methods.
  func p2pSettings() throws -> [String] {
    let image = try TuneBackbone.load(imageBackbone)
    guard let p = image.preprocessing else {
      throw ValidationError(
        "--image-backbone \(imageBackbone) does not take images (P2P needs one)")
    }
    func list(_ v: [Double]) -> String { v.map { "\($0)" }.joined(separator: ",") }
    var out = ["method.mean=\(list(p.mean))", "method.std=\(list(p.std))"]
    if case .points(let input) = try TuneBackbone.load(backbone).input {
      out.append("method.points=\(input.points)")
    }
    return out
  }

  /// Recipe changes on a point backbone, chosen on the furniture validation split (README,
  /// "Below the linear probe"):
  /// - `linear`: SGD at lr 0.1 diverges on Point-MAE's pooled features (train loss 3.8 → 13.3 in
  ///   two epochs; val 14.3 %), AdamW at 1e-2 does not (val 29.3 % after three epochs, against
  ///   21.8 %, the majority class, at 1e-3).
  /// - `bitfit`: at its 1e-2 (chosen on images; here it also moves the mini-PointNet's biases
  ///   and BatchNorm shifts) the run predicts the majority class through ten epochs (val
  ///   21.8 %, train loss 2.51 → 2.13); 1e-3 reaches 33.8 %.
  /// - `mp`: its 5e-4 barely moves the moment head in ten epochs of 13 steps (val 22.6 %);
  ///   5e-3 reaches 32.3 %.
  static let pointRecipes: [String: [String]] = [
    "linear": ["optim.name=adamw", "optim.lr=0.01", "optim.weight_decay=0"],
    "bitfit": ["optim.lr=0.001"],
    "mp": ["optim.lr=0.005"],
  ]

  /// Runs the sweep, writes `summary.json` and `report.html` (with the clouds of the first
  /// task as the best method saw them and, when P2P ran, its images), prints the table.
  func run(title: String) throws {
    for m in methods { _ = try MethodRegistry.descriptor(m) }
    let started = Date()
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    // Load each task here once: a missing set fails before any run starts.
    var first: TuneData<PointCloud>? = nil
    for task in tasks {
      let data = try TuneData<PointCloud>.load(task)
      if first == nil { first = data }
    }
    let seedCount = max(seeds.count, 1)
    let runner = SweepRunner(
      backbone: backbone, settings: settings, out: out, fresh: fresh,
      progress: ProgressReporter(
        style: .automatic(quiet: quiet), totalSteps: methods.count * tasks.count * seedCount),
      quiet: quiet, methodBackbones: ["p2p": imageBackbone],
      methodSettings: Self.pointRecipes.merging(
        methods.contains("p2p") ? ["p2p": try p2pSettings()] : [:]
      ) { $1 }, seeds: seeds, jobs: jobs)
    let (records, failures) = try runner.run(methods: methods, tasks: tasks)
    guard !records.isEmpty else {
      throw RunsFailed(description: "every run failed:\n" + failures.joined(separator: "\n"))
    }
    var summary = SweepSummary(
      backbone: backbone, tasks: tasks, runs: records,
      wallSeconds: Date().timeIntervalSince(started))
    summary.showsMeanPerClass = true
    try summary.write(to: out)
    let data = first!
    var extra = ""
    let firstTask = tasks[0]
    let firstSeed = records.compactMap(\.seed).min()
    let shown = records.filter { $0.task == firstTask && $0.seed == firstSeed }
    if let best = shown.max(by: { $0.testTop1 < $1.testTop1 }) {
      extra += try PointReport.gallery(data, predictions: best.testPredictions, method: best.method)
    }
    if let p2pRun = shown.first(where: { $0.method == "p2p" }) {
      let loaded = try AdapterCheckpoint.load(p2pRun.folder)
      if let p2p = loaded.method as? P2P {
        extra += try PointReport.p2pImages(p2p, data: data)
      }
    }
    try ReportWriter.write(
      summary, title: title + " (image backbone for P2P: \(imageBackbone))",
      classNames: data.classNames, testSamples: [], extra: extra, to: out)
    if json {
      let d = try JSONSerialization.data(withJSONObject: summary.json, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    } else {
      print(pointSweepTable(summary))
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
}

/// Text table of a point-cloud sweep: per task the overall accuracy (mean ± standard deviation
/// over seeds when there are several), the mean per-class accuracy and, when the runs voted,
/// both with voting; then trainable parameters and share, training time summed over tasks
/// and seeds, and the largest peak RSS.
func pointSweepTable(_ s: SweepSummary) -> String {
  let voted = s.runs.contains { $0.testVoted != nil }
  let votes = s.runs.first { $0.testVoted != nil }?.votes ?? 1
  var header = pad("method", 13)
  for t in s.tasks {
    header += pad("\(t) OA", 24, right: true) + pad("mAcc", 7, right: true)
    if voted {
      header += pad("OA \(votes)v", 8, right: true) + pad("mAcc \(votes)v", 10, right: true)
    }
  }
  header +=
    pad("trainable", 11, right: true) + pad("share", 9, right: true)
    + pad("train s", 9, right: true) + pad("RSS MiB", 9, right: true)
  var lines = [header]
  func figure(_ v: (mean: Double, std: Double, count: Int)?, sd: Bool) -> String {
    guard let v else { return "–" }
    return sd && v.count > 1
      ? String(format: "%.1f ± %.1f", 100 * v.mean, 100 * v.std)
      : String(format: "%.1f", 100 * v.mean)
  }
  for m in s.methods {
    var line = pad(m, 13)
    for t in s.tasks {
      line += pad(figure(s.stats(m, task: t) { $0.testTop1 }, sd: true), 24, right: true)
      line += pad(figure(s.stats(m, task: t) { $0.testMeanPerClass }, sd: false), 7, right: true)
      if voted {
        line += pad(figure(s.stats(m, task: t) { $0.testVoted?.top1 }, sd: false), 8, right: true)
        line += pad(
          figure(s.stats(m, task: t) { $0.testVoted?.meanPerClass }, sd: false), 10, right: true)
      }
    }
    let mine = s.runs.filter { $0.method == m }
    line +=
      pad("\(mine[0].trainableParameters)", 11, right: true)
      + pad(String(format: "%.2f%%", 100 * mine[0].trainableShare), 9, right: true)
      + pad(String(format: "%.0f", mine.map(\.trainSeconds).reduce(0, +)), 9, right: true)
      + pad(String(format: "%.0f", mine.map(\.peakRSSMiB).max() ?? 0), 9, right: true)
    lines.append(line)
  }
  return lines.joined(separator: "\n")
}
