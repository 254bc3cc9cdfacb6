import Foundation
import GraftData

/// ModelNet40 (or ModelNet10) in the `modelnet40_normal_resampled` layout that PointNet++,
/// Point-BERT, Point-MAE and their successors read:
///
/// ```
/// root/modelnet40_shape_names.txt     class names, one per line; a label is a line's index
/// root/modelnet40_train.txt           shape ids, one per line: chair_0001, night_stand_0012, …
/// root/modelnet40_test.txt
/// root/<class>/<id>.txt               x,y,z,nx,ny,nz per line (10,000 points)
/// ```
///
/// and the same with `modelnet10_` names for the 10-class subset. As in Point-MAE's
/// `ModelNetDataset.py`, a shape's class is its id without the last `_` part
/// (`night_stand_0012` → `night_stand`), and the samples are in the list file's order. Labels come
/// from the lists alone; every listed file is checked to exist when the dataset is opened, and a
/// cloud is read on each `sample(at:)` (with its normals).
public struct ModelNet40Folder: Dataset {
  /// The folder holding the lists and the class folders.
  public let root: URL
  /// The split read (`train` or `test`: the `<prefix>_<split>.txt` list).
  public let split: String
  /// 40 or 10.
  public let categories: Int
  /// Class names in the shape-name file's order.
  public let classNames: [String]
  /// The shape id of every sample (`chair_0001`).
  public let ids: [String]
  /// The text cloud of every sample.
  public let files: [URL]
  /// The label of every sample.
  public let labels: [Int]

  /// The list file prefix for a class count: `modelnet40` or `modelnet10`.
  public static func prefix(categories: Int) -> String { "modelnet\(categories)" }

  /// Opens split `split` (`train`, `test`, or any `<prefix>_<split>.txt` beside them) of the
  /// `categories`-class variant (40 or 10) under `root`. Throws a `DatasetError` naming the
  /// file when the names or list file is missing or malformed, an id names an unknown class, or
  /// a listed cloud file does not exist.
  public init(root: URL, split: String, categories: Int = 40) throws {
    guard categories == 40 || categories == 10 else {
      throw DatasetError(
        .invalidArgument, path: root.path, "ModelNet has 40 or 10 categories, not \(categories)")
    }
    let rootPath = root.path
    try DatasetFiles.requireFolder(rootPath, "a ModelNet folder (modelnet40_normal_resampled)")
    let prefix = Self.prefix(categories: categories)
    let names = try DatasetFiles.classNames(
      root.appendingPathComponent("\(prefix)_shape_names.txt"))
    let labelOf = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
    let listURL = root.appendingPathComponent("\(prefix)_\(split).txt")
    guard DatasetFiles.isFile(listURL.path) else {
      let present = (try? DatasetFiles.listing(rootPath)) ?? []
      let splits = present.compactMap { name -> String? in
        guard name.hasPrefix(prefix + "_"), name.hasSuffix(".txt"),
          name != "\(prefix)_shape_names.txt"
        else { return nil }
        return String(name.dropFirst(prefix.count + 1).dropLast(4))
      }
      throw DatasetError(
        .notFound, path: listURL.path,
        "no list file for split '\(split)' (splits here: \(splits.isEmpty ? "none" : splits.joined(separator: ", ")))"
      )
    }
    var ids: [String] = []
    var files: [URL] = []
    var labels: [Int] = []
    for (number, id) in try DatasetFiles.lines(listURL, "shape list") {
      guard let cut = id.lastIndex(of: "_"), cut != id.startIndex, !id.contains("/") else {
        throw DatasetError(
          .invalidFormat, path: listURL.path, line: number,
          "'\(id)' is not a shape id like chair_0001")
      }
      let className = String(id[..<cut])
      guard let label = labelOf[className] else {
        throw DatasetError(
          .invalidFormat, path: listURL.path, line: number,
          "'\(id)' belongs to class '\(className)', which \(prefix)_shape_names.txt does not name")
      }
      let file = root.appendingPathComponent(className).appendingPathComponent(id + ".txt")
      guard DatasetFiles.isFile(file.path) else {
        throw DatasetError(
          .notFound, path: file.path,
          "the cloud of '\(id)' (\(listURL.lastPathComponent) line \(number)) does not exist")
      }
      ids.append(id)
      files.append(file)
      labels.append(label)
    }
    guard !ids.isEmpty else {
      throw DatasetError(.empty, path: listURL.path, "shape list names no shape")
    }
    self.root = root
    self.split = split
    self.categories = categories
    self.classNames = names
    self.ids = ids
    self.files = files
    self.labels = labels
  }

  /// Number of shapes in the split.
  public var count: Int { files.count }

  /// Reads sample `index`'s text cloud (positions and normals); a malformed file is a
  /// `PointFileError` naming it.
  public func sample(at index: Int) throws -> PointCloud {
    try ModelNetText.read(contentsOf: files[index]).requiringAFinitePoint(source: files[index].path)
  }
}
