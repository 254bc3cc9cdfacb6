import Foundation
import XCTest

@testable import GraftData

final class AugmentationTests: XCTestCase {
  private func moments(_ samples: [Double]) -> (mean: Double, variance: Double) {
    let mean = samples.reduce(0, +) / Double(samples.count)
    let variance = samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(samples.count - 1)
    return (mean, variance)
  }

  /// Gamma(k, 1) has mean k and variance k; tolerances are about 5 standard errors.
  func testGammaMoments() {
    var generator = RandomGenerator(seed: 1)
    for shape in [0.3, 1.0, 3.5] {
      let n = 20_000
      let samples = (0..<n).map { _ in generator.nextGamma(shape: shape) }
      XCTAssertTrue(samples.allSatisfy { $0 >= 0 && $0.isFinite })
      let (mean, variance) = moments(samples)
      XCTAssertEqual(mean, shape, accuracy: 5 * (shape / Double(n)).squareRoot(), "shape \(shape)")
      XCTAssertEqual(variance, shape, accuracy: 0.08 * shape + 0.02, "shape \(shape)")
    }
  }

  /// Beta(a, b): mean a / (a + b), variance ab / ((a + b)² (a + b + 1)).
  func testBetaMoments() {
    var generator = RandomGenerator(seed: 2)
    for (a, b) in [(0.8, 0.8), (0.2, 0.2), (2.0, 5.0)] {
      let n = 20_000
      let samples = (0..<n).map { _ in generator.nextBeta(a, b) }
      XCTAssertTrue(samples.allSatisfy { $0 >= 0 && $0 <= 1 })
      let (mean, variance) = moments(samples)
      let expectedMean = a / (a + b)
      let expectedVariance = a * b / ((a + b) * (a + b) * (a + b + 1))
      XCTAssertEqual(
        mean, expectedMean, accuracy: 5 * (expectedVariance / Double(n)).squareRoot(), "\(a), \(b)")
      XCTAssertEqual(variance, expectedVariance, accuracy: 0.05 * expectedVariance, "\(a), \(b)")
    }
  }

  func testRandomResizedCropRegionsFollowScaleAndRatio() {
    let crop = RandomResizedCrop(size: 32)
    var generator = RandomGenerator(seed: 3)
    let (width, height) = (200, 120)
    var fractions: [Double] = []
    for _ in 0..<2000 {
      let r = crop.sampleRegion(imageWidth: width, imageHeight: height, generator: &generator)
      XCTAssertTrue(r.top >= 0 && r.left >= 0 && r.height > 0 && r.width > 0)
      XCTAssertTrue(r.top + r.height <= height && r.left + r.width <= width, "\(r)")
      // Sides are rounded to whole pixels, so ratio and area are only approximately in range.
      let ratio = Double(r.width) / Double(r.height)
      let lowest = Double(r.width) / Double(r.height + 1)
      let highest = Double(r.width + 1) / Double(max(r.height - 1, 1))
      XCTAssertTrue(highest >= 0.75 && lowest <= 4.0 / 3, "ratio \(ratio)")
      fractions.append(Double(r.width * r.height) / Double(width * height))
    }
    XCTAssertGreaterThan(fractions.min()!, 0.06)
    XCTAssertLessThanOrEqual(fractions.max()!, 1)
    // Accepted areas are uniform in [0.08, 1] except where the sides cannot fit: the mean
    // lies below the unconstrained 0.54 but well above the smallest areas.
    let mean = fractions.reduce(0, +) / Double(fractions.count)
    XCTAssertTrue(mean > 0.35 && mean < 0.54, "mean area fraction \(mean)")
  }

  /// When ten tries fail, torchvision takes the largest centred region with the ratio clamped.
  func testRandomResizedCropFallbackIsCentred() {
    var generator = RandomGenerator(seed: 4)
    let crop = RandomResizedCrop(size: 8, scale: 0.5...1)
    // 400×10: any area ≥ 2000 px needs h ≥ 38 > 10. in_ratio 40 > 4/3: h = 10,
    // w = round(10 · 4/3) = 13, left = (400 − 13) / 2 = 193.
    XCTAssertEqual(
      crop.sampleRegion(imageWidth: 400, imageHeight: 10, generator: &generator),
      .init(top: 0, left: 193, height: 10, width: 13))
    // 10×400: in_ratio 0.025 < 3/4: w = 10, h = round(10 / 0.75) = 13, top = 193.
    XCTAssertEqual(
      crop.sampleRegion(imageWidth: 10, imageHeight: 400, generator: &generator),
      .init(top: 193, left: 0, height: 13, width: 10))
    // Areas above the image's never fit; a square image keeps all of itself.
    let tooBig = RandomResizedCrop(size: 8, scale: 1.5...2)
    XCTAssertEqual(
      tooBig.sampleRegion(imageWidth: 30, imageHeight: 30, generator: &generator),
      .init(top: 0, left: 0, height: 30, width: 30))
  }

