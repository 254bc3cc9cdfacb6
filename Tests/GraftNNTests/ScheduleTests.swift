import Foundation
import XCTest

@testable import GraftNN

final class ScheduleTests: XCTestCase {
  func testCosineWithWarmupAtKnownSteps() {
    let s = CosineSchedule(baseLR: 0.1, warmupSteps: 10, totalSteps: 110, minLR: 0.001)
    XCTAssertEqual(s.lr(at: 0), 0)  // warm-up starts from zero
    XCTAssertEqual(s.lr(at: 5), 0.05, accuracy: 1e-8)
    XCTAssertEqual(s.lr(at: 10), 0.1, accuracy: 1e-8)  // end of warm-up: the peak
    // A quarter into the decay: min + (base − min)·½(1 + cos(π/4)) = 0.001 + 0.099·0.853553.
    XCTAssertEqual(s.lr(at: 35), 0.001 + 0.099 * 0.853_553_4, accuracy: 1e-7)
    XCTAssertEqual(s.lr(at: 60), 0.0505, accuracy: 1e-8)  // midway: halfway to the floor
    XCTAssertEqual(s.lr(at: 110), 0.001, accuracy: 1e-8)  // end
    XCTAssertEqual(s.lr(at: 500), 0.001, accuracy: 1e-8)  // stays at the floor
    XCTAssertEqual(s.factor(at: 60), 0.505, accuracy: 1e-7)

    let warm = CosineSchedule(baseLR: 1, warmupSteps: 4, totalSteps: 8, warmupStartLR: 0.2)
    XCTAssertEqual(warm.lr(at: 0), 0.2, accuracy: 1e-7)
    XCTAssertEqual(warm.lr(at: 2), 0.6, accuracy: 1e-7)
    XCTAssertEqual(warm.lr(at: 4), 1, accuracy: 1e-7)
    XCTAssertEqual(warm.lr(at: 6), 0.5, accuracy: 1e-7)
    XCTAssertEqual(warm.lr(at: 8), 0, accuracy: 1e-7)

    let noWarmup = CosineSchedule(baseLR: 2, warmupSteps: 0, totalSteps: 4)
    XCTAssertEqual(noWarmup.lr(at: 0), 2)
    XCTAssertEqual(noWarmup.lr(at: 2), 1, accuracy: 1e-7)
  }

  func testStepSchedule() {
    let s = StepSchedule(baseLR: 1, stepSize: 3, gamma: 0.5)
    XCTAssertEqual(
      [0, 2, 3, 5, 6, 8, 9].map { s.lr(at: $0) }, [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])
  }

  func testClipGradNormScalesToMaxNorm() {
    let a = Tensor([0, 0])
    let b = Tensor([0])
    let frozen = Tensor([7])
    a.grad = Tensor([3, 4])
    b.grad = Tensor([12])
    // ‖(3, 4, 12)‖ = 13; factor 6.5 / (13 + 1e-6).
    let norm = clipGradNorm([a, b, frozen, a], maxNorm: 6.5)
    XCTAssertEqual(norm, 13)
    let f: Float = 6.5 / (13 + 1e-6)
    XCTAssertLessThan(
      maxAbsDifference(a.grad!.scalars + b.grad!.scalars, [3 * f, 4 * f, 12 * f]), 1e-6)
    XCTAssertNil(frozen.grad)
    let total = (a.grad!.scalars + b.grad!.scalars).map { $0 * $0 }.reduce(0, +).squareRoot()
    XCTAssertEqual(total, 6.5, accuracy: 1e-5)

    // Below the limit nothing changes.
    a.grad = Tensor([3, 4])
    b.grad = Tensor([12])
    XCTAssertEqual(clipGradNorm([a, b], maxNorm: 20), 13)
    XCTAssertEqual(a.grad!.scalars + b.grad!.scalars, [3, 4, 12])

    // Through an optimizer: all its groups' gradients count.
    let opt = SGD(
      groups: [
        ParameterGroup(parameters: [("a", a)], lr: 1),
        ParameterGroup(parameters: [("b", b)], lr: 1),
      ])
    XCTAssertEqual(opt.clipGradNorm(maxNorm: 1.3), 13)
    XCTAssertEqual(b.grad!.item, 12 * Float(1.3 / (13 + 1e-6)), accuracy: 1e-6)

    // A non-finite norm is reported and leaves the gradients alone.
    a.grad = Tensor([.infinity, 1])
    XCTAssertTrue(clipGradNorm([a], maxNorm: 1).isInfinite)
    XCTAssertEqual(a.grad!.scalars[1], 1)
  }
}
