// Fused layer ops that keep less for backward than the composition of their parts.
//
// A transformer block's activations dominate a training step's memory. These ops compute the
// same values as the unfused ops (within float rounding) but keep only what cannot be recomputed
// cheaply, rebuilding the rest inside backward:
// - `linear(weight:bias:)`: one GEMM with the bias as its initial value; keeps x only when the
//   weight trains and the weight only when x does.
// - `layerNormLinear`: linear(layerNorm(x)) keeping x and two floats per row, not the normalised
//   rows (recomputed in backward, where the weight gradient needs them).
// - `activationLinear`: linear(act(x)) keeping x, not act(x) (recomputed in backward).
// Both recomputing ops work through row chunks, so their scratch stays small and cache-warm.
// Attention with its output projection (`Tensor.attentionProjection`) is in Attention.swift.
//
// `activationLinear` and `attentionProjection` can go one step further and keep nothing of their
// input at all: given an `InputRebuild`, backward recomputes the input from what an earlier op
// keeps anyway (a block's fc1 output from the tokens its norm keeps), trading one more GEMM for
// the largest tensors of a block (see `BlockRecompute` in GraftModels).

/// A trainable low-rank delta on some output columns of `layerNormLinear` (LoRA on a fused
/// layer): `out[:, columnOffset ..< columnOffset + n] += scale · (x̂·Aᵀ)·Bᵀ` with `down` A [r, in]
/// and `up` B [n, r], x̂ the normalised rows. Backward keeps x̂·Aᵀ ([rows, r]) and rebuilds x̂.
public struct LowRankDelta {
  /// A, [r, in].
  public let down: Tensor
  /// B, [n, r].
  public let up: Tensor
  /// The delta's factor (LoRA's alpha / r).
  public let scale: Float
  /// The first output column the delta adds to.
  public let columnOffset: Int

  /// `scale · B·A` on columns from `columnOffset`.
  public init(down: Tensor, up: Tensor, scale: Float, columnOffset: Int) {
    self.down = down
    self.up = up
    self.scale = scale
    self.columnOffset = columnOffset
  }
}

/// How an op rebuilds its input in backward instead of keeping it: `build` recomputes the input
/// (without recording) from `sources`, which the op keeps in its place. `build` must give the
/// same values as the forward pass did (the same ops on the same tensors), so gradients are
/// those of the kept input exactly.
public struct InputRebuild {
  /// The tensors `build` reads; the op keeps these.
  public let sources: [Tensor]
  /// Recomputes the input.
  public let build: () -> Tensor

  /// A rebuild reading `sources` with `build`.
  public init(sources: [Tensor], build: @escaping () -> Tensor) {
    self.sources = sources
    self.build = build
  }

  /// The input, rebuilt without recording (backward already runs so; this makes it explicit).
  func callAsFunction() -> Tensor { withNoGrad(build) }
}

/// A pointwise activation that `activationLinear` can recompute in backward.
public enum FusedActivation: String, Sendable, CaseIterable {
  /// Exact (erf) GELU, PyTorch's `nn.GELU()`.
  case gelu
  /// Tanh-approximated GELU, `nn.GELU(approximate="tanh")`.
  case geluTanh = "gelu_tanh"
  /// CLIP's `x·σ(1.702x)`.
  case quickGELU = "quick_gelu"
}

/// An activation whose value and derivative come from one evaluation: backward rebuilds the
/// activation (for the weight gradient) and its slope (for the input gradient) in one pass. The
/// expressions are those of the activation's own kernel, so the values agree exactly.
protocol RecomputedActivation: UnaryKernel {
  /// f(x) and f'(x).
  func valueAndSlope(_ x: Float) -> (Float, Float)
}

extension GeluKernel: RecomputedActivation {
  @inline(__always) func valueAndSlope(_ x: Float) -> (Float, Float) {
    let e = fastErf(x * 0.707_106_77)
    let pdf = 0.398_942_28 * fastExp(-0.5 * x * x)
    return (0.5 * x * (1 + e), 0.5 * (1 + e) + x * pdf)
  }
}

