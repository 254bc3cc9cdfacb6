import Foundation
import GraftTensor

/// VTAB-1k's protocol, as VPT and V-PETL Bench run it: for each method, a grid of settings
/// (learning rate × weight decay by default) is trained on the training split and scored on
/// validation; the best point is retrained on training + validation for the same number of
/// epochs, once per seed, and only that run sees the test split.
///
/// `graft sweep` and `graft bench graft1k --protocol vtab` run the child processes; this file
/// holds what they decide and report: the grid, the choice (`GridSearch.best`), the seed
/// statistics (`SeedStatistics`) and `ProtocolSummary` (`summary.json`, the table).

/// One axis of a grid: a `--set` key and the values it takes, as given.
public struct GridAxis: Sendable, Equatable {
  /// The setting (`optim.lr`).
  public var key: String
  /// Its values, as text (`1e-3`), in the order given.
  public var values: [String]

  /// The axis.
  public init(key: String, values: [String]) {
    self.key = key
    self.values = values
  }

  /// Reads `--grid key=v1,v2,…`; errors say what is wrong with `spec`.
  public init(parsing spec: String) throws {
    guard let eq = spec.firstIndex(of: "=") else {
      throw ConfigError("--grid '\(spec)' is not key=value,value,…")
    }
    let key = spec[..<eq].trimmingCharacters(in: .whitespaces)
    let values = spec[spec.index(after: eq)...].split(
      separator: ",", omittingEmptySubsequences: false
    )
    .map { $0.trimmingCharacters(in: .whitespaces) }
    guard !key.isEmpty, !values.isEmpty, !values.contains(where: \.isEmpty) else {
      throw ConfigError("--grid '\(spec)': a key and one or more comma-separated values needed")
    }
    guard Set(values).count == values.count else {
      throw ConfigError("--grid '\(spec)': a value is listed twice")
    }
    self.init(key: key, values: values)
  }
}

/// Choosing a grid point.
public enum GridSearch {
  /// Every combination of the axes' values (the first axis varies slowest), each as one value
  /// index per axis.
  public static func points(_ axes: [GridAxis]) -> [[Int]] {
    var out: [[Int]] = [[]]
    for axis in axes {
      out = out.flatMap { p in axis.values.indices.map { p + [$0] } }
    }
    return out
  }

  /// The `--set` assignments of `point`.
  public static func settings(_ point: [Int], axes: [GridAxis]) -> [String] {
    zip(axes, point).map { "\($0.key)=\($0.values[$1])" }
  }

  /// A folder name for `point`: `lr-1e-3_wd-0` (the last part of each key, then its value).
  public static func folderName(_ point: [Int], axes: [GridAxis]) -> String {
    zip(axes, point).map { axis, i in
      let short: String
      switch axis.key {
      case "optim.lr": short = "lr"
      case "optim.weight_decay": short = "wd"
      default: short = axis.key.replacingOccurrences(of: "method.", with: "")
      }
      return "\(short)-\(axis.values[i])"
    }
    .joined(separator: "_").replacingOccurrences(of: "/", with: "-")
  }

  /// Validation scores closer than this are a tie (scores are counts over the validation split,
  /// averaged over seeds, so real differences are far larger).
  public static let tieTolerance = 1e-9

  /// The index (into `points`) of the best `scores` (mean validation top-1). Ties go to the
  /// smaller learning rate, then the smaller weight decay, then the smaller value of each other
  /// axis in the order given (numbers compared as numbers, other values by their position).
  public static func best(axes: [GridAxis], points: [[Int]], scores: [Double]) -> Int {
    precondition(points.count == scores.count && !points.isEmpty)
    let top = scores.max()!
    let tied = scores.indices.filter { top - scores[$0] <= tieTolerance }
    // Axis order of the tie-break: lr, weight decay, then the rest as given.
    let priority = ["optim.lr", "optim.weight_decay"]
    let order =
      priority.compactMap { key in axes.firstIndex { $0.key == key } }
      + axes.indices.filter { !priority.contains(axes[$0].key) }
    func smaller(_ a: Int, _ b: Int) -> Bool {
      for axis in order {
        let (i, j) = (points[a][axis], points[b][axis])
        if i == j { continue }
        let values = axes[axis].values
        if let x = Double(values[i]), let y = Double(values[j]), x != y { return x < y }
        return i < j
      }
      return a < b
    }
    return tied.min(by: smaller)!
  }
}

