import CZlib
import Foundation

// The zip container of a NumPy `.npz`, read from bytes in memory. The end-of-central-directory
// record at the end of the file (ZIP64: a locator before it, pointing at a record with 64-bit
// fields) gives the central directory; each directory entry gives a member's name, method, CRC-32,
// sizes and the offset of its local header, which repeats the name before the member's data.
// Only what `.npz` files use is read: one disk, no encryption, stored and deflated members.
// Errors are `NumpyArchiveError`s naming the file and, where one is concerned, the member.

/// How a member's bytes are kept in the zip archive.
public enum NumpyArchiveCompression: String, Sendable {
  /// Uncompressed (`np.savez`): F32 data is read in place where aligned.
  case stored
  /// Deflate (`np.savez_compressed`): inflated on every read.
  case deflated
}

/// One member of a zip archive, as its central directory entry and local header describe it.
struct ZipEntry {
  /// The member's name (its path inside the archive).
  let name: String
  let compression: NumpyArchiveCompression
  /// The CRC-32 the archive records; nil for bytes that are not in an archive (a bare `.npy`).
  let crc: UInt32?
  let compressedSize: Int
  let uncompressedSize: Int
  /// File offset of the member's data (after its local header).
  let dataOffset: Int
}

/// A zip archive's bytes (in memory, usually a `MappedFile`'s) and what can be read from them:
/// the directory, a member's first bytes, a deflated member's data, CRC-32 checks.
struct ZipArchive {
  /// The whole file.
  let bytes: UnsafeRawBufferPointer
  /// The file's path, for errors.
  let path: String

  /// An error about this file (and `member`, if given).
  func fail(_ kind: NumpyArchiveError.Kind, _ message: String, member: String? = nil)
    -> NumpyArchiveError
  {
    NumpyArchiveError(kind: kind, path: path, member: member, message: message)
  }

  private func u16(_ offset: Int) -> Int {
    Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
  }
  private func u32(_ offset: Int) -> Int {
    Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
  }
  /// A 64-bit size or offset; nil when it does not fit in `Int`.
  private func u64(_ offset: Int) -> Int? {
    Int(exactly: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
  }

  /// True when `count` bytes at `offset` lie inside the file.
  private func inBounds(_ offset: Int, _ count: Int) -> Bool {
    offset >= 0 && count >= 0 && offset <= bytes.count && count <= bytes.count - offset
  }

  // MARK: Directory

  /// The entries of the central directory, in archive order, validated against their local
  /// headers.
  func entries() throws -> [ZipEntry] {
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
      let next = cursor + 46 + u16(cursor + 28) + u16(cursor + 30) + u16(cursor + 32)
      guard next <= end else {
        throw fail(.invalidArchive, "central directory entry \(index) runs past the directory")
      }
      entries.append(try entry(at: cursor))
      cursor = next
    }
    return entries
  }

