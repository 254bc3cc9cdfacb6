import Foundation
import GraftTensor

/// One finished run (a method on a task) as the reports and sweep summaries see it, read
/// from its run folder (`summary.json`, `metrics.jsonl`, `test_logits.safetensors`).
public struct RunRecord: Sendable {
  /// The task (`mnist`), or the data reference of a single run.
  public var task: String
  /// The method.
  public var method: String
  /// The run folder.
  public var folder: URL
  /// Test top-1, a fraction.
  public var testTop1: Double
  /// Validation top-1 of the adapter the run kept (its best epoch's), a fraction.
  public var validationTop1: Double = 0
  /// Test top-5, a fraction.
  public var testTop5: Double
  /// Test mean per-class accuracy, a fraction (`EvaluationResult.meanPerClass`).
  public var testMeanPerClass: Double = 0
  /// Test-time views of the voted results (`eval.votes`); 1 when the run did not vote.
  public var votes = 1
  /// Voted test top-1 and mean per-class accuracy (nil when the run did not vote).
  public var testVoted: (top1: Double, meanPerClass: Double)? = nil
  /// The run's seed, when the sweep ran several (nil: one run per task and method).
  public var seed: UInt64? = nil
  /// Trainable elements.
  public var trainableParameters: Int
  /// Backbone elements.
  public var backboneParameters: Int
  /// Training wall time, seconds.
  public var trainSeconds: Double
  /// Training throughput, images per second.
  public var imagesPerSecond: Double
  /// Peak resident memory of the process that trained it, MiB.
  public var peakRSSMiB: Double
  /// Validation top-1 after each epoch.
  public var validationCurve: [Double]
  /// Whether the run trained on train + validation (VTAB-1k's final stage), so that its
  /// validation curve measures fit, not generalisation.
  public var trainedOnValidation = false
  /// Test confusion matrix, `[true][predicted]`.
  public var confusion: [[Int]]
  /// Predicted class of every test sample, in dataset order.
  public var testPredictions: [Int]

  /// Trainable elements over backbone elements.
  public var trainableShare: Double {
    Double(trainableParameters) / Double(max(backboneParameters, 1))
  }

  /// Reads the run in `folder`; errors name the file.
  public static func load(folder: URL, task: String) throws -> RunRecord {
    func object(_ name: String) throws -> [String: Any] {
      let url = folder.appendingPathComponent(name)
      guard let data = try? MappedFile.contents(of: url) else {
        throw ConfigError("\(url.path): missing (is the run finished?)")
      }
      guard let object = try? JSONSerialization.jsonObject(with: data),
        let o = object as? [String: Any]
      else {
        throw ConfigError("\(url.path): not a JSON object (damaged; resume the run to rewrite it)")
      }
      return o
    }
    let summary = try object("summary.json")
    let bad = { (key: String) in
      ConfigError("\(folder.appendingPathComponent("summary.json").path): no '\(key)'")
    }
    guard let method = summary["method"] as? String else { throw bad("method") }
    guard let test = summary["test"] as? [String: Any], let top1 = test["top1"] as? Double
    else { throw bad("test.top1") }
    let metricsURL = folder.appendingPathComponent("metrics.jsonl")
    let lines = (try? String(contentsOf: metricsURL, encoding: .utf8)) ?? ""
    var curve: [Double] = []
    for line in lines.split(separator: "\n") {
      guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let v = o["val_top1"] as? Double
      else { throw ConfigError("\(metricsURL.path): a line without val_top1") }
      curve.append(v)
    }
    var predictions: [Int] = []
    let logitsURL = folder.appendingPathComponent("test_logits.safetensors")
    if FileManager.default.fileExists(atPath: logitsURL.path),
      let logits = try SafetensorsFile(contentsOf: logitsURL).tensors()["logits"],
      logits.rank == 2, logits.shape[0] > 0
    {
      predictions = logits.argmax(axis: 1)
    }
    /// Mean per-class accuracy of a result object: stored, or from its confusion matrix.
    func meanPerClass(_ r: [String: Any], top1: Double) -> Double {
      if let m = r["mean_per_class"] as? Double { return m }
      let confusion = r["confusion"] as? [[Int]] ?? []
      return EvaluationResult(
        loss: 0, top1: top1, top5: 0, perClass: [], confusion: confusion, count: 0
      ).meanPerClass
    }
    var voted: (Double, Double)? = nil
    if let v = summary["test_voted"] as? [String: Any], let t = v["top1"] as? Double {
      voted = (t, meanPerClass(v, top1: t))
    }
    let validation = summary["validation"] as? [String: Any]
    var stored = TuneConfig(method: method)
    let yaml = folder.appendingPathComponent("tune_config.yaml")
    if let text = try? String(contentsOf: yaml, encoding: .utf8) {
      try? stored.apply(yaml: text, source: yaml.path)
    }
    var record = RunRecord(
      task: task, method: method, folder: folder, testTop1: top1,
      validationTop1: validation?["top1"] as? Double ?? curve.max() ?? 0,
      testTop5: test["top5"] as? Double ?? 0, testMeanPerClass: meanPerClass(test, top1: top1),
      votes: summary["votes"] as? Int ?? 1, testVoted: voted,
      trainableParameters: summary["trainable_parameters"] as? Int ?? 0,
      backboneParameters: summary["backbone_parameters"] as? Int ?? 0,
      trainSeconds: summary["train_seconds"] as? Double ?? 0,
      imagesPerSecond: summary["train_images_per_second"] as? Double ?? 0,
      peakRSSMiB: Double(summary["peak_rss_bytes"] as? Int ?? 0) / 1_048_576,
      validationCurve: curve, confusion: test["confusion"] as? [[Int]] ?? [],
      testPredictions: predictions)
    record.trainedOnValidation = stored.trainOn == .trainAndValidation
    return record
  }