extension GeluTanhKernel: RecomputedActivation {
  @inline(__always) func valueAndSlope(_ x: Float) -> (Float, Float) {
    let t = fastTanh(Self.k * (x + 0.044715 * x * x * x))
    let du = Self.k * (1 + 3 * 0.044715 * x * x)
    return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
  }
}

extension QuickGeluKernel: RecomputedActivation {
  @inline(__always) func valueAndSlope(_ x: Float) -> (Float, Float) {
    let s = sigmoidScalar(1.702 * x)
    return (x * s, s + 1.702 * x * s * (1 - s))
  }
}

/// Floats of scratch per row chunk: 4 MiB, which keeps a chunk in the last-level cache between
/// the elementwise pass and the GEMM that reads it.
let fusedChunkFloats = 1 << 20

/// Rows per chunk for rows of `width` floats, with about `floats` floats per chunk.
@inline(__always)
private func chunkRows(_ rows: Int, width: Int, floats: Int) -> Int {
  Swift.max(1, Swift.min(rows, floats / Swift.max(width, 1)))
}

/// Sums over the rows of a [rows, cols] matrix (a bias gradient). Each thread streams through
/// its own block of rows into a partial sum; the partial sums are added at the end.
func columnSums(_ g: UnsafePointer<Float>, rows: Int, cols: Int) -> Tensor {
  let t = Tensor(shape: [cols])
  let out = t.pointer
  let parts = Swift.max(1, Swift.min(Parallel.threadCount, rows * cols / 32_768))
  if parts == 1 {
    for row in 0..<rows { addRow(g + row * cols, into: out, 0..<cols) }
    return t
  }
  let partial = Tensor(shape: [parts, cols])
  let pp = partial.pointer
  Parallel.forRange(parts, grain: 1) { range in
    for part in range {
      for row in (rows * part / parts)..<(rows * (part + 1) / parts) {
        addRow(g + row * cols, into: pp + part * cols, 0..<cols)
      }
    }
  }
  for part in 0..<parts { addRow(pp + part * cols, into: out, 0..<cols) }
  return t
}

/// `out[j] += src[j]` for j in `range`, with explicit vectors (the pointers could alias as far as
/// the compiler knows, which keeps it from vectorising the plain loop).
@inline(__always)
private func addRow(
  _ src: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ range: Range<Int>
) {
  let (rs, ro) = (UnsafeRawPointer(src), UnsafeMutableRawPointer(out))
  var j = range.lowerBound
  while j + 16 <= range.upperBound {
    let sum =
      ro.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
      + rs.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
    ro.storeBytes(of: sum, toByteOffset: j * 4, as: SIMD16<Float>.self)
    j += 16
  }
  while j < range.upperBound {
    out[j] += src[j]
    j += 1
  }
}

/// Fills each of `rows` rows of `out` ([rows, n]) with `bias`, or zeros: the initial value of
/// a GEMM that adds the bias for free.
func fillRows(
  _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int, bias: UnsafePointer<Float>?
) {
  guard let bias else {
    out.update(repeating: 0, count: rows * n)
    return
  }
  Parallel.forRange(rows, grain: Swift.max(1, 32_768 / Swift.max(n, 1))) { r in
    for row in r { (out + row * n).update(from: bias, count: n) }
  }
}

/// Layer-norm parameters and per-row statistics, shared by forward and backward.
private struct RowNorm {
  let d: Int
  let eps: Float
  let weight: UnsafePointer<Float>?
  let bias: UnsafePointer<Float>?

  /// Normalises rows `range` of `x` into `y` (row `range.lowerBound` at `y`), writing each row's
  /// mean and 1/std into `stats` ([rows, 2]).
  func forward(
    _ x: UnsafePointer<Float>, _ range: Range<Int>, into y: UnsafeMutablePointer<Float>,
    stats: UnsafeMutablePointer<Float>
  ) {
    Parallel.forRange(range.count, grain: Swift.max(1, 8192 / Swift.max(d, 1))) { r in
      for i in r {
        let row = range.lowerBound + i
        let xr = x + row * d
        let mean = simdSum(xr, d) / Float(d)
        let sq = simdSumSquaredDeviation(xr, d, mean)
        let rstd = 1 / (sq / Float(d) + eps).squareRoot()
        stats[2 * row] = mean
        stats[2 * row + 1] = rstd
        write(xr, mean: mean, rstd: rstd, into: y + i * d)
      }
    }
  }

