import XCTest

@testable import GraftTensor

final class AttentionTests: XCTestCase {
  /// softmax(q·kᵀ·scale)·v from the separately tested matmul and softmax ops.
  private func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) -> Tensor {
    (q.matmul(k, transposeOther: true) * scale).softmax(axis: -1).matmul(v)
  }

  /// Splits a fused [B, N, 3·D] projection into q, k, v of [B, H, N, D/H] as timm does:
  /// `reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)`.
  private func split(_ qkv: Tensor, heads: Int) -> [Tensor] {
    let (b, n, w) = (qkv.shape[0], qkv.shape[1], qkv.shape[2])
    let d = w / 3 / heads
    let parts = qkv.reshaped([b, n, 3, heads, d]).permuted([2, 0, 3, 1, 4])
    return (0..<3).map { parts.narrow(0, start: $0, length: 1).squeezed(0) }
  }

  func testWorkedByHand() {
    // One head, two queries, two keys, d = 1, scale 1.
    let ln3 = Float(Foundation.log(3.0))
    let q = Tensor([0, ln3], shape: [1, 1, 2, 1])
    let k = Tensor([ln3, 1], shape: [1, 1, 2, 1])
    let v = Tensor([10, 20, 2, 4], shape: [1, 1, 2, 2])
    // Row 0: q = 0 scores (0, 0) → weights (½, ½); row 1: q = ln 3 scores (ln²3, ln 3).
    let out = Tensor.attention(q: q, k: k, v: v, scale: 1)
    let e0 = Foundation.exp(Double(ln3 * ln3))
    let e1 = Foundation.exp(Double(ln3))
    let w0 = Float(e0 / (e0 + e1))
    let expected: [Float] = [6, 12, w0 * 10 + (1 - w0) * 2, w0 * 20 + (1 - w0) * 4]
    assertClose(out.scalars, expected, tolerance: 1e-5)
    XCTAssertEqual(out.shape, [1, 1, 2, 2])
  }

  func testMatchesComposedOps() {
    let q = randomTensor([2, 3, 5, 4], seed: 1, low: -2, high: 2)
    let k = randomTensor([2, 3, 7, 4], seed: 2, low: -2, high: 2)
    let v = randomTensor([2, 3, 7, 6], seed: 3)
    let out = Tensor.attention(q: q, k: k, v: v)
    XCTAssertEqual(out.shape, [2, 3, 5, 6])
    assertClose(out.scalars, reference(q, k, v, scale: 0.5).scalars, tolerance: 1e-5)
    let scaled = Tensor.attention(q: q, k: k, v: v, scale: 1.3)
    assertClose(scaled.scalars, reference(q, k, v, scale: 1.3).scalars, tolerance: 1e-5)
  }

  func testFusedMatchesSplitHeads() {
    let (b, n, dim, heads) = (3, 6, 8, 2)
    let qkv = randomTensor([b, n, 3 * dim], seed: 4, low: -2, high: 2)
    let out = Tensor.attention(qkv: qkv, heads: heads)
    XCTAssertEqual(out.shape, [b, n, dim])
    let parts = split(qkv, heads: heads)
    let perHead = reference(parts[0], parts[1], parts[2], scale: 1 / Float(2))  // d = 4
    let merged = perHead.permuted([0, 2, 1, 3]).reshaped([b, n, dim])
    assertClose(out.scalars, merged.scalars, tolerance: 1e-5)
  }

  func testOneImageSplitsQueryRowsAcrossThreadsAndMatches() {
    // One image's three heads are fewer pairs than two per thread: each head's 7 query rows
    // run in uneven blocks (4 + 3 on two threads). Kept probabilities land at their rows too.
    let qkv = randomTensor([1, 7, 3 * 12], seed: 9, low: -2, high: 2)
    let parts = split(qkv, heads: 3)
    let expected = reference(parts[0], parts[1], parts[2], scale: 0.5)
      .permuted([0, 2, 1, 3]).reshaped([1, 7, 12])
    assertClose(
      Tensor.attention(qkv: qkv, heads: 3).scalars, expected.scalars, tolerance: 1e-5)
    let x = qkv.copy().requiringGrad()
    let y = qkv.copy().requiringGrad()
    let weights = randomTensor([1, 7, 12], seed: 10)
    (Tensor.attention(qkv: x, heads: 3, keepProbabilities: true) * weights).sum().backward()
    (Tensor.attention(qkv: y, heads: 3) * weights).sum().backward()
    let z = qkv.copy().requiringGrad()
    let zParts = split(z, heads: 3)
    let composed = reference(zParts[0], zParts[1], zParts[2], scale: 0.5)
      .permuted([0, 2, 1, 3]).reshaped([1, 7, 12])
    (composed * weights).sum().backward()
    assertClose(x.grad!.scalars, z.grad!.scalars, tolerance: 1e-4)
    assertClose(y.grad!.scalars, z.grad!.scalars, tolerance: 1e-4)
  }

  func testLargeBatchRunsInParallelAndMatches() {
    // Enough work per call to split across the pool.
    let qkv = randomTensor([4, 40, 3 * 48], seed: 5)
    let out = Tensor.attention(qkv: qkv, heads: 3)
    let parts = split(qkv, heads: 3)
    let merged = reference(parts[0], parts[1], parts[2], scale: 0.25)
      .permuted([0, 2, 1, 3]).reshaped([4, 40, 48])
    assertClose(out.scalars, merged.scalars, tolerance: 1e-5)
  }

  func testGradientSeparateInputs() {
    let q = randomTensor([2, 2, 3, 4], seed: 6)
    let k = randomTensor([2, 2, 5, 4], seed: 7)
    let v = randomTensor([2, 2, 5, 3], seed: 8)
    assertGradients([q, k, v]) { xs in Tensor.attention(q: xs[0], k: xs[1], v: xs[2], scale: 0.7) }
  }

  func testGradientFused() {
    let qkv = randomTensor([2, 4, 3 * 6], seed: 9, low: -1.5, high: 1.5)
    assertGradients([qkv]) { xs in Tensor.attention(qkv: xs[0], heads: 3) }
    assertGradients([qkv]) { xs in
      Tensor.attention(qkv: xs[0], heads: 3, keepProbabilities: true)
    }
  }

  func testGradientSeparateInputsKeepingProbabilities() {
    let q = randomTensor([2, 2, 3, 4], seed: 30)
    let k = randomTensor([2, 2, 5, 4], seed: 31)
    let v = randomTensor([2, 2, 5, 3], seed: 32)
    assertGradients([q, k, v]) { xs in
      Tensor.attention(q: xs[0], k: xs[1], v: xs[2], scale: 0.7, keepProbabilities: true)
    }
  }

  /// Recomputing the probabilities in backward runs the forward pass's own steps again, so both
  /// ways give the same gradient.
  func testRecomputedProbabilitiesGiveTheKeptOnesGradient() {
    let data = randomTensor([3, 20, 3 * 16], seed: 33, low: -2, high: 2)
    let weights = randomTensor([3, 20, 16], seed: 34)
    var grads: [[Float]] = []
    for keep in [true, false] {
      let qkv = data.copy().requiringGrad()
      (Tensor.attention(qkv: qkv, heads: 4, keepProbabilities: keep) * weights).sum().backward()
      grads.append(qkv.grad!.scalars)
    }
    assertClose(grads[1], grads[0], tolerance: 1e-6)
  }

  func testGradientWhenOnlySomeInputsTrain() {
    let q = randomTensor([1, 2, 3, 4], seed: 10)
    let k = randomTensor([1, 2, 4, 4], seed: 11)
    let v = randomTensor([1, 2, 4, 2], seed: 12)
    // Only v trains: the score gradient is skipped, and v's must still be right.
    assertGradients([v]) { xs in Tensor.attention(q: q, k: k, v: xs[0]) }
    XCTAssertNil(q.grad)
    // Only q trains.
    let q2 = randomTensor([1, 2, 3, 4], seed: 13)
    assertGradients([q2]) { xs in Tensor.attention(q: xs[0], k: k, v: v) }
  }

  func testSavesInputsAndProbabilitiesOnly() {
    let qkv = randomTensor([2, 5, 3 * 8], seed: 14).requiringGrad()
    let before = TapeStats.savedBytes
    let out = Tensor.attention(qkv: qkv, heads: 2, keepProbabilities: true)
    // qkv (2·5·24 floats) and P (2·2·5·5 floats).
    XCTAssertEqual(TapeStats.savedBytes - before, (2 * 5 * 24 + 2 * 2 * 5 * 5) * 4)
    XCTAssertEqual(out.gradFnName, "fused_qkv_attention")
    out.sum().backward()
    XCTAssertEqual(TapeStats.savedBytes, before)
    XCTAssertEqual(qkv.grad?.shape, [2, 5, 24])
    // By default only qkv is kept.
    let recomputing = Tensor.attention(qkv: qkv, heads: 2)
    XCTAssertEqual(TapeStats.savedBytes - before, 2 * 5 * 24 * 4)
    let q = randomTensor([1, 2, 3, 4], seed: 35).requiringGrad()
    let separate = Tensor.attention(q: q, k: q, v: q)
    XCTAssertEqual(TapeStats.savedBytes - before, (2 * 5 * 24 + 3 * 1 * 2 * 3 * 4) * 4)
    separate.sum().backward()
    recomputing.sum().backward()
    XCTAssertEqual(TapeStats.savedBytes, before)
  }

  // MARK: Attention with its output projection

  func testAttentionProjectionMatchesTheComposition() {
    let qkv = randomTensor([3, 7, 3 * 12], seed: 40, low: -2, high: 2)
    let w = randomTensor([10, 12], seed: 41)
    let b = randomTensor([10], seed: 42)
    let y = Tensor.attentionProjection(qkv: qkv, heads: 3, weight: w, bias: b)
    XCTAssertEqual(y.shape, [3, 7, 10])
    let reference = Tensor.attention(qkv: qkv, heads: 3).matmul(w, transposeOther: true) + b
    assertClose(y.scalars, reference.scalars, tolerance: 1e-5)
    let noBias = Tensor.attentionProjection(qkv: qkv, heads: 3, weight: w, bias: nil, scale: 0.3)
    let scaled = Tensor.attention(qkv: qkv, heads: 3, scale: 0.3).matmul(w, transposeOther: true)
    assertClose(noBias.scalars, scaled.scalars, tolerance: 1e-5)
  }

  func testAttentionProjectionGradients() {
    let qkv = randomTensor([2, 4, 3 * 6], seed: 43, low: -1.5, high: 1.5)
    let w = randomTensor([5, 6], seed: 44)
    let b = randomTensor([5], seed: 45)
    for keep in [false, true] {
      assertGradients([qkv, w, b]) { xs in
        Tensor.attentionProjection(
          qkv: xs[0], heads: 2, weight: xs[1], bias: xs[2], keepProbabilities: keep)
      }
    }
    // Only the projection trains (the attention result is rebuilt for dW), or only qkv.
    let (qf, wf) = (qkv.detached(), w.detached())
    assertGradients([w]) { xs in
      Tensor.attentionProjection(qkv: qf, heads: 2, weight: xs[0], bias: nil)
    }
    assertGradients([qkv]) { xs in
      Tensor.attentionProjection(qkv: xs[0], heads: 3, weight: wf, bias: nil)
    }
    XCTAssertNil(qf.grad)
    XCTAssertNil(wf.grad)
  }

  func testAttentionProjectionKeepsQKVAndTheWeightOnly() {
    let (b, n, dim, out) = (2, 5, 8, 6)
    let qkv = randomTensor([b, n, 3 * dim], seed: 46).requiringGrad()
    let w = randomTensor([out, dim], seed: 47).requiringGrad()
    let bias = randomTensor([out], seed: 48).requiringGrad()
    let before = TapeStats.savedBytes
    let y = Tensor.attentionProjection(qkv: qkv, heads: 2, weight: w, bias: bias)
    XCTAssertEqual(y.gradFnName, "attention_projection")
    XCTAssertEqual(TapeStats.savedBytes - before, (b * n * 3 * dim + out * dim) * 4)
    let unfused = Tensor.attention(qkv: qkv, heads: 2).linear(weight: w, bias: bias)
    XCTAssertEqual(
      TapeStats.savedBytes - before, 2 * (b * n * 3 * dim + out * dim) * 4 + b * n * dim * 4,
      "the unfused pair also keeps the attention result")
    unfused.sum().backward()
    y.sum().backward()
    XCTAssertEqual(TapeStats.savedBytes, before)
    // Only the bias trains: nothing is kept.
    let frozen = randomTensor([b, n, 3 * dim], seed: 49)
    let z = Tensor.attentionProjection(qkv: frozen, heads: 2, weight: w.detached(), bias: bias)
    XCTAssertEqual(TapeStats.savedBytes, before)
    XCTAssertTrue(z.requiresGrad)
  }

  func testNoGradKeepsNothing() {
    let qkv = randomTensor([2, 5, 3 * 8], seed: 15).requiringGrad()
    let (bytes, nodes) = (TapeStats.savedBytes, TapeStats.liveNodes)
    let out = withNoGrad { Tensor.attention(qkv: qkv, heads: 2) }
    XCTAssertFalse(out.requiresGrad)
    XCTAssertEqual(TapeStats.savedBytes, bytes)
    XCTAssertEqual(TapeStats.liveNodes, nodes)
    // Frozen inputs in grad mode record nothing either.
    let frozen = randomTensor([1, 1, 3, 2], seed: 16)
    let y = Tensor.attention(q: frozen, k: frozen, v: frozen)
    XCTAssertFalse(y.requiresGrad)
    XCTAssertEqual(TapeStats.liveNodes, nodes)
  }
}
