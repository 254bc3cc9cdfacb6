import XCTest

@testable import GraftTensor

final class ShapeOpsTests: XCTestCase {
  let a = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])

  func testReshapeSharesStorageAndInfersAxis() {
    let r = a.reshaped([4, -1])
    XCTAssertEqual(r.shape, [4, 6])
    XCTAssertTrue(r.storage === a.storage)
    XCTAssertEqual(a.flattened(from: 1).shape, [2, 12])
    XCTAssertEqual(a.unsqueezed(1).shape, [2, 1, 3, 4])
    XCTAssertEqual(a.unsqueezed(-1).shape, [2, 3, 4, 1])
    XCTAssertEqual(a.unsqueezed(0).squeezed(0).shape, [2, 3, 4])
  }

  func testPermuteAndTranspose() {
    let p = a.permuted([2, 0, 1])
    XCTAssertEqual(p.shape, [4, 2, 3])
    for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { XCTAssertEqual(p[k, i, j], a[i, j, k]) } } }
    let t = a.transposed()
    XCTAssertEqual(t.shape, [2, 4, 3])
    XCTAssertEqual(t[1, 3, 2], a[1, 2, 3])
    assertGradients([randomTensor([2, 3, 4], seed: 1)]) { $0[0].permuted([1, 2, 0]) }
  }

  func testSliceNarrowAndGradient() {
    let s = a.slice(2, 1..<4, step: 2)
    XCTAssertEqual(s.shape, [2, 3, 2])
    XCTAssertEqual(s.scalars.prefix(4), [1, 3, 5, 7])
    let n = a.narrow(1, start: 1, length: 2)
    XCTAssertEqual(n.shape, [2, 2, 4])
    XCTAssertEqual(n[0, 0, 0], 4)
    XCTAssertEqual(n[1, 1, 3], 23)
    assertGradients([randomTensor([3, 5], seed: 2)]) { $0[0].slice(1, 1..<5, step: 2) * 2 }
  }

  func testConcatStackSplit() {
    let x = Tensor([1, 2, 3, 4], shape: [2, 2])
    let y = Tensor([5, 6], shape: [2, 1])
    XCTAssertEqual(Tensor.concat([x, y], axis: 1).scalars, [1, 2, 5, 3, 4, 6])
    XCTAssertEqual(Tensor.concat([x, x], axis: 0).shape, [4, 2])
    let st = Tensor.stack([x, x * 10], axis: 1)
    XCTAssertEqual(st.shape, [2, 2, 2])
    XCTAssertEqual(st.scalars, [1, 2, 10, 20, 3, 4, 30, 40])
    let parts = a.split([1, 3], axis: 2)
    XCTAssertEqual(parts.map(\.shape), [[2, 3, 1], [2, 3, 3]])
    XCTAssertEqual(Tensor.concat(parts, axis: 2).scalars, a.scalars)
    let p = randomTensor([2, 3], seed: 3)
    let q = randomTensor([2, 2], seed: 4)
    assertGradients([p, q]) { Tensor.concat([$0[0], $0[1], $0[0]], axis: 1) }
    assertGradients([p]) { Tensor.stack([$0[0], $0[0] * 2], axis: 0) }
  }

  func testIndexSelectGatherAndEmbedding() {
    let x = Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2])
    XCTAssertEqual(x.indexSelect(0, [2, 0, 2]).scalars, [5, 6, 1, 2, 5, 6])
    XCTAssertEqual(x.indexSelect(1, [1]).scalars, [2, 4, 6])
    // torch.gather(x, 1, [[1,0],[0,0],[1,1]]) = [[2,1],[3,3],[6,6]]
    XCTAssertEqual(x.gather(1, [1, 0, 0, 0, 1, 1], shape: [3, 2]).scalars, [2, 1, 3, 3, 6, 6])
    let e = Tensor.embedding(x, indices: [0, 2, 2, 1], shape: [2, 2])
    XCTAssertEqual(e.shape, [2, 2, 2])
    XCTAssertEqual(e.scalars, [1, 2, 5, 6, 5, 6, 3, 4])
    let w = randomTensor([3, 2], seed: 5)
    assertGradients([w]) { $0[0].indexSelect(0, [2, 0, 2]) }
    assertGradients([w]) { $0[0].gather(0, [2, 0, 1, 1], shape: [2, 2]) }
    assertGradients([w]) { Tensor.embedding($0[0], indices: [1, 1, 0], shape: [3]) }
  }

  func testPadBroadcastAndSumTo() {
    let x = Tensor([1, 2, 3, 4], shape: [2, 2])
    let p = x.padded([(1, 0), (0, 2)], value: -1)
    XCTAssertEqual(p.shape, [3, 4])
    XCTAssertEqual(p.scalars, [-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1])
    XCTAssertEqual(
      Tensor([1, 2], shape: [2, 1]).broadcast(to: [2, 3]).scalars, [1, 1, 1, 2, 2, 2])
    XCTAssertEqual(Tensor.ones([2, 3, 4]).sumTo([3, 1]).scalars, [8, 8, 8])
    assertGradients([randomTensor([2, 3], seed: 6)]) { $0[0].padded([(1, 2)]) * 3 }
    assertGradients([randomTensor([3, 1], seed: 7)]) { $0[0].broadcast(to: [2, 3, 4]) }
  }
}
