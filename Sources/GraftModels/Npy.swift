import Foundation

// A `.npy` file is the magic "\x93NUMPY", a version byte pair, a little-endian header length
// (2 bytes in version 1, 4 in 2 and 3), then a Python dict literal
// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` (Latin-1 text before version 3,
// UTF-8 from it) padded with spaces and a newline, then the raw elements.

/// The first bytes of every `.npy` file: "\x93NUMPY".
let npyMagic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
/// Larger headers are refused (NumPy's own reader refuses more than 10 000 bytes by default).
private let maxNpyHeaderLength = 1 << 20

/// An element type that Graft reads from `.npy` data.
public enum NumpyDType: String, Sendable, CaseIterable {
  /// IEEE half (`f2`).
  case float16
  /// IEEE single (`f4`).
  case float32
  /// IEEE double (`f8`), read by rounding to Float.
  case float64
  /// bfloat16. NumPy has no such type: JAX's (ml_dtypes') bfloat16 arrays are saved as 2-byte
  /// opaque elements (`V2`), and every 2-byte void array is read as bfloat16.
  case bfloat16
  /// Signed integers of 1, 2, 4 and 8 bytes.
  case int8, int16, int32, int64
  /// Unsigned integers of 1, 2, 4 and 8 bytes.
  case uint8, uint16, uint32, uint64
  /// NumPy's bool (`b1`), one byte per element, read as 0 or 1.
  case bool

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .int8, .uint8, .bool: 1
    case .float16, .bfloat16, .int16, .uint16: 2
    case .float32, .int32, .uint32: 4
    case .float64, .int64, .uint64: 8
    }
  }

  /// True for the integer and bool types (the ones `intArray` reads).
  public var isInteger: Bool {
    switch self {
    case .float16, .float32, .float64, .bfloat16: false
    default: true
    }
  }

  /// The type a `descr` string such as `<f4`, `>i8` or `|u1` names, and whether its bytes are
  /// big-endian; nil for anything else.
  static func parse(_ descr: String) -> (NumpyDType, bigEndian: Bool)? {
    var code = Substring(descr)
    var bigEndian = false
    if let first = code.first, "<>|=".contains(first) {
      bigEndian = first == ">"
      code = code.dropFirst()
    }
    let type: NumpyDType
    switch code {
    case "f2", "e": type = .float16
    case "f4", "f": type = .float32
    case "f8", "d": type = .float64
    case "V2": type = .bfloat16
    case "i1", "b": type = .int8
    case "i2", "h": type = .int16
    case "i4", "i": type = .int32
    case "i8", "q": type = .int64
    case "u1", "B": type = .uint8
    case "u2", "H": type = .uint16
    case "u4", "I": type = .uint32
    case "u8", "Q": type = .uint64
    case "b1", "?": type = .bool
    default: return nil
    }
    // One-byte elements have no byte order.
    return (type, bigEndian && type.byteSize > 1)
  }
}

// MARK: - Header

/// What a `.npy` file's header says, checked against the file's size.
struct NpyHeader {
  /// The format version: 1, 2 or 3.
  let version: Int
  /// Bytes of magic, version, length and header dict before the elements.
  let length: Int
  /// The `descr` entry (such as `<f4`), or a rendering of a structured type's list.
  let descr: String
  let fortranOrder: Bool
  let shape: [Int]

  /// The element type, or nil when Graft cannot read it.
  var dtype: (NumpyDType, bigEndian: Bool)? { NumpyDType.parse(descr) }

