import CZlib
import Foundation

/// A dataset file or folder that cannot be read as asked; the description names the path (and
/// the line, for text formats) so that a user can find and fix the input.
public struct DatasetError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What went wrong, for callers that branch on it.
  public enum Kind: String, Sendable, Equatable {
    /// A file or folder that does not exist.
    case notFound
    /// A file whose bytes or text do not follow its format.
    case invalidFormat
    /// Two inputs that must agree do not (image and label counts, row lengths, shapes).
    case mismatch
    /// A folder or list without any sample, or a class without any file.
    case empty
    /// The image decoder failed on a file.
    case decodeFailed
    /// A class has fewer samples than a sampler asked for.
    case tooFewSamples
    /// An argument outside its allowed range.
    case invalidArgument
    /// The operating system refused a read.
    case io
  }

  /// What went wrong.
  public let kind: Kind
  /// The file or folder concerned (empty when none is).
  public let path: String
  /// 1-based line number in a text file, when the problem is on one line.
  public let line: Int?
  /// What is wrong, in words.
  public let message: String

  /// An error about `path` (and `line` when given).
  public init(_ kind: Kind, path: String, line: Int? = nil, _ message: String) {
    self.kind = kind
    self.path = path
    self.line = line
    self.message = message
  }

  /// `path:line: message`, `path: message`, or just the message when no path applies.
  public var description: String {
    if path.isEmpty { return message }
    if let line { return "\(path):\(line): \(message)" }
    return "\(path): \(message)"
  }
}

/// Reading whole dataset files, transparently inflating gzip.
enum DatasetFile {
  /// The bytes of `url`, inflated when they start with the gzip magic (whatever the file's
  /// extension), so `train-images-idx3-ubyte` and `train-images-idx3-ubyte.gz` read the same.
  static func readBytes(_ url: URL) throws -> [UInt8] {
    let bytes = try map(url).withBytes { [UInt8]($0) }
    return Gzip.isCompressed(bytes) ? try Gzip.decompress(bytes, path: url.path) : bytes
  }

  /// The file at `url` mapped into memory (an empty file is allowed); errors are
  /// `DatasetError`s: `notFound`, `invalidArgument` for a folder, `io` for anything else.
  static func map(_ url: URL) throws -> MappedFile {
    do {
      return try MappedFile(path: url.path, allowingEmpty: true)
    } catch {
      let kind: DatasetError.Kind =
        switch error.kind {
        case .notFound: .notFound
        case .directory: .invalidArgument
        case .notRegularFile, .unreadable, .empty, .mapFailed: .io
        }
      throw DatasetError(kind, path: error.path, error.message)
    }
  }

  /// Whether `path` names an existing folder (following symbolic links).
  static func isDirectory(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
      && isDirectory.boolValue
  }
}

/// gzip decompression (RFC 1952) through zlib's inflate.
enum Gzip {
  /// Whether `bytes` start with the gzip magic `1f 8b`.
  static func isCompressed(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
  }

  /// Inflates every member of a gzip file (the `gzip` tool concatenates members, and readers
  /// must return their concatenation); trailing zero padding is ignored, other trailing bytes
  /// are an error. `path` names the file in errors.
  static func decompress(_ input: [UInt8], path: String) throws -> [UInt8] {
    guard !input.isEmpty else { throw DatasetError(.invalidFormat, path: path, "empty gzip data") }
    var stream = z_stream()
    // 15 window bits + 16: expect a gzip header and trailer (and check the CRC).
    let initStatus = inflateInit2_(
      &stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    guard initStatus == Z_OK else {
      throw DatasetError(.io, path: path, "zlib inflateInit2 failed (\(initStatus))")
    }
    defer { inflateEnd(&stream) }

    // zlib counts in 32-bit lengths, so huge buffers are fed in pieces.
    let piece = 1 << 30
    var output = [UInt8](repeating: 0, count: max(4096, input.count * 4))
    var produced = 0
    var consumed = 0
    try input.withUnsafeBufferPointer { inBuffer in
      let base = inBuffer.baseAddress!
      while true {
        if produced == output.count {
          output.append(contentsOf: repeatElement(0, count: output.count))
        }
        let offered = min(inBuffer.count - consumed, piece)
        let room = min(output.count - produced, piece)
        stream.next_in = UnsafeMutablePointer(mutating: base + consumed)
        stream.avail_in = UInt32(offered)
        let status = output.withUnsafeMutableBufferPointer { out -> Int32 in
          stream.next_out = out.baseAddress! + produced
          stream.avail_out = UInt32(room)
          return inflate(&stream, Z_NO_FLUSH)
        }
        consumed += offered - Int(stream.avail_in)
        produced += room - Int(stream.avail_out)
        switch status {
        case Z_STREAM_END:
          let rest = inBuffer[consumed...]
          if rest.count >= 2 && rest[consumed] == 0x1f && rest[consumed + 1] == 0x8b {
            inflateReset(&stream)
            continue
          }
          guard rest.allSatisfy({ $0 == 0 }) else {
            throw DatasetError(
              .invalidFormat, path: path,
              "\(rest.count) bytes after the end of the gzip data are not another gzip member")
          }
          return
        case Z_OK:
          continue
        case Z_BUF_ERROR:
          // No progress: either the output was full (grow and retry) or the input ran out.
          if consumed == inBuffer.count {
            throw DatasetError(.invalidFormat, path: path, "gzip data is truncated")
          }
          if produced == output.count { continue }
          throw DatasetError(.invalidFormat, path: path, "corrupt gzip data: inflate is stuck")
        default:
          let detail = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
          throw DatasetError(.invalidFormat, path: path, "corrupt gzip data: \(detail)")
        }
      }
    }
    output.removeSubrange(produced...)
    return output
  }
}

/// Order on names by Unicode code points, the order Python's `sorted` (and so torchvision's
/// `ImageFolder`) uses, independent of locale.
func codePointPrecedes(_ a: String, _ b: String) -> Bool {
  a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
}

/// An RGB image from `width × height` grey bytes, each grey value copied to R, G and B.
func rgbFromGrey(_ grey: ArraySlice<UInt8>, width: Int, height: Int) -> RGBImage {
  var pixels = [UInt8](repeating: 0, count: width * height * 3)
  var o = 0
  for g in grey {
    pixels[o] = g
    pixels[o + 1] = g
    pixels[o + 2] = g
    o += 3
  }
  return RGBImage(width: width, height: height, pixels: pixels)
}
