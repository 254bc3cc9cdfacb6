import Foundation
import GraftDetection

/// `report.html` of `graft bench det`: the table of COCO numbers and costs, AP against
/// trainable parameters (log scale) as an SVG scatter, and a grid of test images per method
/// with the true boxes (green, dashed) and the predicted ones (each class's colour, score ≥
/// `drawThreshold`) drawn in SVG over the image.
///
/// Every plotted point carries `data-method`, every image figure `data-method`,
/// `data-image`, `data-pred` (boxes drawn) and `data-true`, so a test can check the page.
public enum DetectionReport {
  /// One method's row: its runs, one per seed.
  public struct Row {
    /// The method's name, as `graft tune --method` takes it.
    public var method: String
    /// One summary per seed, in `seeds` order.
    public var summaries: [DetectionSummary]
    /// The seeds, in run order.
    public var seeds: [UInt64]
    /// The first seed's test detections (COCO results, the images' own pixels): the ones drawn.
    public var detections: [Detection]

    /// A row from its parts (`summaries` and `seeds` of the same length, at least one).
    public init(
      method: String, summaries: [DetectionSummary], seeds: [UInt64], detections: [Detection]
    ) {
      precondition(!summaries.isEmpty && summaries.count == seeds.count)
      self.method = method
      self.summaries = summaries
      self.seeds = seeds
      self.detections = detections
    }

    /// The first seed's summary (parameter counts are the same for every seed).
    public var summary: DetectionSummary { summaries[0] }

    /// Test COCO number `index` (0 AP, 1 AP50, 2 AP75, 3–5 APs/m/l, 6… AR) over the seeds; a
    /// seed where it is undefined (-1: no ground truth in that area range) is left out.
    public func test(_ index: Int) -> SeedStatistics {
      SeedStatistics(summaries.map { $0.test.stats[index] }.filter { $0 >= 0 })
    }

    /// Mean training seconds over the seeds.
    public var meanTrainSeconds: Double {
      summaries.map(\.trainSeconds).reduce(0, +) / Double(summaries.count)
    }

    /// The largest peak RSS of the seeds' runs, bytes.
    public var largestPeakRSSBytes: Int { summaries.map(\.peakRSSBytes).max() ?? 0 }

    /// Validation AP over the seeds.
    public var validationAP: SeedStatistics {
      SeedStatistics(summaries.map { $0.validation.stats[0] })
    }

    /// How this row's test AP compares with `floor`'s: "floor" (the floor itself), "above",
    /// "below" or "tied" (each mean inside the other's 95 % interval), "–" with one seed
    /// (no interval to judge by).
    public func comparison(with floor: Row?) -> String {
      guard let floor else { return "–" }
      if floor.method == method { return "floor" }
      let (mine, theirs) = (test(0), floor.test(0))
      guard mine.count > 1, theirs.count > 1 else { return "–" }
      if mine.isTied(with: theirs) { return "tied" }
      return mine.mean > theirs.mean ? "above" : "below"
    }

    /// As written to the bench's `summary.json` under `methods`.
    public func json(floor: Row?) -> [String: Any] {
      var means: [String: Any] = [:]
      var stds: [String: Any] = [:]
      for (i, name) in COCOBoxScores.names.enumerated() {
        let s = test(i)
        means[name] = s.count > 0 ? s.mean : -1
        stds[name] = s.count > 0 ? s.std : -1
      }
      var o: [String: Any] = [
        "method": method, "seeds": seeds.map { Int($0) }, "test_mean": means, "test_std": stds,
        "validation_ap_mean": validationAP.mean,
        "trainable_parameters": summary.trainableParameters,
        "trainable_share": Double(summary.trainableParameters)
          / Double(max(summary.backboneParameters, 1)),
        "train_seconds_mean": meanTrainSeconds, "peak_rss_bytes_max": largestPeakRSSBytes,
        "vs_floor": comparison(with: floor),
      ]
      if let h = test(0).halfWidth95 { o["test_ap_ci95_half_width"] = h }
      return o
    }
  }

  /// The method whose row is the floor the others are compared with: the linear probe's frozen
  /// pyramid.
  public static let floorMethod = "linear"

  /// Predictions scoring below this are not drawn.
  public static let drawThreshold = 0.3