  /// Parses the header of a `.npy` file of `size` bytes whose first bytes `prefix(n)` returns
  /// (fewer when the file is shorter), and checks that the rest holds the elements the shape and
  /// a readable element type need. Errors name `member` of the archive at `path`.
  init(size: Int, prefix: (Int) throws -> [UInt8], path: String, member: String) throws {
    func fail(_ kind: NumpyArchiveError.Kind, _ message: String) -> NumpyArchiveError {
      NumpyArchiveError(kind: kind, path: path, member: member, message: message)
    }
    let preamble = try prefix(12)
    guard preamble.count >= 10, preamble.starts(with: npyMagic) else {
      throw fail(.invalidNpy, "not a .npy array (no \\x93NUMPY magic)")
    }
    let major = Int(preamble[6])
    let minor = Int(preamble[7])
    let dictStart: Int
    let dictLength: Int
    switch major {
    case 1:
      dictStart = 10
      dictLength = Int(preamble[8]) | Int(preamble[9]) << 8
    case 2, 3:
      guard preamble.count >= 12 else { throw fail(.invalidNpy, "the .npy header is truncated") }
      dictStart = 12
      dictLength = preamble[8..<12].enumerated().reduce(0) { $0 | Int($1.1) << (8 * $1.0) }
    default:
      throw fail(.invalidNpy, "unsupported .npy format version \(major).\(minor)")
    }
    guard dictLength <= maxNpyHeaderLength else {
      throw fail(
        .invalidNpy,
        "the .npy header claims \(dictLength) bytes (limit \(maxNpyHeaderLength))")
    }
    let length = dictStart + dictLength
    let headerBytes = try prefix(length)
    guard headerBytes.count == length else {
      throw fail(
        .truncated, "the .npy header needs \(length) bytes, the member has \(headerBytes.count)")
    }
    let text =
      major == 3
      ? String(decoding: headerBytes[dictStart...], as: UTF8.self)
      : String(String.UnicodeScalarView(headerBytes[dictStart...].map { Unicode.Scalar($0) }))
    do {
      (descr, fortranOrder, shape) = try Self.parseDict(text)
    } catch {
      throw fail(
        .invalidNpy,
        "bad .npy header \(text.trimmingCharacters(in: .whitespacesAndNewlines)): "
          + error.message)
    }
    version = major
    self.length = length

    if let dtype = NumpyDType.parse(descr)?.0 {
      var need = dtype.byteSize
      var overflow = false
      for extent in shape where !overflow {
        (need, overflow) = need.multipliedReportingOverflow(by: extent)
      }
      let have = size - length
      guard !overflow, need == have else {
        let needText = overflow ? "more than \(Int.max)" : "\(need)"
        throw fail(
          !overflow && need > have ? .truncated : .dataSizeMismatch,
          "shape \(shape) of \(descr) needs \(needText) bytes of data, the member has \(have)")
      }
    }
  }

  /// The three entries of the header dict.
  private static func parseDict(_ text: String) throws(PyLiteralParser.Failure) -> (
    descr: String, fortranOrder: Bool, shape: [Int]
  ) {
    typealias Failure = PyLiteralParser.Failure
    var parser = PyLiteralParser(Array(text.unicodeScalars))
    guard case .dict(let entries) = try parser.parseDocument() else {
      throw Failure(message: "not a dict")
    }
    var seen: [String: PyLiteral] = [:]
    for (key, value) in entries {
      guard case .string(let k) = key else { throw Failure(message: "a key is not a string") }
      seen[k] = value
    }
    guard Set(seen.keys) == ["descr", "fortran_order", "shape"] else {
      throw Failure(
        message: "keys are \(seen.keys.sorted()), expected descr, fortran_order, shape")
    }
    let descr: String
    switch seen["descr"]! {
    case .string(let s): descr = s
    case let other: descr = other.rendered  // a structured type (list of fields)
    }
    guard case .bool(let fortranOrder) = seen["fortran_order"]! else {
      throw Failure(message: "fortran_order is not True or False")
    }
    guard case .tuple(let items) = seen["shape"]! else {
      throw Failure(message: "shape is not a tuple")
    }
    var shape: [Int] = []
    for item in items {
      guard case .int(let extent) = item, extent >= 0 else {
        throw Failure(message: "shape has an entry that is not an integer ≥ 0")
      }
      shape.append(extent)
    }
    return (descr, fortranOrder, shape)
  }
}

