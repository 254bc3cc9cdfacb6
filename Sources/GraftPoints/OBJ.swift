import Foundation

// Wavefront OBJ, the geometry statements that matter for a surface: `v x y z [w]` (or
// `v x y z r g b`, a common colour extension), `vt`, `vn`, and `f` with corners `v`, `v/vt`,
// `v//vn` or `v/vt/vn`, 1-based, negative indices counting back from the latest vertex (texture
// and normal indices may refer to ones defined later in the file, as some exporters write). Other
// statements (`o`, `g`, `s`, `usemtl`, `mtllib`, `l`, `p`, …) do not change the surface and are
// skipped; `#` starts a comment, and a trailing backslash joins a line to the next.

/// Reads and writes Wavefront OBJ meshes.
public enum OBJ {
  /// What an OBJ file holds.
  public struct Contents: Sendable {
    /// The `v` vertices (with colours when every vertex has them).
    public var vertices: PointCloud
    /// The mesh, when the file has at least one face.
    public var mesh: TriangleMesh?
    /// Number of `vn` statements (corner normals, not kept).
    public var normalCount: Int
    /// Number of `vt` statements.
    public var textureCount: Int
  }

  /// Reads the OBJ file at `url`.
  public static func read(contentsOf url: URL) throws -> Contents {
    try decode(readFileBytes(url), path: url.path)
  }

