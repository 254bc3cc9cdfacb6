import Foundation

// The PLY format (Turk's polygon file format): a text header (`ply`, `format`, `element NAME N`,
// `property TYPE NAME`, `property list COUNT_TYPE ITEM_TYPE NAME`, `end_header`), then every
// element's instances in header order, as text lines or packed binary in either byte order.

/// A PLY file's data encoding.
public enum PLYEncoding: String, Sendable, CaseIterable {
  /// One text line per element instance.
  case ascii
  /// Packed little-endian values.
  case binaryLittleEndian = "binary_little_endian"
  /// Packed big-endian values.
  case binaryBigEndian = "binary_big_endian"
}

/// One property of a PLY element.
public struct PLYProperty: Sendable, Equatable {
  /// Name (`x`, `nx`, `red`, `vertex_indices`, …).
  public var name: String
  /// Value type as written (`float`, `uchar`, `int32`, …); the item type for a list.
  public var type: String
  /// For a list property, the type of its length prefix.
  public var listCountType: String?
}

/// One element of a PLY header.
public struct PLYElement: Sendable, Equatable {
  /// Name (`vertex`, `face`, …).
  public var name: String
  /// Number of instances.
  public var count: Int
  /// Properties, in order.
  public var properties: [PLYProperty]
}

/// A parsed PLY header.
public struct PLYHeader: Sendable, Equatable {
  /// The data encoding.
  public var encoding: PLYEncoding
  /// Elements, in file order.
  public var elements: [PLYElement]
  /// `comment` lines, without the keyword.
  public var comments: [String]
  /// Byte offset of the first data byte.
  public var dataOffset: Int
}

/// Reads and writes PLY files: vertices with positions (float or double), normals, colours and
/// any other scalar properties; faces as vertex-index lists (polygons become triangle fans).
public enum PLY {
  /// What a PLY file holds: its vertices, and a mesh when it has faces.
  public struct Contents: Sendable {
    /// The header.
    public var header: PLYHeader
    /// The vertex element as a cloud.
    public var vertices: PointCloud
    /// The mesh, when the file has a face element with at least one face.
    public var mesh: TriangleMesh?
  }

  /// Reads the PLY file at `url`.
  public static func read(contentsOf url: URL) throws -> Contents {
    try decode(readFileBytes(url), path: url.path)
  }

  /// Parses a whole PLY file held in `data`; `path` names it in errors.
  public static func decode(_ data: Data, path: String = "<memory>") throws -> Contents {
    try data.withUnsafeBytes { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      let header = try parseHeader(bytes, path: path)
      return try decodeBody(bytes, header: header, path: path)
    }
  }

  /// Writes `cloud` (no faces) to `url` atomically.
  public static func write(
    _ cloud: PointCloud, to url: URL, encoding: PLYEncoding = .binaryLittleEndian
  ) throws {
    try writeFileBytes(encode(cloud, triangles: nil, encoding: encoding, path: url.path), to: url)
  }

  /// Writes `mesh` (vertices and triangles) to `url` atomically.
  public static func write(
    _ mesh: TriangleMesh, to url: URL, encoding: PLYEncoding = .binaryLittleEndian
  ) throws {
    try mesh.validate(path: url.path)
    try writeFileBytes(
      encode(mesh.vertices, triangles: mesh.triangles, encoding: encoding, path: url.path), to: url)
  }

  // MARK: Header

