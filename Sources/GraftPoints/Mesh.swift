/// A triangle mesh: vertices (with whatever per-vertex fields the file had) and triangles.
///
/// Polygons are split into triangle fans when read; `faceCount` keeps the file's own count of
/// faces. Files often carry vertices no face uses, so anything about the surface (sampling, area)
/// goes through the triangles, never the vertex list.
public struct TriangleMesh: Sendable, Equatable {
  /// The vertices and their per-vertex fields.
  public var vertices: PointCloud
  /// Vertex indices, three per triangle.
  public var triangles: [UInt32]
  /// Faces as the file counts them (polygons before triangulation, including any with fewer
  /// than three corners).
  public var faceCount: Int

  /// A mesh of `vertices` and `triangles` (three indices each); `faceCount` defaults to the
  /// number of triangles.
  public init(vertices: PointCloud, triangles: [UInt32], faceCount: Int? = nil) {
    self.vertices = vertices
    self.triangles = triangles
    self.faceCount = faceCount ?? triangles.count / 3
  }

  /// Number of vertices, referenced or not.
  public var vertexCount: Int { vertices.count }

  /// Number of triangles.
  public var triangleCount: Int { triangles.count / 3 }

  /// Number of distinct vertices that some triangle uses.
  public var referencedVertexCount: Int {
    var used = [Bool](repeating: false, count: vertexCount)
    for i in triangles where Int(i) < used.count { used[Int(i)] = true }
    return used.reduce(0) { $0 + ($1 ? 1 : 0) }
  }

  /// The corners of triangle `t`.
  public func corners(_ t: Int) -> (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>) {
    (
      vertices.point(Int(triangles[3 * t])), vertices.point(Int(triangles[3 * t + 1])),
      vertices.point(Int(triangles[3 * t + 2]))
    )
  }

  /// Area of triangle `t` (computed in Double).
  public func area(_ t: Int) -> Double {
    let (a, b, c) = corners(t)
    let u = SIMD3<Double>(b - a)
    let v = SIMD3<Double>(c - a)
    let n = cross(u, v)
    return 0.5 * (n * n).sum().squareRoot()
  }

  /// Total surface area.
  public var surfaceArea: Double { (0..<triangleCount).reduce(0) { $0 + area($1) } }

  /// Checks that the triangle list is whole and every index names a vertex.
  public func validate(path: String) throws {
    guard triangles.count % 3 == 0 else {
      throw PointFileError(
        .invalidWrite, path: path, "\(triangles.count) indices are not whole triangles")
    }
    if let bad = triangles.first(where: { Int($0) >= vertexCount }) {
      throw PointFileError(
        .indexOutOfRange, path: path, "a triangle uses vertex \(bad) of \(vertexCount)")
    }
    try vertices.validate(path: path)
  }
}

/// The cross product of two vectors.
func cross(_ u: SIMD3<Double>, _ v: SIMD3<Double>) -> SIMD3<Double> {
  SIMD3(u.y * v.z - u.z * v.y, u.z * v.x - u.x * v.z, u.x * v.y - u.y * v.x)
}

extension SIMD3 where Scalar == Double {
  init(_ v: SIMD3<Float>) { self.init(Double(v.x), Double(v.y), Double(v.z)) }
}

/// Collects a file's faces as triangles, checking every index against the vertex count.
struct FaceCollector {
  let vertexCount: Int
  let path: String
  var triangles: [UInt32] = []
  var faces = 0

  init(vertexCount: Int, path: String) {
    self.vertexCount = vertexCount
    self.path = path
  }

  /// Adds one polygon (a fan from its first corner); `where` names the face in errors.
  mutating func add(_ corners: [Int], face: @autoclosure () -> String) throws {
    for v in corners where v < 0 || v >= vertexCount {
      throw PointFileError(
        .indexOutOfRange, path: path,
        "\(face()) uses vertex \(v), but there are \(vertexCount) vertices")
    }
    faces += 1
    guard corners.count >= 3 else { return }
    for k in 1..<(corners.count - 1) {
      triangles.append(UInt32(corners[0]))
      triangles.append(UInt32(corners[k]))
      triangles.append(UInt32(corners[k + 1]))
    }
  }
}
