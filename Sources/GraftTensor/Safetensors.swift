import Foundation

// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, …}`
// (padded with spaces), then the data blob; offsets are relative to the blob's first byte.

/// An element type in a safetensors file.
public enum SafetensorsDType: String, Sendable, CaseIterable {
  /// IEEE double; read by converting to Float.
  case f64 = "F64"
  /// IEEE single; read without copying when aligned.
  case f32 = "F32"
  /// IEEE half.
  case f16 = "F16"
  /// bfloat16: the high 16 bits of a Float.
  case bf16 = "BF16"
  /// 64-bit signed integer (index tensors).
  case i64 = "I64"
  /// 32-bit signed integer (index tensors).
  case i32 = "I32"
  /// Unsigned byte (decoded video frames).
  case u8 = "U8"

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .f64, .i64: 8
    case .f32, .i32: 4
    case .f16, .bf16: 2
    case .u8: 1
    }
  }

  /// True for the integer types.
  public var isInteger: Bool { self == .i64 || self == .i32 || self == .u8 }
}

/// A malformed or unreadable safetensors file, or a request it cannot serve; the description
/// names the file and the problem.
public struct SafetensorsError: Error, CustomStringConvertible, Sendable {
  /// What went wrong; each malformed-file problem has its own kind.
  public enum Kind: String, Sendable, Equatable {
    /// The file does not exist.
    case fileNotFound
    /// The file exists but cannot be opened, inspected or mapped (or is not a regular file).
    case readFailed
    /// The file has zero bytes.
    case emptyFile
    /// The file is shorter than the 8-byte header length.
    case fileTooShort
    /// The header length points past the end of the file.
    case headerLengthOutOfRange
    /// The header is not valid JSON.
    case invalidJSON
    /// The header is JSON but not an object of well-formed tensor entries.
    case invalidHeader
    /// A tensor's dtype is not one Graft reads.
    case unknownDType
    /// A tensor's byte span does not match its shape and dtype.
    case dataSizeMismatch
    /// A tensor's data lies (partly) past the end of the file.
    case offsetsOutOfRange
    /// Two tensors share bytes.
    case overlappingTensors
    /// `__metadata__` is not an object of strings.
    case invalidMetadata
    /// No tensor has the requested name.
    case tensorNotFound
    /// `intArray` was asked for a floating-point tensor.
    case notIntegerTensor
    /// The tensors or options given to the writer cannot be written.
    case invalidWrite
  }

  /// What went wrong.
  public let kind: Kind
  /// The file concerned (`<memory>` for in-memory serialization).
  public let path: String
  /// The problem, in words.
  public let message: String

  /// `path: message`.
  public var description: String { "\(path): \(message)" }
}

// MARK: - Reading

/// A safetensors file mapped into memory.
///
/// The mapping is private and copy-on-write: F32 tensors at aligned addresses borrow the mapped
/// pages (no copy), and writing into such a tensor (training it in place) changes only this
/// process's copy, never the file. Every `tensor(_:)` call for the same F32 name returns a view
/// of the same memory. The mapping lives until this object and every tensor borrowing from it are
/// gone. Other dtypes are converted to new Float tensors.
public final class SafetensorsFile {
  /// Where one tensor's data lies and how to read it.
  public struct TensorInfo: Sendable, Equatable {
    /// Element type in the file.
    public let dtype: SafetensorsDType
    /// Extent of each axis; `[]` for a scalar.
    public let shape: [Int]
    /// Byte range within the data blob.
    public let dataOffsets: Range<Int>
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
  }

  /// The file this was read from.
  public let url: URL
  /// Tensor names, sorted by UTF-8 bytes.
  public let names: [String]
  /// The header's `__metadata__` (empty when absent).
  public let metadata: [String: String]
  private let entries: [String: TensorInfo]
  /// The mapping, which borrowed tensors keep alive.
  private let file: MappedFile
  /// Offset of the data blob from the start of the file.
  private let dataStart: Int

