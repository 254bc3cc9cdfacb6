import XCTest

@testable import GraftTensor

final class ElementwiseTests: XCTestCase {
  func testBroadcastArithmeticForward() {
    let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    let col = Tensor([10, 20], shape: [2, 1])
    let row = Tensor([1, 2, 3], shape: [3])
    XCTAssertEqual((a + row).scalars, [2, 4, 6, 5, 7, 9])
    XCTAssertEqual((a - col).scalars, [-9, -8, -7, -16, -15, -14])
    XCTAssertEqual((col * row).scalars, [10, 20, 30, 20, 40, 60])
    XCTAssertEqual((a / Tensor(scalar: 2)).scalars, [0.5, 1, 1.5, 2, 2.5, 3])
    XCTAssertEqual((2 - a).scalars, [1, 0, -1, -2, -3, -4])
    let b3 = Tensor([1, 2], shape: [2, 1, 1])
    XCTAssertEqual((a * b3).shape, [2, 2, 3])
    XCTAssertEqual((a * b3).scalars, [1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12])
  }

  func testBroadcastArithmeticGradients() {
    let a = randomTensor([2, 3, 4], seed: 1)
    let b = randomTensor([3, 1], seed: 2, low: 0.5, high: 2)
    let c = randomTensor([4], seed: 3)
    assertGradients([a, b, c]) { x in (x[0] + x[2]) * x[1] - x[2] / x[1] }
    assertGradients([a, c]) { x in -(x[0] * 3 + 1) / 2 - x[1] }
  }

  func testPointwiseFunctionsAgainstReference() {
    let x = Tensor([-2, -0.5, 0, 1, 3])
    // Reference values from Python's math module (erf, tanh, exp).
    assertClose(x.gelu().scalars, [-0.045500264, -0.154268769, 0, 0.841344746, 2.995950306])
    assertClose(x.geluTanh().scalars, [-0.045402306, -0.154285990, 0, 0.841191991, 2.996362608])
    assertClose(x.quickGELU().scalars, [-0.064341377, -0.149611563, 0, 0.845795766, 2.981928690])
    assertClose(x.relu().scalars, [0, 0, 0, 1, 3])
    assertClose(x.leakyReLU(slope: 0.2).scalars, [-0.4, -0.1, 0, 1, 3])
    assertClose(x.sigmoid().scalars, [0.119202922, 0.377540669, 0.5, 0.731058579, 0.952574127])
    assertClose(x.tanh().scalars, [-0.964027580, -0.462117157, 0, 0.761594156, 0.995054754])
    assertClose(x.abs().scalars, [2, 0.5, 0, 1, 3])
    assertClose(x.clamp(min: -1, max: 2).scalars, [-1, -0.5, 0, 1, 2])
    assertClose(x.exp().scalars, [0.135335283, 0.606530660, 1, 2.718281828, 20.085536923])
    let p = Tensor([0.25, 1, 4])
    assertClose(p.sqrt().scalars, [0.5, 1, 2])
    assertClose(p.rsqrt().scalars, [2, 1, 0.5])
    assertClose(p.log().scalars, [-1.386294361, 0, 1.386294361])
    assertClose(p.pow(1.5).scalars, [0.125, 1, 8])
    assertClose(p.pow(2).scalars, [0.0625, 1, 16])
  }

  func testPointwiseGradients() {
    let x = randomTensor([3, 5], seed: 4, low: -2, high: 2)
    let positive = randomTensor([3, 5], seed: 5, low: 0.5, high: 2)
    for f: (Tensor) -> Tensor in [
      { $0.exp() }, { $0.tanh() }, { $0.sigmoid() }, { $0.gelu() }, { $0.geluTanh() },
      { $0.quickGELU() },
    ] {
      assertGradients([x]) { f($0[0]) }
    }
    for f: (Tensor) -> Tensor in [
      { $0.log() }, { $0.sqrt() }, { $0.rsqrt() }, { $0.pow(1.7) }, { $0.pow(2) },
    ] {
      assertGradients([positive]) { f($0[0]) }
    }
    // Kinked functions, probed away from their kinks.
    let away = Tensor([-1.5, -0.7, 0.4, 0.9, 1.8, 2.5], shape: [2, 3])
    assertGradients([away]) { $0[0].relu() }
    assertGradients([away]) { $0[0].leakyReLU(slope: 0.2) }
    assertGradients([away]) { $0[0].abs() }
    assertGradients([away]) { $0[0].clamp(min: -1, max: 2) }
  }

  func testWhereAndMaskedFill() {
    let mask = Tensor([1, 0, 1], shape: [3])
    let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    let b = Tensor(scalar: -1)
    XCTAssertEqual(Tensor.where(mask, a, b).scalars, [1, -1, 3, 4, -1, 6])
    XCTAssertEqual(a.maskedFill(mask, 0).scalars, [0, 2, 0, 0, 5, 0])
    let x = randomTensor([2, 3], seed: 6)
    let y = randomTensor([3], seed: 7)
    assertGradients([x, y]) { Tensor.where(mask, $0[0], $0[1]) * $0[0] }
    assertGradients([x]) { $0[0].maskedFill(mask, 9) }
  }
}
