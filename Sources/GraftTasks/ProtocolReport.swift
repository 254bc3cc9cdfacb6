import Foundation

extension ReportWriter {
  /// `report.html` of a protocol sweep (`graft sweep`): per task, the table of chosen settings
  /// and test top-1 (mean ± std, 95 % interval, ties), the test means with their intervals as
  /// bars, and each method's grid as a validation heat map (rows: the first axis, columns: the
  /// other axes' combinations; the chosen cell outlined). Cells carry `data-val` (mean
  /// validation top-1, a fraction) and `data-chosen`; bars carry `data-mean` and `data-ci`.
  public static func protocolHTML(_ s: ProtocolSummary, title: String) -> String {
    var body = "<h1>\(escape(title))</h1>\n"
    body +=
      "<p class=\"sub\">backbone <code>\(escape(s.backbone))</code> · VTAB-1k protocol: each "
      + "grid point trained on train and scored on validation; the best (ties: smaller lr, then "
      + "smaller weight decay) retrained on train + validation and tested once per seed"
      + String(format: " · %.0f s", s.wallSeconds) + " · Graft \(GraftVersion.string)</p>\n"
    for task in s.tasks {
      let results = s.results.filter { $0.task == task }
      guard !results.isEmpty else { continue }
      body += "<h2>\(escape(task))</h2>\n"
      body += protocolTable(s, task: task)
      body += "<div class=\"charts\">\n"
      body += protocolSection("Test top-1, mean and 95 % interval over seeds", bars(results))
      for r in results {
        body += protocolSection(
          "\(escape(r.method)): validation top-1 over the grid", heatMap(r))
      }
      body += "</div>\n"
    }
    return """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>\(escape(title))</title>
      <style>\(protocolStyle)</style></head>
      <body>
      \(body)</body></html>

      """
  }

  /// Writes the protocol `report.html` into `folder`, atomically.
  public static func writeProtocol(_ s: ProtocolSummary, title: String, to folder: URL) throws {
    try AtomicFile.write(
      Data(protocolHTML(s, title: title).utf8), to: folder.appendingPathComponent("report.html"))
  }

