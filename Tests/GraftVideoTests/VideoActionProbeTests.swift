import Foundation
import GraftData
import GraftModels
import GraftNN
import GraftTasks
import GraftTensor
import GraftVideo
import XCTest

/// End to end: clips of real items made by `ClipSetGenerator`, through the frozen bundled
/// backbone and PLLaVA's pooling, carry their action: a linear head on the pooled tokens
/// learns the 8 action labels far above chance (1 in 8) in a short run.
final class VideoActionProbeTests: XCTestCase {
  func testLinearProbeOnPooledTokensLearnsActions() throws {
    let fashion = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
    guard FileManager.default.fileExists(atPath: fashion.path) else {
      throw XCTSkip("dataset-fashion-mnist is not installed (Tools/setup-debian.sh)")
    }
    let started = Date()
    let items = try ClipSetGenerator.items(
      fashionMNIST: fashion, mnistCSV: nil, count: 60, seed: 3)
    var options = ClipSetGenerator.Options()
    options.frames = 3
    options.size = 56
    let loaded = try ModelLoader.load("vit-nano-fmnist")
    let encoder = try FrameEncoder(
      backbone: loaded.model, transform: EvalTransform(config: loaded.preprocessing!))
    let (trainCount, testCount) = (48, 24)
    var frames: [RGBImage] = []
    var labels: [Int] = []
    for index in 0..<(trainCount + testCount) {
      let clip = ClipSetGenerator.clip(index, items: items, options: options)
      frames += clip.frames.map { RGBImage(width: 56, height: 56, pixels: $0) }
      labels.append(clip.action)
    }
    // Every frame of every clip as one batch, then PLLaVA's pooling to (3, 2, 2) per clip.
    let tokens = encoder.tokens(pixels: encoder.transform.batch(frames))  // [N·3, 7, 7, 128]
    let pooled = AdaptivePooling.averagePool3D(
      tokens.reshaped([labels.count, 3] + Array(tokens.shape.dropFirst())), to: (3, 2, 2))
    var features = Array(UnsafeBufferPointer(start: pooled.pointer, count: pooled.count))
    print("video action probe: items and features in \(Date().timeIntervalSince(started)) s")
    let width = features.count / labels.count
    // Standardise each feature on the training clips.
    for j in 0..<width {
      let column = (0..<trainCount).map { features[$0 * width + j] }
      let mean = column.reduce(0, +) / Float(trainCount)
      let variance = column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(trainCount)
      let scale = 1 / (variance.squareRoot() + 1e-4)
      for i in 0..<labels.count {
        features[i * width + j] = (features[i * width + j] - mean) * scale
      }
    }
    var rng = RandomGenerator(seed: 0)
    let head = Linear(width, ClipSetGenerator.actions.count, generator: &rng)
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: head.namedParameters(), lr: 1e-2, weightDecay: 1e-2))
    let x = Tensor(Array(features[0..<(trainCount * width)]), shape: [trainCount, width])
    let y = Array(labels[0..<trainCount])
    for _ in 0..<60 {
      let loss = head(x).crossEntropy(targets: y)
      optimizer.zeroGrad()
      loss.backward()
      optimizer.step()
    }
    let test = Tensor(Array(features[(trainCount * width)...]), shape: [testCount, width])
    let predicted = withNoGrad { head(test) }.argmax(axis: 1)
    let correct = zip(predicted, labels[trainCount...]).filter { $0 == $1 }.count
    let accuracy = Double(correct) / Double(testCount)
    print("video action probe: test accuracy \(accuracy) on \(testCount) clips (chance 0.125)")
    XCTAssertGreaterThan(accuracy, 0.5)
  }

  /// A tiny random ViT (28 × 28 input, 7 × 7 patches, D = 32, 2 blocks), its block weights
  /// redrawn at unit gain so its features depend on the input from the start.
  static func tinyBackbone() -> TuneBackbone {
    let config = ViTConfig(
      imgSize: 28, patchSize: 7, embedDim: 32, depth: 2, numHeads: 2, numClasses: 0)
    var rng = RandomGenerator(seed: 1)
    let model = try! VisionTransformer(config: config, generator: &rng)
    for (name, t) in model.namedParameters() where name.hasPrefix("blocks.") && t.rank == 2 {
      t.assign(Tensor.randn(t.shape, std: 1 / Float(t.shape[1]).squareRoot(), generator: &rng))
    }
    return TuneBackbone(inMemory: model, name: "tiny-video-vit")
  }

  /// `clips` clips of `frames` frames (`size` × `size`) written as H.264 MP4 under `root`,
  /// with MSR-VTT-style annotations: the first `train` clips for training, then `val`, then the
  /// rest for test. Actions cycle through the 8 labels, so every split has each.
  static func writeClipSet(
    root: URL, clips: Int, train: Int, val: Int, frames: Int, size: Int
  ) throws -> URL {
    let items = try ClipSetGenerator.items(
      fashionMNIST: URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist"), mnistCSV: nil,
      count: 60, seed: 3)
    var options = ClipSetGenerator.Options()
    options.frames = frames
    options.size = size
    var set = CaptionedClipSet(videos: [], sentences: [])
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("videos"), withIntermediateDirectories: true)
    for index in 0..<clips {
      let clip = ClipSetGenerator.clip(index, items: items, options: options)
      let file = String(format: "videos/clip%05d.mp4", index)
      let writer = try VideoWriter(
        url: root.appendingPathComponent(file), width: size, height: size, fps: 16)
      for frame in clip.frames { try writer.append(frame) }
      try writer.finish()
      let split = index < train ? "train" : index < train + val ? "val" : "test"
      set.videos.append(
        .init(
          videoID: "clip\(index)", split: split, label: ClipSetGenerator.actions[clip.action],
          file: file))
    }
    let url = root.appendingPathComponent("annotations.json")
    try JSONEncoder().encode(set).write(to: url)
    return url
  }

  /// `graft tune`'s trainer on the clip set: a tiny ViT fully fine-tuned, every frame through
  /// it, the frames' features averaged per clip (debug builds are too slow for the bundled
  /// backbone here; README gives its figures). The average ignores the frames' order, so an
  /// action and its reverse (slide left / right, move up / down, appear / disappear) look
  /// alike: at best the 2 order-free actions and one of each of the 3 pairs are told apart,
  /// 5 in 8. The run must get well above chance (1 in 8) toward that: this recipe gave 0.27,
  /// 0.29, 0.29 and 0.31 with seeds 0–3 (before the clips were written reproducibly, runs of
  /// the former recipe, batch 16 at lr 6e-3, drew anything from 0.19 to 0.40).
  func testTuneOnClipsLearnsActions() throws {
    guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") else {
      throw XCTSkip("dataset-fashion-mnist is not installed (Tools/setup-debian.sh)")
    }
    let started = Date()
    let root = try VideoFixtures.temporaryFolder(self)
    let annotations = try Self.writeClipSet(
      root: root, clips: 168, train: 96, val: 24, frames: 8, size: 56)
    var config = try TuneConfig.preset(for: "full")
    for s in [
      "train.epochs=15", "train.batch_size=8", "data.frames=4", "train.workers=2",
      "optim.name=adamw", "optim.lr=0.003", "optim.weight_decay=0.01",
    ] {
      try config.set(assignment: s)
    }
    let data = try VideoTuneData.load(annotations.path, input: config.videoInput)
    XCTAssertEqual(
      [data.train.count, data.validation.count, data.test.count], [96, 24, 48])
    XCTAssertEqual(data.classNames, ClipSetGenerator.actions.sorted())
    let trainer = try Trainer(
      backbone: Self.tinyBackbone(), config: config,
      classNames: data.classNames)
    let folder = root.appendingPathComponent("run")
    let summary = try XCTUnwrap(
      try trainer.run(data: .videos(data), folder: folder, dataReference: annotations.path))
    print(
      "video tune: test top-1 \(summary.test.top1) on \(summary.test.count) clips, "
        + "\(summary.imagesPerSecond) clips/s training, \(Date().timeIntervalSince(started)) s")
    XCTAssertEqual(summary.test.count, 48)
    XCTAssertGreaterThan(summary.test.top1, 0.22)
    // The run folder records how clips were read, and the adapter reloads to the same logits.
    let loaded = try AdapterCheckpoint.load(folder, backbone: Self.tinyBackbone())
    XCTAssertEqual(loaded.config.videoInput, VideoInput(frames: 4))
    let (again, _) = try loaded.evaluate(data.test)
    XCTAssertEqual(again.top1, summary.test.top1)
    let files = (0..<data.test.count).map { try! data.test.sample(at: $0).url }
    let predicted = try loaded.predict(clips: files).argmax(axis: 1)
    let correct = zip(predicted, data.test.labels).filter { $0 == $1 }.count
    XCTAssertEqual(Double(correct) / Double(files.count), summary.test.top1)
  }
}