  static func parseHeader(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws -> PLYHeader {
    var s = TextScanner(bytes, path: path)
    guard let magic = s.token(), s.string(magic) == "ply", s.atLineEnd() else {
      throw PointFileError(.badHeader, path: path, "not a PLY file (no 'ply' line)")
    }
    s.skipLine()
    var encoding: PLYEncoding?
    var elements = [PLYElement]()
    var comments = [String]()
    while true {
      guard s.position < min(bytes.count, 1 << 20) else {
        throw PointFileError(.badHeader, path: path, "the header has no end_header line")
      }
      if s.atLineEnd() {
        s.skipLine()
        continue
      }
      let key = s.string(s.token()!)
      switch key {
      case "comment", "obj_info":
        let text = s.restOfLine()
        if key == "comment" { comments.append(text) }
        continue
      case "format":
        guard encoding == nil else { throw s.error(.badHeader, "two format lines") }
        guard let e = s.token(), let v = s.token() else {
          throw s.error(.badHeader, "format needs an encoding and a version")
        }
        guard let enc = PLYEncoding(rawValue: s.string(e)) else {
          throw s.error(.unsupported, "unknown format '\(s.string(e))'")
        }
        guard ["1.0", "1"].contains(s.string(v)) else {
          throw s.error(.unsupported, "PLY version \(s.string(v)) (only 1.0 exists)")
        }
        encoding = enc
      case "element":
        guard let n = s.token(), let c = s.token() else {
          throw s.error(.badHeader, "element needs a name and a count")
        }
        guard let count = s.parseInt(c), count >= 0 else {
          throw s.error(.badHeader, "element \(s.string(n)): bad count '\(s.string(c))'")
        }
        elements.append(PLYElement(name: s.string(n), count: count, properties: []))
      case "property":
        guard !elements.isEmpty else { throw s.error(.badHeader, "property before any element") }
        guard let t = s.token() else { throw s.error(.badHeader, "property without a type") }
        var property: PLYProperty
        if s.string(t) == "list" {
          guard let ct = s.token(), let it = s.token(), let n = s.token() else {
            throw s.error(.badHeader, "list property needs a count type, an item type and a name")
          }
          guard let countType = ScalarType.ply(s.string(ct)), countType.isInteger else {
            throw s.error(.badHeader, "bad list count type '\(s.string(ct))'")
          }
          guard ScalarType.ply(s.string(it)) != nil else {
            throw s.error(.badHeader, "unknown type '\(s.string(it))'")
          }
          property = PLYProperty(name: s.string(n), type: s.string(it), listCountType: s.string(ct))
        } else {
          guard ScalarType.ply(s.string(t)) != nil else {
            throw s.error(.badHeader, "unknown type '\(s.string(t))'")
          }
          guard let n = s.token() else { throw s.error(.badHeader, "property without a name") }
          property = PLYProperty(name: s.string(n), type: s.string(t), listCountType: nil)
        }
        let last = elements.count - 1
        guard !elements[last].properties.contains(where: { $0.name == property.name }) else {
          throw s.error(
            .badHeader, "property '\(property.name)' appears twice in '\(elements[last].name)'")
        }
        elements[last].properties.append(property)
      case "end_header":
        guard s.atLineEnd() else { throw s.error(.badHeader, "junk after end_header") }
        s.skipLine()
        guard let encoding else { throw PointFileError(.badHeader, path: path, "no format line") }
        return PLYHeader(
          encoding: encoding, elements: elements, comments: comments, dataOffset: s.position)
      default:
        throw s.error(.badHeader, "unknown header keyword '\(key)'")
      }
      guard s.atLineEnd() else { throw s.error(.badHeader, "junk after \(key)") }
      s.skipLine()
    }
  }

  // MARK: Body

  /// What a vertex property becomes.
  private enum Role {
    case position(Int)
    case normal(Int)
    case color(Int)
    case alpha
    case intensity
    case attribute(Int)
    case skip
  }

  private static func vertexRoles(_ element: PLYElement) -> (roles: [Role], attributes: [String]) {
    let scalars = Set(element.properties.filter { $0.listCountType == nil }.map(\.name))
    let normals = ["nx", "ny", "nz"].allSatisfy(scalars.contains)
    let rgb = ["red", "green", "blue"].allSatisfy(scalars.contains)
    let diffuse =
      !rgb && ["diffuse_red", "diffuse_green", "diffuse_blue"].allSatisfy(scalars.contains)
    var attributes = [String]()
    let roles = element.properties.map { p -> Role in
      if p.listCountType != nil { return .skip }
      switch p.name {
      case "x": return .position(0)
      case "y": return .position(1)
      case "z": return .position(2)
      case "nx" where normals: return .normal(0)
      case "ny" where normals: return .normal(1)
      case "nz" where normals: return .normal(2)
      case "red" where rgb, "diffuse_red" where diffuse: return .color(0)
      case "green" where rgb, "diffuse_green" where diffuse: return .color(1)
      case "blue" where rgb, "diffuse_blue" where diffuse: return .color(2)
      case "alpha" where rgb || diffuse: return .alpha
      case "intensity", "scalar_intensity": return .intensity
      default:
        attributes.append(p.name)
        return .attribute(attributes.count - 1)
      }
    }
    return (roles, attributes)
  }

  /// A colour channel as 8 bits: 8-bit integers as they are, 16-bit ones by their high byte,
  /// floats in [0, 1] scaled by 255.
  private static func colorByte(_ v: Double, _ type: ScalarType) -> UInt8? {
    switch type {
    case .uint16: return UInt8(exactly: (v / 256).rounded(.down))
    case .float32, .float64:
      guard v >= 0, v <= 1 else { return nil }
      return UInt8((v * 255).rounded())
    default: return UInt8(exactly: v)
    }
  }

  static func decodeBody(_ bytes: UnsafeBufferPointer<UInt8>, header: PLYHeader, path: String)
    throws -> Contents
  {
    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, message)
    }
    guard let vertexIndex = header.elements.firstIndex(where: { $0.name == "vertex" }) else {
      throw fail(.missingField, "no 'vertex' element")
    }
    let vertexElement = header.elements[vertexIndex]
    for axis in ["x", "y", "z"] {
      guard vertexElement.properties.contains(where: { $0.name == axis && $0.listCountType == nil })
      else { throw fail(.missingField, "the vertex element has no '\(axis)' property") }
    }
    let faceIndex = header.elements.firstIndex(where: { $0.name == "face" })
    let indexProperty = faceIndex.flatMap { f in
      header.elements[f].properties.firstIndex {
        $0.listCountType != nil && ($0.name == "vertex_indices" || $0.name == "vertex_index")
      }
    }
    if let faceIndex, header.elements[faceIndex].count > 0, indexProperty == nil {
      throw fail(.missingField, "the face element has no vertex_indices list")
    }
    // PCL writes the missing points of organised clouds into PLY files as NaN, so a cloud may
    // hold them (as in PCD); a mesh's vertices must be finite.
    let isMesh = faceIndex.map { header.elements[$0].count > 0 } ?? false