  /// Maps the file at `url` and validates its header; throws `SafetensorsError` when the file is
  /// missing, unreadable or malformed.
  public init(contentsOf url: URL) throws {
    let path = url.path
    func fail(_ kind: SafetensorsError.Kind, _ message: String) -> SafetensorsError {
      SafetensorsError(kind: kind, path: path, message: message)
    }

    let file: MappedFile
    do {
      file = try MappedFile(path: path)
    } catch {
      throw SafetensorsError(
        kind: error.translated(notFound: .fileNotFound, empty: .emptyFile, otherwise: .readFailed),
        path: path, message: error.message)
    }
    guard file.count >= 8 else {
      throw fail(.fileTooShort, "\(file.count) bytes is too short for the 8-byte header length")
    }
    let header = try Self.parseHeader(file.bytes, path: path)
    self.url = url
    self.file = file
    dataStart = header.dataStart
    entries = header.entries
    metadata = header.metadata
    names = entries.keys.sorted(by: utf8Precedes)
  }

  /// True when the file has a tensor called `name`.
  public func contains(_ name: String) -> Bool { entries[name] != nil }

  /// The dtype, shape and byte range of tensor `name`.
  public func info(_ name: String) throws -> TensorInfo {
    guard let info = entries[name] else {
      throw SafetensorsError(
        kind: .tensorNotFound, path: url.path, message: "no tensor named '\(name)'")
    }
    return info
  }

  /// Tensor `name` as Float32: aligned F32 data is borrowed from the mapping (see the type's
  /// notes), everything else is converted into a new tensor.
  public func tensor(_ name: String) throws -> Tensor {
    let info = try info(name)
    let count = info.count
    let src = file.mutableBytes.baseAddress! + dataStart + info.dataOffsets.lowerBound
    let result: Tensor
    #if _endian(little)
      let canBorrow = info.dtype == .f32 && count > 0 && Int(bitPattern: src) % 4 == 0
    #else
      let canBorrow = false
    #endif
    if canBorrow {
      let floats = src.bindMemory(to: Float.self, capacity: count)
      result = Tensor(
        shape: info.shape, storage: TensorStorage(borrowing: floats, count: count, owner: file))
    } else {
      result = Tensor(shape: info.shape, zeroed: false)
      Self.convert(src, dtype: info.dtype, count: count, into: result.pointer)
    }
    result.name = name
    return result
  }

