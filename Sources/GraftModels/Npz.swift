import Foundation
import Synchronization

// NumPy's `.npz` is a zip archive (ZipArchive.swift) of `.npy` members (Npy.swift):
// `np.savez` stores them, `np.savez_compressed` deflates them; both force ZIP64 local headers.

/// A missing, unreadable or malformed `.npz`/`.npy` file, or a request it cannot serve; the
/// description names the file and, where one is concerned, the archive member.
public struct NumpyArchiveError: Error, CustomStringConvertible, Sendable {
  /// What went wrong.
  public enum Kind: String, Sendable, Equatable {
    /// The file does not exist.
    case fileNotFound
    /// The file exists but cannot be opened, inspected or mapped (or is not a regular file).
    case readFailed
    /// The file has zero bytes.
    case emptyFile
    /// The file is neither a zip archive nor a `.npy` file.
    case notAnArchive
    /// The file ends before a structure or a member's data that it announces.
    case truncated
    /// A valid zip feature Graft does not read: encryption, spanning several disks, or a
    /// compression method other than stored and deflate.
    case unsupportedArchive
    /// The zip structures contradict each other (bad signatures, mismatched names, sizes).
    case invalidArchive
    /// Two members have the same name.
    case duplicateMember
    /// No array has the requested name.
    case memberNotFound
    /// A member is not a well-formed `.npy` file (magic, version or header).
    case invalidNpy
    /// An array's element type is not one Graft reads (complex, structured, objects, strings).
    case unsupportedDType
    /// A member's size disagrees with its array's shape and element type.
    case dataSizeMismatch
    /// A deflated member's compressed data is damaged.
    case corruptData
    /// A member's CRC-32 differs from the one the archive records.
    case checksumMismatch
    /// `intArray` was asked for a floating-point array.
    case notIntegerArray
    /// An unsigned 64-bit element does not fit in `Int`.
    case integerOverflow
  }

  /// What went wrong.
  public let kind: Kind
  /// The file concerned.
  public let path: String
  /// The archive member concerned (its name inside the zip, `….npy`), if any.
  public let member: String?
  /// The problem, in words.
  public let message: String

  /// Makes an error about `path` (and `member`, if given).
  public init(kind: Kind, path: String, member: String? = nil, message: String) {
    self.kind = kind
    self.path = path
    self.member = member
    self.message = message
  }

  /// `path: member 'name': message`, or `path: message`.
  public var description: String {
    if let member { return "\(path): member '\(member)': \(message)" }
    return "\(path): \(message)"
  }
}

/// What a `.npy` member holds, read from its header without touching the data.
public struct NumpyArrayInfo: Sendable, Equatable {
  /// The member's name inside the zip (the array name plus `.npy`).
  public let member: String
  /// The header's `descr` (such as `<f4`), or a rendering of a structured type's list.
  public let descr: String
  /// The element type, or nil when Graft cannot read it (reading then throws).
  public let dtype: NumpyDType?
  /// True when multi-byte elements are big-endian.
  public let bigEndian: Bool
  /// True when the data is in column-major order; reads return row-major tensors regardless.
  public let fortranOrder: Bool
  /// Extent of each axis; `[]` for a scalar.
  public let shape: [Int]
  /// The `.npy` format version: 1, 2 or 3.
  public let formatVersion: Int
  /// How the member is kept in the archive.
  public let compression: NumpyArchiveCompression
  /// The member's size in the archive, header included.
  public let compressedSize: Int
  /// Number of elements.
  public var count: Int { shape.reduce(1, *) }
}

/// A NumPy `.npz` archive (or a single `.npy` file) mapped into memory.
///
/// Opening reads the zip central directory (ZIP64 included) and every member's `.npy` header;
/// array data is read on request. The mapping is private and copy-on-write: a stored
/// little-endian F32 array in C order whose data happens to be 4-byte aligned in the file is
/// returned as a tensor that borrows the mapped pages (writing into it changes only this
/// process's copy), every other array is converted into a new tensor. Each read checks the
/// member's CRC-32 as NumPy does: deflated members are inflated (and checked) on every read;
/// stored members are used in place and checked on their first read only, so that a later read
/// returns the same pages, this process's writes to borrowed tensors included.
/// `verifyChecksums()` checks every member at once. The mapping lives until this value and every
/// tensor borrowing from it are gone.
///
/// Members whose names do not end in `.npy` (NumPy reads those as raw bytes) are skipped.
/// A file that starts with the `.npy` magic is read as an archive of one array, named after the
/// file without its `.npy` extension.
public struct NumpyArchive {
  /// The file this was read from.
  public let url: URL
  /// The arrays' names (member names without `.npy`), in archive order.
  public let names: [String]
  private let file: MappedFile
  /// The zip structures over `file`'s bytes (for a bare `.npy`, only its member operations).
  private let zip: ZipArchive
  private let members: [String: Member]
  /// Stored members whose CRC-32 has been checked, shared by copies of this value.
  private let checkedMembers = CheckedMembers()

