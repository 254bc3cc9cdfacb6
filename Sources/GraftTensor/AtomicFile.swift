import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Writes files all-or-nothing: the bytes go to a temporary file in the destination's directory,
/// which is flushed to disk and then renamed over the destination.
///
/// Readers therefore see either the old file or the complete new one, never a partial write,
/// and a process that has the old file memory-mapped keeps its (unlinked) contents. On any
/// error the temporary file is removed and an existing destination is left untouched. I/O
/// failures throw `FileError`: the destination, the step that failed and the system's reason.
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
      throw failure(path, "create temporary file in \(directory)")
    }
    let output = Output(fd: fd, path: path)
    var closed = false
    do {
      try body(output)
      guard fsync(fd) == 0 else { throw failure(path, "fsync") }
      closed = true
      guard close(fd) == 0 else { throw failure(path, "close") }
      guard rename(tempPath, path) == 0 else { throw failure(path, "rename") }
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
          throw failure(path, "write")
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
      throw FileError(path: url.path, message: "open failed: not a file path")
    }
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    return url.deletingLastPathComponent()
      .appendingPathComponent(".\(name).tmp-\(getpid())-\(suffix)").path
  }
}

/// `path: <operation> failed: <the current errno as text>`.
private func failure(_ path: String, _ operation: String) -> FileError {
  FileError(path: path, message: "\(operation) failed: \(String(cString: strerror(errno)))")
}

/// `write(2)`, reachable where a method named `write` shadows it.
private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  write(fd, bytes, count)
}