  /// The page for `rows` on the test split `test` (its first `images` images in the grid).
  public static func html(
    title: String, settings: String, rows: [Row], test: DetectionSplit, images: Int = 6
  ) throws -> String {
    var out = """
      <!DOCTYPE html>
      <html><head><meta charset="utf-8"><title>\(ReportWriter.escape(title))</title>
      <style>
      body{font-family:system-ui,sans-serif;margin:24px;color:#222}
      table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;text-align:right;
      border-bottom:1px solid #ddd}td:first-child,th:first-child{text-align:left}
      .grid{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}
      figure{margin:0;font-size:11px;text-align:center}
      h3{margin:14px 0 4px}
      </style></head><body>
      <h1>\(ReportWriter.escape(title))</h1>
      <p>\(ReportWriter.escape(settings))</p>

      """
    out += table(rows)
    out += scatter(rows)
    out +=
      "<h2>Test images: true boxes green (dashed), predictions in the class colour (score ≥ "
      + "\(drawThreshold))</h2>\n"
    let shown = Array(test.dataset.images.prefix(images))
    var encoded: [Int: String] = [:]
    for (i, image) in shown.enumerated() {
      encoded[image.id] = try ImageCodec.encodePNG(ImageCodec.decode(contentsOf: test.imageURL(i)))
        .base64EncodedString()
    }
    let categories = test.dataset.categories
    for row in rows {
      out +=
        "<h3>\(ReportWriter.escape(row.method)) (test AP "
        + String(format: "%.1f", 100 * row.summary.test.stats[0]) + ", seed \(row.seeds[0]))</h3>\n"
        + "<div class=\"grid\">\n"
      for image in shown {
        let predicted = row.detections.filter {
          $0.imageID == image.id && $0.score >= drawThreshold
        }
        out += figure(
          image: image, png: encoded[image.id] ?? "", predicted: predicted,
          categories: categories, method: row.method)
      }
      out += "</div>\n"
    }
    return out + "</body></html>\n"
  }

  /// "mean ± std" of a statistic in percent ("mean" alone for one seed, "–" when undefined).
  public static func pct(_ s: SeedStatistics) -> String {
    guard s.count > 0 else { return "–" }
    let mean = String(format: "%.1f", 100 * s.mean)
    return s.count > 1 ? mean + " ± " + String(format: "%.1f", 100 * s.std) : mean
  }

  static func table(_ rows: [Row]) -> String {
    let floor = rows.first { $0.method == floorMethod }
    var out =
      "<table><tr><th>method</th><th>AP</th><th>AP50</th><th>AP75</th><th>APs</th><th>APm</th>"
      + "<th>APl</th><th>val AP</th><th>vs \(floorMethod)</th><th>seeds</th><th>trainable</th>"
      + "<th>share</th><th>train s</th><th>peak RSS MiB</th></tr>\n"
    for r in rows {
      let s = r.summary
      out +=
        "<tr><td>\(ReportWriter.escape(r.method))</td>"
        + (0..<6).map { "<td>\(pct(r.test($0)))</td>" }.joined()
        + "<td>\(pct(r.validationAP))</td><td>\(r.comparison(with: floor))</td>"
        + "<td>\(r.seeds.count)</td><td>\(s.trainableParameters)</td>"
        + String(
          format: "<td>%.2f%%</td><td>%.0f</td><td>%.0f</td></tr>\n",
          100 * Double(s.trainableParameters) / Double(max(s.backboneParameters, 1)),
          r.meanTrainSeconds, Double(r.largestPeakRSSBytes) / 1_048_576)
    }
    return out + "</table>\n"
  }