  private static let protocolStyle = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;\
    max-width:1180px;color:#1d2330;padding:0 16px}
    h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
    .sub{color:#5b6475;margin:0 0 16px}code{background:#f1f3f7;padding:1px 4px;border-radius:3px}
    table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:4px 10px;text-align:right;\
    border-bottom:1px solid #e3e6ec}th:first-child,td:first-child{text-align:left}
    th{background:#f6f7fa;font-weight:600}
    .charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:18px}
    .card{border:1px solid #e3e6ec;border-radius:8px;padding:12px 14px}
    .card h2{margin:0 0 8px;font-size:14px}
    svg text{font:11px system-ui,sans-serif;fill:#39414f}
    table.heat td{border:2px solid #fff;min-width:64px;text-align:center}
    table.heat td.chosen{border:2px solid #111;font-weight:700}
    """

  private static func protocolSection(_ title: String, _ content: String) -> String {
    "<div class=\"card\"><h2>\(title)</h2>\n\(content)</div>\n"
  }

  private static func protocolTable(_ s: ProtocolSummary, task: String) -> String {
    let leaders = s.leaders(task: task)
    let best = s.results.filter { $0.task == task && !$0.finals.isEmpty }
      .max { $0.test.mean < $1.test.mean }
    var out =
      "<table><tr><th>method</th><th>chosen</th><th>val top-1</th><th>val at end</th>"
      + "<th>test top-1 mean ± std</th>"
      + "<th>95 % CI</th><th>seeds</th><th>trainable</th><th>vs linear probe</th><th>vs best</th></tr>\n"
    for r in s.results where r.task == task {
      let t = r.test
      let val = ProtocolResult.meanScores(r.validation)[r.chosen]
      let ci = r.testInterval.map { String(format: "%.1f–%.1f", 100 * $0.low, 100 * $0.high) }
      // The chosen run's last quarter of epochs against the rest: still rising, or flat (the
      // same words as the text table; the gain itself, in points, as the cell's tooltip).
      let end = ProtocolResult.lateGainText(r.chosenLateGain)
      let gainTip =
        r.chosenLateGain.map { String(format: " title=\"late gain %+.1f points\"", 100 * $0) } ?? ""
      let verdict =
        r.finals.isEmpty
        ? "failed"
        : r.method == best?.method
          ? (leaders.count > 1 ? "best (tied)" : "best")
          : leaders.contains(r.method) ? "tied with the best" : "below"
      out +=
        "<tr><td>\(escape(r.method))</td><td><code>\(escape(r.chosenSettings.joined(separator: " ")))</code></td>"
        + "<td>\(pct(val))</td><td data-late-gain=\"\(r.chosenLateGain.map { "\($0)" } ?? "")\"\(gainTip)>"
        + "\(end)</td>"
        + "<td>\(r.finals.isEmpty ? "–" : String(format: "%.1f ± %.1f", 100 * t.mean, 100 * t.std))</td>"
        + "<td>\(ci ?? "–")</td><td>\(r.finals.count)</td>"
        + "<td>\(r.finals.first?.trainableParameters ?? 0)</td>"
        + "<td>\(s.againstProbe(r.method, task: task) ?? "–")</td><td>\(verdict)</td></tr>\n"
    }
    return out + "</table>\n"
  }

  /// Horizontal bars of each method's test mean, with its 95 % interval as a whisker.
  private static func bars(_ results: [ProtocolResult]) -> String {
    let done = results.filter { !$0.finals.isEmpty }
    guard !done.isEmpty else { return "<p>no finished final run</p>" }
    let lows = done.map { $0.testInterval?.low ?? $0.test.mean }
    let highs = done.map { $0.testInterval?.high ?? $0.test.mean }
    var lo = max(0, (lows.min()! * 20).rounded(.down) / 20)
    let hi = min(1, (highs.max()! * 20).rounded(.up) / 20)
    if hi - lo < 0.05 { lo = max(0, hi - 0.05) }
    let (left, width, row) = (110.0, 300.0, 24.0)
    let height = Double(done.count) * row + 30
    func x(_ v: Double) -> Double { left + (v - lo) / max(hi - lo, 1e-9) * width }
    var svg =
      "<svg viewBox=\"0 0 \(Int(left + width + 20)) \(Int(height))\" width=\"\(Int(left + width + 20))\" "
      + "height=\"\(Int(height))\" role=\"img\">\n"
    for (i, r) in done.enumerated() {
      let t = r.test
      let y = Double(i) * row + 6
      let h = t.halfWidth95 ?? 0
      let (low, high) = r.testInterval ?? (t.mean, t.mean)
      svg += String(
        format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n", left - 6, y + 13,
        escape(r.method))
      svg += String(
        format:
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"16\" fill=\"#8fb3d9\" "
          + "data-mean=\"%.6f\" data-ci=\"%.6f\"/>\n",
        left, y, max(0, x(t.mean) - left), t.mean, h)
      if h > 0 {
        svg += String(
          format:
            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#1d2330\" stroke-width=\"1.5\"/>\n",
          x(low), x(high), y + 8, y + 8)
      }
      svg += String(
        format: "<text x=\"%.1f\" y=\"%.1f\">%.1f</text>\n", x(high) + 4, y + 13, 100 * t.mean)
    }
    let axisY = Double(done.count) * row + 18
    for k in 0...4 {
      let v = lo + (hi - lo) * Double(k) / 4
      svg += String(
        format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f%%</text>\n", x(v), axisY,
        100 * v)
    }
    return svg + "</svg>\n"
  }

  /// The grid of `r` as a table of cells shaded by mean validation top-1.
  private static func heatMap(_ r: ProtocolResult) -> String {
    let scores = ProtocolResult.meanScores(r.validation)
    let finished = scores.filter { $0 >= 0 }
    let (lo, hi) = (finished.min() ?? 0, finished.max() ?? 1)
    let rowAxis = r.axes[0]
    let columnAxes = Array(r.axes.dropFirst())
    let columns = GridSearch.points(columnAxes)
    var out = "<table class=\"heat\"><tr><th>\(escape(rowAxis.key))</th>"
    for c in columns {
      let label = zip(columnAxes, c).map {
        "\($0.key.split(separator: ".").last ?? "") \($0.values[$1])"
      }
      out += "<th>\(escape(label.isEmpty ? "val top-1" : label.joined(separator: ", ")))</th>"
    }
    out += "</tr>\n"
    for (i, value) in rowAxis.values.enumerated() {
      out += "<tr><th>\(escape(value))</th>"
      for c in columns {
        guard let index = r.points.firstIndex(of: [i] + c) else {
          out += "<td>–</td>"
          continue
        }
        let v = scores[index]
        let chosen = index == r.chosen
        guard v >= 0 else {
          out += "<td data-val=\"\" data-chosen=\"\(chosen)\">failed</td>"
          continue
        }
        // White (worst of the grid) to blue (best); text turns white on dark cells.
        let t = hi > lo ? (v - lo) / (hi - lo) : 1
        let (red, green, blue) = (
          Int(247 - t * (247 - 33)), Int(251 - t * (251 - 102)), Int(255 - t * (255 - 172))
        )
        out +=
          "<td style=\"background:rgb(\(red),\(green),\(blue));color:\(t > 0.6 ? "#fff" : "#1d2330")\""
          + "\(chosen ? " class=\"chosen\"" : "") data-val=\(String(format: "\"%.6f\"", v)) "
          + "data-chosen=\"\(chosen)\">\(pct(v))</td>"
      }
      out += "</tr>\n"
    }
    return out + "</table>\n"
  }
}
