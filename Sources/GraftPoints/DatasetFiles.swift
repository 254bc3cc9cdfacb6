import Foundation
import GraftData
import GraftTensor

// What the point-cloud datasets share: listing folders in a fixed order and reading the small
// text files (class names, id lists, file lists) that their layouts carry. Problems with the
// layout are `DatasetError`s naming the file or folder; problems inside a cloud file stay the
// readers' `PointFileError`s.

enum DatasetFiles {
  /// Whether `path` names an existing folder (following symbolic links).
  static func isDirectory(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
      && isDirectory.boolValue
  }

  /// Whether `path` names an existing file that is not a folder.
  static func isFile(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
      && !isDirectory.boolValue
  }

  /// Throws unless `path` is an existing folder; `what` says what it should hold.
  static func requireFolder(_ path: String, _ what: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
      throw DatasetError(.notFound, path: path, "\(what) does not exist")
    }
    guard isDirectory(path) else {
      throw DatasetError(.invalidArgument, path: path, "is a file, expected \(what)")
    }
  }

  /// The visible entries of a folder (names not starting with `.`), sorted by Unicode code
  /// points so the order is the same on every file system and locale.
  static func listing(_ path: String) throws -> [String] {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      throw DatasetError(.io, path: path, "cannot list folder: \(error.localizedDescription)")
    }
    return names.filter { !$0.hasPrefix(".") }.sorted(by: codePointPrecedes)
  }

  /// The non-blank lines of a UTF-8 text file, trimmed, with their 1-based line numbers.
  static func lines(_ url: URL, _ what: String) throws -> [(line: Int, text: String)] {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
      throw DatasetError(.notFound, path: path, "\(what) does not exist")
    }
    let data: Data
    do {
      data = try MappedFile.contents(of: url)
    } catch {
      throw DatasetError(.io, path: path, "cannot read \(what): \(error.message)")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw DatasetError(.invalidFormat, path: path, "\(what) is not UTF-8 text")
    }
    var result: [(Int, String)] = []
    // Split on any line end: Swift reads "\r\n" as one character, which is not "\n".
    let rawLines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    for (i, raw) in rawLines.enumerated() {
      let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if !line.isEmpty { result.append((i + 1, line)) }
    }
    return result
  }

  /// Class names, one per line, checked to be distinct.
  static func classNames(_ url: URL) throws -> [String] {
    let lines = try lines(url, "class name file")
    var seen: [String: Int] = [:]
    for (number, name) in lines {
      if let first = seen[name] {
        throw DatasetError(
          .invalidFormat, path: url.path, line: number,
          "class '\(name)' is named twice (first on line \(first))")
      }
      seen[name] = number
    }
    guard !lines.isEmpty else {
      throw DatasetError(.empty, path: url.path, "class name file names no class")
    }
    return lines.map(\.text)
  }
}

/// Whether `a` sorts before `b` by Unicode code points (locale-independent).
func codePointPrecedes(_ a: String, _ b: String) -> Bool {
  a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
}

/// A 64-bit FNV-1a hash of `text`'s UTF-8 bytes: a seed that depends on a name only, the same on
/// every machine and run (Swift's `hashValue` is randomised per process).
func stableHash(_ text: String) -> UInt64 {
  var h: UInt64 = 0xCBF2_9CE4_8422_2325
  for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
  return h
}
