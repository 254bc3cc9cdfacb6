import Foundation
import GraftData
import GraftModels
import GraftNN
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
}