  /// One array: where its member lies and what its header says.
  struct Member {
    let entry: ZipEntry
    let info: NumpyArrayInfo
    /// Bytes of `.npy` magic, version, length and header before the elements.
    let npyHeaderLength: Int
  }

  /// Maps the file at `url` and reads its directory and `.npy` headers; throws
  /// `NumpyArchiveError` when the file is missing, unreadable or malformed.
  public init(contentsOf url: URL) throws {
    let path = url.path
    let file: MappedFile
    do {
      file = try MappedFile(path: path)
    } catch {
      throw NumpyArchiveError(
        kind: error.translated(notFound: .fileNotFound, empty: .emptyFile, otherwise: .readFailed),
        path: path, message: error.message)
    }
    let bytes = file.bytes
    let zip = ZipArchive(bytes: bytes, path: path)
    var members: [String: Member] = [:]
    var names: [String] = []
    if bytes.count >= 6 && bytes.starts(with: npyMagic) {
      let stem =
        url.pathExtension == "npy"
        ? url.deletingPathExtension().lastPathComponent : url.lastPathComponent
      let entry = ZipEntry(
        name: url.lastPathComponent, compression: .stored, crc: nil, compressedSize: bytes.count,
        uncompressedSize: bytes.count, dataOffset: 0)
      members[stem] = try Self.member(entry, in: zip)
      names = [stem]
    } else {
      for entry in try zip.entries() {
        guard entry.name.hasSuffix(".npy") else { continue }
        let name = String(entry.name.dropLast(4))
        guard members[name] == nil else {
          throw zip.fail(
            .duplicateMember, "the archive has two members with this name", member: entry.name)
        }
        members[name] = try Self.member(entry, in: zip)
        names.append(name)
      }
    }
    self.url = url
    self.file = file
    self.zip = zip
    self.members = members
    self.names = names
  }

  /// Reads the `.npy` header of `entry` (inflating its first bytes when deflated).
  private static func member(_ entry: ZipEntry, in zip: ZipArchive) throws -> Member {
    let reader = try zip.prefixReader(entry)
    let header = try NpyHeader(
      size: entry.uncompressedSize, prefix: reader.prefix, path: zip.path, member: entry.name)
    let dtype = header.dtype
    let info = NumpyArrayInfo(
      member: entry.name, descr: header.descr, dtype: dtype?.0,
      bigEndian: dtype?.bigEndian ?? false, fortranOrder: header.fortranOrder,
      shape: header.shape, formatVersion: header.version, compression: entry.compression,
      compressedSize: entry.compressedSize)
    return Member(entry: entry, info: info, npyHeaderLength: header.length)
  }

  /// Opens the `.npy` (or one-array `.npz`) file at `url` and returns its array as `array(_:)`
  /// does.
  public static func readArray(contentsOf url: URL) throws -> Tensor {
    let archive = try NumpyArchive(contentsOf: url)
    guard archive.names.count == 1 else {
      throw NumpyArchiveError(
        kind: .memberNotFound, path: url.path,
        message: "expected exactly one array, found \(archive.names.count)")
    }
    return try archive.array(archive.names[0])
  }

  /// True when the archive has an array called `name`.
  public func contains(_ name: String) -> Bool { members[name] != nil }

  /// The header of array `name`.
  public func info(_ name: String) throws -> NumpyArrayInfo { try member(name).info }

  private func member(_ name: String) throws -> Member {
    guard let member = members[name] else {
      throw NumpyArchiveError(
        kind: .memberNotFound, path: url.path, message: "no array named '\(name)'")
    }
    return member
  }

  private func readableDType(_ member: Member) throws -> NumpyDType {
    guard let dtype = member.info.dtype else {
      throw zip.fail(
        .unsupportedDType,
        "element type '\(member.info.descr)' is not one Graft reads (floats, integers, bool)",
        member: member.entry.name)
    }
    return dtype
  }