  /// Rebuilds rows `range` of the normalised output from x and the saved statistics.
  func recompute(
    _ x: UnsafePointer<Float>, _ range: Range<Int>, stats: UnsafePointer<Float>,
    into y: UnsafeMutablePointer<Float>
  ) {
    Parallel.forRange(range.count, grain: Swift.max(1, 8192 / Swift.max(d, 1))) { r in
      for i in r {
        let row = range.lowerBound + i
        write(x + row * d, mean: stats[2 * row], rstd: stats[2 * row + 1], into: y + i * d)
      }
    }
  }

  /// One output row, with the same expression as `Tensor.layerNorm` so values agree exactly.
  @inline(__always)
  private func write(
    _ x: UnsafePointer<Float>, mean: Float, rstd: Float, into y: UnsafeMutablePointer<Float>
  ) {
    if let weight, let bias {
      for j in 0..<d { y[j] = (x[j] - mean) * rstd * weight[j] + bias[j] }
    } else if let weight {
      for j in 0..<d { y[j] = (x[j] - mean) * rstd * weight[j] }
    } else {
      for j in 0..<d { y[j] = (x[j] - mean) * rstd }
      if let bias { for j in 0..<d { y[j] += bias[j] } }
    }
  }

  /// Given dL/dy for rows `range` in `g` (row `range.lowerBound` at `g`): adds Σ g·x̂ into
  /// `gWeight` and Σ g into `gBias` when given, then, when `inPlaceInput` is set, overwrites `g`
  /// with dL/dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = g·weight. x and the statistics are
  /// read only for `gWeight` and `inPlaceInput`.
  func backward(
    _ x: UnsafePointer<Float>?, _ range: Range<Int>, stats: UnsafePointer<Float>?,
    g: UnsafeMutablePointer<Float>, gWeight: UnsafeMutablePointer<Float>?,
    gBias: UnsafeMutablePointer<Float>?, inPlaceInput: Bool
  ) {
    let rows = range.count
    if gWeight != nil || gBias != nil {
      Parallel.forRange(d, grain: Swift.max(1, 8192 / Swift.max(rows, 1))) { cols in
        for i in 0..<rows {
          let row = range.lowerBound + i
          let gr = g + i * d
          if let gWeight, let x, let stats {
            let (mean, rstd, xr) = (stats[2 * row], stats[2 * row + 1], x + row * d)
            for j in cols { gWeight[j] += gr[j] * (xr[j] - mean) * rstd }
          }
          if let gBias { addRow(gr, into: gBias, cols) }
        }
      }
    }
    guard inPlaceInput, let x, let stats else { return }
    Parallel.forRange(rows, grain: Swift.max(1, 8192 / Swift.max(d, 1))) { r in
      for i in r {
        let row = range.lowerBound + i
        let (mean, rstd) = (stats[2 * row], stats[2 * row + 1])
        let (xr, dx) = (x + row * d, g + i * d)
        if let weight { for j in 0..<d { dx[j] *= weight[j] } }
        let sum = simdSum(dx, d)
        let mg = sum / Float(d)
        let mgx = (simdDot(dx, xr, d) - mean * sum) * rstd / Float(d)
        for j in 0..<d { dx[j] = rstd * (dx[j] - mg - (xr[j] - mean) * rstd * mgx) }
      }
    }
  }
}

/// `x` rounded to the nearest BF16 value into `dst` (which may be `x`).
func roundToBF16(
  _ x: UnsafePointer<Float>, count: Int, into dst: UnsafeMutablePointer<Float>
) {
  Parallel.forRange(count, grain: 65_536) { r in
    for i in r { dst[i] = BFloat16.rounded(x[i]) }
  }
}

