import XCTest

@testable import GraftTensor

final class ReductionTests: XCTestCase {
  let x = Tensor([1, 5, 2, 8, 3, 3], shape: [2, 3])

  func testSumMeanForward() {
    XCTAssertEqual(x.sum().item, 22)
    XCTAssertEqual(x.sum(axis: 0).scalars, [9, 8, 5])
    XCTAssertEqual(x.sum(axis: 1, keepDims: true).shape, [2, 1])
    XCTAssertEqual(x.sum(axis: -1).scalars, [8, 14])
    assertClose(x.mean(axis: 1).scalars, [8.0 / 3, 14.0 / 3])
    XCTAssertEqual(x.sum(axes: [0, 1]).shape, [])
    let big = Tensor((0..<(4 * 5 * 6)).map(Float.init), shape: [4, 5, 6])
    let s = big.sum(axes: [0, 2], keepDims: true)
    XCTAssertEqual(s.shape, [1, 5, 1])
    for j in 0..<5 {
      var expected: Float = 0
      for i in 0..<4 { for k in 0..<6 { expected += big[i, j, k] } }
      XCTAssertEqual(s[0, j, 0], expected)
    }
  }

  func testVarianceMaxArgmax() {
    let v = Tensor([1, 2, 4, 7])
    XCTAssertEqual(v.variance(axes: [0]).item, 7, accuracy: 1e-5)  // numpy var(ddof=1)
    XCTAssertEqual(v.variance(axes: [0], correction: 0).item, 5.25, accuracy: 1e-5)
    XCTAssertEqual(x.max(axis: 1).scalars, [5, 8])
    XCTAssertEqual(x.max(axis: 0).scalars, [8, 5, 3])
    XCTAssertEqual(x.argmax(axis: 1), [1, 0])
    XCTAssertEqual(x.argmax(axis: 0), [1, 0, 1])
  }

  func testReductionGradients() {
    let t = randomTensor([3, 4, 5], seed: 1)
    assertGradients([t]) { $0[0].sum(axes: [0, 2]) }
    assertGradients([t]) { $0[0].mean(axis: 1, keepDims: true) }
    assertGradients([t]) { $0[0].variance(axes: [2]) }
    assertGradients([t]) { $0[0].sum() }
    // Distinct, well-separated values so a finite-difference step never changes the argmax.
    var rng = RandomGenerator(seed: 3)
    let spaced = Tensor(rng.permutation(60).map { Float($0) * 0.1 }, shape: [3, 4, 5])
    assertGradients([spaced]) { $0[0].max(axis: 1) }
  }

  func testLargeReductionsMatchDoubleReference() {
    let t = randomTensor([300, 257], seed: 2)
    let sums = t.sum(axis: 0).scalars
    for j in [0, 100, 256] {
      var acc = 0.0
      for i in 0..<300 { acc += Double(t[i, j]) }
      XCTAssertEqual(Double(sums[j]), acc, accuracy: 1e-3)
    }
    var total = 0.0
    for v in t.scalars { total += Double(v) }
    XCTAssertEqual(Double(t.sum().item), total, accuracy: 1e-3)
  }

  func testL2NormalizedMatchesComposedOpsWithGradients() {
    // Along a middle axis (Moment Probing's columns), the last axis, and with one line of zeros
    // (norm below eps: the divisor is eps and the gradient g / eps).
    var rng = RandomGenerator(seed: 8)
    for (shape, axis) in [([2, 3, 5, 4], 2), ([3, 7], 1), ([2, 6, 3], 0)] {
      let x = Tensor.randn(shape, generator: &rng)
      if axis == 2 { for k in 0..<shape[2] { x[0, 1, k, 3] = 0 } }
      let g = Tensor.randn(shape, generator: &rng)
      let (fused, composed) = (x.detached().requiringGrad(), x.detached().requiringGrad())
      let y = fused.l2Normalized(axis: axis)
      let norm = (composed * composed).sum(axis: axis, keepDims: true).sqrt()
      let want = composed / norm.clamp(min: 1e-12)
      y.backward(g)
      want.backward(g)
      for (got, expected, what) in [(y, want, "output"), (fused.grad!, composed.grad!, "gradient")]
      {
        let err = zip(got.scalars, expected.scalars).map { abs($0 - $1) / (1 + abs($1)) }.max()!
        XCTAssertLessThan(err, 1e-5, "\(shape) axis \(axis): \(what)")
      }
    }
    let check = GradientCheck.run([Tensor.randn([2, 4, 3], generator: &rng)]) {
      $0[0].l2Normalized(axis: 1)
    }
    XCTAssertTrue(check.passed, check.summary)
  }
}
