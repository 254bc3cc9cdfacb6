import XCTest

@testable import GraftTensor

/// The fused layer ops give the values and gradients of the ops they fuse, and keep less.
final class FusedLayersTests: XCTestCase {
  private let floatBytes = MemoryLayout<Float>.stride

  /// Bytes the tape gains while `body` builds a graph that stays alive until it returns.
  private func tapeGrowth(_ body: () -> Tensor) -> (bytes: Int, output: Tensor) {
    let before = TapeStats.savedBytes
    let out = body()
    return (TapeStats.savedBytes - before, out)
  }

  // MARK: linear

  func testLinearWorkedByHand() {
    // x = [[1, 2], [3, 4]], W = [[1, 0], [1, 1], [0, −1]], b = [10, 20, 30]:
    // rows of x·Wᵀ are (1, 3, −2) and (3, 7, −4).
    let x = Tensor([1, 2, 3, 4], shape: [2, 2])
    let w = Tensor([1, 0, 1, 1, 0, -1], shape: [3, 2])
    let b = Tensor([10, 20, 30])
    XCTAssertEqual(x.linear(weight: w, bias: b).scalars, [11, 23, 28, 13, 27, 26])
    XCTAssertEqual(x.linear(weight: w).scalars, [1, 3, -2, 3, 7, -4])
    let v = Tensor([1, 2]).linear(weight: w, bias: b)
    XCTAssertEqual(v.shape, [3])
    XCTAssertEqual(v.scalars, [11, 23, 28])
  }

  func testLinearMatchesMatmulPlusBias() {
    let x = randomTensor([3, 5, 7], seed: 1)
    let w = randomTensor([4, 7], seed: 2)
    let b = randomTensor([4], seed: 3)
    let y = x.linear(weight: w, bias: b)
    XCTAssertEqual(y.shape, [3, 5, 4])
    assertClose(y.scalars, (x.matmul(w, transposeOther: true) + b).scalars, tolerance: 1e-5)
    // Large enough for the GEMM to split across threads.
    let big = randomTensor([300, 64], seed: 4)
    let wb = randomTensor([96, 64], seed: 5)
    let bb = randomTensor([96], seed: 6)
    assertClose(
      big.linear(weight: wb, bias: bb).scalars,
      (big.matmul(wb, transposeOther: true) + bb).scalars, tolerance: 1e-4)
  }

  func testLinearGradients() {
    let x = randomTensor([2, 3, 5], seed: 7)
    let w = randomTensor([4, 5], seed: 8)
    let b = randomTensor([4], seed: 9)
    assertGradients([x, w, b]) { xs in xs[0].linear(weight: xs[1], bias: xs[2]) }
    assertGradients([x, w]) { xs in xs[0].linear(weight: xs[1]) }
    // Only the bias trains.
    let (x2, w2) = (randomTensor([3, 5], seed: 10), randomTensor([4, 5], seed: 11))
    assertGradients([b]) { xs in x2.linear(weight: w2, bias: xs[0]) }
    XCTAssertNil(w2.grad)
  }

  func testLinearKeepsOnlyWhatTheOtherGradientNeeds() {
    let w = randomTensor([4, 5], seed: 12)
    let b = randomTensor([4], seed: 13).requiringGrad()
    let x = randomTensor([6, 5], seed: 14)
    // Only the bias trains: nothing is kept.
    XCTAssertEqual(tapeGrowth { x.linear(weight: w, bias: b) }.bytes, 0)
    // A trainable input through a frozen weight keeps the weight, not the input.
    let xt = randomTensor([6, 5], seed: 15).requiringGrad()
    XCTAssertEqual(tapeGrowth { xt.linear(weight: w, bias: b) }.bytes, 4 * 5 * floatBytes)
    // A trainable weight on a plain input keeps the input only.
    w.requiresGrad = true
    let (bytes, y) = tapeGrowth { x.linear(weight: w, bias: b) }
    XCTAssertEqual(bytes, 6 * 5 * floatBytes)
    XCTAssertEqual(y.gradFnName, "linear")
    y.sum().backward()
    // dW = gᵀ·x with g all ones: column sums of x on every row; db = the row count.
    let colSums = (0..<5).map { j in (0..<6).reduce(Float(0)) { $0 + x[$1, j] } }
    for r in 0..<4 { assertClose((0..<5).map { w.grad![r, $0] }, colSums, tolerance: 1e-5) }
    XCTAssertEqual(b.grad?.scalars, [6, 6, 6, 6])
  }