/// Computes `a = f(x)` for rows `range` of `x` ([rows, width]) into `a` (row 0 at `a`).
@inline(__always)
private func activate<K: UnaryKernel>(
  _ f: K, _ x: UnsafePointer<Float>, _ range: Range<Int>, width: Int,
  into a: UnsafeMutablePointer<Float>
) {
  let src = x + range.lowerBound * width
  Parallel.forRange(range.count * width) { r in for i in r { a[i] = f(src[i]) } }
}

extension Tensor {
  /// Rows and inner width of `x` seen as a matrix over its last axis.
  private func matrixRows(_ what: String, width: Int) -> Int {
    precondition(
      rank >= 1 && shape[rank - 1] == width, "\(what): input \(shape) must end in \(width)")
    return count / Swift.max(width, 1)
  }

  private static func checkLinear(_ weight: Tensor, _ bias: Tensor?, _ what: String) {
    precondition(weight.rank == 2, "\(what): weight must be [out, in], got \(weight.shape)")
    if let bias {
      precondition(
        bias.shape == [weight.shape[0]], "\(what): bias \(bias.shape) for weight \(weight.shape)")
    }
  }

  /// `x·Wᵀ + b` over the last axis (PyTorch's `F.linear`): `self` [..., in], `weight`
  /// [out, in], `bias` [out] → [..., out], as one GEMM over all leading axes with the bias as
  /// its initial value.
  ///
  /// Backward keeps `self` only when the weight needs a gradient and the weight only when
  /// `self` does; the bias gradient needs neither.
  public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
    Tensor.checkLinear(weight, bias, "linear")
    let (outF, inF) = (weight.shape[0], weight.shape[1])
    let rows = matrixRows("linear", width: inF)
    let out = Tensor(shape: Array(shape.dropLast()) + [outF], zeroed: false)
    productWithWeight(pointer, rows: rows, weight: weight, bias: bias?.pointer, into: out.pointer)
    let keptX: Tensor? = weight.requiresGrad ? self : nil
    let keptW: Tensor? = requiresGrad ? weight : nil
    let (xShape, wantsBias, hasBias) = (shape, bias?.requiresGrad ?? false, bias != nil)
    let inputs = [self, weight] + (bias.map { [$0] } ?? [])
    return out.recording("linear", inputs, saving: [keptX, keptW].compactMap { $0 }) { g in
      var grads: [Tensor?] = []
      if let w = keptW {
        let gx = Tensor(shape: xShape, zeroed: false)
        productThroughWeight(g.pointer, rows: rows, weight: w, into: gx.pointer)
        grads.append(gx)
      } else {
        grads.append(nil)
      }
      if let x = keptX {
        let gw = Tensor(shape: [outF, inF], zeroed: false)
        sgemm(
          g.pointer, transA: true, x.pointer, transB: false, gw.pointer, m: outF, n: inF, k: rows)
        grads.append(gw)
      } else {
        grads.append(nil)
      }
      if hasBias { grads.append(wantsBias ? columnSums(g.pointer, rows: rows, cols: outF) : nil) }
      return grads
    }
  }

  /// `linear(layerNorm(x))` as one op: layer norm over the last axis (`normWeight`, `normBias`
  /// [in], optional, biased variance as `nn.LayerNorm`) followed by `x̂·Wᵀ + b` (`weight`
  /// [out, in], `bias` [out]).
  ///
  /// Equal to `layerNorm(weight:bias:eps:)` then `linear(weight:bias:)`, but backward keeps only
  /// `self` and its per-row mean and 1/std (8 bytes a row) instead of the normalised tensor,
  /// which it rebuilds chunk by chunk for the weight gradient.
  ///
  /// `deltas` add trainable low-rank terms to column ranges of the output (LoRA), computed from
  /// the same normalised rows; backward keeps each delta's [rows, r] intermediate.
  public func layerNormLinear(
    normWeight: Tensor?, normBias: Tensor?, eps: Float = 1e-5, weight: Tensor, bias: Tensor?,
    deltas: [LowRankDelta] = []
  ) -> Tensor {
    layerNormLinear(
      normWeight: normWeight, normBias: normBias, eps: eps, weight: weight, bias: bias,
      deltas: deltas, chunkFloats: fusedChunkFloats)
  }

  /// `layerNormLinear` working through chunks of about `chunkFloats` input floats (tests use
  /// tiny chunks to cover the accumulation across chunks).
  func layerNormLinear(
    normWeight: Tensor?, normBias: Tensor?, eps: Float, weight: Tensor, bias: Tensor?,
    deltas: [LowRankDelta] = [], chunkFloats: Int
  ) -> Tensor {
    Tensor.checkLinear(weight, bias, "layerNormLinear")
    let (outF, d) = (weight.shape[0], weight.shape[1])
    for p in [normWeight, normBias].compactMap({ $0 }) {
      precondition(p.shape == [d], "layerNormLinear: norm parameter \(p.shape) for width \(d)")
    }
    for delta in deltas {
      let (r, n) = (delta.down.shape[0], delta.up.shape[0])
      precondition(
        delta.down.shape == [r, d] && delta.up.shape == [n, r] && delta.columnOffset >= 0
          && delta.columnOffset + n <= outF,
        "layerNormLinear: delta A \(delta.down.shape), B \(delta.up.shape) at column "
          + "\(delta.columnOffset) for [\(outF), \(d)]")
    }
    let rows = matrixRows("layerNormLinear", width: d)
    let out = Tensor(shape: Array(shape.dropLast()) + [outF], zeroed: false)
    let stats = Tensor(shape: [rows, 2], zeroed: false)
    let norm = RowNorm(d: d, eps: eps, weight: normWeight?.pointer, bias: normBias?.pointer)
    let chunk = chunkRows(rows, width: d, floats: chunkFloats)
    let (px, po) = (pointer, out.pointer)
    let scratch = Tensor(shape: [chunk, d], zeroed: false)
    // Each delta's x̂·Aᵀ, [rows, r], kept for backward; its small products run on this thread.
    let downs = deltas.map { Tensor(shape: [rows, $0.down.shape[0]], zeroed: false) }
    if !deltas.isEmpty { _ = blasSingleThreaded }
    for start in stride(from: 0, to: rows, by: chunk) {
      let range = start..<Swift.min(rows, start + chunk)
      norm.forward(px, range, into: scratch.pointer, stats: stats.pointer)
      productWithWeight(
        scratch.pointer, rows: range.count, weight: weight, bias: bias?.pointer,
        into: po + start * outF)
      for (delta, t) in zip(deltas, downs) {
        let (r, n) = (delta.down.shape[0], delta.up.shape[0])
        let tChunk = t.pointer + start * r
        sgemmBlock(
          scratch.pointer, false, d, delta.down.pointer, true, d, tChunk, r, m: range.count, n: r,
          k: d, alpha: 1, beta: 0)
        sgemmBlock(
          tChunk, false, r, delta.up.pointer, true, r, po + start * outF + delta.columnOffset, outF,
          m: range.count, n: n, k: r, alpha: delta.scale, beta: 1)
      }
    }
    // What backward reads: x and the statistics for the normalised rows (weight gradient) and
    // for the norm's own backward; W to bring the gradient back through the linear map.
    let wantsW = weight.requiresGrad
    let wantsB = bias?.requiresGrad ?? false
    let wantsGamma = normWeight?.requiresGrad ?? false
    let wantsBeta = normBias?.requiresGrad ?? false
    let wantsX = requiresGrad
    let wantsDown = deltas.map(\.down.requiresGrad)
    let wantsUp = deltas.map(\.up.requiresGrad)
    let needsDH = wantsX || wantsGamma || wantsBeta
    // x̂ is rebuilt for the weight gradient and for each trained A's.
    let rebuildsRows = wantsW || wantsDown.contains(true)
    let keepsX = rebuildsRows || wantsX || wantsGamma
    let keptX: Tensor? = keepsX ? self : nil
    let keptStats: Tensor? = keepsX ? stats : nil
    let keptW: Tensor? = needsDH ? weight : nil
    // The norm's scale rebuilds the normalised rows and scales the gradient into them; its
    // shift only rebuilds the rows.
    let keptGamma: Tensor? = rebuildsRows || wantsX ? normWeight : nil
    let keptBeta: Tensor? = rebuildsRows ? normBias : nil
    let normParams = [normWeight, normBias].compactMap { $0 }
    let deltaParams = deltas.flatMap { [$0.down, $0.up] }
    let inputs = [self] + normParams + [weight] + (bias.map { [$0] } ?? []) + deltaParams
    // A delta's gradients read its x̂·Aᵀ (for B) and B (for A and for x).
    let keptDeltas = needsDH || wantsDown.contains(true) || wantsUp.contains(true) ? deltas : []
    let saving =
      [keptX, keptStats, keptW, keptGamma, keptBeta].compactMap { $0 }
      + keptDeltas.flatMap { [$0.down, $0.up] } + (keptDeltas.isEmpty ? [] : downs)
    let (xShape, hasGamma, hasBeta, hasBias) = (
      shape, normWeight != nil, normBias != nil, bias != nil
    )
    let deltaCount = deltas.count
    return out.recording("layer_norm_linear", inputs, saving: saving) { g in
      let pg = g.pointer
      let gx = needsDH ? Tensor(shape: xShape, zeroed: false) : nil
      let gGamma = wantsGamma ? Tensor(shape: [d]) : nil
      let gBeta = wantsBeta ? Tensor(shape: [d]) : nil
      let gw = wantsW ? Tensor(shape: [outF, d], zeroed: rows == 0) : nil  // no chunks, no GEMM
      let scratch = rebuildsRows ? Tensor(shape: [chunk, d], zeroed: false) : nil
      // Per delta: dL/d(x̂·Aᵀ) for the chunk, and the gradients of A and B.
      let gTs = keptDeltas.map { Tensor(shape: [chunk, $0.down.shape[0]], zeroed: false) }
      let gDowns = keptDeltas.indices.map { k in
        wantsDown[k] ? Tensor(shape: keptDeltas[k].down.shape, zeroed: rows == 0) : nil
      }
      let gUps = keptDeltas.indices.map { k in
        wantsUp[k] ? Tensor(shape: keptDeltas[k].up.shape, zeroed: rows == 0) : nil
      }
      for start in stride(from: 0, to: rows, by: chunk) {
        let range = start..<Swift.min(rows, start + chunk)
        let gChunk = pg + start * outF
        let first: Float = start == 0 ? 0 : 1
        if let scratch, let x = keptX, let stats = keptStats {
          norm.recompute(x.pointer, range, stats: stats.pointer, into: scratch.pointer)
        }
        if let gw, let scratch {
          sgemm(
            gChunk, transA: true, scratch.pointer, transB: false, gw.pointer, m: outF, n: d,
            k: range.count, beta: first)
        }
        for (k, delta) in keptDeltas.enumerated() {
          let (r, n, off) = (delta.down.shape[0], delta.up.shape[0], delta.columnOffset)
          let gT = gTs[k].pointer
          sgemmBlock(
            gChunk + off, false, outF, delta.up.pointer, false, r, gT, r, m: range.count, n: r,
            k: n, alpha: delta.scale, beta: 0)
          if let gUp = gUps[k] {
            sgemmBlock(
              gChunk + off, true, outF, downs[k].pointer + start * r, false, r, gUp.pointer, r,
              m: n, n: r, k: range.count, alpha: delta.scale, beta: first)
          }
          if let gDown = gDowns[k], let scratch {
            sgemmBlock(
              gT, true, r, scratch.pointer, false, d, gDown.pointer, d, m: r, n: d, k: range.count,
              alpha: 1, beta: first)
          }
        }
        if let gx, let w = keptW {
          let dh = gx.pointer + start * d
          productThroughWeight(gChunk, rows: range.count, weight: w, into: dh)
          for (k, delta) in keptDeltas.enumerated() {
            sgemmBlock(
              gTs[k].pointer, false, delta.down.shape[0], delta.down.pointer, false, d, dh, d,
              m: range.count, n: d, k: delta.down.shape[0], alpha: 1, beta: 1)
          }
          norm.backward(
            keptX?.pointer, range, stats: keptStats?.pointer, g: dh, gWeight: gGamma?.pointer,
            gBias: gBeta?.pointer, inPlaceInput: wantsX)
        }
      }
      var grads: [Tensor?] = [wantsX ? gx : nil]
      if hasGamma { grads.append(gGamma) }
      if hasBeta { grads.append(gBeta) }
      grads.append(gw)
      if hasBias { grads.append(wantsB ? columnSums(pg, rows: rows, cols: outF) : nil) }
      for k in 0..<deltaCount {
        grads.append(k < gDowns.count ? gDowns[k] : nil)
        grads.append(k < gUps.count ? gUps[k] : nil)
      }
      return grads
    }
  }

  /// `linear(act(x))` as one op: the pointwise `activation` followed by `a·Wᵀ + b` (`weight`
  /// [out, in], `bias` [out]).
  ///
  /// Equal to the activation op then `linear(weight:bias:)`, but backward keeps `self` (the
  /// pre-activation) instead of the activation's output, and recomputes the activation chunk by
  /// chunk for the weight gradient; its derivative reads `self` as the activation's own backward
  /// would. In a transformer MLP this saves the hidden activation (4× the token width).
  ///
  /// With `rebuild` backward keeps not even `self` but `rebuild`'s sources, and recomputes
  /// `self` from them (a transformer MLP's fc1 output from the tokens its norm keeps: 4× the
  /// token width saved for one more fc1 GEMM).
  public func activationLinear(
    _ activation: FusedActivation, weight: Tensor, bias: Tensor?, rebuild: InputRebuild? = nil
  ) -> Tensor {
    activationLinear(
      activation, weight: weight, bias: bias, rebuild: rebuild, chunkFloats: fusedChunkFloats)
  }

  /// `activationLinear` working through chunks of about `chunkFloats` input floats.
  func activationLinear(
    _ activation: FusedActivation, weight: Tensor, bias: Tensor?, rebuild: InputRebuild? = nil,
    chunkFloats: Int
  ) -> Tensor {
    switch activation {
    case .gelu:
      return activationLinear(
        GeluKernel(), weight: weight, bias: bias, rebuild: rebuild, chunkFloats: chunkFloats)
    case .geluTanh:
      return activationLinear(
        GeluTanhKernel(), weight: weight, bias: bias, rebuild: rebuild, chunkFloats: chunkFloats)
    case .quickGELU:
      return activationLinear(
        QuickGeluKernel(), weight: weight, bias: bias, rebuild: rebuild, chunkFloats: chunkFloats)
    }
  }

  private func activationLinear<K: RecomputedActivation>(
    _ f: K, weight: Tensor, bias: Tensor?, rebuild: InputRebuild?, chunkFloats: Int
  ) -> Tensor {
    Tensor.checkLinear(weight, bias, "activationLinear")
    let (outF, inF) = (weight.shape[0], weight.shape[1])
    let rows = matrixRows("activationLinear", width: inF)
    let out = Tensor(shape: Array(shape.dropLast()) + [outF], zeroed: false)
    let chunk = chunkRows(rows, width: inF, floats: chunkFloats)
    let (px, po) = (pointer, out.pointer)
    let scratch = Tensor(shape: [chunk, inF], zeroed: false)
    let wantsW = weight.requiresGrad
    let wantsB = bias?.requiresGrad ?? false
    let wantsX = requiresGrad
    // A frozen BF16 weight: the activation reads x rounded to BF16 (as under autocast, where
    // the layer before hands it over in BF16), and backward keeps x so rounded, half the bytes.
    let roundsInput = weight.productsRunInBF16 && BF16Support.isAvailable
    let records = GradMode.enabled && (wantsW || wantsX || wantsB)
    let packed = roundsInput && records && rebuild == nil && (wantsW || wantsX) ? packedBF16() : nil
    let rounded = roundsInput ? Tensor(shape: [chunk, inF], zeroed: false) : nil
    for start in stride(from: 0, to: rows, by: chunk) {
      let range = start..<Swift.min(rows, start + chunk)
      if let rounded {
        if let packed {
          packed.unpackBF16(rows: range, width: inF, into: rounded.pointer)
        } else {
          roundToBF16(px + start * inF, count: range.count * inF, into: rounded.pointer)
        }
        activate(f, rounded.pointer, 0..<range.count, width: inF, into: scratch.pointer)
      } else {
        activate(f, px, range, width: inF, into: scratch.pointer)
      }
      productWithWeight(
        scratch.pointer, rows: range.count, weight: weight, bias: bias?.pointer,
        into: po + start * outF)
    }
    // x for the recomputed activation (weight gradient) and for the derivative (x gradient),
    // or what rebuilds x.
    let needsX = wantsW || wantsX
    let keptX: Tensor? = needsX && rebuild == nil ? (packed ?? self) : nil
    let rebuildX = needsX ? rebuild : nil
    let keptW: Tensor? = wantsX ? weight : nil
    let inputs = [self, weight] + (bias.map { [$0] } ?? [])
    let (xShape, hasBias) = (shape, bias != nil)
    let saving = [keptX, keptW].compactMap { $0 } + (rebuildX?.sources ?? [])
    return out.recording("\(K.name)_linear", inputs, saving: saving) { g in
      let pg = g.pointer
      let keptX =
        keptX.map { packed == nil ? $0 : $0.unpackedBF16(shape: xShape) }
        ?? rebuildX.map { rebuilt in
          let x = rebuilt()
          precondition(
            x.shape == xShape, "activationLinear: rebuilt input \(x.shape), not \(xShape)")
          // Rounded as the forward pass rounded it.
          if roundsInput { roundToBF16(x.pointer, count: x.count, into: x.pointer) }
          return x
        }
      let gx = wantsX ? Tensor(shape: xShape, zeroed: false) : nil
      let gw = wantsW ? Tensor(shape: [outF, inF], zeroed: rows == 0) : nil  // no chunks, no GEMM
      let values = wantsW ? Tensor(shape: [chunk, inF], zeroed: false) : nil
      // With both gradients wanted, one pass rebuilds the activation and keeps its slope.
      let slopes = wantsW && wantsX ? Tensor(shape: [chunk, inF], zeroed: false) : nil
      for start in stride(from: 0, to: rows, by: chunk) {
        let range = start..<Swift.min(rows, start + chunk)
        let gChunk = pg + start * outF
        guard let x = keptX?.pointer else { break }
        let src = x + start * inF
        if let gw, let a = values?.pointer {
          if let sl = slopes?.pointer {
            Parallel.forRange(range.count * inF) { r in
              for i in r { (a[i], sl[i]) = f.valueAndSlope(src[i]) }
            }
          } else {
            activate(f, x, range, width: inF, into: a)
          }
          sgemm(
            gChunk, transA: true, a, transB: false, gw.pointer, m: outF, n: inF, k: range.count,
            beta: start == 0 ? 0 : 1)
        }
        if let gx, let w = keptW {
          let da = gx.pointer + start * inF
          productThroughWeight(gChunk, rows: range.count, weight: w, into: da)
          if let sl = slopes?.pointer {
            Parallel.forRange(range.count * inF) { r in for i in r { da[i] *= sl[i] } }
          } else {
            Parallel.forRange(range.count * inF) { r in
              for i in r { da[i] = f.gradient(da[i], x: src[i], y: 0) }
            }
          }
        }
      }
      var grads: [Tensor?] = [gx, gw]
      if hasBias { grads.append(wantsB ? columnSums(pg, rows: rows, cols: outF) : nil) }
      return grads
    }
  }
}
