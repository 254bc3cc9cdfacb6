import Foundation

/// A number type stored in a binary point file (PCD's `TYPE`/`SIZE`, PLY's property types).
enum ScalarType: Sendable, Equatable {
  case int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64

  /// Bytes per value.
  var size: Int {
    switch self {
    case .int8, .uint8: 1
    case .int16, .uint16: 2
    case .int32, .uint32, .float32: 4
    case .int64, .uint64, .float64: 8
    }
  }

  var isInteger: Bool { self != .float32 && self != .float64 }

  /// PLY's name for the type (the writer uses these; the reader also takes the sized names).
  static func ply(_ name: String) -> ScalarType? {
    switch name {
    case "char", "int8": .int8
    case "uchar", "uint8": .uint8
    case "short", "int16": .int16
    case "ushort", "uint16": .uint16
    case "int", "int32": .int32
    case "uint", "uint32": .uint32
    case "float", "float32": .float32
    case "double", "float64": .float64
    default: nil
    }
  }

  /// PCD's type letter and size.
  static func pcd(type: String, size: Int) -> ScalarType? {
    switch (type, size) {
    case ("I", 1): .int8
    case ("U", 1): .uint8
    case ("I", 2): .int16
    case ("U", 2): .uint16
    case ("I", 4): .int32
    case ("U", 4): .uint32
    case ("I", 8): .int64
    case ("U", 8): .uint64
    case ("F", 4): .float32
    case ("F", 8): .float64
    default: nil
    }
  }

  /// Reads one value at `offset` as a Double.
  @inline(__always)
  func load(_ base: UnsafeRawPointer, _ offset: Int, bigEndian: Bool) -> Double {
    switch self {
    case .int8: return Double(base.load(fromByteOffset: offset, as: Int8.self))
    case .uint8: return Double(base.load(fromByteOffset: offset, as: UInt8.self))
    case .int16: return Double(Int16(bitPattern: bits16(base, offset, bigEndian)))
    case .uint16: return Double(bits16(base, offset, bigEndian))
    case .int32: return Double(Int32(bitPattern: bits32(base, offset, bigEndian)))
    case .uint32: return Double(bits32(base, offset, bigEndian))
    case .int64: return Double(Int64(bitPattern: bits64(base, offset, bigEndian)))
    case .uint64: return Double(bits64(base, offset, bigEndian))
    case .float32: return Double(Float(bitPattern: bits32(base, offset, bigEndian)))
    case .float64: return Double(bitPattern: bits64(base, offset, bigEndian))
    }
  }

  /// Reads one value at `offset` as a Float; float32 data is taken bit for bit.
  @inline(__always)
  func loadFloat(_ base: UnsafeRawPointer, _ offset: Int, bigEndian: Bool) -> Float {
    if self == .float32 { return Float(bitPattern: bits32(base, offset, bigEndian)) }
    return Float(load(base, offset, bigEndian: bigEndian))
  }

  /// Reads one integer value at `offset`; nil for float types and values beyond Int.
  @inline(__always)
  func loadInt(_ base: UnsafeRawPointer, _ offset: Int, bigEndian: Bool) -> Int? {
    switch self {
    case .int8: Int(base.load(fromByteOffset: offset, as: Int8.self))
    case .uint8: Int(base.load(fromByteOffset: offset, as: UInt8.self))
    case .int16: Int(Int16(bitPattern: bits16(base, offset, bigEndian)))
    case .uint16: Int(bits16(base, offset, bigEndian))
    case .int32: Int(Int32(bitPattern: bits32(base, offset, bigEndian)))
    case .uint32: Int(bits32(base, offset, bigEndian))
    case .int64: Int(Int64(bitPattern: bits64(base, offset, bigEndian)))
    case .uint64: Int(exactly: bits64(base, offset, bigEndian))
    case .float32, .float64: nil
    }
  }
}

@inline(__always)
func bits16(_ base: UnsafeRawPointer, _ offset: Int, _ bigEndian: Bool) -> UInt16 {
  let v = base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
  return bigEndian ? UInt16(bigEndian: v) : UInt16(littleEndian: v)
}

@inline(__always)
func bits32(_ base: UnsafeRawPointer, _ offset: Int, _ bigEndian: Bool) -> UInt32 {
  let v = base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
  return bigEndian ? UInt32(bigEndian: v) : UInt32(littleEndian: v)
}

@inline(__always)
func bits64(_ base: UnsafeRawPointer, _ offset: Int, _ bigEndian: Bool) -> UInt64 {
  let v = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
  return bigEndian ? UInt64(bigEndian: v) : UInt64(littleEndian: v)
}

/// Bytes being assembled for a file: text and fixed-width numbers in either byte order.
struct ByteSink {
  var bytes: [UInt8] = []

  mutating func text(_ s: String) { bytes.append(contentsOf: s.utf8) }

  mutating func append<T: FixedWidthInteger>(_ v: T, bigEndian: Bool = false) {
    withUnsafeBytes(of: bigEndian ? v.bigEndian : v.littleEndian) { bytes.append(contentsOf: $0) }
  }

  mutating func append(_ v: Float, bigEndian: Bool = false) {
    append(v.bitPattern, bigEndian: bigEndian)
  }

  mutating func append(_ v: Double, bigEndian: Bool = false) {
    append(v.bitPattern, bigEndian: bigEndian)
  }
}

/// `a × b`, or nil when it overflows; header counts are multiplied through this before any
/// allocation.
func checkedProduct(_ factors: Int...) -> Int? { checkedProduct(factors) }

/// The product of `factors`, or nil when one is negative or the product overflows.
func checkedProduct(_ factors: [Int]) -> Int? {
  var p = 1
  for f in factors {
    guard f >= 0 else { return nil }
    let (m, o) = p.multipliedReportingOverflow(by: f)
    if o { return nil }
    p = m
  }
  return p
}
