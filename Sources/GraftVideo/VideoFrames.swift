import Foundation
import GraftData

/// Frames sampled from a video, as decoded (RGB, displayed orientation, native size).
public struct VideoFrames: Sendable {
  /// Frame width as displayed.
  public var width: Int
  /// Frame height as displayed.
  public var height: Int
  /// The index of each frame in the stream's decoding order.
  public var indices: [Int]
  /// Presentation time of each frame in seconds (NaN when the frame has none).
  public var times: [Double]
  /// The frames' pixels, [T, H, W, 3] row-major RGB.
  public var pixels: [UInt8]
  /// The stream's facts, with the frame count the sampling used.
  public var info: VideoInfo
  /// What went wrong but still gave frames (corrupt packets, a frame count that did not hold).
  public var warnings: [String]

  /// Number of frames T.
  public var count: Int { indices.count }

  /// Frame `i` as an image.
  public func image(_ i: Int) -> RGBImage {
    let size = width * height * 3
    return RGBImage(
      width: width, height: height, pixels: Array(pixels[(i * size)..<((i + 1) * size)]))
  }
}

/// Reads sampled frames out of video files.
public enum VideoDecoding {
  /// The most frames one call samples (PLLaVA takes 16 to 64): far more would only be a typo
  /// that asks for gigabytes of pixels.
  public static let maxFrameCount = 4096

  /// Decodes the `count` frames that `sampling` picks from the file at `url`.
  ///
  /// The file is decoded forward from its start (exact frame indices whatever the container's
  /// timestamps: variable frame rates and broken indexes give the same frames as a full decode),
  /// converting only the chosen frames. When the container gives no frame count, the packets are
  /// counted first; when the stream ends before the count it stated (a cut file), the sampling is
  /// redone over the frames that exist and the file decoded again, with a warning. Frames whose
  /// size changes mid-stream are resized (bilinear) to the first frame's size, with a warning.
  /// Throws `VideoError` for a file that gives no frame, or a `count` outside
  /// 1...`maxFrameCount`.
  public static func sample(
    _ url: URL, count: Int, sampling: FrameSampling = .pllava, threads: Int = 0
  ) throws -> VideoFrames {
    guard (1...maxFrameCount).contains(count) else {
      throw VideoError(
        .invalidArgument, path: url.path,
        message: "frame count \(count) is not between 1 and \(maxFrameCount)")
    }
    let reader = try VideoReader(url: url, threads: threads)
    var info = try reader.info()
    var warnings: [String] = []
    if info.frames <= 0 {
      throw VideoError(.decodeFailed, path: url.path, message: "the video stream has no frames")
    }
    var indices = sampling.indices(frameCount: info.frames, count: count, fps: info.fps)
    var attempt = try decode(reader, indices: indices)
    if attempt.decoded <= indices.max()! {
      // The stated count did not hold: sample again over the frames that exist.
      let found = attempt.decoded
      guard found > 0 else {
        throw VideoError(
          .decodeFailed, path: url.path,
          message: "no frame could be decoded"
            + (reader.corruptPackets > 0 ? " (\(reader.corruptPackets) corrupt packets)" : ""))
      }
      warnings.append(
        "the \(info.frameCountSource) stated \(info.frames) frames but only \(found) decode; "
          + "sampled over \(found)")
      info.frames = found
      indices = sampling.indices(frameCount: found, count: count, fps: info.fps)
      let again = try VideoReader(url: url, threads: threads)
      attempt = try decode(again, indices: indices)
      guard attempt.decoded > indices.max()! else {
        throw VideoError(
          .decodeFailed, path: url.path,
          message: "decoding stopped at frame \(attempt.decoded) on the second pass")
      }
      if again.corruptPackets > 0 {
        warnings.append("\(again.corruptPackets) corrupt packet(s) skipped")
      }
    } else if reader.corruptPackets > 0 || reader.readErrors > 0 {
      warnings.append(
        "\(reader.corruptPackets) corrupt packet(s) skipped, \(reader.readErrors) read error(s)")
    }
    warnings += attempt.warnings
    if case .pllavaBound(let start, let end) = sampling, info.fps > 0 {
      // PLLaVA clamps a window past the end to the last frame; say so rather than hand back
      // copies of one frame without a word.
      let duration = Double(info.frames) / info.fps
      if end > duration {
        warnings.append(
          String(
            format: "the window %g–%g s runs past the clip's end (%.3g s, %d frames): frames "
              + "beyond it are the last frame again, as PLLaVA samples them", start, end,
            duration, info.frames))
      }
    }
    return VideoFrames(
      width: attempt.width, height: attempt.height, indices: indices, times: attempt.times,
      pixels: attempt.pixels, info: info, warnings: warnings)
  }

  /// One forward pass that converts the frames at `indices` (sorted, repeats allowed).
  private static func decode(_ reader: VideoReader, indices: [Int]) throws -> (
    decoded: Int, width: Int, height: Int, times: [Double], pixels: [UInt8], warnings: [String]
  ) {
    let last = indices.max()!
    var wanted: [Int: [Int]] = [:]
    for (slot, index) in indices.enumerated() { wanted[index, default: []].append(slot) }
    var width = 0
    var height = 0
    var slots: [[UInt8]] = Array(repeating: [], count: indices.count)
    var times = [Double](repeating: .nan, count: indices.count)
    var warnings: [String] = []
    var index = 0
    while index <= last, let frame = try reader.nextFrame() {
      defer { index += 1 }
      guard let targets = wanted[index] else { continue }
      var rgb = try reader.rgb()
      if width == 0 {
        (width, height) = (frame.width, frame.height)
      } else if frame.width != width || frame.height != height {
        warnings.append(
          "frame \(index) is \(frame.width)x\(frame.height), not \(width)x\(height); resized")
        rgb =
          RGBImage(width: frame.width, height: frame.height, pixels: rgb)
          .resized(width: width, height: height, interpolation: .bilinear).pixels
      }
      for slot in targets {
        slots[slot] = rgb
        times[slot] = frame.time
      }
    }
    return (index, width, height, times, slots.flatMap { $0 }, warnings)
  }
}
