import Foundation

/// A file format with its encoding, as `graft points info` names it.
public enum PointFileFormat: Sendable, Equatable, CustomStringConvertible {
  /// PCL's PCD.
  case pcd(PCDEncoding)
  /// PLY.
  case ply(PLYEncoding)
  /// Geomview OFF; the keyword (`OFF`, `COFF`, `NOFF`, …) as written.
  case off(String)
  /// Wavefront OBJ.
  case obj
  /// ModelNet40's resampled text clouds.
  case modelNetText
  /// NumPy `.npy`.
  case npy
  /// HDF5 (ModelNet40 / ScanObjectNN layouts).
  case hdf5

  /// `pcd-binary_compressed`, `ply-ascii`, `off`, `coff`, `obj`, `modelnet-txt`, `npy`, `hdf5`.
  public var description: String {
    switch self {
    case .pcd(let e): "pcd-\(e.rawValue)"
    case .ply(let e): "ply-\(e.rawValue)"
    case .off(let keyword): keyword.lowercased()
    case .obj: "obj"
    case .modelNetText: "modelnet-txt"
    case .npy: "npy"
    case .hdf5: "hdf5"
    }
  }
}

/// A format family, chosen by a file's extension or first bytes.
public enum PointFileKind: String, Sendable, CaseIterable {
  /// The families, named by their usual extension (`txt`: ModelNet40 text, `h5`: HDF5 sets).
  case pcd, ply, off, obj, txt, npy, h5

  /// The kind a path's extension names (`.pcd`, `.ply`, `.off`, `.obj`, `.txt`/`.xyz`, `.npy`,
  /// `.h5`/`.hdf5`), or nil.
  public static func forExtension(of url: URL) -> PointFileKind? {
    switch url.pathExtension.lowercased() {
    case "pcd": .pcd
    case "ply": .ply
    case "off": .off
    case "obj": .obj
    case "txt", "xyz": .txt
    case "npy": .npy
    case "h5", "hdf5": .h5
    default: nil
    }
  }

