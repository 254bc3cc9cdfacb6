import Foundation
import GraftTensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Epoch checkpoints in a folder (a run's `checkpoint/`), each committed as one unit.
///
/// An epoch's files (tensors, optimizer state, `state.json`) are written into a new hidden
/// folder `.epoch-NNNNNN.tmp-<pid>-<random>`, each flushed to disk, with `manifest.json` last
/// (every other file's size and FNV-1a hash); the folder is then renamed to `epoch-NNNNNN` and
/// the parent folder flushed. That rename is the commit: a crash before it leaves the previous
/// epoch as the newest committed one, a crash after it the new one, and a reader never sees a
/// mix of two epochs' files. Older epoch folders are removed after the commit. `latest()`
/// checks the newest folder's files against its manifest, so a file damaged after the commit
/// (or a file system that reorders writes across the rename) is reported, never loaded.
public struct CheckpointStore: Sendable {
  /// The folder holding the epoch folders.
  public let folder: URL

  /// The manifest's file name inside an epoch folder.
  public static let manifestFile = "manifest.json"

  /// Epoch checkpoints in `folder`.
  public init(folder: URL) { self.folder = folder }

  /// A committed epoch: its number and folder.
  public struct Committed: Sendable, Equatable {
    /// Epochs completed.
    public var epoch: Int
    /// Its folder (`epoch-NNNNNN`).
    public var folder: URL

    /// The file `name` of this epoch.
    public func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
  }

  /// `epoch-NNNNNN`.
  static func folderName(epoch: Int) -> String {
    let digits = String(epoch)
    return "epoch-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
  }

  /// The epoch an `epoch-NNNNNN` folder name stands for.
  static func epoch(ofFolderName name: String) -> Int? {
    guard name.hasPrefix("epoch-") else { return nil }
    let digits = name.dropFirst("epoch-".count)
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return Int(digits)
  }

  /// Committed epoch folders, by epoch.
  private func committedFolders() -> [(epoch: Int, name: String)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.compactMap { name in Self.epoch(ofFolderName: name).map { ($0, name) } }
      .sorted { $0.epoch < $1.epoch }
  }

  /// Whether any epoch was committed here.
  public var hasCommittedEpoch: Bool { !committedFolders().isEmpty }

  /// Writes epoch `epoch`'s files (`write` puts them into the folder it is given, each with
  /// `AtomicFile`), then commits them as one unit and removes older epochs.
  public func commit(epoch: Int, _ write: (URL) throws -> Void) throws {
    let fm = FileManager.default
    try RunFolder.createFolder(folder)
    let name = Self.folderName(epoch: epoch)
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    let temporary = folder.appendingPathComponent(".\(name).tmp-\(getpid())-\(suffix)")
    do {
      try fm.createDirectory(at: temporary, withIntermediateDirectories: false)
    } catch {
      throw FileError(path: temporary.path, message: "cannot create: \(error.localizedDescription)")
    }
    try write(temporary)
    try writeManifest(epoch: epoch, in: temporary)
    let final = folder.appendingPathComponent(name)
    // Only a replay after a crash between this commit and the next epoch's could find it.
    if fm.fileExists(atPath: final.path) { try? fm.removeItem(at: final) }
    try CrashPoint.reach("commit", final.path)
    guard rename(temporary.path, final.path) == 0 else {
      throw FileError(
        path: final.path, message: "rename failed: \(String(cString: strerror(errno)))")
    }
    try CrashPoint.reach("sync-directory", folder.path)
    AtomicFile.syncDirectory(folder.path)
    try removeLeftovers(keeping: epoch)
  }

  /// The manifest of the files in `epochFolder`: name → size and hash.
  private func writeManifest(epoch: Int, in epochFolder: URL) throws {
    var files: [String: [String: Any]] = [:]
    let names = try FileManager.default.contentsOfDirectory(atPath: epochFolder.path)
    for name in names where name != Self.manifestFile && !AtomicFile.isTemporaryName(name) {
      let url = epochFolder.appendingPathComponent(name)
      let file = try MappedFile(path: url.path, allowingEmpty: true)
      var h = FNV1a64()
      file.withBytes { h.update($0) }
      files[name] = ["bytes": file.count, "hash": h.tagged]
    }
    let data = try JSONSerialization.data(
      withJSONObject: ["epoch": epoch, "files": files], options: [.sortedKeys])
    try AtomicFile.write(data, to: epochFolder.appendingPathComponent(Self.manifestFile))
  }

  /// The newest committed epoch, its files checked against its manifest; nil when none was
  /// committed. A missing, unreadable or mismatched file throws a `FileError` naming it.
  public func latest() throws -> Committed? {
    guard let newest = committedFolders().last else { return nil }
    let epochFolder = folder.appendingPathComponent(newest.name)
    let manifestURL = epochFolder.appendingPathComponent(Self.manifestFile)
    let damaged = "the checkpoint is damaged; remove \(epochFolder.path) to start over"
    guard let data = try? MappedFile.contents(of: manifestURL),
      let manifest = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      manifest["epoch"] as? Int == newest.epoch,
      let files = manifest["files"] as? [String: [String: Any]]
    else {
      throw FileError(path: manifestURL.path, message: "missing or unreadable; \(damaged)")
    }
    for (name, entry) in files.sorted(by: { $0.key < $1.key }) {
      let url = epochFolder.appendingPathComponent(name)
      let file: MappedFile
      do {
        file = try MappedFile(path: url.path, allowingEmpty: true)
      } catch {
        throw FileError(path: url.path, message: "\(error.message); \(damaged)")
      }
      var h = FNV1a64()
      file.withBytes { h.update($0) }
      guard entry["bytes"] as? Int == file.count, entry["hash"] as? String == h.tagged else {
        throw FileError(
          path: url.path, message: "does not match \(Self.manifestFile) (size or hash); \(damaged)")
      }
    }
    return Committed(epoch: newest.epoch, folder: epochFolder)
  }

  /// Removes what interrupted commits left (unfinished epoch folders, temporary files) and
  /// every committed epoch but the newest (or `keeping`). Call it only while holding the run
  /// folder's lock.
  public func removeLeftovers(keeping: Int? = nil) throws {
    let fm = FileManager.default
    let names = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
    let keep = keeping ?? committedFolders().last?.epoch
    var removed = false
    for name in names.sorted() {
      let stale: Bool
      if let epoch = Self.epoch(ofFolderName: name) {
        stale = epoch != keep
      } else {
        stale = AtomicFile.isTemporaryName(name)
      }
      guard stale else { continue }
      let url = folder.appendingPathComponent(name)
      try CrashPoint.reach("remove", url.path)
      try? fm.removeItem(at: url)
      removed = true
    }
    if removed { AtomicFile.syncDirectory(folder.path) }
  }
}

/// Helpers for run and model folders: creating them with named errors, and an exclusive lock
/// for the lifetime of the process that writes them.
public enum RunFolder {
  /// The lock file's name inside a run folder.
  public static let lockFile = ".graft.lock"

  /// Creates `folder` (and its parents) if needed. A path that is a file, or a folder that
  /// cannot be created or written (read-only, permissions), throws a `FileError` naming it.
  public static func createFolder(_ folder: URL) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw FileError(path: folder.path, message: "is a file, not a folder")
      }
    } else {
      // mkdir(2) one level at a time, for the system's own reason when one fails.
      var missing: [URL] = []
      var next = folder.standardizedFileURL
      while next.path != "/" && !FileManager.default.fileExists(atPath: next.path) {
        missing.append(next)
        next = next.deletingLastPathComponent()
      }
      for url in missing.reversed() where mkdir(url.path, 0o777) != 0 && errno != EEXIST {
        let problem = String(cString: strerror(errno))
        throw FileError(
          path: folder.path,
          message: "cannot create the folder: \(reason(creating: folder) ?? problem)")
      }
    }
    guard access(folder.path, W_OK | X_OK) == 0 else {
      let problem = String(cString: strerror(errno))
      if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: folder.path) {
        throw FileError(
          path: folder.path,
          message: "is a link to \(target), which cannot be written in (\(problem))")
      }
      throw FileError(path: folder.path, message: "cannot write in the folder: \(problem)")
    }
  }

  /// Why `folder` cannot be created: the first existing ancestor that is a file or not
  /// writable, in words.
  private static func reason(creating folder: URL) -> String? {
    var parent = folder.deletingLastPathComponent()
    while parent.path != "/" && !FileManager.default.fileExists(atPath: parent.path) {
      parent = parent.deletingLastPathComponent()
    }
    var isDirectory: ObjCBool = false
    _ = FileManager.default.fileExists(atPath: parent.path, isDirectory: &isDirectory)
    if !isDirectory.boolValue { return "\(parent.path) is a file, not a folder" }
    if access(parent.path, W_OK | X_OK) != 0 {
      return "\(parent.path) is not writable (\(String(cString: strerror(errno))))"
    }
    return nil
  }

  /// Who holds the lock of `folder` now ("process 1234", or "another process" when it wrote
  /// no id), nil when nobody does or the folder has no lock file: whether a run is being
  /// trained (`AdapterCheckpoint.unfinishedNote`). Takes and drops the lock to find out; the
  /// file is opened for writing, since on NFS an exclusive `flock` of a read-only descriptor
  /// fails (EBADF) and a held lock would read as free. A lock that cannot be probed is
  /// reported as held.
  public static func lockHolder(of folder: URL) -> String? {
    let path = folder.appendingPathComponent(lockFile).path
    let fd = open(path, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { return nil }
      return "a process that cannot be checked (\(String(cString: strerror(errno))))"
    }
    defer { close(fd) }
    guard flock(fd, LOCK_EX | LOCK_NB) != 0 else {
      flock(fd, LOCK_UN)
      return nil
    }
    guard errno == EWOULDBLOCK else {
      return "a process that cannot be checked (\(String(cString: strerror(errno))))"
    }
    return Lock.holderText(fd)
  }

  /// An exclusive lock on a folder, held until `release()` or the process ends (the kernel
  /// drops `flock` locks of a dead process, so a crash never leaves a folder locked).
  public final class Lock {
    private var fd: Int32
    /// The folder locked.
    public let folder: URL

    /// Locks `folder` (created if needed) for this process, without waiting: when another
    /// process holds it, throws a `FileError` naming that process. `what` says what wants the
    /// lock, for that message ("a graft tune run").
    public init(_ folder: URL, what: String = "a run") throws {
      try RunFolder.createFolder(folder)
      let path = folder.appendingPathComponent(RunFolder.lockFile).path
      let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
      guard fd >= 0 else {
        throw FileError(
          path: path, message: "cannot open the lock file: \(String(cString: strerror(errno)))")
      }
      guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
        let busy = errno == EWOULDBLOCK
        let problem = String(cString: strerror(errno))
        let holder = Self.holderText(fd)
        close(fd)
        throw FileError(
          path: folder.path,
          message: busy
            ? "in use: \(holder) holds its lock, so \(what) cannot write it at the same time "
              + "(wait for that process to end, or choose another folder)"
            : "cannot lock: \(problem)")
      }
      let pid = Array("\(getpid())\n".utf8)
      _ = ftruncate(fd, 0)
      _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
      self.fd = fd
      self.folder = folder
    }

    /// "process N" from the id the holder wrote into the lock file `fd`, else "another
    /// process".
    static func holderText(_ fd: Int32) -> String {
      var buffer = [UInt8](repeating: 0, count: 32)
      let n = pread(fd, &buffer, buffer.count, 0)
      guard n > 0,
        let pid = Int(
          String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(
            in: .whitespacesAndNewlines))
      else { return "another process" }
      return "process \(pid)"
    }

    /// Releases the lock (the file stays, so a waiting process never locks a removed file).
    public func release() {
      guard fd >= 0 else { return }
      _ = ftruncate(fd, 0)
      close(fd)
      fd = -1
    }

    deinit { release() }
  }
}
