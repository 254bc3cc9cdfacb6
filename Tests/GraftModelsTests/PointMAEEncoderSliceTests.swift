import XCTest

@testable import GraftModels

/// The mini-PointNet runs inference in slices of groups (`PointMAEEncoder.groupsPerSlice`).
final class PointMAEEncoderSliceTests: XCTestCase {
  func testInferenceSlicesGiveTheSameTokensInLessMemory() throws {
    let config = PointMAEConfig(transDim: 32, depth: 1, numHeads: 2, groupSize: 8, numGroup: 8)
    var rng = RandomGenerator(seed: 3)
    let model = try PointMAE(config: config, generator: &rng)
    let encoder = model.encoder
    // Running statistics away from 0 and 1, so the BatchNorms are not the identity.
    for norm in [encoder.firstConv.norm, encoder.secondConv.norm] {
      for ch in 0..<norm.runningMean.count {
        norm.runningMean.pointer[ch] = 0.3 * rng.nextNormal()
        norm.runningVar.pointer[ch] = 0.5 + rng.nextFloat()
      }
    }
    encoder.groupsPerSlice = 8
    // 4 × 25 = 100 groups: twelve whole slices and a partial one.
    let neighbourhoods = Tensor.randn([4, 25, 8, 3], generator: &rng)
    // With a tape the encoder runs whole.
    let whole = encoder(neighbourhoods).detached()
    let liveBefore = StorageStats.liveBytes
    StorageStats.resetPeak()
    let sliced = withNoGrad { encoder(neighbourhoods) }
    let peak = StorageStats.peakBytes - liveBefore
    XCTAssertEqual(sliced.shape, [4, 25, 32])
    var largest: Float = 0
    var worst: Float = 0
    for i in 0..<whole.count {
      largest = Swift.max(largest, abs(whole.pointer[i]))
      worst = Swift.max(worst, abs(whole.pointer[i] - sliced.pointer[i]))
    }
    XCTAssertGreaterThan(largest, 0)
    XCTAssertLessThanOrEqual(worst, 1e-6 * largest)
    // One whole [100·8, 512] activation is more than the sliced pass ever holds.
    XCTAssertLessThan(peak, 100 * 8 * 512 * 4)

    // In training mode the BatchNorms need the whole batch: no slices, batch statistics.
    model.train()
    let training = withNoGrad { encoder(neighbourhoods) }
    var differs = false
    for i in 0..<whole.count where training.pointer[i] != whole.pointer[i] { differs = true }
    XCTAssertTrue(differs)
  }
}
