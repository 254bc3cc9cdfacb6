import Foundation
import GraftTensor

/// Reading a model folder's JSON files (`config.json`, `tokenizer.json`, …) into `JSONValue`s.
public enum JSONFile {
  /// The top-level object of the JSON file at `url`. A missing file (`missing` says what would
  /// hold one), an unreadable one, invalid JSON or a top level that is not an object throw
  /// `FileError` naming the file. Read through `MappedFile`, as every reader (Foundation's
  /// `Data(contentsOf:)` leaked 4 KiB on an empty file, found by Tools/fuzz.sh timm-config).
  public static func readObject(_ url: URL, missing: String) throws -> [String: JSONValue] {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw FileError(path: url.path, message: "no such file (\(missing))")
    }
    let data: Data
    do {
      data = try MappedFile(path: url.path, allowingEmpty: true).data
    } catch {
      throw FileError(path: url.path, message: "cannot read: \(error.message)")
    }
    let json: JSONValue
    do {
      json = try JSONDecoder().decode(JSONValue.self, from: data)
    } catch {
      throw FileError(path: url.path, message: "not valid JSON")
    }
    guard let object = json.objectValue else {
      throw FileError(path: url.path, message: "the top level is not a JSON object")
    }
    return object
  }
}
