import GraftTensor
import XCTest

@testable import GraftTasks

/// VTAB-1k's protocol: the grid's choice, the seed statistics, the preset grids and
/// `graft sweep` end to end.
final class VTABProtocolTests: XCTestCase {
  // MARK: The grid

  func testGridAxisParsing() throws {
    let axis = try GridAxis(parsing: "optim.lr=1e-3, 3e-3,1e-2")
    XCTAssertEqual(axis, GridAxis(key: "optim.lr", values: ["1e-3", "3e-3", "1e-2"]))
    for bad in ["optim.lr", "optim.lr=", "optim.lr=1,,2", "=1", "optim.lr=1,1"] {
      XCTAssertThrowsError(try GridAxis(parsing: bad), bad)
    }
  }

  func testGridPointsSettingsAndFolders() {
    let axes = [
      GridAxis(key: "optim.lr", values: ["1e-3", "1e-2"]),
      GridAxis(key: "optim.weight_decay", values: ["0", "1e-4", "1e-2"]),
    ]
    let points = GridSearch.points(axes)
    XCTAssertEqual(points.count, 6)
    XCTAssertEqual(points[0], [0, 0])
    XCTAssertEqual(points[1], [0, 1])
    XCTAssertEqual(points[5], [1, 2])
    XCTAssertEqual(
      GridSearch.settings(points[4], axes: axes), ["optim.lr=1e-2", "optim.weight_decay=1e-4"])
    XCTAssertEqual(GridSearch.folderName(points[4], axes: axes), "lr-1e-2_wd-1e-4")
  }

  /// The best validation score wins; ties go to the smaller lr (compared as numbers, whatever
  /// the order given), then to the smaller weight decay.
  func testBestPointAndTieBreaks() {
    // Given in descending order so that position and value disagree.
    let axes = [
      GridAxis(key: "optim.weight_decay", values: ["1e-2", "0"]),
      GridAxis(key: "optim.lr", values: ["3e-3", "1e-3", "1e-2"]),
    ]
    let points = GridSearch.points(axes)  // wd slowest: (1e-2, lr…), then (0, lr…)
    func point(lr: String, wd: String) -> Int {
      points.firstIndex {
        axes[0].values[$0[0]] == wd && axes[1].values[$0[1]] == lr
      }!
    }
    var scores = [Double](repeating: 0.5, count: points.count)
    scores[point(lr: "1e-2", wd: "0")] = 0.7
    XCTAssertEqual(
      GridSearch.best(axes: axes, points: points, scores: scores), point(lr: "1e-2", wd: "0"))
    // A tie in score between lr 3e-3 and lr 1e-2: the smaller lr.
    scores[point(lr: "3e-3", wd: "1e-2")] = 0.7
    XCTAssertEqual(
      GridSearch.best(axes: axes, points: points, scores: scores),
      point(lr: "3e-3", wd: "1e-2"))
    // Same lr, same score: the smaller weight decay.
    scores[point(lr: "3e-3", wd: "0")] = 0.7
    XCTAssertEqual(
      GridSearch.best(axes: axes, points: points, scores: scores), point(lr: "3e-3", wd: "0"))
    // Means over seeds that differ only by rounding are a tie too.
    scores = [Double](repeating: 0.1, count: points.count)
    scores[point(lr: "1e-2", wd: "0")] = (0.7 + 0.8 + 0.9) / 3
    scores[point(lr: "1e-3", wd: "0")] = (0.9 + 0.8 + 0.7) / 3
    XCTAssertEqual(
      GridSearch.best(axes: axes, points: points, scores: scores), point(lr: "1e-3", wd: "0"))
  }

  /// Mean, sample std and Student-t intervals against SciPy's figures.
  func testSeedStatistics() {
    let s = SeedStatistics([0.80, 0.82, 0.84])
    XCTAssertEqual(s.mean, 0.82, accuracy: 1e-12)
    XCTAssertEqual(s.std, 0.02, accuracy: 1e-12)
    // scipy.stats.t.ppf(0.975, 2) = 4.302653: 4.302653 · 0.02 / √3.
    XCTAssertEqual(try XCTUnwrap(s.halfWidth95), 0.0496827, accuracy: 5e-5)
    XCTAssertNil(SeedStatistics([0.8]).halfWidth95)
    XCTAssertEqual(SeedStatistics([0.8]).std, 0)
    // t.ppf(0.975, df) for df = 1, 4, 29 (table) and 40, 120 (expansion).
    for (df, t) in [(1, 12.706205), (4, 2.776445), (29, 2.045230), (40, 2.021075), (120, 1.979930)]
    {
      XCTAssertEqual(SeedStatistics.t975(degreesOfFreedom: df), t, accuracy: 1e-3, "df \(df)")
    }
    // Tied: each mean inside the other's interval.
    let a = SeedStatistics([0.80, 0.82, 0.84])  // 0.82 ± 0.0497
    let b = SeedStatistics([0.83, 0.84, 0.85])  // 0.84 ± 0.0248: 0.02 from a
    XCTAssertTrue(a.isTied(with: b))
    XCTAssertTrue(b.isTied(with: a))
    let c = SeedStatistics([0.89, 0.90, 0.91])  // 0.90 ± 0.0248: 0.08 from a
    XCTAssertFalse(a.isTied(with: c))
    XCTAssertFalse(c.isTied(with: a))
    // b's mean is inside a's interval but a's is outside b's: not tied.
    let d = SeedStatistics([0.86, 0.865, 0.87])  // 0.865 ± 0.0124
    XCTAssertFalse(a.isTied(with: d))
    // Seeds that agree exactly (UniPT and MP on fmnist-count, 4,000 test images): the zero-width
    // interval says nothing, so the other's decides.
    let agreed = SeedStatistics([0.9905, 0.9905, 0.9905])
    let spread = SeedStatistics([0.9905, 0.994, 0.9895])  // 0.99133 ± 0.00588
    XCTAssertTrue(agreed.isTied(with: spread))
    XCTAssertTrue(spread.isTied(with: agreed))
    XCTAssertFalse(agreed.isTied(with: SeedStatistics([0.95, 0.951, 0.952])))
    XCTAssertTrue(agreed.isTied(with: SeedStatistics([0.9905, 0.9905, 0.9905])))
    XCTAssertFalse(agreed.isTied(with: SeedStatistics([0.991, 0.991, 0.991])))
  }

