import CBLAS
import CKernels
import Foundation
import GraftTasks

/// `graft bench ops`: GEMM through the tensor API against direct `cblas_sgemm`, and the memory
/// throughput of the hot non-GEMM ops against a plain copy of the same bytes, all in one run.
public enum OpsBenchmark {
  /// One GEMM shape's figures.
  public struct GemmRow: Codable, Sendable {
    /// The shape's name (`2048^3`, or ViT-S/16's `S-qkv`, `S-fc1`, `S-fc2`).
    public var label: String
    /// Rows of the left operand (tokens).
    public var m: Int
    /// Columns of the product (output features).
    public var n: Int
    /// The inner dimension (input features).
    public var k: Int
    /// GFLOP/s through `Tensor.matmul`, median of the repeats.
    public var graftGflops: Double
    /// GFLOP/s of `cblas_sgemm` called directly on the same shape.
    public var cblasGflops: Double
    /// graft / cblas; the target is ≥ 0.95.
    public var ratio: Double { graftGflops / cblasGflops }

    enum CodingKeys: String, CodingKey {
      case label, m, n, k, ratio
      case graftGflops = "graft_gflops"
      case cblasGflops = "cblas_gflops"
    }

    /// A row from its figures.
    public init(label: String, m: Int, n: Int, k: Int, graftGflops: Double, cblasGflops: Double) {
      (self.label, self.m, self.n, self.k) = (label, m, n, k)
      (self.graftGflops, self.cblasGflops) = (graftGflops, cblasGflops)
    }

    /// Reads a row written by `encode(to:)` (`ratio` is recomputed, not read).
    public init(from decoder: Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      self.init(
        label: try c.decode(String.self, forKey: .label), m: try c.decode(Int.self, forKey: .m),
        n: try c.decode(Int.self, forKey: .n), k: try c.decode(Int.self, forKey: .k),
        graftGflops: try c.decode(Double.self, forKey: .graftGflops),
        cblasGflops: try c.decode(Double.self, forKey: .cblasGflops))
    }

