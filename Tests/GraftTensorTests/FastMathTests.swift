import CKernels
import Foundation
import XCTest

@testable import GraftTensor

final class FastMathTests: XCTestCase {
  /// Sweeps x over a grid and returns the largest relative error against a libm reference.
  func worstRelativeError(
    _ range: ClosedRange<Double>, steps: Int = 200_001, _ fast: (Float) -> Float,
    _ reference: (Double) -> Double, floor: Double = 1e-30
  ) -> Double {
    var worst = 0.0
    for i in 0..<steps {
      let x =
        range.lowerBound + (range.upperBound - range.lowerBound) * Double(i) / Double(steps - 1)
      let xf = Float(x)
      let ref = reference(Double(xf))
      let err = abs(Double(fast(xf)) - ref) / max(abs(ref), floor)
      worst = max(worst, err)
    }
    return worst
  }

  /// GELU x·Φ(x) in double precision.
  static func geluReference(_ x: Double) -> Double { 0.5 * x * erfc(-x / 2.0.squareRoot()) }

  /// d/dx x·Φ(x) = Φ(x) + x·φ(x) in double precision.
  static func geluDerivativeReference(_ x: Double) -> Double {
    0.5 * erfc(-x / 2.0.squareRoot()) + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
  }

  func testFastExpMatchesLibm() {
    // Degree-6 minimax polynomial: about one float ulp (6e-8 relative) over the normal range.
    XCTAssertLessThan(worstRelativeError(-87...88, fastExp, Foundation.exp), 1.5e-7)
    XCTAssertLessThan(worstRelativeError(-1...1, fastExp, Foundation.exp), 1.5e-7)
    XCTAssertEqual(fastExp(0), 1)
    XCTAssertEqual(fastExp(1), Float(M_E))
    XCTAssertEqual(fastExp(-100), 0)
    XCTAssertEqual(fastExp(-.infinity), 0)
    XCTAssertEqual(fastExp(100), .infinity)
    XCTAssertEqual(fastExp(.infinity), .infinity)
    XCTAssertTrue(fastExp(.nan).isNaN)
    // Just below the normal range the result is subnormal, not garbage, and then 0.
    XCTAssertEqual(Double(fastExp(-87.5)), exp(-87.5), accuracy: 1e-44)
    XCTAssertEqual(fastExp(-87.9), 0)
  }

  func testFastExpNonPositiveIsFastExpBelowZero() {
    var rng = RandomGenerator(seed: 7)
    for _ in 0..<20_000 {
      let x = -100 * rng.nextFloat()
      XCTAssertEqual(fastExpNonPositive(x).bitPattern, fastExp(x).bitPattern, "x = \(x)")
    }
    XCTAssertEqual(fastExpNonPositive(-.infinity), 0)
    XCTAssertEqual(fastExpNonPositive(0), 1)
    XCTAssertTrue(fastExpNonPositive(.nan).isNaN)
  }

  func testFastErfMatchesLibm() {
    // The rational approximation's own error is 2e-8 relative; float rounding in its two
    // degree-5 polynomials adds up to about 5 ulps (3.5e-7 next to 1).
    var worst = 0.0
    for i in 0...200_000 {
      let x = Float(-6 + 12 * Double(i) / 200_000)
      let y = fastErf(x)
      worst = max(worst, abs(Double(y) - erf(Double(x))))
      XCTAssertLessThanOrEqual(abs(y), 1, "x = \(x)")
    }
    XCTAssertLessThan(worst, 4e-7)
    // The error is relative everywhere, so tiny arguments keep their precision.
    XCTAssertLessThan(worstRelativeError(-4...4, fastErf, erf, floor: 1e-12), 4e-7)
    XCTAssertLessThan(worstRelativeError(-1e-3...1e-3, fastErf, erf, floor: 1e-12), 3e-7)
    XCTAssertEqual(Double(fastErf(1e-30)), 2 / Double.pi.squareRoot() * 1e-30, accuracy: 1e-37)
    XCTAssertEqual(fastErf(0), 0)
    XCTAssertEqual(fastErf(3.92), 1)
    XCTAssertEqual(fastErf(10), 1)
    XCTAssertEqual(fastErf(-.infinity), -1)
    XCTAssertTrue(fastErf(.nan).isNaN)
  }

  func testFastGeluMatchesReference() {
    // Error relative to max(|x|, 1): the x/2 factor scales erf's absolute error.
    var worst = 0.0
    for i in 0...200_000 {
      let x = Float(-12 + 24 * Double(i) / 200_000)
      let reference = Self.geluReference(Double(x))
      worst = max(worst, abs(Double(fastGelu(x)) - reference) / max(abs(Double(x)), 1))
    }
    XCTAssertLessThan(worst, 2.5e-7)
    // Saturation is exact: Φ rounds to 0 and 1 at the clamp.
    XCTAssertEqual(fastGelu(-5.6), 0)
    XCTAssertEqual(fastGelu(-100), 0)
    XCTAssertEqual(fastGelu(-1e30), 0)
    XCTAssertEqual(fastGelu(6), 6)
    XCTAssertEqual(fastGelu(1e30), 1e30)
    XCTAssertEqual(fastGelu(0), 0)
    XCTAssertEqual(Double(fastGelu(1e-20)), 5e-21, accuracy: 1e-27)
    XCTAssertTrue(fastGelu(.nan).isNaN)
  }

