import CBLAS
import CDNNLShim
import CKernels

// Scaled dot-product attention, softmax(q·kᵀ·scale)·v, as one op with a hand-written backward.
//
// Each (batch, head) pair is two small GEMMs and a row softmax. The pairs are independent, so the
// pool runs them in parallel, each calling single-threaded OpenBLAS directly: no thread ever
// waits on another and OpenBLAS never spawns threads of its own (see Matmul.swift). Operands are
// read in place through BLAS leading dimensions, so the fused `[B, N, 3·D]` projection of a ViT
// block is consumed without splitting it into q, k and v, and the result is written straight
// into `[B, N, D]` with the heads side by side: no permute copies in either direction.
//
// Backward reads q, k, v (the inputs) and the attention probabilities P:
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale,  dQ = dS·K,  dK = dSᵀ·Q.
// By default P is not kept but rebuilt per (batch, head) inside backward, exactly as the forward
// pass made it (the same GEMM and softmax): one extra small GEMM per pair instead of keeping
// [B, H, N, N] floats per layer, about as many as q, k and v together in a ViT-S/16 block.

/// Where the matrix of one (batch, head) pair starts and how far apart its rows are.
struct AttentionLayout {
  let batchStride: Int
  let headStride: Int
  /// Row stride (the BLAS leading dimension).
  let rowStride: Int

  @inline(__always) func offset(_ b: Int, _ h: Int) -> Int { b * batchStride + h * headStride }
}

/// Sizes and layouts of one attention call; shared by forward and backward.
struct AttentionProblem {
  let batch: Int
  let heads: Int
  /// Query rows and key/value rows per (batch, head).
  let nq: Int
  let nk: Int
  /// Query/key width and value width.
  let d: Int
  let dv: Int
  let scale: Float
  let q: AttentionLayout
  let k: AttentionLayout
  let v: AttentionLayout
  let out: AttentionLayout

  var pairs: Int { batch * heads }

  /// Pairs per pool task: small problems run inline rather than pay for a thread hand-off.
  var grain: Int { Swift.max(1, 262_144 / Swift.max(1, 2 * nq * nk * (d + dv))) }
}

/// One per-head product, C = alpha·op(A)·op(B). Heads at most `smallHeadWidth` wide (LST's side
/// network: 4) make products with a side that narrow, which OpenBLAS runs mostly outside its
/// kernel; `graft_small_sgemm` runs them 1.3–1.5× faster (50 tokens, 4 or 8 wide).
@inline(__always)
private func gemm(
  _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
  _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
  _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
  if Swift.min(n, k) <= smallHeadWidth && k * smallProductRowFloats(n) <= smallProductPack {
    graft_small_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, c, ldc)
  } else {
    sgemmBlock(a, transA, lda, b, transB, ldb, c, ldc, m: m, n: n, k: k, alpha: alpha, beta: 0)
  }
}

/// Head widths up to this run their products on `graft_small_sgemm`.
let smallHeadWidth = 16
/// The floats `graft_small_sgemm` can pack op(B) into.
private let smallProductPack = Int(GRAFT_SMALL_SGEMM_PACK)

/// A packed row of op(B) in `graft_small_sgemm`: n rounded up to 4, 8 or a multiple of 16.
@inline(__always)
private func smallProductRowFloats(_ n: Int) -> Int {
  n <= 4 ? 4 : n <= 8 ? 8 : (n + 15) / 16 * 16
}

/// In-place softmax of `rows` contiguous rows of `n` (already scaled) logits, on the vector
/// kernel the `softmax` op uses: with heads 4 or 8 wide, as in LST's side network, the
/// exponentials cost more than the two products around them.
@inline(__always)
private func softmaxRows(_ s: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
  graft_softmax_rows(s, s, rows, n, 0)
}

/// q, k and v rounded to BF16 and laid out as the FP32 operands, for attention whose two
/// products run on oneDNN's BF16 matmul (the attention of a block whose matrices are in BF16).
struct BF16Operands {
  let q: UnsafePointer<UInt16>
  let k: UnsafePointer<UInt16>
  let v: UnsafePointer<UInt16>
}