  /// A chosen run's curve is still rising when its best in the last quarter of the epochs beats
  /// the best before them by more than one point.
  func testLateGainOfAValidationCurve() throws {
    XCTAssertNil(ProtocolResult.lateGain(of: []))
    XCTAssertNil(ProtocolResult.lateGain(of: [0.5]))
    // Two epochs: the last against the first.
    XCTAssertEqual(try XCTUnwrap(ProtocolResult.lateGain(of: [0.5, 0.6])), 0.1, accuracy: 1e-12)
    // Eight epochs: the last two against the best of the first six (a dip does not count).
    let rising = [0.3, 0.5, 0.6, 0.7, 0.65, 0.72, 0.74, 0.745]
    XCTAssertEqual(try XCTUnwrap(ProtocolResult.lateGain(of: rising)), 0.025, accuracy: 1e-12)
    let flat = [0.3, 0.5, 0.6, 0.7, 0.8, 0.805, 0.81, 0.80]
    XCTAssertEqual(try XCTUnwrap(ProtocolResult.lateGain(of: flat)), 0.005, accuracy: 1e-12)
    let fell = [0.3, 0.5, 0.8, 0.7, 0.75, 0.76, 0.77, 0.78]
    XCTAssertEqual(try XCTUnwrap(ProtocolResult.lateGain(of: fell)), -0.02, accuracy: 1e-12)
    func result(_ curve: [Double]) -> ProtocolResult {
      ProtocolResult(
        method: "linear", task: "t", axes: [], points: [[]], validation: [[0.8]],
        gridSeeds: [0], chosen: 0, finals: [], chosenCurve: curve)
    }
    // The table and the report say it in the same words.
    XCTAssertEqual(ProtocolResult.lateGainText(0.025), "rising +2.5")
    XCTAssertEqual(ProtocolResult.lateGainText(0.005), "flat")
    XCTAssertEqual(ProtocolResult.lateGainText(0.01), "flat")
    XCTAssertEqual(ProtocolResult.lateGainText(nil), "–")
    XCTAssertEqual(result(rising).chosenStillRising, true)
    XCTAssertEqual(result(flat).chosenStillRising, false)
    XCTAssertEqual(result(fell).chosenStillRising, false)
    XCTAssertNil(result([0.8]).chosenStillRising)
    // Exactly one point is not more than one point.
    XCTAssertEqual(result([0.5, 0.625, 0.635]).chosenStillRising, false)
    XCTAssertEqual(result([0.5, 0.625, 0.64]).chosenStillRising, true)
    XCTAssertEqual(result([0.5, 0.75, 0.75, 0.76]).chosenStillRising, false)
  }

  /// Each method's place against the linear probe under the protocol, by the tie rule.
  func testMethodsAgainstTheLinearProbe() {
    func result(_ method: String, _ tests: [Double]) -> ProtocolResult {
      ProtocolResult(
        method: method, task: "t", axes: [], points: [[]], validation: [[0.8]], gridSeeds: [0],
        chosen: 0,
        finals: tests.map {
          RunRecord(
            task: "t", method: method, folder: URL(fileURLWithPath: "/nonexistent"),
            testTop1: $0, testTop5: 1, trainableParameters: 1, backboneParameters: 1,
            trainSeconds: 1, imagesPerSecond: 1, peakRSSMiB: 1, validationCurve: [],
            confusion: [], testPredictions: [])
        })
    }
    let summary = ProtocolSummary(
      backbone: "b", tasks: ["t"],
      results: [
        result("linear", [0.80, 0.81, 0.82]), result("mp", [0.90, 0.91, 0.92]),
        result("vpt-deep", [0.79, 0.81, 0.83]), result("vpt-shallow", [0.70, 0.71, 0.72]),
        result("lst", []),
      ], wallSeconds: 1)
    XCTAssertNil(summary.againstProbe("linear", task: "t"))
    XCTAssertEqual(summary.againstProbe("mp", task: "t"), "above")
    XCTAssertEqual(summary.againstProbe("vpt-deep", task: "t"), "tied")
    XCTAssertEqual(summary.againstProbe("vpt-shallow", task: "t"), "below")
    XCTAssertNil(summary.againstProbe("lst", task: "t"))
    XCTAssertNil(summary.againstProbe("mp", task: "other"))
    let table = summary.table()
    XCTAssertTrue(table.contains("vs linear"), table)
    // VPT-deep is tied with the probe and below the best (MP).
    let row = table.split(separator: "\n").first { $0.hasPrefix("vpt-deep") } ?? ""
    XCTAssertTrue(row.hasSuffix("tied       below"), String(row))
  }

