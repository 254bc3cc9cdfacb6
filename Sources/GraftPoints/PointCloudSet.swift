import Foundation
import GraftTensor

/// Many clouds of the same size with class labels, as the HDF5 files of ModelNet40
/// (`ply_data_train0.h5`: `data` [N, P, 3] float32, `label` [N, 1] uint8, `normal` [N, P, 3],
/// `faceId` [N, P]) and ScanObjectNN (`*_objectdataset*.h5`: `data` [N, P, 3], `label` [N],
/// `mask` [N, P]) hold them.
public struct PointCloudSet: Sendable, Equatable {
  /// Number of clouds.
  public var clouds: Int
  /// Points in every cloud.
  public var pointsPerCloud: Int
  /// `[clouds, pointsPerCloud, 3]` positions, row-major.
  public var positions: [Float]
  /// Normals shaped like `positions`, when the file has them.
  public var normals: [Float]?
  /// One class label per cloud, when the file has them.
  public var labels: [Int]?

  /// A set of `clouds` clouds of `pointsPerCloud` points.
  public init(
    clouds: Int, pointsPerCloud: Int, positions: [Float], normals: [Float]? = nil,
    labels: [Int]? = nil
  ) {
    self.clouds = clouds
    self.pointsPerCloud = pointsPerCloud
    self.positions = positions
    self.normals = normals
    self.labels = labels
  }

  /// Cloud `i` on its own (with its normals).
  public func cloud(_ i: Int) -> PointCloud {
    let range = (i * pointsPerCloud * 3)..<((i + 1) * pointsPerCloud * 3)
    return PointCloud(positions: Array(positions[range]), normals: normals.map { Array($0[range]) })
  }

  /// Positions as a `[clouds, pointsPerCloud, 3]` tensor.
  public func tensor() -> Tensor { Tensor(positions, shape: [clouds, pointsPerCloud, 3]) }

  /// How `write` stores labels.
  public enum LabelLayout: Sendable {
    /// uint8 `[N, 1]`, as ModelNet40's `ply_data_*.h5`.
    case modelNet
    /// int64 `[N]`, as ScanObjectNN's `*_objectdataset*.h5`.
    case scanObjectNN
  }

  /// Reads the HDF5 file at `url`: `data` [N, P, 3] (required), `label` [N] or [N, 1] and
  /// `normal` [N, P, 3] (optional). Other datasets (`faceId`, `mask`) are not read.
  public static func read(contentsOf url: URL) throws -> PointCloudSet {
    let file = try HDF5File(contentsOf: url)
    let path = url.path
    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, message)
    }
    guard let dataInfo = try file.info("data") else {
      throw fail(.missingField, "no 'data' dataset (ModelNet40 and ScanObjectNN files have one)")
    }
    guard dataInfo.shape.count == 3, dataInfo.shape[2] == 3 else {
      throw fail(.unsupported, "'data' has shape \(dataInfo.shape), not [N, P, 3]")
    }
    let (n, p) = (dataInfo.shape[0], dataInfo.shape[1])
    let positions = try file.floats("data").values
    if let bad = positions.firstIndex(where: { !$0.isFinite }) {
      throw fail(
        .nonFiniteValue, "'data' cloud \(bad / (3 * max(p, 1))) has a non-finite coordinate")
    }
    var normals: [Float]?
    if let info = try file.info("normal") {
      guard info.shape == dataInfo.shape else {
        throw fail(.sizeMismatch, "'normal' has shape \(info.shape), 'data' has \(dataInfo.shape)")
      }
      normals = try file.floats("normal").values
    }
    var labels: [Int]?
    if let info = try file.info("label") {
      guard info.shape == [n] || info.shape == [n, 1] else {
        throw fail(
          .countMismatch, "'label' has shape \(info.shape); \(n) clouds need [\(n)] or [\(n), 1]")
      }
      labels = try file.integers("label").values
      if let bad = labels!.first(where: { $0 < 0 }) {
        throw fail(.badValue, "'label' holds the negative label \(bad)")
      }
    }
    return PointCloudSet(
      clouds: n, pointsPerCloud: p, positions: positions, normals: normals, labels: labels)
  }

  /// Writes the set as an HDF5 file in ModelNet40's or ScanObjectNN's layout, atomically.
  public func write(to url: URL, labels layout: LabelLayout = .modelNet, gzip: Int = 0) throws {
    let shape = [clouds, pointsPerCloud, 3]
    guard positions.count == clouds * pointsPerCloud * 3,
      normals.map({ $0.count == positions.count }) ?? true,
      labels.map({ $0.count == clouds }) ?? true
    else {
      throw PointFileError(
        .invalidWrite, path: url.path,
        "arrays do not match \(clouds) clouds of \(pointsPerCloud) points")
    }
    let writer = try HDF5Writer()
    try writer.add("data", floats: positions, shape: shape, gzip: gzip)
    if let normals { try writer.add("normal", floats: normals, shape: shape, gzip: gzip) }
    if let labels {
      switch layout {
      case .modelNet: try writer.add("label", integers: labels, shape: [clouds, 1], type: .uint8)
      case .scanObjectNN: try writer.add("label", integers: labels, shape: [clouds], type: .int64)
      }
    }
    try writer.write(to: url)
  }
}
