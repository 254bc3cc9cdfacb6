import XCTest

@testable import GraftNN

final class LayerTests: XCTestCase {
  func testLinearForwardByHand() {
    let layer = Linear(
      weight: Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), bias: Tensor([0.5, -1]))
    let x = Tensor([1, 0, -1, 2, 1, 0], shape: [2, 3])
    // Row 0: (1−3+0.5, 4−6−1); row 1: (2+2+0.5, 8+5−1).
    XCTAssertEqual(layer(x).scalars, [-1.5, -3, 4.5, 12])
    XCTAssertEqual(layer(Tensor([1, 0, -1])).shape, [2])
    XCTAssertEqual(layer(Tensor([1, 0, -1])).scalars, [-1.5, -3])
    let batched = layer(x.reshaped([1, 2, 3]))
    XCTAssertEqual(batched.shape, [1, 2, 2])
    XCTAssertEqual(batched.scalars, [-1.5, -3, 4.5, 12])
    let noBias = Linear(weight: Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), bias: nil)
    XCTAssertEqual(noBias(x).scalars, [-2, -2, 4, 13])
    XCTAssertEqual(noBias.namedParameters().map(\.name), ["weight"])
  }

  func testLinearDefaultInitIsUniformWithinOneOverSqrtFanIn() {
    var rng = RandomGenerator(seed: 11)
    let layer = Linear(64, 32, generator: &rng)
    XCTAssertEqual(layer.weight.shape, [32, 64])
    XCTAssertEqual(layer.bias!.shape, [32])
    let bound: Float = 1 / 8
    let w = layer.weight.scalars
    XCTAssertLessThanOrEqual(w.map(Swift.abs).max()!, bound)
    XCTAssertGreaterThan(w.map(Swift.abs).max()!, 0.95 * bound)
    XCTAssertLessThanOrEqual(layer.bias!.scalars.map(Swift.abs).max()!, bound)
    // U(−b, b) has mean 0 and variance b²/3; 2048 samples pin both well within these bounds.
    let mean = w.reduce(0, +) / Float(w.count)
    let variance = w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)
    XCTAssertLessThan(Swift.abs(mean), 0.01)
    XCTAssertEqual(variance, bound * bound / 3, accuracy: 0.1 * bound * bound / 3)
    XCTAssertTrue(layer.weight.requiresGrad && layer.bias!.requiresGrad)
  }

  func testLinearBackward() {
    var rng = RandomGenerator(seed: 12)
    let layer = Linear(5, 3, generator: &rng)
    let x = Tensor.randn([2, 4, 5], generator: &rng)
    let check = GradientCheck.run([x, layer.weight, layer.bias!]) { xs in layer(xs[0]) }
    XCTAssertTrue(check.passed, check.summary)
  }

  func testLayerNormForwardByHand() {
    let norm = LayerNorm(4, eps: 1e-5)
    norm.weight!.assign(Tensor([1, 2, 1, 1]))
    norm.bias!.assign(Tensor([0, 0, 1, 0]))
    // Row [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
    // Row [2, 2, 2, 2]: variance 0, so the normalised values are 0 and only the bias remains.
    let y = norm(Tensor([1, 2, 3, 4, 2, 2, 2, 2], shape: [2, 4]))
    let s = 1 / (1.25 + 1e-5 as Double).squareRoot()
    let expected = [-1.5 * s, 2 * -0.5 * s, 0.5 * s + 1, 1.5 * s, 0, 0, 1, 0].map { Float($0) }
    XCTAssertLessThan(maxAbsDifference(y.scalars, expected), 1e-5)
    XCTAssertEqual(norm.namedParameters().map(\.name), ["weight", "bias"])
    XCTAssertEqual(LayerNorm(4, elementwiseAffine: false).parameterCount, 0)
  }

  func testLayerNormBackward() {
    var rng = RandomGenerator(seed: 13)
    let norm = LayerNorm(6)
    norm.weight!.assign(Tensor.randn([6], mean: 1, std: 0.3, generator: &rng))
    norm.bias!.assign(Tensor.randn([6], std: 0.3, generator: &rng))
    let x = Tensor.randn([3, 6], generator: &rng)
    let check = GradientCheck.run([x, norm.weight!, norm.bias!]) { xs in norm(xs[0]) }
    XCTAssertTrue(check.passed, check.summary)
  }

  func testEmbeddingLookupAndScatterAddBackward() {
    let table = Embedding(weight: Tensor([0, 1, 10, 11, 20, 21], shape: [3, 2]))
    let out = table([2, 0, 2, 1], shape: [2, 2])
    XCTAssertEqual(out.shape, [2, 2, 2])
    XCTAssertEqual(out.scalars, [20, 21, 0, 1, 20, 21, 10, 11])
    out.sum().backward()
    // Row 2 was used twice, rows 0 and 1 once.
    XCTAssertEqual(table.weight.grad!.scalars, [1, 1, 1, 1, 2, 2])
    var rng = RandomGenerator(seed: 4)
    XCTAssertEqual(Embedding(10, 3, generator: &rng).weight.shape, [10, 3])
  }

  func testMLPNamesAndForward() {
    var rng = RandomGenerator(seed: 14)
    let mlp = MLP(4, hidden: 8, out: 2, activation: .relu, generator: &rng)
    XCTAssertEqual(
      mlp.namedParameters().map(\.name), ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
    let x = Tensor.randn([3, 4], generator: &rng)
    let manual =
      (x.matmul(mlp.fc1.weight, transposeOther: true) + mlp.fc1.bias!).relu()
      .matmul(mlp.fc2.weight, transposeOther: true) + mlp.fc2.bias!
    XCTAssertEqual(mlp(x).scalars, manual.scalars)
  }
}
