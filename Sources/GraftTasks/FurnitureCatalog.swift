import Foundation
import GraftModels

/// One model of a Sweet Home 3D furniture library (`.sh3f`), as its
/// `PluginFurnitureCatalog.properties` describes it (`name#7=Armchair`, `category#7=Living room`,
/// `model#7=/scopia/armchair/armchair.obj`, …).
public struct FurnitureModel: Sendable, Equatable {
  /// The library's file name without `.sh3f` (`Scopia`).
  public var library: String
  /// The entry's number in the catalog (the `7` of `name#7`).
  public var index: Int
  /// The catalog id (`Scopia#armchair`), or `<library>#<index>` when the entry has none.
  public var id: String
  /// The display name (`Armchair`).
  public var name: String
  /// The catalog category (`Living room`).
  public var category: String
  /// The model's path inside the archive, without the leading `/`.
  public var model: String
  /// Who made the model (`creator#N`), empty when not stated.
  public var creator: String
  /// `modelRotation#N`: the 3×3 matrix, row-major, that turns the model upright (y up) as Sweet
  /// Home 3D applies it, `p′ = M · p`; nil when the catalog gives none.
  public var rotation: [Float]?
}

/// A furniture library's catalog: its models and the licence line it states.
public struct FurnitureCatalog: Sendable {
  /// The library's file name without `.sh3f`.
  public var library: String
  /// The catalog's own `license=` line (empty when absent).
  public var license: String
  /// Every entry with a model, by catalog number.
  public var models: [FurnitureModel]

  /// The catalog member every `.sh3f` library holds (the default, English one).
  public static let member = "PluginFurnitureCatalog.properties"

  /// Reads the catalog of the `.sh3f` archive `archive`. Entries without a `model` are skipped
  /// (none are in Debian's libraries); a malformed catalog is a `DatasetError` naming the archive.
  public init(archive: ZipFile) throws {
    let library = archive.url.deletingPathExtension().lastPathComponent
    let source = "\(archive.url.path):\(Self.member)"
    guard archive.contains(Self.member) else {
      throw DatasetError(
        .invalidFormat, path: archive.url.path,
        "no \(Self.member): not a Sweet Home 3D furniture library")
    }
    let properties = try Self.parseProperties(try archive.data(Self.member), path: source)
    var fields: [Int: [String: String]] = [:]
    for (key, value) in properties {
      guard let hash = key.lastIndex(of: "#"), let n = Int(key[key.index(after: hash)...]) else {
        continue
      }
      fields[n, default: [:]][String(key[..<hash])] = value
    }
    var models: [FurnitureModel] = []
    for n in fields.keys.sorted() {
      let f = fields[n]!
      guard let model = f["model"], !model.isEmpty else { continue }
      var rotation: [Float]? = nil
      if let text = f["modelRotation"] {
        let values = text.split(separator: " ").compactMap { Float($0) }
        guard values.count == 9 else {
          throw DatasetError(
            .invalidFormat, path: source, "modelRotation#\(n) is not 9 numbers: '\(text)'")
        }
        rotation = values
      }
      models.append(
        FurnitureModel(
          library: library, index: n, id: f["id"] ?? "\(library)#\(n)",
          name: f["name"] ?? "", category: f["category"] ?? "",
          model: model.hasPrefix("/") ? String(model.dropFirst()) : model,
          creator: f["creator"] ?? "", rotation: rotation))
    }
    self.library = library
    self.license = properties["license"] ?? ""
    self.models = models
  }

  /// The key–value pairs of a Java `.properties` file (ISO-8859-1 text): `#` and `!` comment
  /// lines, a key ending at the first unescaped `=`, `:` or blank, backslash line continuations
  /// and escapes (`\uXXXX`, `\t`, `\n`, `\r`, `\f`, any other character as itself). A later key
  /// replaces an earlier one, as `java.util.Properties.load` does.
  public static func parseProperties(_ data: Data, path: String) throws -> [String: String] {
    // ISO-8859-1 maps every byte to the code point of the same value.
    let scalars = data.map { Character(Unicode.Scalar($0)) }
    var result: [String: String] = [:]
    var i = 0
    var lineNumber = 1
    func isLineEnd(_ c: Character) -> Bool { c == "\n" || c == "\r" || c == "\r\n" }
    func isBlank(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\u{0C}" }
    while i < scalars.count {
      // Skip leading blanks and empty lines.
      while i < scalars.count, isBlank(scalars[i]) || isLineEnd(scalars[i]) {
        if isLineEnd(scalars[i]) { lineNumber += 1 }
        i += 1
      }
      guard i < scalars.count else { break }
      let startLine = lineNumber
      if scalars[i] == "#" || scalars[i] == "!" {
        while i < scalars.count, !isLineEnd(scalars[i]) { i += 1 }
        continue
      }
      // One logical line: physical lines joined where a line ends in an odd number of `\`.
      var logical: [Character] = []
      while i < scalars.count, !isLineEnd(scalars[i]) {
        if scalars[i] == "\\" {
          if i + 1 >= scalars.count { break }
          if isLineEnd(scalars[i + 1]) {
            i += 1
            if scalars[i] == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
            i += 1
            lineNumber += 1
            while i < scalars.count, isBlank(scalars[i]) { i += 1 }
            continue
          }
          logical.append("\\")
          logical.append(scalars[i + 1])
          i += 2
          continue
        }
        logical.append(scalars[i])
        i += 1
      }
      var k = 0
      var key = ""
      while k < logical.count, logical[k] != "=", logical[k] != ":", !isBlank(logical[k]) {
        if logical[k] == "\\", k + 1 < logical.count {
          k += 1
          key += try unescape(logical, &k, path: path, line: startLine)
        } else {
          key.append(logical[k])
          k += 1
        }
      }
      while k < logical.count, isBlank(logical[k]) { k += 1 }
      if k < logical.count, logical[k] == "=" || logical[k] == ":" { k += 1 }
      while k < logical.count, isBlank(logical[k]) { k += 1 }
      var value = ""
      while k < logical.count {
        if logical[k] == "\\", k + 1 < logical.count {
          k += 1
          value += try unescape(logical, &k, path: path, line: startLine)
        } else {
          value.append(logical[k])
          k += 1
        }
      }
      result[key] = value
    }
    return result
  }

  /// The character escaped at `chars[k]` (just after a `\`), advancing `k` past it.
  private static func unescape(
    _ chars: [Character], _ k: inout Int, path: String, line: Int
  ) throws -> String {
    let c = chars[k]
    k += 1
    switch c {
    case "t": return "\t"
    case "n": return "\n"
    case "r": return "\r"
    case "f": return "\u{0C}"
    case "u":
      guard k + 4 <= chars.count, let v = UInt32(String(chars[k..<(k + 4)]), radix: 16) else {
        throw DatasetError(.invalidFormat, path: path, line: line, "malformed \\uXXXX escape")
      }
      k += 4
      // A UTF-16 surrogate (half of an escaped pair) is no scalar on its own.
      return String(Character(Unicode.Scalar(v) ?? "\u{FFFD}"))
    default: return String(c)
    }
  }
}