  func testFastGeluDerivativeMatchesReference() {
    var worst = 0.0
    for i in 0...200_000 {
      let x = Float(-12 + 24 * Double(i) / 200_000)
      let reference = Self.geluDerivativeReference(Double(x))
      worst = max(worst, abs(Double(fastGeluDerivative(x)) - reference))
    }
    XCTAssertLessThan(worst, 3e-7)
    // Exactly 0 and 1 past the clamp, and 1/2 at 0.
    XCTAssertEqual(fastGeluDerivative(-100), 0)
    XCTAssertEqual(fastGeluDerivative(-6.25), 0)
    XCTAssertEqual(fastGeluDerivative(100), 1)
    XCTAssertEqual(fastGeluDerivative(0), 0.5)
    XCTAssertTrue(fastGeluDerivative(.nan).isNaN)
    // The derivative is the slope of fastGelu itself (central differences in double).
    for x: Float in [-3, -1.5, -0.7, 0.3, 1, 2.5] {
      let h: Float = 1e-2
      let slope = (Double(fastGelu(x + h)) - Double(fastGelu(x - h))) / Double(2 * h)
      XCTAssertEqual(Double(fastGeluDerivative(x)), slope, accuracy: 1e-4, "x = \(x)")
    }
  }

  /// Inputs for the C-vs-Swift comparisons: a spread of values, every clamp edge, specials.
  static func kernelInputs(count: Int, seed: UInt64) -> [Float] {
    var rng = RandomGenerator(seed: seed)
    let specials: [Float] = [
      0, -0.0, 1e-30, -1e-30, .leastNonzeroMagnitude, 3.92, -3.92, 5.543_717_4, -5.543_717_4,
      6.25, -6.25, 88.7, 89, -87.5, -88, -90, .greatestFiniteMagnitude,
      -.greatestFiniteMagnitude, .infinity, -.infinity, .nan,
    ]
    var values = specials
    while values.count < count {
      let scale: Float = [0.1, 1, 4, 12, 100][values.count % 5]
      values.append(scale * (2 * rng.nextFloat() - 1))
    }
    return values
  }

  /// Bit-for-bit equality where both are numbers, NaN where either is NaN.
  func assertSameBits(
    _ c: [Float], _ swift: [Float], _ what: String, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    XCTAssertEqual(c.count, swift.count, file: file, line: line)
    for (i, (a, b)) in zip(c, swift).enumerated() where !(a.isNaN && b.isNaN) {
      if a.bitPattern != b.bitPattern {
        XCTFail("\(what)[\(i)]: C \(a) vs Swift \(b)", file: file, line: line)
        return
      }
    }
  }

  func testCKernelsMatchSwiftBitForBit() {
    // 1000 + 13: the C loops' vector body and their padded tail both run.
    let x = Self.kernelInputs(count: 1013, seed: 3)
    let g = Self.kernelInputs(count: 1013, seed: 4).map { $0.isFinite ? $0 : 1 }
    var y = [Float](repeating: .nan, count: x.count)
    graft_gelu_forward(x, &y, x.count)
    assertSameBits(y, x.map(fastGelu), "gelu")
    graft_gelu_backward(g, x, &y, x.count)
    assertSameBits(y, zip(g, x).map { $0 * fastGeluDerivative($1) }, "gelu backward")
    graft_exp(x, &y, x.count)
    assertSameBits(y, x.map(fastExp), "exp")
    // Short lengths touch only the tail; n = 0 writes nothing.
    for n in [0, 1, 15, 16, 17] {
      var out = [Float](repeating: 42, count: 20)
      graft_gelu_forward(x, &out, n)
      assertSameBits(Array(out[..<n]), x[..<n].map(fastGelu), "gelu n=\(n)")
      XCTAssertEqual(out[n], 42)
    }
    // Which variant ran (4: AVX-512, 3: AVX2 + FMA, 0: portable); all must agree.
    XCTAssertTrue([0, 3, 4].contains(graft_kernels_level()))
  }

  /// Softmax of one row in double precision.
  static func softmaxReference(_ row: [Float], log: Bool) -> [Double] {
    let m = Double(row.max()!)
    let e = row.map { exp(Double($0) - m) }
    let total = e.reduce(0, +)
    return log ? row.map { Double($0) - m - Foundation.log(total) } : e.map { $0 / total }
  }