    // Refuse counts the remaining bytes cannot hold before allocating anything.
    let available = bytes.count - header.dataOffset
    let binary = header.encoding != .ascii
    var minimum = 0
    for e in header.elements {
      // Binary: every fixed value and list length; text: a character per value.
      let perInstance = e.properties.reduce(0) { sum, p in
        sum + (binary ? ScalarType.ply(p.listCountType ?? p.type)!.size : 1)
      }
      guard let m = checkedProduct(e.count, perInstance),
        case let (total, overflow) = minimum.addingReportingOverflow(m), !overflow,
        total <= available
      else {
        throw fail(
          .truncated,
          "element '\(e.name)' declares \(e.count) instances; the \(available) bytes of data cannot hold them"
        )
      }
      minimum = total
    }

    let n = vertexElement.count
    let (roles, attributeNames) = vertexRoles(vertexElement)
    var positions = [Float](repeating: 0, count: 3 * n)
    var normals: [Float]? =
      roles.contains { if case .normal = $0 { true } else { false } }
      ? [Float](repeating: 0, count: 3 * n) : nil
    var colors: [UInt8]? =
      roles.contains { if case .color = $0 { true } else { false } }
      ? [UInt8](repeating: 0, count: 3 * n) : nil
    var alpha: [UInt8]? =
      roles.contains { if case .alpha = $0 { true } else { false } }
      ? [UInt8](repeating: 0, count: n) : nil
    var intensity: [Float]? =
      roles.contains { if case .intensity = $0 { true } else { false } }
      ? [Float](repeating: 0, count: n) : nil
    var attributes = attributeNames.map { _ in [Float](repeating: 0, count: n) }
    var faces = FaceCollector(vertexCount: n, path: path)
    let vertexTypes = vertexElement.properties.map { ScalarType.ply($0.type)! }

    /// Stores vertex `i`'s property `p`.
    func store(_ i: Int, _ p: Int, _ value: Double) throws {
      switch roles[p] {
      case .position(let axis):
        let v = Float(value)
        guard v.isFinite || !isMesh else {
          throw fail(.nonFiniteValue, "mesh vertex \(i) has a non-finite coordinate (\(value))")
        }
        positions[3 * i + axis] = v
      case .normal(let axis):
        let v = Float(value)
        guard v.isFinite || !isMesh else {
          throw fail(.nonFiniteValue, "mesh vertex \(i) has a non-finite normal")
        }
        normals![3 * i + axis] = v
      case .color(let channel):
        guard let c = colorByte(value, vertexTypes[p]) else {
          throw fail(.badValue, "vertex \(i): colour value \(value) is out of range")
        }
        colors![3 * i + channel] = c
      case .alpha:
        guard let c = colorByte(value, vertexTypes[p]) else {
          throw fail(.badValue, "vertex \(i): alpha value \(value) is out of range")
        }
        alpha![i] = c
      case .intensity: intensity![i] = Float(value)
      case .attribute(let a): attributes[a][i] = Float(value)
      case .skip: break
      }
    }