  /// Sweeps run apart merge into one summary: tasks in first-seen order, each task's results
  /// in the parts' order, so the probe of one part and a method of another compare; another
  /// backbone or a method on a task twice is an error naming both folders.
  func testProtocolSweepsMerge() throws {
    func result(_ method: String, _ task: String, _ tests: [Double]) -> ProtocolResult {
      ProtocolResult(
        method: method, task: task, axes: [], points: [[]], validation: [[0.8]], gridSeeds: [0],
        chosen: 0,
        finals: tests.map {
          RunRecord(
            task: task, method: method, folder: URL(fileURLWithPath: "/nonexistent"),
            testTop1: $0, testTop5: 1, trainableParameters: 1, backboneParameters: 1,
            trainSeconds: 1, imagesPerSecond: 1, peakRSSMiB: 1, validationCurve: [],
            confusion: [], testPredictions: [])
        })
    }
    let a = URL(fileURLWithPath: "/runs/a")
    let b = URL(fileURLWithPath: "/runs/b")
    let probe = ProtocolSummary(
      backbone: "vit", tasks: ["t1"], results: [result("linear", "t1", [0.80, 0.81, 0.82])],
      wallSeconds: 10)
    let mp = ProtocolSummary(
      backbone: "vit", tasks: ["t2", "t1"],
      results: [result("mp", "t2", [0.5, 0.5, 0.5]), result("mp", "t1", [0.90, 0.91, 0.92])],
      wallSeconds: 5)
    let merged = try ProtocolSummary.merged([(a, probe), (b, mp)])
    XCTAssertEqual(merged.tasks, ["t1", "t2"])
    XCTAssertEqual(
      merged.results.map { "\($0.method) \($0.task)" }, ["linear t1", "mp t1", "mp t2"])
    XCTAssertEqual(merged.wallSeconds, 15)
    XCTAssertEqual(merged.againstProbe("mp", task: "t1"), "above")
    XCTAssertNil(merged.againstProbe("mp", task: "t2"))
    XCTAssertThrowsError(try ProtocolSummary.merged([(a, mp), (b, mp)])) {
      XCTAssertTrue("\($0)".contains("/runs/a") && "\($0)".contains("/runs/b"), "\($0)")
    }
    var other = mp
    other.backbone = "resnet"
    XCTAssertThrowsError(try ProtocolSummary.merged([(a, probe), (b, other)])) {
      XCTAssertTrue("\($0)".contains("/runs/b") && "\($0)".contains("resnet"), "\($0)")
    }
    XCTAssertThrowsError(try ProtocolSummary.merged([]))
  }

  /// `graft report A B --out M`: two sweeps run apart, one table; `graft report M` again.
  func testReportMergesSweepsRunApart() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    for method in ["linear", "mp"] {
      let sweep = try runGraft([
        "sweep", "--backbone", tinyTimmFolder, "--method", method, "--data", "digits",
        "--grid", "optim.lr=0.3", "--grid", "optim.weight_decay=0", "--seeds", "2",
        "--set", "train.epochs=1", "--set", "data.train_samples=64", "--widen", "0", "--out",
        root.appendingPathComponent(method).path, "--quiet",
      ])
      XCTAssertEqual(sweep.status, 0, sweep.err)
    }
    let merged = root.appendingPathComponent("merged")
    let report = try runGraft([
      "report", root.appendingPathComponent("linear").path,
      root.appendingPathComponent("mp").path, "--out", merged.path,
    ])
    XCTAssertEqual(report.status, 0, report.err)
    let rows = report.out.split(separator: "\n")
    XCTAssertTrue(rows.contains { $0.hasPrefix("linear ") }, report.out)
    // MP's row says where it stands against the other sweep's probe.
    let mpRow = try XCTUnwrap(rows.first { $0.hasPrefix("mp ") }, report.out)
    XCTAssertTrue(
      ["above", "tied", "below"].contains { mpRow.contains("  \($0)") }, String(mpRow))
    let page = try String(
      contentsOf: merged.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertTrue(page.contains("2 sweeps"), page)
    let again = try runGraft(["report", merged.path])
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertEqual(again.out, report.out)
    let noOut = try runGraft([
      "report", root.appendingPathComponent("linear").path,
      root.appendingPathComponent("mp").path,
    ])
    XCTAssertNotEqual(noOut.status, 0)
    XCTAssertTrue(noOut.err.contains("--out"), noOut.err)
    // An --out that is a file: the file and the reason, not Foundation's error dump.
    let file = root.appendingPathComponent("a-file")
    try Data().write(to: file)
    let onAFile = try runGraft([
      "report", root.appendingPathComponent("linear").path,
      root.appendingPathComponent("mp").path, "--out", file.path,
    ])
    XCTAssertEqual(onAFile.status, 1)
    XCTAssertTrue(
      onAFile.err.contains("\(file.path): ") && !onAFile.err.contains("NSCocoaErrorDomain"),
      onAFile.err)
    // A merged folder whose list of sweeps is damaged: the file and what it should hold.
    let damaged = root.appendingPathComponent("damaged")
    try FileManager.default.createDirectory(at: damaged, withIntermediateDirectories: true)
    try Data("{\"sweeps\": 3}".utf8).write(to: damaged.appendingPathComponent("sources.json"))
    let unreadable = try runGraft(["report", damaged.path])
    XCTAssertNotEqual(unreadable.status, 0)
    XCTAssertTrue(
      unreadable.err.contains(damaged.appendingPathComponent("sources.json").path)
        && unreadable.err.contains("not a list of sweeps"), unreadable.err)
    let notASweep = try runGraft([
      "report", root.appendingPathComponent("linear").path, root.path, "--out", merged.path,
    ])
    XCTAssertNotEqual(notASweep.status, 0)
    XCTAssertTrue(
      notASweep.err.contains(root.appendingPathComponent("summary.json").path), notASweep.err)
  }

