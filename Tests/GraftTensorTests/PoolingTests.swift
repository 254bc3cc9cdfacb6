import XCTest

@testable import GraftTensor

/// Distinct values spaced 0.05 apart in shuffled order, so max pooling has no ties and finite
/// differences (ε = 0.01) never change which element wins a window.
func distinctTensor(_ shape: [Int], seed: UInt64) -> Tensor {
  var rng = RandomGenerator(seed: seed)
  let n = shape.reduce(1, *)
  return Tensor(rng.permutation(n).map { Float($0) * 0.05 - Float(n) * 0.025 }, shape: shape)
}

/// Σ a·b in double precision.
func dot(_ a: Tensor, _ b: Tensor) -> Double {
  zip(a.scalars, b.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

final class PoolingTests: XCTestCase {
  let ramp = Tensor((1...16).map(Float.init), shape: [1, 1, 4, 4])

  func testHandWorkedMaxPool() {
    XCTAssertEqual(ramp.maxPool2d(kernel: (2, 2)).scalars, [6, 8, 14, 16])
    // On negative values a zero padding would win; PyTorch pads with −∞. Windows (rows × cols):
    // {0,1}×{0,1}, {0,1}×{1,2,3}, {1,2,3}×{0,1}, {1,2,3}×{1,2,3}.
    let negative = ramp * -1
    let y = negative.maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    XCTAssertEqual(y.scalars, [-1, -2, -5, -6])
    // Dilation 2, kernel 2: taps {0, 2} × {0, 2} and shifted by one.
    XCTAssertEqual(
      ramp.maxPool2d(kernel: (2, 2), stride: (1, 1), dilation: (2, 2)).scalars, [11, 12, 15, 16])
    // ceilMode keeps a last partial window: 4 wide, kernel 3, stride 2 → 2 outputs, not 1.
    XCTAssertEqual(
      ramp.maxPool2d(kernel: (3, 3), stride: (2, 2), ceilMode: true).scalars, [11, 12, 15, 16])
    XCTAssertEqual(ramp.maxPool2d(kernel: (3, 3), stride: (2, 2)).scalars, [11])
  }

  func testMaxPoolGradientGoesToTheArgmax() {
    let x = ramp.copy().requiringGrad()
    x.maxPool2d(kernel: (2, 2)).sum().backward()
    var want = [Float](repeating: 0, count: 16)
    for i in [5, 7, 13, 15] { want[i] = 1 }
    XCTAssertEqual(x.grad?.scalars, want)
    // All four overlapping 3×3 windows hold the peak at (1, 2): its gradient adds up to 4.
    let peaked = ramp.copy()
    peaked[0, 0, 1, 2] = 100
    let z = peaked.requiringGrad()
    z.maxPool2d(kernel: (3, 3), stride: (1, 1)).sum().backward()
    XCTAssertEqual(z.grad?[0, 0, 1, 2], 4)
    XCTAssertEqual(z.grad?.scalars.reduce(0, +), 4)
  }

  func testHandWorkedAvgPool() {
    XCTAssertEqual(ramp.avgPool2d(kernel: (2, 2)).scalars, [3.5, 5.5, 11.5, 13.5])
    // Corner window of a padded 3×3 pool holds {1, 2, 5, 6} and five padding zeros.
    let included = ramp.avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    XCTAssertEqual(included[0, 0, 0, 0], 14 / 9, accuracy: 1e-6)
    let excluded = ramp.avgPool2d(
      kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false)
    XCTAssertEqual(excluded[0, 0, 0, 0], 3.5, accuracy: 1e-6)
    // Last window {1,2,3} × {1,2,3} is wholly inside: both divide by 9.
    XCTAssertEqual(included[0, 0, 1, 1], 99 / 9, accuracy: 1e-5)
    XCTAssertEqual(excluded[0, 0, 1, 1], 99 / 9, accuracy: 1e-5)
    // ceilMode: the last window on each axis covers 2 of its 3 taps and nothing of it is
    // padding, so it divides by 2 even when padding counts: 1…11 / 9, {3,4,7,8,11,12} / 6, …
    let ceil = ramp.avgPool2d(kernel: (3, 3), stride: (2, 2), ceilMode: true)
    XCTAssertEqual(ceil.scalars, [6, 7.5, 12, 13.5])
  }

  func testHandWorkedAdaptivePools() {
    // Bins of 5 into 3: [0, 2), [1, 4), [3, 5).
    let x = Tensor([1, 2, 3, 4, 5], shape: [1, 1, 5])
    XCTAssertEqual(x.adaptiveAvgPool1d(outputSize: 3).scalars, [1.5, 3, 4.5])
    // Bins of 2 into 3: [0, 1), [0, 2), [1, 2).
    XCTAssertEqual(
      Tensor([2, 4], shape: [1, 2]).adaptiveAvgPool1d(outputSize: 3).scalars, [2, 3, 4])
    // Output 1 is the global mean; 2-D bins of 4 into 2 are the 2×2 blocks.
    XCTAssertEqual(ramp.adaptiveAvgPool2d(outputSize: 1).scalars, [8.5])
    XCTAssertEqual(ramp.adaptiveAvgPool2d(outputSize: (2, 2)).scalars, [3.5, 5.5, 11.5, 13.5])
    XCTAssertEqual(ramp.adaptiveAvgPool2d(outputSize: (1, 4)).scalars, [7, 8, 9, 10])
    let cube = Tensor((0..<8).map(Float.init), shape: [1, 1, 2, 2, 2])
    XCTAssertEqual(cube.adaptiveAvgPool3d(outputSize: (1, 1, 1)).scalars, [3.5])
    XCTAssertEqual(cube.adaptiveAvgPool3d(outputSize: (2, 1, 1)).scalars, [1.5, 5.5])
  }

  func testMatchesPyTorch() {
    for c in SpatialFixture.cases("maxPool2d") {
      let p = c.params
      SpatialFixture.check(c, inputs: ["x"]) { xs in
        xs[0].maxPool2d(
          kernel: (p.kernel![0], p.kernel![1]), stride: (p.stride![0], p.stride![1]),
          padding: (p.padding![0], p.padding![1]), dilation: (p.dilation![0], p.dilation![1]),
          ceilMode: p.ceilMode!)
      }
    }
    for c in SpatialFixture.cases("avgPool2d") {
      let p = c.params
      SpatialFixture.check(c, inputs: ["x"]) { xs in
        xs[0].avgPool2d(
          kernel: (p.kernel![0], p.kernel![1]), stride: (p.stride![0], p.stride![1]),
          padding: (p.padding![0], p.padding![1]), countIncludePad: p.countIncludePad!,
          ceilMode: p.ceilMode!)
      }
    }
    for c in SpatialFixture.cases("adaptiveAvgPool1d") {
      SpatialFixture.check(c, inputs: ["x"]) {
        $0[0].adaptiveAvgPool1d(outputSize: c.params.outputSize![0])
      }
    }
    for c in SpatialFixture.cases("adaptiveAvgPool2d") {
      let s = c.params.outputSize!
      SpatialFixture.check(c, inputs: ["x"]) { $0[0].adaptiveAvgPool2d(outputSize: (s[0], s[1])) }
    }
    for c in SpatialFixture.cases("adaptiveAvgPool3d") {
      let s = c.params.outputSize!
      SpatialFixture.check(c, inputs: ["x"]) {
        $0[0].adaptiveAvgPool3d(outputSize: (s[0], s[1], s[2]))
      }
    }
  }

  func testMaxPoolGradientCheck() {
    let x = distinctTensor([2, 2, 7, 6], seed: 1)
    let plain = GradientCheck.run([x]) {
      $0[0].maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    }
    XCTAssertTrue(plain.passed, plain.summary)
    let dilated = GradientCheck.run([x]) {
      $0[0].maxPool2d(
        kernel: (2, 3), stride: (1, 2), padding: (1, 1), dilation: (2, 1), ceilMode: true)
    }
    XCTAssertTrue(dilated.passed, dilated.summary)
  }

  func testAvgPoolGradientCheck() {
    var rng = RandomGenerator(seed: 2)
    // Shape chosen so that with ceilMode the last row window runs past the padded input.
    let x = Tensor.randn([2, 2, 6, 7], generator: &rng)
    for include in [true, false] {
      for ceil in [true, false] {
        let check = GradientCheck.run([x]) {
          $0[0].avgPool2d(
            kernel: (3, 2), stride: (2, 3), padding: (1, 1), countIncludePad: include,
            ceilMode: ceil)
        }
        XCTAssertTrue(check.passed, "include pad \(include), ceil \(ceil): \(check.summary)")
      }
    }
  }

  func testAdaptivePoolGradientCheck() {
    var rng = RandomGenerator(seed: 4)
    let x1 = Tensor.randn([2, 3, 7], generator: &rng)
    for size in [3, 10] {
      let check = GradientCheck.run([x1]) { $0[0].adaptiveAvgPool1d(outputSize: size) }
      XCTAssertTrue(check.passed, "1-D to \(size): \(check.summary)")
    }
    let x2 = Tensor.randn([1, 2, 7, 5], generator: &rng)
    for size in [(3, 2), (4, 7)] {
      let check = GradientCheck.run([x2]) { $0[0].adaptiveAvgPool2d(outputSize: size) }
      XCTAssertTrue(check.passed, "2-D to \(size): \(check.summary)")
    }
    let x3 = Tensor.randn([1, 2, 3, 4, 5], generator: &rng)
    let check = GradientCheck.run([x3]) { $0[0].adaptiveAvgPool3d(outputSize: (2, 3, 2)) }
    XCTAssertTrue(check.passed, "3-D: \(check.summary)")
  }

  func testLargeInputsSplitAcrossThreads() {
    // Enough planes that the loops split into chunks; average pools are linear, so the
    // backward must satisfy ⟨∂L/∂x, v⟩ = L(v) for L(x) = Σ gy·pool(x).
    var rng = RandomGenerator(seed: 6)
    let x = Tensor.randn([4, 128, 12, 10], generator: &rng)
    let v = Tensor.randn(x.shape, generator: &rng)
    let pools: [(String, (Tensor) -> Tensor)] = [
      ("avg", { $0.avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }),
      ("adaptive", { $0.adaptiveAvgPool2d(outputSize: (5, 3)) }),
    ]
    for (name, pool) in pools {
      let xg = x.copy().requiringGrad()
      let y = pool(xg)
      let gy = Tensor.randn(y.shape, generator: &rng)
      y.backward(gy)
      let lhs = dot(xg.grad!, v)
      let rhs = dot(pool(v), gy)
      XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * Swift.max(1, abs(rhs)), name)
    }
    // Max pooling against a direct loop.
    let y = x.maxPool2d(kernel: (3, 2), stride: (2, 2), padding: (1, 1))
    var worst: Float = 0
    for n in 0..<4 {
      for c in 0..<128 {
        for oy in 0..<y.shape[2] {
          for ox in 0..<y.shape[3] {
            var best = -Float.infinity
            for iy in (2 * oy - 1)...(2 * oy + 1) where iy >= 0 && iy < 12 {
              for ix in (2 * ox - 1)...(2 * ox) where ix >= 0 && ix < 10 {
                best = Swift.max(best, x[n, c, iy, ix])
              }
            }
            worst = Swift.max(worst, abs(best - y[n, c, oy, ox]))
          }
        }
      }
    }
    XCTAssertEqual(worst, 0)
  }
}
