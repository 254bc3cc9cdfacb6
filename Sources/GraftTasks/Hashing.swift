import Foundation
import GraftTensor

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
    // Mapped, as the safetensors reader maps the same weights: no second copy in memory.
    let file = try MappedFile(path: url.path, allowingEmpty: true)
    var h = FNV1a64()
    file.withBytes { h.update($0) }
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

extension FNV1a64 {
  /// The tagged hash of `text`'s UTF-8 bytes.
  public static func text(_ text: String) -> String {
    var h = FNV1a64()
    Array(text.utf8).withUnsafeBytes { h.update($0) }
    return h.tagged
  }
}

/// The hash of what, besides its weights, defines a backbone's function: its resolved
/// architecture (every setting of the network built, so a changed `model_args.num_heads` or
/// pooling counts and a changed licence or tag does not) and how samples become its input
/// (image preprocessing: size, resampling, crop, mean, std; or the point input).
public enum BackboneConfigHash {
  /// For a Vision Transformer: every stored setting of `config` by name (read by reflection,
  /// so a setting added later is covered without a change here), then the input.
  public static func of(vit config: ViTConfig, input: BackboneInput) -> String {
    FNV1a64.text("graft-backbone-config-v1\nvit\n" + settings(config) + "\n" + text(input))
  }

  /// For any other backbone: its architecture name and the input.
  public static func of(architecture: String, input: BackboneInput) -> String {
    FNV1a64.text("graft-backbone-config-v1\n\(architecture)\n" + text(input))
  }

  /// `name=value;…` of a struct's stored properties, in declaration order; optionals as their
  /// value or `nil`.
  static func settings(_ value: Any) -> String {
    Mirror(reflecting: value).children.map { child in
      let v = child.value
      let m = Mirror(reflecting: v)
      let shown =
        m.displayStyle == .optional ? (m.children.first.map { "\($0.value)" } ?? "nil") : "\(v)"
      return "\(child.label ?? "?")=\(shown)"
    }.joined(separator: ";")
  }

  /// The input settings as canonical JSON (sorted keys).
  static func text(_ input: BackboneInput) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data: Data?
    switch input {
    case .image(let c): data = try? encoder.encode(c)
    case .points(let c): data = try? encoder.encode(c)
    }
    let kind: String
    switch input {
    case .image: kind = "image"
    case .points: kind = "points"
    }
    return kind + ":" + String(decoding: data ?? Data(), as: UTF8.self)
  }
}