/// S = scale·q·kᵀ for `rows` query rows from `first` of pair (b, h), into `s` ([rows, nk]): on
/// oneDNN from the BF16 operands when given, else on OpenBLAS.
@inline(__always)
private func scores(
  _ p: AttentionProblem, _ b: Int, _ h: Int, first: Int, rows: Int, q: UnsafePointer<Float>,
  k: UnsafePointer<Float>, _ low: BF16Operands?, into s: UnsafeMutablePointer<Float>
) {
  let qOffset = p.q.offset(b, h) + first * p.q.rowStride
  if let low {
    bf16GEMM(
      low.q + qOffset, p.q.rowStride, low.k + p.k.offset(b, h), p.k.rowStride, bTransposed: true,
      s, p.nk, m: rows, n: p.nk, k: p.d, alpha: p.scale)
  } else {
    gemm(
      false, true, rows, p.nk, p.d, p.scale, q + qOffset, p.q.rowStride, k + p.k.offset(b, h),
      p.k.rowStride, s, p.nk)
  }
}

/// Runs the forward pass; writes P into `probs` ([pairs, nq, nk]) when given, else uses scratch.
/// With `low` both products run in BF16 (P rounded to BF16 for the second), FP32 accumulation.
private func attentionForward(
  _ p: AttentionProblem, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
  v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
  probs: UnsafeMutablePointer<Float>?, low: BF16Operands? = nil
) {
  _ = blasSingleThreaded
  let (nq, nk, dv) = (p.nq, p.nk, p.dv)
  // Few pairs (one image's heads) would leave a thread idle: split each pair's query rows into
  // blocks so that there are at least two work items per thread. Rows are independent here.
  let threads = Parallel.threadCount
  let blocks = p.pairs >= 2 * threads ? 1 : Swift.min(nq, (2 * threads + p.pairs - 1) / p.pairs)
  let rowsPerBlock = (nq + blocks - 1) / blocks
  Parallel.forRange(p.pairs * blocks, grain: p.grain * blocks) { range in
    let scratch: UnsafeMutablePointer<Float>? =
      probs == nil ? .allocate(capacity: Swift.max(1, rowsPerBlock * nk)) : nil
    let roundedP: UnsafeMutablePointer<UInt16>? =
      low == nil ? nil : .allocate(capacity: Swift.max(1, rowsPerBlock * nk))
    defer {
      scratch?.deallocate()
      roundedP?.deallocate()
    }
    for item in range {
      let (pair, block) = (item / blocks, item % blocks)
      let (b, h) = (pair / p.heads, pair % p.heads)
      let first = block * rowsPerBlock
      let rows = Swift.min(rowsPerBlock, nq - first)
      guard rows > 0 else { continue }
      let s = probs.map { $0 + pair * nq * nk + first * nk } ?? scratch!
      scores(p, b, h, first: first, rows: rows, q: q, k: k, low, into: s)
      softmaxRows(s, rows: rows, n: nk)
      let o = out + p.out.offset(b, h) + first * p.out.rowStride
      if let low, let roundedP {
        graft_dnnl_round_to_bf16(s, roundedP, Int64(rows * nk))
        bf16GEMM(
          roundedP, nk, low.v + p.v.offset(b, h), p.v.rowStride, bTransposed: false, o,
          p.out.rowStride, m: rows, n: dv, k: nk)
      } else {
        gemm(
          false, false, rows, dv, nk, 1, s, nk, v + p.v.offset(b, h), p.v.rowStride, o,
          p.out.rowStride)
      }
    }
  }
}