  /// A bias gradient over many rows is summed by several threads; the total is the same.
  func testBiasGradientOverManyRows() {
    let (rows, outF) = (1000, 80)
    let x = randomTensor([rows, 3], seed: 16)
    let w = randomTensor([outF, 3], seed: 17)
    let b = Tensor.zeros([outF]).requiringGrad()
    let c = randomTensor([rows, outF], seed: 18)
    (x.linear(weight: w, bias: b) * c).sum().backward()
    let expected = (0..<outF).map { j in
      Float((0..<rows).reduce(0.0) { $0 + Double(c[$1, j]) })
    }
    assertClose(b.grad!.scalars, expected, tolerance: 1e-3)
  }

  /// An empty batch gives empty outputs and zero weight gradients.
  func testEmptyBatch() {
    let x = Tensor(shape: [0, 6])
    let w = randomTensor([4, 6], seed: 19).requiringGrad()
    let outputs = [
      x.linear(weight: w), x.activationLinear(.gelu, weight: w, bias: nil),
      x.layerNormLinear(normWeight: nil, normBias: nil, weight: w, bias: nil),
    ]
    for y in outputs {
      XCTAssertEqual(y.shape, [0, 4])
      w.grad = nil
      y.sum().backward()
      XCTAssertEqual(w.grad?.scalars, [Float](repeating: 0, count: 24))
    }
  }

  // MARK: layerNormLinear

  /// The norm's and the layer's parameters, fresh, for one case.
  private func normLinearParameters(_ d: Int, _ out: Int, seed: UInt64) -> [Tensor] {
    [
      randomTensor([d], seed: seed, low: 0.5, high: 1.5), randomTensor([d], seed: seed + 1),
      randomTensor([out, d], seed: seed + 2), randomTensor([out], seed: seed + 3),
    ]
  }

  func testLayerNormLinearMatchesTheComposition() {
    let x = randomTensor([3, 7, 16], seed: 20, low: -2, high: 3)
    let p = normLinearParameters(16, 12, seed: 21)
    let reference = x.layerNorm(weight: p[0], bias: p[1], eps: 1e-6).linear(
      weight: p[2], bias: p[3])
    for chunk in [fusedChunkFloats, 16 * 4, 16] {  // one chunk, 4-row chunks, 1-row chunks
      let y = x.layerNormLinear(
        normWeight: p[0], normBias: p[1], eps: 1e-6, weight: p[2], bias: p[3], chunkFloats: chunk)
      XCTAssertEqual(y.shape, [3, 7, 12])
      assertClose(y.scalars, reference.scalars, tolerance: 1e-5)
    }
    // Without affine norm parameters and without a bias.
    let plain = x.layerNormLinear(normWeight: nil, normBias: nil, weight: p[2], bias: nil)
    assertClose(plain.scalars, x.layerNorm().linear(weight: p[2]).scalars, tolerance: 1e-5)
  }

  func testLayerNormLinearGradients() {
    let x = randomTensor([2, 5, 6], seed: 30, low: -2, high: 2)
    let p = normLinearParameters(6, 4, seed: 31)
    for chunk in [fusedChunkFloats, 6 * 3] {  // 10 rows: one chunk, or chunks of 3, 3, 3, 1
      assertGradients([x] + p) { xs in
        xs[0].layerNormLinear(
          normWeight: xs[1], normBias: xs[2], eps: 1e-5, weight: xs[3], bias: xs[4],
          chunkFloats: chunk)
      }
    }
  }