extension GridSearch {
  /// The edge of the learning-rate axis `point` sits on, if any: `.top` at the largest rate,
  /// `.bottom` at the smallest; nil inside the grid, or when the axis is missing, has fewer than
  /// two values or has a value that is not a positive number (a grid that cannot be widened).
  public static func lrEdge(_ point: [Int], axes: [GridAxis]) -> GridEdge? {
    guard let a = axes.firstIndex(where: { $0.key == "optim.lr" }),
      let rates = positiveRates(axes[a])
    else { return nil }
    let rate = Double(axes[a].values[point[a]])!
    if rate == rates.last! { return .top }
    if rate == rates.first! { return .bottom }
    return nil
  }

  /// `axes` with the learning-rate axis one step wider beyond `edge`: the step is the ratio of
  /// the two rates at that edge (×2.5 for the preset grids), so a grid that chose its largest
  /// rate also tries that rate ×2.5 (VPT's own grid runs to rates far above the presets'). The
  /// new rate goes after the others (`.top`) or before them (`.bottom`). Nil when the axis
  /// cannot be widened (see `lrEdge`).
  public static func widened(_ axes: [GridAxis], beyond edge: GridEdge) -> [GridAxis]? {
    guard let a = axes.firstIndex(where: { $0.key == "optim.lr" }),
      let rates = positiveRates(axes[a])
    else { return nil }
    var out = axes
    let n = rates.count
    switch edge {
    case .top:
      out[a].values.append(String(format: "%.4g", rates[n - 1] * rates[n - 1] / rates[n - 2]))
    case .bottom:
      out[a].values.insert(String(format: "%.4g", rates[0] * rates[0] / rates[1]), at: 0)
    }
    // Four significant digits could round a tiny step onto a rate already listed.
    return positiveRates(out[a])?.count == n + 1 ? out : nil
  }

  /// The axis's rates, sorted, if it lists at least two different positive numbers and
  /// nothing else.
  private static func positiveRates(_ axis: GridAxis) -> [Double]? {
    let rates = axis.values.compactMap(Double.init)
    guard rates.count == axis.values.count, rates.allSatisfy({ $0 > 0 && $0.isFinite }) else {
      return nil
    }
    let sorted = Array(Set(rates)).sorted()
    return sorted.count >= 2 ? sorted : nil
  }
}

/// Which end of a grid axis a choice sits on.
public enum GridEdge: String, Sendable {
  /// The largest value.
  case top
  /// The smallest value.
  case bottom
}

/// Mean, sample standard deviation and the 95 % confidence interval of the mean over seeds
/// (Student's t with n − 1 degrees of freedom: mean ± t·s/√n).
public struct SeedStatistics: Sendable, Equatable {
  /// The values (one per seed).
  public var values: [Double]

  /// The statistics of `values`.
  public init(_ values: [Double]) { self.values = values }

  /// Number of values.
  public var count: Int { values.count }
  /// Their mean (0 when there are none).
  public var mean: Double { values.reduce(0, +) / Double(max(values.count, 1)) }
  /// Sample standard deviation (n − 1); 0 for fewer than two values.
  public var std: Double {
    guard values.count > 1 else { return 0 }
    let m = mean
    return (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1))
      .squareRoot()
  }
  /// Half-width of the 95 % interval, t(0.975, n − 1)·s/√n; nil for fewer than two values.
  public var halfWidth95: Double? {
    guard values.count > 1 else { return nil }
    return SeedStatistics.t975(degreesOfFreedom: values.count - 1) * std
      / Double(values.count).squareRoot()
  }

  /// Whether this and `other` are tied: each mean lies inside the other's 95 % interval
  /// (without intervals, only equal means are tied). Seeds that all scored the same give an
  /// interval of zero width, which says nothing about the spread (a top-1 moves in steps of
  /// one test image, so three seeds can agree by chance): the other's interval decides then.
  public func isTied(with other: SeedStatistics) -> Bool {
    let d = abs(mean - other.mean)
    guard let a = halfWidth95, let b = other.halfWidth95 else {
      return d <= GridSearch.tieTolerance
    }
    let informative = [a, b].filter { $0 > 0 }
    return d <= (informative.min() ?? GridSearch.tieTolerance)
  }

  /// The 0.975 quantile of Student's t distribution (two-sided 95 %).
  public static func t975(degreesOfFreedom df: Int) -> Double {
    precondition(df >= 1)
    // Standard tables to 30 degrees of freedom.
    let table: [Double] = [
      12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
      2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
      2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ]
    if df <= table.count { return table[df - 1] }
    // Beyond: the normal quantile with the first terms of the Cornish–Fisher expansion.
    let z = 1.959964
    let n = Double(df)
    return z + (z * z * z + z) / (4 * n) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n)
  }
}

