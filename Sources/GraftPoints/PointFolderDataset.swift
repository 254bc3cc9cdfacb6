import Foundation
import GraftData

/// The point-cloud `ImageFolder`: `root/<class>/<…>/<file>`, one folder per class, holding cloud
/// or mesh files in any format GraftPoints reads (PCD, PLY, OFF, OBJ, ModelNet `.txt`/`.xyz`,
/// `.npy`).
///
/// Classes are the sorted names of the folders directly under `root`; a class's samples are the
/// files with a point-file extension anywhere below its folder, folders by path then file names,
/// both by Unicode code points, so labels and indices are the same on every machine (the order
/// of torchvision's `ImageFolder`). Names starting with `.` are skipped. With `split`, only the
/// `<class>/<split>/` subfolder is read: the original ModelNet40 OFF layout
/// (`ModelNet40/chair/train/chair_0001.off`).
///
/// A file is read on each `sample(at:)`. A cloud is returned as read (an organised PCD keeps its
/// NaN points; the transforms drop them); a mesh is sampled over its surface to `meshPoints`
/// points with face normals, seeded by `meshSeed(for:seed:)` from the file's path below `root`,
/// so a file gives the same cloud on every read and every machine, whatever else the folder
/// holds.
public struct PointFolderDataset: Dataset {
  /// The extensions read by default: every single-cloud format GraftPoints knows (HDF5 sets
  /// hold many clouds; use `PointCloudHDF5Dataset`).
  public static let defaultExtensions: Set<String> = [
    "pcd", "ply", "off", "obj", "txt", "xyz", "npy",
  ]

  /// The folder holding one folder per class.
  public let root: URL
  /// The per-class subfolder read, if any.
  public let split: String?
  /// Sorted class folder names.
  public let classNames: [String]
  /// The file of every sample.
  public let files: [URL]
  /// The label of every sample.
  public let labels: [Int]
  /// Points sampled from a mesh file.
  public let meshPoints: Int
  /// Mixed with each file's path into the seed of its surface sampling.
  public let seed: UInt64
  /// Each sample's path below `root`, `/`-separated (the mesh seed's input).
  public let relativePaths: [String]

  /// Lists `root`; throws a `DatasetError` when it is missing, has no class folder, or a class
  /// folder (or its `split` subfolder) holds no file with one of `extensions` (lower case,
  /// without the dot).
  public init(
    root: URL, split: String? = nil, meshPoints: Int = 2048, seed: UInt64 = 0,
    extensions: Set<String> = defaultExtensions
  ) throws {
    guard meshPoints > 0 else {
      throw DatasetError(
        .invalidArgument, path: root.path, "meshes must be sampled to at least 1 point")
    }
    let rootPath = root.standardizedFileURL.path
    try DatasetFiles.requireFolder(rootPath, "a point-cloud folder")
    let classes = try DatasetFiles.listing(rootPath).filter {
      DatasetFiles.isDirectory(rootPath + "/" + $0)
    }
    guard !classes.isEmpty else {
      throw DatasetError(.empty, path: rootPath, "no class folders (expected root/<class>/<file>)")
    }
    var files: [URL] = []
    var relative: [String] = []
    var labels: [Int] = []
    for (label, name) in classes.enumerated() {
      var classPath = rootPath + "/" + name
      if let split {
        classPath += "/" + split
        try DatasetFiles.requireFolder(classPath, "the '\(split)' folder of class '\(name)'")
      }
      var found: [(folder: String, file: String)] = []
      var visited: Set<String> = []
      try Self.collect(classPath, extensions, &found, &visited)
      guard !found.isEmpty else {
        let list = extensions.sorted().joined(separator: ", ")
        throw DatasetError(.empty, path: classPath, "class folder has no point file (\(list))")
      }
      found.sort {
        $0.folder == $1.folder
          ? codePointPrecedes($0.file, $1.file) : codePointPrecedes($0.folder, $1.folder)
      }
      for f in found {
        let path = f.folder + "/" + f.file
        files.append(URL(fileURLWithPath: path))
        relative.append(String(path.dropFirst(rootPath.count + 1)))
        labels.append(label)
      }
    }
    self.root = root
    self.split = split
    self.classNames = classes
    self.files = files
    self.relativePaths = relative
    self.labels = labels
    self.meshPoints = meshPoints
    self.seed = seed
  }

  /// Number of files.
  public var count: Int { files.count }

  /// The seed a mesh at `relativePath` (below the root, `/`-separated) is sampled with:
  /// `SeedMix.mix(seed, FNV-1a-64(relativePath))`.
  public static func meshSeed(for relativePath: String, seed: UInt64) -> UInt64 {
    SeedMix.mix(seed, stableHash(relativePath))
  }

  /// Reads sample `index`: a cloud as stored, a mesh sampled over its surface. A malformed file
  /// is a `PointFileError` naming it.
  public func sample(at index: Int) throws -> PointCloud {
    switch try PointFile.read(files[index]).geometry {
    case .cloud(let cloud):
      return try cloud.requiringAFinitePoint(source: files[index].path)
    case .mesh(let mesh):
      return try mesh.sampleSurface(
        count: meshPoints, seed: Self.meshSeed(for: relativePaths[index], seed: seed),
        source: files[index].path)
    }
  }

  /// Adds the point files below `folder`, following links but never a folder twice.
  private static func collect(
    _ folder: String, _ extensions: Set<String>,
    _ found: inout [(folder: String, file: String)], _ visited: inout Set<String>
  ) throws {
    let real = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
    guard visited.insert(real).inserted else { return }
    for name in try DatasetFiles.listing(folder) {
      let path = folder + "/" + name
      if DatasetFiles.isDirectory(path) {
        try collect(path, extensions, &found, &visited)
      } else if let dot = name.lastIndex(of: "."),
        extensions.contains(name[name.index(after: dot)...].lowercased())
      {
        found.append((folder, name))
      }
    }
  }
}

extension PointCloud {
  /// The cloud itself when at least one of its points is finite; otherwise a `DatasetError`
  /// naming `source` (a dataset's file), since nothing could be sampled from it.
  public func requiringAFinitePoint(source: String) throws -> PointCloud {
    guard (0..<count).contains(where: { isFinite($0) }) else {
      throw DatasetError(
        .empty, path: source,
        count == 0
          ? "the file holds no point" : "none of its \(count) points is finite (NaN or infinite)")
    }
    return self
  }
}
