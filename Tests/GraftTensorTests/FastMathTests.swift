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

  func testFastExpMatchesLibm() {
    XCTAssertLessThan(worstRelativeError(-87...88, fastExp, Foundation.exp), 4e-7)
    XCTAssertEqual(fastExp(-100), 0)
    XCTAssertEqual(fastExp(100), .infinity)
    XCTAssertEqual(fastExp(0), 1)
    XCTAssertTrue(fastExp(.nan).isNaN)
  }

  func testFastErfMatchesLibm() {
    // A&S 7.1.26 bounds the absolute error by 1.5e-7; float32 rounding near 1 (ulp 1.2e-7)
    // adds up to about two ulps.
    var worst = 0.0
    for i in 0...100_000 {
      let x = Float(-6 + 12 * Double(i) / 100_000)
      worst = max(worst, abs(Double(fastErf(x)) - erf(Double(x))))
    }
    XCTAssertLessThan(worst, 4e-7)
    // Near zero the error is relative, not only absolute.
    XCTAssertLessThan(worstRelativeError(-0.5...0.5, fastErf, erf, floor: 1e-12), 1e-6)
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