/// One method on one task under the protocol: the grid's validation scores, the chosen point
/// and the final runs (one per seed).
public struct ProtocolResult: Sendable {
  /// The method.
  public var method: String
  /// The task (data reference).
  public var task: String
  /// The grid's axes.
  public var axes: [GridAxis]
  /// Every grid point (value indices per axis), in `GridSearch.points` order.
  public var points: [[Int]]
  /// Validation top-1 of each point for each grid seed (`nil` where the run failed).
  public var validation: [[Double?]]
  /// The seeds the grid ran with.
  public var gridSeeds: [UInt64]
  /// The chosen point's index.
  public var chosen: Int
  /// The final runs (train + validation, tested once), one per seed.
  public var finals: [RunRecord]
  /// How many steps the learning-rate axis was widened beyond the given grid because its edge
  /// won (`ProtocolSweep`'s widening; `axes` holds the widened grid).
  public var widenings: Int
  /// Validation top-1 after each epoch of the chosen point's run with the first grid seed
  /// (empty when unknown): whether the schedule had converged there.
  public var chosenCurve: [Double]

  /// The parts.
  public init(
    method: String, task: String, axes: [GridAxis], points: [[Int]], validation: [[Double?]],
    gridSeeds: [UInt64], chosen: Int, finals: [RunRecord], widenings: Int = 0,
    chosenCurve: [Double] = []
  ) {
    self.method = method
    self.task = task
    self.axes = axes
    self.points = points
    self.validation = validation
    self.gridSeeds = gridSeeds
    self.chosen = chosen
    self.finals = finals
    self.widenings = widenings
    self.chosenCurve = chosenCurve
  }

  /// A late gain above this (one point: two images of VTAB-1k's 200 validation images, the
  /// margin `TuneConfig.epochs`'s evidence uses to call a length converged) means the curve
  /// was still rising.
  public static let risingMargin = 0.01

  /// How much `curve`'s best in its last quarter of epochs (at least one) beats its best
  /// before them; nil for fewer than two epochs. Negative or small: the schedule's end was flat.
  public static func lateGain(of curve: [Double]) -> Double? {
    guard curve.count >= 2 else { return nil }
    let late = max(1, curve.count / 4)
    guard let end = curve.suffix(late).max(), let before = curve.prefix(curve.count - late).max()
    else { return nil }
    return end - before
  }

  /// The chosen point's late gain (`lateGain(of:)` of `chosenCurve`).
  public var chosenLateGain: Double? { Self.lateGain(of: chosenCurve) }

  /// Whether the chosen point's validation was still rising when its schedule ended (its late
  /// gain above `risingMargin`): more epochs might have scored better. Nil without a curve.
  public var chosenStillRising: Bool? { chosenLateGain.map(Self.isRising) }

  /// Whether a late gain is more than `risingMargin` (validation scores are multiples of one
  /// image, so a gain of exactly the margin, give or take rounding, is not).
  public static func isRising(_ lateGain: Double) -> Bool { lateGain > risingMargin + 1e-9 }

  /// The `val at end` column of the table and the report: `flat`, or `rising +2.5` (the late
  /// gain in points); `–` without a curve.
  public static func lateGainText(_ lateGain: Double?) -> String {
    guard let gain = lateGain else { return "–" }
    return isRising(gain) ? String(format: "rising %+.1f", 100 * gain) : "flat"
  }

  /// The edge of the learning-rate grid the chosen point sits on, if any: after the widening
  /// allowed, a choice still at an edge means the best rate may lie beyond the grid.
  public var chosenEdge: GridEdge? { GridSearch.lrEdge(points[chosen], axes: axes) }

  /// The mean validation top-1 of each point over the grid seeds it finished (-1 when none).
  public static func meanScores(_ validation: [[Double?]]) -> [Double] {
    validation.map { v in
      let done = v.compactMap { $0 }
      return done.isEmpty ? -1 : done.reduce(0, +) / Double(done.count)
    }
  }

