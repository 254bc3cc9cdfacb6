import Foundation

/// ModelNet40's resampled clouds (`modelnet40_normal_resampled/<class>/<class>_0001.txt`): one
/// point per line, `x,y,z,nx,ny,nz` (or `x,y,z`), separated by commas or blanks.
public enum ModelNetText {
  /// Reads the text cloud at `url`.
  public static func read(contentsOf url: URL) throws -> PointCloud {
    try decode(readFileBytes(url), path: url.path)
  }

  /// Parses a whole text cloud held in `data`; `path` names it in errors. Every line must have
  /// the same number of values, 3 or 6.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> PointCloud {
    try data.withUnsafeBytes { raw in
      var s = TextScanner(raw.bindMemory(to: UInt8.self), path: path)
      s.commaSeparates = true
      var positions = [Float]()
      var normals = [Float]()
      var columns = 0
      while s.nextContentLine() {
        let i = positions.count / 3
        let found = s.tokensLeftOnLine()
        if columns == 0 {
          guard found == 3 || found == 6 else {
            throw s.error(.countMismatch, "the first point has \(found) values (3 or 6 expected)")
          }
          columns = found
        }
        guard found == columns else {
          throw s.error(
            .countMismatch, "point \(i) has \(found) values, the first point has \(columns)")
        }
        for axis in 0..<columns {
          let v = try s.float("point \(i) value \(axis)")
          guard v.isFinite else {
            throw s.error(.nonFiniteValue, "point \(i) has a non-finite value")
          }
          if axis < 3 { positions.append(v) } else { normals.append(v) }
        }
        s.skipLine()
      }
      return PointCloud(positions: positions, normals: columns == 6 ? normals : nil)
    }
  }

  /// The text of `cloud` in ModelNet's layout: `x,y,z,nx,ny,nz` with normals, `x,y,z` without.
  public static func encode(_ cloud: PointCloud, path: String = "<memory>") throws -> [UInt8] {
    try cloud.validate(path: path)
    var out = ByteSink()
    for i in 0..<cloud.count {
      guard cloud.isFinite(i) else {
        throw PointFileError(
          .invalidWrite, path: path,
          "point \(i) has a non-finite coordinate; text clouds hold finite points")
      }
      var values = cloud.positions[(3 * i)..<(3 * i + 3)].map(floatText)
      if let normals = cloud.normals { values += normals[(3 * i)..<(3 * i + 3)].map(floatText) }
      out.text(values.joined(separator: ",") + "\n")
    }
    return out.bytes
  }

  /// Writes `cloud` to `url` atomically.
  public static func write(_ cloud: PointCloud, to url: URL) throws {
    try writeFileBytes(encode(cloud, path: url.path), to: url)
  }
}
