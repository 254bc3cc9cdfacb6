import CBLAS

// Matrix products on OpenBLAS. Transposes are passed to sgemm as flags, never copied.
//
// Threading: OpenBLAS runs single-threaded and Graft's own pool splits each large GEMM into one
// row (or column) block per core. OpenBLAS's worker threads would otherwise spin in
// `sched_yield` for tens of milliseconds after every GEMM, stealing the cores from the
// elementwise ops that follow; with one pool there is never more than one thread per core.

/// Makes OpenBLAS single-threaded, once, before the first GEMM, and runs `openBLASWarmUp`.
let blasSingleThreaded: Void = {
  openblas_set_num_threads(1)
  openBLASWarmUp()
}()

/// One 384 × 384 × 16 product into scratch (2.4 MFLOP, about 0.1 ms, once per process).
///
/// On the 2-core AVX2 EPYC (Debian's OpenBLAS 0.3.21, its `Zen` kernel) a product with a long
/// inner dimension and a narrow output, Aᵀ·B as in the weight gradient of a narrow layer over a
/// batch of tokens (64 × 128 or 16 × 128 over 1,600 tokens: UniPT's Down layers, LST's ladders),
/// ran at 10–12 GFLOP/s, a third of the kernel's 31–36, until the process had run one product
/// at least about 336 × 336 wide with an inner dimension of at least 16 (in any thread); after
/// it, at 29–36, every shape measured, for the rest of the process. The cause is inside
/// OpenBLAS and was not found: it is not the first touch of its packing buffer (small products
/// run first stay slow), the clock or the caches (spinning and large memsets do not help). A
/// process that starts with a ViT's own products is fast anyway; one that trains a small head
/// on cached features was not. The product changes no result: each later product is computed
/// as before, only faster (README, "Faster heads").
func openBLASWarmUp() {
  let (side, depth) = (384, 16)
  // Both operands are the same zero [16, 384] matrix: only the shape matters.
  let operand = UnsafeMutablePointer<Float>.allocate(capacity: side * depth)
  let c = UnsafeMutablePointer<Float>.allocate(capacity: side * side)
  defer {
    operand.deallocate()
    c.deallocate()
  }
  operand.initialize(repeating: 0, count: side * depth)
  sgemmBlock(
    operand, true, side, operand, false, side, c, side, m: side, n: side, k: depth, beta: 0)
}

/// C[m,n] = op(A)·op(B) (+ beta·C) for row-major contiguous operands, split across the pool's
/// threads when it is large enough to pay for it.
func sgemm(
  _ a: UnsafePointer<Float>, transA: Bool, _ b: UnsafePointer<Float>, transB: Bool,
  _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, beta: Float = 0
) {
  if m == 0 || n == 0 { return }
  if k == 0 {
    if beta == 0 {
      c.update(repeating: 0, count: m * n)
    } else {
      for i in 0..<(m * n) { c[i] *= beta }
    }
    return
  }
  _ = blasSingleThreaded
  let parts = sgemmParts(flops: 2 * m * n * k, threads: Parallel.threadCount)
  let (lda, ldb) = (transA ? m : k, transB ? k : n)
  if parts <= 1 {
    sgemmBlock(a, transA, lda, b, transB, ldb, c, n, m: m, n: n, k: k, beta: beta)
  } else if m >= n {
    // Row blocks of C: rows of op(A).
    Parallel.forRange(m, grain: Swift.max(1, m / parts)) { r in
      let aBlock = transA ? a + r.lowerBound : a + r.lowerBound * k
      sgemmBlock(
        aBlock, transA, lda, b, transB, ldb, c + r.lowerBound * n, n, m: r.count, n: n, k: k,
        beta: beta)
    }
  } else {
    // Column blocks of C: columns of op(B).
    Parallel.forRange(n, grain: Swift.max(1, n / parts)) { r in
      let bBlock = transB ? b + r.lowerBound * k : b + r.lowerBound
      sgemmBlock(
        a, transA, lda, bBlock, transB, ldb, c + r.lowerBound, n, m: m, n: r.count, k: k,
        beta: beta)
    }
  }
}

/// How many row (or column) blocks a GEMM of `flops` splits into on `threads` threads: all of
/// them from 4 MFLOP, and below that as many as give each block at least 0.5 MFLOP (about
/// 10 µs of a core), so the narrow products of the small heads (LST's 16-wide side layers over
/// a batch of tokens, 2.5–3.3 MFLOP each) no longer run on one core while the others wait. As
/// with every split, the last bits of an element can depend on the count (OpenBLAS picks its
/// kernels by block size), never on which thread runs a block. On two threads this made a warm
/// `lst` run 3–22 % faster (README).
func sgemmParts(flops: Int, threads: Int) -> Int {
  flops >= 4_000_000 ? threads : Swift.max(1, Swift.min(threads, flops / 500_000))
}

/// C[m,n] = alpha·op(A)·op(B) + beta·C with explicit leading dimensions, on the calling thread
/// (callers make OpenBLAS single-threaded first, through `blasSingleThreaded`).
@inline(__always)
func sgemmBlock(
  _ a: UnsafePointer<Float>, _ transA: Bool, _ lda: Int, _ b: UnsafePointer<Float>,
  _ transB: Bool, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
  m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float
) {
  cblas_sgemm(
    CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
    if count == 1 || 2 * m * n * k >= 4_000_000 {
      for i in 0..<count {
        sgemm(
          pa + i * m * k, transA: ta, pb + i * k * n, transB: tb, pc + i * m * n, m: m, n: n, k: k)
      }
    } else {
      // Many small products (attention heads): one single-threaded GEMM per pool task.
      _ = blasSingleThreaded
      Parallel.forRange(count, grain: 1) { r in
        for i in r {
          sgemmBlock(
            pa + i * m * k, ta, ta ? m : k, pb + i * k * n, tb, tb ? k : n, pc + i * m * n, n,
            m: m, n: n, k: k, beta: 0)
        }
      }
    }
    // dA needs B and dB needs A: keep an operand only if the other one wants a gradient (a
    // frozen weight never makes its layer keep the input activation).
    let keptA: Tensor? = b.requiresGrad ? a : nil
    let keptB: Tensor? = a.requiresGrad ? b : nil
    return out.recording("matmul", [a, b], saving: [keptA, keptB].compactMap { $0 }) { g in
      var ga: Tensor?
      var gb: Tensor?
      if let b = keptB {
        ga =
          ta
          ? b.matmul(g, transposeSelf: tb, transposeOther: true)
          : g.matmul(b, transposeOther: !tb)
      }
      if let a = keptA {
        gb =
          tb
          ? g.matmul(a, transposeSelf: true, transposeOther: ta)
          : a.matmul(g, transposeSelf: !ta)
      }
      return [ga, gb]
    }
  }
}