  /// Low-rank deltas on column ranges (LoRA on q and v of a fused qkv): the values of the
  /// composition, and gradients for x, the norm, W and both factors, across chunks.
  func testLayerNormLinearWithLowRankDeltas() {
    let (d, out, r) = (6, 9, 2)
    let x = randomTensor([2, 5, d], seed: 32, low: -2, high: 2)
    let p = normLinearParameters(d, out, seed: 33)
    let (a1, b1) = (randomTensor([r, d], seed: 34), randomTensor([3, r], seed: 35))
    let (a2, b2) = (randomTensor([r, d], seed: 36), randomTensor([3, r], seed: 37))
    func deltas(_ t: [Tensor]) -> [LowRankDelta] {
      [
        LowRankDelta(down: t[0], up: t[1], scale: 0.5, columnOffset: 0),
        LowRankDelta(down: t[2], up: t[3], scale: 0.5, columnOffset: 6),
      ]
    }
    let normed = x.layerNorm(weight: p[0], bias: p[1])
    let base = normed.linear(weight: p[2], bias: p[3])
    let first = normed.matmul(a1, transposeOther: true).matmul(b1, transposeOther: true) * 0.5
    let last = normed.matmul(a2, transposeOther: true).matmul(b2, transposeOther: true) * 0.5
    let reference =
      base + Tensor.concat([first, Tensor.zeros([2, 5, 3]), last], axis: 2)
    for chunk in [fusedChunkFloats, d * 3] {
      let y = x.layerNormLinear(
        normWeight: p[0], normBias: p[1], eps: 1e-5, weight: p[2], bias: p[3],
        deltas: deltas([a1, b1, a2, b2]), chunkFloats: chunk)
      assertClose(y.scalars, reference.scalars, tolerance: 1e-5)
      assertGradients([x, a1, b1, a2, b2] + p) { xs in
        xs[0].layerNormLinear(
          normWeight: xs[5], normBias: xs[6], eps: 1e-5, weight: xs[7], bias: xs[8],
          deltas: deltas(Array(xs[1...4])), chunkFloats: chunk)
      }
    }
    // Only the factors train (a frozen backbone's LoRA): they still get their gradients.
    let (fa, fb) = (a1.detached().requiringGrad(), b1.detached().requiringGrad())
    let frozen = p.map { $0.detached() }
    let y = x.detached().layerNormLinear(
      normWeight: frozen[0], normBias: frozen[1], weight: frozen[2], bias: frozen[3],
      deltas: [LowRankDelta(down: fa, up: fb, scale: 0.5, columnOffset: 0)])
    y.sum().backward()
    XCTAssertNotNil(fa.grad)
    XCTAssertNotNil(fb.grad)
  }

  func testLayerNormLinearGradientsWhenOnlySomeInputsTrain() {
    let p = normLinearParameters(6, 4, seed: 40)
    func run(_ trains: [Int]) {
      let x = randomTensor([7, 6], seed: 41, low: -2, high: 2)
      let all = [x] + p.map { $0.detached() }
      assertGradients(trains.map { all[$0] }) { xs in
        var args = all
        for (i, t) in zip(trains, xs) { args[i] = t }
        return args[0].layerNormLinear(
          normWeight: args[1], normBias: args[2], eps: 1e-5, weight: args[3], bias: args[4],
          chunkFloats: 12)
      }
      for i in 0..<5 where !trains.contains(i) {
        XCTAssertNil(all[i].grad, "input \(i) is frozen when training \(trains)")
      }
    }
    run([0])  // prompts through a frozen backbone
    run([1])  // LN-tuning: the norm's scale
    run([2])  // the norm's shift alone
    run([3])  // the layer's weight alone
    run([1, 2, 4])
  }

