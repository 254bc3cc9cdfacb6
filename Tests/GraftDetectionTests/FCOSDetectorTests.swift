import Foundation
import XCTest

@testable import GraftDetection

/// A stand-in for a ViT: a trainable 16×16 stride-16 patch embedding (the token map), a simple
/// feature pyramid on it.
private final class PatchPyramid: DetectionFeatureSource {
  let embed: Tensor
  let pyramid: SimpleFeaturePyramid

  init(width: Int, channels: Int, strides: [Int], generator: inout RandomGenerator) {
    embed = Tensor.randn([width, 3, 16, 16], std: 0.05, generator: &generator).requiringGrad()
    pyramid = SimpleFeaturePyramid(
      inChannels: width, outChannels: channels, strides: strides, seed: 5)
  }

  var strides: [Int] { pyramid.strides }
  var channels: Int { pyramid.outChannels }
  func features(_ images: Tensor) -> [Tensor] {
    pyramid(images.conv2d(weight: embed, stride: (16, 16)))
  }
  var namedParameters: [(String, Tensor)] { [("embed", embed)] + pyramid.namedParameters }
}

/// Adam (β 0.9, 0.999) on raw tensors, enough for the behavioural test.
private struct Adam {
  var m: [[Float]]
  var v: [[Float]]
  var step = 0

  init(_ params: [Tensor]) {
    m = params.map { [Float](repeating: 0, count: $0.count) }
    v = m
  }

  mutating func update(_ params: [Tensor], lr: Float) {
    step += 1
    let (c1, c2) = (1 - powf(0.9, Float(step)), 1 - powf(0.999, Float(step)))
    for (i, p) in params.enumerated() {
      guard let g = p.grad?.scalars else { continue }
      for j in 0..<p.count {
        m[i][j] = 0.9 * m[i][j] + 0.1 * g[j]
        v[i][j] = 0.999 * v[i][j] + 0.001 * g[j] * g[j]
        p.pointer[j] -= lr * (m[i][j] / c1) / ((v[i][j] / c2).squareRoot() + 1e-8)
      }
      p.grad = nil
    }
  }
}

/// `count` 64×64 images, each dark with one bright square of side 14–26 somewhere inside.
private func squares(_ count: Int, _ rng: inout RandomGenerator) -> (Tensor, [FCOSTarget]) {
  let n = 64
  var pixels = [Float](repeating: -0.5, count: count * 3 * n * n)
  var targets: [FCOSTarget] = []
  for i in 0..<count {
    let side = 14 + Int(rng.nextFloat() * 12)
    let x0 = Int(rng.nextFloat() * Float(n - side))
    let y0 = Int(rng.nextFloat() * Float(n - side))
    for c in 0..<3 {
      for y in y0..<(y0 + side) {
        for x in x0..<(x0 + side) { pixels[((i * 3 + c) * n + y) * n + x] = 1 }
      }
    }
    targets.append(
      FCOSTarget(
        boxes: [CornerBox(Float(x0), Float(y0), Float(x0 + side), Float(y0 + side))], labels: [0]))
  }
  return (Tensor(pixels, shape: [count, 3, n, n]), targets)
}

final class FCOSDetectorTests: XCTestCase {
  func testPyramidShapesAndGradients() {
    let pyramid = SimpleFeaturePyramid(inChannels: 8, outChannels: 6)
    var rng = RandomGenerator(seed: 1)
    let x = Tensor.randn([2, 8, 4, 6], generator: &rng).requiringGrad()
    let maps = pyramid(x)
    XCTAssertEqual(
      maps.map(\.shape), [[2, 6, 16, 24], [2, 6, 8, 12], [2, 6, 4, 6], [2, 6, 2, 3]])
    // ViTDet's layers: stride 4 has two deconvolutions (8→4→2) and a norm between; every stage a
    // bias-free 1×1 and 3×3 conv, each with a LayerNorm.
    let counts = pyramid.namedParameters.reduce(0) { $0 + $1.1.count }
    let stride4 = (8 * 4 * 2 * 2 + 4) + (4 + 4) + (4 * 2 * 2 * 2 + 2)  // deconv, LN, deconv
    let stride8 = 8 * 4 * 2 * 2 + 4
    let convs = [2, 4, 8, 8].map { $0 * 6 + 6 * 6 * 9 + 2 * (6 + 6) }.reduce(0, +)
    XCTAssertEqual(counts, stride4 + stride8 + convs)
    // A random projection: Σ y² after a LayerNorm is constant and would carry no gradient.
    maps.map { ($0 * Tensor.randn($0.shape, generator: &rng)).sum() }
      .reduce(Tensor(scalar: 0), +).backward()
    for (name, p) in pyramid.namedParameters {
      XCTAssertGreaterThan(p.grad?.scalars.map(abs).max() ?? 0, 0, "\(name) gets no gradient")
    }
    XCTAssertNotNil(x.grad)
  }

  func testHeadStartsAtThePriorWithNonNegativeDistances() {
    XCTAssertEqual([10, 24, 48, 64, 256].map(FCOSHead.groupCount), [10, 24, 24, 32, 32])
    let head = FCOSHead(channels: 8, numClasses: 3, numLevels: 2, numConvs: 2)
    var rng = RandomGenerator(seed: 2)
    let out = head([
      Tensor.randn([2, 8, 4, 4], generator: &rng), Tensor.randn([2, 8, 2, 2], generator: &rng),
    ])
    XCTAssertEqual(out.classLogits.shape, [2, 20, 3])
    XCTAssertEqual(out.boxRegression.shape, [2, 20, 4])
    XCTAssertEqual(out.centerness.shape, [2, 20, 1])
    let probabilities = out.classLogits.sigmoid().scalars
    XCTAssertEqual(probabilities.reduce(0, +) / Float(probabilities.count), 0.01, accuracy: 2e-3)
    XCTAssertGreaterThanOrEqual(out.boxRegression.scalars.min() ?? -1, 0)
    XCTAssertEqual(head.namedParameters.count, 2 * 2 * 4 + 3 * 2 + 2)
    XCTAssertTrue(head.namedParameters.allSatisfy { $0.1.requiresGrad })
  }

  func testTinyDetectorLocalisesABrightSquare() {
    var rng = RandomGenerator(seed: 42)
    let source = PatchPyramid(width: 16, channels: 16, strides: [8, 16, 32], generator: &rng)
    let detector = FCOSDetector(source: source, numClasses: 1, numConvs: 1, seed: 3)
    let params = detector.namedParameters.map(\.1)
    var adam = Adam(params)
    let (images, targets) = squares(8, &rng)
    var losses: [Float] = []
    for _ in 0..<60 {
      let loss = detector.loss(images: images, targets: targets).total
      losses.append(loss.item)
      loss.backward()
      adam.update(params, lr: 3e-3)
    }
    let early = losses.prefix(5).reduce(0, +) / 5
    let late = losses.suffix(5).reduce(0, +) / 5
    XCTAssertLessThan(late, 0.6 * early, "loss \(early) → \(late)")
    // Images the detector has not seen.
    let (unseen, truth) = squares(6, &rng)
    let found = detector.detect(images: unseen)
    var ious: [Float] = []
    for (d, t) in zip(found, truth) {
      ious.append(d.boxes.first.map { BoxOps.iou($0, t.boxes[0]) } ?? 0)
    }
    XCTAssertTrue(ious.allSatisfy { $0 > 0.5 }, "top-box IoUs \(ious), losses \(losses)")
  }
}
