import XCTest

@testable import GraftTensor

final class BatchNormTests: XCTestCase {
  func testTrainingModeNormalisesWithBatchStatisticsByHand() {
    // [N = 2, C = 2, S = 2]: channel 0 holds 1, 2, 3, 4; channel 1 holds 0, 0, 10, −2.
    let x = Tensor([1, 2, 0, 0, 3, 4, 10, -2], shape: [2, 2, 2])
    let w = Tensor([2, 1])
    let b = Tensor([0.5, -1])
    let rm = Tensor([0, 0])
    let rv = Tensor([1, 1])
    let y = x.batchNorm(
      weight: w, bias: b, runningMean: rm, runningVar: rv, training: true, momentum: 0.1, eps: 1e-5)
    // Channel 0: mean 2.5, biased var 5/4, unbiased 5/3. Channel 1: mean 2, biased var 88/4,
    // unbiased 88/3.
    let r0 = 1 / (1.25 + 1e-5).squareRoot()
    let r1 = 1 / (22 + 1e-5).squareRoot()
    let expected: [Double] = [
      (1 - 2.5) * r0 * 2 + 0.5, (2 - 2.5) * r0 * 2 + 0.5, (0 - 2) * r1 - 1, (0 - 2) * r1 - 1,
      (3 - 2.5) * r0 * 2 + 0.5, (4 - 2.5) * r0 * 2 + 0.5, (10 - 2) * r1 - 1, (-2 - 2) * r1 - 1,
    ]
    assertClose(y.scalars, expected.map { Float($0) })
    // running ← 0.9·running + 0.1·batch, with the unbiased variance.
    assertClose(rm.scalars, [0.25, 0.2])
    assertClose(rv.scalars, [0.9 + 0.1 * 5 / 3, 0.9 + 0.1 * 88 / 3])
  }

  func testEvaluationModeUsesRunningStatisticsAndLeavesThemAlone() {
    let x = Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2])
    let rm = Tensor([1, -1])
    let rv = Tensor([4, 0.25])
    let y = x.batchNorm(
      weight: Tensor([1, 3]), bias: Tensor([0, 1]), runningMean: rm, runningVar: rv,
      training: false, eps: 0)
    // (x − rm) / √rv · w + b per column.
    assertClose(y.scalars, [0, 19, 1, 31, 2, 43])
    XCTAssertEqual(rm.scalars, [1, -1])
    XCTAssertEqual(rv.scalars, [4, 0.25])
    // Without running statistics the batch's are used even in evaluation (track_running_stats
    // off), and without weight or bias the result is the plain normalisation.
    let plain = x.batchNorm(training: false, eps: 0)
    let r = 1 / (8.0 / 3).squareRoot()
    assertClose(plain.scalars, [-2, -2, 0, 0, 2, 2].map { Float($0 * r) })
  }

  func testTrainingModeGradientsMatchFiniteDifferences() {
    let x = randomTensor([3, 2, 2, 3], seed: 1, low: -2, high: 2)
    let w = randomTensor([2], seed: 2, low: 0.5, high: 1.5)
    let b = randomTensor([2], seed: 3)
    assertGradients([x, w, b], epsilon: 1e-2, atol: 3e-3, rtol: 2e-2) {
      $0[0].batchNorm(weight: $0[1], bias: $0[2], training: true, eps: 1e-5)
    }
    // [N, C] as BatchNorm1d, no affine, running statistics updated along the way.
    let x2 = randomTensor([5, 3], seed: 4, low: -2, high: 2)
    let (rm, rv) = (Tensor.zeros([3]), Tensor.ones([3]))
    assertGradients([x2], epsilon: 1e-2, atol: 3e-3, rtol: 2e-2) {
      $0[0].batchNorm(runningMean: rm, runningVar: rv, training: true, eps: 1e-6)
    }
  }

  func testEvaluationModeGradientsMatchFiniteDifferences() {
    let x = randomTensor([2, 3, 2, 2], seed: 5, low: -2, high: 2)
    let w = randomTensor([3], seed: 6, low: 0.5, high: 1.5)
    let b = randomTensor([3], seed: 7)
    let rm = randomTensor([3], seed: 8)
    let rv = randomTensor([3], seed: 9, low: 0.5, high: 2)
    assertGradients([x, w, b]) {
      $0[0].batchNorm(
        weight: $0[1], bias: $0[2], runningMean: rm, runningVar: rv, training: false, eps: 1e-5)
    }
  }

  func testBackwardKeepsOnlyWhatItNeedsAndGivesNoGradientToFrozenInputs() {
    let x = randomTensor([4, 2, 3], seed: 10).requiringGrad()
    let w = Tensor([1, 2])
    let y = x.batchNorm(weight: w, bias: Tensor([0, 0]), training: true)
    XCTAssertEqual(y.gradFnName, "batch_norm")
    y.sum().backward()
    // Σ over a normalised channel does not depend on x: its gradient is w·(1 − 1 − 0) = 0.
    for g in x.grad!.scalars { XCTAssertEqual(g, 0, accuracy: 1e-5) }
    XCTAssertNil(w.grad)
  }
}
