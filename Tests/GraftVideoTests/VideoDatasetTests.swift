import Foundation
import GraftData
import GraftModels
import GraftTensor
import GraftVideo
import XCTest

/// Video datasets on the background loader: a class-per-folder tree and MSR-VTT-style
/// annotations, decoded and preprocessed on the loader's worker threads.
final class VideoDatasetTests: XCTestCase {
  func testFolderTreeBatchesThroughTheLoader() throws {
    let root = try VideoFixtures.temporaryFolder(self)
    let fm = FileManager.default
    for (folder, clips) in [("left", ["h264.mp4", "vfr.mkv"]), ("turned", ["rotated.mp4"])] {
      try fm.createDirectory(
        at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
      for clip in clips {
        try fm.copyItem(
          at: VideoFixtures.url(clip), to: root.appendingPathComponent("\(folder)/\(clip)"))
      }
    }
    try Data("not a video".utf8).write(to: root.appendingPathComponent("left/notes.txt"))
    let dataset = try VideoDataset(folder: root)
    XCTAssertEqual(dataset.classNames, ["left", "turned"])
    XCTAssertEqual(dataset.files.map(\.lastPathComponent), ["h264.mp4", "vfr.mkv", "rotated.mp4"])
    XCTAssertEqual(dataset.labels, [0, 0, 1])

    let loaded = try ModelLoader.load("vit-nano-fmnist")
    let eval = EvalTransform(config: loaded.preprocessing!)
    let loader = DataLoader(
      dataset: dataset, batchSize: 2, workers: 2,
      transform: VideoDatasets.transform(frames: 4, sampling: .pllava, transform: eval))
    let batches = loader.batches(epoch: 0)
    let first = try XCTUnwrap(try batches.next())
    XCTAssertEqual(first.inputs.shape, [2, 4, 3, 28, 28])
    XCTAssertEqual(first.labels, [0, 0])
    let second = try XCTUnwrap(try batches.next())
    XCTAssertEqual(second.inputs.shape, [1, 4, 3, 28, 28])
    XCTAssertEqual(second.labels, [1])
    XCTAssertNil(try batches.next())
    // The loader's pixels are the frame encoder's for the same sampled frames.
    let sampled = try VideoDecoding.sample(dataset.files[2], count: 4)
    let encoder = try FrameEncoder(backbone: loaded.model, transform: eval)
    let expected = encoder.pixels([sampled])
    XCTAssertEqual(
      Array(UnsafeBufferPointer(start: second.inputs.pointer, count: second.inputs.count)),
      Array(UnsafeBufferPointer(start: expected.pointer, count: expected.count)))

    // Random sampling: the same epoch repeats, another epoch draws other frames.
    let random = DataLoader(
      dataset: dataset, batchSize: 3, seed: 7, workers: 1,
      transform: VideoDatasets.transform(frames: 4, sampling: .random(seed: 0), transform: eval))
    func epoch(_ e: Int) throws -> [Float] {
      let batch = try XCTUnwrap(try random.batches(epoch: e).next())
      return Array(UnsafeBufferPointer(start: batch.inputs.pointer, count: batch.inputs.count))
    }
    XCTAssertEqual(try epoch(0), try epoch(0))
    XCTAssertNotEqual(try epoch(0), try epoch(1))
  }

  func testAnnotationsGiveLabelledSplits() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let json = """
      {"videos": [
        {"video_id": "a", "split": "train", "label": "slide", "file": "clips/h264.mp4"},
        {"video_id": "b", "split": "validate", "category": 3, "file": "clips/vp8.webm"},
        {"video_id": "c", "split": "val", "label": "slide", "file": "clips/anim.gif"}],
       "sentences": []}
      """
    let url = folder.appendingPathComponent("annotations.json")
    try Data(json.utf8).write(to: url)
    let all = try VideoDataset(annotations: url, videos: VideoFixtures.folder)
    XCTAssertEqual(all.classNames, ["3", "slide"])
    XCTAssertEqual(all.labels, [1, 0, 1])
    let val = try VideoDataset(annotations: url, split: "val", videos: VideoFixtures.folder)
    XCTAssertEqual(val.files.map(\.lastPathComponent), ["vp8.webm", "anim.gif"])
    XCTAssertEqual(val.labels, [0, 1])
    XCTAssertEqual(try val.sample(at: 1).url, VideoFixtures.url("anim.gif"))
    XCTAssertThrowsError(try VideoDataset(annotations: url, split: "test"))
  }
}