  func testLayerNormLinearKeepsTheInputNotTheNormalisedRows() {
    let (rows, d, out) = (10, 8, 12)
    let x = randomTensor([rows, d], seed: 50).requiringGrad()
    let p = normLinearParameters(d, out, seed: 51).map { $0.requiringGrad() }
    let (fused, y) = tapeGrowth {
      x.layerNormLinear(normWeight: p[0], normBias: p[1], weight: p[2], bias: p[3])
    }
    // x, the per-row mean and 1/std, the weight, and the norm's two vectors.
    XCTAssertEqual(fused, (rows * d + rows * 2 + out * d + 2 * d) * floatBytes)
    XCTAssertEqual(y.gradFnName, "layer_norm_linear")
    let (unfused, _) = tapeGrowth {
      x.layerNorm(weight: p[0], bias: p[1]).linear(weight: p[2], bias: p[3])
    }
    // The unfused norm keeps x, the statistics and its scale, the layer keeps its input and W;
    // the fused op also keeps the norm's shift (to rebuild the rows), not the rows themselves.
    XCTAssertEqual(unfused - fused, (rows * d - d) * floatBytes, "the normalised rows are not kept")
    // A trainable input through a frozen backbone: x, statistics, W and the norm's scale.
    let frozen = normLinearParameters(d, out, seed: 52)
    let input = randomTensor([rows, d], seed: 53)
    XCTAssertEqual(
      tapeGrowth {
        input.requiringGrad().layerNormLinear(
          normWeight: frozen[0], normBias: frozen[1], weight: frozen[2], bias: frozen[3])
      }.bytes, (rows * d + rows * 2 + out * d + d) * floatBytes)
    // Only the layer's bias trains: nothing is kept at all.
    input.requiresGrad = false
    let bias = frozen[3].requiringGrad()
    XCTAssertEqual(
      tapeGrowth {
        input.layerNormLinear(
          normWeight: frozen[0], normBias: frozen[1], weight: frozen[2], bias: bias)
      }.bytes, 0)
    let before = TapeStats.savedBytes
    y.sum().backward()
    XCTAssertEqual(TapeStats.savedBytes, before - fused)
  }

  // MARK: activationLinear

  func testActivationLinearMatchesTheComposition() {
    let x = randomTensor([4, 5, 24], seed: 60, low: -3, high: 3)
    let w = randomTensor([10, 24], seed: 61)
    let b = randomTensor([10], seed: 62)
    let cases: [(FusedActivation, (Tensor) -> Tensor)] = [
      (.gelu, { $0.gelu() }), (.geluTanh, { $0.geluTanh() }), (.quickGELU, { $0.quickGELU() }),
    ]
    for (kind, act) in cases {
      let reference = act(x).linear(weight: w, bias: b)
      for chunk in [fusedChunkFloats, 24 * 3] {
        let y = x.activationLinear(kind, weight: w, bias: b, chunkFloats: chunk)
        XCTAssertEqual(y.shape, [4, 5, 10])
        assertClose(y.scalars, reference.scalars, tolerance: 1e-5)
      }
    }
  }

  func testActivationLinearGradients() {
    let x = randomTensor([3, 4, 6], seed: 70, low: -2.5, high: 2.5)
    let w = randomTensor([5, 6], seed: 71)
    let b = randomTensor([5], seed: 72)
    for kind in FusedActivation.allCases {
      for chunk in [fusedChunkFloats, 6 * 5] {  // 12 rows: one chunk, or 5, 5, 2
        assertGradients([x, w, b]) { xs in
          xs[0].activationLinear(kind, weight: xs[1], bias: xs[2], chunkFloats: chunk)
        }
      }
    }
    // Only the input, only the weight.
    let (wf, xf) = (w.detached(), x.detached())
    assertGradients([x]) { xs in xs[0].activationLinear(.gelu, weight: wf, bias: nil) }
    assertGradients([w]) { xs in xf.activationLinear(.gelu, weight: xs[0], bias: nil) }
    XCTAssertNil(wf.grad)
    XCTAssertNil(xf.grad)
  }

  func testActivationLinearKeepsThePreActivationOnly() {
    let (rows, hidden, out) = (9, 16, 4)
    let pre = randomTensor([rows, hidden], seed: 80).requiringGrad()
    let w = randomTensor([out, hidden], seed: 81).requiringGrad()
    let b = randomTensor([out], seed: 82).requiringGrad()
    let (fused, y) = tapeGrowth { pre.activationLinear(.gelu, weight: w, bias: b) }
    XCTAssertEqual(fused, (rows * hidden + out * hidden) * floatBytes)
    XCTAssertEqual(y.gradFnName, "gelu_linear")
    let (unfused, _) = tapeGrowth { pre.gelu().linear(weight: w, bias: b) }
    XCTAssertEqual(unfused - fused, rows * hidden * floatBytes, "the activation is not kept")
    y.sum().backward()
    XCTAssertNotNil(pre.grad)
  }

  // MARK: inputs rebuilt in backward

