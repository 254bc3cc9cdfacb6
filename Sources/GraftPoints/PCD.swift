import Foundation

// PCL's PCD format (v0.7, and the v0.6/v0.5 headers without VIEWPOINT or COUNT): a text header of
// keyword lines (`FIELDS`, `SIZE`, `TYPE`, `COUNT`, `WIDTH`, `HEIGHT`, `VIEWPOINT`, `POINTS`,
// `DATA`), then the points as text lines (`ascii`), as packed little-endian records (`binary`), or
// as two little-endian uint32 sizes and an LZF stream of the fields laid out one after another
// (`binary_compressed`: every point's first field, then every point's second field, …).

/// A PCD file's data encoding.
public enum PCDEncoding: String, Sendable, CaseIterable {
  /// One text line per point.
  case ascii
  /// Packed little-endian records, one per point.
  case binary
  /// LZF-compressed fields, one after another.
  case binaryCompressed = "binary_compressed"
}

/// One field of a PCD header.
public struct PCDField: Sendable, Equatable {
  /// Name (`x`, `normal_x`, `rgb`, …; `_` is padding).
  public var name: String
  /// Bytes per value: 1, 2, 4 or 8.
  public var size: Int
  /// `F` (float), `I` (signed) or `U` (unsigned).
  public var type: String
  /// Values per point.
  public var count: Int
}

/// A parsed PCD header.
public struct PCDHeader: Sendable, Equatable {
  /// `VERSION` as written (`0.7`, `.7`, `0.6`, …), nil when absent.
  public var version: String?
  /// The fields, in order.
  public var fields: [PCDField]
  /// Columns (the point count for an unorganised cloud).
  public var width: Int
  /// Rows (1 for an unorganised cloud).
  public var height: Int
  /// `POINTS`: width × height.
  public var points: Int
  /// `VIEWPOINT`, identity when absent (v0.6).
  public var viewpoint: PointViewpoint
  /// `DATA`.
  public var encoding: PCDEncoding
  /// Byte offset of the first data byte.
  public var dataOffset: Int

  /// Bytes per point in the binary encodings.
  public var pointSize: Int { fields.reduce(0) { $0 + $1.size * $1.count } }
}

/// Reads and writes PCL's PCD files.
public enum PCD {
  /// Reads the cloud in the PCD file at `url`.
  public static func read(contentsOf url: URL) throws -> PointCloud {
    try decode(readFileBytes(url), path: url.path).cloud
  }

