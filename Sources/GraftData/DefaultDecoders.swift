import Foundation

#if canImport(Glibc)
  import Glibc
#endif

// The decoder datasets and `graft embed` use when none is given: the format is read off the
// file's first bytes, so a misnamed file still decodes and an unsupported one says what it is.

extension ImageCodec {
  /// Decodes a PNG or JPEG file (`decode(contentsOf:)`) or a Netpbm PPM/PGM/PBM file
  /// (`PNMCodec`), telling them apart by their first bytes. Errors name the file: `ImageError`
  /// for PNG, JPEG and unknown formats, `DatasetError` for Netpbm.
  public static func decodeAnyFormat(contentsOf url: URL) throws -> RGBImage {
    if startsWithNetpbmMagic(url) { return try PNMCodec.decode(contentsOf: url) }
    return try decode(contentsOf: url)
  }

  /// `decodeAnyFormat(contentsOf:)` as an `ImageDecoder`, the datasets' default.
  public static let defaultDecoder: ImageDecoder = { try decodeAnyFormat(contentsOf: $0) }

  /// Whether the file begins `P1`…`P6` (unreadable files answer false and fail in `decode`).
  /// Only a regular file is opened: opening a FIFO named like an image waited for a writer for
  /// ever, before `decode` could refuse it as not a regular file.
  private static func startsWithNetpbmMagic(_ url: URL) -> Bool {
    var status = stat()
    guard stat(url.path, &status) == 0, status.st_mode & S_IFMT == S_IFREG,
      let handle = try? FileHandle(forReadingFrom: url)
    else { return false }
    defer { try? handle.close() }
    guard let head = try? handle.read(upToCount: 2), head.count == 2 else { return false }
    return head[head.startIndex] == UInt8(ascii: "P")
      && (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(head[head.startIndex + 1])
  }
}

extension ImageFolderDataset {
  /// Lists `root` as `init(root:extensions:decoder:)`, decoding with
  /// `ImageCodec.defaultDecoder` (PNG, JPEG, PPM/PGM/PBM).
  public init(root: URL, extensions: Set<String> = defaultExtensions) throws {
    try self.init(root: root, extensions: extensions, decoder: ImageCodec.defaultDecoder)
  }
}

extension VTABListDataset {
  /// Reads `<root>/<split>.txt`, decoding with `ImageCodec.defaultDecoder`.
  public init(root: URL, split: VTABSplit, classCount: Int? = nil) throws {
    try self.init(
      root: root, split: split, classCount: classCount, decoder: ImageCodec.defaultDecoder)
  }

  /// Reads any list file in the same format, decoding with `ImageCodec.defaultDecoder`.
  public init(listFile: URL, root: URL, classCount: Int? = nil) throws {
    try self.init(
      listFile: listFile, root: root, classCount: classCount, decoder: ImageCodec.defaultDecoder)
  }
}
