import Foundation
import GraftData

/// Opens a point-cloud dataset from a path by recognising its layout, for a `--data` option.
public enum PointDatasets {
  /// The layouts `open` recognises.
  public enum Layout: String, Sendable, Equatable {
    /// `modelnet40_normal_resampled`: `modelnet40_shape_names.txt` (or `modelnet10_…`) and lists.
    case modelNetFolder
    /// HDF5 sets: a `.h5` file, a `*_files.txt` list, or a folder of ModelNet40 / ScanObjectNN
    /// `.h5` files.
    case hdf5
    /// A class-per-folder tree per split: `root/<split>/<class>/<file>` (the prepared furniture
    /// set).
    case splitFolders
    /// A class-per-folder tree with a split folder in each class: `root/<class>/<split>/<file>`
    /// (ModelNet40's original OFF files).
    case classSplitFolders
    /// A class-per-folder tree without splits: `root/<class>/<file>`.
    case classFolders
  }

  /// The layout at `url`, judged by names only (nothing is read): a `.h5`/`.hdf5` file or a
  /// `*_files.txt` list is `hdf5`; a folder with ModelNet's shape-name file is `modelNetFolder`;
  /// a folder holding `.h5` files is `hdf5`; a folder with a `split` subfolder is
  /// `splitFolders`; a folder whose first class folder has a `split` subfolder is
  /// `classSplitFolders`; any other folder is `classFolders`.
  public static func layout(of url: URL, split: String) throws -> Layout {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
      throw DatasetError(.notFound, path: path, "no point-cloud dataset here")
    }
    guard DatasetFiles.isDirectory(path) else {
      let name = url.lastPathComponent.lowercased()
      if name.hasSuffix(".h5") || name.hasSuffix(".hdf5") || name.hasSuffix("_files.txt") {
        return .hdf5
      }
      throw DatasetError(
        .invalidArgument, path: path,
        "not a point-cloud dataset (a folder, an .h5 file or a *_files.txt list)")
    }
    let names = try DatasetFiles.listing(path)
    if names.contains("modelnet40_shape_names.txt") || names.contains("modelnet10_shape_names.txt")
    {
      return .modelNetFolder
    }
    if names.contains(where: { $0.hasSuffix(".h5") || $0.hasSuffix(".hdf5") }) { return .hdf5 }
    if names.contains(split), DatasetFiles.isDirectory(path + "/" + split) { return .splitFolders }
    if let first = names.first(where: { DatasetFiles.isDirectory(path + "/" + $0) }),
      DatasetFiles.isDirectory(path + "/" + first + "/" + split)
    {
      return .classSplitFolders
    }
    return .classFolders
  }

  /// Split `split` (`train`, `test`, `val`, …) of the dataset at `url`, in the layout `layout`
  /// finds. A ModelNet folder with both variants opens ModelNet40 unless only the 10-class list
  /// of the split exists; a single `.h5` file or a `classFolders` tree has no splits, so
  /// `split` is not used there. `meshPoints` and `seed` set how class-folder meshes are sampled.
  public static func open(
    _ url: URL, split: String, meshPoints: Int = 2048, seed: UInt64 = 0
  ) throws -> any Dataset<PointCloud> {
    switch try layout(of: url, split: split) {
    case .modelNetFolder:
      let has40 = DatasetFiles.isFile(url.appendingPathComponent("modelnet40_shape_names.txt").path)
      let has10Split = DatasetFiles.isFile(
        url.appendingPathComponent("modelnet10_\(split).txt").path)
      let has40Split = DatasetFiles.isFile(
        url.appendingPathComponent("modelnet40_\(split).txt").path)
      let categories = has40 && (has40Split || !has10Split) ? 40 : 10
      return try ModelNet40Folder(root: url, split: split, categories: categories)
    case .hdf5:
      if !DatasetFiles.isDirectory(url.path) {
        return url.lastPathComponent.lowercased().hasSuffix("_files.txt")
          ? try PointCloudHDF5Dataset(listFile: url) : try PointCloudHDF5Dataset(files: [url])
      }
      return try PointCloudHDF5Dataset(files: PointCloudHDF5Dataset.files(in: url, split: split))
    case .splitFolders:
      return try PointFolderDataset(
        root: url.appendingPathComponent(split), meshPoints: meshPoints, seed: seed)
    case .classSplitFolders:
      return try PointFolderDataset(root: url, split: split, meshPoints: meshPoints, seed: seed)
    case .classFolders:
      return try PointFolderDataset(root: url, meshPoints: meshPoints, seed: seed)
    }
  }
}