  /// Test top-1 statistics over the final runs.
  public var test: SeedStatistics { SeedStatistics(finals.map(\.testTop1)) }

  /// The 95 % interval of the test top-1 mean, clipped to 0…1 (an accuracy cannot leave it;
  /// with few seeds and a large spread Student's interval can); nil for fewer than two seeds.
  public var testInterval: (low: Double, high: Double)? {
    let s = test
    return s.halfWidth95.map { (max(0, s.mean - $0), min(1, s.mean + $0)) }
  }

  /// The chosen settings (`optim.lr=…`).
  public var chosenSettings: [String] { GridSearch.settings(points[chosen], axes: axes) }

  /// The `summary.json` entry.
  public var json: [String: Any] {
    let scores = Self.meanScores(validation)
    let s = test
    var out: [String: Any] = [
      "method": method, "task": task,
      "grid": axes.map { ["key": $0.key, "values": $0.values] as [String: Any] },
      "grid_seeds": gridSeeds.map { Int($0) },
      "points": points.indices.map { i -> [String: Any] in
        [
          "settings": GridSearch.settings(points[i], axes: axes),
          "val_top1": validation[i].map { v -> Any in v.map { $0 as Any } ?? NSNull() },
          "mean_val_top1": scores[i] < 0 ? NSNull() : scores[i] as Any,
        ]
      },
      "chosen": chosenSettings, "chosen_val_top1": scores[chosen],
      "grid_widenings": widenings, "chosen_edge": chosenEdge?.rawValue ?? NSNull(),
      "chosen_val_curve": chosenCurve, "chosen_late_gain": chosenLateGain ?? NSNull(),
      "chosen_still_rising": chosenStillRising ?? NSNull(),
      "seeds": finals.map { Int($0.seed ?? 0) },
      "test_top1": finals.map(\.testTop1), "test_top1_mean": s.mean, "test_top1_std": s.std,
      "trainable_parameters": finals.first?.trainableParameters ?? 0,
      "train_seconds": finals.map(\.trainSeconds).reduce(0, +),
    ]
    if let h = s.halfWidth95, let i = testInterval {
      out["test_top1_ci95"] = [i.low, i.high]
      out["test_top1_ci95_half_width"] = h
    }
    return out
  }
}

/// What `graft sweep` writes: every method's `ProtocolResult` on each task.
public struct ProtocolSummary: Sendable {
  /// The backbone reference.
  public var backbone: String
  /// The tasks, in order.
  public var tasks: [String]
  /// Every method × task, task-major.
  public var results: [ProtocolResult]
  /// Wall time of the whole sweep, seconds.
  public var wallSeconds: Double

  /// The parts.
  public init(backbone: String, tasks: [String], results: [ProtocolResult], wallSeconds: Double) {
    self.backbone = backbone
    self.tasks = tasks
    self.results = results
    self.wallSeconds = wallSeconds
  }

  /// Methods in first-result order.
  public var methods: [String] {
    var seen: [String] = []
    for r in results where !seen.contains(r.method) { seen.append(r.method) }
    return seen
  }

  /// The result of `method` on `task`.
  public func result(_ method: String, task: String) -> ProtocolResult? {
    results.first { $0.method == method && $0.task == task }
  }

  /// The methods tied with the best one on `task` (its mean inside their 95 % interval and
  /// theirs inside its), the best included.
  public func leaders(task: String) -> [String] {
    let here = results.filter { $0.task == task && !$0.finals.isEmpty }
    guard let best = here.max(by: { $0.test.mean < $1.test.mean }) else { return [] }
    return here.filter { $0.method == best.method || $0.test.isTied(with: best.test) }
      .map(\.method)
  }

  /// `summary.json`: `protocol` ("vtab"), `backbone`, `tasks`, `results` (one per method and
  /// task, `ProtocolResult.json`), `leaders` (per task) and `wall_seconds`.
  public var json: [String: Any] {
    [
      "protocol": "vtab", "backbone": backbone, "tasks": tasks,
      "results": results.map(\.json),
      "leaders": Dictionary(uniqueKeysWithValues: tasks.map { ($0, leaders(task: $0)) }),
      "wall_seconds": wallSeconds,
    ]
  }

