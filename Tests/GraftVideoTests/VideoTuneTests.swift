import Foundation
import GraftData
import GraftModels
import GraftTasks
import GraftTensor
import GraftTuning
import GraftVideo
import XCTest

/// Video classification through `graft tune`'s trainer: clips [B, T, 3, H, W] run frame by frame
/// through an image backbone with the method attached; random frame sampling is seeded per clip;
/// what cannot work on video is refused with a named error.
final class VideoTuneTests: XCTestCase {
  /// The bundled Fashion-MNIST ViT (28 × 28, 6 blocks, D = 128), loaded fresh for each method.
  func backbone() throws -> TuneBackbone { try TuneBackbone.load("vit-nano-fmnist") }

  /// A class-per-folder tree of the fixture clips: `left/` two clips, `turned/` two (with
  /// `more`, five each).
  func fixtureTree(more: Bool = false) throws -> URL {
    let root = try VideoFixtures.temporaryFolder(self)
    let tree =
      more
      ? [
        ("left", ["h264.mp4", "vfr.mkv", "mpeg4.mp4", "anim.gif", "mjpeg.avi"]),
        (
          "turned",
          ["rotated.mp4", "vp8.webm", "vp9_odd.webm", "rotated_270.mp4", "h264_444_odd.mkv"]
        ),
      ] : [("left", ["h264.mp4", "vfr.mkv"]), ("turned", ["rotated.mp4", "vp8.webm"])]
    for (folder, clips) in tree {
      try FileManager.default.createDirectory(
        at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
      for clip in clips {
        try FileManager.default.copyItem(
          at: VideoFixtures.url(clip), to: root.appendingPathComponent("\(folder)/\(clip)"))
      }
    }
    return root
  }

  func testClipLogitsAreTheMeanOfTheFramesLogits() throws {
    let (b, t) = (2, 3)
    var g = RandomGenerator(seed: 5)
    let clips = Tensor.randn([b, t, 3, 28, 28], std: 1, generator: &g)
    // Every method that takes the backbone's images (p2p takes point clouds).
    let names = MethodRegistry.all.filter { !$0.takesPointClouds }.map(\.name)
    XCTAssertEqual(names.count, MethodRegistry.all.count - 1)
    for name in names {
      var rng = RandomGenerator(seed: 1)
      let method = try MethodRegistry.make(
        name, backbone: try backbone().model, classes: 4, generator: &rng)
      method.setTraining(false)
      let logits = withNoGrad { method(clips) }
      XCTAssertEqual(logits.shape, [b, 4], name)
      // Each frame alone, in its own batch; the clip's logits are their mean.
      for clip in 0..<b {
        var mean = [Float](repeating: 0, count: 4)
        for frame in 0..<t {
          let pixels = clips.narrow(0, start: clip, length: 1).reshaped([t, 3, 28, 28])
            .narrow(0, start: frame, length: 1)
          let one = withNoGrad { method(pixels) }
          for k in 0..<4 { mean[k] += one.pointer[k] / Float(t) }
        }
        for k in 0..<4 {
          XCTAssertEqual(
            logits.pointer[clip * 4 + k], mean[k], accuracy: 1e-4, "\(name) clip \(clip)")
        }
      }
    }
    // Gradients reach the method's tensors through the fold.
    var rng = RandomGenerator(seed: 1)
    let lora = try MethodRegistry.make(
      "lora", backbone: try backbone().model, classes: 4, generator: &rng)
    lora.setTraining(true)
    lora(clips).crossEntropy(targets: [0, 3]).backward()
    let grads = lora.trainableTensors().compactMap { $0.tensor.grad }
    XCTAssertEqual(grads.count, lora.trainableTensors().count)
    XCTAssertTrue(grads.contains { g in (0..<g.count).contains { g.pointer[$0] != 0 } })
  }

  func testRandomSamplingIsSeededByRunEpochAndClip() throws {
    let all = ClipDataset(try VideoDataset(folder: try fixtureTree()), input: VideoInput(frames: 4))
    let transforms = try ClipSample.transforms(for: try backbone().input)
    // Frames of every clip of an epoch, by dataset index.
    func frames(seed: UInt64, epoch: Int, workers: Int, batch: Int) throws -> [Int: [Float]] {
      let loader = DataLoader(
        dataset: all, batchSize: batch, shuffle: true, seed: seed, workers: workers,
        transform: transforms.train)
      var out: [Int: [Float]] = [:]
      let batches = loader.batches(epoch: epoch)
      while let b = try batches.next() {
        let per = b.inputs.count / b.indices.count
        for (i, index) in b.indices.enumerated() {
          out[index] = Array(UnsafeBufferPointer(start: b.inputs.pointer + i * per, count: per))
        }
      }
      return out
    }
    let reference = try frames(seed: 7, epoch: 1, workers: 0, batch: 1)
    XCTAssertEqual(reference.count, all.count)
    // Thread timing, worker count and batch size change nothing.
    XCTAssertEqual(try frames(seed: 7, epoch: 1, workers: 3, batch: 2), reference)
    XCTAssertEqual(try frames(seed: 7, epoch: 1, workers: 2, batch: 4), reference)
    // The clip's frames are the random rule seeded from (run seed, epoch, clip index).
    let loader = DataLoader(
      dataset: all, batchSize: 1, seed: 7, transform: transforms.train)
    let eval = EvalTransform(config: try backbone().preprocessing!)
    for index in 0..<all.count {
      var g = loader.sampleGenerator(epoch: 1, index: index)
      let expected = try all.sample(at: index).frames(
        rule: .random(seed: g.next()), transform: eval)
      XCTAssertEqual(
        reference[index], Array(UnsafeBufferPointer(start: expected.pointer, count: expected.count))
      )
    }
    // Another epoch or another run seed draws other frames.
    XCTAssertNotEqual(try frames(seed: 7, epoch: 2, workers: 0, batch: 1), reference)
    XCTAssertNotEqual(try frames(seed: 8, epoch: 1, workers: 0, batch: 1), reference)
    // Evaluation (PLLaVA's rule) is the same in every epoch.
    let evalLoader = DataLoader(dataset: all, batchSize: 4, seed: 7, transform: transforms.eval)
    let e0 = try XCTUnwrap(try evalLoader.batches(epoch: 0).next())
    let e1 = try XCTUnwrap(try evalLoader.batches(epoch: 5).next())
    XCTAssertEqual(
      Array(UnsafeBufferPointer(start: e0.inputs.pointer, count: e0.inputs.count)),
      Array(UnsafeBufferPointer(start: e1.inputs.pointer, count: e1.inputs.count)))
  }

  /// A run on clips ends the same with 2 loader threads as on the caller's thread, and when
  /// interrupted after an epoch and resumed: the random frames depend on the run's seed, the
  /// epoch and the clip only.
  func testRunsRepeatWhateverTheThreadsAndAResume() throws {
    let tree = try fixtureTree(more: true).path
    func run(workers: Int, interrupted: Bool) throws -> [String: [Float]] {
      var config = try TuneConfig.preset(for: "lora")
      for s in [
        "train.epochs=2", "train.batch_size=3", "data.frames=3", "train.workers=\(workers)",
      ] {
        try config.set(assignment: s)
      }
      let data = try VideoTuneData.load(tree, input: config.videoInput)
      let folder = try VideoFixtures.temporaryFolder(self).appendingPathComponent("run")
      let b = try backbone()
      if interrupted {
        let first = try Trainer(backbone: b, config: config, classNames: data.classNames)
        XCTAssertNil(try first.run(data: data, folder: folder, stopAfter: 1))
      }
      let trainer = try Trainer(backbone: b, config: config, classNames: data.classNames)
      _ = try XCTUnwrap(try trainer.run(data: data, folder: folder, resume: interrupted))
      let file = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
      return try SafetensorsFile(contentsOf: file).tensors().mapValues {
        Array(UnsafeBufferPointer(start: $0.pointer, count: $0.count))
      }
    }
    let reference = try run(workers: 2, interrupted: false)
    XCTAssertFalse(reference.isEmpty)
    XCTAssertEqual(try run(workers: 0, interrupted: true), reference)
  }

  func testVideoDataErrorsAreNamed() throws {
    // A method that takes point clouds cannot run on clips.
    let tree = try fixtureTree()
    XCTAssertThrowsError(
      try AnyTuneData.load(tree.path, for: .points(PointInput(points: 1024)))
    ) { error in
      XCTAssertTrue("\(error)".contains("video clips"), "\(error)")
      XCTAssertTrue("\(error)".contains(tree.path), "\(error)")
    }
    var config = try TuneConfig.preset(for: "p2p")
    try config.set("train.workers", "0")
    let trainer = try Trainer(backbone: try backbone(), config: config, classNames: ["a", "b"])
    let data = try VideoTuneData.load(tree.path, input: config.videoInput)
    let refused = try VideoFixtures.temporaryFolder(self).appendingPathComponent("run")
    XCTAssertThrowsError(try trainer.run(data: data, folder: refused)) { error in
      XCTAssertTrue(error is ConfigError, "\(error)")
      XCTAssertTrue("\(error)".contains("video clips"), "\(error)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: refused.path))
    // Clips read otherwise than the settings say (and the run would record).
    let linear = try Trainer(
      backbone: try backbone(), config: TuneConfig.preset(for: "linear"), classNames: ["a", "b"])
    let other = try VideoTuneData.load(tree.path, input: VideoInput(frames: 3))
    XCTAssertThrowsError(try linear.run(data: other, folder: refused)) { error in
      XCTAssertTrue("\(error)".contains("data.frames"), "\(error)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: refused.path))
    // Annotations without labels.
    let folder = try VideoFixtures.temporaryFolder(self)
    let json = folder.appendingPathComponent("captions.json")
    try Data(
      #"{"videos": [{"video_id": "a", "split": "train"}, {"video_id": "b", "split": "test"}], "sentences": []}"#
        .utf8
    ).write(to: json)
    XCTAssertThrowsError(try VideoTuneData.load(json.path, input: VideoInput())) { error in
      let e = error as? DatasetError
      XCTAssertEqual(e?.path, json.path)
      XCTAssertTrue(e?.message.contains("no label") ?? false, "\(error)")
    }
    // A class folder with no video, and a folder with no class folder.
    let empty = folder.appendingPathComponent("clips")
    try FileManager.default.createDirectory(
      at: empty.appendingPathComponent("left"), withIntermediateDirectories: true)
    try Data("not a video".utf8).write(to: empty.appendingPathComponent("left/notes.txt"))
    XCTAssertThrowsError(try VideoTuneData.load(empty.path, input: VideoInput())) { error in
      let e = error as? DatasetError
      XCTAssertEqual(e?.path, empty.appendingPathComponent("left").path)
      XCTAssertTrue(e?.message.contains("no video file") ?? false, "\(error)")
    }
    let bare = folder.appendingPathComponent("bare")
    try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
    XCTAssertThrowsError(try VideoTuneData.load(bare.path, input: VideoInput())) { error in
      XCTAssertTrue("\(error)".contains("no class folders"), "\(error)")
      XCTAssertTrue("\(error)".contains("<video>"), "\(error)")
    }
    // Settings: evaluation cannot sample at random; a clip needs a frame.
    XCTAssertThrowsError(try config.set("data.sampling", "random"))
    XCTAssertThrowsError(try config.set("data.frames", "0"))
  }
}
