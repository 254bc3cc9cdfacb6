import Foundation
import XCTest

@testable import GraftNN

/// End to end: an MLP trained with AdamW on the real UCI handwritten digits (Data/digits).
final class DigitsTrainingTests: XCTestCase {
  struct Digits {
    var pixels: [[Float]] = []
    var labels: [Int] = []
  }

  /// Reads `Data/digits/digits.csv`: 64 values in 0…16 then the label, per line.
  func loadDigits() throws -> Digits {
    let url = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Data/digits/digits.csv")
    var digits = Digits()
    for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
      let values = line.split(separator: ",").map { Float($0)! }
      XCTAssertEqual(values.count, 65)
      digits.pixels.append(values.prefix(64).map { $0 / 16 })
      digits.labels.append(Int(values[64]))
    }
    return digits
  }

  /// Trains 64→128→10 with AdamW and a warm-up + cosine schedule; returns (losses, test accuracy).
  func train(_ data: Digits, seed: UInt64) -> (losses: [Float], accuracy: Float) {
    var rng = RandomGenerator(seed: seed)
    let order = rng.permutation(data.labels.count)
    let testCount = 450
    let (test, train) = (Array(order.prefix(testCount)), Array(order.dropFirst(testCount)))
    func batch(_ indices: ArraySlice<Int>) -> (Tensor, [Int]) {
      let x = Tensor(indices.flatMap { data.pixels[$0] }, shape: [indices.count, 64])
      return (x, indices.map { data.labels[$0] })
    }
    let model = MLP(64, hidden: 128, out: 10, generator: &rng)
    let epochs = 40
    let batchSize = 64
    let stepsPerEpoch = (train.count + batchSize - 1) / batchSize
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: model.namedParameters(), lr: 3e-3, weightDecay: 1e-4))
    let schedule = CosineSchedule(
      baseLR: 3e-3, warmupSteps: stepsPerEpoch, totalSteps: epochs * stepsPerEpoch)
    var losses: [Float] = []
    var step = 0
    for _ in 0..<epochs {
      let shuffled = rng.permutation(train.count).map { train[$0] }
      for start in stride(from: 0, to: shuffled.count, by: batchSize) {
        let (x, y) = batch(shuffled[start..<min(start + batchSize, shuffled.count)])
        optimizer.apply(schedule, step: step)
        let loss = model(x).crossEntropy(targets: y, labelSmoothing: 0.05)
        optimizer.zeroGrad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item)
        step += 1
      }
    }
    let (x, y) = batch(test[...])
    let predicted = withNoGrad { model(x) }.argmax(axis: 1)
    let correct = zip(predicted, y).filter { $0 == $1 }.count
    return (losses, Float(correct) / Float(y.count))
  }

  func testMLPReachesNinetyFivePercentAndIsReproducible() throws {
    let data = try loadDigits()
    XCTAssertEqual(data.labels.count, 1797)
    let first = train(data, seed: 0)
    print("digits MLP: test accuracy \(first.accuracy) on 450 held-out digits")
    XCTAssertGreaterThanOrEqual(first.accuracy, 0.95, "test accuracy \(first.accuracy)")
    XCTAssertLessThan(first.losses.suffix(20).reduce(0, +) / 20, first.losses[0] / 4)
    let second = train(data, seed: 0)
    // Same seed: bit-identical loss curve.
    XCTAssertEqual(first.losses.map(\.bitPattern), second.losses.map(\.bitPattern))
    let other = train(data, seed: 1)
    XCTAssertNotEqual(first.losses, other.losses)
  }
}
