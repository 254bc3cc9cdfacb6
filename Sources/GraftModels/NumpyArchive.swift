import CZlib
import Foundation

// NumPy's `.npz` is a zip archive of `.npy` members (`np.savez` stores them, `np.savez_compressed`
// deflates them; both force ZIP64 local headers). A `.npy` file is the magic "\x93NUMPY", a
// version byte pair, a little-endian header length (2 bytes in version 1, 4 in 2 and 3), then a
// Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
// spaces and a newline, then the raw elements.

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

/// How a member's bytes are kept in the zip archive.
public enum NumpyArchiveCompression: String, Sendable {
  /// Uncompressed (`np.savez`): F32 data is read in place where aligned.
  case stored
  /// Deflate (`np.savez_compressed`): inflated on every read.
  case deflated
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
/// process's copy), every other array is converted into a new tensor. Deflated members are
/// inflated on each read and their CRC-32 is checked; stored members are used in place, so their
/// CRC is checked only by `verifyChecksums()`. The mapping lives until this value and every
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
  private let members: [String: Member]

  /// Where one member lies in the file.
  struct Member {
    let info: NumpyArrayInfo
    /// File offset of the member's first byte (the `.npy` magic when stored).
    let dataOffset: Int
    let uncompressedSize: Int
    /// Bytes of `.npy` magic, version, length and header before the elements.
    let npyHeaderLength: Int
    /// The CRC-32 the archive records; nil for a bare `.npy` file.
    let crc: UInt32?
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
    let reader = ArchiveParser(bytes: bytes, path: path)
    var members: [String: Member] = [:]
    var names: [String] = []
    if bytes.count >= 6 && bytes.starts(with: npyMagic) {
      let stem =
        url.pathExtension == "npy"
        ? url.deletingPathExtension().lastPathComponent : url.lastPathComponent
      let entry = ZipEntry(
        name: url.lastPathComponent, method: 0, crc: nil, compressedSize: bytes.count,
        uncompressedSize: bytes.count, dataOffset: 0)
      members[stem] = try reader.member(entry)
      names = [stem]
    } else {
      for entry in try reader.centralDirectory() {
        guard entry.name.hasSuffix(".npy") else { continue }
        let name = String(entry.name.dropLast(4))
        guard members[name] == nil else {
          throw NumpyArchiveError(
            kind: .duplicateMember, path: path, member: entry.name,
            message: "the archive has two members with this name")
        }
        members[name] = try reader.member(entry)
        names.append(name)
      }
    }
    self.url = url
    self.file = file
    self.members = members
    self.names = names
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

  private func fail(_ kind: NumpyArchiveError.Kind, _ member: Member, _ message: String)
    -> NumpyArchiveError
  {
    NumpyArchiveError(kind: kind, path: url.path, member: member.info.member, message: message)
  }

