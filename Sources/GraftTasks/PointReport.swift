import Foundation

/// The point-cloud parts of `report.html` (`graft demo points`, `graft bench graft3d`): the test
/// clouds themselves as inline SVG projections coloured by depth with predicted and true
/// labels, and P2P's projected images. `ReportWriter.html(extra:)` appends them.
///
/// Every figure carries `data-pred` and `data-true` (clouds) or `data-view` (P2P images), as
/// the rest of the report does, so a test can check the page.
public enum PointReport {
  /// Clouds shown in the gallery.
  public static let gallerySize = 24
  /// Points drawn per cloud (a farthest-point subset: the shape, at a readable file size).
  public static let drawnPoints = 384

  /// The test samples the gallery shows: `count` indices spread evenly over the split (test
  /// splits are often ordered by class, so the first few would show one class).
  public static func sampleIndices(testCount: Int, count: Int = gallerySize) -> [Int] {
    guard testCount > count else { return Array(0..<testCount) }
    return (0..<count).map { $0 * testCount / count }
  }

  /// The gallery: each chosen test cloud of `data` (`sampleIndices`) as an SVG, labelled with
  /// `predictions[i]` (the method's predicted class of test sample i) and the truth.
  public static func gallery(
    _ data: TuneData<PointCloud>, predictions: [Int], method: String
  ) throws -> String {
    let names = data.classNames
    func name(_ k: Int) -> String { k >= 0 && k < names.count ? names[k] : "\(k)" }
    var out =
      "<h2>Test point clouds: \(ReportWriter.escape(method)) (projections, near points dark "
      + "and large)</h2>\n<div class=\"grid clouds\">\n"
    for i in sampleIndices(testCount: min(data.test.count, predictions.count)) {
      let truth = data.test.label(at: i)
      let predicted = predictions[i]
      let svg = try cloudSVG(data.test.sample(at: i), side: 120)
      out +=
        "<figure class=\"cloud \(predicted == truth ? "right" : "wrong")\" data-index=\"\(i)\" "
        + "data-pred=\"\(predicted)\" data-true=\"\(truth)\" style=\"width:128px\">\(svg)"
        + "<figcaption><b>\(ReportWriter.escape(name(predicted)))</b><br>true "
        + "\(ReportWriter.escape(name(truth)))</figcaption></figure>\n"
    }
    return out + "</div>\n"
  }

  /// An SVG of `cloud` seen from a fixed oblique view (30° about the up axis y, then 20° down),
  /// orthographic, `drawnPoints` farthest points drawn far to near, each a dot whose colour
  /// (light yellow far, dark purple near) and size give its depth.
  public static func cloudSVG(_ cloud: PointCloud, side: Int) throws -> String {
    // The evaluation transform draws nothing; it still takes a generator.
    var unused = RandomGenerator(seed: 0)
    let input = try PointTransforms.evaluation(points: drawnPoints)(cloud, &unused)
    let n = input.shape[0]
    let p = input.pointer
    let (a, e) = (Float.pi / 6, Float.pi / 9)
    var projected: [(x: Float, y: Float, depth: Float)] = []
    for j in 0..<n {
      let (x, y, z) = (p[3 * j], p[3 * j + 1], p[3 * j + 2])
      // About y by a, then about x by e: screen x right, y up, depth towards the viewer.
      let x1 = x * cos(a) + z * sin(a)
      let z1 = -x * sin(a) + z * cos(a)
      let y2 = y * cos(e) - z1 * sin(e)
      let z2 = y * sin(e) + z1 * cos(e)
      projected.append((x1, y2, z2))
    }
    let depths = projected.map(\.depth)
    let (d0, d1) = (depths.min() ?? 0, depths.max() ?? 1)
    let s = Float(side)
    var out = String(
      format: "<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
        + "style=\"background:#fbfbfd;border:1px solid #ccd\">", side, side, side, side)
    for q in projected.sorted(by: { $0.depth < $1.depth }) {
      let t = d1 > d0 ? (q.depth - d0) / (d1 - d0) : 1
      // The normalised cloud lies in the unit sphere.
      let cx = s / 2 + q.x * s * 0.46
      let cy = s / 2 - q.y * s * 0.46
      out += String(
        format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.2f\" fill=\"%@\"/>", cx, cy, 0.9 + 1.1 * t,
        depthColour(t))
    }
    return out + "</svg>"
  }