    /// Writes the row with snake-case keys and its `ratio`.
    public func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(label, forKey: .label)
      try c.encode(m, forKey: .m)
      try c.encode(n, forKey: .n)
      try c.encode(k, forKey: .k)
      try c.encode(graftGflops, forKey: .graftGflops)
      try c.encode(cblasGflops, forKey: .cblasGflops)
      try c.encode(ratio, forKey: .ratio)
    }
  }

  /// One op and pass.
  public struct OpRow: Codable, Sendable {
    /// The op (for example `layer_norm`, `gelu`, `softmax`).
    public var op: String
    /// `forward` or `backward`.
    public var pass: String
    /// Bytes the pass must read and write at least (each input and output once).
    public var bytes: Int
    /// GB/s: `bytes` over the median time.
    public var gbps: Double
    /// GB/s of a plain copy of the same bytes, in the same run.
    public var copyGbps: Double
    /// gbps / copy_gbps; the forward target is ≥ 0.5.
    public var ratio: Double { gbps / copyGbps }

    enum CodingKeys: String, CodingKey {
      case op, pass, bytes, gbps, ratio
      case copyGbps = "copy_gbps"
    }

    /// A row from its figures.
    public init(op: String, pass: String, bytes: Int, gbps: Double, copyGbps: Double) {
      (self.op, self.pass, self.bytes, self.gbps, self.copyGbps) = (op, pass, bytes, gbps, copyGbps)
    }

    /// Reads a row written by `encode(to:)` (`ratio` is recomputed, not read).
    public init(from decoder: Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      self.init(
        op: try c.decode(String.self, forKey: .op), pass: try c.decode(String.self, forKey: .pass),
        bytes: try c.decode(Int.self, forKey: .bytes),
        gbps: try c.decode(Double.self, forKey: .gbps),
        copyGbps: try c.decode(Double.self, forKey: .copyGbps))
    }

    /// Writes the row with snake-case keys and its `ratio`.
    public func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(op, forKey: .op)
      try c.encode(pass, forKey: .pass)
      try c.encode(bytes, forKey: .bytes)
      try c.encode(gbps, forKey: .gbps)
      try c.encode(copyGbps, forKey: .copyGbps)
      try c.encode(ratio, forKey: .ratio)
    }
  }

  /// The whole report (`--json` prints this object).
  public struct Report: Codable, Sendable {
    /// The OpenBLAS kernel chosen at load time (`OpsBenchmark.openblasKernel`).
    public var openblasKernel: String
    /// OpenBLAS's build configuration string (`openblas_get_config`).
    public var openblasConfig: String
    /// Threads the products ran on.
    public var threads: Int
    /// A square GEMM and the linear layers of a ViT-S/16 block.
    public var sgemm: [GemmRow]
    /// The non-GEMM ops, forward and backward.
    public var ops: [OpRow]
    /// Attention's per-head products for heads at most 16 wide, one call on one thread:
    /// `graft_small_sgemm` (graft) against `cblas_sgemm` (cblas), both as attention calls them.
    /// Absent in reports from before they were measured.
    public var headProducts: [GemmRow]?
    /// Narrow weight-gradient products over many tokens, one call against the same product in
    /// 128-row pieces (`OpsBenchmark.narrowGradientProducts`). Absent in reports from before
    /// they were measured.
    public var narrowGradients: [SplitRow]?
    /// The CPU, its clock during the run and its peak.
    public var machine: MachineReport?

    enum CodingKeys: String, CodingKey {
      case openblasKernel = "openblas_kernel"
      case openblasConfig = "openblas_config"
      case headProducts = "head_products"
      case narrowGradients = "narrow_gradients"
      case threads, sgemm, ops, machine
    }
  }

  /// The OpenBLAS kernel chosen at load time (e.g. "Haswell", "SkylakeX", "Zen").
  public static var openblasKernel: String {
    String(cString: openblas_get_corename())
  }

  /// GFLOP/s of `[m,k]·[n,k]ᵀ` (a linear layer) through `Tensor.matmul`, median of `repeats`.
  public static func linearLayerGflops(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
    var rng = RandomGenerator(seed: 1)
    let a = Tensor.rand([m, k], generator: &rng)
    let b = Tensor.rand([n, k], generator: &rng)
    let seconds = medianSeconds(repeats) { _ = a.matmul(b, transposeOther: true) }
    return 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9
  }

  /// Runs every measurement; `quick` uses fewer repeats (for a smoke run).
  public static func run(quick: Bool = false, log: (String) -> Void = { _ in }) -> Report {
    let repeats = quick ? 3 : 7
    let machineBefore = MachineReport.measure()
    var rng = RandomGenerator(seed: 0)
    // Shapes: a square GEMM and ViT-S/16's linear layers at batch 64 (197 tokens).
    let shapes: [(String, Int, Int, Int, Bool)] = [
      ("2048^3", 2048, 2048, 2048, false),
      ("S-qkv", 12608, 1152, 384, true),
      ("S-fc1", 12608, 1536, 384, true),
      ("S-fc2", 12608, 384, 1536, true),
    ]
    var gemm: [GemmRow] = []
    for (label, m, n, k, linear) in shapes {
      log("sgemm \(label)")
      let a = Tensor.rand([m, k], generator: &rng)
      // A linear layer stores its weight as [out, in] and multiplies by its transpose.
      let b = Tensor.rand(linear ? [n, k] : [k, n], generator: &rng)
      let flop = 2.0 * Double(m) * Double(n) * Double(k)
      let c = Tensor(shape: [m, n], zeroed: false)
      // The anchor is OpenBLAS as users call it: its own threads, one per core.
      openblas_set_num_threads(Int32(Parallel.threadCount))
      defer { openblas_set_num_threads(1) }
      let direct = medianSeconds(repeats) {
        cblas_sgemm(
          CblasRowMajor, CblasNoTrans, linear ? CblasTrans : CblasNoTrans, Int32(m), Int32(n),
          Int32(k), 1, a.pointer, Int32(k), b.pointer, Int32(linear ? k : n), 0, c.pointer,
          Int32(n))
      }
      openblas_set_num_threads(1)
      let api = medianSeconds(repeats) { _ = a.matmul(b, transposeOther: linear) }
      gemm.append(
        GemmRow(
          label: label, m: m, n: n, k: k, graftGflops: flop / api / 1e9,
          cblasGflops: flop / direct / 1e9))
    }

    // Non-GEMM ops on ViT-S/16 activations at batch 64: [64·197, 384].
    let shape = [64 * 197, 384]
    let x = Tensor.randn(shape, generator: &rng)
    let y = Tensor.randn(shape, generator: &rng)
    let g = Tensor.randn(shape, generator: &rng)
    let weight = Tensor.rand([384], low: 0.5, high: 1.5, generator: &rng)
    let bias = Tensor.randn([384], generator: &rng)
    let size = x.byteCount
    let copyTarget = Tensor(shape: shape, zeroed: false)
    log("copy")
    let copySeconds = medianSeconds(repeats) {
      let (src, dst) = (x.pointer, copyTarget.pointer)
      Parallel.forRange(x.count, grain: 1 << 16) { r in
        (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count)
      }
    }
    let copyGbps = 2.0 * Double(size) / copySeconds / 1e9

    var ops: [OpRow] = []
    func measure(_ op: String, forwardTensors: Int, backwardTensors: Int, _ f: (Tensor) -> Tensor) {
      log(op)
      let input = x.detached()
      let fwd = medianSeconds(repeats) { _ = withNoGrad { f(input) } }
      ops.append(
        OpRow(
          op: op, pass: "forward", bytes: forwardTensors * size,
          gbps: Double(forwardTensors * size) / fwd / 1e9, copyGbps: copyGbps))
      input.requiresGrad = true
      let out = f(input)
      guard let backward = out.opBackward else { return }
      // The node's own backward, without the tape walk or leaf accumulation around it.
      let bwd = medianSeconds(repeats) { _ = withNoGrad { backward(g) } }
      ops.append(
        OpRow(
          op: op, pass: "backward", bytes: backwardTensors * size,
          gbps: Double(backwardTensors * size) / bwd / 1e9, copyGbps: copyGbps))
    }
    // Forward reads x and writes y; backward reads the output gradient and one saved tensor and
    // writes the input gradient (parameter gradients are extra, uncounted traffic).
    measure("layer_norm", forwardTensors: 2, backwardTensors: 3) {
      $0.layerNorm(weight: weight, bias: bias, eps: 1e-6)
    }
    measure("softmax", forwardTensors: 2, backwardTensors: 3) { $0.softmax(axis: -1) }
    measure("gelu", forwardTensors: 2, backwardTensors: 3) { $0.gelu() }
    // add: forward reads two tensors and writes one; its backward passes the gradient through
    // untouched, so the row measures the broadcast case of a bias add (sum over rows).
    log("add")
    let fwd = medianSeconds(repeats) { _ = x + y }
    ops.append(
      OpRow(
        op: "add", pass: "forward", bytes: 3 * size, gbps: 3 * Double(size) / fwd / 1e9,
        copyGbps: copyGbps))
    let b = bias.detached().requiringGrad()
    let out = x + b
    if let backward = out.opBackward {
      let bwd = medianSeconds(repeats) { _ = withNoGrad { backward(g) } }
      ops.append(
        OpRow(
          op: "add", pass: "backward", bytes: size, gbps: Double(size) / bwd / 1e9,
          copyGbps: copyGbps))
    }
    log("head products")
    let heads = headProducts(repeats: repeats)
    log("narrow weight gradients")
    let narrow = narrowGradientProducts(repeats: repeats)
    return Report(
      openblasKernel: openblasKernel, openblasConfig: String(cString: openblas_get_config()),
      threads: Parallel.threadCount, sgemm: gemm, ops: ops, headProducts: heads,
      narrowGradients: narrow, machine: machineBefore.averaged(with: .measure()))
  }

  /// The per-head products of attention with narrow heads, as `Attention.swift` issues them
  /// (labels: the problem, then the product; `ᵀ` marks a transposed operand), each timed as a
  /// batch of calls on this thread: LST's side attention on the bundled backbone (4 heads 4 wide
  /// over 50 tokens; q, k, v read in place from the fused [50, 48] projection) and heads 8 and
  /// 16 wide. The anchor is single-threaded OpenBLAS, which attention called before.
  public static func headProducts(repeats: Int) -> [GemmRow] {
    // label, transA, transB, m, n, k, lda, ldb
    let shapes: [(String, Bool, Bool, Int, Int, Int, Int, Int)] = [
      ("h4 q·kᵀ", false, true, 50, 50, 4, 48, 48),
      ("h4 P·v", false, false, 50, 4, 50, 50, 48),
      ("h4 Pᵀ·dO", true, false, 50, 4, 50, 50, 16),
      ("h8 q·kᵀ", false, true, 197, 197, 8, 96, 96),
      ("h8 P·v", false, false, 197, 8, 197, 197, 96),
      ("h16 P·v", false, false, 50, 16, 50, 50, 192),
    ]
    var rng = RandomGenerator(seed: 2)
    let a = Tensor.rand([1 << 16], generator: &rng)
    let b = Tensor.rand([1 << 16], generator: &rng)
    let c = Tensor(shape: [1 << 16], zeroed: false)
    // OpenBLAS as attention runs it: one thread, warmed up by a product through the tensor API.
    _ = Tensor.zeros([384, 16]).matmul(Tensor.zeros([16, 384]))
    openblas_set_num_threads(1)
    var rows: [GemmRow] = []
    for (label, ta, tb, m, n, k, lda, ldb) in shapes {
      let flop = 2.0 * Double(m) * Double(n) * Double(k)
      // About a millisecond of work per timing, so the timer's resolution does not count.
      let calls = Swift.max(1, Int(20e6 / flop))
      let blas = medianSeconds(repeats) {
        for _ in 0..<calls {
          cblas_sgemm(
            CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), 0.5, a.pointer, Int32(lda), b.pointer, Int32(ldb), 0,
            c.pointer, Int32(n))
        }
      }
      let small = medianSeconds(repeats) {
        for _ in 0..<calls {
          graft_small_sgemm(
            ta ? 1 : 0, tb ? 1 : 0, m, n, k, 0.5, a.pointer, lda, b.pointer, ldb, c.pointer, n)
        }
      }
      rows.append(
        GemmRow(
          label: label, m: m, n: n, k: k, graftGflops: flop * Double(calls) / small / 1e9,
          cblasGflops: flop * Double(calls) / blas / 1e9))
    }
    return rows
  }

  /// One product timed as a single call and as the same product cut along its inner dimension.
  public struct SplitRow: Codable, Sendable {
    /// The product's name (its output shape and inner dimension).
    public var label: String
    /// Rows of the product.
    public var m: Int
    /// Columns of the product.
    public var n: Int
    /// The inner dimension (tokens), cut into `piece`-row pieces for the anchor.
    public var k: Int
    /// Rows of each piece.
    public var piece: Int
    /// GFLOP/s of one `cblas_sgemm` call over all `k` rows, as the backward issues it.
    public var wholeGflops: Double
    /// GFLOP/s of the same product as `k / piece` accumulating calls (the anchor).
    public var piecesGflops: Double
    /// whole / pieces; below 0.6 OpenBLAS is in the slow state `openBLASWarmUp` works around.
    public private(set) var ratio: Double

    enum CodingKeys: String, CodingKey {
      case label, m, n, k, piece, ratio
      case wholeGflops = "whole_gflops"
      case piecesGflops = "pieces_gflops"
    }

    /// A row from its figures.
    public init(
      label: String, m: Int, n: Int, k: Int, piece: Int, wholeGflops: Double, piecesGflops: Double
    ) {
      (self.label, self.m, self.n, self.k, self.piece) = (label, m, n, k, piece)
      (self.wholeGflops, self.piecesGflops) = (wholeGflops, piecesGflops)
      ratio = wholeGflops / piecesGflops
    }
  }

  /// The weight gradients of narrow layers over a batch of tokens, Aᵀ·B with A [k, m] and
  /// B [k, n] (UniPT's Down layers, LST's ladders: 64 × 128 and 16 × 128 over 1,600 tokens), on
  /// one thread as the backward runs them, each as one call and in 128-row pieces. OpenBLAS
  /// 0.3.21 ran the single call at a third of the pieces' rate on a 2-core AVX2 EPYC until the
  /// process had run a wide product (README, "Faster heads"); this row shows whether the
  /// warm-up `Tensor` products run before it (as at Graft's first product) leave it at the
  /// full rate on this machine. It was a unit test until a CI machine, busy with the fuzzers,
  /// measured 0.31 with the warm-up run: a rate that depends on the machine is measured here.
  public static func narrowGradientProducts(repeats: Int) -> [SplitRow] {
    let (k, piece) = (1600, 128)
    var rng = RandomGenerator(seed: 3)
    // Graft's first product runs `openBLASWarmUp` and leaves OpenBLAS on one thread.
    _ = Tensor.zeros([2, 2]).matmul(Tensor.zeros([2, 2]))
    openblas_set_num_threads(1)
    var rows: [SplitRow] = []
    for (m, n) in [(64, 128), (16, 128)] {
      let a = Tensor.rand([k, m], generator: &rng)
      let b = Tensor.rand([k, n], generator: &rng)
      let c = Tensor(shape: [m, n], zeroed: false)
      func product(rows start: Int, count: Int, beta: Float) {
        cblas_sgemm(
          CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(count), 1,
          a.pointer + start * m, Int32(m), b.pointer + start * n, Int32(n), beta, c.pointer,
          Int32(n))
      }
      let flop = 2.0 * Double(m) * Double(n) * Double(k)
      // About a millisecond of work per timing, so the timer's resolution does not count.
      let calls = Swift.max(1, Int(20e6 / flop))
      let whole = medianSeconds(repeats) {
        for _ in 0..<calls { product(rows: 0, count: k, beta: 0) }
      }
      let pieces = medianSeconds(repeats) {
        for _ in 0..<calls {
          for start in stride(from: 0, to: k, by: piece) {
            product(rows: start, count: Swift.min(piece, k - start), beta: start == 0 ? 0 : 1)
          }
        }
      }
      rows.append(
        SplitRow(
          label: "\(m)×\(n) over \(k)", m: m, n: n, k: k, piece: piece,
          wholeGflops: flop * Double(calls) / whole / 1e9,
          piecesGflops: flop * Double(calls) / pieces / 1e9))
    }
    return rows
  }
}
