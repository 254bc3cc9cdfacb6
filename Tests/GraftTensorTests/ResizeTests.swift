import XCTest

@testable import GraftTensor

final class ResizeTests: XCTestCase {
  func testHandWorkedBilinear() {
    // Width 2 → 4: sample positions (i + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25
    // (past the last sample, which then repeats).
    let x = Tensor([0, 1], shape: [1, 1, 1, 2])
    XCTAssertEqual(x.resized(to: (1, 4), mode: .bilinear).scalars, [0, 0.25, 0.75, 1])
    // Width 4 → 2: positions 0.5 and 2.5, midpoints of neighbours.
    let ramp = Tensor([0, 1, 2, 3], shape: [1, 1, 1, 4])
    XCTAssertEqual(ramp.resized(to: (1, 2), mode: .bilinear).scalars, [0.5, 2.5])
    // Both axes: a 2×2 upsampled to 3×3 has its centre at the mean.
    let square = Tensor([0, 4, 8, 12], shape: [1, 1, 2, 2])
    XCTAssertEqual(square.resized(to: (3, 3), mode: .bilinear)[0, 0, 1, 1], 6, accuracy: 1e-6)
  }

  func testHandWorkedBicubic() {
    // Width 4 → 2 samples at 0.5 and 2.5: weights at t = 0.5 are −0.09375, 0.59375, 0.59375,
    // −0.09375 over taps −1…2 (−1 clamps to 0) and 1…4 (4 clamps to 3):
    // 0.59375·1 − 0.09375·2 = 0.40625 and −0.09375·1 + 0.59375·5 − 0.09375·3 = 2.59375.
    let ramp = Tensor([0, 1, 2, 3], shape: [1, 1, 1, 4])
    let y = ramp.resized(to: (1, 2), mode: .bicubic).scalars
    XCTAssertEqual(y[0], 0.40625, accuracy: 1e-6)
    XCTAssertEqual(y[1], 2.59375, accuracy: 1e-6)
  }

  func testSameSizeIsIdentityAndConstantsStayConstant() {
    var rng = RandomGenerator(seed: 8)
    let x = Tensor.randn([2, 3, 5, 4], generator: &rng)
    for mode in [ResizeMode.bilinear, .bicubic] {
      let same = x.resized(to: (5, 4), mode: mode)
      XCTAssertEqual(same.scalars, x.scalars, "\(mode)")
      // Weights sum to one, so a constant map stays constant at any size.
      let constant = Tensor.full([1, 2, 3, 5], 2.5)
      for size in [(7, 4), (2, 9), (1, 1)] {
        let y = constant.resized(to: size, mode: mode)
        XCTAssertEqual(y.shape, [1, 2, size.0, size.1])
        XCTAssertLessThan(y.scalars.map { abs($0 - 2.5) }.max()!, 1e-5, "\(mode) \(size)")
      }
    }
  }

  func testMatchesPyTorch() {
    for c in SpatialFixture.cases("resize") {
      let p = c.params
      let mode: ResizeMode = p.mode == "bilinear" ? .bilinear : .bicubic
      SpatialFixture.check(c, inputs: ["x"]) { xs in
        if let size = p.size {
          return xs[0].resized(to: (size[0], size[1]), mode: mode)
        }
        let factor = p.scaleFactor!
        return xs[0].resized(scaleFactor: (factor[0], factor[1]), mode: mode)
      }
    }
  }

  func testGradientCheck() {
    var rng = RandomGenerator(seed: 9)
    let x = Tensor.randn([1, 2, 5, 4], generator: &rng)
    for mode in [ResizeMode.bilinear, .bicubic] {
      for size in [(9, 7), (3, 2), (7, 3)] {
        let check = GradientCheck.run([x]) { $0[0].resized(to: size, mode: mode) }
        XCTAssertTrue(check.passed, "\(mode) to \(size): \(check.summary)")
      }
      let check = GradientCheck.run([x]) { $0[0].resized(scaleFactor: (1.7, 0.6), mode: mode) }
      XCTAssertTrue(check.passed, "\(mode) by (1.7, 0.6): \(check.summary)")
    }
  }

  func testLargeMapsSplitAcrossThreads() {
    // Resizing is linear: the backward must satisfy ⟨∂L/∂x, v⟩ = L(v) for L(x) = Σ gy·resize(x).
    // Sizes are large enough for both the row-split forward and the plane-split backward.
    var rng = RandomGenerator(seed: 10)
    let x = Tensor.randn([2, 96, 7, 7], generator: &rng).requiringGrad()
    let v = Tensor.randn(x.shape, generator: &rng)
    for mode in [ResizeMode.bilinear, .bicubic] {
      x.grad = nil
      let y = x.resized(to: (12, 10), mode: mode)
      let gy = Tensor.randn(y.shape, generator: &rng)
      y.backward(gy)
      let lhs = dot(x.grad!, v)
      let rhs = dot(withNoGrad { v.resized(to: (12, 10), mode: mode) }, gy)
      XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * Swift.max(1, abs(rhs)), "\(mode)")
    }
  }
}
