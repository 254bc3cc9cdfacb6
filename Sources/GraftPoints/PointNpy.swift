import Foundation

// NumPy's .npy: `\x93NUMPY`, a version (1.0, 2.0 or 3.0), the header length (uint16 for 1.0,
// uint32 after), a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (N, 3), }`
// padded with spaces and ending in a newline, then the array's bytes.

/// Reads and writes point clouds stored as NumPy arrays `[N, 3]` (x y z) or `[N, 6]` (x y z nx ny
/// nz) of float32 or float64, either byte order, C or Fortran order.
public enum PointNpy {
  /// Reads the `.npy` cloud at `url`.
  public static func read(contentsOf url: URL) throws -> PointCloud {
    try decode(readFileBytes(url), path: url.path)
  }

  /// The parsed header of an .npy file.
  struct Header {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]
    var dataOffset: Int
  }

  /// Parses a whole .npy file held in `data`; `path` names it in errors.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> PointCloud {
    try data.withUnsafeBytes { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      let header = try parseHeader(bytes, path: path)
      func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
        PointFileError(kind, path: path, message)
      }
      let type: ScalarType
      let big: Bool
      switch header.descr {
      case "<f4", "=f4": (type, big) = (.float32, false)
      case ">f4": (type, big) = (.float32, true)
      case "<f8", "=f8": (type, big) = (.float64, false)
      case ">f8": (type, big) = (.float64, true)
      default:
        throw fail(.unsupported, "dtype '\(header.descr)' (float32 or float64 expected)")
      }
      guard header.shape.count == 2, header.shape[1] == 3 || header.shape[1] == 6 else {
        throw fail(
          .unsupported,
          "shape (\(header.shape.map(String.init).joined(separator: ", "))) is not [N, 3] or [N, 6]"
        )
      }
      let (n, columns) = (header.shape[0], header.shape[1])
      let available = bytes.count - header.dataOffset
      guard let size = checkedProduct(n, columns, type.size) else {
        throw fail(.tooLarge, "shape (\(n), \(columns)) overflows")
      }
      guard size <= available else {
        throw fail(
          .truncated,
          "shape (\(n), \(columns)) needs \(size) bytes of data, the file has \(available)")
      }
      guard size == available else {
        throw fail(.sizeMismatch, "\(available - size) bytes follow the array's \(size) bytes")
      }
      var positions = [Float](repeating: 0, count: 3 * n)
      var normals: [Float]? = columns == 6 ? [Float](repeating: 0, count: 3 * n) : nil
      let base = UnsafeRawPointer(bytes.baseAddress!) + header.dataOffset
      for i in 0..<n {
        for c in 0..<columns {
          let element = header.fortranOrder ? c * n + i : i * columns + c
          let v = type.loadFloat(base, element * type.size, bigEndian: big)
          guard v.isFinite else {
            throw fail(.nonFiniteValue, "row \(i) column \(c) is not finite")
          }
          if c < 3 { positions[3 * i + c] = v } else { normals![3 * i + c - 3] = v }
        }
      }
      return PointCloud(positions: positions, normals: normals)
    }
  }

  static func parseHeader(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> Header {
    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, message)
    }
    let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw fail(.badHeader, "not a .npy file (no \\x93NUMPY magic)")
    }
    let major = bytes[6]
    let lengthSize = major == 1 ? 2 : 4
    guard (1...3).contains(major) else { throw fail(.unsupported, ".npy version \(major)") }
    guard bytes.count >= 8 + lengthSize else {
      throw fail(.truncated, "the header length is cut off")
    }
    let raw = UnsafeRawPointer(bytes.baseAddress!)
    let length = lengthSize == 2 ? Int(bits16(raw, 8, false)) : Int(bits32(raw, 8, false))
    let start = 8 + lengthSize
    guard length <= bytes.count - start else {
      throw fail(
        .truncated, "the header claims \(length) bytes, the file has \(bytes.count - start)")
    }
    let text = String(
      decoding: UnsafeBufferPointer(rebasing: bytes[start..<(start + length)]), as: UTF8.self)
    var descr: String?
    var fortran: Bool?
    var shape: [Int]?
    // The dict literal numpy writes: string keys; string, bool and int-tuple values.
    var scanner = Array(text.unicodeScalars)
    scanner.removeAll { $0 == " " || $0 == "\n" || $0 == "\t" }
    let body = String(String.UnicodeScalarView(scanner))
    guard body.hasPrefix("{"), body.hasSuffix("}") else {
      throw fail(.badHeader, "the header is not a dict literal: \(text)")
    }
    var rest = Substring(body.dropFirst().dropLast())
    while !rest.isEmpty {
      guard let quote = rest.first, quote == "'" || quote == "\"",
        let keyEnd = rest.dropFirst().firstIndex(of: quote)
      else { throw fail(.badHeader, "bad header dict: \(text)") }
      let key = String(rest[rest.index(after: rest.startIndex)..<keyEnd])
      rest = rest[rest.index(after: keyEnd)...]
      guard rest.first == ":" else { throw fail(.badHeader, "bad header dict: \(text)") }
      rest = rest.dropFirst()
      let valueEnd: Substring.Index
      if rest.first == "(" {
        guard let close = rest.firstIndex(of: ")") else {
          throw fail(.badHeader, "bad shape in \(text)")
        }
        valueEnd = rest.index(after: close)
      } else if let q = rest.first, q == "'" || q == "\"" {
        guard let close = rest.dropFirst().firstIndex(of: q) else {
          throw fail(.badHeader, "bad header dict: \(text)")
        }
        valueEnd = rest.index(after: close)
      } else {
        valueEnd = rest.firstIndex(of: ",") ?? rest.endIndex
      }
      let value = rest[..<valueEnd]
      rest = rest[valueEnd...]
      if rest.first == "," { rest = rest.dropFirst() }
      switch key {
      case "descr":
        descr = String(value.dropFirst().dropLast())
      case "fortran_order":
        guard value == "True" || value == "False" else {
          throw fail(.badHeader, "fortran_order is '\(value)'")
        }
        fortran = value == "True"
      case "shape":
        let items = value.dropFirst().dropLast().split(separator: ",")
        var dims = [Int]()
        for item in items {
          guard let d = Int(item), d >= 0 else { throw fail(.badHeader, "bad shape \(value)") }
          dims.append(d)
        }
        shape = dims
      default:
        continue
      }
    }
    guard let descr, let fortran, let shape else {
      throw fail(.badHeader, "the header lacks descr, fortran_order or shape: \(text)")
    }
    return Header(descr: descr, fortranOrder: fortran, shape: shape, dataOffset: start + length)
  }

  /// The bytes of a version 1.0 .npy file holding `cloud` as float32 `[N, 3]`, or `[N, 6]` with
  /// its normals.
  public static func encode(_ cloud: PointCloud, path: String = "<memory>") throws -> [UInt8] {
    try cloud.validate(path: path)
    for i in 0..<cloud.count where !cloud.isFinite(i) {
      throw PointFileError(
        .invalidWrite, path: path,
        "point \(i) has a non-finite coordinate; .npy clouds hold finite points")
    }
    let columns = cloud.normals == nil ? 3 : 6
    var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(cloud.count), \(columns)), }"
    // numpy pads the header so the data starts on a 64-byte boundary.
    while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
    dict += "\n"
    var out = ByteSink()
    out.bytes = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
    out.append(UInt16(dict.utf8.count))
    out.text(dict)
    let t = cloud.tensor(withNormals: true)
    for i in 0..<t.count { out.append(t.pointer[i]) }
    return out.bytes
  }

  /// Writes `cloud` to `url` atomically.
  public static func write(_ cloud: PointCloud, to url: URL) throws {
    try writeFileBytes(encode(cloud, path: url.path), to: url)
  }
}
