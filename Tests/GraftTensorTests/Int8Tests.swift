import CDNNLShim
import Foundation
import XCTest

@testable import GraftTensor

/// INT8 inference products against the same quantization done by hand: s8 weights with one
/// scale per output channel, each input row quantized with its own scale, exact integer sums.
final class Int8Tests: XCTestCase {
  /// Symmetric s8 quantization of each row: (values, scale) with scale = max|row|/127.
  private func quantizedRows(_ t: Tensor) -> (q: [[Int32]], scales: [Float]) {
    let (rows, cols) = (t.shape[0], t.shape[1])
    let x = t.scalars
    var q: [[Int32]] = []
    var scales: [Float] = []
    for r in 0..<rows {
      let row = Array(x[(r * cols)..<((r + 1) * cols)])
      let top = row.map(abs).max()!
      let scale: Float = top > 0 ? top / 127 : 1
      let inverse = 1 / scale
      q.append(row.map { Int32(max(-127, min(127, ($0 * inverse).rounded(.toNearestOrEven)))) })
      scales.append(scale)
    }
    return (q, scales)
  }

  private func reference(_ x: Tensor, _ w: Tensor, bias: Tensor?) -> [Float] {
    let (qx, sx) = quantizedRows(x)
    let (qw, sw) = quantizedRows(w)
    var out: [Float] = []
    for r in qx.indices {
      for c in qw.indices {
        let sum = zip(qx[r], qw[c]).reduce(Int32(0)) { $0 + $1.0 * $1.1 }
        out.append(Float(sum) * sw[c] * sx[r] + (bias?.scalars[c] ?? 0))
      }
    }
    return out
  }

  func testLinearOnInt8WeightsEqualsTheQuantizedProductByHand() throws {
    guard Int8Support.isAvailable else {
      XCTAssertFalse(randomTensor([4, 3], seed: 1).storeInInt8())
      XCTAssertNotNil(Int8Support.unavailableReason)
      return
    }
    for rows in [1, 5, 1100] {
      let x = randomTensor([rows, 40], seed: 2, low: -3, high: 3)
      let w = randomTensor([24, 40], seed: 3)
      let b = randomTensor([24], seed: 4)
      XCTAssertTrue(w.storeInInt8())
      XCTAssertTrue(w.productsRunInInt8)
      let got = x.linear(weight: w, bias: b).scalars
      let expected = reference(x, w, bias: b)
      for (i, (a, e)) in zip(got, expected).enumerated() where abs(a - e) > 1e-5 * max(1, abs(e)) {
        return XCTFail("rows \(rows), element \(i): \(a) vs \(e)")
      }
      // Within quantization error of FP32 (per-token and per-channel 8-bit: about 1 %).
      let fp32 = x.linear(weight: Tensor(w.scalars, shape: w.shape), bias: b).scalars
      let diff = zip(got, fp32).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
      let norm = fp32.map { $0 * $0 }.reduce(0, +)
      XCTAssertLessThan((diff / norm).squareRoot(), 2e-2)
    }
  }

  func testAllZeroRowsAndTheGradientUseFP32Semantics() throws {
    try XCTSkipUnless(Int8Support.isAvailable, Int8Support.unavailableReason ?? "")
    let x = Tensor(shape: [3, 16])
    let w = randomTensor([8, 16], seed: 5)
    XCTAssertTrue(w.storeInInt8())
    XCTAssertEqual(x.linear(weight: w).scalars, [Float](repeating: 0, count: 24))
    // The input gradient goes through the FP32 weight: INT8 is for the forward pass only.
    let input = randomTensor([4, 16], seed: 6)
    input.requiresGrad = true
    input.linear(weight: w).sum().backward()
    let expected = Tensor.ones([4, 8]).matmul(Tensor(w.scalars, shape: w.shape))
    assertClose(input.grad!.scalars, expected.scalars, tolerance: 1e-5)
  }

  func testOnlyFrozenMatricesGetAnInt8Copy() {
    let trained = randomTensor([4, 3], seed: 7)
    trained.requiresGrad = true
    XCTAssertFalse(trained.storeInInt8())
    XCTAssertFalse(trained.productsRunInInt8)
  }
}