    if binary {
      let big = header.encoding == .binaryBigEndian
      let raw = UnsafeRawPointer(bytes.baseAddress!)
      var offset = header.dataOffset
      func need(_ k: Int, _ what: @autoclosure () -> String) throws {
        guard k <= bytes.count - offset else {
          throw fail(.truncated, "the data ends inside \(what())")
        }
      }
      for (ei, e) in header.elements.enumerated() {
        let types = e.properties.map { ScalarType.ply($0.type)! }
        let countTypes = e.properties.map { $0.listCountType.flatMap(ScalarType.ply) }
        let fixed = countTypes.allSatisfy { $0 == nil }
        if fixed && ei != vertexIndex {
          // Fixed-size instances of an element Graft does not use: jump over them.
          let size = types.reduce(0) { $0 + $1.size } * e.count
          try need(size, "element '\(e.name)'")
          offset += size
          continue
        }
        for i in 0..<e.count {
          for (p, type) in types.enumerated() {
            if let ct = countTypes[p] {
              try need(ct.size, "\(e.name) \(i)")
              guard let k = ct.loadInt(raw, offset, bigEndian: big), k >= 0 else {
                throw fail(.badValue, "\(e.name) \(i): negative list length")
              }
              offset += ct.size
              guard let bytesNeeded = checkedProduct(k, type.size) else {
                throw fail(.badValue, "\(e.name) \(i): list length \(k) overflows")
              }
              try need(bytesNeeded, "\(e.name) \(i)")
              if ei == faceIndex, p == indexProperty {
                guard type.isInteger else {
                  throw fail(.badHeader, "face vertex indices are not integers")
                }
                var corners = [Int]()
                corners.reserveCapacity(k)
                for c in 0..<k {
                  corners.append(type.loadInt(raw, offset + c * type.size, bigEndian: big) ?? -1)
                }
                try faces.add(corners, face: "face \(i)")
              }
              offset += bytesNeeded
            } else {
              try need(type.size, "\(e.name) \(i)")
              if ei == vertexIndex { try store(i, p, type.load(raw, offset, bigEndian: big)) }
              offset += type.size
            }
          }
        }
      }
      if offset < bytes.count,
        !bytes[offset...].allSatisfy({ $0 == 0x0A || $0 == 0x0D || $0 == 0x20 || $0 == 0 })
      {
        throw fail(.sizeMismatch, "\(bytes.count - offset) bytes follow the last element")
      }
    } else {
      var s = TextScanner(bytes, from: header.dataOffset, path: path)
      s.line = 1 + bytes[0..<header.dataOffset].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
      for (ei, e) in header.elements.enumerated() {
        let types = e.properties.map { ScalarType.ply($0.type)! }
        for i in 0..<e.count {
          guard s.nextContentLine() else {
            throw s.error(.truncated, "the data ends after \(i) of \(e.count) \(e.name) elements")
          }
          for (p, property) in e.properties.enumerated() {
            // Built only for an error message.
            func what() -> String { "\(e.name) \(i) property '\(property.name)'" }
            if property.listCountType != nil {
              let k = try s.int(what() + " length")
              guard k >= 0 else { throw s.error(.badValue, "\(what()): negative list length") }
              var corners = [Int]()
              for _ in 0..<k {
                if ei == faceIndex, p == indexProperty {
                  corners.append(try s.int(what()))
                } else {
                  _ = try s.double(what())
                }
              }
              if ei == faceIndex, p == indexProperty { try faces.add(corners, face: "face \(i)") }
            } else if ei == vertexIndex {
              let value: Double
              if types[p] == .float32 {
                value = Double(try s.float(what()))
              } else if types[p].isInteger {
                value = Double(try s.int(what()))
              } else {
                value = try s.double(what())
              }
              try store(i, p, value)
            } else {
              _ = try s.double(what())
            }
          }
          try s.expectLineEnd("\(e.name) \(i)")
        }
      }
      if s.nextContentLine() {
        throw s.error(.countMismatch, "data continues after the last declared element")
      }
    }