/// Runs the backward pass from `gOut` (laid out as the output) into whichever of `gq`, `gk`,
/// `gv` are non-nil (laid out as q, k, v; every element of them is written).
/// P is read from `probs` when given, else recomputed per pair from q and k (from `low`, in
/// BF16, when the forward pass ran in BF16). When `output` is given, the forward result P·V is
/// rebuilt into it as well (laid out as the output). The gradient products run in FP32.
private func attentionBackward(
  _ p: AttentionProblem, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
  v: UnsafePointer<Float>, probs: UnsafePointer<Float>?, gOut: UnsafePointer<Float>?,
  gq: UnsafeMutablePointer<Float>?, gk: UnsafeMutablePointer<Float>?,
  gv: UnsafeMutablePointer<Float>?, output: UnsafeMutablePointer<Float>? = nil,
  low: BF16Operands? = nil
) {
  _ = blasSingleThreaded
  let (nq, nk, d, dv) = (p.nq, p.nk, p.d, p.dv)
  let needScores = gOut != nil && (gq != nil || gk != nil)
  Parallel.forRange(p.pairs, grain: p.grain) { range in
    let ds: UnsafeMutablePointer<Float> = .allocate(capacity: Swift.max(1, nq * nk))
    let scratch: UnsafeMutablePointer<Float>? =
      probs == nil ? .allocate(capacity: Swift.max(1, nq * nk)) : nil
    defer {
      ds.deallocate()
      scratch?.deallocate()
    }
    for pair in range {
      let (b, h) = (pair / p.heads, pair % p.heads)
      let prob: UnsafePointer<Float>
      if let probs {
        prob = probs + pair * nq * nk
      } else {
        // The forward pass's own steps, so P is the same as it was there.
        let s = scratch!
        scores(p, b, h, first: 0, rows: nq, q: q, k: k, low, into: s)
        softmaxRows(s, rows: nq, n: nk)
        prob = UnsafePointer(s)
      }
      if let output {
        gemm(
          false, false, nq, dv, nk, 1, prob, nk, v + p.v.offset(b, h), p.v.rowStride,
          output + p.out.offset(b, h), p.out.rowStride)
      }
      guard let gOut else { continue }
      let go = gOut + p.out.offset(b, h)
      if let gv {
        gemm(
          true, false, nk, dv, nq, 1, prob, nk, go, p.out.rowStride, gv + p.v.offset(b, h),
          p.v.rowStride)
      }
      guard needScores else { continue }
      gemm(
        false, true, nq, nk, dv, 1, go, p.out.rowStride, v + p.v.offset(b, h), p.v.rowStride, ds, nk
      )
      for r in 0..<nq {
        let (pr, dr) = (prob + r * nk, ds + r * nk)
        let dot = simdDot(dr, pr, nk)
        for j in 0..<nk { dr[j] = pr[j] * (dr[j] - dot) * p.scale }
      }
      if let gq {
        gemm(
          false, false, nq, d, nk, 1, ds, nk, k + p.k.offset(b, h), p.k.rowStride,
          gq + p.q.offset(b, h), p.q.rowStride)
      }
      if let gk {
        gemm(
          true, false, nk, d, nq, 1, ds, nk, q + p.q.offset(b, h), p.q.rowStride,
          gk + p.k.offset(b, h), p.k.rowStride)
      }
    }
  }
}