  /// The elements of an I64, I32 or U8 tensor, flattened.
  public func intArray(_ name: String) throws -> [Int] {
    let info = try info(name)
    let src = file.bytes.baseAddress! + dataStart + info.dataOffsets.lowerBound
    switch info.dtype {
    case .i64:
      return (0..<info.count).map {
        Int(Int64(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)))
      }
    case .i32:
      return (0..<info.count).map {
        Int(Int32(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)))
      }
    case .u8:
      return (0..<info.count).map { Int(src.load(fromByteOffset: $0, as: UInt8.self)) }
    default:
      throw SafetensorsError(
        kind: .notIntegerTensor, path: url.path,
        message: "tensor '\(name)' has dtype \(info.dtype.rawValue); intArray needs I64, I32 or U8")
    }
  }

  /// Every tensor, by name.
  public func tensors() throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in names { out[name] = try tensor(name) }
    return out
  }

  /// Decodes `count` little-endian elements of `dtype` at `src` (any alignment) into Floats.
  private static func convert(
    _ src: UnsafeRawPointer, dtype: SafetensorsDType, count: Int,
    into dst: UnsafeMutablePointer<Float>
  ) {
    func u16(_ i: Int) -> UInt16 {
      UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
    }
    switch dtype {
    case .f32:
      for i in 0..<count {
        dst[i] = Float(
          bitPattern: UInt32(
            littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
      }
    case .f64:
      for i in 0..<count {
        dst[i] = Float(
          Double(
            bitPattern: UInt64(
              littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
      }
    case .f16:
      for i in 0..<count { dst[i] = Float(Float16(bitPattern: u16(i))) }
    case .bf16:
      for i in 0..<count { dst[i] = Float(bitPattern: UInt32(u16(i)) << 16) }
    case .i64:
      for i in 0..<count {
        dst[i] = Float(
          Int64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
      }
    case .i32:
      for i in 0..<count {
        dst[i] = Float(
          Int32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
      }
    case .u8:
      for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
    }
  }

  /// Validates the length prefix and JSON header of a whole file's bytes.
  static func parseHeader(_ file: UnsafeRawBufferPointer, path: String) throws -> (
    entries: [String: TensorInfo], metadata: [String: String], dataStart: Int
  ) {
    func fail(_ kind: SafetensorsError.Kind, _ message: String) -> SafetensorsError {
      SafetensorsError(kind: kind, path: path, message: message)
    }
    let headerLength = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
    guard headerLength <= UInt64(file.count - 8) else {
      throw fail(
        .headerLengthOutOfRange,
        "header length \(headerLength) runs past the end of the file (\(file.count) bytes)")
    }
    let dataStart = 8 + Int(headerLength)
    let blobLength = file.count - dataStart
    let json: JSONValue
    do {
      var parser = HeaderJSONParser(
        bytes: UnsafeRawBufferPointer(rebasing: file[8..<dataStart]))
      json = try parser.parseDocument()
    } catch {
      throw fail(.invalidJSON, "header is not valid JSON: \(error.message)")
    }
    guard case .object(let object) = json else {
      throw fail(.invalidHeader, "header is not a JSON object")
    }

    var metadata: [String: String] = [:]
    var entries: [String: TensorInfo] = [:]
    for key in object.keys.sorted(by: utf8Precedes) {
      let value = object[key]!
      if key == "__metadata__" {
        switch value {
        case .null: break
        case .object(let fields):
          for (k, v) in fields {
            guard case .string(let s) = v else {
              throw fail(.invalidMetadata, "__metadata__ value for '\(k)' is not a string")
            }
            metadata[k] = s
          }
        default:
          throw fail(.invalidMetadata, "__metadata__ is not an object of strings")
        }
        continue
      }
      guard case .object(let fields) = value else {
        throw fail(.invalidHeader, "entry for tensor '\(key)' is not an object")
      }
      guard case .string(let dtypeName) = fields["dtype"] else {
        throw fail(.invalidHeader, "tensor '\(key)' has no dtype string")
      }
      guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
        let known = SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
        throw fail(
          .unknownDType, "tensor '\(key)' has unsupported dtype '\(dtypeName)' (reads \(known))")
      }
      guard let shape = fields["shape"]?.naturals else {
        throw fail(.invalidHeader, "tensor '\(key)': shape is not an array of integers ≥ 0")
      }
      guard let offsets = fields["data_offsets"]?.naturals, offsets.count == 2,
        offsets[0] <= offsets[1]
      else {
        throw fail(
          .invalidHeader, "tensor '\(key)': data_offsets is not [begin, end] with begin ≤ end")
      }
      var bytes = dtype.byteSize
      var overflow = false
      for extent in shape where !overflow {
        (bytes, overflow) = bytes.multipliedReportingOverflow(by: extent)
      }
      guard !overflow, offsets[1] - offsets[0] == bytes else {
        let need = overflow ? "more than \(Int.max)" : "\(bytes)"
        throw fail(
          .dataSizeMismatch,
          "tensor '\(key)' (\(dtypeName), shape \(shape)) needs \(need) bytes but data_offsets "
            + "\(offsets) span \(offsets[1] - offsets[0])")
      }
      guard offsets[1] <= blobLength else {
        throw fail(
          .offsetsOutOfRange,
          "tensor '\(key)': data_offsets \(offsets) run past the end of the data "
            + "(\(blobLength) bytes)")
      }
      entries[key] = TensorInfo(dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1])
    }

    // Empty tensors occupy no bytes, so they cannot overlap anything.
    let spans = entries.filter { !$0.value.dataOffsets.isEmpty }
      .sorted {
        ($0.value.dataOffsets.lowerBound, $0.key) < ($1.value.dataOffsets.lowerBound, $1.key)
      }
    for (previous, next) in zip(spans, spans.dropFirst())
    where next.value.dataOffsets.overlaps(previous.value.dataOffsets) {
      func describe(_ e: (key: String, value: TensorInfo)) -> String {
        "'\(e.key)' [\(e.value.dataOffsets.lowerBound), \(e.value.dataOffsets.upperBound)]"
      }
      throw fail(
        .overlappingTensors, "tensors \(describe(previous)) and \(describe(next)) overlap")
    }
    return (entries, metadata, dataStart)
  }
}

/// Orders strings by their UTF-8 bytes, as the Python package (Rust) sorts names.
private func utf8Precedes(_ a: String, _ b: String) -> Bool {
  a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// Any JSON value; the header is parsed into this and then checked by hand, so that each
/// problem gets its own message.
private enum JSONValue {
  case null
  case bool(Bool)
  /// A number written without fraction or exponent that fits in an `Int`.
  case integer(Int)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  /// The elements when this is an array of non-negative integers.
  var naturals: [Int]? {
    guard case .array(let items) = self else { return nil }
    var out: [Int] = []
    for item in items {
      guard case .integer(let v) = item, v >= 0 else { return nil }
      out.append(v)
    }
    return out
  }
}

/// A strict RFC 8259 parser for the header (Foundation's decoder on Linux reports no position,
/// and silently accepts some invalid input such as trailing commas).
private struct HeaderJSONParser {
  struct Failure: Error { let message: String }

  let bytes: UnsafeRawBufferPointer
  var index = 0
  var depth = 0
  /// Bounds recursion so that a hostile header cannot overflow the stack.
  static let maxDepth = 64

  init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// One value surrounded by optional whitespace (the padding).
  mutating func parseDocument() throws(Failure) -> JSONValue {
    let value = try parseValue()
    skipWhitespace()
    guard index == bytes.count else { throw unexpected("after the top-level value") }
    return value
  }

  private func failure(_ message: String) -> Failure { Failure(message: message) }

  private func unexpected(_ context: String = "") -> Failure {
    guard index < bytes.count else { return failure("unexpected end of header") }
    let byte = bytes[index]
    let shown =
      (0x20..<0x7F).contains(byte)
      ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
    return failure(
      "unexpected \(shown) at offset \(index)\(context.isEmpty ? "" : " " + context)")
  }

  private mutating func skipWhitespace() {
    while index < bytes.count {
      switch bytes[index] {
      case 0x20, 0x09, 0x0A, 0x0D: index += 1
      default: return
      }
    }
  }

  private mutating func consume(_ byte: UInt8) -> Bool {
    guard index < bytes.count, bytes[index] == byte else { return false }
    index += 1
    return true
  }

  private mutating func parseValue() throws(Failure) -> JSONValue {
    skipWhitespace()
    guard index < bytes.count else { throw unexpected() }
    switch bytes[index] {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"): return try parseLiteral("true", .bool(true))
    case UInt8(ascii: "f"): return try parseLiteral("false", .bool(false))
    case UInt8(ascii: "n"): return try parseLiteral("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
    default: throw unexpected()
    }
  }

  private mutating func parseLiteral(_ word: String, _ value: JSONValue) throws(Failure)
    -> JSONValue
  {
    for byte in word.utf8 {
      guard consume(byte) else { throw unexpected("in '\(word)'") }
    }
    return value
  }

  private mutating func enter() throws(Failure) {
    depth += 1
    guard depth <= Self.maxDepth else {
      throw failure("nested deeper than \(Self.maxDepth) levels at offset \(index)")
    }
  }

  private mutating func parseObject() throws(Failure) -> JSONValue {
    try enter()
    index += 1  // {
    var object: [String: JSONValue] = [:]
    skipWhitespace()
    if consume(UInt8(ascii: "}")) {
      depth -= 1
      return .object(object)
    }
    while true {
      skipWhitespace()
      guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
        throw unexpected("where a key was expected")
      }
      let keyOffset = index
      let key = try parseString()
      guard object[key] == nil else {
        throw failure("duplicate key '\(key)' at offset \(keyOffset)")
      }
      skipWhitespace()
      guard consume(UInt8(ascii: ":")) else { throw unexpected("where ':' was expected") }
      object[key] = try parseValue()
      skipWhitespace()
      if consume(UInt8(ascii: "}")) { break }
      guard consume(UInt8(ascii: ",")) else { throw unexpected("where ',' or '}' was expected") }
    }
    depth -= 1
    return .object(object)
  }

  private mutating func parseArray() throws(Failure) -> JSONValue {
    try enter()
    index += 1  // [
    var items: [JSONValue] = []
    skipWhitespace()
    if consume(UInt8(ascii: "]")) {
      depth -= 1
      return .array(items)
    }
    while true {
      items.append(try parseValue())
      skipWhitespace()
      if consume(UInt8(ascii: "]")) { break }
      guard consume(UInt8(ascii: ",")) else { throw unexpected("where ',' or ']' was expected") }
    }
    depth -= 1
    return .array(items)
  }

  private mutating func parseNumber() throws(Failure) -> JSONValue {
    let start = index
    _ = consume(UInt8(ascii: "-"))
    func digits(_ parser: inout HeaderJSONParser) -> Int {
      let first = parser.index
      while parser.index < parser.bytes.count,
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index])
      {
        parser.index += 1
      }
      return parser.index - first
    }
    let intStart = index
    let intDigits = digits(&self)
    guard intDigits > 0 else { throw unexpected("in a number") }
    if intDigits > 1 && bytes[intStart] == UInt8(ascii: "0") {
      throw failure("number with a leading zero at offset \(start)")
    }
    var isInteger = true
    if consume(UInt8(ascii: ".")) {
      isInteger = false
      guard digits(&self) > 0 else { throw unexpected("in a number") }
    }
    if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
      isInteger = false
      if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
      guard digits(&self) > 0 else { throw unexpected("in a number") }
    }
    let text = String(
      decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    if isInteger, let value = Int(text) { return .integer(value) }
    // Valid JSON number syntax always parses as a Double (possibly ±infinity).
    return .number(Double(text) ?? .nan)
  }

  private mutating func parseHex4() throws(Failure) -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard index < bytes.count, let digit = hexValue(bytes[index]) else {
        throw unexpected("in a \\u escape")
      }
      value = value << 4 | digit
      index += 1
    }
    return value
  }

  private func hexValue(_ byte: UInt8) -> UInt32? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
  }

  private mutating func parseString() throws(Failure) -> String {
    let start = index
    index += 1  // opening quote
    var utf8: [UInt8] = []
    while true {
      guard index < bytes.count else { throw failure("unterminated string at offset \(start)") }
      let byte = bytes[index]
      switch byte {
      case UInt8(ascii: "\""):
        index += 1
        guard let string = String(validating: utf8, as: UTF8.self) else {
          throw failure("invalid UTF-8 in the string at offset \(start)")
        }
        return string
      case UInt8(ascii: "\\"):
        index += 1
        guard index < bytes.count else { throw unexpected() }
        let escape = bytes[index]
        index += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
          var code = try parseHex4()
          if (0xD800..<0xDC00).contains(code) {
            // A high surrogate must be followed by an escaped low one.
            guard consume(UInt8(ascii: "\\")), consume(UInt8(ascii: "u")) else {
              throw failure("unpaired surrogate in the string at offset \(start)")
            }
            let low = try parseHex4()
            guard (0xDC00..<0xE000).contains(low) else {
              throw failure("unpaired surrogate in the string at offset \(start)")
            }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let scalar = Unicode.Scalar(code) else {
            throw failure("unpaired surrogate in the string at offset \(start)")
          }
          utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
          index -= 1
          throw unexpected("after a backslash")
        }
      case 0..<0x20:
        throw unexpected("(control characters must be escaped in strings)")
      default:
        utf8.append(byte)
        index += 1
      }
    }
  }
}

