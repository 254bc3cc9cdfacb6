import XCTest

@testable import GraftTensor

final class ChamferTests: XCTestCase {
  /// Brute-force Chamfer-L2: mean nearest squared distance both ways, per sample, averaged.
  func bruteForce(_ a: [[Float]], _ b: [[Float]]) -> Float {
    func nearest(_ p: [Float], _ set: [[Float]]) -> Float {
      set.map { q in zip(p, q).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }.min()!
    }
    let ab = a.map { nearest($0, b) }.reduce(0, +) / Float(a.count)
    let ba = b.map { nearest($0, a) }.reduce(0, +) / Float(b.count)
    return ab + ba
  }

  func rows(_ t: Tensor, sample: Int) -> [[Float]] {
    let (n, c) = (t.shape[1], t.shape[2])
    let s = t.scalars
    return (0..<n).map { i in Array(s[(sample * n + i) * c..<(sample * n + i + 1) * c]) }
  }

  func testMatchesBruteForceOverABatch() {
    var g = RandomGenerator(seed: 5)
    let a = Tensor.randn([3, 17, 3], generator: &g)
    let b = Tensor.randn([3, 11, 3], generator: &g)
    let got = PointOps.chamferDistanceL2(a, b).item
    // The batch mean of per-sample values (every sample has the same N and M).
    let expected =
      (0..<3).map { bruteForce(rows(a, sample: $0), rows(b, sample: $0)) }
      .reduce(0, +) / 3
    XCTAssertEqual(got, expected, accuracy: 1e-5 * max(1, expected))
    XCTAssertEqual(PointOps.chamferDistanceL2(b, a).item, got, accuracy: 1e-5)
    XCTAssertEqual(PointOps.chamferDistanceL2(a, a).item, 0)
  }

  func testGradientsMatchFiniteDifferences() {
    var g = RandomGenerator(seed: 8)
    let a = Tensor.randn([2, 9, 3], generator: &g).requiringGrad()
    let b = Tensor.randn([2, 7, 3], generator: &g).requiringGrad()
    let check = GradientCheck.run([a, b], epsilon: 1e-3, atol: 2e-3, rtol: 2e-2) { _ in
      PointOps.chamferDistanceL2(a, b)
    }
    XCTAssertTrue(check.passed, check.summary)
  }
}