extension Tensor {
  /// Scaled dot-product attention `softmax(q·kᵀ·scale)·v` per batch and head, as PyTorch's
  /// `F.scaled_dot_product_attention` without mask or dropout.
  ///
  /// Shapes: `q` [B, H, Nq, d], `k` [B, H, Nk, d], `v` [B, H, Nk, dv] → [B, H, Nq, dv]. `scale`
  /// defaults to `1/√d`. The backward pass keeps q, k and v; with `keepProbabilities` it also
  /// keeps the probabilities [B, H, Nq, Nk] instead of recomputing them (one more small GEMM and
  /// softmax per batch and head).
  public static func attention(
    q: Tensor, k: Tensor, v: Tensor, scale: Float? = nil, keepProbabilities: Bool = false
  ) -> Tensor {
    precondition(
      q.rank == 4 && k.rank == 4 && v.rank == 4,
      "attention: q \(q.shape), k \(k.shape), v \(v.shape) must all be [B, H, N, d]")
    let (b, h, nq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let (nk, dv) = (k.shape[2], v.shape[3])
    precondition(
      k.shape == [b, h, nk, d] && v.shape == [b, h, nk, dv],
      "attention: q \(q.shape), k \(k.shape), v \(v.shape) do not fit together")
    let problem = AttentionProblem(
      batch: b, heads: h, nq: nq, nk: nk, d: d, dv: dv,
      scale: scale ?? 1 / Float(Swift.max(d, 1)).squareRoot(),
      q: AttentionLayout(batchStride: h * nq * d, headStride: nq * d, rowStride: d),
      k: AttentionLayout(batchStride: h * nk * d, headStride: nk * d, rowStride: d),
      v: AttentionLayout(batchStride: h * nk * dv, headStride: nk * dv, rowStride: dv),
      out: AttentionLayout(batchStride: h * nq * dv, headStride: nq * dv, rowStride: dv))
    let out = Tensor(shape: [b, h, nq, dv], zeroed: false)
    let record =
      GradMode.enabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad) && nq * nk > 0
    let probs =
      record && keepProbabilities ? Tensor(shape: [b, h, nq, nk], zeroed: false) : nil
    attentionForward(
      problem, q: q.pointer, k: k.pointer, v: v.pointer, out: out.pointer, probs: probs?.pointer)
    guard record else { return out }
    let saving = [q, k, v] + (probs.map { [$0] } ?? [])
    return out.recording("scaled_dot_product_attention", [q, k, v], saving: saving) { g in
      let gq = q.requiresGrad ? Tensor(shape: q.shape, zeroed: false) : nil
      let gk = k.requiresGrad ? Tensor(shape: k.shape, zeroed: false) : nil
      let gv = v.requiresGrad ? Tensor(shape: v.shape, zeroed: false) : nil
      attentionBackward(
        problem, q: q.pointer, k: k.pointer, v: v.pointer, probs: probs?.pointer,
        gOut: g.pointer, gq: gq?.pointer, gk: gk?.pointer, gv: gv?.pointer)
      return [gq, gk, gv]
    }
  }

  /// The problem of self-attention on a fused [B, N, 3·D] projection with `heads` heads, the
  /// result laid out [B, N, D].
  private static func fusedProblem(_ qkv: Tensor, heads: Int, scale: Float?) -> AttentionProblem {
    let (b, n, width) = (qkv.shape[0], qkv.shape[1], qkv.shape[2])
    let dim = width / 3
    let d = dim / heads
    let rows = AttentionLayout(batchStride: n * width, headStride: d, rowStride: width)
    return AttentionProblem(
      batch: b, heads: heads, nq: n, nk: n, d: d, dv: d,
      scale: scale ?? 1 / Float(Swift.max(d, 1)).squareRoot(),
      q: rows, k: rows, v: rows,
      out: AttentionLayout(batchStride: n * dim, headStride: d, rowStride: dim))
  }