  /// Every method's preset carries a grid: four rates around its recipe's, two decays.
  func testPresetGrids() throws {
    let vpt = try TuneConfig.defaultGrid(for: "vpt-deep")
    XCTAssertEqual(vpt.map(\.key), ["optim.lr", "optim.weight_decay"])
    XCTAssertEqual(vpt[0].values, ["0.1", "0.25", "0.625", "1.562"])
    XCTAssertEqual(vpt[1].values, ["0", "0.0001"])
    let lora = try TuneConfig.defaultGrid(for: "lora")
    XCTAssertEqual(lora[0].values, ["0.002", "0.005", "0.0125", "0.03125"])
    XCTAssertEqual(lora[1].values, ["0", "0.01"])
    for m in MethodRegistry.all.map(\.name) {
      var config = try TuneConfig.preset(for: m)
      // The preset trains for the recipe's (converged) epochs.
      XCTAssertEqual(config.epochs, try MethodRegistry.descriptor(m).recipe.epochs, m)
      for axis in try TuneConfig.defaultGrid(for: m) {
        XCTAssertEqual(axis.values.count, axis.key == "optim.lr" ? 4 : 2, m)
        for v in axis.values { XCTAssertNoThrow(try config.set(axis.key, v), "\(m) \(v)") }
      }
    }
  }

  /// The edge a choice sits on, and the learning-rate axis one step wider beyond it.
  func testGridWideningAtTheEdges() throws {
    let axes = [
      GridAxis(key: "optim.weight_decay", values: ["0", "1e-4"]),
      GridAxis(key: "optim.lr", values: ["0.1", "0.25", "0.625", "1.562"]),
    ]
    XCTAssertEqual(GridSearch.lrEdge([0, 3], axes: axes), .top)
    XCTAssertEqual(GridSearch.lrEdge([1, 0], axes: axes), .bottom)
    XCTAssertNil(GridSearch.lrEdge([0, 1], axes: axes))
    let up = try XCTUnwrap(GridSearch.widened(axes, beyond: .top))
    XCTAssertEqual(up[0], axes[0])
    XCTAssertEqual(up[1].values, ["0.1", "0.25", "0.625", "1.562", "3.904"])
    XCTAssertNil(GridSearch.lrEdge([0, 3], axes: up))
    XCTAssertEqual(GridSearch.lrEdge([0, 4], axes: up), .top)
    let down = try XCTUnwrap(GridSearch.widened(axes, beyond: .bottom))
    XCTAssertEqual(down[1].values, ["0.04", "0.1", "0.25", "0.625", "1.562"])
    // Given in any order, the edges are the smallest and largest rates.
    let shuffled = [GridAxis(key: "optim.lr", values: ["3e-3", "1e-2", "1e-3"])]
    XCTAssertEqual(GridSearch.lrEdge([1], axes: shuffled), .top)
    XCTAssertEqual(GridSearch.lrEdge([2], axes: shuffled), .bottom)
    XCTAssertNil(GridSearch.lrEdge([0], axes: shuffled))
    XCTAssertEqual(
      GridSearch.widened(shuffled, beyond: .bottom)?[0].values,
      ["0.0003333", "3e-3", "1e-2", "1e-3"])
    // Axes that cannot widen: one rate, a rate that is not a positive number, no lr axis.
    for bad in [
      [GridAxis(key: "optim.lr", values: ["1e-3"])],
      [GridAxis(key: "optim.lr", values: ["0", "1e-3"])],
      [GridAxis(key: "optim.lr", values: ["1e-3", "fast"])],
      [GridAxis(key: "optim.weight_decay", values: ["0", "1e-4"])],
    ] {
      XCTAssertNil(GridSearch.lrEdge([0], axes: bad), "\(bad)")
      XCTAssertNil(GridSearch.widened(bad, beyond: .top), "\(bad)")
    }
  }

  // MARK: graft sweep

