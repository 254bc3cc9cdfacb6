import XCTest

@testable import GraftTensor

/// `PointOps.scatterAdd`: the slots rows land in, coincident rows summed, several targets per
/// row, and the gradient (a gather of the output gradient) by hand and by finite differences.
final class ScatterAddTests: XCTestCase {
  func testRowsLandInTheirSlotsAndCoincidentRowsAddUp() {
    // Cloud 0: rows 0 and 2 both go to slot 1; cloud 1: rows to slots 3, 0, 0.
    let values = Tensor([1, 2, 10, 20, 100, 200, 3, 4, 5, 6, 7, 8], shape: [2, 3, 2])
    let indices = IndexTensor(shape: [2, 3], values: [1, 4, 1, 3, 0, 0])
    let out = PointOps.scatterAdd(values, indices, count: 5)
    XCTAssertEqual(out.shape, [2, 5, 2])
    XCTAssertEqual(
      out.scalars,
      [0, 0, 101, 202, 0, 0, 0, 0, 10, 20] + [12, 14, 0, 0, 0, 0, 3, 4, 0, 0])
  }

  func testEachRowIsAddedAtEveryOneOfItsTargets() {
    // One cloud, two rows, three targets each: row 0 at 0, 1, 2; row 1 at 2, 2, 3 (twice on 2).
    let values = Tensor([1, 10], shape: [1, 2, 1])
    let indices = IndexTensor(shape: [1, 2, 3], values: [0, 1, 2, 2, 2, 3])
    let out = PointOps.scatterAdd(values, indices, count: 5)
    XCTAssertEqual(out.scalars, [1, 1, 21, 10, 0])
    // Trailing value axes ride along: [B, M, 2, 2] → [B, count, 2, 2].
    let blocks = randomTensor([1, 2, 2, 2], seed: 1)
    let spread = PointOps.scatterAdd(blocks, IndexTensor(shape: [1, 2], values: [2, 0]), count: 3)
    XCTAssertEqual(spread.shape, [1, 3, 2, 2])
    XCTAssertEqual(Array(spread.scalars[0..<4]), Array(blocks.scalars[4..<8]))
    XCTAssertEqual(Array(spread.scalars[4..<8]), [0, 0, 0, 0])
    XCTAssertEqual(Array(spread.scalars[8..<12]), Array(blocks.scalars[0..<4]))
  }

  func testGradientGathersTheOutputGradientAtEveryTarget() {
    let indices = IndexTensor(
      shape: [2, 4, 3],
      values: [0, 1, 1, 4, 4, 4, 2, 3, 0, 1, 2, 3, 4, 0, 0, 3, 3, 1, 2, 2, 2, 0, 1, 4])
    let probe = randomTensor([2, 4, 3], seed: 2).requiringGrad()
    let upstream = randomTensor([2, 5, 3], seed: 3)
    PointOps.scatterAdd(probe, indices, count: 5).backward(upstream)
    let g = probe.grad!
    for b in 0..<2 {
      for m in 0..<4 {
        for c in 0..<3 {
          var expected: Float = 0
          for t in 0..<3 { expected += upstream[b, Int(indices[b, m, t]), c] }
          XCTAssertEqual(g[b, m, c], expected, accuracy: 1e-6)
        }
      }
    }
    assertGradients([randomTensor([2, 4, 3], seed: 4)]) { x in
      PointOps.scatterAdd(x[0], indices, count: 5)
    }
  }
}
