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

/// What identifies a dataset's contents cheaply, so that a run trained on a dataset prepared
/// again in place (`graft data prepare furniture --points 4096` into the same folder, a Graft-1k
/// task rebuilt) is not taken for one trained on the new files: the hash of the files that
/// describe the splits, not of every sample.
public enum DataFingerprint {
  /// For `reference` as `graft tune --data` takes it: `graft1k/<task>`, `furniture` (and its
  /// rotated `furniture-so3`) and a folder hash their `prepared.json` (what `graft data
  /// prepare` wrote: counts, seed, settings), else their split lists (VTAB-1k's
  /// `train800.txt`, `val200.txt`, `test.txt`; a detection folder's
  /// `annotations/{train,val,test}.json`); a file (a COCO `.json`, a digits `.csv`) hashes its
  /// bytes. Nil when there is nothing to hash (a bundled name such as `digits`, a folder of
  /// class subfolders): the reference alone then identifies the data.
  public static func of(_ reference: String) -> String? {
    let fm = FileManager.default
    let url: URL
    if reference.hasPrefix("graft1k/") {
      url = Graft1k.defaultRoot().appendingPathComponent(
        String(reference.dropFirst("graft1k/".count)))
    } else if reference == "furniture" || reference == "furniture-so3" {
      url = Furniture.defaultRoot()
    } else {
      url = URL(fileURLWithPath: reference)
    }
    var isFolder: ObjCBool = false
    guard fm.fileExists(atPath: url.path, isDirectory: &isFolder) else { return nil }
    guard isFolder.boolValue else { return try? FNV1a64.file(url) }
    let candidates = [
      ["prepared.json"], ["train800.txt", "val200.txt", "test.txt"],
      ["annotations/train.json", "annotations/val.json", "annotations/test.json"],
    ]
    for names in candidates {
      let files = names.map { url.appendingPathComponent($0) }
      guard files.allSatisfy({ fm.fileExists(atPath: $0.path) }) else { continue }
      var parts: [String] = []
      for (name, file) in zip(names, files) {
        guard let hash = try? FNV1a64.file(file) else { return nil }
        parts.append("\(name) \(hash)")
      }
      return FNV1a64.text(parts.joined(separator: "\n"))
    }
    return nil
  }
}
