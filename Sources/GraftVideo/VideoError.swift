import CVideo

/// A video file Graft cannot read, or a request it cannot serve; the description names the file
/// and the problem.
public struct VideoError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What went wrong.
  public enum Kind: String, Sendable, Equatable {
    /// The file does not exist or cannot be read.
    case fileNotFound
    /// The data is not a container FFmpeg recognises (a text file named `.mp4`, an empty file).
    case unrecognised
    /// The container is recognised but the file ends before its headers or index (a cut MP4).
    case truncated
    /// The container's headers are damaged.
    case corrupt
    /// The file has no streams at all.
    case noStreams
    /// The file has streams, none of them video.
    case noVideoStream
    /// The video codec has no decoder in the installed FFmpeg.
    case unsupportedCodec
    /// Decoding failed beyond recovery, or no frame at all could be decoded.
    case decodeFailed
    /// A frame has more pixels than allowed.
    case tooManyPixels
    /// Seeking failed.
    case seekFailed
    /// Out of memory.
    case outOfMemory
    /// Bad arguments (a frame count below 1, a negative time).
    case invalidArgument
  }

  /// What went wrong.
  public let kind: Kind
  /// The file concerned.
  public let path: String
  /// The problem, in words.
  public let message: String

  /// Wraps the parts.
  public init(_ kind: Kind, path: String, message: String) {
    self.kind = kind
    self.path = path
    self.message = message
  }

  /// `path: message`.
  public var description: String { "\(path): \(message)" }

  /// The error for a C status other than `GV_OK` and `GV_END`.
  init(status: gv_status, path: String, message: String) {
    let kind: Kind =
      switch status {
      case GV_NOT_FOUND: .fileNotFound
      case GV_UNRECOGNISED: .unrecognised
      case GV_TRUNCATED: .truncated
      case GV_CORRUPT: .corrupt
      case GV_NO_STREAMS: .noStreams
      case GV_NO_VIDEO_STREAM: .noVideoStream
      case GV_UNSUPPORTED_CODEC: .unsupportedCodec
      case GV_TOO_MANY_PIXELS: .tooManyPixels
      case GV_SEEK_FAILED: .seekFailed
      case GV_OUT_OF_MEMORY: .outOfMemory
      case GV_INVALID_ARGUMENT: .invalidArgument
      default: .decodeFailed
      }
    self.init(kind, path: path, message: message.isEmpty ? kind.rawValue : message)
  }
}

/// The NUL-terminated message a C call wrote into `buffer`.
func messageString(_ buffer: [CChar]) -> String {
  let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
  return String(decoding: bytes, as: UTF8.self)
}
