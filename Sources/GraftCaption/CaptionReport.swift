import Foundation

/// `report.html` of `graft bench captions` and `graft demo video`: one self-contained page
/// (inline CSS, frames as PNG data URLs) with the scores of every arm, the difference each
/// arm's video makes over its no-video baseline, and for a few test clips a strip of frames,
/// each arm's caption and the references. Table cells carry their numbers in `data-value`.
public enum CaptionReport {
  /// Test clips shown with their captions.
  public static let clipsShown = 8
  /// Frames in each clip's strip.
  public static let stripFrames = 4

  /// The page. `notes` are lines under the title (decoder, backbone, settings).
  public static func html(
    _ results: [CaptionArmResult], title: String, notes: [String], data: CaptionClips
  ) throws -> String {
    let esc = ReportWriter.escape
    var body = "<h1>\(esc(title))</h1>\n"
    for line in notes { body += "<p class=\"sub\">\(esc(line))</p>\n" }
    body += "<h2>Test scores</h2>\n" + scoreTable(results)
    let pairs = baselinePairs(results)
    if !pairs.isEmpty {
      body += "<h2>What the video adds (arm − its no-video baseline)</h2>\n"
      body += differenceTable(pairs)
    }
    body += "<h2>Test clips</h2>\n"
    let entries = Array(data.entries(split: "test").prefix(clipsShown))
    for e in entries {
      body += "<div class=\"clip\"><div class=\"strip\">"
      let frames = try VideoDecoding.sample(e.url, count: stripFrames, sampling: .pllava)
      for i in 0..<frames.count {
        let png = try ImageCodec.encodePNG(frames.image(i)).base64EncodedString()
        body += "<img alt=\"frame \(i)\" src=\"data:image/png;base64,\(png)\">"
      }
      body += "</div><div class=\"text\"><b>\(esc(e.videoID))</b>"
      if let label = e.label { body += " · action <code>\(esc(label))</code>" }
      body += "<table class=\"caps\">"
      for r in results {
        let caption = r.captions.first { $0.videoID == e.videoID }?.caption ?? ""
        let mark =
          e.label == nil ? "" : (ActionMentions.action(of: caption) == e.label ? " ✓" : " ✗")
        body += "<tr><th>\(esc(r.arm))</th><td>\(esc(caption))\(mark)</td></tr>"
      }
      for (k, ref) in e.captions.enumerated() {
        body += "<tr class=\"ref\"><th>\(k == 0 ? "references" : "")</th><td>\(esc(ref))</td></tr>"
      }
      body += "</table></div></div>\n"
    }
    body +=
      "<p class=\"sub\">✓: the caption names the clip's action and no other (a phrase list "
      + "per action, <code>ActionMentions</code>); ✗: it names another, several or none.</p>\n"
    return """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>\(esc(title))</title>
      <style>\(style)</style></head>
      <body>
      \(body)</body></html>

      """
  }

  /// Writes `report.html` into `folder`, atomically.
  public static func write(
    _ results: [CaptionArmResult], title: String, notes: [String], data: CaptionClips,
    to folder: URL
  ) throws {
    let page = try html(results, title: title, notes: notes, data: data)
    try AtomicFile.write(Data(page.utf8), to: folder.appendingPathComponent("report.html"))
  }

  /// Each arm with video beside its no-video baseline of the same mode, where both ran.
  public static func baselinePairs(_ results: [CaptionArmResult]) -> [(
    video: CaptionArmResult, baseline: CaptionArmResult
  )] {
    results.filter(\.video).compactMap { v in
      results.first { !$0.video && $0.mode == v.mode }.map { (v, $0) }
    }
  }

  /// The score columns, in order, with their headings.
  static let columns = [
    ("bleu_1", "BLEU-1"), ("bleu_2", "BLEU-2"), ("bleu_3", "BLEU-3"), ("bleu_4", "BLEU-4"),
    ("rouge_l", "ROUGE-L"), ("cider", "CIDEr"),
  ]

  static func cell(_ value: Double, digits: Int = 3, signed: Bool = false) -> String {
    // No "-0.000" for a difference of rounding size.
    let v = abs(value) < 0.5 * pow(10, -Double(digits)) ? 0 : value
    return "<td data-value=\"\(v)\">"
      + String(format: signed ? "%+.\(digits)f" : "%.\(digits)f", v) + "</td>"
  }

  static func scoreTable(_ results: [CaptionArmResult]) -> String {
    var s = "<table><tr><th>arm</th><th>video</th><th>trainable</th>"
    s += columns.map { "<th>\($0.1)</th>" }.joined()
    s += "<th>action named</th><th>distinct captions</th><th>val loss</th>"
    s += "<th>train s</th><th>peak RSS MiB</th></tr>\n"
    for r in results {
      s += "<tr><td>\(ReportWriter.escape(r.arm))</td><td>\(r.video ? "yes" : "no")</td>"
      s += "<td>\(r.trainable)</td>"
      s += columns.map { cell(r.scores[$0.0] ?? .nan) }.joined()
      s += "<td data-value=\"\(r.actionNamed)\">\(r.actionNamed) / \(r.actionCounted)</td>"
      s += "<td>\(r.distinctCaptions) / \(r.captions.count)</td>"
      s += r.history.last?.valLoss.map { cell($0) } ?? "<td>–</td>"
      s += cell(r.trainSeconds, digits: 0)
      s += r.peakRSSMiB.map { cell($0, digits: 0) } ?? "<td>–</td>"
      s += "</tr>\n"
    }
    return s + "</table>\n"
  }

  static func differenceTable(
    _ pairs: [(video: CaptionArmResult, baseline: CaptionArmResult)]
  ) -> String {
    var s = "<table><tr><th>mode</th>" + columns.map { "<th>\($0.1)</th>" }.joined()
    s += "<th>action named</th></tr>\n"
    for (v, b) in pairs {
      s += "<tr><td>\(ReportWriter.escape(v.mode))</td>"
      s += columns.map { cell((v.scores[$0.0] ?? .nan) - (b.scores[$0.0] ?? .nan), signed: true) }
        .joined()
      s +=
        "<td data-value=\"\(v.actionNamed - b.actionNamed)\">"
        + String(format: "%+d", v.actionNamed - b.actionNamed) + "</td></tr>\n"
    }
    return s + "</table>\n"
  }

  static let style = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;\
    max-width:1180px;color:#1d2330;padding:0 16px}
    h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
    .sub{color:#5b6475;margin:0 0 6px}code{background:#f1f3f7;padding:1px 4px;border-radius:3px}
    table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:4px 10px;text-align:right;\
    border-bottom:1px solid #e3e6ec}th:first-child,td:first-child{text-align:left}
    th{background:#f6f7fa;font-weight:600}
    .clip{display:flex;gap:16px;border:1px solid #e3e6ec;border-radius:8px;padding:10px;\
    margin:0 0 10px;align-items:flex-start}
    .strip{display:flex;gap:3px;flex:none}
    .strip img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccd}
    .caps th,.caps td{text-align:left;border:none;padding:1px 8px;background:none}
    .caps th{color:#5b6475;font-weight:600;white-space:nowrap}
    .caps tr.ref td{color:#5b6475}.caps td{word-break:break-word}
    """
}
