import Foundation
import GraftTensor

/// Reading a file and picking typed fields out of `JSONSerialization`'s output, with errors that
/// name the file, the entry and the key.
enum JSONFields {
  /// The file's bytes, or `fileMissing` / `unreadable`.
  static func read(_ path: String) throws -> Data {
    guard FileManager.default.fileExists(atPath: path) else {
      throw DetectionError.fileMissing(path: path)
    }
    do {
      return try MappedFile.contents(of: URL(fileURLWithPath: path))
    } catch {
      throw DetectionError.unreadable(path: path, reason: error.message)
    }
  }

  /// The parsed JSON, or `malformed` with the parser's reason.
  static func parse(_ data: Data, name: String) throws -> Any {
    do {
      return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
      throw DetectionError.malformed(
        path: name, reason: "not JSON (\(error.localizedDescription))")
    }
  }

  /// A JSON number as a Double, correctly rounded from its decimal text.
  static func number(_ value: Any?) -> Double? {
    switch value {
    // JSONSerialization keeps long decimals (such as Python's 17-digit floats) as
    // NSDecimalNumber, whose doubleValue can be off by an ulp; its text converts exactly.
    case let v as NSDecimalNumber: return Double(v.description)
    case let v as Int: return Double(v)
    case let v as Double: return v
    case let v as NSNumber: return v.doubleValue
    default: return nil
    }
  }

  /// A JSON number that is a whole number (an id).
  static func integer(_ value: Any?) -> Int? {
    if let v = value as? Int { return v }
    guard let d = number(value), d.rounded() == d, abs(d) < 9e15 else { return nil }
    return Int(d)
  }

  /// A 0/1 flag, or `true`/`false`; `nil` when absent.
  static func flag(_ value: Any?) -> Bool? {
    if let b = value as? Bool { return b }
    return number(value).map { $0 != 0 }
  }

  /// `[x, y, w, h]`.
  static func box(_ value: Any?) -> BoundingBox? {
    guard let list = value as? [Any], list.count == 4 else { return nil }
    let v = list.compactMap(number)
    guard v.count == 4, v.allSatisfy(\.isFinite) else { return nil }
    return BoundingBox(x: v[0], y: v[1], width: v[2], height: v[3])
  }
}