  /// The entry of a sweep's `summary.json` (top-1 as a fraction; `test_voted_*` when the run
  /// voted, `seed` when the sweep ran several).
  public var json: [String: Any] {
    var out: [String: Any] = [
      "task": task, "method": method, "test_top1": testTop1, "test_top5": testTop5,
      "test_mean_per_class": testMeanPerClass, "votes": votes,
      "trainable_parameters": trainableParameters, "backbone_parameters": backboneParameters,
      "trainable_share": trainableShare, "train_seconds": trainSeconds,
      "train_images_per_second": imagesPerSecond, "peak_rss_mib": peakRSSMiB,
    ]
    if let testVoted {
      out["test_voted_top1"] = testVoted.top1
      out["test_voted_mean_per_class"] = testVoted.meanPerClass
    }
    if let seed { out["seed"] = Int(seed) }
    return out
  }
}

/// Several methods on one or more tasks with one backbone: what `graft demo` and
/// `graft bench graft1k` write as `summary.json` and draw in `report.html`.
public struct SweepSummary: Sendable {
  /// The backbone reference.
  public var backbone: String
  /// The tasks, in order (their data references, e.g. `graft1k/mnist`).
  public var tasks: [String]
  /// Every finished run.
  public var runs: [RunRecord]
  /// Wall time of the whole sweep, seconds.
  public var wallSeconds: Double
  /// Whether tables show mean per-class accuracy (and voted accuracy) beside top-1: the 3-D
  /// classification convention (ScanObjectNN, ModelNet).
  public var showsMeanPerClass = false

  /// Wraps the parts.
  public init(backbone: String, tasks: [String], runs: [RunRecord], wallSeconds: Double) {
    self.backbone = backbone
    self.tasks = tasks
    self.runs = runs
    self.wallSeconds = wallSeconds
  }

  /// Methods in first-run order.
  public var methods: [String] {
    var seen: [String] = []
    for r in runs where !seen.contains(r.method) { seen.append(r.method) }
    return seen
  }

  /// The run of `method` on `task`.
  public func run(_ method: String, task: String) -> RunRecord? {
    runs.first { $0.method == method && $0.task == task }
  }

  /// Mean test top-1 of `method` over the tasks (and seeds) it ran on.
  public func meanTop1(_ method: String) -> Double {
    let r = runs.filter { $0.method == method }
    return r.map(\.testTop1).reduce(0, +) / Double(max(r.count, 1))
  }

  /// Every run of `method` on `task` (one per seed).
  public func runs(_ method: String, task: String) -> [RunRecord] {
    runs.filter { $0.method == method && $0.task == task }
  }

  /// Whether some task ran more than one seed.
  public var hasSeeds: Bool { runs.contains { $0.seed != nil } }

  /// Mean and sample standard deviation (0 for one run) of `value` over the runs of `method`
  /// on `task` (its seeds), or nil when there are none. `value` may be nil for a run (a
  /// figure it lacks), which is then left out.
  public func stats(_ method: String, task: String, _ value: (RunRecord) -> Double?)
    -> (mean: Double, std: Double, count: Int)?
  {
    let v = runs(method, task: task).compactMap(value)
    guard !v.isEmpty else { return nil }
    let mean = v.reduce(0, +) / Double(v.count)
    let variance =
      v.count > 1 ? v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1) : 0
    return (mean, variance.squareRoot(), v.count)
  }

  /// `summary.json`: `backbone`, `task` (the first), `tasks`, `methods` (one entry per method:
  /// its first task's figures, plus `mean_test_top1`, `mean_test_mean_per_class` and, when
  /// every run voted, `mean_test_voted_*` over tasks and seeds, and `peak_rss_mib` as the
  /// largest), `runs` (every task × method × seed) and `wall_seconds`.
  public var json: [String: Any] {
    let methodRows: [[String: Any]] = methods.map { m in
      let mine = runs.filter { $0.method == m }
      var row = mine[0].json
      row["mean_test_top1"] = meanTop1(m)
      row["mean_test_mean_per_class"] =
        mine.map(\.testMeanPerClass).reduce(0, +) / Double(mine.count)
      let voted = mine.compactMap(\.testVoted)
      if voted.count == mine.count {
        row["mean_test_voted_top1"] = voted.map(\.top1).reduce(0, +) / Double(voted.count)
        row["mean_test_voted_mean_per_class"] =
          voted.map(\.meanPerClass).reduce(0, +) / Double(voted.count)
      }
      row.removeValue(forKey: "seed")
      row["peak_rss_mib"] = mine.map(\.peakRSSMiB).max() ?? 0
      row["train_seconds"] = mine.map(\.trainSeconds).reduce(0, +)
      row.removeValue(forKey: "task")
      return row
    }
    return [
      "backbone": backbone, "task": tasks.first ?? "", "tasks": tasks, "methods": methodRows,
      "runs": runs.map(\.json), "wall_seconds": wallSeconds,
    ]
  }

  /// Writes `summary.json` into `folder`, atomically.
  public func write(to folder: URL) throws {
    let data = try JSONSerialization.data(
      withJSONObject: json, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(data + Data("\n".utf8), to: folder.appendingPathComponent("summary.json"))
  }
}
