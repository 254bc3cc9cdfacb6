import Foundation
import GraftVideo
import XCTest

/// The H.264 writer and the captioned clip set of `graft data prepare clips`.
final class CaptionedClipsTests: XCTestCase {
  /// Frames written through libavcodec decode back (FFmpeg's H.264 decoder) close to what was
  /// written, and the same frames give the same bytes.
  func testWriterRoundTripsThroughTheDecoder() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let (w, h, count) = (64, 48, 12)
    let frames: [[UInt8]] = (0..<count).map { f in
      (0..<(w * h)).flatMap { p -> [UInt8] in
        let (x, y) = (p % w, p / w)
        return [UInt8(x * 4), UInt8(y * 5), UInt8((x + y + f * 8) % 256 / 2)]
      }
    }
    var files: [Data] = []
    for name in ["a.mp4", "b.mp4"] {
      let writer = try VideoWriter(
        url: folder.appendingPathComponent(name), width: w, height: h, fps: 8, crf: 10)
      for frame in frames { try writer.append(frame) }
      try writer.finish()
      files.append(try Data(contentsOf: folder.appendingPathComponent(name)))
    }
    XCTAssertEqual(files[0], files[1])
    let reader = try VideoReader(url: folder.appendingPathComponent("a.mp4"), threads: 1)
    let info = try reader.info()
    XCTAssertEqual([info.frames, info.width, info.height], [count, w, h])
    XCTAssertEqual(info.codec, "h264")
    XCTAssertEqual(info.fps, 8, accuracy: 1e-9)
    var index = 0
    while try reader.nextFrame() != nil {
      let rgb = try reader.rgb()
      let error = zip(rgb, frames[index]).map { abs(Int($0) - Int($1)) }.reduce(0, +)
      XCTAssertLessThan(Double(error) / Double(rgb.count), 3, "frame \(index)")
      index += 1
    }
    XCTAssertEqual(index, count)
    XCTAssertThrowsError(
      try VideoWriter(url: folder.appendingPathComponent("odd.mp4"), width: 63, height: 48, fps: 8))
  }

  /// The same frames give the same bytes whatever the heap held before: libx264's
  /// macroblock-tree rate control read memory it never wrote, so clips of `graft data prepare
  /// clips` differed from run to run (and so did what a model trained on them learned) until
  /// the writer turned it off. Freed memory is filled with a different pattern before each
  /// write, as another process's history would leave it.
  func testWriterBytesDoNotDependOnTheHeap() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    var shape = [UInt8](repeating: 0, count: 28 * 28)
    for r in 3..<25 { for c in 6..<22 { shape[r * 28 + c] = UInt8(90 + (r * 13 + c * 7) % 160) } }
    let items = [
      ClipSetGenerator.Item(pixels: shape, noun: "bag"),
      ClipSetGenerator.Item(pixels: shape.reversed(), noun: "digit 5"),
    ]
    let options = ClipSetGenerator.Options()
    for index in 0..<ClipSetGenerator.actions.count {
      let clip = ClipSetGenerator.clip(index, items: items, options: options)
      var written: [Data] = []
      for pattern in [0x00, 0xA5, 0x3C] as [Int32] {
        for size in stride(from: 64, through: 1 << 16, by: 509) {
          let block = malloc(size)!
          memset(block, pattern, size)
          free(block)
        }
        let url = folder.appendingPathComponent("clip\(index)-\(pattern).mp4")
        let writer = try VideoWriter(
          url: url, width: options.size, height: options.size, fps: options.fps)
        for frame in clip.frames { try writer.append(frame) }
        try writer.finish()
        written.append(try Data(contentsOf: url))
      }
      XCTAssertEqual(written[0], written[1], "clip \(index)")
      XCTAssertEqual(written[0], written[2], "clip \(index)")
    }
  }

  /// Each action does what its label says to the items' pixels; captions name the item.
  func testClipsShowTheirActions() {
    // An L-shaped item, so a quarter turn changes it.
    var shape = [UInt8](repeating: 0, count: 28 * 28)
    for r in 4..<24 { for c in 4..<10 { shape[r * 28 + c] = 255 } }
    for r in 18..<24 { for c in 4..<24 { shape[r * 28 + c] = 255 } }
    let items = [
      ClipSetGenerator.Item(pixels: shape, noun: "ankle boot"),
      ClipSetGenerator.Item(pixels: shape, noun: "digit 3"),
    ]
    var options = ClipSetGenerator.Options()
    options.frames = 16
    func centroid(_ frame: [UInt8]) -> (x: Double, y: Double, n: Int) {
      var (sx, sy, n) = (0.0, 0.0, 0)
      for p in 0..<(64 * 64) where frame[p * 3] > 128 {
        sx += Double(p % 64)
        sy += Double(p / 64)
        n += 1
      }
      return (sx / Double(max(n, 1)), sy / Double(max(n, 1)), n)
    }
    for index in 0..<ClipSetGenerator.actions.count {
      let clip = ClipSetGenerator.clip(index, items: items, options: options)
      let action = ClipSetGenerator.actions[clip.action]
      XCTAssertEqual(clip.frames.count, 16)
      let first = centroid(clip.frames[0])
      let last = centroid(clip.frames[15])
      switch action {
      case "slide-left": XCTAssertLessThan(last.x, first.x - 20, action)
      case "slide-right": XCTAssertGreaterThan(last.x, first.x + 20, action)
      case "move-up": XCTAssertLessThan(last.y, first.y - 20, action)
      case "move-down": XCTAssertGreaterThan(last.y, first.y + 20, action)
      case "appear": XCTAssertEqual(last.n, 2 * first.n, action)
      case "disappear": XCTAssertEqual(first.n, 2 * last.n, action)
      case "turn":
        XCTAssertEqual(first.n, last.n, action)
        XCTAssertNotEqual(clip.frames[0], clip.frames[15], action)
      default: XCTAssertEqual(first.n, last.n, action)
      }
      XCTAssertTrue((3...5).contains(clip.captions.count), action)
      XCTAssertEqual(Set(clip.captions).count, clip.captions.count, action)
      for caption in clip.captions {
        XCTAssertTrue(
          caption.contains("ankle boot") || caption.contains("digit 3"), "\(action): \(caption)")
        XCTAssertFalse(caption.contains("{"), caption)
      }
      // Deterministic in the seed and index.
      XCTAssertEqual(
        ClipSetGenerator.clip(index, items: items, options: options).captions, clip.captions)
    }
  }

  /// `graft data prepare clips` on the real Fashion-MNIST test items and MNIST digits: every
  /// clip decodes to 32 frames of 64 × 64, every action appears, the splits follow the seed,
  /// and the annotations reload.
  func testPreparedClipSetDecodesAndReloads() throws {
    let fashion = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
    let mnist = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Data/mnist5k/mnist_5k.csv.gz")
    guard FileManager.default.fileExists(atPath: fashion.path) else {
      throw XCTSkip("dataset-fashion-mnist is not installed (Tools/setup-debian.sh)")
    }
    let folder = try VideoFixtures.temporaryFolder(self)
    var options = ClipSetGenerator.Options()
    options.clips = 8
    let set = try ClipSetGenerator.prepare(
      root: folder, fashionMNIST: fashion, mnistCSV: mnist, options: options)
    XCTAssertEqual(Set(set.videos.compactMap(\.label)), Set(ClipSetGenerator.actions))
    XCTAssertEqual(set.videos.filter { $0.split == "train" }.count, 6)
    XCTAssertEqual(set.videos.filter { $0.split == "val" }.count, 1)
    let reloaded = try CaptionedClipSet(
      contentsOf: folder.appendingPathComponent("annotations.json"))
    XCTAssertEqual(reloaded.videos, set.videos)
    XCTAssertEqual(reloaded.sentences, set.sentences)
    for video in set.videos {
      XCTAssertTrue((3...5).contains(set.captionsByVideo[video.videoID]!.count))
      let info = try VideoReader(url: folder.appendingPathComponent(video.file!)).info()
      XCTAssertEqual([info.frames, info.width, info.height], [32, 64, 64], video.videoID)
      XCTAssertEqual(info.duration, 2, accuracy: 1e-6)
    }
    let clip = try VideoDecoding.sample(
      folder.appendingPathComponent(set.videos[0].file!), count: 32, sampling: .middle)
    XCTAssertEqual(clip.indices, Array(0..<32))
    // Prepared again with fewer clips, the folder holds the new set only (before, clips 3-7
    // stayed beside it); a file of another name is left alone.
    let videos = folder.appendingPathComponent("videos")
    try Data("mine".utf8).write(to: videos.appendingPathComponent("clip00007-notes.mp4"))
    options.clips = 3
    try ClipSetGenerator.prepare(
      root: folder, fashionMNIST: fashion, mnistCSV: mnist, options: options)
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: videos.path).sorted(),
      ["clip00000.mp4", "clip00001.mp4", "clip00002.mp4", "clip00007-notes.mp4"])
  }

  /// Real MSR-VTT annotations (integer categories, `validate` split) load through the same type.
  func testMSRVTTStyleAnnotationsLoad() throws {
    let json = """
      {"info": {"year": 2016}, "videos": [
        {"category": 9, "url": "https://www.youtube.com/watch?v=x", "video_id": "video0",
         "start time": 137.72, "end time": 149.44, "split": "train", "id": 0},
        {"category": 16, "video_id": "video7010", "split": "validate", "id": 7010}],
       "sentences": [{"caption": "a car is shown", "video_id": "video0", "sen_id": 0},
        {"caption": "a man is talking", "video_id": "video7010", "sen_id": 1}]}
      """
    let folder = try VideoFixtures.temporaryFolder(self)
    let url = folder.appendingPathComponent("videodatainfo.json")
    try Data(json.utf8).write(to: url)
    let set = try CaptionedClipSet(contentsOf: url)
    XCTAssertEqual(set.videos.map(\.label), ["9", "16"])
    XCTAssertEqual(set.videos.map(\.split), ["train", "validate"])
    XCTAssertEqual(set.captionsByVideo["video7010"], ["a man is talking"])
    try Data("{\"videos\": 3}".utf8).write(to: url)
    XCTAssertThrowsError(try CaptionedClipSet(contentsOf: url))
  }

  /// A mistyped split (the clip would silently belong to no split) and a repeated video_id are
  /// errors naming the file and the video.
  func testUnknownSplitsAndRepeatedIDsAreNamedErrors() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let url = folder.appendingPathComponent("annotations.json")
    func videos(_ entries: String) -> Data {
      Data("{\"videos\": [\(entries)], \"sentences\": []}".utf8)
    }
    try videos(
      #"{"video_id": "a", "split": "train"}, {"video_id": "b", "split": "validation"}"#
    ).write(to: url)
    XCTAssertEqual(try CaptionedClipSet(contentsOf: url).videos.count, 2)
    for (entries, text) in [
      (#"{"video_id": "a", "split": "train"}, {"video_id": "b", "split": "tset"}"#, "'tset'"),
      (#"{"video_id": "a", "split": "train"}, {"video_id": "a", "split": "test"}"#, "twice"),
    ] {
      try videos(entries).write(to: url)
      XCTAssertThrowsError(try CaptionedClipSet(contentsOf: url)) { error in
        XCTAssertTrue("\(error)".contains(url.path), "\(error)")
        XCTAssertTrue("\(error)".contains(text), "\(error)")
      }
    }
  }

  /// An empty file, a folder or a FIFO given as the annotations is a named error (a FIFO used
  /// to block forever in `Data(contentsOf:)`).
  func testAnnotationsThatAreNotJSONFilesAreNamedErrors() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let empty = folder.appendingPathComponent("empty.json")
    try Data().write(to: empty)
    let fifo = folder.appendingPathComponent("pipe.json")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    for (url, text) in [
      (empty, "not MSR-VTT-style"), (folder, "directory"), (fifo, "not a regular"),
    ] {
      XCTAssertThrowsError(try CaptionedClipSet(contentsOf: url)) { error in
        let message = "\(error)"
        XCTAssertTrue(message.contains(url.path), message)
        XCTAssertTrue(message.contains(text), message)
      }
    }
  }
}
