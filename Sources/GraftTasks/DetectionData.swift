import Foundation
import GraftDetection

/// One split of a detection data set: its COCO ground truth and where its images are.
public struct DetectionSplit {
  /// The ground truth, boxes in the images' own pixels.
  public var dataset: DetectionDataset
  /// The folder the images' `file_name`s are relative to.
  public var imagesFolder: URL

  /// A split from its parts.
  public init(dataset: DetectionDataset, imagesFolder: URL) {
    self.dataset = dataset
    self.imagesFolder = imagesFolder
  }

  /// The file of image `index`.
  public func imageURL(_ index: Int) -> URL {
    imagesFolder.appendingPathComponent(dataset.images[index].fileName)
  }
}

/// The data of a detection run (`graft tune --task detection --data …`): train, validation and
/// test splits with one category list.
///
/// `--data` takes a folder with `annotations/{train,val,test}.json` (COCO) and the images under
/// `images/` (what `graft data prepare canvas-det` writes), or one COCO `.json` whose images are
/// split 70/10/20 by a fixed seed (as `digits`), with the images beside the file (or in an
/// `images/` folder beside it, or in `../images`).
public struct DetectionTuneData {
  /// The categories, in label order (the detector's class k is `categories[k]`).
  public var categories: [DetectionCategory]
  /// Training split.
  public var train: DetectionSplit
  /// Validation split (picks the best epoch).
  public var validation: DetectionSplit
  /// Test split (the summary's numbers).
  public var test: DetectionSplit

  /// Splits from their parts; every split must have the same categories.
  public init(train: DetectionSplit, validation: DetectionSplit, test: DetectionSplit) {
    categories = train.dataset.categories
    self.train = train
    self.validation = validation
    self.test = test
  }

  /// One line: images and boxes per split, categories.
  public var description: String {
    let parts = [("train", train), ("val", validation), ("test", test)].map {
      "\($0.0) \($0.1.dataset.images.count) images / \($0.1.dataset.annotationCount) boxes"
    }
    return parts.joined(separator: ", ") + ", \(categories.count) categories"
  }

  /// Loads `reference` (a folder or a `.json`, see the type's documentation). Missing files,
  /// unreadable annotations, splits whose categories differ and splits left empty throw errors
  /// naming the file.
  public static func load(_ reference: String) throws -> DetectionTuneData {
    let url = URL(fileURLWithPath: reference)
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
      throw ConfigError(
        "\(reference): no such file or folder (detection data is a folder with "
          + "annotations/{train,val,test}.json, as graft data prepare canvas-det writes, or a "
          + "COCO .json)")
    }
    if isFolder.boolValue {
      let annotations = url.appendingPathComponent("annotations")
      let images = url.appendingPathComponent("images")
      var splits: [DetectionSplit] = []
      for name in ["train", "val", "test"] {
        let file = annotations.appendingPathComponent("\(name).json")
        guard FileManager.default.fileExists(atPath: file.path) else {
          throw ConfigError(
            "\(reference): no annotations/\(name).json (a detection folder holds "
              + "annotations/{train,val,test}.json and images/)")
        }
        let dataset = try loadDataset(file.path, imagesFolder: images.path)
        splits.append(DetectionSplit(dataset: dataset, imagesFolder: images))
      }
      for (name, split) in zip(["val", "test"], splits.dropFirst())
      where split.dataset.categories != splits[0].dataset.categories {
        throw ConfigError(
          "\(annotations.appendingPathComponent("\(name).json").path): its categories differ "
            + "from train.json's")
      }
      let data = DetectionTuneData(train: splits[0], validation: splits[1], test: splits[2])
      try data.checkNotEmpty(reference)
      return data
    }
    guard url.pathExtension.lowercased() == "json" else {
      throw ConfigError(
        "\(reference): not a COCO .json nor a folder with annotations/{train,val,test}.json")
    }
    let base = url.deletingLastPathComponent()
    let dataset = try loadDataset(url.path, imagesFolder: nil)
    let candidates = [
      base, base.appendingPathComponent("images"),
      base.deletingLastPathComponent().appendingPathComponent("images"),
    ]
    guard
      let folder = candidates.first(where: { c in
        dataset.images.allSatisfy {
          FileManager.default.fileExists(atPath: c.appendingPathComponent($0.fileName).path)
        }
      })
    else {
      let missing = dataset.images.first {
        !FileManager.default.fileExists(atPath: base.appendingPathComponent($0.fileName).path)
      }
      throw ConfigError(
        "\(reference): image '\(missing?.fileName ?? "?")' is not beside the file, in images/ "
          + "nor in ../images")
    }
    // 70/10/20 by a fixed seed, as the digits task.
    var g = RandomGenerator(seed: 0x6465_7473)  // "dets"
    let order = g.permutation(dataset.images.count)
    let trainCount = Int((Double(order.count) * 0.7).rounded())
    let valCount = Int((Double(order.count) * 0.1).rounded())
    func subset(_ r: Range<Int>) -> DetectionSplit {
      let picked = order[r].sorted().map { dataset.images[$0] }
      return DetectionSplit(
        dataset: DetectionDataset(categories: dataset.categories, images: picked),
        imagesFolder: folder)
    }
    let data = DetectionTuneData(
      train: subset(0..<trainCount), validation: subset(trainCount..<(trainCount + valCount)),
      test: subset((trainCount + valCount)..<order.count))
    try data.checkNotEmpty(reference)
    return data
  }

  /// A COCO file read with its boxes checked, errors as `ConfigError`s naming it.
  private static func loadDataset(_ path: String, imagesFolder: String?) throws
    -> DetectionDataset
  {
    do {
      return try COCOAnnotations.load(path: path, imagesDirectory: imagesFolder)
    } catch let e as DetectionError {
      throw ConfigError(e.description)
    }
  }

  private func checkNotEmpty(_ reference: String) throws {
    guard !categories.isEmpty else { throw ConfigError("\(reference): no categories") }
    for (name, split) in [("train", train), ("val", validation), ("test", test)]
    where split.dataset.images.isEmpty {
      throw ConfigError("\(reference): the \(name) split has no images")
    }
  }
}