  func testSoftmaxRowKernelMatchesDouble() {
    var rng = RandomGenerator(seed: 11)
    for n in [1, 5, 16, 17, 31, 32, 33, 197, 384, 4100] {
      // 4100: longer than the kernel's stack buffer, so the exponentials go through y.
      let rows = n > 1000 ? 2 : 3
      let x = (0..<(rows * n)).map { _ in 8 * rng.nextNormal() }
      for log in [false, true] {
        var y = [Float](repeating: .nan, count: x.count)
        graft_softmax_rows(x, &y, rows, n, log ? 1 : 0)
        for r in 0..<rows {
          let reference = Self.softmaxReference(Array(x[(r * n)..<((r + 1) * n)]), log: log)
          for k in 0..<n {
            let got = Double(y[r * n + k])
            let tolerance = log ? 1e-6 * max(1, abs(reference[k])) : 1e-6 * reference[k] + 1e-12
            XCTAssertEqual(
              got, reference[k], accuracy: tolerance, "n=\(n) row \(r) k=\(k) log=\(log)")
          }
        }
      }
    }
  }

  func testContiguousAndStridedSoftmaxAgree() {
    // The last axis runs the C row kernel; axis 0 of the transpose runs the strided Swift loop.
    var rng = RandomGenerator(seed: 5)
    let x = Tensor.randn([37, 45], generator: &rng) * 6
    let xt = x.transposed()
    for log in [false, true] {
      let rows = log ? x.logSoftmax(axis: -1) : x.softmax(axis: -1)
      let columns = (log ? xt.logSoftmax(axis: 0) : xt.softmax(axis: 0)).transposed()
      for (a, b) in zip(rows.scalars, columns.scalars) {
        XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(a)))
      }
    }
  }

  /// Attention runs the row kernel in place, and in place must give the bits it gives into a
  /// separate buffer. Rows of 16 or more end on a vector that overlaps the one before it; a row
  /// longer than the kernel's stack buffer keeps its exponentials in y, which is x here, so its
  /// overlap holds exponentials, not logits, by the time the last vector is read.
  func testSoftmaxRowKernelInPlaceMatchesOutOfPlace() {
    var rng = RandomGenerator(seed: 23)
    for n in [1, 5, 16, 17, 31, 50, 197, 4100, 4111] {
      let x = (0..<(2 * n)).map { _ in 6 * rng.nextNormal() }
      for log in [false, true] {
        var separate = [Float](repeating: .nan, count: x.count)
        graft_softmax_rows(x, &separate, 2, n, log ? 1 : 0)
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer {
          graft_softmax_rows($0.baseAddress!, $0.baseAddress!, 2, n, log ? 1 : 0)
        }
        let differing = zip(inPlace, separate).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "n=\(n) log=\(log): elements with other bits")
      }
    }
  }

  func testSoftmaxRowKernelSpecialValues() {
    let n = 20
    var x = [Float](repeating: 0, count: 3 * n)
    for k in 0..<n { x[k] = Float(k) }
    x[3] = -.infinity  // masked entry: exactly 0
    x[n + 7] = .nan  // a NaN spoils its row only (PyTorch gives a NaN row)
    for k in 0..<n { x[2 * n + k] = -.infinity }  // fully masked: NaN (0/0) as PyTorch
    var y = [Float](repeating: 42, count: x.count)
    graft_softmax_rows(x, &y, 3, n, 0)
    XCTAssertEqual(y[3], 0)
    XCTAssertEqual(Double(y[0..<n].reduce(0, +)), 1, accuracy: 1e-6)
    XCTAssertTrue(y[n..<(2 * n)].allSatisfy(\.isNaN))
    XCTAssertTrue(y[(2 * n)...].allSatisfy(\.isNaN))
    // Large logits do not overflow: only differences matter.
    let big: [Float] = [1000, 1000, 999]
    var out = [Float](repeating: 0, count: 3)
    graft_softmax_rows(big, &out, 1, 3, 0)
    let e = exp(-1.0)
    XCTAssertEqual(Double(out[0]), 1 / (2 + e), accuracy: 1e-6)
    XCTAssertEqual(Double(out[2]), e / (2 + e), accuracy: 1e-6)
  }

  func testFastTanhAndSigmoid() {
    var worst = 0.0
    for i in 0...100_000 {
      let x = Float(-10 + 20 * Double(i) / 100_000)
      worst = max(worst, abs(Double(fastTanh(x)) - tanh(Double(x))))
      worst = max(worst, abs(Double(sigmoidScalar(x)) - 1 / (1 + exp(-Double(x)))))
    }
    XCTAssertLessThan(worst, 3e-7)
    XCTAssertEqual(sigmoidScalar(-200), 0)
    XCTAssertEqual(sigmoidScalar(200), 1)
  }

  func testSimdReductionsHandleTails() {
    let values = (0..<37).map { Float($0) - 10 }
    values.withUnsafeBufferPointer { p in
      XCTAssertEqual(simdSum(p.baseAddress!, 37), values.reduce(0, +))
      XCTAssertEqual(simdMax(p.baseAddress!, 37), 26)
      XCTAssertEqual(
        simdDot(p.baseAddress!, p.baseAddress!, 37), values.map { $0 * $0 }.reduce(0, +))
      XCTAssertEqual(simdMax(p.baseAddress!, 0), -.infinity)
    }
  }
}
