import XCTest

@testable import GraftTasks

/// Every `data-<name>="…"` value of the elements with `class="<kind>"` in `html`, in order.
func marks(_ html: String, kind: String) -> [[String: String]] {
  var out: [[String: String]] = []
  let pattern = try! NSRegularExpression(pattern: "<[a-z]+ class=\"\(kind)\"([^>]*)>")
  let attribute = try! NSRegularExpression(pattern: "data-([a-z0-9]+)=\"([^\"]*)\"")
  let ns = html as NSString
  for m in pattern.matches(in: html, range: NSRange(location: 0, length: ns.length)) {
    let tag = ns.substring(with: m.range(at: 1))
    var values: [String: String] = [:]
    let tns = tag as NSString
    for a in attribute.matches(in: tag, range: NSRange(location: 0, length: tns.length)) {
      values[tns.substring(with: a.range(at: 1))] = tns.substring(with: a.range(at: 2))
    }
    out.append(values)
  }
  return out
}

final class ReportTests: XCTestCase {
  /// Two real short runs on digits, summarised and drawn: each chart holds exactly the numbers
  /// of `summary.json` (and of each run's own files for the curves, confusion and grid).
  func testChartsHoldTheNumbersOfTheSummary() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    var records: [RunRecord] = []
    for method in ["linear", "bitfit"] {
      let folder = root.appendingPathComponent(method)
      _ = try shortRun(method, extra: ["train.epochs=2"], folder: folder)
      // `graft tune` writes a report of its own.
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: folder.appendingPathComponent("report.html").path))
      records.append(try RunRecord.load(folder: folder, task: "digits"))
    }
    let sweep = SweepSummary(backbone: "tiny", tasks: ["digits"], runs: records, wallSeconds: 1)
    try sweep.write(to: root)
    try ReportWriter.write(
      sweep, title: "test", classNames: digits.classNames,
      testSamples: ReportWriter.gridSamples(digits), to: root)
    let html = try String(
      contentsOf: root.appendingPathComponent("report.html"), encoding: .utf8)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: root.appendingPathComponent("summary.json"))) as? [String: Any])
    let rows = try XCTUnwrap(summary["methods"] as? [[String: Any]])
    XCTAssertEqual(rows.map { $0["method"] as? String }, ["linear", "bitfit"])

    // Accuracy against trainable parameters: one point per method.
    let points = marks(html, kind: "point")
    XCTAssertEqual(points.count, 2)
    for (point, row) in zip(points, rows) {
      XCTAssertEqual(point["method"], row["method"] as? String)
      XCTAssertEqual(Int(point["params"]!), row["trainable_parameters"] as? Int)
      XCTAssertEqual(
        try XCTUnwrap(Double(point["top1"]!)), try XCTUnwrap(row["test_top1"] as? Double),
        accuracy: 1e-12)
    }
    // Peak memory: one bar per method.
    let bars = marks(html, kind: "bar")
    XCTAssertEqual(bars.count, 2)
    for (bar, row) in zip(bars, rows) {
      XCTAssertEqual(
        try XCTUnwrap(Double(bar["mib"]!)), try XCTUnwrap(row["peak_rss_mib"] as? Double),
        accuracy: 1e-9)
      XCTAssertGreaterThan(Double(bar["mib"]!)!, 1)
    }
    // Validation curves: the runs' metrics.jsonl, epoch by epoch.
    let curves = marks(html, kind: "curve")
    XCTAssertEqual(curves.count, 2)
    for (curve, method) in zip(curves, ["linear", "bitfit"]) {
      let lines = try String(
        contentsOf: root.appendingPathComponent("\(method)/metrics.jsonl"), encoding: .utf8
      ).split(separator: "\n")
      let expected = try lines.map {
        try XCTUnwrap(
          (JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["val_top1"]
            as? Double)
      }
      XCTAssertEqual(curve["values"]!.split(separator: ",").map { Double($0)! }, expected)
    }
    // Confusion matrix: the best run's test confusion from its summary.json.
    let best = records.max { $0.testTop1 < $1.testTop1 }!
    let runSummary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: best.folder.appendingPathComponent("summary.json")))
        as? [String: Any])
    let confusion = try XCTUnwrap((runSummary["test"] as? [String: Any])?["confusion"] as? [[Int]])
    let cells = marks(html, kind: "cell")
    XCTAssertEqual(cells.count, 100)
    for c in cells {
      XCTAssertEqual(Int(c["count"]!), confusion[Int(c["true"]!)!][Int(c["pred"]!)!])
    }
    XCTAssertEqual(cells.map { Int($0["count"]!)! }.reduce(0, +), digits.test.count)
    // Image grid: predictions are the argmax of the saved test logits, truths the labels.
    let figures = marks(html, kind: "(?:right|wrong)")
    XCTAssertEqual(figures.count, ReportWriter.gridSize)
    let logits = try XCTUnwrap(
      SafetensorsFile(contentsOf: best.folder.appendingPathComponent("test_logits.safetensors"))
        .tensors()["logits"])
    let predicted = logits.argmax(axis: 1)
    for (i, figure) in figures.enumerated() {
      XCTAssertEqual(Int(figure["pred"]!), predicted[i], "image \(i)")
      XCTAssertEqual(Int(figure["true"]!), digits.test.label(at: i), "image \(i)")
    }
    XCTAssertTrue(html.contains("data:image/png;base64,"))
  }

  func testEscapesMarkup() {
    XCTAssertEqual(ReportWriter.escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;")
  }

  /// The confusion matrix's labels do not overlap: the furniture set's room names (wider than a
  /// 34 px cell) are turned 45° below the matrix and the left margin holds the longest row name;
  /// digit names stay level. Before the fix the left margin was a fixed 70 px and every column
  /// name was centred level under its cell, so `living_room` ran into its neighbours.
  func testConfusionLabelsDoNotOverlap() throws {
    let rooms = [
      "bathroom", "bedroom", "character", "door_window", "exterior", "kitchen", "light",
      "living_room", "office", "vehicle",
    ]
    let matrix = (0..<10).map { t in (0..<10).map { $0 == t ? 3 : 0 } }
    func number(_ svg: String, _ name: String) -> Double {
      let r = svg.range(of: "\(name)=\"")!
      return Double(svg[r.upperBound...].prefix { $0 != "\"" })!
    }
    let longer = ["very_long_category_name_" + rooms[0]] + rooms.dropFirst()
    for names in [rooms, longer] {
      let svg = ReportWriter.confusionSVG(matrix, classNames: names)
      let columns = svg.components(separatedBy: "class=\"column-label\"").dropFirst()
      XCTAssertEqual(columns.count, 10)
      XCTAssertTrue(columns.allSatisfy { $0.contains("rotate(-45") }, "room names turned")
      // The first cell's x is the left margin: it must hold the longest row label.
      let cellX = number(String(svg[svg.range(of: "<rect")!.lowerBound...]), "x")
      let longest = names.map(ReportWriter.labelWidth).max()!
      XCTAssertGreaterThanOrEqual(cellX - 4, longest)
      // Neighbouring turned labels are a cell apart along x: 45° puts them cell · 0.707 apart
      // across their baselines, which must clear the 11 px font.
      let cellWidth = number(String(svg[svg.range(of: "<rect")!.lowerBound...]), "width")
      XCTAssertGreaterThanOrEqual(cellWidth * 0.7071, 11)
      // The picture is tall enough for the turned labels below the 10 rows.
      let viewBox = svg[svg.range(of: "viewBox=\"")!.upperBound...].prefix { $0 != "\"" }
      let height = Double(viewBox.split(separator: " ")[3])!
      XCTAssertGreaterThanOrEqual(height, 20 + 10 * cellWidth + longest * 0.7071)
    }
    let digits = ReportWriter.confusionSVG(matrix, classNames: (0..<10).map { "\($0)" })
    XCTAssertFalse(digits.contains("rotate("), "names that fit their cell stay level")
    XCTAssertEqual(digits.components(separatedBy: "class=\"column-label\"").count - 1, 10)
  }

  /// McNemar's exact test against SciPy's `binomtest(k, n, 0.5).pvalue`, and the counts it
  /// starts from.
  func testPairedComparison() throws {
    for (a, b, p) in [
      (3, 12, 0.03515625), (310, 319, 0.7497698640726824), (5, 5, 1.0), (40, 160, 3.384016e-18),
      (0, 0, 1.0),
    ] {
      let pair = PairedComparison(onlyFirst: a, onlySecond: b)
      XCTAssertEqual(pair.pValue, p, accuracy: p * 1e-6 + 1e-15, "\(a), \(b)")
    }
    let pair = try XCTUnwrap(
      PairedComparison(first: [0, 1, 2, 3, 0], second: [0, 1, 1, 1, 1], labels: [0, 1, 2, 1, 1]))
    XCTAssertEqual(pair, PairedComparison(onlyFirst: 1, onlySecond: 2))
    XCTAssertNil(PairedComparison(first: [0], second: [0, 1], labels: [0, 1]))
  }

  /// A method below the linear probe is named on the page with the test images between them
  /// and whether that is beyond chance; a page where none is says so.
  func testReportExplainsAMethodBelowTheLinearProbe() throws {
    let labels = (0..<400).map { $0 % 10 }
    func run(_ method: String, wrong: Set<Int>) -> RunRecord {
      let predictions = labels.enumerated().map {
        wrong.contains($0.offset) ? ($0.element + 1) % 10 : $0.element
      }
      return RunRecord(
        task: "t", method: method, folder: URL(fileURLWithPath: "/nonexistent"),
        testTop1: Double(400 - wrong.count) / 400, testTop5: 1, trainableParameters: 10,
        backboneParameters: 100, trainSeconds: 1, imagesPerSecond: 1, peakRSSMiB: 100,
        validationCurve: [0.5], confusion: [], testPredictions: predictions)
    }
    // The probe misses images 0..<40; `close` misses 2..<44 (2 fewer right, p = 0.69);
    // `worse` misses 0..<80 (40 fewer, p ≈ 1.8e-12).
    let probe = run("linear", wrong: Set(0..<40))
    let close = run("close", wrong: Set(2..<44))
    let worse = run("worse", wrong: Set(0..<80))
    let better = run("better", wrong: Set(0..<10))
    let summary = SweepSummary(
      backbone: "b", tasks: ["t"], runs: [probe, close, worse, better], wallSeconds: 1)
    let lines = ReportWriter.belowProbe(summary, testLabels: ["t": labels])
    XCTAssertEqual(lines.count, 2, "\(lines)")
    XCTAssertTrue(
      lines[0].hasPrefix("close on t: 89.50% against the linear probe's 90.00%, 2 fewer of 400"),
      lines[0])
    XCTAssertTrue(lines[0].contains("level with the probe"), lines[0])
    XCTAssertTrue(lines[1].contains("40 fewer of 400"), lines[1])
    XCTAssertTrue(lines[1].contains("below the probe beyond chance"), lines[1])
    let page = try ReportWriter.html(
      summary, title: "x", classNames: [], testSamples: [], testLabels: ["t": labels])
    XCTAssertTrue(page.contains("Against the linear probe"))
    XCTAssertEqual(page.components(separatedBy: "<li>").count - 1, 2)
    // Without the labels the page still names them, without the test.
    XCTAssertFalse(ReportWriter.belowProbe(summary, testLabels: [:])[0].contains("McNemar"))
    let fine = SweepSummary(backbone: "b", tasks: ["t"], runs: [probe, better], wallSeconds: 1)
    XCTAssertTrue(
      try ReportWriter.html(fine, title: "x", classNames: [], testSamples: [])
        .contains("Every method is at or above the linear probe."))
  }

  /// The memory chart's method names turn 45° when 13 methods share its width (Graft-3D's
  /// `vpt-shallow` ran into its neighbours) and stay level when few do.
  func testMemoryChartNamesTurnWhenTheyCrowd() {
    func summary(_ methods: [String]) -> SweepSummary {
      let runs = methods.map {
        RunRecord(
          task: "t", method: $0, folder: URL(fileURLWithPath: "/nonexistent"), testTop1: 0.5,
          testTop5: 0.9, trainableParameters: 10, backboneParameters: 100, trainSeconds: 1,
          imagesPerSecond: 1, peakRSSMiB: 100, validationCurve: [0.5], confusion: [],
          testPredictions: [])
      }
      return SweepSummary(backbone: "b", tasks: ["t"], runs: runs, wallSeconds: 1)
    }
    let crowded = ReportWriter.memoryBars(
      summary([
        "linear", "full", "bitfit", "ln-tune", "vpt-shallow", "vpt-deep", "lora", "adapter", "mp",
        "lst", "unipt", "idpt", "p2p",
      ]))
    XCTAssertEqual(crowded.components(separatedBy: "rotate(-45").count - 1, 13)
    let few = ReportWriter.memoryBars(summary(["linear", "full"]))
    XCTAssertFalse(few.contains("rotate(-45"))
    XCTAssertEqual(few.components(separatedBy: "class=\"method-label\"").count - 1, 2)
  }
}
