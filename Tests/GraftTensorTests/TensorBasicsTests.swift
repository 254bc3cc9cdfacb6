import XCTest

@testable import GraftTensor

final class TensorBasicsTests: XCTestCase {
  func testCreation() {
    XCTAssertEqual(Tensor.zeros([2, 3]).scalars, [0, 0, 0, 0, 0, 0])
    XCTAssertEqual(Tensor.full([2], 7).scalars, [7, 7])
    XCTAssertEqual(Tensor.arange(0, 5).scalars, [0, 1, 2, 3, 4])
    XCTAssertEqual(Tensor.arange(1, 2, step: 0.25).scalars, [1, 1.25, 1.5, 1.75])
    let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    XCTAssertEqual(t[1, 2], 6)
    XCTAssertEqual(t.strides, [3, 1])
  }

  func testSeededRandomIsReproducibleAndDistributed() {
    var a = RandomGenerator(seed: 42)
    var b = RandomGenerator(seed: 42)
    var c = RandomGenerator(seed: 43)
    let x = Tensor.randn([10_000], generator: &a)
    XCTAssertEqual(x.scalars, Tensor.randn([10_000], generator: &b).scalars)
    XCTAssertNotEqual(x.scalars, Tensor.randn([10_000], generator: &c).scalars)
    XCTAssertEqual(x.mean().item, 0, accuracy: 0.05)
    XCTAssertEqual(x.variance(axes: [0]).item, 1, accuracy: 0.05)
    let u = Tensor.rand([10_000], low: 2, high: 4, generator: &a)
    XCTAssertGreaterThanOrEqual(u.scalars.min()!, 2)
    XCTAssertLessThan(u.scalars.max()!, 4)
    XCTAssertEqual(u.mean().item, 3, accuracy: 0.05)
    let tn = Tensor.truncatedNormal([10_000], std: 1, a: -0.5, b: 0.5, generator: &a)
    XCTAssertGreaterThanOrEqual(tn.scalars.min()!, -0.5)
    XCTAssertLessThanOrEqual(tn.scalars.max()!, 0.5)
    let p = a.permutation(50)
    XCTAssertEqual(p.sorted(), Array(0..<50))
  }
}
