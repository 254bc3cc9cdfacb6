import XCTest

@testable import GraftTensor

/// `batchNorm` on channels-last rows [N, C] (its own row-wise loops) against the same values laid
/// out as one sample [1, C, N] (the per-channel loops): the same statistics, outputs and
/// gradients.
final class BatchNormRowsTests: XCTestCase {
  func testRowsMatchTheChannelMajorLayout() {
    // 301 rows: several threads' worth of rows (64 or more each), the last range uneven.
    let (n, c) = (301, 7)
    let x = randomTensor([n, c], seed: 21, low: -3, high: 5)
    let upstream = randomTensor([n, c], seed: 22)
    for training in [true, false] {
      var results: [[[Float]]] = []
      for channelMajor in [false, true] {
        // A fresh leaf each time.
        let laidOut = channelMajor ? x.transposed().reshaped([1, c, n]) : x
        let input = Tensor(laidOut.scalars, shape: laidOut.shape).requiringGrad()
        let w = randomTensor([c], seed: 23, low: 0.5, high: 1.5).requiringGrad()
        let b = randomTensor([c], seed: 24).requiringGrad()
        let rm = randomTensor([c], seed: 25)
        let rv = randomTensor([c], seed: 26, low: 0.5, high: 2)
        let y = input.batchNorm(
          weight: w, bias: b, runningMean: rm, runningVar: rv, training: training)
        let g = channelMajor ? upstream.transposed().reshaped([1, c, n]) : upstream
        (y * g).sum().backward()
        // Back to [N, C] order for the comparison.
        func rows(_ t: Tensor) -> [Float] {
          channelMajor ? t.reshaped([c, n]).transposed().scalars : t.scalars
        }
        results.append([
          rows(y), rows(input.grad!), w.grad!.scalars, b.grad!.scalars, rm.scalars, rv.scalars,
        ])
      }
      for (what, (rows, planes)) in zip(
        [
          "output", "input gradient", "weight gradient", "bias gradient", "running mean",
          "running var",
        ], zip(results[0], results[1]))
      {
        let scale = planes.map(abs).max() ?? 1
        for (a, e) in zip(rows, planes) where !(abs(a - e) <= 1e-6 * Swift.max(scale, 1)) {
          XCTFail("\(what) (training \(training)): \(a) vs \(e)")
          break
        }
      }
    }
  }
}