/// The subset of Python literals a `.npy` header uses.
private indirect enum PyLiteral {
  case string(String)
  case int(Int)
  case bool(Bool)
  case none
  case tuple([PyLiteral])
  case list([PyLiteral])
  case dict([(PyLiteral, PyLiteral)])

  /// Python-like source text, for messages.
  var rendered: String {
    switch self {
    case .string(let s): "'\(s)'"
    case .int(let v): "\(v)"
    case .bool(let b): b ? "True" : "False"
    case .none: "None"
    case .tuple(let items):
      "(" + items.map(\.rendered).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
    case .list(let items): "[" + items.map(\.rendered).joined(separator: ", ") + "]"
    case .dict(let entries):
      "{" + entries.map { "\($0.0.rendered): \($0.1.rendered)" }.joined(separator: ", ") + "}"
    }
  }
}

/// Parses dicts, tuples, lists, quoted strings, integers (an old `L` suffix allowed), True, False
/// and None.
private struct PyLiteralParser {
  struct Failure: Error { let message: String }

  let text: [Unicode.Scalar]
  var index = 0
  var depth = 0

  init(_ text: [Unicode.Scalar]) { self.text = text }

  mutating func parseDocument() throws(Failure) -> PyLiteral {
    let value = try parseValue()
    skipSpace()
    guard index == text.count else { throw unexpected("after the header dict") }
    return value
  }

  func unexpected(_ context: String) -> Failure {
    guard index < text.count else { return Failure(message: "unexpected end \(context)") }
    return Failure(message: "unexpected '\(Character(text[index]))' at \(index) \(context)")
  }

  mutating func skipSpace() {
    while index < text.count, text[index].properties.isWhitespace { index += 1 }
  }

  mutating func consume(_ c: Unicode.Scalar) -> Bool {
    skipSpace()
    guard index < text.count, text[index] == c else { return false }
    index += 1
    return true
  }

  mutating func parseValue() throws(Failure) -> PyLiteral {
    skipSpace()
    guard index < text.count else { throw unexpected("where a value was expected") }
    depth += 1
    defer { depth -= 1 }
    guard depth <= 32 else { throw Failure(message: "nested too deeply") }
    let c = text[index]
    switch c {
    case "{":
      index += 1
      var entries: [(PyLiteral, PyLiteral)] = []
      while !consume("}") {
        let key = try parseValue()
        guard consume(":") else { throw unexpected("where ':' was expected") }
        entries.append((key, try parseValue()))
        if !consume(",") {
          guard consume("}") else { throw unexpected("where ',' or '}' was expected") }
          break
        }
      }
      return .dict(entries)
    case "(", "[":
      index += 1
      let close: Unicode.Scalar = c == "(" ? ")" : "]"
      var items: [PyLiteral] = []
      var sawComma = false
      while !consume(close) {
        items.append(try parseValue())
        sawComma = consume(",")
        if !sawComma {
          guard consume(close) else { throw unexpected("where ',' or '\(close)' was expected") }
          break
        }
      }
      // `(3)` is just 3 in Python; only `(3,)` is a tuple.
      if c == "(" && items.count == 1 && !sawComma { return items[0] }
      return c == "(" ? .tuple(items) : .list(items)
    case "'", "\"":
      index += 1
      var s = String.UnicodeScalarView()
      while true {
        guard index < text.count else { throw unexpected("in a string") }
        let d = text[index]
        index += 1
        if d == c { break }
        if d == "\\" {
          guard index < text.count else { throw unexpected("in a string") }
          s.append(text[index])
          index += 1
        } else {
          s.append(d)
        }
      }
      return .string(String(s))
    case "-", "+", "0"..."9":
      var digits = ""
      if c == "-" || c == "+" {
        if c == "-" { digits = "-" }
        index += 1
      }
      while index < text.count, ("0"..."9").contains(text[index]) {
        digits.unicodeScalars.append(text[index])
        index += 1
      }
      if index < text.count, text[index] == "L" || text[index] == "l" { index += 1 }
      guard let value = Int(digits) else { throw unexpected("in an integer") }
      return .int(value)
    default:
      for (word, value) in [
        ("True", PyLiteral.bool(true)), ("False", .bool(false)), ("None", .none),
      ]
      where text[index...].starts(with: word.unicodeScalars) {
        index += word.unicodeScalars.count
        return value
      }
      throw unexpected("where a value was expected")
    }
  }
}

