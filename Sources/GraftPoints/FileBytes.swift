import Foundation
import GraftTensor

/// The bytes of the file at `url`, memory-mapped; missing and unreadable files become named
/// errors.
func readFileBytes(_ url: URL) throws -> Data {
  let path = url.path
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw PointFileError(.fileNotFound, path: path, "no such file")
  }
  guard !isDirectory.boolValue else {
    throw PointFileError(.readFailed, path: path, "is a directory")
  }
  do {
    return try Data(contentsOf: url, options: .alwaysMapped)
  } catch {
    throw PointFileError(.readFailed, path: path, "cannot read: \(error.localizedDescription)")
  }
}

/// Writes `bytes` to `url` atomically (a reader never sees a half-written file), turning I/O
/// failures into `PointFileError`.
func writeFileBytes(_ bytes: [UInt8], to url: URL) throws {
  do {
    try AtomicFile.write(to: url) { output in
      try bytes.withUnsafeBytes { try output.write($0) }
    }
  } catch let error as AtomicFileError {
    throw PointFileError(.writeFailed, path: url.path, error.description)
  }
}
