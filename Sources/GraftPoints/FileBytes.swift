import Foundation
import GraftTensor

/// The bytes of the file at `url` (mapped when large, read when small, through `MappedFile`);
/// missing, unreadable and non-regular files become named errors. An empty file gives no bytes.
func readFileBytes(_ url: URL) throws -> Data {
  let path = url.path
  do {
    return try MappedFile(path: path, allowingEmpty: true).data
  } catch {
    throw PointFileError(
      error.kind == .notFound ? .fileNotFound : .readFailed, path: path, error.message)
  }
}

/// Writes `bytes` to `url` atomically (a reader never sees a half-written file), turning I/O
/// failures into `PointFileError`.
func writeFileBytes(_ bytes: [UInt8], to url: URL) throws {
  do {
    try AtomicFile.write(to: url) { output in
      try bytes.withUnsafeBytes { try output.write($0) }
    }
  } catch let error as FileError {
    throw PointFileError(.writeFailed, path: url.path, error.message)
  }
}
