import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An I/O failure while writing a file atomically; the description names the destination path.
public struct AtomicFileError: Error, CustomStringConvertible, Sendable {
  /// The file that was being written.
  public let path: String
  /// What failed ("create temporary file", "write", "fsync", "rename", …).
  public let operation: String
  /// The system's explanation (`strerror`) or another detail.
  public let reason: String

  /// A description naming the path, the failed step and the reason.
  public var description: String { "\(path): \(operation) failed: \(reason)" }
}

/// Writes files all-or-nothing: the bytes go to a temporary file in the destination's directory,
/// which is flushed to disk and then renamed over the destination.
///
/// Readers therefore see either the old file or the complete new one, never a partial write,
/// and a process that has the old file memory-mapped keeps its (unlinked) contents. On any
/// error the temporary file is removed and an existing destination is left untouched.
public enum AtomicFile {
  /// Replaces (or creates) the file at `url` with `data`.
  public static func write(_ data: Data, to url: URL) throws {
    try write(to: url) { output in try output.write(data) }
  }

  /// Replaces (or creates) the file at `url` with whatever `body` writes to the output.
  ///
  /// Errors thrown by `body` are rethrown unchanged after the temporary file is removed.
  public static func write(to url: URL, _ body: (Output) throws -> Void) throws {
    let path = url.path
    let directory = url.deletingLastPathComponent().path
    let tempPath = try uniqueTemporaryPath(for: url)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
    guard fd >= 0 else {
      throw AtomicFileError(
        path: path, operation: "create temporary file in \(directory)", reason: errnoString())
    }
    let output = Output(fd: fd, path: path)
    var closed = false
    do {
      try body(output)
      guard fsync(fd) == 0 else {
        throw AtomicFileError(path: path, operation: "fsync", reason: errnoString())
      }
      closed = true
      guard close(fd) == 0 else {
        throw AtomicFileError(path: path, operation: "close", reason: errnoString())
      }
      guard rename(tempPath, path) == 0 else {
        throw AtomicFileError(path: path, operation: "rename", reason: errnoString())
      }
    } catch {
      if !closed { _ = close(fd) }
      _ = unlink(tempPath)
      throw error
    }
    // Make the rename itself durable; a failure here cannot undo the (already visible) file.
    let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
    if dirFD >= 0 {
      _ = fsync(dirFD)
      _ = close(dirFD)
    }
  }

  /// The open temporary file that `write(to:_:)` hands to its body.
  public final class Output {
    private let fd: Int32
    private let path: String
    /// Bytes written so far.
    public private(set) var bytesWritten = 0

    init(fd: Int32, path: String) {
      self.fd = fd
      self.path = path
    }

    /// Appends `data`.
    public func write(_ data: Data) throws {
      try data.withUnsafeBytes { try write($0) }
    }

    /// Appends the bytes of `buffer`, retrying short and interrupted writes.
    public func write(_ buffer: UnsafeRawBufferPointer) throws {
      guard var next = buffer.baseAddress else { return }
      var left = buffer.count
      while left > 0 {
        let n = posixWrite(fd, next, left)
        if n < 0 {
          if errno == EINTR { continue }
          throw AtomicFileError(path: path, operation: "write", reason: errnoString())
        }
        next += n
        left -= n
        bytesWritten += n
      }
    }
  }

  /// `.<name>.tmp-<pid>-<random>` next to the destination, so the final rename stays within one
  /// file system.
  private static func uniqueTemporaryPath(for url: URL) throws -> String {
    let name = url.lastPathComponent
    guard !name.isEmpty, name != "/" else {
      throw AtomicFileError(path: url.path, operation: "open", reason: "not a file path")
    }
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    return url.deletingLastPathComponent()
      .appendingPathComponent(".\(name).tmp-\(getpid())-\(suffix)").path
  }
}

/// The current `errno` as text.
private func errnoString() -> String { String(cString: strerror(errno)) }

/// `write(2)`, reachable where a method named `write` shadows it.
private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  write(fd, bytes, count)
}
