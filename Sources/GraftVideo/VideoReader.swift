import CVideo
import Foundation

/// What a video file says about its video stream.
public struct VideoInfo: Sendable, Equatable, Codable {
  /// Frame count from the container, or counted by reading the file when the container gives
  /// none (`frameCountSource` says which).
  public var frames: Int
  /// Average frames per second (0 when unknown).
  public var fps: Double
  /// Width of the frames as displayed (rotation applied).
  public var width: Int
  /// Height of the frames as displayed (rotation applied).
  public var height: Int
  /// FFmpeg's codec name (`h264`, `vp9`, `mjpeg`, `gif`, …).
  public var codec: String
  /// Duration in seconds (negative when unknown).
  public var duration: Double
  /// Clockwise rotation applied for display, in degrees.
  public var rotation: Int
  /// FFmpeg's container name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, …).
  public var container: String
  /// `container` when the container stated the frame count, `packets` when it was counted.
  public var frameCountSource: String
}

/// An open video stream of a file, decoded forward frame by frame with FFmpeg, each frame
/// converted to RGB as `ffmpeg -pix_fmt rgb24` converts it. Not thread-safe: use one reader per
/// thread.
public final class VideoReader {
  /// The file.
  public let url: URL
  /// What the container says (frame count 0 when it gives none; see `info()` for a counted one).
  public let streamInfo: gv_info
  private let reader: OpaquePointer
  private var current: gv_frame?

  /// Frames with more pixels than this are refused (Pillow's decompression-bomb threshold, as for
  /// images).
  public static let defaultMaxPixels = 178_956_970

  /// Opens the best video stream of the file at `url`; `threads`: decoding threads (0: FFmpeg's
  /// choice). Throws `VideoError` naming the problem.
  public init(url: URL, threads: Int = 0, maxPixels: Int = VideoReader.defaultMaxPixels) throws {
    self.url = url
    var handle: OpaquePointer?
    let status = withMessage { message in
      gv_open(url.path, Int32(threads), UInt64(maxPixels), &handle, message)
    }
    guard status.0 == GV_OK, let handle else {
      throw VideoError(status: status.0, path: url.path, message: status.1)
    }
    reader = handle
    var info = gv_info()
    gv_get_info(handle, &info)
    streamInfo = info
  }

  deinit { gv_close(reader) }

  /// Facts about the stream; when the container gives no frame count, the packets are counted
  /// (reading the file without decoding, then rewinding).
  public func info() throws -> VideoInfo {
    var frames = Int(streamInfo.frame_count)
    var source = "container"
    if frames <= 0 {
      frames = try countPackets()
      source = "packets"
    }
    return VideoInfo(
      frames: frames, fps: streamInfo.fps, width: Int(streamInfo.width),
      height: Int(streamInfo.height), codec: cString(streamInfo.codec),
      duration: streamInfo.duration, rotation: Int(streamInfo.rotation),
      container: cString(streamInfo.container), frameCountSource: source)
  }

  /// Number of packets of the stream (one per frame for every common codec); rewinds to the
  /// start.
  public func countPackets() throws -> Int {
    var count: Int64 = 0
    let status = withMessage { gv_count_packets(reader, &count, $0) }
    guard status.0 == GV_OK else {
      throw VideoError(status: status.0, path: url.path, message: status.1)
    }
    current = nil
    return Int(count)
  }

  /// Decodes the next frame; nil at the end of the stream. Its time is in seconds from the
  /// stream's start (NaN when the frame has none). Corrupt packets are skipped (see
  /// `corruptPackets`).
  public func nextFrame() throws -> (time: Double, width: Int, height: Int)? {
    var frame = gv_frame()
    let status = withMessage { gv_next_frame(reader, &frame, $0) }
    if status.0 == GV_END {
      current = nil
      return nil
    }
    guard status.0 == GV_OK else {
      current = nil
      throw VideoError(status: status.0, path: url.path, message: status.1)
    }
    current = frame
    return (frame.time, Int(frame.width), Int(frame.height))
  }

  /// The frame `nextFrame` returned as packed RGB, `height` rows of `width` pixels.
  public func rgb() throws -> [UInt8] {
    guard let frame = current else {
      throw VideoError(.invalidArgument, path: url.path, message: "no decoded frame to convert")
    }
    let count = Int(frame.width) * Int(frame.height) * 3
    var status = (GV_OK, "")
    let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialised in
      status = withMessage { gv_convert(reader, buffer.baseAddress, count, $0) }
      initialised = status.0 == GV_OK ? count : 0
    }
    guard status.0 == GV_OK else {
      throw VideoError(status: status.0, path: url.path, message: status.1)
    }
    return pixels
  }

  /// Positions the reader so that the next frame is the first at or after `seconds` from the
  /// stream's start (FFmpeg's accurate `-ss`).
  public func seek(to seconds: Double) throws {
    guard seconds >= 0, seconds.isFinite else {
      throw VideoError(.invalidArgument, path: url.path, message: "cannot seek to \(seconds) s")
    }
    let status = withMessage { gv_seek(reader, seconds, $0) }
    current = nil
    guard status.0 == GV_OK else {
      throw VideoError(status: status.0, path: url.path, message: status.1)
    }
  }

  /// Packets the decoder rejected so far.
  public var corruptPackets: Int { Int(gv_corrupt_packets(reader)) }
  /// Read errors met before the end of the file (a cut or damaged file).
  public var readErrors: Int { Int(gv_read_errors(reader)) }
}

/// Calls `body` with a message buffer; returns its status and the message.
private func withMessage(_ body: (UnsafeMutablePointer<CChar>) -> gv_status) -> (gv_status, String)
{
  var buffer = [CChar](repeating: 0, count: Int(GV_MESSAGE_CAPACITY))
  let status = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
  return (status, messageString(buffer))
}

/// A fixed-size C char array (imported as a tuple) as a String.
private func cString<T>(_ tuple: T) -> String {
  withUnsafeBytes(of: tuple) { raw in
    let bytes = raw.bindMemory(to: UInt8.self)
    let end = bytes.firstIndex(of: 0) ?? bytes.count
    return String(decoding: bytes[..<end], as: UTF8.self)
  }
}