  private func readableDType(_ member: Member) throws -> NumpyDType {
    guard let dtype = member.info.dtype else {
      throw fail(
        .unsupportedDType, member,
        "element type '\(member.info.descr)' is not one Graft reads (floats, integers, bool)")
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
      let src = file.mutableBytes.baseAddress! + member.dataOffset + member.npyHeaderLength
      if nativeF32 && count > 0 && Int(bitPattern: src) % 4 == 0 {
        let floats = src.bindMemory(to: Float.self, capacity: count)
        result = Tensor(
          shape: layoutShape,
          storage: TensorStorage(borrowing: floats, count: count, owner: file))
      } else {
        result = Tensor(shape: layoutShape, zeroed: false)
        convertToFloat(
          UnsafeRawPointer(src), dtype: dtype, bigEndian: info.bigEndian, count: count,
          into: result.pointer)
      }
    } else {
      result = Tensor(shape: layoutShape, zeroed: false)
      if nativeF32 {
        try inflateData(member) { inflater in
          try inflater.readExactly(into: result.pointer, count: count * 4)
        }
      } else {
        let raw = try inflatedData(member)
        raw.withUnsafeBytes {
          convertToFloat(
            $0.baseAddress!, dtype: dtype, bigEndian: info.bigEndian, count: count,
            into: result.pointer)
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
      throw fail(
        .notIntegerArray, member,
        "element type '\(info.descr)' is floating-point; intArray needs integers or bool")
    }
    let count = info.count
    var values = [Int](repeating: 0, count: count)
    func decode(_ src: UnsafeRawPointer) throws {
      for i in 0..<count {
        guard let v = loadInteger(src, index: i, dtype: dtype, bigEndian: info.bigEndian) else {
          throw fail(.integerOverflow, member, "element \(i) does not fit in Int")
        }
        values[i] = v
      }
    }
    if info.compression == .stored {
      try decode(
        UnsafeRawPointer(
          file.mutableBytes.baseAddress! + member.dataOffset + member.npyHeaderLength))
    } else {
      let raw = try inflatedData(member)
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
    for name in names {
      let member = members[name]!
      guard let expected = member.crc else { continue }
      if member.info.compression == .deflated {
        // Inflating the whole member checks its size and CRC.
        try inflateData(member, skipHeader: false) { inflater in
          let chunk = 1 << 20
          let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
          defer { scratch.deallocate() }
          var left = member.uncompressedSize
          while left > 0 {
            let n = Swift.min(left, chunk)
            try inflater.readExactly(into: scratch, count: n)
            left -= n
          }
        }
        continue
      }
      let actual = crc32Of(
        UnsafeRawPointer(file.mutableBytes.baseAddress! + member.dataOffset),
        count: member.uncompressedSize)
      guard actual == expected else {
        throw fail(
          .checksumMismatch, member,
          "CRC-32 is \(hex(actual)) but the archive records \(hex(expected))")
      }
    }
  }

  /// The element bytes of a deflated member, inflated.
  private func inflatedData(_ member: Member) throws -> [UInt8] {
    let byteCount = member.uncompressedSize - member.npyHeaderLength
    var raw = [UInt8](repeating: 0, count: byteCount)
    try inflateData(member) { inflater in
      try raw.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress { try inflater.readExactly(into: base, count: byteCount) }
      }
    }
    return raw
  }

  /// Inflates a deflated member: skips the `.npy` header (unless `skipHeader` is false), lets
  /// `body` read the rest, then checks that the stream ends there and that the whole member's
  /// CRC-32 is the recorded one.
  private func inflateData(
    _ member: Member, skipHeader: Bool = true, _ body: (RawInflater) throws -> Void
  ) throws {
    do {
      let inflater = try RawInflater(
        input: UnsafeRawPointer(file.mutableBytes.baseAddress! + member.dataOffset),
        count: member.info.compressedSize)
      if skipHeader {
        var header = [UInt8](repeating: 0, count: member.npyHeaderLength)
        try header.withUnsafeMutableBytes {
          try inflater.readExactly(into: $0.baseAddress!, count: member.npyHeaderLength)
        }
      }
      try body(inflater)
      guard try inflater.atEnd() else {
        throw fail(
          .dataSizeMismatch, member,
          "inflates to more than the \(member.uncompressedSize) bytes the archive records")
      }
      if let expected = member.crc, inflater.crc != expected {
        throw fail(
          .checksumMismatch, member,
          "CRC-32 is \(hex(inflater.crc)) but the archive records \(hex(expected))")
      }
    } catch let failure as RawInflater.Failure {
      throw fail(.corruptData, member, failure.message)
    }
  }
}

// MARK: - Zip structures

private let npyMagic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
/// Larger headers are refused (NumPy's own reader refuses more than 10 000 bytes by default).
private let maxNpyHeaderLength = 1 << 20

/// One file in the zip central directory.
private struct ZipEntry {
  let name: String
  let method: UInt16
  let crc: UInt32?
  let compressedSize: Int
  let uncompressedSize: Int
  /// File offset of the member's data (after its local header).
  let dataOffset: Int
}

/// Reads the zip directory and the members' `.npy` headers from the mapped bytes.
private struct ArchiveParser {
  let bytes: UnsafeRawBufferPointer
  let path: String

  func fail(_ kind: NumpyArchiveError.Kind, _ message: String, member: String? = nil)
    -> NumpyArchiveError
  {
    NumpyArchiveError(kind: kind, path: path, member: member, message: message)
  }

  func u16(_ offset: Int) -> Int {
    Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
  }
  func u32(_ offset: Int) -> Int {
    Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
  }
  /// A 64-bit size or offset; nil when it does not fit in `Int`.
  func u64(_ offset: Int) -> Int? {
    Int(exactly: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
  }

  /// True when `count` bytes at `offset` lie inside the file.
  func inBounds(_ offset: Int, _ count: Int) -> Bool {
    offset >= 0 && count >= 0 && offset <= bytes.count && count <= bytes.count - offset
  }

  /// The entries of the central directory, validated against their local headers.
  func centralDirectory() throws -> [ZipEntry] {
    let size = bytes.count
    // The end-of-central-directory record (22 bytes plus a comment of up to 65 535) ends the file.
    var eocd: Int? = nil
    var offset = size - 22
    let lowest = Swift.max(0, size - 22 - 0xFFFF)
    while offset >= lowest {
      if u32(offset) == 0x0605_4B50 && offset + 22 + u16(offset + 20) <= size {
        eocd = offset
        break
      }
      offset -= 1
    }
    guard let eocd else {
      if size >= 4 && u32(0) == 0x0403_4B50 {
        throw fail(
          .truncated,
          "a zip archive without its end-of-central-directory record: the file is truncated")
      }
      throw fail(.notAnArchive, "not a zip archive (.npz) or .npy file")
    }
    var diskNumber = u16(eocd + 4)
    var directoryDisk = u16(eocd + 6)
    var entryCount = u16(eocd + 10)
    var directorySize = u32(eocd + 12)
    var directoryOffset = u32(eocd + 16)

    // ZIP64: a locator just before the record points to a ZIP64 end record with 64-bit fields.
    let locator = eocd - 20
    if locator >= 0 && u32(locator) == 0x0706_4B50 {
      guard let record = u64(locator + 8), inBounds(record, 56), u32(record) == 0x0606_4B50
      else {
        throw fail(.invalidArchive, "the ZIP64 end-of-central-directory locator points nowhere")
      }
      guard u32(locator + 16) <= 1 else {
        throw fail(.unsupportedArchive, "archives spanning several disks are not supported")
      }
      guard let count = u64(record + 32), let dirSize = u64(record + 40),
        let dirOffset = u64(record + 48)
      else {
        throw fail(.invalidArchive, "the ZIP64 end-of-central-directory record is out of range")
      }
      diskNumber = u32(record + 16)
      directoryDisk = u32(record + 20)
      entryCount = count
      directorySize = dirSize
      directoryOffset = dirOffset
    }
    guard diskNumber == 0 && directoryDisk == 0 else {
      throw fail(.unsupportedArchive, "archives spanning several disks are not supported")
    }
    guard inBounds(directoryOffset, directorySize), directoryOffset + directorySize <= eocd
    else {
      throw fail(
        .truncated,
        "the central directory (\(directorySize) bytes at \(directoryOffset)) lies outside "
          + "the file (\(size) bytes)")
    }

    var entries: [ZipEntry] = []
    var cursor = directoryOffset
    let end = directoryOffset + directorySize
    for index in 0..<entryCount {
      guard cursor + 46 <= end, u32(cursor) == 0x0201_4B50 else {
        throw fail(
          .invalidArchive, "central directory entry \(index) of \(entryCount) is malformed")
      }
      let flags = u16(cursor + 8)
      let method = UInt16(u16(cursor + 10))
      let crc = UInt32(u32(cursor + 16))
      var compressedSize = u32(cursor + 20)
      var uncompressedSize = u32(cursor + 24)
      let nameLength = u16(cursor + 28)
      let extraLength = u16(cursor + 30)
      let commentLength = u16(cursor + 32)
      var localOffset = u32(cursor + 42)
      let next = cursor + 46 + nameLength + extraLength + commentLength
      guard next <= end else {
        throw fail(.invalidArchive, "central directory entry \(index) runs past the directory")
      }
      let nameBytes = UnsafeRawBufferPointer(
        rebasing: bytes[(cursor + 46)..<(cursor + 46 + nameLength)])
      let name = String(decoding: nameBytes, as: UTF8.self)

      // ZIP64 extra field (tag 1): the 64-bit values of the fields saturated at 0xFFFFFFFF,
      // in the order uncompressed size, compressed size, local header offset.
      var extra = cursor + 46 + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let tag = u16(extra)
        let length = u16(extra + 2)
        guard extra + 4 + length <= extraEnd else { break }
        if tag == 1 {
          var field = extra + 4
          func next64() throws -> Int {
            guard field + 8 <= extra + 4 + length, let value = u64(field) else {
              throw fail(.invalidArchive, "malformed ZIP64 extra field", member: name)
            }
            field += 8
            return value
          }
          if uncompressedSize == 0xFFFF_FFFF { uncompressedSize = try next64() }
          if compressedSize == 0xFFFF_FFFF { compressedSize = try next64() }
          if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
        }
        extra += 4 + length
      }

      guard flags & 1 == 0 else {
        throw fail(.unsupportedArchive, "encrypted members are not supported", member: name)
      }
      guard method == 0 || method == 8 else {
        throw fail(
          .unsupportedArchive,
          "compression method \(method) is not supported (only stored and deflate)",
          member: name)
      }
      guard method != 0 || compressedSize == uncompressedSize else {
        throw fail(
          .invalidArchive,
          "stored member with compressed size \(compressedSize) ≠ size \(uncompressedSize)",
          member: name)
      }
      // The local header repeats the name; its own extra field may differ from the directory's.
      guard inBounds(localOffset, 30) else {
        throw fail(
          .truncated, "local header at offset \(localOffset) lies past the end of the file",
          member: name)
      }
      guard u32(localOffset) == 0x0403_4B50 else {
        throw fail(
          .invalidArchive, "no local header signature at offset \(localOffset)", member: name)
      }
      let localNameLength = u16(localOffset + 26)
      let dataOffset = localOffset + 30 + localNameLength + u16(localOffset + 28)
      guard inBounds(localOffset + 30, localNameLength),
        bytes[(localOffset + 30)..<(localOffset + 30 + localNameLength)].elementsEqual(nameBytes)
      else {
        throw fail(
          .invalidArchive, "the local header names a different file than the directory",
          member: name)
      }
      guard inBounds(dataOffset, compressedSize) else {
        throw fail(
          .truncated,
          "its \(compressedSize) bytes at offset \(dataOffset) run past the end of the file "
            + "(\(size) bytes)", member: name)
      }
      entries.append(
        ZipEntry(
          name: name, method: method, crc: crc, compressedSize: compressedSize,
          uncompressedSize: uncompressedSize, dataOffset: dataOffset))
      cursor = next
    }
    return entries
  }

  /// Parses the `.npy` header of `entry` (inflating its first bytes when deflated).
  func member(_ entry: ZipEntry) throws -> NumpyArchive.Member {
    let name = entry.name
    func invalid(_ message: String) -> NumpyArchiveError {
      fail(.invalidNpy, message, member: name)
    }
    let reader: PrefixReader
    do {
      reader = try PrefixReader(entry: entry, bytes: bytes)
    } catch {
      throw fail(.corruptData, error.message, member: name)
    }
    func prefix(_ count: Int) throws -> [UInt8] {
      do {
        return try reader.prefix(count)
      } catch {
        throw fail(.corruptData, error.message, member: name)
      }
    }

    let preamble = try prefix(12)
    guard preamble.count >= 10, preamble.starts(with: npyMagic) else {
      throw invalid("not a .npy array (no \\x93NUMPY magic)")
    }
    let major = Int(preamble[6])
    let minor = Int(preamble[7])
    let headerStart: Int
    let headerLength: Int
    switch major {
    case 1:
      headerStart = 10
      headerLength = Int(preamble[8]) | Int(preamble[9]) << 8
    case 2, 3:
      guard preamble.count >= 12 else { throw invalid("the .npy header is truncated") }
      headerStart = 12
      headerLength = preamble[8..<12].enumerated().reduce(0) { $0 | Int($1.1) << (8 * $1.0) }
    default:
      throw invalid("unsupported .npy format version \(major).\(minor)")
    }
    guard headerLength <= maxNpyHeaderLength else {
      throw invalid("the .npy header claims \(headerLength) bytes (limit \(maxNpyHeaderLength))")
    }
    let npyHeaderLength = headerStart + headerLength
    let headerBytes = try prefix(npyHeaderLength)
    guard headerBytes.count == npyHeaderLength else {
      throw fail(
        .truncated,
        "the .npy header needs \(npyHeaderLength) bytes, the member has \(headerBytes.count)",
        member: name)
    }
    let text =
      major == 3
      ? String(decoding: headerBytes[headerStart...], as: UTF8.self)
      : String(String.UnicodeScalarView(headerBytes[headerStart...].map { Unicode.Scalar($0) }))
    let header: NpyHeader
    do {
      header = try NpyHeader(parsing: text)
    } catch {
      throw invalid(
        "bad .npy header \(text.trimmingCharacters(in: .whitespacesAndNewlines)): "
          + error.message)
    }
    let parsed = NumpyDType.parse(header.descr)
    let info = NumpyArrayInfo(
      member: name, descr: header.descr, dtype: parsed?.0, bigEndian: parsed?.bigEndian ?? false,
      fortranOrder: header.fortranOrder, shape: header.shape, formatVersion: major,
      compression: entry.method == 0 ? .stored : .deflated, compressedSize: entry.compressedSize)
    if let dtype = info.dtype {
      var need = dtype.byteSize
      var overflow = false
      for extent in info.shape where !overflow {
        (need, overflow) = need.multipliedReportingOverflow(by: extent)
      }
      let have = entry.uncompressedSize - npyHeaderLength
      guard !overflow, need == have else {
        let needText = overflow ? "more than \(Int.max)" : "\(need)"
        throw fail(
          !overflow && need > have ? .truncated : .dataSizeMismatch,
          "shape \(info.shape) of \(header.descr) needs \(needText) bytes of data, the member "
            + "has \(have)", member: name)
      }
    }
    return NumpyArchive.Member(
      info: info, dataOffset: entry.dataOffset, uncompressedSize: entry.uncompressedSize,
      npyHeaderLength: npyHeaderLength, crc: entry.crc)
  }
}

/// The first bytes of a member, inflated as far as needed when it is deflated.
private final class PrefixReader {
  private let entry: ZipEntry
  private let bytes: UnsafeRawBufferPointer
  private let inflater: RawInflater?
  private var inflated: [UInt8] = []

  init(entry: ZipEntry, bytes: UnsafeRawBufferPointer) throws(RawInflater.Failure) {
    self.entry = entry
    self.bytes = bytes
    inflater =
      entry.method == 0
      ? nil
      : try RawInflater(input: bytes.baseAddress! + entry.dataOffset, count: entry.compressedSize)
  }

  /// The member's first `count` bytes, or all of them when it is shorter.
  func prefix(_ count: Int) throws(RawInflater.Failure) -> [UInt8] {
    let want = Swift.min(count, entry.uncompressedSize)
    guard let inflater else {
      return Array(bytes[entry.dataOffset..<(entry.dataOffset + want)])
    }
    if inflated.count < want {
      let need = want - inflated.count
      let more = UnsafeMutableRawBufferPointer.allocate(byteCount: need, alignment: 1)
      defer { more.deallocate() }
      let got = try inflater.read(into: more.baseAddress!, count: need)
      inflated += more[..<got]
    }
    return Array(inflated.prefix(want))
  }
}

// MARK: - .npy header

/// The three keys of a `.npy` header.
private struct NpyHeader {
  struct Failure: Error { let message: String }

  var descr: String
  var fortranOrder: Bool
  var shape: [Int]

  init(parsing text: String) throws(Failure) {
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
    switch seen["descr"]! {
    case .string(let s): descr = s
    case let other: descr = other.rendered  // a structured type (list of fields)
    }
    guard case .bool(let fortran) = seen["fortran_order"]! else {
      throw Failure(message: "fortran_order is not True or False")
    }
    fortranOrder = fortran
    guard case .tuple(let items) = seen["shape"]! else {
      throw Failure(message: "shape is not a tuple")
    }
    shape = []
    for item in items {
      guard case .int(let extent) = item, extent >= 0 else {
        throw Failure(message: "shape has an entry that is not an integer ≥ 0")
      }
      shape.append(extent)
    }
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
  let text: [Unicode.Scalar]
  var index = 0
  var depth = 0

  init(_ text: [Unicode.Scalar]) { self.text = text }

  typealias Failure = NpyHeader.Failure

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

// MARK: - Element conversion

/// Decodes `count` elements of `dtype` at `src` (any alignment) into Floats.
private func convertToFloat(
  _ src: UnsafeRawPointer, dtype: NumpyDType, bigEndian: Bool, count: Int,
  into dst: UnsafeMutablePointer<Float>
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
  switch dtype {
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

/// Element `index` of an integer or bool array as `Int`; nil when it does not fit.
private func loadInteger(_ src: UnsafeRawPointer, index i: Int, dtype: NumpyDType, bigEndian: Bool)
  -> Int?
{
  func load<T: FixedWidthInteger>(_: T.Type) -> T {
    let v = src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
    return bigEndian ? T(bigEndian: v) : T(littleEndian: v)
  }
  switch dtype {
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

/// Reorders column-major `values` of `shape` into row-major order.
private func fortranToC(_ values: [Int], shape: [Int]) -> [Int] {
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

private func hex(_ v: UInt32) -> String {
  let digits = String(v, radix: 16)
  return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

/// zlib's CRC-32 of `count` bytes, fed in pieces that fit its 32-bit length.
private func crc32Of(_ src: UnsafeRawPointer, count: Int, start: UInt32 = 0) -> UInt32 {
  var crc = UInt(start)
  var done = 0
  while done < count {
    let n = Swift.min(count - done, 1 << 30)
    crc = CZlib.crc32(crc, src.assumingMemoryBound(to: Bytef.self) + done, uInt(n))
    done += n
  }
  return UInt32(truncatingIfNeeded: crc)
}

// MARK: - Inflate

/// A raw-deflate (zip method 8) decoder over compressed bytes in memory, keeping a running CRC-32
/// of what it produces.
final class RawInflater {
  struct Failure: Error { let message: String }

  private let stream: UnsafeMutablePointer<z_stream>
  private var next: UnsafeMutablePointer<Bytef>
  private var remaining: Int
  private var ended = false
  /// CRC-32 of the bytes produced so far.
  private(set) var crc: UInt32 = 0

  init(input: UnsafeRawPointer, count: Int) throws(Failure) {
    // zlib keeps a pointer back to the stream, so it needs a fixed address.
    stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    next = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self))
    remaining = count
    let status = inflateInit2_(stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else {
      stream.deinitialize(count: 1)
      stream.deallocate()
      throw Failure(message: "cannot start inflate (zlib status \(status))")
    }
  }

  deinit {
    inflateEnd(stream)
    stream.deinitialize(count: 1)
    stream.deallocate()
  }

  /// Inflates up to `count` bytes into `dst`, fewer only where the stream ends; returns how many.
  func read(into dst: UnsafeMutableRawPointer, count: Int) throws(Failure) -> Int {
    var written = 0
    while written < count && !ended {
      if stream.pointee.avail_in == 0 && remaining > 0 {
        let n = Swift.min(remaining, 1 << 30)
        stream.pointee.next_in = next
        stream.pointee.avail_in = uInt(n)
        next += n
        remaining -= n
      }
      let out = dst + written
      let room = Swift.min(count - written, 1 << 30)
      stream.pointee.next_out = out.assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_out = uInt(room)
      let status = inflate(stream, Z_NO_FLUSH)
      let produced = room - Int(stream.pointee.avail_out)
      crc = crc32Of(UnsafeRawPointer(out), count: produced, start: crc)
      written += produced
      switch status {
      case Z_STREAM_END:
        ended = true
      case Z_OK:
        break
      case Z_BUF_ERROR where stream.pointee.avail_in == 0 && remaining == 0:
        throw Failure(message: "the deflate stream ends early (truncated data)")
      case Z_BUF_ERROR:
        break
      default:
        let detail = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
        throw Failure(message: "corrupt deflate data: \(detail)")
      }
    }
    return written
  }

  /// Inflates exactly `count` bytes into `dst`.
  func readExactly(into dst: UnsafeMutableRawPointer, count: Int) throws(Failure) {
    let got = try read(into: dst, count: count)
    guard got == count else {
      throw Failure(message: "the deflate stream ends after \(got) of \(count) expected bytes")
    }
  }

  /// True when the stream ends here (nothing more would be produced).
  func atEnd() throws(Failure) -> Bool {
    var byte: UInt8 = 0
    return try read(into: &byte, count: 1) == 0
  }
}