  /// Array `name` as a row-major Float32 tensor (other float types rounded, integers and bools
  /// converted, Fortran-order data transposed into C order). Aligned stored F32 data is borrowed
  /// from the mapping (see the type's notes).
  public func array(_ name: String) throws -> Tensor {
    let member = try member(name)
    let info = member.info
    let dtype = try readableDType(member)
    let count = info.count
    // Fortran order is C order of the reversed shape; transposed back at the end.
    let layoutShape = info.fortranOrder ? Array(info.shape.reversed()) : info.shape
    #if _endian(little)
      let nativeF32 = dtype == .float32 && !info.bigEndian
    #else
      let nativeF32 = dtype == .float32 && info.bigEndian
    #endif
    var result: Tensor
    if info.compression == .stored {
      let src = try storedElements(member)
      if nativeF32 && count > 0 && Int(bitPattern: src) % 4 == 0 {
        let floats = src.bindMemory(to: Float.self, capacity: count)
        result = Tensor(
          shape: layoutShape,
          storage: TensorStorage(borrowing: floats, count: count, owner: file))
      } else {
        result = Tensor(shape: layoutShape, zeroed: false)
        dtype.convert(src, bigEndian: info.bigEndian, count: count, into: result.pointer)
      }
    } else {
      result = Tensor(shape: layoutShape, zeroed: false)
      if nativeF32 {
        try zip.inflate(member.entry, skipping: member.npyHeaderLength) { inflater in
          try inflater.readExactly(into: result.pointer, count: count * 4)
        }
      } else {
        let raw = try inflatedElements(member)
        raw.withUnsafeBytes {
          dtype.convert(
            $0.baseAddress!, bigEndian: info.bigEndian, count: count, into: result.pointer)
        }
      }
    }
    if info.fortranOrder && info.shape.count > 1 {
      result = result.permuted(Array((0..<info.shape.count).reversed()))
    }
    result.name = name
    return result
  }

  /// The elements of an integer or bool array, flattened in C order.
  public func intArray(_ name: String) throws -> [Int] {
    let member = try member(name)
    let info = member.info
    let dtype = try readableDType(member)
    guard dtype.isInteger else {
      throw zip.fail(
        .notIntegerArray,
        "element type '\(info.descr)' is floating-point; intArray needs integers or bool",
        member: member.entry.name)
    }
    let count = info.count
    var values = [Int](repeating: 0, count: count)
    func decode(_ src: UnsafeRawPointer) throws {
      for i in 0..<count {
        guard let v = dtype.integer(at: src, index: i, bigEndian: info.bigEndian) else {
          throw zip.fail(
            .integerOverflow, "element \(i) does not fit in Int", member: member.entry.name)
        }
        values[i] = v
      }
    }
    if info.compression == .stored {
      try decode(try storedElements(member))
    } else {
      let raw = try inflatedElements(member)
      try raw.withUnsafeBytes { try decode($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!) }
    }
    if info.fortranOrder && info.shape.count > 1 {
      values = fortranToC(values, shape: info.shape)
    }
    return values
  }

  /// Every readable array, by name (arrays of unsupported types are left out).
  public func arrays() throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in names where members[name]!.info.dtype != nil { out[name] = try array(name) }
    return out
  }

  /// Checks every member against the CRC-32 the archive records (stored members included), and
  /// that deflated members inflate to their recorded size.
  public func verifyChecksums() throws {
    for name in names { try zip.verify(members[name]!.entry) }
  }

  /// Where a stored member's elements lie in the mapping, after checking its CRC-32 if this is
  /// its first read.
  private func storedElements(_ member: Member) throws -> UnsafeMutableRawPointer {
    let name = member.entry.name
    if !checkedMembers.contains(name) {
      try zip.verify(member.entry)
      checkedMembers.insert(name)
    }
    return file.mutableBytes.baseAddress! + member.entry.dataOffset + member.npyHeaderLength
  }

  /// The element bytes of a deflated member, inflated.
  private func inflatedElements(_ member: Member) throws -> [UInt8] {
    let byteCount = member.entry.uncompressedSize - member.npyHeaderLength
    var raw = [UInt8](repeating: 0, count: byteCount)
    try zip.inflate(member.entry, skipping: member.npyHeaderLength) { inflater in
      try raw.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress { try inflater.readExactly(into: base, count: byteCount) }
      }
    }
    return raw
  }
}

/// A set of member names that threads may read and extend concurrently.
private final class CheckedMembers: Sendable {
  private let names = Mutex<Set<String>>([])

  func contains(_ name: String) -> Bool { names.withLock { $0.contains(name) } }

  func insert(_ name: String) { _ = names.withLock { $0.insert(name) } }
}
