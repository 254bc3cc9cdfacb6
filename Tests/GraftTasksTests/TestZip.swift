import Foundation

/// Writes small zip archives for tests: each member stored, or "deflated" as raw deflate
/// stored blocks (valid deflate that any inflater reads, so the reader's inflate path runs
/// without a compressor in the tests).
enum TestZip {
  /// A member: its name, its bytes, and whether it is written with method 8 (deflate).
  struct Member {
    var name: String
    var bytes: [UInt8]
    var deflated = false
  }

  /// The archive's bytes.
  static func archive(_ members: [Member]) -> [UInt8] {
    var out: [UInt8] = []
    var directory: [UInt8] = []
    for m in members {
      let payload = m.deflated ? storedDeflate(m.bytes) : m.bytes
      let crc = crc32(m.bytes)
      let name = Array(m.name.utf8)
      let offset = out.count
      out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(m.deflated ? 8 : 0) + le16(0) + le16(0)
      out += le32(crc) + le32(UInt32(payload.count)) + le32(UInt32(m.bytes.count))
      out += le16(UInt16(name.count)) + le16(0) + name + payload
      directory += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(m.deflated ? 8 : 0)
      directory += le16(0) + le16(0) + le32(crc) + le32(UInt32(payload.count))
      directory += le32(UInt32(m.bytes.count)) + le16(UInt16(name.count)) + le16(0) + le16(0)
      directory += le16(0) + le16(0) + le32(0) + le32(UInt32(offset)) + name
    }
    let directoryOffset = out.count
    out += directory
    out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(members.count))
    out += le16(UInt16(members.count)) + le32(UInt32(directory.count))
    out += le32(UInt32(directoryOffset)) + le16(0)
    return out
  }

  /// Writes the archive of `members` to `url`.
  static func write(_ members: [Member], to url: URL) throws {
    try Data(archive(members)).write(to: url)
  }

  /// Raw deflate of `bytes` as uncompressed blocks of at most 65,535 bytes.
  static func storedDeflate(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var start = 0
    repeat {
      let n = min(65_535, bytes.count - start)
      let final = start + n == bytes.count
      out.append(final ? 1 : 0)
      out += le16(UInt16(n)) + le16(~UInt16(n))
      out += bytes[start..<(start + n)]
      start += n
    } while start < bytes.count
    return out
  }

  /// CRC-32 (IEEE 802.3, reflected), bit by bit.
  static func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
      crc ^= UInt32(b)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  private static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
  private static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}
