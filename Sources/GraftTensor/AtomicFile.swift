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
///
/// Only a regular file, or a path where nothing exists yet, is replaced. A symbolic link, a
/// folder, a device node, a FIFO or a socket is refused with a `FileError` saying what it is:
/// renaming over it would replace the link or the node itself (as root, `-o /dev/full` would
/// swap the system's device for a plain file). `/dev/stdout`-style paths are refused too,
/// deliberately: writing through them instead would give up the all-or-nothing guarantee that
/// callers rely on (a failed write would leave half a file in a pipe or a terminal), and every
/// output Graft writes is binary or a file meant to be kept; write a file and `cat` it to send
/// it down a pipe. A link is not followed: give the path it points to.
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
    try checkReplaceable(path)
    let tempPath = try uniqueTemporaryPath(for: url)
    let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
    guard fd >= 0 else {
      throw failure(path, "create temporary file in \(directory)")
    }
    let output = Output(fd: fd, path: path)
    var closed = false
    do {
      try body(output)
      try CrashPoint.reach("fsync", path)
      guard fsync(fd) == 0 else { throw failure(path, "fsync") }
      closed = true
      guard close(fd) == 0 else { throw failure(path, "close") }
      try CrashPoint.reach("rename", path)
      // Again, for what appeared at the path while the body wrote.
      try checkReplaceable(path)
      guard rename(tempPath, path) == 0 else { throw failure(path, "rename") }
    } catch is SimulatedCrash {
      // A killed process removes nothing: leave the temporary file as a kill would.
      if !closed { _ = close(fd) }
      throw SimulatedCrash()
    } catch {
      if !closed { _ = close(fd) }
      _ = unlink(tempPath)
      throw error
    }
    try CrashPoint.reach("sync-directory", path)
    // Make the rename itself durable; a failure here cannot undo the (already visible) file.
    syncDirectory(directory.isEmpty ? "." : directory)
  }

  /// Throws unless `path` is a regular file or does not exist (see the type's documentation).
  public static func checkReplaceable(_ path: String) throws {
    var st = stat()
    guard lstat(path, &st) == 0 else {
      if errno == ENOENT || errno == ENOTDIR { return }  // nothing there yet (or no folder)
      throw failure(path, "stat")
    }
    let what: String
    switch st.st_mode & S_IFMT {
    case S_IFREG: return
    case S_IFLNK: what = "a symbolic link (give the path it points to)"
    case S_IFDIR: what = "a folder"
    case S_IFCHR: what = "a character device"
    case S_IFBLK: what = "a block device"
    case S_IFIFO: what = "a FIFO (named pipe)"
    case S_IFSOCK: what = "a socket"
    default: what = "not a regular file"
    }
    throw FileError(
      path: path,
      message: "is \(what); outputs are written as regular files and replaced atomically, "
        + "so Graft never replaces it")
  }

  /// Flushes a folder's entries (a rename or removal in it) to disk; best effort, as the change
  /// is already visible and cannot be undone.
  public static func syncDirectory(_ path: String) {
    let dirFD = open(path, O_RDONLY | O_CLOEXEC)
    if dirFD >= 0 {
      _ = fsync(dirFD)
      _ = close(dirFD)
    }
  }

  /// Whether `name` is one of the temporary files `write` makes (`.<name>.tmp-<pid>-<random>`).
  public static func isTemporaryName(_ name: String) -> Bool {
    name.hasPrefix(".") && name.contains(".tmp-")
  }

  /// Removes the temporary files that writes interrupted by a crash left in `folder` (not in
  /// its subfolders) and returns their names. Call it only while no other process writes in
  /// the folder (a run folder's lock guarantees that).
  @discardableResult
  public static func removeTemporaryFiles(in folder: URL) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    var removed: [String] = []
    for name in names.sorted() where isTemporaryName(name) {
      if unlink(folder.appendingPathComponent(name).path) == 0 { removed.append(name) }
    }
    return removed
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

  /// Removes the temporary files a killed writer left in `directory` (`.NAME.tmp-PID-…`, as
  /// `write` names them): those whose process no longer exists on this machine and that nobody
  /// has modified for `minimumAge` seconds (a writer on another machine sharing the folder
  /// keeps its file's time fresh). A run's folder gets this from `--resume`; a shared folder
  /// such as the feature cache needs it when it is next used, or a run killed while it built a
  /// cache file leaves that file's full size behind for good. Returns each removed file's path
  /// and size in bytes.
  public static func removeAbandonedTemporaries(in directory: URL, minimumAge: TimeInterval = 600)
    -> [(path: String, bytes: Int)]
  {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    var removed: [(path: String, bytes: Int)] = []
    let now = Date().timeIntervalSince1970
    for name in names where isTemporaryName(name) {
      guard let pid = writerProcess(ofTemporary: name), kill(pid, 0) != 0, errno == ESRCH
      else { continue }
      let path = directory.appendingPathComponent(name).path
      var st = stat()
      guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
        now - Double(modificationSeconds(st)) >= minimumAge, unlink(path) == 0
      else { continue }
      removed.append((path, Int(st.st_size)))
    }
    return removed
  }

  /// The process id in a name `write` makes, `.<name>.tmp-<digits>-<base-36 digits>`, or nil
  /// for any other name (a `.notes.tmp-123` of somebody else's is not taken for one).
  static func writerProcess(ofTemporary name: String) -> pid_t? {
    guard let marker = name.range(of: ".tmp-", options: .backwards),
      marker.lowerBound > name.index(after: name.startIndex)
    else { return nil }
    let fields = name[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
    guard fields.count == 2, !fields[1].isEmpty,
      fields[1].allSatisfy({ $0.isASCII && ($0.isNumber || $0.isLowercase) }),
      fields[0].allSatisfy({ $0.isASCII && $0.isNumber }), let pid = pid_t(fields[0]), pid > 0
    else { return nil }
    return pid
  }

  private static func modificationSeconds(_ st: stat) -> Int {
    #if canImport(Darwin)
      return Int(st.st_mtimespec.tv_sec)
    #else
      return Int(st.st_mtim.tv_sec)
    #endif
  }

  /// `.<name>.tmp-<pid>-<random>` next to the destination, so the final rename stays within one
  /// file system.
  private static func uniqueTemporaryPath(for url: URL) throws -> String {
    let name = url.lastPathComponent
    guard !name.isEmpty, name != "/" else {
      throw FileError(path: url.path, message: "open failed: not a file path")
    }
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    // A file name may take 255 bytes and the marks add up to 38: a long name is shortened in
    // the temporary one only (a 250-byte output name failed with "File name too long").
    var stem = ""
    for character in name {
      guard stem.utf8.count + character.utf8.count <= 200 else { break }
      stem.append(character)
    }
    return url.deletingLastPathComponent()
      .appendingPathComponent(".\(stem).tmp-\(getpid())-\(suffix)").path
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

/// Thrown by a `CrashPoint.hook` to stop a writer where a kill would: writers that see it leave
/// their temporary files in place instead of cleaning up, so tests can check what a restart
/// finds after a crash at that step.
public struct SimulatedCrash: Error, CustomStringConvertible, Sendable {
  /// A simulated crash.
  public init() {}
  /// "simulated crash".
  public var description: String { "simulated crash" }
}

/// A test hook at every step of a durable write (`fsync`, `rename`, `sync-directory` of
/// `AtomicFile`, and the steps of the checkpoint writers that use it), so a test can stop a
/// process at each of them in turn (by throwing `SimulatedCrash`) and check that a restart
/// recovers. Nil, and free, outside tests.
public enum CrashPoint {
  /// Called with the step and the path before each step; set only by tests, while no other
  /// thread writes files.
  nonisolated(unsafe) public static var hook: ((_ step: String, _ path: String) throws -> Void)?

  /// Calls `hook`, if set.
  @inline(__always)
  public static func reach(_ step: String, _ path: String) throws {
    if let hook { try hook(step, path) }
  }
}
