import Foundation

/// FNV-1a, 64-bit: a fast, non-cryptographic content hash used to recognise a backbone's
/// weights (it tells files apart, it does not resist tampering). Written as `fnv1a64:<16 hex>`.
public struct FNV1a64: Sendable {
  /// The running hash.
  public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

  /// A fresh hash.
  public init() {}

  /// Mixes `bytes` in.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    var h = value
    for b in bytes {
      h ^= UInt64(b)
      h &*= 0x0000_0100_0000_01b3
    }
    value = h
  }

  /// `fnv1a64:` and the hash in 16 hex digits.
  public var tagged: String {
    let hex = String(value, radix: 16)
    return "fnv1a64:" + String(repeating: "0", count: 16 - hex.count) + hex
  }

  /// The tagged hash of a file's bytes (memory-mapped, read once).
  public static func file(_ url: URL) throws -> String {
    let data = try Data(contentsOf: url, options: .alwaysMapped)
    var h = FNV1a64()
    data.withUnsafeBytes { h.update($0) }
    return h.tagged
  }

  /// The tagged hash of named tensors' values, in name order (for models built in memory):
  /// each name's UTF-8 bytes, then its Float32 values.
  public static func tensors(_ tensors: [(name: String, tensor: Tensor)]) -> String {
    var h = FNV1a64()
    for (name, t) in tensors.sorted(by: { $0.name < $1.name }) {
      Array(name.utf8).withUnsafeBytes { h.update($0) }
      h.update(UnsafeRawBufferPointer(start: t.pointer, count: t.count * 4))
    }
    return h.tagged
  }
}