  func testSameSeedSameAugmentation() throws {
    let image = try ImageFixtures.image("resize_src.png")
    let transform = TrainTransform(config: ImagePreprocessConfig(inputSize: [3, 24, 24]))
    var a = RandomGenerator(seed: 99)
    var b = RandomGenerator(seed: 99)
    let x = transform.batch([image, image, image], generator: &a)
    let y = transform.batch([image, image, image], generator: &b)
    XCTAssertEqual(x.shape, [3, 3, 24, 24])
    XCTAssertEqual(x.scalars, y.scalars)
    // Three draws from one stream differ from each other.
    let plane = 3 * 24 * 24
    XCTAssertNotEqual(Array(x.scalars[0..<plane]), Array(x.scalars[plane..<(2 * plane)]))
  }

  func testTrainTransformIsCropThenFlipThenNormalise() throws {
    let image = try ImageFixtures.image("resize_src.png")
    let config = ImagePreprocessConfig(inputSize: [3, 20, 20], interpolation: .bilinear)
    let transform = TrainTransform(config: config, flipProbability: 1)
    var g1 = RandomGenerator(seed: 8)
    var g2 = RandomGenerator(seed: 8)
    let region = transform.crop.sampleRegion(imageWidth: 96, imageHeight: 72, generator: &g2)
    let manual = transform.crop.apply(region, to: image).horizontallyFlipped()
      .tensor(mean: config.mean, std: config.std)
    XCTAssertEqual(transform(image, generator: &g1).scalars, manual.scalars)
  }

  func testFlipProbability() {
    let image = RGBImage(width: 2, height: 1, pixels: [1, 1, 1, 2, 2, 2])
    var generator = RandomGenerator(seed: 5)
    let never = RandomHorizontalFlip(probability: 0)
    let always = RandomHorizontalFlip(probability: 1)
    XCTAssertEqual(never(image, generator: &generator), image)
    XCTAssertEqual(always(image, generator: &generator).pixels, [2, 2, 2, 1, 1, 1])
    let half = RandomHorizontalFlip()
    let flips = (0..<4000).filter { _ in half(image, generator: &generator) != image }.count
    XCTAssertEqual(Double(flips) / 4000, 0.5, accuracy: 0.04)
  }

  /// timm's `mixup_target` worked out by hand: C = 3, ε = 0.1 → off 0.1/3, on 0.9 + 0.1/3.
  func testMixupTargetsBlendSmoothedOneHotWithTheMirror() {
    let t = Mixup.targets(labels: [0, 2, 1, 2], numClasses: 3, lambda: 0.25, smoothing: 0.1)
    XCTAssertEqual(t.shape, [4, 3])
    let off = 0.1 / 3
    let on = 0.9 + off
    // Row 0 (label 0) mixes with row 3 (label 2); row 1 (label 2) with row 2 (label 1).
    let expected: [[Double]] = [
      [0.25 * on + 0.75 * off, off, 0.25 * off + 0.75 * on],
      [off, 0.25 * off + 0.75 * on, 0.25 * on + 0.75 * off],
      [off, 0.25 * on + 0.75 * off, 0.25 * off + 0.75 * on],
      [0.25 * off + 0.75 * on, off, 0.25 * on + 0.75 * off],
    ]
    for b in 0..<4 {
      for c in 0..<3 { XCTAssertEqual(Double(t[b, c]), expected[b][c], accuracy: 1e-6) }
      XCTAssertEqual(Double((0..<3).map { t[b, $0] }.reduce(0, +)), 1, accuracy: 1e-6)
    }
  }

  func testMixupBlendsEachImageWithItsMirror() {
    let mixup = Mixup(mixupAlpha: 1, numClasses: 2)
    let images = Tensor((0..<12).map { Float($0) }, shape: [4, 1, 1, 3])
    let (mixed, targets) = mixup.apply(.init(lambda: 0.3), images: images, labels: [0, 1, 1, 0])
    // Image b is 3b + (0, 1, 2); its mirror 3 − b.
    for b in 0..<4 {
      for x in 0..<3 {
        let expected = 0.3 * Double(3 * b + x) + 0.7 * Double(3 * (3 - b) + x)
        XCTAssertEqual(Double(mixed[b, 0, 0, x]), expected, accuracy: 1e-5)
      }
    }
    XCTAssertEqual(images[0, 0, 0, 1], 1, "input untouched")
    XCTAssertEqual(targets.shape, [4, 2])
    // Labels 0 and 0 at rows 0 and 3: the mix of identical smoothed rows is that row.
    XCTAssertEqual(targets[0, 0], 0.95, accuracy: 1e-6)
  }