  /// Reads back the `summary.json` a protocol sweep wrote in `folder`, with each final run from
  /// its folder (`folder(task, method)` names a method's folder); errors name the file and the
  /// missing part.
  public static func load(folder: URL, methodFolder: (String, String) -> URL) throws
    -> ProtocolSummary
  {
    let url = folder.appendingPathComponent("summary.json")
    func bad(_ what: String) -> ConfigError {
      ConfigError("\(url.path): not a protocol sweep summary (\(what))")
    }
    guard let data = try? MappedFile.contents(of: url),
      let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { throw bad("missing or not JSON") }
    guard o["protocol"] as? String == "vtab", let backbone = o["backbone"] as? String,
      let tasks = o["tasks"] as? [String], let rows = o["results"] as? [[String: Any]]
    else { throw bad("no protocol, backbone, tasks or results") }
    var results: [ProtocolResult] = []
    for row in rows {
      guard let method = row["method"] as? String, let task = row["task"] as? String,
        let grid = row["grid"] as? [[String: Any]],
        let pointRows = row["points"] as? [[String: Any]],
        let chosen = row["chosen"] as? [String], let seeds = row["seeds"] as? [Int]
      else { throw bad("a result without method, task, grid, points, chosen or seeds") }
      let axes = try grid.map { a -> GridAxis in
        guard let key = a["key"] as? String, let values = a["values"] as? [String] else {
          throw bad("a grid axis without key or values")
        }
        return GridAxis(key: key, values: values)
      }
      let points = GridSearch.points(axes)
      var validation = [[Double?]](repeating: [], count: points.count)
      for p in pointRows {
        guard let settings = p["settings"] as? [String],
          let i = points.firstIndex(where: { GridSearch.settings($0, axes: axes) == settings }),
          let scores = p["val_top1"] as? [Any]
        else { throw bad("a grid point of \(method) that is not in its grid") }
        validation[i] = scores.map { $0 as? Double }
      }
      guard
        let choice = points.firstIndex(where: { GridSearch.settings($0, axes: axes) == chosen })
      else { throw bad("\(method)'s chosen point is not in its grid") }
      let gridSeeds = (row["grid_seeds"] as? [Int] ?? []).map { UInt64($0) }
      // A summary written before the curve was recorded: read it from the chosen grid run.
      let chosenCurve =
        row["chosen_val_curve"] as? [Double]
        ?? (try? RunRecord.load(
          folder: methodFolder(task, method).appendingPathComponent("grid")
            .appendingPathComponent(GridSearch.folderName(points[choice], axes: axes))
            .appendingPathComponent("seed-\(gridSeeds.first ?? 0)"), task: task))?
        .validationCurve ?? []
      let base = methodFolder(task, method).appendingPathComponent("final")
      var finals: [RunRecord] = []
      for seed in seeds {
        var record = try RunRecord.load(
          folder: base.appendingPathComponent("seed-\(seed)"), task: task)
        record.seed = UInt64(seed)
        finals.append(record)
      }
      results.append(
        ProtocolResult(
          method: method, task: task, axes: axes, points: points, validation: validation,
          gridSeeds: gridSeeds, chosen: choice, finals: finals,
          widenings: row["grid_widenings"] as? Int ?? 0, chosenCurve: chosenCurve))
    }
    return ProtocolSummary(
      backbone: backbone, tasks: tasks, results: results,
      wallSeconds: o["wall_seconds"] as? Double ?? 0)
  }

  /// Several protocol sweeps as one (`graft report A B --out M`), so methods swept apart (one
  /// command per method or task, as a CPU budget allows) are compared in one table: the tasks in
  /// first-seen order, each task's results in the order of `parts`, the wall times summed.
  /// Parts must share the backbone, and a method may appear on a task in one part only; either
  /// mismatch throws an error naming both folders.
  public static func merged(_ parts: [(folder: URL, summary: ProtocolSummary)]) throws
    -> ProtocolSummary
  {
    guard let first = parts.first else { throw ConfigError("no protocol sweeps to merge") }
    var tasks: [String] = []
    var owner: [String: URL] = [:]
    for (folder, part) in parts {
      guard part.backbone == first.summary.backbone else {
        throw ConfigError(
          "\(folder.path): backbone \(part.backbone), but \(first.folder.path) used "
            + "\(first.summary.backbone); sweeps on other backbones do not compare")
      }
      for task in part.tasks where !tasks.contains(task) { tasks.append(task) }
      for r in part.results {
        let key = r.method + "\u{0}" + r.task
        if let other = owner[key] {
          throw ConfigError(
            "\(r.method) on \(r.task) is in both \(other.path) and \(folder.path); "
              + "give one of them")
        }
        owner[key] = folder
      }
    }
    let results = tasks.flatMap { task in
      parts.flatMap { $0.summary.results.filter { $0.task == task } }
    }
    return ProtocolSummary(
      backbone: first.summary.backbone, tasks: tasks, results: results,
      wallSeconds: parts.map(\.summary.wallSeconds).reduce(0, +))
  }

