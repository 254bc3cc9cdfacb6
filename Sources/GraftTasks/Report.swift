import Foundation

/// `report.html`: one self-contained page (inline CSS, SVG charts, images as data URLs) for a
/// sweep or a single run.
///
/// Charts: test top-1 against trainable parameters (log scale, one point per method, the mean
/// over tasks when there are several), validation top-1 per epoch (first task), peak memory per
/// method, the test confusion matrix of the best method on the first task, and a grid of test
/// images with predicted and true labels. Every mark carries its number in a `data-` attribute
/// (`data-top1`, `data-params`, `data-values`, `data-mib`, `data-count`, `data-pred`,
/// `data-true`), so a test can check the page against `summary.json`.
public enum ReportWriter {
  /// Test images shown in the grid.
  public static let gridSize = 24

  /// The page for `summary`; `classNames` label the first task, `testSamples` are its first
  /// test images with their labels (for the grid, in dataset order); `extra` is HTML appended
  /// at the end (the point-cloud report's galleries, `PointReport`); `testLabels` (by task)
  /// let the page say whether a method below the linear probe is below it beyond chance.
  public static func html(
    _ summary: SweepSummary, title: String, classNames: [String],
    testSamples: [(image: RGBImage, label: Int)], testLabels: [String: [Int]] = [:],
    extra: String = ""
  ) throws -> String {
    let firstTask = summary.tasks.first ?? ""
    let best =
      summary.runs.filter { $0.task == firstTask }.max { $0.testTop1 < $1.testTop1 }
    var body = ""
    body += "<h1>\(escape(title))</h1>\n"
    body +=
      "<p class=\"sub\">backbone <code>\(escape(summary.backbone))</code> · tasks "
      + summary.tasks.map { "<code>\(escape($0))</code>" }.joined(separator: ", ")
      + String(format: " · %.0f s", summary.wallSeconds) + " · Graft \(GraftVersion.string)</p>\n"
    body += table(summary)
    if summary.runs.contains(where: { $0.method == "linear" }) {
      // No method should end below the probe without the page saying so, and why.
      let below = belowProbe(summary, testLabels: testLabels)
      body += "<h2>Against the linear probe</h2>\n"
      body +=
        below.isEmpty
        ? "<p>Every method is at or above the linear probe.</p>\n"
        : "<ul class=\"below-probe\">\n" + below.map { "<li>\(escape($0))</li>\n" }.joined()
          + "</ul>\n"
    }
    body += "<div class=\"charts\">\n"
    body += section(
      "Test top-1 against trainable parameters"
        + (summary.tasks.count > 1 ? " (mean over tasks)" : ""),
      scatter(summary))
    let fitted = summary.runs.contains { $0.task == firstTask && $0.trainedOnValidation }
    body += section(
      "Validation top-1 per epoch (\(escape(firstTask)))"
        + (fitted
          ? ": these runs trained on the validation split too (VTAB-1k's final stage), so the "
            + "curves show fit, not generalisation; the test column is the measure" : ""),
      curves(summary, firstTask))
    body += section("Peak memory per method (RSS)", memoryBars(summary))
    if let best {
      body += section(
        "Confusion matrix: \(escape(best.method)) on \(escape(firstTask)) (test)",
        confusion(best, classNames: classNames))
    }
    body += "</div>\n"
    if let best, !testSamples.isEmpty {
      body += "<h2>Test images: \(escape(best.method)) on \(escape(firstTask))</h2>\n"
      body += try grid(best, samples: testSamples, classNames: classNames)
    }
    body += extra
    return """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>\(escape(title))</title>
      <style>\(style)</style></head>
      <body>
      \(body)</body></html>

      """
  }

  /// Writes `report.html` into `folder`, atomically.
  public static func write(
    _ summary: SweepSummary, title: String, classNames: [String],
    testSamples: [(image: RGBImage, label: Int)], testLabels: [String: [Int]] = [:],
    extra: String = "", to folder: URL
  ) throws {
    let page = try html(
      summary, title: title, classNames: classNames, testSamples: testSamples,
      testLabels: testLabels, extra: extra)
    try AtomicFile.write(Data(page.utf8), to: folder.appendingPathComponent("report.html"))
  }

  // MARK: Parts

