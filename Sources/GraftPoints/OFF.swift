import Foundation

// Geomview's OFF (and ModelNet's meshes): a keyword `[ST][C][N]OFF`, the counts `V F E`, V vertex
// lines `x y z [nx ny nz] [r g b [a]] [s t]`, then F face lines `k i1 … ik [colour]`; `#` starts a
// comment. ModelNet40 has files whose counts follow the keyword on the same line with no space
// (`OFF490 518 0`); they are read too.

/// Reads and writes OFF files (`OFF`, `COFF`, `NOFF`, `CNOFF`, with `ST` texture coordinates read
/// and skipped).
public enum OFF {
  /// What an OFF file holds.
  public struct Contents: Sendable {
    /// The header keyword (`OFF`, `COFF`, `NOFF`, …).
    public var keyword: String
    /// The vertices (with normals and colours for NOFF and COFF).
    public var vertices: PointCloud
    /// The mesh, when the file has at least one face.
    public var mesh: TriangleMesh?
  }

  /// Reads the OFF file at `url`.
  public static func read(contentsOf url: URL) throws -> Contents {
    try decode(readFileBytes(url), path: url.path)
  }

  /// Parses a whole OFF file held in `data`; `path` names it in errors.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> Contents {
    try data.withUnsafeBytes { raw in
      try decode(raw.bindMemory(to: UInt8.self), path: path)
    }
  }

  private static func decode(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> Contents {
    var s = TextScanner(bytes, path: path)
    s.comment = UInt8(ascii: "#")
    guard s.nextContentLine(), let k = s.token() else {
      throw PointFileError(.badHeader, path: path, "empty file: no OFF keyword")
    }
    // Split `OFF490` into the keyword and a count glued to it.
    var word = Array(s.string(k).utf8)
    var glued: [UInt8] = []
    if let firstDigit = word.firstIndex(where: { $0 >= 48 && $0 <= 57 }),
      word[..<firstDigit].last == UInt8(ascii: "F")
    {
      glued = Array(word[firstDigit...])
      word = Array(word[..<firstDigit])
    }
    let keyword = String(decoding: word, as: UTF8.self)
    guard keyword.hasSuffix("OFF") else {
      throw s.error(.badHeader, "no OFF keyword (found '\(s.string(k))')")
    }
    var flags = keyword.dropLast(3)
    let texture = flags.hasPrefix("ST")
    if texture { flags = flags.dropFirst(2) }
    let color = flags.hasPrefix("C")
    if color { flags = flags.dropFirst() }
    let normal = flags.hasPrefix("N")
    if normal { flags = flags.dropFirst() }
    if flags == "4" || flags == "n" || flags == "4n" {
      throw s.error(.unsupported, "\(keyword) is not a 3-D OFF file")
    }
    guard flags.isEmpty else { throw s.error(.badHeader, "unknown OFF keyword '\(keyword)'") }
    if let t = s.token() {
      if s.string(t) == "BINARY" {
        throw s.error(.unsupported, "binary OFF is not supported")
      }
      s.position = t.lowerBound
    }

    // The counts: on the keyword's line (glued or after it) or on the next content line.
    var counts = [Int]()
    if !glued.isEmpty {
      guard let v = Int(String(decoding: glued, as: UTF8.self)) else {
        throw s.error(.badHeader, "bad vertex count '\(String(decoding: glued, as: UTF8.self))'")
      }
      counts.append(v)
    }
    while counts.count < 3 {
      if s.atLineEnd() {
        if counts.count >= 2 { break }
        s.skipLine()
        guard s.nextContentLine() else {
          throw PointFileError(.badHeader, path: path, "the header has no vertex and face counts")
        }
      }
      let t = s.token()!
      guard let v = s.parseInt(t), v >= 0 else {
        throw s.error(.badHeader, "bad count '\(s.string(t))'")
      }
      counts.append(v)
    }
    try s.expectLineEnd("the counts line")
    let (n, faceTotal) = (counts[0], counts[1])
    // Every vertex needs at least three characters and every face one: refuse counts the file
    // cannot hold before allocating.
    guard let minimum = checkedProduct(n, 3),
      case let (total, overflow) = minimum.addingReportingOverflow(faceTotal),
      !overflow, total <= bytes.count - s.position
    else {
      throw s.error(
        .truncated,
        "\(n) vertices and \(faceTotal) faces cannot fit in the \(bytes.count - s.position) bytes left"
      )
    }

    var positions = [Float](repeating: 0, count: 3 * n)
    var normals: [Float]? = normal ? [Float](repeating: 0, count: 3 * n) : nil
    var colors: [UInt8]? = color ? [UInt8](repeating: 0, count: 3 * n) : nil
    var alpha: [UInt8]? = nil
    let fixed = 3 + (normal ? 3 : 0) + (texture ? 2 : 0)
    for i in 0..<n {
      guard s.nextContentLine() else {
        throw s.error(.truncated, "the data ends after \(i) of \(n) vertices")
      }
      let found = s.tokensLeftOnLine()
      let colorValues = found - fixed
      guard color ? (colorValues == 3 || colorValues == 4) : colorValues == 0 else {
        throw s.error(
          .countMismatch,
          "vertex \(i) has \(found) values; \(keyword) vertices have \(color ? "\(fixed + 3) or \(fixed + 4)" : "\(fixed)")"
        )
      }
      for axis in 0..<3 {
        let v = try s.float("vertex \(i) coordinate")
        guard v.isFinite else {
          throw s.error(.nonFiniteValue, "vertex \(i) has a non-finite coordinate")
        }
        positions[3 * i + axis] = v
      }
      if normal {
        for axis in 0..<3 {
          let v = try s.float("vertex \(i) normal")
          guard v.isFinite else {
            throw s.error(.nonFiniteValue, "vertex \(i) has a non-finite normal")
          }
          normals![3 * i + axis] = v
        }
      }
      if color {
        var channels = [Double]()
        for _ in 0..<colorValues { channels.append(try s.double("vertex \(i) colour")) }
        // Colours are floats in [0, 1] or integers in [0, 255]; any value above 1 means the
        // latter.
        let bytes = channels.contains { $0 > 1 }
        for (c, v) in channels.enumerated() {
          let scaled = bytes ? v : v * 255
          guard scaled >= 0, scaled <= 255 else {
            throw s.error(.badValue, "vertex \(i): colour value \(v) is out of range")
          }
          let byte = UInt8(scaled.rounded())
          if c < 3 {
            colors![3 * i + c] = byte
          } else {
            if alpha == nil { alpha = [UInt8](repeating: 255, count: n) }
            alpha![i] = byte
          }
        }
      }
      s.skipLine()
    }

    var faces = FaceCollector(vertexCount: n, path: path)
    for f in 0..<faceTotal {
      guard s.nextContentLine() else {
        throw s.error(.truncated, "the data ends after \(f) of \(faceTotal) faces")
      }
      let k = try s.int("face \(f) corner count")
      guard k >= 0 else { throw s.error(.badValue, "face \(f) has \(k) corners") }
      let found = s.tokensLeftOnLine()
      guard found >= k, found <= k + 4 else {
        throw s.error(
          .countMismatch, "face \(f) declares \(k) corners but has \(found) values after the count")
      }
      var corners = [Int]()
      corners.reserveCapacity(k)
      for _ in 0..<k { corners.append(try s.int("face \(f) corner")) }
      // The rest of the line is the face's colour, which Graft does not keep.
      try faces.add(corners, face: "line \(s.line): face \(f)")
      s.skipLine()
    }
    if s.nextContentLine() {
      throw s.error(
        .countMismatch, "data continues after the \(faceTotal) faces the header declares")
    }
    let cloud = PointCloud(positions: positions, normals: normals, colors: colors, alpha: alpha)
    let mesh =
      faceTotal > 0
      ? TriangleMesh(vertices: cloud, triangles: faces.triangles, faceCount: faces.faces) : nil
    return Contents(keyword: keyword, vertices: cloud, mesh: mesh)
  }

  // MARK: Writing

  /// The text of an OFF file holding `cloud` (and `triangles` when given): `NOFF` with normals,
  /// `COFF` with colours (as 0...1 floats with alpha), `CNOFF` with both.
  public static func encode(_ cloud: PointCloud, triangles: [UInt32]?, path: String = "<memory>")
    throws -> [UInt8]
  {
    try cloud.validate(path: path)
    for i in 0..<cloud.count where !cloud.isFinite(i) {
      throw PointFileError(
        .invalidWrite, path: path, "point \(i) has a non-finite coordinate; OFF holds finite points"
      )
    }
    let keyword = (cloud.colors != nil ? "C" : "") + (cloud.normals != nil ? "N" : "") + "OFF"
    var out = ByteSink()
    let faceCount = (triangles?.count ?? 0) / 3
    out.text("\(keyword)\n\(cloud.count) \(faceCount) 0\n")
    for i in 0..<cloud.count {
      var values = cloud.positions[(3 * i)..<(3 * i + 3)].map(floatText)
      if let normals = cloud.normals { values += normals[(3 * i)..<(3 * i + 3)].map(floatText) }
      if let colors = cloud.colors {
        values += colors[(3 * i)..<(3 * i + 3)].map { floatText(Float($0) / 255) }
        values.append(floatText(Float(cloud.alpha?[i] ?? 255) / 255))
      }
      out.text(values.joined(separator: " ") + "\n")
    }
    if let triangles {
      for t in 0..<faceCount {
        out.text("3 \(triangles[3 * t]) \(triangles[3 * t + 1]) \(triangles[3 * t + 2])\n")
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
