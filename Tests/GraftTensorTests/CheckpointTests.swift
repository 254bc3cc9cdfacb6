import XCTest

@testable import GraftTensor

final class CheckpointTests: XCTestCase {
  /// A small piece with weights of its own: norm + linear, attention, activation + linear.
  private func piece(_ x: Tensor, _ w1: Tensor, _ w2: Tensor, _ ln: Tensor) -> Tensor {
    let qkv = x.layerNormLinear(normWeight: ln, normBias: nil, eps: 1e-6, weight: w1, bias: nil)
    let a = Tensor.attention(qkv: qkv, heads: 2)
    return (x + a).activationLinear(.gelu, weight: w2, bias: nil)
  }

  private func weights(seed: UInt64) -> (Tensor, Tensor, Tensor) {
    (
      (randomTensor([24, 8], seed: seed) * 0.3).requiringGrad(),
      (randomTensor([8, 8], seed: seed + 1) * 0.3).requiringGrad(),
      (randomTensor([8], seed: seed + 2) + 1).requiringGrad()
    )
  }

  func testGradientsEqualTheUncheckpointedGraphAndOnlyInputsAreKept() {
    let x0 = randomTensor([3, 5, 8], seed: 7)
    let (w1, w2, ln) = weights(seed: 10)
    let x = x0.copy().requiringGrad()
    let p = piece(x, w1, w2, ln)
    (p * p).sum().backward()
    let reference = [x.grad!, w1.grad!, w2.grad!, ln.grad!].map(\.scalars)

    let (v1, v2, lnB) = weights(seed: 10)
    let y = x0.copy().requiringGrad()
    let before = TapeStats.savedBytes
    let out = Tensor.checkpoint(y, parameters: [v1, v2, lnB]) { self.piece($0, v1, v2, lnB) }
    XCTAssertTrue(out.requiresGrad)
    // Only the input is kept, not the norm, qkv or pre-activation tensors.
    XCTAssertEqual(TapeStats.savedBytes - before, y.byteCount)
    (out * out).sum().backward()
    let got = [y.grad!, v1.grad!, v2.grad!, lnB.grad!].map(\.scalars)
    for (g, r) in zip(got, reference) {
      XCTAssertEqual(g.count, r.count)
      for (a, b) in zip(g, r) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b))) }
    }
    XCTAssertEqual(TapeStats.savedBytes, before, "the recomputed graph is freed")
  }

  /// Three pieces in a row under one budget: kept as recorded while it lasts (no recomputation
  /// in backward), checkpointed from the first piece that does not fit; the gradients are those
  /// of the plain graph whatever the budget.
  func testBudgetKeepsPiecesWhileItLastsThenCheckpoints() {
    let x0 = randomTensor([3, 5, 8], seed: 7)
    func run(budget bytes: Int?) -> (gradients: [[Float]], saved: Int, calls: Int) {
      let (w1, w2, ln) = weights(seed: 10)
      let x = x0.copy().requiringGrad()
      var calls = 0
      let budget = bytes.map { CheckpointBudget(bytes: $0) }
      let before = TapeStats.savedBytes
      var h = x
      for _ in 0..<3 {
        if let budget {
          h =
            Tensor.checkpoint([h], parameters: [w1, w2, ln], budget: budget) { inputs in
              calls += 1
              return [self.piece(inputs[0], w1, w2, ln)]
            }[0]
        } else {
          h = piece(h, w1, w2, ln)
        }
      }
      let saved = TapeStats.savedBytes - before
      (h * h).sum().backward()
      XCTAssertEqual(TapeStats.savedBytes, before, "budget \(bytes ?? -1): the tape is freed")
      return ([x.grad!, w1.grad!, w2.grad!, ln.grad!].map(\.scalars), saved, calls)
    }
    let plain = run(budget: nil)
    let pieceBytes = plain.saved / 3
    XCTAssertEqual(plain.saved, 3 * pieceBytes)
    XCTAssertGreaterThan(pieceBytes, x0.byteCount)

    let none = run(budget: 0)
    XCTAssertEqual(none.saved, 3 * x0.byteCount, "three checkpoints, each keeping its input")
    XCTAssertEqual(none.calls, 6, "each piece run in forward and again in backward")
    let all = run(budget: 3 * pieceBytes)
    XCTAssertEqual(all.saved, plain.saved)
    XCTAssertEqual(all.calls, 3, "nothing recomputed")
    let one = run(budget: pieceBytes + pieceBytes / 2)
    XCTAssertEqual(one.saved, pieceBytes + 2 * x0.byteCount)
    XCTAssertEqual(one.calls, 5, "the first piece kept, the other two recomputed")
    for result in [none, all, one] {
      for (got, reference) in zip(result.gradients, plain.gradients) {
        XCTAssertEqual(got.count, reference.count)
        for (a, b) in zip(got, reference) {
          XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)))
        }
      }
    }
  }

  func testParametersAloneMakeTheNodeAndInputsWithoutGradientGetNone() {
    // The input is frozen data; only the piece's weights train (a side network's ladder).
    let data = randomTensor([2, 4, 8], seed: 3)
    let (w1, w2, ln) = weights(seed: 20)
    piece(data, w1, w2, ln).sum().backward()
    let reference = w1.grad!.scalars
    let (v1, v2, lnB) = weights(seed: 20)
    let out = Tensor.checkpoint(data, parameters: [v1, v2, lnB]) { self.piece($0, v1, v2, lnB) }
    XCTAssertTrue(out.requiresGrad)
    out.sum().backward()
    XCTAssertNil(data.grad)
    for (a, b) in zip(v1.grad!.scalars, reference) { XCTAssertEqual(a, b, accuracy: 1e-6) }
  }

  func testSeveralOutputsEachGetTheirGradient() {
    let x0 = randomTensor([4, 6], seed: 5)
    let w = (randomTensor([6, 6], seed: 6) * 0.5).requiringGrad()
    let x = x0.copy().requiringGrad()
    let h = x.matmul(w).tanh()
    let m = h.mean(axis: 1)
    ((h * 2).sum() + (m * m).sum()).backward()
    let (gx, gw) = (x.grad!.scalars, w.grad!.scalars)

    let w2 = (randomTensor([6, 6], seed: 6) * 0.5).requiringGrad()
    let y = x0.copy().requiringGrad()
    let outs = Tensor.checkpoint([y], parameters: [w2]) { inputs in
      let h = inputs[0].matmul(w2).tanh()
      return [h * 2, h.mean(axis: 1)]
    }
    XCTAssertEqual(outs.map(\.shape), [[4, 6], [4]])
    (outs[0].sum() + (outs[1] * outs[1]).sum()).backward()
    for (a, b) in zip(y.grad!.scalars, gx) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    for (a, b) in zip(w2.grad!.scalars, gw) { XCTAssertEqual(a, b, accuracy: 1e-6) }
  }

  func testWithoutGradientItIsThePlainBody() {
    let x = randomTensor([2, 3], seed: 1)
    let before = TapeStats.liveNodes
    let out = Tensor.checkpoint(x) { $0.exp() }
    XCTAssertNil(out.gradFnName)
    XCTAssertEqual(TapeStats.liveNodes, before)
    XCTAssertEqual(out.scalars, x.exp().scalars)
  }
}
