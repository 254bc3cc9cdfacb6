import Foundation
import GraftData

/// Labelled clouds from one or more HDF5 files in ModelNet40's (`ply_data_train0.h5` …, from
/// PointNet's `modelnet40_ply_hdf5_2048`) or ScanObjectNN's (`training_objectdataset.h5`,
/// `test_objectdataset_augmentedrot_scale75.h5`, …) layout: `data` [N, P, 3], `label` [N] or
/// [N, 1], optional `normal` [N, P, 3] (see `PointCloudSet`).
///
/// Samples are the files' clouds in file order, then cloud order. The files are read whole
/// when the dataset is opened (as Point-MAE's loaders do: a ModelNet40 split is about 250 MB of
/// float32), so `sample(at:)` only copies a cloud out. Class names come from a `shape_names.txt`
/// beside the first file when there is one (ModelNet40's HDF5 folder has it), else they are
/// `"0"`, `"1"`, … (ScanObjectNN's files carry no names).
public struct PointCloudHDF5Dataset: Dataset {
  /// The files read, in order.
  public let files: [URL]
  /// Class names.
  public let classNames: [String]
  /// The label of every sample.
  public let labels: [Int]
  /// The sets, one per file.
  private let sets: [PointCloudSet]
  /// The file and the cloud within it of every sample.
  private let locations: [(file: Int, cloud: Int)]

  /// The name of the class name file looked for beside the HDF5 files.
  public static let classNameFile = "shape_names.txt"

  /// Reads `files` (at least one). `classNames` overrides the names; otherwise they come from
  /// `shape_names.txt` beside the first file, or are numbers up to `classCount` (default: the
  /// largest label plus one; pass the class count so that train and test agree when a split
  /// misses the last classes). Throws a `PointFileError` naming the file when a file is
  /// malformed or has no `label` dataset, and a `DatasetError` when a label has no class.
  public init(files: [URL], classNames: [String]? = nil, classCount: Int? = nil) throws {
    guard let first = files.first else {
      throw DatasetError(.empty, path: "", "no HDF5 file given")
    }
    var sets: [PointCloudSet] = []
    var labels: [Int] = []
    var locations: [(file: Int, cloud: Int)] = []
    for (f, url) in files.enumerated() {
      let set = try PointCloudSet.read(contentsOf: url)
      guard let setLabels = set.labels else {
        throw PointFileError(
          .missingField, path: url.path, "no 'label' dataset: the clouds have no classes")
      }
      sets.append(set)
      labels += setLabels
      locations += (0..<set.clouds).map { (f, $0) }
    }
    var names = classNames
    let namesFile = first.deletingLastPathComponent().appendingPathComponent(Self.classNameFile)
    var namesSource = "the class names given"
    if names == nil, DatasetFiles.isFile(namesFile.path) {
      names = try DatasetFiles.classNames(namesFile)
      namesSource = namesFile.path
    }
    let resolved = names ?? (0..<(classCount ?? ((labels.max() ?? -1) + 1))).map(String.init)
    if let bad = labels.indices.first(where: { labels[$0] >= resolved.count }) {
      let (file, cloud) = locations[bad]
      throw DatasetError(
        .mismatch, path: files[file].path,
        "cloud \(cloud) has label \(labels[bad]), but \(names == nil ? "the class count is \(resolved.count)" : "\(namesSource) names \(resolved.count) classes")"
      )
    }
    guard !labels.isEmpty else {
      throw DatasetError(.empty, path: first.path, "the HDF5 files hold no cloud")
    }
    self.files = files
    self.classNames = resolved
    self.labels = labels
    self.sets = sets
    self.locations = locations
  }

  /// Reads the files a list file names, one per line, as PointNet's ModelNet40
  /// `train_files.txt` and `test_files.txt` (`data/modelnet40_ply_hdf5_2048/ply_data_train0.h5`):
  /// a path is taken relative to the list file's folder, and when no file is there, the file of
  /// that name beside the list file is used (the lists carry paths relative to PointNet's own
  /// checkout).
  public init(listFile: URL, classNames: [String]? = nil, classCount: Int? = nil) throws {
    try self.init(
      files: Self.files(listedIn: listFile), classNames: classNames, classCount: classCount)
  }

  /// The files a list file names, resolved as `init(listFile:)` does.
  public static func files(listedIn listFile: URL) throws -> [URL] {
    let folder = listFile.deletingLastPathComponent()
    var files: [URL] = []
    for (number, entry) in try DatasetFiles.lines(listFile, "HDF5 file list") {
      let direct =
        entry.hasPrefix("/") ? URL(fileURLWithPath: entry) : folder.appendingPathComponent(entry)
      let beside = folder.appendingPathComponent((entry as NSString).lastPathComponent)
      if DatasetFiles.isFile(direct.path) {
        files.append(direct)
      } else if DatasetFiles.isFile(beside.path) {
        files.append(beside)
      } else {
        throw DatasetError(
          .notFound, path: listFile.path, line: number,
          "'\(entry)' exists neither as a path nor beside the list file")
      }
    }
    guard !files.isEmpty else {
      throw DatasetError(.empty, path: listFile.path, "HDF5 file list names no file")
    }
    return files
  }

  /// The HDF5 files of split `split` (`train` or `test`) in `folder`: those its
  /// `<split>_files.txt` names when there is one (ModelNet40), else the `ply_data_<split>*.h5`
  /// files (ModelNet40 without its lists), else the one ScanObjectNN file of the split
  /// (`training_objectdataset*.h5` for `train`, `test_objectdataset*.h5` for `test`). Several
  /// ScanObjectNN variants in one folder are ambiguous: name the file instead.
  public static func files(in folder: URL, split: String) throws -> [URL] {
    let path = folder.path
    try DatasetFiles.requireFolder(path, "a folder of HDF5 files")
    let list = folder.appendingPathComponent("\(split)_files.txt")
    if DatasetFiles.isFile(list.path) {
      return try files(listedIn: list)
    }
    let names = try DatasetFiles.listing(path).filter {
      $0.hasSuffix(".h5") || $0.hasSuffix(".hdf5")
    }
    let modelNet = names.filter { $0.hasPrefix("ply_data_\(split)") }
    if !modelNet.isEmpty { return modelNet.map { folder.appendingPathComponent($0) } }
    let scanPrefix = split == "train" ? "training_objectdataset" : "\(split)_objectdataset"
    let scan = names.filter { $0.hasPrefix(scanPrefix) }
    if scan.count == 1 { return [folder.appendingPathComponent(scan[0])] }
    if scan.count > 1 {
      throw DatasetError(
        .invalidArgument, path: path,
        "several ScanObjectNN files for split '\(split)' (\(scan.joined(separator: ", "))): name one"
      )
    }
    throw DatasetError(
      .notFound, path: path,
      "no HDF5 files for split '\(split)' (\(split)_files.txt, ply_data_\(split)*.h5 or \(scanPrefix)*.h5)"
    )
  }

  /// Number of clouds over all files.
  public var count: Int { labels.count }

  /// Points per cloud of every file, in file order.
  public var pointsPerCloud: [Int] { sets.map(\.pointsPerCloud) }

  /// Cloud `index` (with its normals when the file has them).
  public func sample(at index: Int) throws -> PointCloud {
    let (file, cloud) = locations[index]
    return sets[file].cloud(cloud)
  }
}