    let cloud = PointCloud(
      positions: positions, normals: normals, colors: colors, alpha: alpha, intensity: intensity,
      attributes: zip(attributeNames, attributes).map { PointAttribute(name: $0, values: $1) })
    let mesh =
      isMesh
      ? TriangleMesh(vertices: cloud, triangles: faces.triangles, faceCount: faces.faces) : nil
    return Contents(header: header, vertices: cloud, mesh: mesh)
  }

  // MARK: Writing

  /// The bytes of a PLY file holding `cloud` and, when given, `triangles`.
  public static func encode(
    _ cloud: PointCloud, triangles: [UInt32]?, encoding: PLYEncoding, path: String = "<memory>"
  ) throws -> [UInt8] {
    try cloud.validate(path: path)
    let n = cloud.count
    for i in 0..<n where !cloud.isFinite(i) {
      throw PointFileError(
        .invalidWrite, path: path,
        "point \(i) has a non-finite coordinate; PLY holds finite points (use dense() first)")
    }
    var header = "ply\nformat \(encoding.rawValue) 1.0\ncomment written by Graft\n"
    header += "element vertex \(n)\nproperty float x\nproperty float y\nproperty float z\n"
    if cloud.normals != nil {
      header += "property float nx\nproperty float ny\nproperty float nz\n"
    }
    if cloud.colors != nil {
      header += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
      if cloud.alpha != nil { header += "property uchar alpha\n" }
    }
    if cloud.intensity != nil { header += "property float intensity\n" }
    var taken: Set = ["x", "y", "z"]
    if cloud.normals != nil { taken.formUnion(["nx", "ny", "nz"]) }
    if cloud.colors != nil { taken.formUnion(["red", "green", "blue", "alpha"]) }
    if cloud.intensity != nil { taken.insert("intensity") }
    for a in cloud.attributes {
      let names = a.components == 1 ? [a.name] : (0..<a.components).map { "\(a.name)_\($0)" }
      for name in names {
        // A reader refuses a property named twice.
        guard taken.insert(name).inserted else {
          throw PointFileError(
            .invalidWrite, path: path, "attribute '\(name)' clashes with another property")
        }
        header += "property float \(name)\n"
      }
    }
    if let triangles {
      header += "element face \(triangles.count / 3)\nproperty list uchar int vertex_indices\n"
    }
    header += "end_header\n"
    var out = ByteSink()
    out.text(header)
    let big = encoding == .binaryBigEndian
    if encoding == .ascii {
      var line = ""
      for i in 0..<n {
        line.removeAll(keepingCapacity: true)
        var values = cloud.positions[(3 * i)..<(3 * i + 3)].map(floatText)
        if let normals = cloud.normals { values += normals[(3 * i)..<(3 * i + 3)].map(floatText) }
        if let colors = cloud.colors { values += colors[(3 * i)..<(3 * i + 3)].map { String($0) } }
        if let alpha = cloud.alpha { values.append(String(alpha[i])) }
        if let intensity = cloud.intensity { values.append(floatText(intensity[i])) }
        for a in cloud.attributes {
          values += a.values[(i * a.components)..<((i + 1) * a.components)].map(floatText)
        }
        line = values.joined(separator: " ")
        out.text(line + "\n")
      }
      if let triangles {
        for t in 0..<(triangles.count / 3) {
          out.text("3 \(triangles[3 * t]) \(triangles[3 * t + 1]) \(triangles[3 * t + 2])\n")
        }
      }
    } else {
      for i in 0..<n {
        for k in 0..<3 { out.append(cloud.positions[3 * i + k], bigEndian: big) }
        if let normals = cloud.normals {
          for k in 0..<3 { out.append(normals[3 * i + k], bigEndian: big) }
        }
        if let colors = cloud.colors { out.bytes += colors[(3 * i)..<(3 * i + 3)] }
        if let alpha = cloud.alpha { out.bytes.append(alpha[i]) }
        if let intensity = cloud.intensity { out.append(intensity[i], bigEndian: big) }
        for a in cloud.attributes {
          for c in 0..<a.components { out.append(a.values[i * a.components + c], bigEndian: big) }
        }
      }
      if let triangles {
        for t in 0..<(triangles.count / 3) {
          out.bytes.append(3)
          for k in 0..<3 {
            guard let index = Int32(exactly: triangles[3 * t + k]) else {
              throw PointFileError(.invalidWrite, path: path, "vertex index beyond int32")
            }
            out.append(index, bigEndian: big)
          }
        }
      }
    }
    return out.bytes
  }
}
