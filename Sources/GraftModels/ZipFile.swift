import Foundation

/// A zip archive opened to read its members whole: the same reader as `NumpyArchive` (ZIP64,
/// stored and deflated members, CRC-32 checked on every read), for archives that hold other files
/// than arrays, such as Sweet Home 3D's `.sh3f` furniture libraries.
///
/// The file is mapped, not read; members are inflated on request. Errors are
/// `NumpyArchiveError`s (the zip reader's) naming the file and, where one is concerned, the member.
public struct ZipFile {
  /// The file this was read from.
  public let url: URL
  /// The members' names (paths inside the archive, folders end in `/`), in archive order.
  public let names: [String]
  private let file: MappedFile
  private let zip: ZipArchive
  private let entries: [String: ZipEntry]

  /// Deflate cannot expand data by more than about 1032×; a member claiming more is refused
  /// before anything is allocated.
  private static let largestExpansion = 1100

  /// Maps the file at `url` and reads its central directory.
  public init(contentsOf url: URL) throws {
    let path = url.path
    let file: MappedFile
    do {
      file = try MappedFile(path: path)
    } catch {
      throw NumpyArchiveError(
        kind: error.translated(notFound: .fileNotFound, empty: .emptyFile, otherwise: .readFailed),
        path: path, message: error.message)
    }
    let zip = ZipArchive(bytes: file.bytes, path: path)
    var entries: [String: ZipEntry] = [:]
    var names: [String] = []
    for entry in try zip.entries() {
      guard entries[entry.name] == nil else {
        throw zip.fail(
          .duplicateMember, "the archive has two members with this name", member: entry.name)
      }
      entries[entry.name] = entry
      names.append(entry.name)
    }
    self.url = url
    self.file = file
    self.zip = zip
    self.entries = entries
    self.names = names
  }

  /// Whether the archive has a member called `name`.
  public func contains(_ name: String) -> Bool { entries[name] != nil }

  /// The uncompressed size of member `name`, or nil when there is none.
  public func size(of name: String) -> Int? { entries[name]?.uncompressedSize }

  /// The bytes of member `name`, inflated when deflated and checked against the CRC-32 the
  /// archive records.
  public func data(_ name: String) throws -> Data {
    guard let entry = entries[name] else {
      throw zip.fail(.memberNotFound, "no member of this name", member: name)
    }
    let size = entry.uncompressedSize
    switch entry.compression {
    case .stored:
      try zip.verify(entry)
      return Data(
        UnsafeRawBufferPointer(rebasing: zip.bytes[entry.dataOffset..<(entry.dataOffset + size)]))
    case .deflated:
      guard size / Self.largestExpansion <= entry.compressedSize else {
        throw zip.fail(
          .invalidArchive,
          "\(entry.compressedSize) compressed bytes cannot inflate to the \(size) recorded",
          member: name)
      }
      var out = Data(count: size)
      try out.withUnsafeMutableBytes { buffer in
        // `inflate` reports a damaged stream, a wrong size and a wrong CRC-32 as named errors.
        try zip.inflate(entry, skipping: 0) { inflater in
          if size > 0 { try inflater.readExactly(into: buffer.baseAddress!, count: size) }
        }
      }
      return out
    }
  }
}
