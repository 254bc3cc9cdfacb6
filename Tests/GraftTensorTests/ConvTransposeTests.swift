import Foundation
import XCTest

@testable import GraftTensor

/// `convTranspose2d` against `torch.nn.functional.conv_transpose2d` (Fixtures/conv_transpose2d.json,
/// written by Tools/make_fcos_fixtures.py) and against finite differences.
final class ConvTransposeTests: XCTestCase {
  private struct Case: Decodable {
    let x: [Float]
    let x_shape: [Int]
    let w: [Float]
    let w_shape: [Int]
    let b: [Float]
    let stride: Int
    let padding: Int
    let output_padding: Int
    let y: [Float]
    let y_shape: [Int]
  }

  func testMatchesPyTorch() throws {
    let dir = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    let data = try Data(contentsOf: dir.appendingPathComponent("conv_transpose2d.json"))
    let cases = try JSONDecoder().decode([String: Case].self, from: data)
    XCTAssertEqual(cases.count, 2)
    for (name, c) in cases {
      let y = Tensor(c.x, shape: c.x_shape).convTranspose2d(
        weight: Tensor(c.w, shape: c.w_shape), bias: Tensor(c.b),
        stride: (c.stride, c.stride), padding: (c.padding, c.padding),
        outputPadding: (c.output_padding, c.output_padding))
      XCTAssertEqual(y.shape, c.y_shape, name)
      let worst = zip(y.scalars, c.y).map { abs($0 - $1) }.max() ?? .infinity
      XCTAssertLessThan(worst, 1e-4, "\(name): max |Graft − PyTorch| = \(worst)")
    }
  }

  func testGradientsMatchFiniteDifferences() {
    var rng = RandomGenerator(seed: 3)
    let x = Tensor.randn([1, 2, 3, 3], generator: &rng)
    let w = Tensor.randn([2, 3, 3, 3], generator: &rng)
    let b = Tensor.randn([3], generator: &rng)
    let check = GradientCheck.run([x, w, b]) {
      $0[0].convTranspose2d(
        weight: $0[1], bias: $0[2], stride: (2, 2), padding: (1, 1), outputPadding: (1, 0))
    }
    XCTAssertTrue(check.passed, check.summary)
    let x2 = Tensor.randn([2, 2, 2, 3], generator: &rng)
    let w2 = Tensor.randn([2, 2, 2, 2], generator: &rng)
    let check2 = GradientCheck.run([x2, w2]) {
      $0[0].convTranspose2d(weight: $0[1], stride: (2, 2))
    }
    XCTAssertTrue(check2.passed, check2.summary)
  }
}