  /// Multi-head self-attention on a fused projection, as timm's `Attention` after its `qkv`
  /// linear layer: `qkv` [B, N, 3·D] holds q, k and v side by side (each D wide, split into
  /// `heads` heads of D/heads), and the result [B, N, D] holds the heads side by side, ready for
  /// the output projection. `scale` defaults to `1/√(D/heads)`.
  ///
  /// Equivalent to splitting, permuting to [B, H, N, d], calling `attention(q:k:v:)` and permuting
  /// back, without any of the copies. The backward pass keeps `qkv`, and the probabilities
  /// [B, heads, N, N] only with `keepProbabilities` (else it recomputes them).
  ///
  /// With `productsInBF16` (the attention of a block whose matrices run in BF16, where this CPU
  /// has native BF16) q·kᵀ and P·v run on oneDNN's BF16 matmul with FP32 accumulation, as
  /// PyTorch's autocast runs them; softmax and the gradient products stay FP32.
  public static func attention(
    qkv: Tensor, heads: Int, scale: Float? = nil, keepProbabilities: Bool = false,
    productsInBF16: Bool = false
  ) -> Tensor {
    precondition(
      qkv.rank == 3 && heads > 0 && qkv.shape[2] % (3 * heads) == 0,
      "attention: fused qkv \(qkv.shape) must be [B, N, 3·D] with D divisible by \(heads) heads")
    let (b, n, dim) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    let problem = fusedProblem(qkv, heads: heads, scale: scale)
    let out = Tensor(shape: [b, n, dim], zeroed: false)
    let record = GradMode.enabled && qkv.requiresGrad && n > 0
    let probs =
      record && keepProbabilities ? Tensor(shape: [b, heads, n, n], zeroed: false) : nil
    let base = qkv.pointer
    let lowPrecision = productsInBF16 && BF16Support.isAvailable
    withBF16Operands(of: qkv, if: lowPrecision) { low in
      attentionForward(
        problem, q: base, k: base + dim, v: base + 2 * dim, out: out.pointer,
        probs: probs?.pointer, low: low)
    }
    guard record else { return out }
    let saving = [qkv] + (probs.map { [$0] } ?? [])
    return out.recording("fused_qkv_attention", [qkv], saving: saving) { g in
      let gqkv = Tensor(shape: qkv.shape, zeroed: false)
      let (src, dst) = (qkv.pointer, gqkv.pointer)
      withBF16Operands(of: qkv, if: lowPrecision && probs == nil) { low in
        attentionBackward(
          problem, q: src, k: src + dim, v: src + 2 * dim, probs: probs?.pointer,
          gOut: g.pointer, gq: dst, gk: dst + dim, gv: dst + 2 * dim, low: low)
      }
      return [gqkv]
    }
  }