// MARK: - Writing

/// Writes safetensors files that the Python `safetensors` package (and Graft) can read.
public enum Safetensors {
  /// Writes `tensors` to `url` atomically (see `AtomicFile`): names sorted, the header padded with
  /// spaces to a multiple of 8 bytes, every tensor stored as `dtype` (F32, F16 or BF16; F16 and
  /// BF16 round to nearest even).
  public static func write(
    _ tensors: [String: Tensor], metadata: [String: String] = [:],
    dtype: SafetensorsDType = .f32, to url: URL
  ) throws {
    let (header, ordered) = try makeHeader(
      tensors, metadata: metadata, dtype: dtype, path: url.path)
    try AtomicFile.write(to: url) { output in
      try output.write(header)
      for (_, tensor) in ordered {
        try encode(tensor, as: dtype) { try output.write($0) }
      }
    }
  }

  /// The bytes `write` would put in a file.
  public static func serialize(
    _ tensors: [String: Tensor], metadata: [String: String] = [:],
    dtype: SafetensorsDType = .f32
  ) throws -> Data {
    let (header, ordered) = try makeHeader(
      tensors, metadata: metadata, dtype: dtype, path: "<memory>")
    var data = header
    for (_, tensor) in ordered {
      encode(tensor, as: dtype) { data.append(contentsOf: $0) }
    }
    return data
  }

