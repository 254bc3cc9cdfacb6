import XCTest

@testable import GraftTensor

final class NeuralOpsTests: XCTestCase {
  func testSoftmaxAndLogSoftmaxAgainstReference() {
    // Reference: numpy, exp(x − max) / Σ.
    let x = Tensor([1, 2, 3, 1, -1, 0.5], shape: [2, 3])
    assertClose(
      x.softmax().scalars, [0.09003057, 0.24472847, 0.66524096, 0.57409699, 0.07769558, 0.34820743])
    assertClose(
      x.logSoftmax().scalars,
      [-2.40760596, -1.40760596, -0.40760596, -0.55495692, -2.55495692, -1.05495692])
    // Along axis 0, and extreme logits that would overflow a naive exp.
    let s0 = x.softmax(axis: 0)
    XCTAssertEqual(s0[0, 0] + s0[1, 0], 1, accuracy: 1e-6)
    let big = Tensor([1000, 1001]).softmax().scalars
    assertClose(big, [0.26894142, 0.73105858])
  }

  func testSoftmaxGradients() {
    let x = randomTensor([3, 4, 5], seed: 1, low: -2, high: 2)
    assertGradients([x]) { $0[0].softmax(axis: -1) }
    assertGradients([x]) { $0[0].softmax(axis: 1) }
    assertGradients([x]) { $0[0].logSoftmax(axis: 0) }
    assertGradients([x]) { $0[0].logSoftmax(axis: 2) }
  }

  func testLayerNormAgainstReference() {
    let x = Tensor([1, 2, 4, 7], shape: [1, 4])
    let w = Tensor([1, 2, 0.5, -1])
    let b = Tensor([0, 1, 0, 0.5])
    // numpy: (x − mean) / sqrt(var + 1e-5) · w + b with the biased variance.
    assertClose(
      x.layerNorm(weight: w, bias: b, eps: 1e-5).scalars,
      [-1.09108841, -0.30930609, 0.10910884, -1.02752378])
    let plain = x.layerNorm(eps: 1e-6)
    XCTAssertEqual(plain.mean().item, 0, accuracy: 1e-6)
  }

  func testLayerNormGradients() {
    let x = randomTensor([5, 8], seed: 2, low: -2, high: 2)
    let w = randomTensor([8], seed: 3, low: 0.5, high: 1.5)
    let b = randomTensor([8], seed: 4)
    assertGradients([x, w, b]) { $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) }
    assertGradients([x]) { $0[0].layerNorm(eps: 1e-6) }
  }

  func testCrossEntropyAgainstReference() {
    let logits = Tensor([2, 1, 0.1, 0.5, 2.5, -1], shape: [2, 3])
    // numpy reference: mean of −log softmax at the target, and with ε = 0.1 smoothing.
    XCTAssertEqual(logits.crossEntropy(targets: [0, 2]).item, 2.0351041, accuracy: 1e-5)
    XCTAssertEqual(
      logits.crossEntropy(targets: [0, 2], labelSmoothing: 0.1).item, 2.0001041, accuracy: 1e-5)
    // Ignored rows drop out of the mean.
    let single = logits.slice(0, 0..<1).crossEntropy(targets: [0]).item
    XCTAssertEqual(logits.crossEntropy(targets: [0, -100]).item, single, accuracy: 1e-6)
    // Soft targets equal to one-hot give the same loss as indices.
    let onehot = Tensor([1, 0, 0, 0, 0, 1], shape: [2, 3])
    XCTAssertEqual(logits.crossEntropy(probabilities: onehot).item, 2.0351041, accuracy: 1e-5)
  }

  func testCrossEntropyGradients() {
    let logits = randomTensor([4, 5], seed: 5, low: -2, high: 2)
    assertGradients([logits]) { $0[0].crossEntropy(targets: [1, 4, 0, 2]) }
    assertGradients([logits]) {
      $0[0].crossEntropy(targets: [1, -1, 0, 3], labelSmoothing: 0.2, ignoreIndex: -1)
    }
    let soft = randomTensor([4, 5], seed: 6, low: 0, high: 1)
    assertGradients([logits]) { $0[0].crossEntropy(probabilities: soft) }
  }

  func testDropoutScalesKeptAndIsSeeded() {
    let x = Tensor.ones([10_000])
    var r1 = RandomGenerator(seed: 1)
    var r2 = RandomGenerator(seed: 1)
    let y = x.dropout(p: 0.25, training: true, generator: &r1)
    XCTAssertEqual(y.scalars, x.dropout(p: 0.25, training: true, generator: &r2).scalars)
    let kept = y.scalars.filter { $0 != 0 }
    XCTAssertEqual(Float(kept.count) / 10_000, 0.75, accuracy: 0.02)
    XCTAssertTrue(kept.allSatisfy { abs($0 - 4.0 / 3.0) < 1e-6 })
    XCTAssertTrue(x.dropout(p: 0.5, training: false, generator: &r1) === x)
    // The gradient uses the same mask as the forward pass.
    let w = Tensor.ones([100]).requiringGrad()
    let out = w.dropout(p: 0.5, training: true, generator: &r1)
    out.sum().backward()
    XCTAssertEqual(w.grad!.scalars, out.scalars)
  }
}