  /// Parses a whole OBJ file held in `data`; `path` names it in errors.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> Contents {
    // Join continued lines first (rare, but part of the format).
    var data = data
    if data.contains(UInt8(ascii: "\\")) {
      var joined = [UInt8]()
      joined.reserveCapacity(data.count)
      var i = data.startIndex
      while i < data.endIndex {
        let b = data[i]
        if b == UInt8(ascii: "\\") {
          var j = data.index(after: i)
          while j < data.endIndex, data[j] == 0x20 || data[j] == 0x09 || data[j] == 0x0D { j += 1 }
          if j < data.endIndex, data[j] == 0x0A {
            joined.append(0x20)
            i = data.index(after: j)
            continue
          }
        }
        joined.append(b)
        i = data.index(after: i)
      }
      data = Data(joined)
    }
    return try data.withUnsafeBytes { raw in
      try decode(raw.bindMemory(to: UInt8.self), path: path)
    }
  }

  private static func decode(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> Contents {
    var s = TextScanner(bytes, path: path)
    s.comment = UInt8(ascii: "#")
    var positions = [Float]()
    var colors = [UInt8]()
    var colored = 0
    var normalCount = 0
    var textureCount = 0
    var polygons = [[Int]]()
    var polygonLines = [Int]()
    // The largest forward texture (1) and normal (2) reference, where it is.
    var forward: [Int: (index: Int, line: Int, corner: String)] = [:]
    while s.nextContentLine() {
      let k = s.token()!
      let keyword = s.string(k)
      switch keyword {
      case "v":
        let found = s.tokensLeftOnLine()
        guard found == 3 || found == 4 || found == 6 else {
          throw s.error(.countMismatch, "v has \(found) values (3, 4 or 6 expected)")
        }
        let i = positions.count / 3
        for _ in 0..<3 {
          let v = try s.float("vertex \(i) coordinate")
          guard v.isFinite else {
            throw s.error(.nonFiniteValue, "vertex \(i) has a non-finite coordinate")
          }
          positions.append(v)
        }
        if found == 6 {
          for _ in 0..<3 {
            let v = try s.double("vertex \(i) colour")
            guard v >= 0, v <= 1 else {
              throw s.error(.badValue, "vertex \(i): colour value \(v) is outside [0, 1]")
            }
            colors.append(UInt8((v * 255).rounded()))
          }
          colored += 1
        } else {
          colors += [0, 0, 0]
        }
        // A fourth value is the homogeneous w, which Graft does not use.
        s.skipLine()
      case "vn":
        normalCount += 1
        s.skipLine()
      case "vt":
        textureCount += 1
        s.skipLine()
      case "f":
        var corners = [Int]()
        let vertexCount = positions.count / 3
        while let t = s.token() {
          // `v`, `v/vt`, `v//vn` or `v/vt/vn`.
          var parts = [Range<Int>]()
          var start = t.lowerBound
          for p in t where bytes[p] == UInt8(ascii: "/") {
            parts.append(start..<p)
            start = p + 1
          }
          parts.append(start..<t.upperBound)
          guard parts.count <= 3, !parts[0].isEmpty else {
            throw s.error(
              .badValue, "face corner '\(s.string(t))' is not v, v/vt, v//vn or v/vt/vn")
          }
          let limits = [vertexCount, textureCount, normalCount]
          let names = ["vertex", "texture coordinate", "normal"]
          var vertex = 0
          for (j, part) in parts.enumerated() where !(j == 1 && part.isEmpty && parts.count == 3) {
            guard let index = s.parseInt(part), index != 0 else {
              throw s.error(.badValue, "face corner '\(s.string(t))' has a bad index")
            }
            // 1-based; negative counts back from the latest element of its kind.
            let resolved = index > 0 ? index - 1 : limits[j] + index
            // Texture and normal indices do not shape the surface, and some exporters refer
            // to ones defined further down (Sweet Home 3D's Scopia truck): those are checked
            // against the whole file's count at the end.
            if j > 0, index > limits[j] {
              if index > (forward[j]?.index ?? 0) {
                forward[j] = (index, s.line, s.string(t))
              }
              continue
            }
            guard resolved >= 0, resolved < limits[j] else {
              throw s.error(
                .indexOutOfRange,
                "face corner '\(s.string(t))' refers to \(names[j]) \(index), but \(limits[j]) are defined so far"
              )
            }
            if j == 0 { vertex = resolved }
          }
          corners.append(vertex)
        }
        polygons.append(corners)
        polygonLines.append(s.line)
        s.skipLine()
      default:
        s.skipLine()
      }
    }
    for (j, (name, count)) in [
      (1, ("texture coordinate", textureCount)), (2, ("normal", normalCount)),
    ] {
      if let f = forward[j], f.index > count {
        throw PointFileError(
          .indexOutOfRange, path: path,
          "line \(f.line): face corner '\(f.corner)' refers to \(name) \(f.index), but \(count) are defined in the file"
        )
      }
    }
    let n = positions.count / 3
    var faces = FaceCollector(vertexCount: n, path: path)
    for (f, corners) in polygons.enumerated() {
      try faces.add(corners, face: "line \(polygonLines[f]): face \(f)")
    }
    var cloud = PointCloud(positions: positions)
    // Colours only when every vertex has them; a partly coloured file would invent black.
    if colored == n, n > 0 { cloud.colors = colors }
    let mesh =
      polygons.isEmpty
      ? nil : TriangleMesh(vertices: cloud, triangles: faces.triangles, faceCount: faces.faces)
    return Contents(
      vertices: cloud, mesh: mesh, normalCount: normalCount, textureCount: textureCount)
  }

  // MARK: Writing

  /// The text of an OBJ file holding `cloud` as `v` lines (with colours when it has them) and
  /// `triangles`, when given, as `f` lines. Normals are not written: OBJ normals belong to face
  /// corners, not vertices.
  public static func encode(_ cloud: PointCloud, triangles: [UInt32]?, path: String = "<memory>")
    throws -> [UInt8]
  {
    try cloud.validate(path: path)
    for i in 0..<cloud.count where !cloud.isFinite(i) {
      throw PointFileError(
        .invalidWrite, path: path, "point \(i) has a non-finite coordinate; OBJ holds finite points"
      )
    }
    var out = ByteSink()
    out.text("# written by Graft\n")
    for i in 0..<cloud.count {
      var line = "v " + cloud.positions[(3 * i)..<(3 * i + 3)].map(floatText).joined(separator: " ")
      if let colors = cloud.colors {
        line +=
          " "
          + colors[(3 * i)..<(3 * i + 3)].map { floatText(Float($0) / 255) }.joined(separator: " ")
      }
      out.text(line + "\n")
    }
    if let triangles {
      for t in 0..<(triangles.count / 3) {
        out.text(
          "f \(triangles[3 * t] + 1) \(triangles[3 * t + 1] + 1) \(triangles[3 * t + 2] + 1)\n")
      }
    }
    return out.bytes
  }

  /// Writes `cloud` (vertices only) to `url` atomically.
  public static func write(_ cloud: PointCloud, to url: URL) throws {
    try writeFileBytes(encode(cloud, triangles: nil, path: url.path), to: url)
  }

  /// Writes `mesh` to `url` atomically.
  public static func write(_ mesh: TriangleMesh, to url: URL) throws {
    try mesh.validate(path: url.path)
    try writeFileBytes(encode(mesh.vertices, triangles: mesh.triangles, path: url.path), to: url)
  }
}