  private static let style = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;\
    max-width:1180px;color:#1d2330;padding:0 16px}
    h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
    .sub{color:#5b6475;margin:0 0 16px}code{background:#f1f3f7;padding:1px 4px;border-radius:3px}
    table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:4px 10px;text-align:right;\
    border-bottom:1px solid #e3e6ec}th:first-child,td:first-child{text-align:left}
    th{background:#f6f7fa;font-weight:600}
    .charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:18px}
    .card{border:1px solid #e3e6ec;border-radius:8px;padding:12px 14px}
    .card h2{margin:0 0 8px;font-size:14px}
    svg text{font:11px system-ui,sans-serif;fill:#39414f}
    .grid{display:flex;flex-wrap:wrap;gap:10px}
    figure{margin:0;width:76px;text-align:center;font-size:11px}
    figure img{width:64px;height:64px;image-rendering:pixelated;border:1px solid #ccd;display:block;\
    margin:0 auto 2px}
    figure.wrong figcaption b{color:#c0392b}figure.right figcaption b{color:#1e8449}
    """

  private static let palette = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
  ]

  /// `method`'s chart colour: the palette's entry at its place in `methods`.
  static func color(_ method: String, in methods: [String]) -> String {
    palette[(methods.firstIndex(of: method) ?? 0) % palette.count]
  }

  private static func section(_ title: String, _ content: String) -> String {
    "<div class=\"card\"><h2>\(title)</h2>\n\(content)</div>\n"
  }

  private static func table(_ s: SweepSummary) -> String {
    var out = "<table><tr><th>method</th>"
    for t in s.tasks { out += "<th>\(escape(t))</th>" }
    if s.tasks.count > 1 { out += "<th>mean</th>" }
    out +=
      "<th>trainable</th><th>share</th><th>train s</th><th>img/s</th><th>peak RSS MiB</th></tr>\n"
    for m in s.methods {
      out += "<tr><td>\(escape(m))</td>"
      for t in s.tasks {
        out += "<td>" + cell(s, m, t) + "</td>"
      }
      if s.tasks.count > 1 { out += "<td><b>\(pct(s.meanTop1(m)))</b></td>" }
      let mine = s.runs.filter { $0.method == m }
      let first = mine[0]
      out += "<td>\(first.trainableParameters)</td>"
      out += String(format: "<td>%.3f%%</td>", 100 * first.trainableShare)
      out += String(format: "<td>%.1f</td>", mine.map(\.trainSeconds).reduce(0, +))
      out += String(
        format: "<td>%.0f</td>", mine.map(\.imagesPerSecond).reduce(0, +) / Double(mine.count))
      out += String(format: "<td>%.0f</td></tr>\n", mine.map(\.peakRSSMiB).max() ?? 0)
    }
    return out + "</table>\n"
  }

  /// A task's figure for a method: test top-1, the mean ± standard deviation over seeds when
  /// there are several, and with `showsMeanPerClass` the mean per-class accuracy and the voted
  /// figures.
  private static func cell(_ s: SweepSummary, _ m: String, _ t: String) -> String {
    func figure(_ value: (RunRecord) -> Double?) -> String? {
      guard let v = s.stats(m, task: t, value) else { return nil }
      return v.count > 1
        ? String(format: "%.1f ± %.1f", 100 * v.mean, 100 * v.std) : pct(v.mean)
    }
    guard let top1 = figure({ $0.testTop1 }) else { return "–" }
    guard s.showsMeanPerClass else { return top1 }
    var out = "OA \(top1)<br>mAcc \(figure { $0.testMeanPerClass } ?? "–")"
    if let voted = figure({ $0.testVoted?.top1 }) {
      let votes = s.runs(m, task: t).first?.votes ?? 1
      out +=
        "<br><small>\(votes) votes: OA \(voted) · mAcc "
        + "\(figure { $0.testVoted?.meanPerClass } ?? "–")</small>"
    }
    return out
  }

  /// Frame of a chart: width, height and the plot area's margins.
  private struct Frame {
    let width = 540.0
    let height = 300.0
    let left = 52.0
    var right = 16.0
    let top = 12.0
    var bottom = 40.0
    var plotWidth: Double { width - left - right }
    var plotHeight: Double { height - top - bottom }
    func x(_ t: Double) -> Double { left + t * plotWidth }
    func y(_ t: Double) -> Double { top + (1 - t) * plotHeight }
  }

  private static func svgOpen(_ f: Frame, _ kind: String) -> String {
    String(
      format: "<svg class=\"%@\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" role=\"img\">\n", kind,
      f.width, f.height)
  }

  /// Axes with ticks: `xTicks`/`yTicks` as (position 0…1, label).
  private static func axes(
    _ f: Frame, xTicks: [(Double, String)], yTicks: [(Double, String)], xLabel: String,
    yLabel: String
  ) -> String {
    var out = ""
    for (t, label) in yTicks {
      out += String(
        format:
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e8ee\"/>"
          + "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n",
        f.left, f.y(t), f.width - f.right, f.y(t), f.left - 6, f.y(t) + 4, label)
    }
    for (t, label) in xTicks {
      out += String(
        format:
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e8ee\"/>"
          + "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
        f.x(t), f.top, f.x(t), f.height - f.bottom, f.x(t), f.height - f.bottom + 14, label)
    }
    out += String(
      format:
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#9aa3b2\"/>\n",
      f.left, f.top, f.plotWidth, f.plotHeight)
    out += String(
      format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
      f.left + f.plotWidth / 2, f.height - 6, xLabel)
    out += String(
      format:
        "<text transform=\"translate(12 %.1f) rotate(-90)\" text-anchor=\"middle\">%@</text>\n",
      f.top + f.plotHeight / 2, yLabel)
    return out
  }

  /// Nice bounds for accuracies: from a tenth below the lowest to 100 %.
  private static func accuracyRange(_ values: [Double]) -> (Double, Double) {
    let low = max(0, ((values.min() ?? 0) * 10).rounded(.down) / 10)
    return (min(low, 0.9), 1)
  }

  private static func scatter(_ s: SweepSummary) -> String {
    let f = Frame()
    let methods = s.methods
    let points = methods.map { m in
      (m, Double(s.runs.first { $0.method == m }!.trainableParameters), s.meanTop1(m))
    }
    let logs = points.map { log10(max($0.1, 1)) }
    let lo = (logs.min() ?? 0).rounded(.down)
    let hi = max((logs.max() ?? 1).rounded(.up), lo + 1)
    let (yLo, yHi) = accuracyRange(points.map(\.2))
    func px(_ p: Double) -> Double { f.x((log10(max(p, 1)) - lo) / (hi - lo)) }
    func py(_ a: Double) -> Double { f.y((a - yLo) / (yHi - yLo)) }
    var out = svgOpen(f, "scatter")
    let xTicks = stride(from: lo, through: hi, by: 1).map { ($0 - lo) / (hi - lo) }.enumerated()
      .map { ($0.element, "1e\(Int(lo) + $0.offset)") }
    let yTicks = stride(from: yLo, through: yHi + 1e-9, by: 0.1).map {
      (($0 - yLo) / (yHi - yLo), String(format: "%.0f%%", $0 * 100))
    }
    out += axes(
      f, xTicks: xTicks, yTicks: yTicks, xLabel: "trainable parameters (log scale)",
      yLabel: "test top-1")
    for (m, p, a) in points {
      let c = color(m, in: methods)
      out += String(
        format:
          "<g class=\"point\" data-method=\"%@\" data-params=\"%d\" data-top1=\"%@\">"
          + "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%@\"/>"
          + "<text x=\"%.1f\" y=\"%.1f\">%@</text></g>\n",
        escape(m), Int(p), "\(a)", px(p), py(a), c, px(p) + 7, py(a) - 6, escape(m))
    }
    return out + "</svg>\n"
  }

  private static func curves(_ s: SweepSummary, _ task: String) -> String {
    var f = Frame()
    f.right = 110  // room for the legend
    let methods = s.methods
    // One curve per method: the first seed's.
    let firstSeed = s.runs.compactMap(\.seed).min()
    let runs = s.runs.filter {
      $0.task == task && !$0.validationCurve.isEmpty && $0.seed == firstSeed
    }
    let epochs = runs.map(\.validationCurve.count).max() ?? 1
    let (yLo, yHi) = accuracyRange(runs.flatMap(\.validationCurve))
    func px(_ e: Int) -> Double { f.x(epochs <= 1 ? 0.5 : Double(e) / Double(epochs - 1)) }
    func py(_ a: Double) -> Double { f.y((a - yLo) / (yHi - yLo)) }
    var out = svgOpen(f, "curves")
    let step = max(1, epochs / 10)
    let xTicks = stride(from: 0, to: epochs, by: step).map {
      (epochs <= 1 ? 0.5 : Double($0) / Double(epochs - 1), "\($0 + 1)")
    }
    let yTicks = stride(from: yLo, through: yHi + 1e-9, by: 0.1).map {
      (($0 - yLo) / (yHi - yLo), String(format: "%.0f%%", $0 * 100))
    }
    out += axes(f, xTicks: xTicks, yTicks: yTicks, xLabel: "epoch", yLabel: "validation top-1")
    for (i, r) in runs.enumerated() {
      let c = color(r.method, in: methods)
      let pts = r.validationCurve.enumerated().map {
        String(format: "%.1f,%.1f", px($0.offset), py($0.element))
      }
      out +=
        "<polyline class=\"curve\" data-method=\"\(escape(r.method))\" data-values=\""
        + r.validationCurve.map { "\($0)" }.joined(separator: ",")
        + "\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\""
        + pts.joined(separator: " ") + "\"/>\n"
      // Legend, right of the plot.
      let lx = f.width - f.right + 10
      let ly = f.top + 10 + Double(i) * 16
      out += String(
        format:
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"3\" fill=\"%@\"/>"
          + "<text x=\"%.1f\" y=\"%.1f\">%@</text>\n",
        lx, ly - 4, c, lx + 14, ly, escape(r.method))
    }
    return out + "</svg>\n"
  }

  static func memoryBars(_ s: SweepSummary) -> String {
    var f = Frame()
    let methods = s.methods
    let values = methods.map { m in s.runs.filter { $0.method == m }.map(\.peakRSSMiB).max() ?? 0 }
    let top = max(values.max() ?? 1, 1) * 1.1
    let slot = f.plotWidth / Double(max(methods.count, 1))
    // Names wider than their slot (13 methods, `vpt-shallow`) turn 45° below the axis, as the
    // confusion matrix's do, with the bottom margin grown to hold them.
    let longest = methods.map(labelWidth).max() ?? 0
    let turned = longest > slot * 0.95
    if turned { f.bottom = 36 + longest * 0.7072 }
    var out = svgOpen(f, "memory")
    let yTicks = (0...4).map { (Double($0) / 4, String(format: "%.0f", top * Double($0) / 4)) }
    out += axes(f, xTicks: [], yTicks: yTicks, xLabel: "method", yLabel: "peak RSS (MiB)")
    for (i, (m, v)) in zip(methods, values).enumerated() {
      let x = f.left + Double(i) * slot + slot * 0.15
      let h = v / top * f.plotHeight
      let labelX = x + slot * 0.35
      let labelY = f.height - f.bottom + 14
      let name =
        turned
        ? String(
          format:
            "<text class=\"method-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
            + "transform=\"rotate(-45 %.1f %.1f)\">%@</text>",
          labelX + 4, labelY - 6, labelX + 4, labelY - 6, escape(m))
        : String(
          format:
            "<text class=\"method-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>",
          labelX, labelY, escape(m))
      out += String(
        format:
          "<g class=\"bar\" data-method=\"%@\" data-mib=\"%@\"><rect x=\"%.1f\" y=\"%.1f\" "
          + "width=\"%.1f\" height=\"%.1f\" fill=\"%@\"/>"
          + "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>%@</g>\n",
        escape(m), "\(v)", x, f.y(0) - h, slot * 0.7, h, color(m, in: methods), labelX,
        f.y(0) - h - 3, v, name)
    }
    return out + "</svg>\n"
  }

  /// Estimated width in pixels of `text` in the charts' 11 px font (about 0.6 em a character,
  /// generous for system-ui): used to size the confusion matrix's margins so labels stay clear.
  static func labelWidth(_ text: String) -> Double { 6.6 * Double(text.count) }

  private static func confusion(_ run: RunRecord, classNames: [String]) -> String {
    confusionSVG(run.confusion, classNames: classNames)
  }

  /// The confusion matrix `matrix[true][predicted]` as an SVG. Row labels get a left margin as
  /// wide as the longest name; column labels that are wider than a cell (room names such as
  /// `living_room` under 34 px cells) are turned 45° so neighbours do not overlap, with a bottom
  /// margin deep enough to hold them.
  static func confusionSVG(_ matrix: [[Int]], classNames: [String]) -> String {
    let n = matrix.count
    guard n > 0 else { return "<p>no confusion matrix</p>" }
    let names = (0..<n).map { $0 < classNames.count ? classNames[$0] : "\($0)" }
    let longest = names.map(labelWidth).max() ?? 0
    let cell = min(34.0, 420.0 / Double(n))
    let left = max(70.0, longest + 8)
    let top = 20.0
    // Turned labels need cell · sin 45° ≥ the 11 px line height to clear each other.
    let turned = longest > cell - 2
    let labelDepth = turned ? longest * 0.7072 + 8 : 0
    let width = left + cell * Double(n) + 10
    let height = top + cell * Double(n) + 34 + labelDepth
    let most = Double(matrix.flatMap { $0 }.max() ?? 1)
    var out = String(
      format: "<svg class=\"confusion\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" role=\"img\">\n",
      width, height, width)
    for (t, row) in matrix.enumerated() {
      out += String(
        format: "<text class=\"row-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n",
        left - 4, top + (Double(t) + 0.6) * cell, escape(names[t]))
      for (p, count) in row.enumerated() {
        let shade = Double(count) / max(most, 1)
        let fill = String(
          format: "rgb(%d,%d,%d)", Int(255 - 215 * shade), Int(255 - 150 * shade),
          Int(255 - 40 * shade))
        out += String(
          format:
            "<g class=\"cell\" data-true=\"%d\" data-pred=\"%d\" data-count=\"%d\">"
            + "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\" "
            + "stroke=\"#fff\"/>",
          t, p, count, left + Double(p) * cell, top + Double(t) * cell, cell, cell, fill)
        if count > 0 && cell >= 18 {
          out += String(
            format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%@\">%d</text>",
            left + (Double(p) + 0.5) * cell, top + (Double(t) + 0.62) * cell,
            shade > 0.55 ? "#fff" : "#222", count)
        }
        out += "</g>\n"
      }
    }
    let labelTop = top + Double(n) * cell + 14
    for p in 0..<n {
      let x = left + (Double(p) + 0.5) * cell
      if turned {
        out += String(
          format:
            "<text class=\"column-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
            + "transform=\"rotate(-45 %.1f %.1f)\">%@</text>\n",
          x + 4, labelTop - 6, x + 4, labelTop - 6, escape(names[p]))
      } else {
        out += String(
          format:
            "<text class=\"column-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
          x, labelTop, escape(names[p]))
      }
    }
    out += String(
      format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">predicted</text>\n",
      left + Double(n) * cell / 2, height - 4)
    out += "<text x=\"4\" y=\"12\">true ↓</text>\n"
    return out + "</svg>\n"
  }

  private static func grid(
    _ run: RunRecord, samples: [(image: RGBImage, label: Int)], classNames: [String]
  ) throws -> String {
    var out = "<div class=\"grid\">\n"
    for (i, (image, truth)) in samples.prefix(gridSize).enumerated() {
      guard i < run.testPredictions.count else { break }
      let predicted = run.testPredictions[i]
      let name = { (k: Int) in k >= 0 && k < classNames.count ? classNames[k] : "\(k)" }
      let png = try ImageCodec.encodePNG(image).base64EncodedString()
      out +=
        "<figure class=\"\(predicted == truth ? "right" : "wrong")\" data-pred=\"\(predicted)\" "
        + "data-true=\"\(truth)\"><img alt=\"test image \(i)\" src=\"data:image/png;base64,\(png)\">"
        + "<figcaption><b>\(escape(name(predicted)))</b><br>true \(escape(name(truth)))"
        + "</figcaption></figure>\n"
    }
    return out + "</div>\n"
  }

  static func pct(_ v: Double) -> String { String(format: "%.1f%%", 100 * v) }

  /// `text` with HTML's special characters escaped.
  public static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}

extension ReportWriter {
  /// Pictures of the first `gridSize` test samples of `data` with their labels (none for
  /// samples without a preview).
  public static func gridSamples<Sample: TuneSample>(_ data: TuneData<Sample>) throws
    -> [(image: RGBImage, label: Int)]
  {
    try (0..<min(gridSize, data.test.count)).compactMap { i in
      try Sample.preview(data.test.sample(at: i)).map { ($0, data.test.label(at: i)) }
    }
  }

  /// The label of every test sample of `data`, in dataset order (what `belowProbe` compares
  /// two runs' predictions against).
  public static func testLabels<Sample: TuneSample>(_ data: TuneData<Sample>) -> [Int] {
    (0..<data.test.count).map { data.test.label(at: $0) }
  }

  /// `report.html` of the single run in `folder` (what `graft tune` writes).
  public static func writeRun<Sample: TuneSample>(
    folder: URL, backbone: String, dataReference: String, data: TuneData<Sample>
  ) throws {
    let run = try RunRecord.load(folder: folder, task: dataReference)
    let summary = SweepSummary(
      backbone: backbone, tasks: [dataReference], runs: [run], wallSeconds: run.trainSeconds)
    try write(
      summary, title: "graft tune: \(run.method) on \(dataReference)",
      classNames: data.classNames, testSamples: gridSamples(data), to: folder)
  }
}