  /// Writes `summary.json` into `folder`, atomically.
  public func write(to folder: URL) throws {
    let data = try JSONSerialization.data(
      withJSONObject: finiteJSON(json),
      options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(data + Data("\n".utf8), to: folder.appendingPathComponent("summary.json"))
  }

  /// Where `method` stands against the linear probe on `task` (`linear` under the same
  /// protocol): "above" or "below" when neither mean is inside the other's interval, else
  /// "tied"; nil for the probe itself, or when either has no final run.
  public func againstProbe(_ method: String, task: String) -> String? {
    guard method != "linear", let probe = result("linear", task: task), !probe.finals.isEmpty,
      let r = result(method, task: task), !r.finals.isEmpty
    else { return nil }
    if r.test.isTied(with: probe.test) { return "tied" }
    return r.test.mean > probe.test.mean ? "above" : "below"
  }

  /// The text table: per task, one row per method with the chosen point, its validation
  /// top-1, whether its validation was still rising at the end of its schedule, the test top-1
  /// mean ± std over seeds, the 95 % interval, where it stands against the linear probe
  /// (`againstProbe`), and `tied` (within each other's interval) or `best` against the task's
  /// best method.
  public func table() -> String {
    func p(_ s: String, _ w: Int, right: Bool = false) -> String {
      let fill = String(repeating: " ", count: max(0, w - s.count))
      return right ? fill + s : s + fill
    }
    var lines: [String] = []
    for task in tasks {
      let here = results.filter { $0.task == task }
      guard !here.isEmpty else { continue }
      let leaders = leaders(task: task)
      let best = here.filter { !$0.finals.isEmpty }.max { $0.test.mean < $1.test.mean }
      if !lines.isEmpty { lines.append("") }
      lines.append(task)
      lines.append(
        p("method", 13) + p("chosen", 30) + p("val", 7, right: true)
          + p("val at end", 14, right: true) + p("test mean ± std", 17, right: true)
          + p("95% CI", 15, right: true)
          + p("seeds", 7, right: true) + "  " + p("vs linear", 11) + "vs best")
      for r in here {
        let s = r.test
        let chosen =
          GridSearch.folderName(r.points[r.chosen], axes: r.axes)
          .replacingOccurrences(of: "_", with: " ")
          + (r.chosenEdge.map { " (\($0.rawValue))" } ?? "")
        let val = ProtocolResult.meanScores(r.validation)[r.chosen]
        // Whether the chosen run's validation was still rising in its last quarter of epochs.
        let end = ProtocolResult.lateGainText(r.chosenLateGain)
        let figure =
          r.finals.isEmpty
          ? "–" : String(format: "%.1f ± %.1f", 100 * s.mean, 100 * s.std)
        let ci = r.testInterval.map { String(format: "%.1f–%.1f", 100 * $0.low, 100 * $0.high) }
        let verdict: String
        if r.finals.isEmpty {
          verdict = "failed"
        } else if r.method == best?.method {
          verdict = leaders.count > 1 ? "best (tied)" : "best"
        } else {
          verdict = leaders.contains(r.method) ? "tied" : "below"
        }
        lines.append(
          p(r.method, 13) + p(chosen, 30) + p(String(format: "%.1f", 100 * val), 7, right: true)
            + p(end, 14, right: true) + p(figure, 17, right: true) + p(ci ?? "–", 15, right: true)
            + p("\(r.finals.count)", 7, right: true) + "  "
            + p(againstProbe(r.method, task: task) ?? "–", 11) + verdict)
      }
    }
    return lines.joined(separator: "\n")
  }
}