  func testCutMixPastesTheMirrorsBox() {
    let mixup = Mixup(mixupAlpha: 0, cutmixAlpha: 1, labelSmoothing: 0, numClasses: 2)
    let images = Tensor((0..<32).map { Float($0) }, shape: [2, 1, 4, 4])
    let box = Mixup.Box(top: 1, bottom: 3, left: 0, right: 2)
    let (mixed, targets) = mixup.apply(
      .init(lambda: 0.75, box: box), images: images, labels: [0, 1])
    for b in 0..<2 {
      for y in 0..<4 {
        for x in 0..<4 {
          let inside = (1..<3).contains(y) && (0..<2).contains(x)
          let from = inside ? 1 - b : b
          XCTAssertEqual(mixed[b, 0, y, x], Float(from * 16 + y * 4 + x), "b \(b) y \(y) x \(x)")
        }
      }
    }
    XCTAssertEqual(targets.scalars, [0.75, 0.25, 0.25, 0.75])
  }

  /// timm's rand_bbox by hand: H 10, W 8, λ 0.75 → sqrt(1 − λ) = 0.5, cut 5 × 4; centre (1, 7):
  /// rows 1 − 2 … 1 + 3 → 0..<4, columns 7 − 2 … 7 + 2 → 5..<8 (clipped from 9).
  func testCutMixBoxFollowsTimmRandBbox() {
    let box = Mixup.cutmixBox(lambda: 0.75, centerY: 1, centerX: 7, height: 10, width: 8)
    XCTAssertEqual(box, .init(top: 0, bottom: 4, left: 5, right: 8))
  }

  func testSampledCutMixLambdaIsTheUncoveredArea() {
    let mixup = Mixup(mixupAlpha: 0, cutmixAlpha: 1, numClasses: 10)
    var generator = RandomGenerator(seed: 6)
    for _ in 0..<500 {
      let p = mixup.sampleParameters(height: 12, width: 9, generator: &generator)
      guard let box = p.box else {
        XCTAssertEqual(p.lambda, 1)
        continue
      }
      XCTAssertTrue(0 <= box.top && box.top <= box.bottom && box.bottom <= 12)
      XCTAssertTrue(0 <= box.left && box.left <= box.right && box.right <= 9)
      let area = Double((box.bottom - box.top) * (box.right - box.left))
      XCTAssertEqual(p.lambda, 1 - area / 108)
    }
    let minMax = Mixup(mixupAlpha: 0, cutmixMinMax: (0.25, 0.5), numClasses: 10)
    for _ in 0..<200 {
      let box = minMax.sampleParameters(height: 16, width: 16, generator: &generator).box!
      XCTAssertTrue(
        (4..<8).contains(box.bottom - box.top) && (4..<8).contains(box.right - box.left))
      XCTAssertTrue(box.bottom <= 16 && box.right <= 16)
    }
  }

  func testSwitchProbabilityAndDisabledMixing() {
    var generator = RandomGenerator(seed: 7)
    let both = Mixup(mixupAlpha: 0.8, cutmixAlpha: 1, switchProbability: 0.3, numClasses: 5)
    var cutmix = 0
    var lambdas: [Double] = []
    for _ in 0..<3000 {
      let p = both.sampleParameters(height: 8, width: 8, generator: &generator)
      if p.box != nil { cutmix += 1 } else { lambdas.append(p.lambda) }
    }
    XCTAssertEqual(Double(cutmix) / 3000, 0.3, accuracy: 0.04)
    // Mixup λ ~ Beta(0.8, 0.8): mean 0.5.
    XCTAssertEqual(lambdas.reduce(0, +) / Double(lambdas.count), 0.5, accuracy: 0.03)

    var off = Mixup(numClasses: 3)
    off.enabled = false
    let images = Tensor.ones([2, 3, 2, 2])
    let (mixed, targets) = off(images, labels: [2, 0], generator: &generator)
    XCTAssertEqual(mixed.scalars, images.scalars)
    XCTAssertEqual(targets[0, 2], Float(0.9 + 0.1 / 3), accuracy: 1e-7)
    XCTAssertEqual(targets[0, 0], Float(0.1 / 3), accuracy: 1e-7)
  }
}