  /// Multi-head self-attention followed by its output projection, as timm's `Attention` after
  /// `qkv`: `attention(qkv:heads:scale:)` then `linear(weight:bias:)` (`weight` [out, D],
  /// `bias` [out]) → [B, N, out].
  ///
  /// Backward keeps `qkv` but not the attention result [B, N, D] that the projection reads: it
  /// is rebuilt inside the attention backward from the probabilities it recomputes anyway (one
  /// more small GEMM per batch and head). With `keepProbabilities` the probabilities are kept
  /// as in `attention(qkv:heads:scale:keepProbabilities:)`.
  /// `productsInBF16` runs the attention's products in BF16 as `attention(qkv:…)` does; the
  /// projection follows its weight (BF16 when the weight has a BF16 copy); backward then keeps
  /// `qkv` rounded to BF16 (half the bytes; the values the products read). With `rebuildQKV`
  /// backward keeps not `qkv` but the rebuild's sources, and recomputes `qkv` from them (a
  /// block's tokens before its norm: 3× the token width saved for one more qkv GEMM).
  public static func attentionProjection(
    qkv: Tensor, heads: Int, weight: Tensor, bias: Tensor?, scale: Float? = nil,
    keepProbabilities: Bool = false, productsInBF16: Bool = false,
    rebuildQKV: InputRebuild? = nil
  ) -> Tensor {
    precondition(
      qkv.rank == 3 && heads > 0 && qkv.shape[2] % (3 * heads) == 0,
      "attention: fused qkv \(qkv.shape) must be [B, N, 3·D] with D divisible by \(heads) heads")
    let (b, n, dim) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    precondition(
      weight.rank == 2 && weight.shape[1] == dim,
      "attentionProjection: weight \(weight.shape) must be [out, \(dim)]")
    let outF = weight.shape[0]
    if let bias {
      precondition(bias.shape == [outF], "attentionProjection: bias \(bias.shape) for \(outF)")
    }
    let problem = fusedProblem(qkv, heads: heads, scale: scale)
    let rows = b * n
    let wantsQKV = qkv.requiresGrad
    let wantsW = weight.requiresGrad
    let wantsB = bias?.requiresGrad ?? false
    let record = GradMode.enabled && (wantsQKV || wantsW || wantsB) && n > 0
    let probs =
      record && keepProbabilities && (wantsQKV || wantsW)
      ? Tensor(shape: [b, heads, n, n], zeroed: false) : nil
    let base = qkv.pointer
    let mixed = Tensor(shape: [b, n, dim], zeroed: false)
    let lowPrecision = productsInBF16 && BF16Support.isAvailable
    withBF16Operands(of: qkv, if: lowPrecision) { low in
      attentionForward(
        problem, q: base, k: base + dim, v: base + 2 * dim, out: mixed.pointer,
        probs: probs?.pointer, low: low)
    }
    let out = Tensor(shape: [b, n, outF], zeroed: false)
    let po = out.pointer
    productWithWeight(mixed.pointer, rows: rows, weight: weight, bias: bias?.pointer, into: po)
    guard record else { return out }
    // qkv rebuilds the attention result (for dW) and feeds the attention backward (for dqkv).
    let needsQKV = wantsQKV || wantsW
    // In BF16 the forward products read q, k and v rounded, so backward keeps them rounded.
    let keptQKV: Tensor? =
      needsQKV && rebuildQKV == nil ? (lowPrecision ? qkv.packedBF16() : qkv) : nil
    let rebuild = needsQKV ? rebuildQKV : nil
    let keptW: Tensor? = wantsQKV ? weight : nil
    let saving = [keptQKV, keptW, probs].compactMap { $0 } + (rebuild?.sources ?? [])
    let inputs = [qkv, weight] + (bias.map { [$0] } ?? [])
    let (qkvShape, hasBias) = (qkv.shape, bias != nil)
    return out.recording("attention_projection", inputs, saving: saving) { g in
      let pg = g.pointer
      let keptQKV =
        keptQKV.map { lowPrecision ? $0.unpackedBF16(shape: qkvShape) : $0 }
        ?? rebuild.map { rebuilt in
          let qkv = rebuilt()
          precondition(
            qkv.shape == qkvShape, "attentionProjection: rebuilt qkv \(qkv.shape), not \(qkvShape)")
          // Rounded as a kept qkv is, so the gradient products read what the forward ones did.
          if lowPrecision { roundToBF16(qkv.pointer, count: qkv.count, into: qkv.pointer) }
          return qkv
        }
      // dL/d(attention result) = g·W.
      let gMixed = keptW.map { w in
        let t = Tensor(shape: [b, n, dim], zeroed: false)
        productThroughWeight(pg, rows: rows, weight: w, into: t.pointer)
        return t
      }
      let rebuilt = wantsW ? Tensor(shape: [b, n, dim], zeroed: false) : nil
      let gqkv = wantsQKV ? Tensor(shape: qkvShape, zeroed: false) : nil
      if let kept = keptQKV {
        let (src, dst) = (kept.pointer, gqkv?.pointer)
        withBF16Operands(of: kept, if: lowPrecision && probs == nil) { low in
          attentionBackward(
            problem, q: src, k: src + dim, v: src + 2 * dim, probs: probs?.pointer,
            gOut: gMixed?.pointer, gq: dst, gk: dst.map { $0 + dim },
            gv: dst.map { $0 + 2 * dim }, output: rebuilt?.pointer, low: low)
        }
      }
      var gw: Tensor?
      if let rebuilt {
        let t = Tensor(shape: [outF, dim], zeroed: false)
        sgemm(
          pg, transA: true, rebuilt.pointer, transB: false, t.pointer, m: outF, n: dim, k: rows)
        gw = t
      }
      var grads: [Tensor?] = [gqkv, gw]
      if hasBias { grads.append(wantsB ? columnSums(pg, rows: rows, cols: outF) : nil) }
      return grads
    }
  }

  /// Calls `body` with the fused [B, N, 3·D] `qkv` rounded to BF16 (q, k, v at 0, D, 2·D of each
  /// row) when `lowPrecision`, else with nil; the rounded copy lives only for the call.
  private static func withBF16Operands(
    of qkv: Tensor, if lowPrecision: Bool, _ body: (BF16Operands?) -> Void
  ) {
    guard lowPrecision else { return body(nil) }
    let dim = qkv.shape[2] / 3
    let rounded = bf16Copy(qkv.pointer, count: qkv.count)
    defer { rounded.deallocate() }
    body(BF16Operands(q: rounded, k: rounded + dim, v: rounded + 2 * dim))
  }
}
