import Foundation

/// `graft data prepare canvas-det`: black square canvases with 1–6 real Fashion-MNIST and MNIST
/// items at random sizes and positions, some overlapping, each boxed by its nonzero pixels.
///
/// Every draw comes from the seed. Each item pool is split 70/10/20 by the seed before any
/// canvas is drawn, and a canvas of one split uses only that split's items, so no test canvas
/// shows an item a training canvas showed.
public enum CanvasDetection {
  /// The 20 categories (ids 1…20): Fashion-MNIST's ten classes, then the digits 0–9.
  public static let categoryNames =
    IDXDataset.fashionMNISTClassNames + (0..<10).map { "digit \($0)" }

  /// The splits, in order.
  public static let splits = ["train", "val", "test"]

  /// A 28 × 28 grey item and its category id (1…20).
  public struct Item: Sendable, Equatable {
    /// Grey pixels, 28 × 28, row-major.
    public var pixels: [UInt8]
    /// The category id, 1…20 (`categoryNames[categoryID - 1]`).
    public var categoryID: Int

    /// Wraps the parts.
    public init(pixels: [UInt8], categoryID: Int) {
      precondition(pixels.count == 28 * 28, "an item is 28 × 28 grey pixels")
      self.pixels = pixels
      self.categoryID = categoryID
    }
  }

  /// What to make.
  public struct Options: Sendable {
    /// Canvases in all splits.
    public var images = 1000
    /// Canvas side in pixels.
    public var size = 128
    /// Items per canvas, drawn uniformly.
    public var items: ClosedRange<Int> = 1...6
    /// An item's side after resizing in pixels, drawn log-uniformly (as many small items as
    /// large ones per octave), so that COCO's small, medium and large ranges all occur.
    public var itemSide: ClosedRange<Int> = 12...120
    /// A placement whose box overlaps a placed box by more IoU than this is drawn again (up to
    /// 30 tries, then the item is left out), so items overlap but do not hide each other.
    public var maxOverlap = 0.4
    /// Seed of every draw.
    public var seed: UInt64 = 0
    /// Share of training canvases (and of each item pool).
    public var trainShare = 0.7
    /// Share of validation canvases (and of each item pool); the rest is test.
    public var valShare = 0.1

    /// The defaults: 1,000 canvases of 128 × 128, 1–6 items of 12–120 pixels.
    public init() {}
  }

  /// One canvas and its boxes.
  public struct Canvas: Sendable, Equatable {
    /// The grey canvas as RGB.
    public var image: RGBImage
    /// The items' boxes (ids 1, 2, … within the canvas), in drawing order.
    public var annotations: [BoxAnnotation]
  }

  /// How many canvases (or items) of `count` each split gets: rounded shares, test the rest.
  public static func splitCounts(_ count: Int, options: Options) -> [Int] {
    let train = Int((Double(count) * options.trainShare).rounded())
    let val = Int((Double(count) * options.valShare).rounded())
    return [train, val, max(0, count - train - val)]
  }

  /// Splits each pool by a seeded permutation into train/val/test pools (shares of `options`).
  public static func splitPools(_ pools: [[Item]], options: Options) -> [[Item]] {
    var out: [[Item]] = [[], [], []]
    for (p, pool) in pools.enumerated() {
      var g = RandomGenerator(seed: options.seed ^ (0xC0C0 &+ UInt64(p)))
      var order = Array(pool.indices)
      order.shuffle(using: &g)
      let counts = splitCounts(pool.count, options: options)
      var start = 0
      for s in 0..<3 {
        out[s] += order[start..<(start + counts[s])].map { pool[$0] }
        start += counts[s]
      }
    }
    return out
  }