  /// A tensor given as its little-endian bytes in any dtype the format has (U8 frames, I64
  /// indices), for `write(raw:metadata:to:)`.
  public struct RawTensor: Sendable {
    /// Element type of `bytes`.
    public var dtype: SafetensorsDType
    /// Extent of each axis.
    public var shape: [Int]
    /// The elements, little-endian, row-major; `shape`'s product times `dtype.byteSize` bytes.
    public var bytes: [UInt8]

    /// Wraps the parts; the byte count is checked when written.
    public init(dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
      self.dtype = dtype
      self.shape = shape
      self.bytes = bytes
    }

    /// Unsigned bytes as they are.
    public init(u8 values: [UInt8], shape: [Int]) {
      self.init(dtype: .u8, shape: shape, bytes: values)
    }

    /// A Float tensor stored as F32.
    public init(f32 tensor: Tensor) {
      let bytes = [UInt8](
        UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.count * 4))
      #if _endian(big)
        preconditionFailure("F32 raw tensors are written little-endian only")
      #endif
      self.init(dtype: .f32, shape: tensor.shape, bytes: bytes)
    }

    /// Integers stored as I64.
    public init(i64 values: [Int], shape: [Int]) {
      var bytes: [UInt8] = []
      bytes.reserveCapacity(values.count * 8)
      for v in values {
        withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) }
      }
      self.init(dtype: .i64, shape: shape, bytes: bytes)
    }
  }

  /// Writes tensors given as raw bytes (any dtype, `RawTensor`) to `url` atomically, with the
  /// same layout as `write(_:metadata:dtype:to:)`.
  public static func write(
    raw tensors: [String: RawTensor], metadata: [String: String] = [:], to url: URL
  ) throws {
    for (name, tensor) in tensors
    where tensor.bytes.count != tensor.shape.reduce(1, *) * tensor.dtype.byteSize {
      throw SafetensorsError(
        kind: .invalidWrite, path: url.path,
        message: "tensor '\(name)': \(tensor.bytes.count) bytes do not fit shape "
          + "\(tensor.shape) of \(tensor.dtype.rawValue)")
    }
    let ordered = tensors.sorted { utf8Precedes($0.key, $1.key) }
    let header = try headerBytes(
      ordered.map { ($0.key, $0.value.dtype, $0.value.shape) }, metadata: metadata,
      path: url.path)
    try AtomicFile.write(to: url) { output in
      try output.write(header)
      for (_, tensor) in ordered {
        try tensor.bytes.withUnsafeBytes { try output.write($0) }
      }
    }
  }

  /// The length prefix and padded JSON header, and the tensors in blob order.
  private static func makeHeader(
    _ tensors: [String: Tensor], metadata: [String: String], dtype: SafetensorsDType,
    path: String
  ) throws -> (Data, [(String, Tensor)]) {
    guard dtype == .f32 || dtype == .f16 || dtype == .bf16 else {
      throw SafetensorsError(
        kind: .invalidWrite, path: path,
        message: "cannot write dtype \(dtype.rawValue); use F32, F16 or BF16")
    }
    let ordered = tensors.sorted { utf8Precedes($0.key, $1.key) }
    let header = try headerBytes(
      ordered.map { ($0.key, dtype, $0.value.shape) }, metadata: metadata, path: path)
    return (header, ordered)
  }

  /// The length prefix and padded JSON header for entries in blob order.
  private static func headerBytes(
    _ entries: [(name: String, dtype: SafetensorsDType, shape: [Int])],
    metadata: [String: String], path: String
  ) throws -> Data {
    guard !entries.contains(where: { $0.name == "__metadata__" }) else {
      throw SafetensorsError(
        kind: .invalidWrite, path: path, message: "'__metadata__' cannot be a tensor name")
    }
    var json = "{"
    var fields: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.sorted { utf8Precedes($0.key, $1.key) }
        .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
      fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
    }
    var offset = 0
    for (name, dtype, shape) in entries {
      let end = offset + shape.reduce(1, *) * dtype.byteSize
      let dims = shape.map(String.init).joined(separator: ",")
      fields.append(
        "\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(dims)],"
          + "\"data_offsets\":[\(offset),\(end)]}")
      offset = end
    }
    json += fields.joined(separator: ",") + "}"
    var headerBytes = Array(json.utf8)
    // Padding keeps the blob 8-byte aligned, so F32 tensors can be borrowed in place.
    while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
    var data = Data(capacity: 8 + headerBytes.count)
    withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: headerBytes)
    return data
  }

  /// Hands `tensor`'s elements, little-endian in `dtype`, to `sink` in chunks.
  private static func encode(
    _ tensor: Tensor, as dtype: SafetensorsDType, _ sink: (UnsafeRawBufferPointer) throws -> Void
  ) rethrows {
    let count = tensor.count
    let src = tensor.pointer
    #if _endian(little)
      if dtype == .f32 {
        try sink(UnsafeRawBufferPointer(start: src, count: count * 4))
        return
      }
    #endif
    let chunk = 16_384
    var start = 0
    while start < count {
      let n = min(chunk, count - start)
      switch dtype {
      case .f32:
        let words = (0..<n).map { src[start + $0].bitPattern.littleEndian }
        try words.withUnsafeBytes { try sink($0) }
      case .f16:
        let halves = (0..<n).map { Float16(src[start + $0]).bitPattern.littleEndian }
        try halves.withUnsafeBytes { try sink($0) }
      default:
        let halves = (0..<n).map { BFloat16.bits(src[start + $0]).littleEndian }
        try halves.withUnsafeBytes { try sink($0) }
      }
      start += n
    }
  }

  /// `s` as a JSON string literal, escaped as serde_json (the Python package's writer) does.
  private static func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case let c where c.value < 0x20:
        let hex = String(c.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
