import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file that `MappedFile` cannot map or read; the description names the file and the problem.
public struct MappedFileError: Error, CustomStringConvertible, Equatable, Sendable {
  /// What went wrong, so that each reader can report it under its own error kind.
  public enum Kind: String, Sendable, Equatable {
    /// Nothing exists at the path.
    case notFound
    /// The path is a directory.
    case directory
    /// The path is neither a regular file nor a directory (a device, FIFO or socket).
    case notRegularFile
    /// The file exists but cannot be opened or inspected (permissions, I/O).
    case unreadable
    /// The file has zero bytes and the caller does not accept empty files.
    case empty
    /// The system refused to map the file.
    case mapFailed
  }

  /// What went wrong.
  public let kind: Kind
  /// The file concerned.
  public let path: String
  /// The problem, in words.
  public let message: String

  /// `path: message`.
  public var description: String { "\(path): \(message)" }

  /// This failure under a file reader's own kinds: `notFound` and `empty` as given, any other
  /// (a directory or device, permissions, mapping) as `otherwise`.
  public func translated<ReaderKind>(
    notFound: ReaderKind, empty: ReaderKind, otherwise: ReaderKind
  ) -> ReaderKind {
    switch kind {
    case .notFound: notFound
    case .empty: empty
    case .directory, .notRegularFile, .unreadable, .mapFailed: otherwise
    }
  }
}

/// A whole file's bytes in memory, mapped (or read, when small) and released when the last
/// reference to this object goes.
///
/// The file is opened read-only and is never changed through the mapping: its pages are private
/// and copy-on-write. Readers therefore hand out tensors that borrow the pages instead of copying
/// them (with this object as the storage's owner, so the pages outlive every such tensor), and
/// writing into such a tensor (training it in place) changes only this process's copy. Replacing
/// the file on disk (as `AtomicFile` does) leaves what is mapped as it was.
///
/// Files smaller than `mappingThreshold` are read into memory instead, with the same behaviour:
/// for an image of a few kilobytes, mapping and faulting in its pages costs more than one read.
///
/// `Sendable`: nothing about the object changes after `init`; the bytes are read concurrently as
/// any buffer is, and written only through tensors that borrow them.
public final class MappedFile: @unchecked Sendable {
  /// Files of at least this many bytes are mapped, smaller ones read. Measured on Linux (open,
  /// map or read, touch every page, close): reading is 2–3× faster for 4–64 KB files and still
  /// ahead at 128 KB, mapping is 1.5× faster at 300 KB and 2× at 1 MB.
  public static let mappingThreshold = 256 << 10

  /// The path the file was opened with.
  public let path: String
  /// The file's bytes; empty, with a nil base address, for an empty file. Valid only while this
  /// object lives: keep a reference to it (or use `withBytes`).
  public let bytes: UnsafeRawBufferPointer
  /// True when `bytes` are mapped pages, false when they were read into an allocation.
  public let isMapped: Bool

  /// The file's size in bytes.
  public var count: Int { bytes.count }

  /// The same bytes, writable: writes go to this process's private copy of a page, never to the
  /// file. For storage that borrows the mapping.
  public var mutableBytes: UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer(mutating: bytes)
  }

  /// The bytes as `Data`, without a copy; the `Data` keeps the mapping alive.
  public var data: Data {
    guard let base = mutableBytes.baseAddress else { return Data() }
    return Data(
      bytesNoCopy: base, count: count,
      deallocator: .custom { _, _ in withExtendedLifetime(self) {} })
  }

  /// The whole file at `url`, read into memory (never mapped, so a file truncated meanwhile
  /// is an error, not a SIGBUS), as `Data`; empty for an empty file. Readers of JSON, YAML and
  /// text use this rather than Foundation's `Data(contentsOf:)`, which leaks 4 KiB reading an
  /// empty file (found by Tools/fuzz.sh) and waits forever on a FIFO without a writer: like
  /// every reader of Graft's, it takes regular files only. Throws `MappedFileError` naming the
  /// path.
  public static func contents(of url: URL) throws(MappedFileError) -> Data {
    try MappedFile(path: url.path, allowingEmpty: true, mapping: false).data
  }

  /// Calls `body` with the bytes, keeping the mapping alive until it returns (`bytes` of a
  /// temporary `MappedFile` may be unmapped as soon as the property is read).
  public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withExtendedLifetime(self) { try body(bytes) }
  }

  /// Maps (or reads) the regular file at `path`; throws `MappedFileError` naming the path when
  /// it is missing, a directory or other non-file, unreadable, empty (unless `allowingEmpty`),
  /// or cannot be mapped. With `mapping` false the file is always read, whatever its size: a
  /// mapped file that another process truncates kills the reader with SIGBUS on the next
  /// touch of a lost page, so readers that copy what they parse anyway should not map.
  public init(path: String, allowingEmpty: Bool = false, mapping: Bool = true)
    throws(MappedFileError)
  {
    func fail(_ kind: MappedFileError.Kind, _ message: String) -> MappedFileError {
      MappedFileError(kind: kind, path: path, message: message)
    }
    func reason() -> String { String(cString: strerror(errno)) }

    // Non-blocking, so that opening a FIFO does not wait for a writer (it is refused below).
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else {
      if errno == ENOENT { throw fail(.notFound, "no such file") }
      throw fail(.unreadable, "cannot open: \(reason())")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw fail(.unreadable, "cannot stat: \(reason())") }
    switch st.st_mode & S_IFMT {
    case S_IFREG: break
    case S_IFDIR: throw fail(.directory, "is a directory, not a file")
    default: throw fail(.notRegularFile, "not a regular file (a device, FIFO or socket)")
    }
    let size = Int(st.st_size)
    if size == 0 {
      // mmap refuses a zero length; an empty file has no pages to share anyway.
      guard allowingEmpty else { throw fail(.empty, "the file is empty") }
      bytes = UnsafeRawBufferPointer(start: nil, count: 0)
      isMapped = false
    } else if size < Self.mappingThreshold || !mapping {
      // Aligned as a mapping's start would be for what readers check (4 bytes for F32).
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
      var done = 0
      while done < size {
        let n = read(fd, buffer + done, size - done)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
          let problem = n == 0 ? "the file got shorter while it was read" : reason()
          buffer.deallocate()
          throw fail(.unreadable, "cannot read: \(problem)")
        }
        done += n
      }
      bytes = UnsafeRawBufferPointer(start: buffer, count: size)
      isMapped = false
    } else {
      guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0),
        mapped != MAP_FAILED
      else {
        throw fail(.mapFailed, "cannot map: \(reason())")
      }
      bytes = UnsafeRawBufferPointer(start: mapped, count: size)
      isMapped = true
    }
    self.path = path
  }

  deinit {
    guard let base = mutableBytes.baseAddress else { return }
    if isMapped {
      munmap(base, count)
    } else {
      base.deallocate()
    }
  }
}