  /// The central directory entry at `cursor` (which fits in the directory), checked against
  /// its local header.
  private func entry(at cursor: Int) throws -> ZipEntry {
    let flags = u16(cursor + 8)
    let method = u16(cursor + 10)
    let crc = UInt32(u32(cursor + 16))
    var compressedSize = u32(cursor + 20)
    var uncompressedSize = u32(cursor + 24)
    let nameLength = u16(cursor + 28)
    let extraLength = u16(cursor + 30)
    var localOffset = u32(cursor + 42)
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
          + "(\(bytes.count) bytes)", member: name)
    }
    return ZipEntry(
      name: name, compression: method == 0 ? .stored : .deflated, crc: crc,
      compressedSize: compressedSize, uncompressedSize: uncompressedSize, dataOffset: dataOffset)
  }

  // MARK: Member data

  /// A reader of `entry`'s first bytes, for parsing what the member starts with.
  func prefixReader(_ entry: ZipEntry) throws -> ZipPrefixReader {
    try ZipPrefixReader(entry: entry, archive: self)
  }

  /// Inflates a deflated `entry`: discards its first `skipping` bytes, lets `body` read on, then
  /// checks that the stream ends there and that the whole member's CRC-32 is the recorded one.
  func inflate(_ entry: ZipEntry, skipping: Int, _ body: (RawInflater) throws -> Void) throws {
    do {
      let inflater = try RawInflater(
        input: bytes.baseAddress! + entry.dataOffset, count: entry.compressedSize)
      if skipping > 0 {
        var skipped = [UInt8](repeating: 0, count: skipping)
        try skipped.withUnsafeMutableBytes {
          try inflater.readExactly(into: $0.baseAddress!, count: skipping)
        }
      }
      try body(inflater)
      guard try inflater.atEnd() else {
        throw fail(
          .dataSizeMismatch,
          "inflates to more than the \(entry.uncompressedSize) bytes the archive records",
          member: entry.name)
      }
      try checkCRC(entry, actual: inflater.crc)
    } catch let failure as RawInflater.Failure {
      throw fail(.corruptData, failure.message, member: entry.name)
    }
  }

  /// Checks `entry` against the CRC-32 the archive records (nothing to check without one); a
  /// deflated member is inflated whole, which also checks its size.
  func verify(_ entry: ZipEntry) throws {
    guard entry.crc != nil else { return }
    switch entry.compression {
    case .stored:
      try checkCRC(
        entry, actual: crc32Of(bytes.baseAddress! + entry.dataOffset, count: entry.uncompressedSize)
      )
    case .deflated:
      try inflate(entry, skipping: 0) { inflater in
        let chunk = 1 << 20
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { scratch.deallocate() }
        var left = entry.uncompressedSize
        while left > 0 {
          let n = Swift.min(left, chunk)
          try inflater.readExactly(into: scratch, count: n)
          left -= n
        }
      }
    }
  }

  /// Throws `checksumMismatch` unless `actual` is the CRC-32 recorded for `entry`.
  private func checkCRC(_ entry: ZipEntry, actual: UInt32) throws {
    guard let expected = entry.crc, actual != expected else { return }
    throw fail(
      .checksumMismatch, "CRC-32 is \(hex(actual)) but the archive records \(hex(expected))",
      member: entry.name)
  }
}

/// A member's first bytes, inflated only as far as needed when it is deflated.
final class ZipPrefixReader {
  private let entry: ZipEntry
  private let archive: ZipArchive
  private let inflater: RawInflater?
  private var inflated: [UInt8] = []

  fileprivate init(entry: ZipEntry, archive: ZipArchive) throws {
    self.entry = entry
    self.archive = archive
    do {
      inflater =
        entry.compression == .stored
        ? nil
        : try RawInflater(
          input: archive.bytes.baseAddress! + entry.dataOffset, count: entry.compressedSize)
    } catch {
      throw archive.fail(.corruptData, error.message, member: entry.name)
    }
  }

  /// The member's first `count` bytes, or all of them when it is shorter.
  func prefix(_ count: Int) throws -> [UInt8] {
    let want = Swift.min(count, entry.uncompressedSize)
    guard let inflater else {
      return Array(archive.bytes[entry.dataOffset..<(entry.dataOffset + want)])
    }
    if inflated.count < want {
      let need = want - inflated.count
      let more = UnsafeMutableRawBufferPointer.allocate(byteCount: need, alignment: 1)
      defer { more.deallocate() }
      do {
        let got = try inflater.read(into: more.baseAddress!, count: need)
        inflated += more[..<got]
      } catch {
        throw archive.fail(.corruptData, error.message, member: entry.name)
      }
    }
    return Array(inflated.prefix(want))
  }
}

// MARK: - Inflate and CRC-32

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

/// `0x` and eight hex digits.
private func hex(_ v: UInt32) -> String {
  let digits = String(v, radix: 16)
  return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
