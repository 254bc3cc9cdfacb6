import XCTest

@testable import GraftTensor

final class TensorBasicsTests: XCTestCase {
  func testBroadcastAddForwardAndBackward() {
    let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    let b = Tensor([10, 20, 30], shape: [3])
    XCTAssertEqual((a + b).scalars, [11, 22, 33, 14, 25, 36])
    let check = GradientCheck.run([a, b]) { $0[0] * $0[1] + $0[1] }
    XCTAssertTrue(check.passed, check.summary)
  }
}