// MARK: - Elements

extension NumpyDType {
  /// Decodes `count` elements of this type at `src` (any alignment) into Floats.
  func convert(
    _ src: UnsafeRawPointer, bigEndian: Bool, count: Int, into dst: UnsafeMutablePointer<Float>
  ) {
    @inline(__always) func u16(_ i: Int) -> UInt16 {
      let v = src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
      return bigEndian ? UInt16(bigEndian: v) : UInt16(littleEndian: v)
    }
    @inline(__always) func u32(_ i: Int) -> UInt32 {
      let v = src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)
      return bigEndian ? UInt32(bigEndian: v) : UInt32(littleEndian: v)
    }
    @inline(__always) func u64(_ i: Int) -> UInt64 {
      let v = src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
      return bigEndian ? UInt64(bigEndian: v) : UInt64(littleEndian: v)
    }
    let bytes = src.assumingMemoryBound(to: UInt8.self)
    switch self {
    case .float32: for i in 0..<count { dst[i] = Float(bitPattern: u32(i)) }
    case .float64: for i in 0..<count { dst[i] = Float(Double(bitPattern: u64(i))) }
    case .float16: for i in 0..<count { dst[i] = Float(Float16(bitPattern: u16(i))) }
    case .bfloat16: for i in 0..<count { dst[i] = Float(bitPattern: UInt32(u16(i)) << 16) }
    case .int8: for i in 0..<count { dst[i] = Float(Int8(bitPattern: bytes[i])) }
    case .uint8, .bool: for i in 0..<count { dst[i] = Float(bytes[i]) }
    case .int16: for i in 0..<count { dst[i] = Float(Int16(bitPattern: u16(i))) }
    case .uint16: for i in 0..<count { dst[i] = Float(u16(i)) }
    case .int32: for i in 0..<count { dst[i] = Float(Int32(bitPattern: u32(i))) }
    case .uint32: for i in 0..<count { dst[i] = Float(u32(i)) }
    case .int64: for i in 0..<count { dst[i] = Float(Int64(bitPattern: u64(i))) }
    case .uint64: for i in 0..<count { dst[i] = Float(u64(i)) }
    }
  }

  /// Element `i` at `src` of an integer or bool type as `Int`; nil when it does not fit (or the
  /// type is a float).
  func integer(at src: UnsafeRawPointer, index i: Int, bigEndian: Bool) -> Int? {
    func load<T: FixedWidthInteger>(_: T.Type) -> T {
      let v = src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
      return bigEndian ? T(bigEndian: v) : T(littleEndian: v)
    }
    switch self {
    case .int8: return Int(load(Int8.self))
    case .uint8, .bool: return Int(load(UInt8.self))
    case .int16: return Int(load(Int16.self))
    case .uint16: return Int(load(UInt16.self))
    case .int32: return Int(load(Int32.self))
    case .uint32: return Int(load(UInt32.self))
    case .int64: return Int(load(Int64.self))
    case .uint64: return Int(exactly: load(UInt64.self))
    case .float16, .float32, .float64, .bfloat16: return nil
    }
  }
}

/// Reorders column-major (Fortran-order) `values` of `shape` into row-major order.
func fortranToC(_ values: [Int], shape: [Int]) -> [Int] {
  var out = values
  var cStrides = [Int](repeating: 1, count: shape.count)
  for a in stride(from: shape.count - 2, through: 0, by: -1) {
    cStrides[a] = cStrides[a + 1] * shape[a + 1]
  }
  var index = [Int](repeating: 0, count: shape.count)
  for value in values {  // walks F order: first axis fastest
    var c = 0
    for a in 0..<shape.count { c += index[a] * cStrides[a] }
    out[c] = value
    for a in 0..<shape.count {
      index[a] += 1
      if index[a] < shape[a] { break }
      index[a] = 0
    }
  }
  return out
}