  /// Parses a whole PCD file held in `data`; `path` names it in errors.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> (
    header: PCDHeader, cloud: PointCloud
  ) {
    try data.withUnsafeBytes { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      let header = try parseHeader(bytes, path: path)
      let cloud = try decodeBody(bytes, header: header, path: path)
      return (header, cloud)
    }
  }

  /// Writes `cloud` to `url` atomically in `encoding`.
  public static func write(_ cloud: PointCloud, to url: URL, encoding: PCDEncoding = .binary) throws
  {
    try writeFileBytes(encode(cloud, encoding: encoding, path: url.path), to: url)
  }

  // MARK: Header

  /// Parses the header at the start of `bytes`.
  static func parseHeader(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> PCDHeader {
    var s = TextScanner(bytes, path: path)
    var seen = Set<String>()
    var version: String?
    var names: [String]?
    var sizes: [Int]?
    var types: [String]?
    var counts: [Int]?
    var width: Int?
    var height: Int?
    var points: Int?
    var viewpoint = PointViewpoint.identity
    var encoding: PCDEncoding?

    func values(_ s: inout TextScanner) -> [String] {
      var out = [String]()
      while let t = s.token() { out.append(s.string(t)) }
      return out
    }
    func integers(_ s: inout TextScanner, _ key: String) throws -> [Int] {
      var out = [Int]()
      while let t = s.token() {
        guard let v = s.parseInt(t), v >= 0 else {
          throw s.error(.badHeader, "\(key): '\(s.string(t))' is not a non-negative integer")
        }
        out.append(v)
      }
      return out
    }
    func single(_ s: inout TextScanner, _ key: String) throws -> Int {
      let v = try integers(&s, key)
      guard v.count == 1 else {
        throw s.error(.badHeader, "\(key) needs one value, has \(v.count)")
      }
      return v[0]
    }

    while encoding == nil {
      guard s.position < min(bytes.count, 1 << 20) else {
        throw PointFileError(
          .badHeader, path: path,
          s.isAtEnd ? "the header has no DATA line" : "no DATA line in the first MiB")
      }
      if s.atLineEnd() {
        s.skipLine()
        continue
      }
      if bytes[s.position] == UInt8(ascii: "#") {
        s.skipLine()
        continue
      }
      guard let k = s.token() else { continue }
      var key = s.string(k)
      if key == "COLUMNS" { key = "FIELDS" }  // the v0.5 name
      guard !seen.contains(key) else { throw s.error(.badHeader, "\(key) appears twice") }
      seen.insert(key)
      switch key {
      case "VERSION":
        version = values(&s).first
      case "FIELDS":
        names = values(&s)
      case "SIZE":
        sizes = try integers(&s, key)
      case "TYPE":
        types = values(&s)
      case "COUNT":
        counts = try integers(&s, key)
      case "WIDTH":
        width = try single(&s, key)
      case "HEIGHT":
        height = try single(&s, key)
      case "POINTS":
        points = try single(&s, key)
      case "VIEWPOINT":
        var v = [Double]()
        while let t = s.token() {
          guard let d = s.parseDouble(t), d.isFinite else {
            throw s.error(.badHeader, "VIEWPOINT: '\(s.string(t))' is not a number")
          }
          v.append(d)
        }
        guard v.count == 7 else {
          throw s.error(.badHeader, "VIEWPOINT needs 7 values, has \(v.count)")
        }
        viewpoint = PointViewpoint(
          translation: SIMD3(v[0], v[1], v[2]), rotation: SIMD4(v[3], v[4], v[5], v[6]))
      case "DATA":
        let v = values(&s)
        guard v.count == 1, let e = PCDEncoding(rawValue: v[0]) else {
          throw s.error(
            .unsupported,
            "DATA '\(v.joined(separator: " "))' is not ascii, binary or binary_compressed")
        }
        encoding = e
        if e != .ascii, s.position < bytes.count, bytes[s.position] != 0x0A {
          throw s.error(.badHeader, "the DATA line does not end with a newline")
        }
      default:
        throw s.error(.badHeader, "unknown header keyword '\(key)'")
      }
      if !s.atLineEnd() { throw s.error(.badHeader, "junk after \(key)") }
      s.skipLine()
    }

    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, message)
    }
    guard let names, !names.isEmpty else { throw fail(.badHeader, "the header has no FIELDS") }
    guard let sizes else { throw fail(.badHeader, "the header has no SIZE") }
    guard let types else { throw fail(.badHeader, "the header has no TYPE") }
    let fieldCounts = counts ?? Array(repeating: 1, count: names.count)
    guard sizes.count == names.count, types.count == names.count, fieldCounts.count == names.count
    else {
      throw fail(
        .badHeader,
        "FIELDS names \(names.count) fields but SIZE has \(sizes.count), TYPE \(types.count), COUNT \(fieldCounts.count)"
      )
    }
    var fields = [PCDField]()
    var seenNames = Set<String>()
    for i in 0..<names.count {
      guard ScalarType.pcd(type: types[i], size: sizes[i]) != nil else {
        throw fail(.badHeader, "field '\(names[i])' has TYPE \(types[i]) with SIZE \(sizes[i])")
      }
      guard fieldCounts[i] >= 1, fieldCounts[i] <= 1 << 16 else {
        throw fail(.badHeader, "field '\(names[i])' has COUNT \(fieldCounts[i])")
      }
      if names[i] != "_" {
        guard seenNames.insert(names[i]).inserted else {
          throw fail(.badHeader, "field '\(names[i])' appears twice")
        }
      }
      fields.append(PCDField(name: names[i], size: sizes[i], type: types[i], count: fieldCounts[i]))
    }
    for axis in ["x", "y", "z"] {
      guard let f = fields.first(where: { $0.name == axis }) else {
        throw fail(.missingField, "no '\(axis)' field (fields: \(names.joined(separator: " ")))")
      }
      guard f.count == 1 else { throw fail(.badHeader, "field '\(axis)' has COUNT \(f.count)") }
    }
    // v0.6 files may give only POINTS or only WIDTH; both present must agree with HEIGHT.
    let h = height ?? 1
    guard let w = width ?? (h == 1 ? points : nil) else {
      throw fail(.badHeader, "the header has neither WIDTH nor POINTS")
    }
    guard h >= 1 || w == 0 else { throw fail(.badHeader, "HEIGHT is 0 with WIDTH \(w)") }
    guard let total = checkedProduct(w, max(h, 1)) else {
      throw fail(.tooLarge, "WIDTH \(w) × HEIGHT \(h) overflows")
    }
    if let points, points != total {
      throw fail(.countMismatch, "POINTS is \(points) but WIDTH × HEIGHT is \(w) × \(h) = \(total)")
    }
    return PCDHeader(
      version: version, fields: fields, width: w, height: max(h, 1), points: total,
      viewpoint: viewpoint, encoding: encoding!, dataOffset: s.position)
  }

  // MARK: Body

  /// What a field's values become in the cloud.
  private enum Role {
    case position(Int)
    case normal(Int)
    case color(alpha: Bool)
    case intensity
    case attribute(Int)
    case skip
  }

  private static func roles(_ fields: [PCDField]) -> (roles: [Role], attributes: [PCDField]) {
    let names = Set(fields.map(\.name))
    let hasNormals = ["normal_x", "normal_y", "normal_z"].allSatisfy { n in
      names.contains(n) && fields.first { $0.name == n }!.count == 1
    }
    var colorTaken = false
    var attributes = [PCDField]()
    let roles = fields.map { f -> Role in
      switch f.name {
      case "x": return .position(0)
      case "y": return .position(1)
      case "z": return .position(2)
      case "normal_x" where hasNormals: return .normal(0)
      case "normal_y" where hasNormals: return .normal(1)
      case "normal_z" where hasNormals: return .normal(2)
      case "rgb", "rgba":
        if !colorTaken, f.size == 4, f.count == 1 {
          colorTaken = true
          return .color(alpha: f.name == "rgba")
        }
      case "intensity" where f.count == 1: return .intensity
      case "_": return .skip
      default: break
      }
      attributes.append(f)
      return .attribute(attributes.count - 1)
    }
    return (roles, attributes)
  }

  /// Destination arrays for the decoded values.
  private struct Columns {
    var positions: [Float]
    var normals: [Float]?
    var colors: [UInt8]?
    var alpha: [UInt8]?
    var intensity: [Float]?
    var attributes: [[Float]]

    init(points n: Int, roles: [Role], attributes: [PCDField]) {
      positions = [Float](repeating: 0, count: 3 * n)
      for role in roles {
        switch role {
        case .normal: normals = [Float](repeating: 0, count: 3 * n)
        case .color(let a):
          colors = [UInt8](repeating: 0, count: 3 * n)
          if a { alpha = [UInt8](repeating: 0, count: n) }
        case .intensity: intensity = [Float](repeating: 0, count: n)
        default: break
        }
      }
      self.attributes = attributes.map { [Float](repeating: 0, count: n * $0.count) }
    }

    mutating func setColor(_ i: Int, _ packed: UInt32) {
      colors![3 * i] = UInt8(truncatingIfNeeded: packed >> 16)
      colors![3 * i + 1] = UInt8(truncatingIfNeeded: packed >> 8)
      colors![3 * i + 2] = UInt8(truncatingIfNeeded: packed)
      if alpha != nil { alpha![i] = UInt8(truncatingIfNeeded: packed >> 24) }
    }
  }

  static func decodeBody(_ bytes: UnsafeBufferPointer<UInt8>, header: PCDHeader, path: String)
    throws -> PointCloud
  {
    let n = header.points
    let (roles, attributeFields) = roles(header.fields)
    let start = header.dataOffset
    let available = bytes.count - start
    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, message)
    }
    guard let dataSize = checkedProduct(n, header.pointSize) else {
      throw fail(.tooLarge, "\(n) points of \(header.pointSize) bytes overflow")
    }
    var columns: Columns
    switch header.encoding {
    case .ascii:
      let tokens = header.fields.reduce(0) { $0 + $1.count }
      // Each value needs at least one character: refuse before allocating.
      guard let minimum = checkedProduct(n, tokens), minimum <= available else {
        throw fail(
          .truncated,
          "POINTS \(n) with \(tokens) values each cannot fit in the \(available) bytes of data")
      }
      columns = Columns(points: n, roles: roles, attributes: attributeFields)
      try decodeASCII(bytes, header: header, roles: roles, into: &columns, path: path)
    case .binary:
      guard dataSize <= available else {
        throw fail(
          .truncated,
          "POINTS \(n) × \(header.pointSize) bytes need \(dataSize) bytes of data, the file has \(available)"
        )
      }
      try requireZeroPadding(bytes, from: start + dataSize, path: path)
      columns = Columns(points: n, roles: roles, attributes: attributeFields)
      var offsets = [Int]()
      var offset = start
      for f in header.fields {
        offsets.append(offset)
        offset += f.size * f.count
      }
      decodeFields(
        UnsafeRawPointer(bytes.baseAddress!), header: header, roles: roles,
        base: offsets, stride: header.fields.map { _ in header.pointSize }, into: &columns)
    case .binaryCompressed:
      guard available >= 8 else {
        throw fail(.truncated, "binary_compressed data has no size words (\(available) bytes)")
      }
      let raw = UnsafeRawPointer(bytes.baseAddress!)
      let compressed = Int(bits32(raw, start, false))
      let uncompressed = Int(bits32(raw, start + 4, false))
      guard uncompressed == dataSize else {
        throw fail(
          .sizeMismatch,
          "binary_compressed data says \(uncompressed) bytes uncompressed; POINTS \(n) × \(header.pointSize) bytes is \(dataSize)"
        )
      }
      guard compressed <= available - 8 else {
        throw fail(
          .truncated,
          "binary_compressed data says \(compressed) compressed bytes, the file has \(available - 8)"
        )
      }
      guard uncompressed <= compressed * LZF.maxExpansion + 64 else {
        throw fail(
          .sizeMismatch, "\(compressed) compressed bytes cannot decode to \(uncompressed) bytes")
      }
      try requireZeroPadding(bytes, from: start + 8 + compressed, path: path)
      let plain: [UInt8]
      do {
        plain = try LZF.decompress(
          UnsafeRawBufferPointer(start: raw + start + 8, count: compressed), count: uncompressed)
      } catch {
        throw fail(.corruptData, "binary_compressed data: \(error.description)")
      }
      columns = Columns(points: n, roles: roles, attributes: attributeFields)
      var bases = [Int]()
      var offset = 0
      for f in header.fields {
        bases.append(offset)
        offset += n * f.size * f.count
      }
      plain.withUnsafeBytes { p in
        decodeFields(
          p.baseAddress ?? raw, header: header, roles: roles, base: bases,
          stride: header.fields.map { $0.size * $0.count }, into: &columns)
      }
    }
    var cloud = PointCloud(
      positions: columns.positions, normals: columns.normals, colors: columns.colors,
      alpha: columns.alpha, intensity: columns.intensity,
      attributes: zip(attributeFields, columns.attributes).map {
        PointAttribute(name: $0.name, components: $0.count, values: $1)
      }, viewpoint: header.viewpoint)
    cloud.width = header.width
    cloud.height = header.height
    return cloud
  }

  /// PCL pads binary files with zeros to a page boundary; anything else after the data is an
  /// error.
  private static func requireZeroPadding(
    _ bytes: UnsafeBufferPointer<UInt8>, from offset: Int, path: String
  ) throws {
    var i = offset
    while i < bytes.count {
      if bytes[i] != 0 {
        throw PointFileError(
          .sizeMismatch, path: path,
          "\(bytes.count - offset) bytes follow the declared data and they are not zero padding")
      }
      i += 1
    }
  }

  /// Decodes binary values at `base[f] + i * stride[f] + c * size` for point i, component c.
  private static func decodeFields(
    _ raw: UnsafeRawPointer, header: PCDHeader, roles: [Role], base: [Int], stride: [Int],
    into columns: inout Columns
  ) {
    let n = header.points
    for (f, field) in header.fields.enumerated() {
      let type = ScalarType.pcd(type: field.type, size: field.size)!
      let b = base[f]
      let st = stride[f]
      switch roles[f] {
      case .position(let axis):
        for i in 0..<n {
          columns.positions[3 * i + axis] = type.loadFloat(raw, b + i * st, bigEndian: false)
        }
      case .normal(let axis):
        for i in 0..<n {
          columns.normals![3 * i + axis] = type.loadFloat(raw, b + i * st, bigEndian: false)
        }
      case .color:
        for i in 0..<n { columns.setColor(i, bits32(raw, b + i * st, false)) }
      case .intensity:
        for i in 0..<n { columns.intensity![i] = type.loadFloat(raw, b + i * st, bigEndian: false) }
      case .attribute(let a):
        let k = field.count
        for i in 0..<n {
          for c in 0..<k {
            columns.attributes[a][i * k + c] = type.loadFloat(
              raw, b + i * st + c * field.size, bigEndian: false)
          }
        }
      case .skip:
        break
      }
    }
  }

  private static func decodeASCII(
    _ bytes: UnsafeBufferPointer<UInt8>, header: PCDHeader, roles: [Role],
    into columns: inout Columns,
    path: String
  ) throws {
    var s = TextScanner(bytes, from: header.dataOffset, path: path)
    // Line numbers continue from the header.
    s.line = 1 + bytes[0..<header.dataOffset].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    let types = header.fields.map { ScalarType.pcd(type: $0.type, size: $0.size)! }
    let perPoint = header.fields.reduce(0) { $0 + $1.count }
    for i in 0..<header.points {
      guard s.nextContentLine() else {
        throw s.error(.truncated, "the data ends after \(i) of \(header.points) points")
      }
      let found = s.tokensLeftOnLine()
      guard found == perPoint else {
        throw s.error(.countMismatch, "point \(i) has \(found) values, the fields need \(perPoint)")
      }
      for (f, field) in header.fields.enumerated() {
        for c in 0..<field.count {
          let t = s.token()!
          // Built only for an error message.
          func what() -> String { "point \(i) field '\(field.name)'" }
          switch roles[f] {
          case .skip:
            continue
          case .color:
            // PCL writes packed colours as integers even when TYPE is F (their float bit
            // patterns can be NaN); older files wrote the float itself.
            let packed: UInt32
            if s.isDigits(t), let v = s.parseInt(t), let u = UInt32(exactly: v) {
              packed = u
            } else if types[f] == .float32, let v = s.parseFloat(t) {
              packed = v.bitPattern
            } else if let v = s.parseInt(t), let u = Int32(exactly: v) {
              packed = UInt32(bitPattern: u)
            } else {
              throw s.error(.badValue, "\(what()): '\(s.string(t))' is not a packed colour")
            }
            columns.setColor(i, packed)
            continue
          default:
            break
          }
          let value: Float
          if types[f].isInteger {
            guard let v = s.parseInt(t), fits(v, types[f]) else {
              throw s.error(
                .badValue, "\(what()): '\(s.string(t))' is not a \(field.type)\(field.size)")
            }
            value = Float(v)
          } else if types[f] == .float32 {
            guard let v = s.parseFloat(t) else {
              throw s.error(.badValue, "\(what()): '\(s.string(t))' is not a number")
            }
            value = v
          } else {
            guard let v = s.parseDouble(t) else {
              throw s.error(.badValue, "\(what()): '\(s.string(t))' is not a number")
            }
            value = Float(v)
          }
          switch roles[f] {
          case .position(let axis): columns.positions[3 * i + axis] = value
          case .normal(let axis): columns.normals![3 * i + axis] = value
          case .intensity: columns.intensity![i] = value
          case .attribute(let a): columns.attributes[a][i * field.count + c] = value
          case .color, .skip: break
          }
        }
      }
      s.skipLine()
    }
    if s.nextContentLine() {
      throw s.error(
        .countMismatch, "data continues after the \(header.points) points that POINTS declares")
    }
  }

  private static func fits(_ v: Int, _ type: ScalarType) -> Bool {
    switch type {
    case .int8: Int8(exactly: v) != nil
    case .uint8: UInt8(exactly: v) != nil
    case .int16: Int16(exactly: v) != nil
    case .uint16: UInt16(exactly: v) != nil
    case .int32: Int32(exactly: v) != nil
    case .uint32: UInt32(exactly: v) != nil
    case .int64: true
    case .uint64: v >= 0
    case .float32, .float64: true
    }
  }

  // MARK: Writing

  /// The bytes of a PCD v0.7 file holding `cloud` (organisation, viewpoint and every field
  /// kept); `path` names the destination in errors.
  public static func encode(_ cloud: PointCloud, encoding: PCDEncoding, path: String = "<memory>")
    throws -> [UInt8]
  {
    try cloud.validate(path: path)
    let n = cloud.count
    // (name, type letter, count) of each field; every value is 4 bytes.
    var fields: [(String, String, Int)] = [("x", "F", 1), ("y", "F", 1), ("z", "F", 1)]
    if cloud.normals != nil {
      fields += [("normal_x", "F", 1), ("normal_y", "F", 1), ("normal_z", "F", 1)]
    }
    // PCL types a packed colour F in binary files and U in text ones (as text its float bit
    // pattern could be a NaN).
    if cloud.colors != nil {
      fields.append((cloud.alpha != nil ? "rgba" : "rgb", encoding == .ascii ? "U" : "F", 1))
    }
    if cloud.intensity != nil { fields.append(("intensity", "F", 1)) }
    // An attribute may carry a standard name the cloud does not otherwise use (a lone
    // `normal_x`), but not one already written, nor padding's `_`.
    var taken = Set(fields.map(\.0) + ["_"])
    for a in cloud.attributes {
      guard taken.insert(a.name).inserted else {
        throw PointFileError(
          .invalidWrite, path: path, "attribute '\(a.name)' clashes with another field")
      }
      fields.append((a.name, "F", a.components))
    }
    let vp = cloud.viewpoint
    var out = ByteSink()
    out.text("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n")
    out.text("FIELDS " + fields.map(\.0).joined(separator: " ") + "\n")
    out.text("SIZE " + fields.map { _ in "4" }.joined(separator: " ") + "\n")
    out.text("TYPE " + fields.map(\.1).joined(separator: " ") + "\n")
    out.text("COUNT " + fields.map { String($0.2) }.joined(separator: " ") + "\n")
    out.text("WIDTH \(cloud.width)\nHEIGHT \(cloud.height)\n")
    let viewpoint = [
      vp.translation.x, vp.translation.y, vp.translation.z, vp.rotation[0], vp.rotation[1],
      vp.rotation[2], vp.rotation[3],
    ]
    out.text("VIEWPOINT " + viewpoint.map(pcdNumber).joined(separator: " ") + "\n")
    out.text("POINTS \(n)\nDATA \(encoding.rawValue)\n")

    // Each field as (values, stride, offset, components): value c of point i is
    // values[i * stride + offset + c]; a packed colour is carried as its Float bit pattern.
    var columns: [(values: [Float], stride: Int, offset: Int, k: Int)] = (0..<3).map {
      (cloud.positions, 3, $0, 1)
    }
    if let normals = cloud.normals { columns += (0..<3).map { (normals, 3, $0, 1) } }
    var colorColumn = -1
    if let c = cloud.colors {
      colorColumn = columns.count
      let packed = (0..<n).map { i -> Float in
        let a = UInt32(cloud.alpha?[i] ?? 255)
        return Float(
          bitPattern: a << 24 | UInt32(c[3 * i]) << 16 | UInt32(c[3 * i + 1]) << 8
            | UInt32(c[3 * i + 2]))
      }
      columns.append((packed, 1, 0, 1))
    }
    if let intensity = cloud.intensity { columns.append((intensity, 1, 0, 1)) }
    for a in cloud.attributes { columns.append((a.values, a.components, 0, a.components)) }

    switch encoding {
    case .ascii:
      var line = ""
      for i in 0..<n {
        line.removeAll(keepingCapacity: true)
        for (f, column) in columns.enumerated() {
          for c in 0..<column.k {
            if !line.isEmpty { line += " " }
            let v = column.values[i * column.stride + column.offset + c]
            line += f == colorColumn ? String(v.bitPattern) : floatText(v)
          }
        }
        line += "\n"
        out.text(line)
      }
    case .binary:
      out.bytes.reserveCapacity(out.bytes.count + n * 4 * columns.reduce(0) { $0 + $1.k })
      for i in 0..<n {
        for column in columns {
          for c in 0..<column.k { out.append(column.values[i * column.stride + column.offset + c]) }
        }
      }
    case .binaryCompressed:
      var plain = ByteSink()
      plain.bytes.reserveCapacity(n * 4 * columns.reduce(0) { $0 + $1.k })
      for column in columns {
        for i in 0..<n {
          for c in 0..<column.k {
            plain.append(column.values[i * column.stride + column.offset + c])
          }
        }
      }
      guard let size = UInt32(exactly: plain.bytes.count) else {
        throw PointFileError(
          .invalidWrite, path: path, "binary_compressed data is limited to 4 GiB")
      }
      let compressed = plain.bytes.withUnsafeBytes { LZF.compress($0) }
      out.append(UInt32(compressed.count))
      out.append(size)
      out.bytes += compressed
    }
    return out.bytes
  }

  /// A viewpoint number as PCL writes it (`0`, `1`, `0.5`).
  private static func pcdNumber(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : doubleText(v)
  }
}
