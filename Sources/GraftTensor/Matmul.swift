import CBLAS

// Matrix products on OpenBLAS. Transposes are passed to sgemm as flags, never copied.

/// C[m,n] (+)= op(A)·op(B) for row-major contiguous operands.
@inline(__always)
func sgemm(
  _ a: UnsafePointer<Float>, transA: Bool, _ b: UnsafePointer<Float>, transB: Bool,
  _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, beta: Float = 0
) {
  if m == 0 || n == 0 { return }
  if k == 0 {
    if beta == 0 { c.update(repeating: 0, count: m * n) }
    return
  }
  cblas_sgemm(
    CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
    Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k), b, Int32(transB ? k : n),
    beta, c, Int32(n))
}

extension Tensor {
  /// Matrix product of the last two axes, `op(self)·op(other)`, where `op` transposes when asked.
  ///
  /// Shapes: `[..., M, K]·[..., K, N] → [..., M, N]`. Leading (batch) axes broadcast. A 2-D right
  /// operand against a batched left one (a linear layer) runs as one GEMM over all rows.
  public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false)
    -> Tensor
  {
    precondition(rank >= 2 && other.rank >= 2, "matmul needs rank ≥ 2: \(shape) · \(other.shape)")
    let (ta, tb) = (transposeSelf, transposeOther)
    let m = ta ? shape[rank - 1] : shape[rank - 2]
    let k = ta ? shape[rank - 2] : shape[rank - 1]
    let k2 = tb ? other.shape[other.rank - 1] : other.shape[other.rank - 2]
    let n = tb ? other.shape[other.rank - 2] : other.shape[other.rank - 1]
    precondition(
      k == k2,
      "matmul inner extents differ: \(shape)\(ta ? "ᵀ" : "") · \(other.shape)\(tb ? "ᵀ" : "")")

    // Linear-layer case: fold all leading axes of self into M.
    if other.rank == 2 && rank > 2 && !ta {
      let lead = Array(shape.dropLast())
      let flat = reshaped([lead.reduce(1, *), k])
      return flat.matmul(other, transposeOther: tb).reshaped(lead + [n])
    }

    let batchA = Array(shape.dropLast(2))
    let batchB = Array(other.shape.dropLast(2))
    let batch = Tensor.broadcastShape(batchA, batchB)
    let a = batchA == batch ? self : broadcast(to: batch + Array(shape.suffix(2)))
    let b = batchB == batch ? other : other.broadcast(to: batch + Array(other.shape.suffix(2)))
    let count = batch.reduce(1, *)
    let out = Tensor(shape: batch + [m, n], zeroed: false)
    let (pa, pb, pc) = (a.pointer, b.pointer, out.pointer)
    for i in 0..<count {
      sgemm(
        pa + i * m * k, transA: ta, pb + i * k * n, transB: tb, pc + i * m * n, m: m, n: n, k: k)
    }
    return out.recording("matmul", [a, b], saving: [a, b]) { g in
      var ga: Tensor?
      var gb: Tensor?
      if a.requiresGrad {
        ga =
          ta
          ? b.matmul(g, transposeSelf: tb, transposeOther: true) : g.matmul(b, transposeOther: !tb)
      }
      if b.requiresGrad {
        gb =
          tb
          ? g.matmul(a, transposeSelf: true, transposeOther: ta) : a.matmul(g, transposeSelf: !ta)
      }
      return [ga, gb]
    }
  }
}
