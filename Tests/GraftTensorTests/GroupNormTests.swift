import XCTest

@testable import GraftTensor

/// `Tensor.groupNorm` against a hand computation, against layer norm (one group), and by finite
/// differences.
final class GroupNormTests: XCTestCase {
  func testNormalisesEachSamplesGroupByHand() {
    // [N = 2, C = 6, 3, 2] in 3 groups of 2 channels: 12 values per (sample, group).
    let x = randomTensor([2, 6, 3, 2], seed: 1, low: -2, high: 3)
    let w = randomTensor([6], seed: 2)
    let b = randomTensor([6], seed: 3)
    let y = x.groupNorm(groups: 3, weight: w, bias: b, eps: 1e-5)
    XCTAssertEqual(y.shape, x.shape)
    let (xs, ws, bs) = (x.scalars, w.scalars, b.scalars)
    var expected = [Float](repeating: 0, count: x.count)
    for n in 0..<2 {
      for g in 0..<3 {
        let indices = (0..<12).map { (n * 6 + 2 * g) * 6 + $0 }
        let mean = indices.map { Double(xs[$0]) }.reduce(0, +) / 12
        let variance =
          indices.map { (Double(xs[$0]) - mean) * (Double(xs[$0]) - mean) }
          .reduce(0, +) / 12
        for i in indices {
          let c = (i / 6) % 6
          expected[i] = Float(
            (Double(xs[i]) - mean) / (variance + 1e-5).squareRoot() * Double(ws[c]) + Double(bs[c]))
        }
      }
    }
    assertClose(y.scalars, expected, tolerance: 1e-5)
  }

  func testOneGroupIsLayerNormOverChannelsAndPositions() {
    let x = randomTensor([3, 4, 5], seed: 4)
    let grouped = x.groupNorm(groups: 1)
    let layer = x.reshaped([3, 20]).layerNorm().reshaped([3, 4, 5])
    assertClose(grouped.scalars, layer.scalars, tolerance: 1e-5)
  }

  func testGradientsMatchFiniteDifferences() {
    for (shape, groups) in [([2, 6, 3, 2], 3), ([3, 4, 5], 4), ([2, 4], 2)] {
      let x = randomTensor(shape, seed: 5, low: -2, high: 2)
      let w = randomTensor([shape[1]], seed: 6, low: 0.5, high: 1.5)
      let b = randomTensor([shape[1]], seed: 7)
      assertGradients([x, w, b], epsilon: 1e-2, atol: 3e-3, rtol: 2e-2) { t in
        t[0].groupNorm(groups: groups, weight: t[1], bias: t[2])
      }
      assertGradients([x]) { t in t[0].groupNorm(groups: groups) }
    }
  }
}
