import CDNNLShim

// Products with a layer's weight W [out, in], the two that a frozen weight takes part in: the
// forward x·Wᵀ and the input gradient g·W. A weight with a bfloat16 copy (`storeInBF16`) runs
// them on oneDNN's BF16 matmul; one with an s8 copy (`storeInInt8`, inference) its forward on
// oneDNN's int8 matmul; every other weight on OpenBLAS's sgemm. The weight gradient
// (gᵀ·x) only exists for a weight that trains, which never has a BF16 copy.

/// Rows of the left operand converted (to BF16 or s8) and multiplied in one oneDNN call: small
/// enough that the converted rows (at most 1.5 MiB at width 1,536 in BF16) stay in cache for the
/// product.
let rowsPerCall = 512

/// Splits `m` rows into equal blocks of at most `rowsPerCall`, as many per pool thread, so the
/// threads finish together and few distinct shapes get compiled; calls `body` on each thread
/// with its range of block indices and the block size (the last block may be shorter).
func forRowBlocks(_ m: Int, _ body: (_ blocks: Range<Int>, _ block: Int) -> Void) {
  let threads = Swift.max(1, Swift.min(Parallel.threadCount, m / 16))
  let perThread = (m + threads - 1) / threads
  let callsPerThread = (perThread + rowsPerCall - 1) / rowsPerCall
  let block = (perThread + callsPerThread - 1) / callsPerThread
  Parallel.forRange((m + block - 1) / block, grain: 1) { body($0, block) }
}

/// out[rows, out] = x[rows, in]·Wᵀ + bias (a linear layer's forward; `bias` [out] optional).
func productWithWeight(
  _ x: UnsafePointer<Float>, rows: Int, weight: Tensor, bias: UnsafePointer<Float>?,
  into out: UnsafeMutablePointer<Float>
) {
  let (outF, inF) = (weight.shape[0], weight.shape[1])
  if let int8 = weight.frozenInt8, rows > 0, outF > 0, inF > 0 {
    int8Product(x, rows: rows, k: inF, int8, n: outF, bias: bias, into: out)
  } else if let bf16 = weight.frozenBF16, rows > 0, outF > 0, inF > 0 {
    bf16Product(
      x, rows: rows, k: inF, bf16, weightTransposed: true, n: outF, bias: bias, into: out)
  } else {
    // The bias as the GEMM's initial value.
    fillRows(out, rows: rows, n: outF, bias: bias)
    sgemm(
      x, transA: false, weight.pointer, transB: true, out, m: rows, n: outF, k: inF, beta: 1)
  }
}

/// gx[rows, in] = g[rows, out]·W: the gradient with respect to a linear layer's input.
func productThroughWeight(
  _ g: UnsafePointer<Float>, rows: Int, weight: Tensor, into gx: UnsafeMutablePointer<Float>
) {
  let (outF, inF) = (weight.shape[0], weight.shape[1])
  if let bf16 = weight.frozenBF16, rows > 0, outF > 0, inF > 0 {
    bf16Product(g, rows: rows, k: outF, bf16, weightTransposed: false, n: inF, into: gx)
  } else {
    sgemm(g, transA: false, weight.pointer, transB: false, gx, m: rows, n: inF, k: outF)
  }
}

/// c[m, n] = bf16(a[m, k])·B + bias, B = Wᵀ or W from the weight's BF16 copy, FP32 accumulation.
/// The rows are split evenly across the pool (`forRowBlocks`); each thread converts and
/// multiplies its blocks, oneDNN running single-threaded inside each call.
private func bf16Product(
  _ a: UnsafePointer<Float>, rows m: Int, k: Int, _ weights: BF16Weights, weightTransposed: Bool,
  n: Int, bias: UnsafePointer<Float>? = nil, into c: UnsafeMutablePointer<Float>
) {
  forRowBlocks(m) { range, block in
    let scratch = UnsafeMutablePointer<UInt16>.allocate(capacity: block * k)
    defer { scratch.deallocate() }
    for index in range {
      let first = index * block
      let count = Swift.min(block, m - first)
      graft_dnnl_round_to_bf16(a + first * k, scratch, Int64(count * k))
      // Wᵀ is read from W [n, k]; W itself is [k, n].
      bf16GEMM(
        scratch, k, weights.pointer, weightTransposed ? k : n, bTransposed: weightTransposed,
        c + first * n, n, m: count, n: n, k: k, bias: bias)
    }
  }
}

/// c[m, n] = alpha·a[m, k]·B + bias on oneDNN, single-threaded: `a` row-major with row stride
/// `lda`; B read from a row-major [n, k] matrix (`bTransposed`) or [k, n] matrix with row stride
/// `ldb`; `bias` [n] added to every row when given; `c` row-major with row stride `ldc`.
func bf16GEMM(
  _ a: UnsafePointer<UInt16>, _ lda: Int, _ b: UnsafePointer<UInt16>, _ ldb: Int,
  bTransposed: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, m: Int, n: Int, k: Int,
  alpha: Float = 1, bias: UnsafePointer<Float>? = nil
) {
  let status = graft_dnnl_bf16_gemm(
    a, Int64(lda), b, Int64(ldb), bTransposed ? 1 : 0, bias, c, Int64(ldc), Int64(m), Int64(n),
    Int64(k), alpha)
  // The shapes are valid and the kernel was found at start-up (`BF16Support`); a failure here
  // is oneDNN's own (memory), not something a run can recover from mid-product.
  precondition(
    status == GRAFT_DNNL_OK,
    "oneDNN's BF16 matmul failed (status \(status), oneDNN \(graft_dnnl_last_error())) on "
      + "[\(m), \(k)]·[\(k), \(n)]; run with backbone.precision=fp32")
}

/// `count` floats rounded to BF16 in a new buffer (the caller deallocates it).
func bf16Copy(_ src: UnsafePointer<Float>, count: Int) -> UnsafeMutablePointer<UInt16> {
  let out = UnsafeMutablePointer<UInt16>.allocate(capacity: Swift.max(count, 1))
  Parallel.forRange(count, grain: 65_536) { r in
    graft_dnnl_round_to_bf16(src + r.lowerBound, out + r.lowerBound, Int64(r.count))
  }
  return out
}
