import XCTest

@testable import GraftNN

final class BatchNormLayerTests: XCTestCase {
  func testNamesBuffersAndDefaults() {
    let bn = BatchNorm(3)
    XCTAssertEqual(bn.stateDictNames, ["weight", "bias", "running_mean", "running_var"])
    XCTAssertEqual(bn.namedParameters().map(\.name), ["weight", "bias"])
    XCTAssertEqual(bn.namedBuffers().map(\.name), ["running_mean", "running_var"])
    XCTAssertEqual(bn.runningMean.scalars, [0, 0, 0])
    XCTAssertEqual(bn.runningVar.scalars, [1, 1, 1])
    XCTAssertEqual(bn.weight!.scalars, [1, 1, 1])
    XCTAssertFalse(bn.runningMean.requiresGrad)
    let plain = BatchNorm(2, eps: 1e-6, affine: false)
    XCTAssertEqual(plain.parameterCount, 0)
    XCTAssertEqual(plain.stateDictNames, ["running_mean", "running_var"])
  }

  func testTrainingUpdatesRunningStatisticsAndEvaluationUsesThem() {
    let bn = BatchNorm(1, eps: 0)
    // [N = 4, C = 1]: mean 2.5, biased var 1.25, unbiased 5/3.
    let x = Tensor([1, 2, 3, 4], shape: [4, 1])
    let y = bn(x)
    let r = 1 / Float(1.25).squareRoot()
    for (a, e) in zip(y.scalars, [-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r]) {
      XCTAssertEqual(a, e, accuracy: 1e-5)
    }
    XCTAssertEqual(bn.runningMean.scalars[0], 0.25, accuracy: 1e-6)
    XCTAssertEqual(bn.runningVar.scalars[0], 0.9 + 0.1 * 5 / 3, accuracy: 1e-6)
    bn.eval()
    let z = bn(Tensor([0.25, 1.25], shape: [2, 1]))
    let s = 1 / (0.9 + 0.1 * Float(5) / 3).squareRoot()
    XCTAssertEqual(z.scalars[0], 0, accuracy: 1e-6)
    XCTAssertEqual(z.scalars[1], s, accuracy: 1e-5)
    // Evaluation leaves the statistics alone.
    XCTAssertEqual(bn.runningMean.scalars[0], 0.25, accuracy: 1e-6)
    bn.resetRunningStatistics()
    XCTAssertEqual(bn.runningVar.scalars, [1])
  }

  func testFourDimensionalInputAndASingleSampleBatch() {
    let bn = BatchNorm(2)
    var rng = RandomGenerator(seed: 3)
    let y = bn(Tensor.randn([3, 2, 4, 5], mean: 2, std: 3, generator: &rng))
    // Each channel comes out with mean 0 and biased variance 1.
    for c in 0..<2 {
      let channel = y.narrow(1, start: c, length: 1)
      XCTAssertEqual(channel.mean().item, 0, accuracy: 1e-5)
      XCTAssertEqual(channel.variance(axes: [0, 1, 2, 3], correction: 0).item, 1, accuracy: 1e-3)
    }
    // One value per channel in training: normalised with the running statistics, which stay.
    let before = bn.runningMean.scalars
    let one = bn(Tensor([5, 7], shape: [1, 2]).reshaped([1, 2, 1, 1]))
    XCTAssertEqual(bn.runningMean.scalars, before)
    let expected = zip(zip([5, 7] as [Float], before), bn.runningVar.scalars).map {
      ($0.0 - $0.1) / ($1 + 1e-5).squareRoot()
    }
    for (a, e) in zip(one.scalars, expected) { XCTAssertEqual(a, e, accuracy: 1e-5) }
  }
}