  /// A grid whose edge wins on validation widens (`--widen`), up to the limit, reusing the
  /// runs it had: learning rates far too small to move the linear head from its initial
  /// predictions tie on validation, a tie goes to the smallest rate, so the bottom edge wins
  /// every time and the axis grows downward twice; the summary says so.
  func testSweepWidensAGridWhoseEdgeWins() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let r = try runGraft([
      "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
      "--grid", "optim.lr=1e-9,1e-8", "--grid", "optim.weight_decay=0", "--widen", "2",
      "--set", "train.epochs=1", "--set", "data.train_samples=100", "--out", out.path, "--quiet",
    ])
    XCTAssertEqual(r.status, 0, r.err)
    XCTAssertTrue(r.out.contains("(bottom)"), r.out)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
    let result = try XCTUnwrap((summary["results"] as? [[String: Any]])?.first)
    let grid = try XCTUnwrap(result["grid"] as? [[String: Any]])
    XCTAssertEqual(grid.first?["values"] as? [String], ["1e-11", "1e-10", "1e-9", "1e-8"])
    XCTAssertEqual(result["grid_widenings"] as? Int, 2)
    XCTAssertEqual(result["chosen_edge"] as? String, "bottom")
    XCTAssertEqual(result["chosen"] as? [String], ["optim.lr=1e-11", "optim.weight_decay=0"])
    let points = try XCTUnwrap(result["points"] as? [[String: Any]])
    XCTAssertEqual(points.count, 4)
    let scores = points.compactMap { $0["mean_val_top1"] as? Double }
    XCTAssertEqual(scores.count, 4)
    XCTAssertEqual(Set(scores).count, 1, "\(scores)")
    for lr in ["1e-11", "1e-10", "1e-9", "1e-8"] {
      XCTAssertTrue(
        FileManager.default.fileExists(
          atPath: out.appendingPathComponent("linear/grid/lr-\(lr)_wd-0/seed-0/summary.json").path),
        lr)
    }
    // Read back by graft report, the widening and the edge stay.
    let loaded = try ProtocolSummary.load(folder: out) { _, m in out.appendingPathComponent(m) }
    XCTAssertEqual(loaded.results.first?.widenings, 2)
    XCTAssertEqual(loaded.results.first?.chosenEdge, .bottom)
  }

  /// `graft sweep` end to end on a tiny backbone: a 2-point grid on train/val, the best point
  /// (by the grid runs' own validation top-1) retrained on train + val for two seeds, the
  /// summary's statistics, the heat map, and a second call that reuses every run.
  func testSweepCommandRunsTheProtocol() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let args = [
      "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
      "--grid", "optim.lr=0.3,0.001", "--grid", "optim.weight_decay=0", "--seeds", "2",
      "--set", "train.epochs=1", "--set", "data.train_samples=100", "--widen", "0", "--out",
      out.path, "--quiet",
    ]
    let first = try runGraft(args)
    XCTAssertEqual(first.status, 0, first.err)
    XCTAssertTrue(first.out.contains("linear") && first.out.contains("best"), first.out)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
    let result = try XCTUnwrap((summary["results"] as? [[String: Any]])?.first)
    let points = try XCTUnwrap(result["points"] as? [[String: Any]])
    XCTAssertEqual(points.count, 2)
    // Each point's score is its grid run's validation top-1; the choice is the best of them.
    var scores: [Double] = []
    for (p, name) in zip(points, ["lr-0.3_wd-0", "lr-0.001_wd-0"]) {
      let run = out.appendingPathComponent("linear/grid/\(name)/seed-0")
      let record = try RunRecord.load(folder: run, task: "digits")
      let score = try XCTUnwrap(p["mean_val_top1"] as? Double)
      XCTAssertEqual(score, record.validationTop1, accuracy: 1e-12)
      XCTAssertTrue(
        try String(contentsOf: run.appendingPathComponent("tune_config.yaml"), encoding: .utf8)
          .contains("data.train_on: \"train\""))
      scores.append(score)
    }
    let chosen = try XCTUnwrap(result["chosen"] as? [String])
    // A tie goes to the smaller lr.
    XCTAssertEqual(chosen.first, scores[0] > scores[1] + 1e-9 ? "optim.lr=0.3" : "optim.lr=0.001")
    // The finals: train+val, the chosen lr, one per seed; the statistics are theirs.
    var tests: [Double] = []
    for seed in 0..<2 {
      let run = out.appendingPathComponent("linear/final/seed-\(seed)")
      let config = try String(
        contentsOf: run.appendingPathComponent("tune_config.yaml"), encoding: .utf8)
      XCTAssertTrue(config.contains("data.train_on: \"train+val\""), config)
      XCTAssertTrue(config.contains("seed: \"\(seed)\""), config)
      XCTAssertTrue(
        config.contains("optim.lr: \"\(chosen[0].dropFirst("optim.lr=".count))\""), config)
      tests.append(try RunRecord.load(folder: run, task: "digits").testTop1)
    }
    XCTAssertEqual(result["test_top1"] as? [Double], tests)
    let stats = SeedStatistics(tests)
    XCTAssertEqual(try XCTUnwrap(result["test_top1_mean"] as? Double), stats.mean, accuracy: 1e-12)
    XCTAssertEqual(try XCTUnwrap(result["test_top1_std"] as? Double), stats.std, accuracy: 1e-12)
    if let h = stats.halfWidth95 {
      let ci = try XCTUnwrap(result["test_top1_ci95"] as? [Double])
      XCTAssertEqual(ci[0], max(0, stats.mean - h), accuracy: 1e-12)
      XCTAssertEqual(ci[1], min(1, stats.mean + h), accuracy: 1e-12)
      XCTAssertEqual(
        try XCTUnwrap(result["test_top1_ci95_half_width"] as? Double), h, accuracy: 1e-12)
    }
    let page = try String(
      contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertEqual(page.components(separatedBy: "data-chosen=\"true\"").count - 1, 1)
    XCTAssertEqual(page.components(separatedBy: "data-val=").count - 1, 2)

    // graft report rewrites the same page from the folder.
    try FileManager.default.removeItem(at: out.appendingPathComponent("report.html"))
    let report = try runGraft(["report", out.path])
    XCTAssertEqual(report.status, 0, report.err)
    XCTAssertTrue(report.out.contains("val at end") && report.out.contains("best"), report.out)
    XCTAssertEqual(
      try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        .replacingOccurrences(of: #"· \d+ s ·"#, with: "", options: .regularExpression)
        .components(separatedBy: "<h2>").dropFirst(),
      page.replacingOccurrences(of: #"· \d+ s ·"#, with: "", options: .regularExpression)
        .components(separatedBy: "<h2>").dropFirst())

    // Again: every run is reused, nothing is rewritten.
    let final = out.appendingPathComponent("linear/final/seed-1/summary.json")
    let written = try FileManager.default.attributesOfItem(atPath: final.path)[.modificationDate]
    let again = try runGraft(args)
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertEqual(
      try FileManager.default.attributesOfItem(atPath: final.path)[.modificationDate] as? Date,
      written as? Date)

    // Other settings: nothing trained otherwise is reused.
    let changed = try runGraft(args + ["--set", "train.epochs=2"])
    XCTAssertEqual(changed.status, 0, changed.err)
    for run in ["grid/lr-0.3_wd-0/seed-0", "grid/lr-0.001_wd-0/seed-0", "final/seed-1"] {
      let config = try String(
        contentsOf: out.appendingPathComponent("linear/\(run)/tune_config.yaml"), encoding: .utf8)
      XCTAssertTrue(config.contains("train.epochs: \"2\""), run)
    }
    // The summary keeps the chosen grid run's validation curve and says whether it still rose
    // in its last epoch; the table prints the verdict, and a summary without the curve (written
    // before it was recorded) reads it from the chosen grid run.
    let twoEpochs = try XCTUnwrap(
      (try JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])?[
          "results"] as? [[String: Any]])[0]
    let chosenRun =
      try XCTUnwrap(twoEpochs["chosen"] as? [String])[0] == "optim.lr=0.3"
      ? "lr-0.3_wd-0" : "lr-0.001_wd-0"
    let curve = try RunRecord.load(
      folder: out.appendingPathComponent("linear/grid/\(chosenRun)/seed-0"), task: "digits"
    ).validationCurve
    XCTAssertEqual(curve.count, 2)
    XCTAssertEqual(twoEpochs["chosen_val_curve"] as? [Double], curve)
    let gain = try XCTUnwrap(twoEpochs["chosen_late_gain"] as? Double)
    XCTAssertEqual(gain, curve[1] - curve[0], accuracy: 1e-12)
    XCTAssertEqual(twoEpochs["chosen_still_rising"] as? Bool, ProtocolResult.isRising(gain))
    XCTAssertTrue(changed.out.contains(ProtocolResult.lateGainText(gain)), changed.out)
    let changedPage = try String(
      contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertTrue(
      changedPage.contains(
        String(format: "title=\"late gain %+.1f points\">", 100 * gain)
          + ProtocolResult.lateGainText(gain) + "</td>"), changedPage)
    let withoutCurve = out.appendingPathComponent("summary.json")
    var written2 = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: withoutCurve)) as? [String: Any])
    var rows = try XCTUnwrap(written2["results"] as? [[String: Any]])
    rows[0]["chosen_val_curve"] = nil
    written2["results"] = rows
    try JSONSerialization.data(withJSONObject: written2).write(to: withoutCurve)
    let loaded = try ProtocolSummary.load(folder: out) { _, method in
      out.appendingPathComponent(method)
    }
    XCTAssertEqual(loaded.results[0].chosenCurve, curve)
  }

  /// A sweep of one task keeps its runs in `<out>/<method>`; a sweep of another task (or with
  /// another backbone) into the same folder must redo them, not reuse the first task's scores.
  func testSweepOfAnotherTaskIntoTheSameFolderRedoesTheRuns() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    // The same digits, under another name: another task as far as a sweep can tell.
    let other = root.appendingPathComponent("other-digits.csv")
    try FileManager.default.copyItem(
      at: repositoryRoot.appendingPathComponent("Data/digits/digits.csv"), to: other)
    // A copy of the tiny backbone, to be trained again in place below.
    let backbone = root.appendingPathComponent("backbone")
    try FileManager.default.copyItem(at: URL(fileURLWithPath: tinyTimmFolder), to: backbone)
    let out = root.appendingPathComponent("sweep")
    func sweep(_ data: String) throws -> (status: Int32, out: String, err: String) {
      try runGraft([
        "sweep", "--backbone", backbone.path, "--method", "linear", "--data", data,
        "--grid", "optim.lr=0.3", "--grid", "optim.weight_decay=0", "--set", "train.epochs=1",
        "--set", "data.train_samples=64", "--widen", "0", "--out", out.path, "--quiet",
      ])
    }
    func recordedData(_ run: String) throws -> String? {
      try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(contentsOf: out.appendingPathComponent("linear/\(run)/run.json")))
          as? [String: Any])["data"] as? String
    }
    let first = try sweep("digits")
    XCTAssertEqual(first.status, 0, first.err)
    XCTAssertEqual(try recordedData("grid/lr-0.3_wd-0/seed-0"), "digits")
    let second = try sweep(other.path)
    XCTAssertEqual(second.status, 0, second.err)
    for run in ["grid/lr-0.3_wd-0/seed-0", "final/seed-0"] {
      XCTAssertEqual(try recordedData(run), other.path, run)
    }
    // The same folder with other weights (a model trained again in place keeps its name): the
    // runs record the old weights' hash, so they are redone.
    let weights = backbone.appendingPathComponent("model.safetensors")
    var bytes = try Data(contentsOf: weights)
    bytes[bytes.count - 2] ^= 0x01  // a low bit of the last float: still a valid file
    try bytes.write(to: weights)
    let hash = try FNV1a64.file(weights)
    func recordedHash(_ run: String) throws -> String? {
      try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(
            contentsOf: out.appendingPathComponent("linear/\(run)/adapter_config.json")))
          as? [String: Any])["base_model_hash"] as? String
    }
    XCTAssertNotEqual(try recordedHash("final/seed-0"), hash)
    let third = try sweep(other.path)
    XCTAssertEqual(third.status, 0, third.err)
    for run in ["grid/lr-0.3_wd-0/seed-0", "final/seed-0"] {
      XCTAssertEqual(try recordedHash(run), hash, run)
    }
    // The same data file with other contents (one sample fewer): the runs are redone.
    func recordedFingerprint(_ run: String) throws -> String? {
      try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(contentsOf: out.appendingPathComponent("linear/\(run)/run.json")))
          as? [String: Any])["data_fingerprint"] as? String
    }
    let before = try XCTUnwrap(DataFingerprint.of(other.path))
    XCTAssertEqual(try recordedFingerprint("final/seed-0"), before)
    let lines = try String(contentsOf: other, encoding: .utf8).split(separator: "\n")
    try (lines.dropLast().joined(separator: "\n") + "\n").write(
      to: other, atomically: true, encoding: .utf8)
    let after = try XCTUnwrap(DataFingerprint.of(other.path))
    XCTAssertNotEqual(after, before)
    let fourth = try sweep(other.path)
    XCTAssertEqual(fourth.status, 0, fourth.err)
    for run in ["grid/lr-0.3_wd-0/seed-0", "final/seed-0"] {
      XCTAssertEqual(try recordedFingerprint(run), after, run)
    }
  }

  /// A dataset's fingerprint hashes the files that describe it: `prepared.json` first, else the
  /// VTAB-1k lists, else a detection folder's annotations; a file its bytes; nothing else.
  func testDataFingerprintHashesTheFilesThatDescribeTheSplits() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let fm = FileManager.default
    func write(_ text: String, _ path: String) throws {
      let url = root.appendingPathComponent(path)
      try fm.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try Data(text.utf8).write(to: url)
    }
    XCTAssertNil(DataFingerprint.of("digits"))
    XCTAssertNil(DataFingerprint.of(root.appendingPathComponent("missing").path))
    try write("x", "classes/a/1.png")
    XCTAssertNil(DataFingerprint.of(root.appendingPathComponent("classes").path))
    // VTAB-1k lists: any of them changing changes the fingerprint.
    for (name, text) in [("train800.txt", "a 0\n"), ("val200.txt", "b 1\n"), ("test.txt", "c 0\n")]
    {
      try write(text, "vtab/\(name)")
    }
    let vtab = root.appendingPathComponent("vtab").path
    let lists = try XCTUnwrap(DataFingerprint.of(vtab))
    try write("c 1\n", "vtab/test.txt")
    XCTAssertNotEqual(try XCTUnwrap(DataFingerprint.of(vtab)), lists)
    // prepared.json, when there is one, speaks for the folder.
    try write("{\"seed\": 0}", "vtab/prepared.json")
    let prepared = try XCTUnwrap(DataFingerprint.of(vtab))
    try write("c 0\n", "vtab/test.txt")
    XCTAssertEqual(DataFingerprint.of(vtab), prepared)
    try write("{\"seed\": 1}", "vtab/prepared.json")
    XCTAssertNotEqual(DataFingerprint.of(vtab), prepared)
    // A detection folder's annotations; a file's bytes.
    for split in ["train", "val", "test"] { try write("{}", "det/annotations/\(split).json") }
    XCTAssertNotNil(DataFingerprint.of(root.appendingPathComponent("det").path))
    let file = root.appendingPathComponent("det/annotations/train.json")
    XCTAssertEqual(DataFingerprint.of(file.path), try FNV1a64.file(file))
    // The prepared sets by name: their folder under the data home.
    setenv("GRAFT_DATA_HOME", root.path, 1)
    defer { unsetenv("GRAFT_DATA_HOME") }
    try write("{\"points\": 2048}", "furniture/prepared.json")
    try write("{\"task\": \"mnist\"}", "graft1k/mnist/prepared.json")
    let furniture = try XCTUnwrap(DataFingerprint.of("furniture"))
    XCTAssertEqual(DataFingerprint.of(root.appendingPathComponent("furniture").path), furniture)
    XCTAssertEqual(DataFingerprint.of("furniture-so3"), furniture)
    XCTAssertEqual(
      DataFingerprint.of("graft1k/mnist"),
      DataFingerprint.of(root.appendingPathComponent("graft1k/mnist").path))
    XCTAssertNotNil(DataFingerprint.of("graft1k/mnist"))
  }

  /// `graft sweep --init-from DIR --fresh-head` (PVP's warm start): every child run starts from
  /// the run's prompts with a fresh head, and records where it started in its `run.json`.
  func testSweepStartsEveryRunFromTheGivenRun() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let source = root.appendingPathComponent("source")
    let small = ["--set", "train.epochs=1", "--set", "data.train_samples=64", "--quiet"]
    let tune = try runGraft(
      [
        "tune", "--backbone", tinyTimmFolder, "--method", "vpt-deep", "--data", "digits",
        "--out", source.path,
      ] + small)
    XCTAssertEqual(tune.status, 0, tune.err)
    let out = root.appendingPathComponent("sweep")
    let sweep = try runGraft(
      [
        "sweep", "--backbone", tinyTimmFolder, "--method", "vpt-deep", "--data", "digits",
        "--grid", "optim.lr=0.5", "--grid", "optim.weight_decay=0", "--out", out.path,
        "--init-from", source.path, "--fresh-head",
      ] + small)
    XCTAssertEqual(sweep.status, 0, sweep.err)
    for run in ["grid/lr-0.5_wd-0/seed-0", "final/seed-0"] {
      let json = try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(
            contentsOf: out.appendingPathComponent("vpt-deep/\(run)/run.json")))
          as? [String: Any])
      XCTAssertEqual(json["init_from"] as? String, source.path, run)
      XCTAssertEqual(json["fresh_head"] as? Bool, true, run)
      XCTAssertEqual(
        json["init_from_hash"] as? String,
        try FNV1a64.file(source.appendingPathComponent(AdapterCheckpoint.weightsFile)), run)
    }
    // Without --fresh-head the runs were made otherwise: the sweep redoes them.
    let again = try runGraft(
      [
        "sweep", "--backbone", tinyTimmFolder, "--method", "vpt-deep", "--data", "digits",
        "--grid", "optim.lr=0.5", "--grid", "optim.weight_decay=0", "--out", out.path,
        "--init-from", source.path,
      ] + small)
    XCTAssertEqual(again.status, 0, again.err)
    let redone = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("vpt-deep/final/seed-0/run.json")))
        as? [String: Any])
    XCTAssertEqual(redone["fresh_head"] as? Bool, false)
    let alone = try runGraft(
      [
        "sweep", "--backbone", tinyTimmFolder, "--method", "vpt-deep", "--data", "digits",
        "--out", out.path, "--fresh-head",
      ])
    XCTAssertNotEqual(alone.status, 0)
    XCTAssertTrue(alone.err.contains("--fresh-head belongs with --init-from"), alone.err)
    let pvp = try runGraft(
      ["bench", "graft1k", "--pvp-from", "mnist", "--out", out.path, "--quiet"])
    XCTAssertNotEqual(pvp.status, 0)
    XCTAssertTrue(pvp.err.contains("--pvp-from needs --protocol vtab"), pvp.err)
  }

  /// `--jobs 2`: the protocol's runs go two at a time, each child on twice its share of the
  /// threads, so on all of them (recorded in its `summary.json`), so that the last run left
  /// uses every core; the protocol's figures come out exactly as with one job, and a failing
  /// child's own message reaches the sweep's error, not only its exit status.
  func testSweepRunsChildrenSideBySide() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let common = [
      "sweep", "--method", "linear", "--data", "digits", "--grid", "optim.lr=0.3,0.1,0.03",
      "--grid", "optim.weight_decay=0", "--seeds", "2", "--set", "train.epochs=1", "--set",
      "data.train_samples=96", "--widen", "0", "--quiet", "--json",
    ]
    func threads(_ run: URL) throws -> Int? {
      let file = run.appendingPathComponent("summary.json")
      let record = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any], file.path)
      return record["threads"] as? Int
    }
    let runs = [
      "grid/lr-0.3_wd-0/seed-0", "grid/lr-0.1_wd-0/seed-0", "grid/lr-0.03_wd-0/seed-0",
      "final/seed-0", "final/seed-1",
    ]
    var scores: [[Double]] = []
    for jobs in [1, 2] {
      let out = root.appendingPathComponent("jobs-\(jobs)")
      let r = try runGraft(
        common + ["--backbone", tinyTimmFolder, "--jobs", "\(jobs)", "--out", out.path])
      XCTAssertEqual(r.status, 0, r.err)
      let summary = try XCTUnwrap(
        JSONSerialization.jsonObject(
          with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
      let result = try XCTUnwrap((summary["results"] as? [[String: Any]])?.first)
      let points = try XCTUnwrap(result["points"] as? [[String: Any]])
      scores.append(points.compactMap { $0["mean_val_top1"] as? Double })
      for run in runs {
        XCTAssertEqual(
          try threads(out.appendingPathComponent("linear/\(run)")),
          Parallel.threadCount, "\(run) with --jobs \(jobs)")
      }
    }
    // The same runs on as many threads (the same row blocks): the same figures, exactly.
    XCTAssertEqual(scores[0].count, 3)
    XCTAssertEqual(scores[0], scores[1])
    // A batch of one run (one grid point, one seed) has the cores to itself.
    let single = root.appendingPathComponent("single")
    let r = try runGraft(
      [
        "sweep", "--method", "linear", "--data", "digits", "--grid", "optim.lr=0.3", "--grid",
        "optim.weight_decay=0", "--set", "train.epochs=1", "--set", "data.train_samples=96",
        "--widen", "0", "--quiet", "--backbone", tinyTimmFolder, "--jobs", "2", "--out",
        single.path,
      ])
    XCTAssertEqual(r.status, 0, r.err)
    for run in ["grid/lr-0.3_wd-0/seed-0", "final/seed-0"] {
      XCTAssertEqual(
        try threads(single.appendingPathComponent("linear/\(run)")), Parallel.threadCount, run)
    }
    let broken = try runGraft(
      common + [
        "--backbone", root.appendingPathComponent("no-such-backbone").path, "--jobs", "2",
        "--out", root.appendingPathComponent("broken").path,
      ])
    // A failure of the runs, not of the command line: status 1 and no usage text (64 and the
    // whole usage before).
    XCTAssertEqual(broken.status, 1, broken.err)
    XCTAssertFalse(broken.err.contains("Usage:"), broken.err)
    XCTAssertTrue(broken.err.contains("every run failed"), broken.err)
    XCTAssertTrue(broken.err.contains("no-such-backbone: no such file or folder"), broken.err)
    let jobs = try runGraft(
      common + ["--backbone", tinyTimmFolder, "--jobs", "0", "--out", root.path])
    XCTAssertNotEqual(jobs.status, 0)
    XCTAssertTrue(jobs.err.contains("--jobs must be 1 or more"), jobs.err)
  }

  /// The protocol's progress counts its runs: after the first of three, time is left (the
  /// estimate was 0:00 throughout when the reporter's total stayed its placeholder step).
  func testSweepProgressEstimatesTheRunsLeft() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let r = try runGraft([
      "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
      "--grid", "optim.lr=0.3,0.1", "--grid", "optim.weight_decay=0", "--set", "train.epochs=1",
      "--set", "data.train_samples=96", "--widen", "0", "--out", out.path,
    ])
    XCTAssertEqual(r.status, 0, r.err)
    let lines = r.err.split(separator: "\n").filter { $0.hasPrefix("runs  [") }
    let first = try XCTUnwrap(lines.first, r.err)
    XCTAssertTrue(first.contains("1/3"), String(first))
    XCTAssertFalse(first.hasSuffix("ETA 0:00"), String(first))
  }

  /// Bad grids are clear errors before any run.
  func testSweepCommandRefusesBadGrids() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    for (extra, message) in [
      (["--grid", "optim.lr"], "key=value"),
      (["--grid", "optim.nope=1,2"], "unknown key 'optim.nope'"),
      (["--grid", "optim.lr=1,2", "--grid", "optim.lr=3"], "given twice"),
      (["--widen=-1"], "--widen must be 0 or more"),
    ] {
      let r = try runGraft(
        [
          "sweep", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits",
          "--out", out.path, "--quiet",
        ] + extra)
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.err.contains(message), r.err)
    }
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: out.appendingPathComponent("linear").path))
    let bench = try runGraft(["bench", "graft1k", "--protocol", "nope", "--out", out.path])
    XCTAssertNotEqual(bench.status, 0)
    XCTAssertTrue(bench.err.contains("expected default or vtab"), bench.err)
    for command in [["bench", "graft1k", "--protocol", "vtab"], ["demo"]] {
      let r = try runGraft(command + ["--widen=-1", "--out", out.path])
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.err.contains("--widen must be 0 or more"), r.err)
    }
    for command in [["bench", "graft1k"], ["demo"], ["demo", "points"], ["bench", "graft3d"]] {
      let r = try runGraft(command + ["--jobs", "0", "--out", out.path])
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.err.contains("--jobs must be 1 or more"), r.err)
    }
  }
}