  /// `activationLinear` and `attentionProjection` given an `InputRebuild` keep the rebuild's
  /// sources instead of their input, and give exactly the gradients they give keeping it.
  func testRebuiltInputsGiveTheSameGradientsAndKeepOnlyTheSources() {
    let (rows, d, hidden) = (10, 12, 20)
    let gamma = randomTensor([d], seed: 90, low: 0.5, high: 1.5)
    let beta = randomTensor([d], seed: 91)
    let w1 = randomTensor([hidden, d], seed: 92).requiringGrad()
    let b1 = randomTensor([hidden], seed: 93).requiringGrad()
    let w2 = randomTensor([d, hidden], seed: 94).requiringGrad()
    let b2 = randomTensor([d], seed: 95).requiringGrad()
    let source = randomTensor([2, rows / 2, d], seed: 96, low: -2, high: 2)
    func mlp(rebuilt: Bool, weightsTrain: Bool) -> (grads: [[Float]], tape: Int, y: [Float]) {
      let x = source.detached().requiringGrad()
      for t in [w1, b1, w2, b2] {
        t.grad = nil
        t.requiresGrad = weightsTrain || t === b2
      }
      let (tape, y) = tapeGrowth {
        let h = x.layerNormLinear(normWeight: gamma, normBias: beta, weight: w1, bias: b1)
        let rebuild = InputRebuild(sources: [x]) {
          x.layerNormLinear(normWeight: gamma, normBias: beta, weight: w1, bias: b1)
        }
        return h.activationLinear(.gelu, weight: w2, bias: b2, rebuild: rebuilt ? rebuild : nil)
      }
      (y * y).sum().backward()
      let grads = [x, w1, b1, w2, b2].map { $0.grad?.scalars ?? [] }
      return (grads, tape, y.scalars)
    }
    for weightsTrain in [false, true] {
      let kept = mlp(rebuilt: false, weightsTrain: weightsTrain)
      let rebuilt = mlp(rebuilt: true, weightsTrain: weightsTrain)
      XCTAssertEqual(rebuilt.y, kept.y)
      XCTAssertEqual(rebuilt.grads, kept.grads, "weights train: \(weightsTrain)")
      XCTAssertFalse(kept.grads[0].isEmpty)
      XCTAssertEqual(kept.grads[3].isEmpty, !weightsTrain)
      // The hidden pre-activation is no longer kept: the node keeps x (already kept by the norm).
      XCTAssertEqual(
        kept.tape - rebuilt.tape, (rows * hidden - rows * d) * floatBytes,
        "weights train: \(weightsTrain)")
    }

    let heads = 2
    let wq = randomTensor([3 * d, d], seed: 97)
    let bq = randomTensor([3 * d], seed: 98).requiringGrad()
    let wo = randomTensor([d, d], seed: 99).requiringGrad()
    func attention(rebuilt: Bool, keepProbabilities: Bool) -> (grads: [[Float]], tape: Int) {
      let x = source.detached().requiringGrad()
      for t in [bq, wo] { t.grad = nil }
      let (tape, y) = tapeGrowth {
        let qkv = x.layerNormLinear(normWeight: gamma, normBias: beta, weight: wq, bias: bq)
        let rebuild = InputRebuild(sources: [x]) {
          x.layerNormLinear(normWeight: gamma, normBias: beta, weight: wq, bias: bq)
        }
        return Tensor.attentionProjection(
          qkv: qkv, heads: heads, weight: wo, bias: nil, keepProbabilities: keepProbabilities,
          rebuildQKV: rebuilt ? rebuild : nil)
      }
      (y * y).sum().backward()
      return ([x, bq, wo].map { $0.grad?.scalars ?? [] }, tape)
    }
    for keep in [false, true] {
      let kept = attention(rebuilt: false, keepProbabilities: keep)
      let rebuilt = attention(rebuilt: true, keepProbabilities: keep)
      XCTAssertEqual(rebuilt.grads, kept.grads)
      XCTAssertFalse(kept.grads.contains { $0.isEmpty })
      XCTAssertEqual(kept.tape - rebuilt.tape, (rows * 3 * d - rows * d) * floatBytes)
    }
  }
}