/// Images of a split brought to the detector: decoded once, resized to a square side, kept as
/// 8-bit pixels, with each image's scale from its own pixels to the detector's.
struct DetectionImages {
  /// The resized images.
  var images: [RGBImage]
  /// Per image, the factor from its pixels to the detector's input (x, y).
  var scales: [(x: Double, y: Double)]
  /// Each image's training target in the detector's pixels.
  var targets: [FCOSTarget]

  /// Reads every image of `split` and resizes it to `side` × `side`.
  init(_ split: DetectionSplit, categories: [DetectionCategory], side: Int) throws {
    images = []
    scales = []
    targets = []
    for (i, image) in split.dataset.images.enumerated() {
      let decoded = try ImageCodec.decode(contentsOf: split.imageURL(i))
      let scale = (
        x: Double(side) / Double(decoded.width), y: Double(side) / Double(decoded.height)
      )
      images.append(decoded.resized(width: side, height: side, interpolation: .bilinear))
      scales.append(scale)
      guard let target = FCOSTarget(image, categories: categories, scale: scale) else {
        throw ConfigError(
          "\(split.imageURL(i).path): an annotation's category is not in the categories")
      }
      targets.append(target)
    }
  }

  /// A batch `[B, 3, side, side]` normalised by `mean` and `std`, each image flipped
  /// horizontally where `flips` says so, and its targets (flipped alike).
  func batch(
    _ indices: [Int], flips: [Bool]? = nil, mean: [Double], std: [Double]
  ) -> (Tensor, [FCOSTarget]) {
    var values: [Float] = []
    var out: [FCOSTarget] = []
    for (k, i) in indices.enumerated() {
      let flip = flips?[k] ?? false
      let image = flip ? images[i].horizontallyFlipped() : images[i]
      values += image.tensor(mean: mean, std: std).scalars
      var target = targets[i]
      if flip {
        let w = Float(image.width)
        target.boxes = target.boxes.map { CornerBox(w - $0[2], $0[1], w - $0[0], $0[3]) }
      }
      out.append(target)
    }
    let first = images[indices[0]]
    return (Tensor(values, shape: [indices.count, 3, first.height, first.width]), out)
  }
}