  /// A colour from light yellow (t = 0, far) through teal to dark purple (t = 1, near), after
  /// viridis.
  static func depthColour(_ t: Float) -> String {
    let stops: [(Float, Float, Float)] = [
      (253, 231, 37), (94, 201, 98), (33, 145, 140), (59, 82, 139), (68, 1, 84),
    ]
    let x = Swift.min(Swift.max(t, 0), 1) * Float(stops.count - 1)
    let i = Swift.min(Int(x), stops.count - 2)
    let f = x - Float(i)
    let (a, b) = (stops[i], stops[i + 1])
    return String(
      format: "#%02x%02x%02x", Int(a.0 + (b.0 - a.0) * f), Int(a.1 + (b.1 - a.1) * f),
      Int(a.2 + (b.2 - a.2) * f))
  }

  /// P2P's colourful images (`P2P.colouredImage`, before the backbone's normalisation) of
  /// `count` test clouds of `data`, each from `views` (by default four of the voting views), as
  /// enlarged PNGs beside the cloud's SVG.
  public static func p2pImages(
    _ p2p: P2P, data: TuneData<PointCloud>, count: Int = 4,
    views: [P2P.View]? = nil
  ) throws -> String {
    let views = try views ?? Voting.views(votes: 4)
    let transform = PointTransforms.evaluation(points: p2p.points)
    p2p.setTraining(false)
    let names = data.classNames
    var out =
      "<h2>P2P: what the image backbone sees (projected and coloured by the trained encoder, "
      + "\(views.count) views)</h2>\n<div class=\"grid p2p\">\n"
    for i in sampleIndices(testCount: data.test.count, count: count) {
      let cloud = try data.test.sample(at: i)
      var unused = RandomGenerator(seed: 0)
      let input = try transform(cloud, &unused)
      let clouds = Tensor.stack(Array(repeating: input, count: views.count))
      let image = withNoGrad { p2p.colouredImage(clouds, views: views) }
      let label = data.test.label(at: i)
      out +=
        "<figure class=\"p2p-cloud\" data-index=\"\(i)\" data-true=\"\(label)\" "
        + "style=\"width:auto\">" + (try cloudSVG(cloud, side: 96))
      for (v, view) in views.enumerated() {
        let png = try ImageCodec.encodePNG(rgb(image, at: v)).base64EncodedString()
        out += String(
          format: "<img data-view=\"%d\" alt=\"view θ=%.2fπ φ=%.2fπ\" "
            + "style=\"width:96px;height:96px;display:inline-block;margin-left:4px\" "
            + "src=\"data:image/png;base64,%@\">", v, Double(view.theta) / .pi,
          Double(view.phi) / .pi, png)
      }
      out +=
        "<figcaption>true \(ReportWriter.escape(label < names.count ? names[label] : "\(label)"))"
        + "</figcaption></figure>\n"
    }
    return out + "</div>\n"
  }

  /// Image `index` of `images` [B, C, H, W] in (0, 1) as RGB (grey for one channel).
  static func rgb(_ images: Tensor, at index: Int) -> RGBImage {
    let (c, h, w) = (images.shape[1], images.shape[2], images.shape[3])
    var pixels = [UInt8](repeating: 0, count: h * w * 3)
    let base = images.pointer + index * c * h * w
    for y in 0..<h {
      for x in 0..<w {
        for k in 0..<3 {
          let v = base[(Swift.min(k, c - 1) * h + y) * w + x]
          pixels[(y * w + x) * 3 + k] = UInt8(Swift.min(Swift.max(v, 0), 1) * 255)
        }
      }
    }
    return RGBImage(width: w, height: h, pixels: pixels)
  }
}
