import CVideo
import Foundation

/// Writes RGB frames as an H.264 video (libx264 through FFmpeg's libavcodec, yuv420p; the
/// container from the file's extension, MP4 with its index first). Single-threaded encoding
/// without macroblock-tree rate control (which reads memory libx264 never wrote), so the same
/// frames give the same bytes, whatever the process did before.
public final class VideoWriter {
  /// The file being written.
  public let url: URL
  /// Frame width (even).
  public let width: Int
  /// Frame height (even).
  public let height: Int
  private var writer: OpaquePointer?

  /// Creates the file; `crf` is x264's quality scale (lower is better, 0 lossless luma).
  public init(url: URL, width: Int, height: Int, fps: Int, crf: Int = 18) throws {
    self.url = url
    self.width = width
    self.height = height
    var handle: OpaquePointer?
    var message = [CChar](repeating: 0, count: Int(GV_MESSAGE_CAPACITY))
    let status = message.withUnsafeMutableBufferPointer {
      gv_writer_open(
        url.path, Int32(width), Int32(height), Int32(fps), Int32(crf), &handle, $0.baseAddress)
    }
    guard status == GV_OK, let handle else {
      throw VideoError(status: status, path: url.path, message: messageString(message))
    }
    writer = handle
  }

  deinit { if let writer { _ = gv_writer_close(writer, nil) } }

  /// Encodes one frame of packed RGB (`width × height × 3` bytes).
  public func append(_ rgb: [UInt8]) throws {
    guard let writer, rgb.count == width * height * 3 else {
      throw VideoError(
        .invalidArgument, path: url.path,
        message: "a frame of \(rgb.count) bytes for \(width)x\(height) RGB, or a closed writer")
    }
    var message = [CChar](repeating: 0, count: Int(GV_MESSAGE_CAPACITY))
    let status = rgb.withUnsafeBufferPointer { pixels in
      message.withUnsafeMutableBufferPointer {
        gv_writer_add(writer, pixels.baseAddress, $0.baseAddress)
      }
    }
    guard status == GV_OK else {
      throw VideoError(status: status, path: url.path, message: messageString(message))
    }
  }

  /// Flushes and closes the file.
  public func finish() throws {
    guard let writer else { return }
    self.writer = nil
    var message = [CChar](repeating: 0, count: Int(GV_MESSAGE_CAPACITY))
    let status = message.withUnsafeMutableBufferPointer {
      gv_writer_close(writer, $0.baseAddress)
    }
    guard status == GV_OK else {
      throw VideoError(status: status, path: url.path, message: messageString(message))
    }
  }
}