  /// The kind that `bytes` announce by their first bytes, or nil for headerless formats.
  static func sniff(_ bytes: Data) -> PointFileKind? {
    let head = [UInt8](bytes.prefix(512))
    func starts(_ s: [UInt8]) -> Bool { head.count >= s.count && Array(head[0..<s.count]) == s }
    if starts([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return .h5 }
    if starts([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) { return .npy }
    if starts(Array("ply\n".utf8)) || starts(Array("ply\r\n".utf8)) { return .ply }
    let text = String(decoding: head, as: UTF8.self)
    if text.hasPrefix("# .PCD") || text.hasPrefix("VERSION") || text.hasPrefix("FIELDS") {
      return .pcd
    }
    // OFF: the first word that is not in a comment.
    for line in text.split(whereSeparator: \.isNewline) {
      let word = line.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
      if word.isEmpty || word.hasPrefix("#") { continue }
      let letters = word.prefix { !$0.isNumber }
      if letters.hasSuffix("OFF") { return .off }
      break
    }
    return nil
  }
}

/// A cloud or a mesh.
public enum PointGeometry: Sendable {
  /// Points (a cloud file, or a mesh file without faces).
  case cloud(PointCloud)
  /// A mesh with at least one face.
  case mesh(TriangleMesh)
}

/// What `PointFile.read` found in a file.
public struct PointFileContents: Sendable {
  /// The format and encoding.
  public var format: PointFileFormat
  /// The per-point fields as the file names them (`x`, `y`, `z`, `normal_x`, `rgb`, …).
  public var fields: [String]
  /// The cloud or mesh.
  public var geometry: PointGeometry
  /// Clouds in the file (an HDF5 set holds many; every other format one).
  public var clouds: Int
  /// The chosen cloud's class label, for an HDF5 set with labels.
  public var label: Int?

  /// The points: the cloud, or a mesh's vertices.
  public var points: PointCloud {
    switch geometry {
    case .cloud(let c): c
    case .mesh(let m): m.vertices
    }
  }
}

/// Reads and writes every point-cloud and mesh format Graft knows, choosing the format by the
/// file's first bytes (for the formats that have a signature) or its extension.
public enum PointFile {
  /// Reads the file at `url`. For an HDF5 set, `cloudIndex` picks the cloud.
  public static func read(_ url: URL, cloudIndex: Int = 0) throws -> PointFileContents {
    let path = url.path
    let extensionKind = PointFileKind.forExtension(of: url)
    if extensionKind == .h5 { return try readHDF5(url, cloudIndex: cloudIndex) }
    let data = try readFileBytes(url)
    guard let kind = PointFileKind.sniff(data) ?? extensionKind else {
      throw PointFileError(
        .unknownFormat, path: path,
        "neither the extension nor the first bytes name a known format (pcd, ply, off, obj, txt, npy, h5)"
      )
    }
    switch kind {
    case .pcd:
      let (header, cloud) = try PCD.decode(data, path: path)
      return PointFileContents(
        format: .pcd(header.encoding), fields: header.fields.map(\.name).filter { $0 != "_" },
        geometry: .cloud(cloud), clouds: 1)
    case .ply:
      let contents = try PLY.decode(data, path: path)
      let vertex = contents.header.elements.first { $0.name == "vertex" }!
      return PointFileContents(
        format: .ply(contents.header.encoding), fields: vertex.properties.map(\.name),
        geometry: contents.mesh.map { .mesh($0) } ?? .cloud(contents.vertices), clouds: 1)
    case .off:
      let contents = try OFF.decode(data, path: path)
      var fields = ["x", "y", "z"]
      if contents.vertices.normals != nil { fields += ["nx", "ny", "nz"] }
      if contents.vertices.colors != nil { fields += ["red", "green", "blue"] }
      if contents.vertices.alpha != nil { fields.append("alpha") }
      return PointFileContents(
        format: .off(contents.keyword), fields: fields,
        geometry: contents.mesh.map { .mesh($0) } ?? .cloud(contents.vertices), clouds: 1)
    case .obj:
      let contents = try OBJ.decode(data, path: path)
      var fields = ["x", "y", "z"]
      if contents.vertices.colors != nil { fields += ["red", "green", "blue"] }
      return PointFileContents(
        format: .obj, fields: fields,
        geometry: contents.mesh.map { .mesh($0) } ?? .cloud(contents.vertices), clouds: 1)
    case .txt:
      let cloud = try ModelNetText.decode(data, path: path)
      return PointFileContents(
        format: .modelNetText,
        fields: cloud.normals == nil ? ["x", "y", "z"] : ["x", "y", "z", "nx", "ny", "nz"],
        geometry: .cloud(cloud), clouds: 1)
    case .npy:
      let cloud = try PointNpy.decode(data, path: path)
      return PointFileContents(
        format: .npy,
        fields: cloud.normals == nil ? ["x", "y", "z"] : ["x", "y", "z", "nx", "ny", "nz"],
        geometry: .cloud(cloud), clouds: 1)
    case .h5:
      return try readHDF5(url, cloudIndex: cloudIndex)
    }
  }

  private static func readHDF5(_ url: URL, cloudIndex: Int) throws -> PointFileContents {
    let set = try PointCloudSet.read(contentsOf: url)
    guard cloudIndex >= 0, cloudIndex < set.clouds else {
      throw PointFileError(
        .indexOutOfRange, path: url.path,
        "cloud \(cloudIndex) asked for; the file holds \(set.clouds)")
    }
    return PointFileContents(
      format: .hdf5,
      fields: set.normals == nil ? ["x", "y", "z"] : ["x", "y", "z", "nx", "ny", "nz"],
      geometry: .cloud(set.cloud(cloudIndex)), clouds: set.clouds, label: set.labels?[cloudIndex])
  }

  /// The cloud in the file at `url`; a mesh is sampled to `points` points over its surface with
  /// `seed` (a cloud is returned whole).
  public static func readCloud(_ url: URL, points: Int = 2048, seed: UInt64 = 0) throws
    -> PointCloud
  {
    switch try read(url).geometry {
    case .cloud(let cloud): return cloud
    case .mesh(let mesh): return try mesh.sampleSurface(count: points, seed: seed, source: url.path)
    }
  }

  /// The encodings a format family can write, the default first.
  public static func encodings(for kind: PointFileKind) -> [String] {
    switch kind {
    case .pcd: ["binary", "ascii", "binary_compressed"]
    case .ply: ["binary_little_endian", "ascii", "binary", "binary_big_endian"]
    case .off, .obj, .txt: ["ascii"]
    case .npy, .h5: ["binary"]
    }
  }

  /// The file kind `url`'s extension names, checked to be writable with `encoding`.
  private static func writeKind(_ url: URL, _ encoding: String?) throws -> PointFileKind {
    guard let kind = PointFileKind.forExtension(of: url) else {
      throw PointFileError(
        .unknownFormat, path: url.path,
        "the extension '.\(url.pathExtension)' names no format (pcd, ply, off, obj, txt, npy, h5)")
    }
    if let encoding, !encodings(for: kind).contains(encoding) {
      throw PointFileError(
        .invalidWrite, path: url.path,
        "\(kind.rawValue) files are written as \(encodings(for: kind).joined(separator: ", ")), not \(encoding)"
      )
    }
    return kind
  }

  /// Writes `cloud` to `url` atomically in the format its extension names; `encoding` is
  /// `ascii`, `binary`, `binary_compressed` (PCD) or `binary_big_endian` (PLY), nil for the
  /// format's default (PCD binary, PLY binary little endian). Returns the format written.
  @discardableResult
  public static func write(_ cloud: PointCloud, to url: URL, encoding: String? = nil) throws
    -> PointFileFormat
  {
    let kind = try writeKind(url, encoding)
    switch kind {
    case .pcd:
      let e = PCDEncoding(rawValue: encoding ?? "binary")!
      try PCD.write(cloud, to: url, encoding: e)
      return .pcd(e)
    case .ply:
      let e = plyEncoding(encoding)
      try PLY.write(cloud, to: url, encoding: e)
      return .ply(e)
    case .off:
      try OFF.write(cloud, to: url)
      return .off((cloud.colors != nil ? "C" : "") + (cloud.normals != nil ? "N" : "") + "OFF")
    case .obj:
      try OBJ.write(cloud, to: url)
      return .obj
    case .txt:
      try ModelNetText.write(cloud, to: url)
      return .modelNetText
    case .npy:
      try PointNpy.write(cloud, to: url)
      return .npy
    case .h5:
      try cloud.validate(path: url.path)
      let dense = cloud.dense().cloud
      guard dense.count == cloud.count else {
        throw PointFileError(
          .invalidWrite, path: url.path, "HDF5 sets hold finite points (use dense() first)")
      }
      try PointCloudSet(
        clouds: 1, pointsPerCloud: cloud.count, positions: cloud.positions, normals: cloud.normals
      )
      .write(to: url)
      return .hdf5
    }
  }

  /// Writes `mesh` (vertices and triangles) to `url` atomically; the extension must name PLY, OFF
  /// or OBJ. Returns the format written.
  @discardableResult
  public static func write(_ mesh: TriangleMesh, to url: URL, encoding: String? = nil) throws
    -> PointFileFormat
  {
    let kind = try writeKind(url, encoding)
    switch kind {
    case .ply:
      let e = plyEncoding(encoding)
      try PLY.write(mesh, to: url, encoding: e)
      return .ply(e)
    case .off:
      try OFF.write(mesh, to: url)
      return .off(
        (mesh.vertices.colors != nil ? "C" : "") + (mesh.vertices.normals != nil ? "N" : "") + "OFF"
      )
    case .obj:
      try OBJ.write(mesh, to: url)
      return .obj
    default:
      throw PointFileError(
        .invalidWrite, path: url.path,
        "\(kind.rawValue) files hold no faces; sample the mesh into a cloud first")
    }
  }

  private static func plyEncoding(_ encoding: String?) -> PLYEncoding {
    encoding == "ascii"
      ? .ascii : encoding == "binary_big_endian" ? .binaryBigEndian : .binaryLittleEndian
  }
}
