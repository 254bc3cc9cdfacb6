import XCTest

@testable import GraftTensor

/// Asserts two float arrays agree elementwise within `tolerance`.
func assertClose(
  _ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
  file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(actual.count, expected.count, "element counts differ", file: file, line: line)
  for (i, (a, e)) in zip(actual, expected).enumerated() where !(abs(a - e) <= tolerance) {
    XCTFail("element \(i): \(a) vs expected \(e)", file: file, line: line)
    return
  }
}

/// A seeded random tensor for tests.
func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
  var rng = RandomGenerator(seed: seed)
  return Tensor.rand(shape, low: low, high: high, generator: &rng)
}

/// Runs the shared finite-difference check and fails the test with its summary.
func assertGradients(
  _ inputs: [Tensor], epsilon: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 2e-2,
  file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor
) {
  let check = GradientCheck.run(inputs, epsilon: epsilon, atol: atol, rtol: rtol, f)
  XCTAssertTrue(check.passed, check.summary, file: file, line: line)
}