  /// Test AP (y) against trainable parameters (x, log10): per method a dot at the mean over
  /// the seeds with a bar of ± one std, in the method's colour, named in a legend on the right
  /// with its AP. Both axes span the data, not whole decades from zero: methods of one field
  /// sit within a few AP points and a factor of five in parameters, and labels beside the dots
  /// piled on top of each other.
  static func scatter(_ rows: [Row]) -> String {
    let (w, left, bottom, top, right) = (700.0, 60.0, 40.0, 20.0, 190.0)
    let h = max(300, top + bottom + 16 * Double(rows.count + 1))
    let counts = rows.map { Double(max($0.summary.trainableParameters, 1)) }
    let aps = rows.map { $0.test(0) }
    let means = aps.map { max(0, $0.mean) }
    let stds = aps.map { $0.count > 1 ? $0.std : 0 }
    // x: a margin of 30 % either side of the extreme counts, at least half a decade in all.
    var x0 = log10((counts.min() ?? 1) / 1.3)
    var x1 = log10((counts.max() ?? 10) * 1.3)
    if x1 - x0 < 0.5 { (x0, x1) = ((x0 + x1) / 2 - 0.25, (x0 + x1) / 2 + 0.25) }
    // y, in AP points: whole ticks of a step that gives at most six intervals.
    let low = zip(means, stds).map { 100 * ($0 - $1) }.min() ?? 0
    let high = zip(means, stds).map { 100 * ($0 + $1) }.max() ?? 1
    let (bottomAP, topAP) = (max(0, low - 0.5), high + 0.5)
    let steps: [Double] = [0.5, 1, 2, 5, 10, 20]
    let step: Double =
      steps.first { (s: Double) -> Bool in
        let intervals: Double = (topAP / s).rounded(.up) - (bottomAP / s).rounded(.down)
        return intervals <= 6
      } ?? 20
    let y0: Double = (bottomAP / step).rounded(.down) * step
    let y1: Double = max((topAP / step).rounded(.up) * step, y0 + step)
    func px(_ count: Double) -> Double {
      left + (log10(count) - x0) / (x1 - x0) * (w - left - right)
    }
    let plotHeight: Double = h - bottom - top
    func py(_ ap: Double) -> Double {
      let fraction: Double = (100 * ap - y0) / (y1 - y0)
      return h - bottom - fraction * plotHeight
    }
    var svg =
      "<h2>Test AP against trainable parameters</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
      + "width=\"\(Int(w))\" height=\"\(Int(h))\" font-size=\"11\">\n"
      + "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" "
      + "stroke=\"#444\"/><line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" "
      + "stroke=\"#444\"/>\n"
    // x ticks at 1, 2 and 5 times a power of ten.
    for e in Int(x0.rounded(.down))...Int(x1.rounded(.up)) {
      for m in [1, 2, 5] where (x0...x1).contains(log10(Double(m)) + Double(e)) {
        let x = px(Double(m) * pow(10, Double(e)))
        svg +=
          "<line x1=\"\(x)\" y1=\"\(h - bottom)\" x2=\"\(x)\" y2=\"\(h - bottom + 4)\" "
          + "stroke=\"#444\"/><text x=\"\(x)\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">"
          + "\(m)e\(e)</text>\n"
      }
    }
    var y = y0
    while y <= y1 + 1e-9 {
      svg +=
        "<text x=\"\(left - 6)\" y=\"\(py(y / 100) + 4)\" text-anchor=\"end\">"
        + String(format: step < 1 ? "%.1f" : "%.0f", y) + "</text>\n"
      y += step
    }
    svg +=
      "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 6)\" text-anchor=\"middle\">trainable "
      + "parameters (log)</text><text x=\"14\" y=\"\((top + h - bottom) / 2)\" "
      + "transform=\"rotate(-90 14 \((top + h - bottom) / 2))\" text-anchor=\"middle\">test AP"
      + "</text>\n"
    let methods = rows.map(\.method)
    for (i, r) in rows.enumerated() {
      let color = ReportWriter.color(r.method, in: methods)
      let (x, mean, std) = (px(counts[i]), means[i], stds[i])
      let (legendX, legendY) = (w - right + 16, top + 8 + 16 * Double(i))
      svg +=
        "<g data-method=\"\(ReportWriter.escape(r.method))\" data-ap=\"\(mean)\" "
        + "data-trainable=\"\(Int(counts[i]))\">"
        + String(
          format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\"/>",
          x, py(mean - std), x, py(mean + std), color)
        + String(
          format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%@\"/>", x, py(mean), color)
        + String(
          format: "<circle class=\"legend\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%@\"/>",
          legendX, legendY - 4, color)
        + "<text x=\"\(legendX + 10)\" y=\"\(legendY)\">\(ReportWriter.escape(r.method)) "
        + String(format: "%.1f", 100 * mean)
        + (aps[i].count > 1 ? String(format: " ± %.1f", 100 * std) : "") + "</text></g>\n"
    }
    return svg + "</svg>\n"
  }

  /// One test image as an SVG: the PNG, then the true boxes, then the predictions.
  static func figure(
    image: AnnotatedImage, png: String, predicted: [Detection], categories: [DetectionCategory],
    method: String
  ) -> String {
    let side = 160.0
    let (sx, sy) = (side / Double(image.width), side / Double(image.height))
    var svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(side))\" height=\"\(Int(side))\" "
      + "viewBox=\"0 0 \(Int(side)) \(Int(side))\"><image href=\"data:image/png;base64,\(png)\" "
      + "width=\"\(Int(side))\" height=\"\(Int(side))\" style=\"image-rendering:pixelated\"/>\n"
    func rect(_ b: BoundingBox, _ style: String) -> String {
      String(
        format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" %@/>",
        b.x * sx, b.y * sy, b.width * sx, b.height * sy, style)
    }
    for a in image.annotations {
      svg += rect(a.box, "stroke=\"#2ca02c\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"")
    }
    for d in predicted {
      let k = categories.firstIndex { $0.id == d.categoryID } ?? 0
      let c = DetectionDrawing.palette[k % 10]
      let name = k < categories.count ? categories[k].name : "\(d.categoryID)"
      svg += rect(d.box, "stroke=\"rgb(\(c.0),\(c.1),\(c.2))\" stroke-width=\"1.5\"")
      svg +=
        String(
          format: "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" fill=\"rgb(%d,%d,%d)\">",
          d.box.x * sx + 1,
          max(9, d.box.y * sy - 2), Int(c.0), Int(c.1), Int(c.2))
        + ReportWriter.escape(name) + String(format: " %.2f", d.score) + "</text>"
    }
    svg += "</svg>"
    return
      "<figure data-method=\"\(ReportWriter.escape(method))\" data-image=\"\(image.id)\" "
      + "data-pred=\"\(predicted.count)\" data-true=\"\(image.annotations.count)\">\(svg)"
      + "<figcaption>image \(image.id): \(predicted.count) predicted, "
      + "\(image.annotations.count) true</figcaption></figure>\n"
  }
}