  /// Draws canvas `index` of a split from `items` (deterministic in the seed, split and index).
  public static func canvas(index: Int, split: Int, items: [Item], options: Options) -> Canvas {
    precondition(!items.isEmpty, "no items to draw from")
    let size = options.size
    var g = RandomGenerator(
      seed: options.seed &* 0x9E37_79B9 &+ UInt64(split) << 32 &+ UInt64(index))
    var canvas = [UInt8](repeating: 0, count: size * size)
    var annotations: [BoxAnnotation] = []
    let count = Int.random(in: options.items, using: &g)
    for _ in 0..<count {
      let item = items[Int.random(in: 0..<items.count, using: &g)]
      let logSide = Double.random(
        in: log(Double(options.itemSide.lowerBound))...log(Double(options.itemSide.upperBound)),
        using: &g)
      let side = min(max(Int(exp(logSide).rounded()), 1), size)
      let scaled = resized(item.pixels, side: side)
      guard let tight = inkBox(scaled, side: side) else { continue }
      for _ in 0..<30 {
        let x = Int.random(in: 0...(size - side), using: &g)
        let y = Int.random(in: 0...(size - side), using: &g)
        let box = BoundingBox(
          x: Double(x + tight.x0), y: Double(y + tight.y0), width: Double(tight.x1 - tight.x0),
          height: Double(tight.y1 - tight.y0))
        if annotations.contains(where: {
          COCOBoxEvaluation.iou(box, $0.box, crowd: false) > options.maxOverlap
        }) {
          continue
        }
        // Max-composite: where items overlap, the brighter pixel shows.
        for r in 0..<side {
          for c in 0..<side {
            let at = (y + r) * size + x + c
            canvas[at] = max(canvas[at], scaled[r * side + c])
          }
        }
        annotations.append(
          BoxAnnotation(id: annotations.count + 1, categoryID: item.categoryID, box: box))
        break
      }
    }
    var rgb = [UInt8](repeating: 0, count: size * size * 3)
    for i in 0..<(size * size) {
      rgb[i * 3] = canvas[i]
      rgb[i * 3 + 1] = canvas[i]
      rgb[i * 3 + 2] = canvas[i]
    }
    return Canvas(image: RGBImage(width: size, height: size, pixels: rgb), annotations: annotations)
  }

  /// Writes `images/<split>/NNNNN.png` and `annotations/<split>.json` (COCO, image and
  /// annotation ids from 1 in each split) under `root`, from the item pools (one per source).
  /// Returns the three datasets, in `splits` order.
  @discardableResult
  public static func prepare(
    root: URL, pools: [[Item]], options: Options = Options(), log: ((String) -> Void)? = nil
  ) throws -> [DetectionDataset] {
    let splitItems = splitPools(pools, options: options)
    let counts = splitCounts(options.images, options: options)
    let categories = categoryNames.enumerated().map {
      DetectionCategory(id: $0 + 1, name: $1)
    }
    var datasets: [DetectionDataset] = []
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("annotations"), withIntermediateDirectories: true)
    for (s, split) in splits.enumerated() {
      let folder = root.appendingPathComponent("images/\(split)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      var dataset = DetectionDataset(categories: categories, images: [])
      var nextAnnotation = 1
      for index in 0..<counts[s] {
        let c = canvas(index: index, split: s, items: splitItems[s], options: options)
        let name = String(format: "%05d.png", index + 1)
        try ImageCodec.write(c.image, to: folder.appendingPathComponent(name))
        let annotations = c.annotations.map { a -> BoxAnnotation in
          var a = a
          a.id = nextAnnotation
          nextAnnotation += 1
          return a
        }
        dataset.images.append(
          AnnotatedImage(
            id: index + 1, fileName: "\(split)/\(name)", width: options.size,
            height: options.size, annotations: annotations))
        if (index + 1) % 200 == 0 { log?("canvas-det \(split): \(index + 1)/\(counts[s])") }
      }
      try COCOWriter.write(
        dataset,
        info: [
          "description":
            "graft data prepare canvas-det: Fashion-MNIST test items and MNIST digits on "
            + "\(options.size)x\(options.size) canvases",
          "seed": String(options.seed), "split": split,
        ], to: root.appendingPathComponent("annotations/\(split).json"))
      datasets.append(dataset)
    }
    return datasets
  }

  /// A 28 × 28 grey item resized to `side` × `side` (GraftData's bilinear resize).
  static func resized(_ pixels: [UInt8], side: Int) -> [UInt8] {
    var rgb = [UInt8](repeating: 0, count: 28 * 28 * 3)
    for i in 0..<(28 * 28) {
      rgb[i * 3] = pixels[i]
      rgb[i * 3 + 1] = pixels[i]
      rgb[i * 3 + 2] = pixels[i]
    }
    let image = RGBImage(width: 28, height: 28, pixels: rgb)
      .resized(width: side, height: side, interpolation: .bilinear)
    return (0..<(side * side)).map { image.pixels[$0 * 3] }
  }

  /// The columns `x0..<x1` and rows `y0..<y1` holding the nonzero pixels, or nil if none.
  static func inkBox(_ pixels: [UInt8], side: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int)? {
    var (x0, y0, x1, y1) = (side, side, 0, 0)
    for r in 0..<side {
      for c in 0..<side where pixels[r * side + c] > 0 {
        x0 = min(x0, c)
        y0 = min(y0, r)
        x1 = max(x1, c + 1)
        y1 = max(y1, r + 1)
      }
    }
    return x1 > x0 ? (x0, y0, x1, y1) : nil
  }
}
