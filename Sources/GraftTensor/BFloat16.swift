import CDNNLShim
import Foundation

// BF16 frozen weights: a weight that never trains can carry a bfloat16 copy, and every product
// with it (a linear layer's forward, the input gradient through it) then runs on oneDNN's BF16
// matmul with FP32 accumulation, activations rounded to BF16 on the way in and results in FP32.
// On CPUs with AVX-512 BF16 (`vdpbf16ps`) that is twice FP32's multiply-add rate. The FP32 values
// stay reachable through `pointer` (a memory-mapped checkpoint's pages are handed back to the
// kernel and read again only if something asks for them), so code that does not know about the
// copy still works, on the unrounded values.

/// Rounding between Float and bfloat16 bit patterns.
public enum BFloat16 {
  /// `x` rounded to bfloat16 (nearest, ties to even); NaN stays a quiet NaN of the same sign.
  @inline(__always)
  public static func bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
  }

  /// The Float a bfloat16 bit pattern stands for (exact).
  @inline(__always)
  public static func value(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

  /// `x` rounded to the nearest bfloat16 and back.
  @inline(__always)
  public static func rounded(_ x: Float) -> Float { value(bits(x)) }
}

/// A weight's bfloat16 copy, row-major in the weight's own shape ([out, in] for a linear layer).
public final class BF16Weights: @unchecked Sendable {
  /// First element's bits.
  let pointer: UnsafeMutablePointer<UInt16>
  /// Rows (the weight's first axis) and columns (the rest).
  let rows: Int
  let columns: Int

  init(from weights: UnsafePointer<Float>, rows: Int, columns: Int) {
    self.rows = rows
    self.columns = columns
    let count = Swift.max(rows * columns, 1)
    pointer = .allocate(capacity: count)
    StorageStats.allocated(bytes: count * 2)
    Parallel.forRange(rows * columns, grain: 65_536) { r in
      graft_dnnl_round_to_bf16(weights + r.lowerBound, pointer + r.lowerBound, Int64(r.count))
    }
  }

  /// Whether this copy is laid out as `weight` (a view of the same storage in another shape
  /// is not).
  func fits(_ weight: Tensor) -> Bool {
    weight.rank == 2 && weight.shape[0] == rows && weight.shape[1] == columns
  }

  deinit {
    StorageStats.freed(bytes: Swift.max(rows * columns, 1) * 2)
    pointer.deallocate()
  }
}

/// oneDNN's answer to "is there a native kernel for this kind of product here", asked once: the
/// shim's status, the kernel's name, and what the user is told when there is none.
struct NativeKernelProbe {
  let status: Int
  let kernel: String
  /// What this CPU lacks, for the user ("AVX-512 BF16").
  let missing: String
  /// What oneDNN would otherwise do, after the kernel's name ("kernel, slower than FP32").
  let fallback: String

  init(missing: String, fallback: String, _ ask: (UnsafeMutablePointer<CChar>, Int) -> Int32) {
    var name = [CChar](repeating: 0, count: 128)
    status = Int(name.withUnsafeMutableBufferPointer { ask($0.baseAddress!, $0.count) })
    kernel = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    self.missing = missing
    self.fallback = fallback
  }

  /// nil when the kernel is native; otherwise why not, in a sentence for the user.
  var unavailableReason: String? {
    switch status {
    case Int(GRAFT_DNNL_OK):
      return nil
    case Int(GRAFT_DNNL_NO_NATIVE_KERNEL):
      // An AVX2-only CPU: oneDNN offers no implementation of this product at all.
      guard !kernel.isEmpty else {
        return "this CPU has no \(missing), and oneDNN has no kernel for these products on it"
      }
      return "this CPU has no \(missing): oneDNN would use its \(kernel) \(fallback)"
    default:
      return "oneDNN failed to start (status \(status))"
    }
  }

  /// The native kernel's name, or nil.
  var nativeKernel: String? { unavailableReason == nil ? kernel : nil }
}

/// Whether this machine runs BF16 products natively, decided once.
public enum BF16Support {
  private static let probe = NativeKernelProbe(
    missing: "AVX-512 BF16", fallback: "kernel, slower than FP32"
  ) { graft_dnnl_bf16_probe($0, $1) }

  /// nil when oneDNN has a native BF16 matmul kernel on this CPU; otherwise why not, in a
  /// sentence for the user.
  public static var unavailableReason: String? { probe.unavailableReason }

  /// The oneDNN kernel BF16 products run on (for example "brg:avx512_core_bf16"), or nil.
  public static var kernel: String? { probe.nativeKernel }

  /// Whether BF16 products run natively here.
  public static var isAvailable: Bool { unavailableReason == nil }
}

extension Tensor {
  /// The weight's bfloat16 copy, if it has one.
  public var bf16Weights: BF16Weights? { storage.bf16 }

  /// The BF16 copy products use: only while the weight is frozen (a weight set to train after
  /// it got a copy must not be read through a stale one) and laid out as this tensor.
  var frozenBF16: BF16Weights? {
    guard !requiresGrad, let copy = storage.bf16, copy.fits(self) else { return nil }
    return copy
  }

  /// Whether products with this weight run in BF16 (it has a copy and is frozen).
  public var productsRunInBF16: Bool { frozenBF16 != nil }

  /// Drops the BF16 copy: products with this weight run in FP32 again (on its FP32 values, read
  /// back from the file where their pages were handed back).
  public func dropBF16() { storage.bf16 = nil }

  /// Gives this frozen 2-D weight a bfloat16 copy that every product with it then uses
  /// (`linear`, `layerNormLinear`, `activationLinear`, `attentionProjection` and their input
  /// gradients). Returns false, changing nothing, for a tensor that trains, is not 2-D, or
  /// when this CPU has no native BF16 (see `BF16Support`).
  ///
  /// When the FP32 values are borrowed from a memory-mapped file, their pages are handed back
  /// (they are read again from the file only if something asks for them), so the weight then
  /// costs half its FP32 memory.
  @discardableResult
  public func storeInBF16() -> Bool {
    guard rank == 2, !requiresGrad, BF16Support.isAvailable else { return false }
    if storage.bf16 == nil {
      storage.bf16 = BF16Weights(from: pointer, rows: shape[0], columns: shape[1])
      storage.releaseBorrowedPages()
    }
    return true
  }
}

// MARK: - Activations kept in BF16

// Under `backbone.precision=bf16` the frozen products read their operands rounded to BF16, as
// PyTorch's autocast does, so what backward reads of those operands can be kept rounded too: half
// the bytes on the tape, and the gradient of the function the forward pass computed (the rounded
// values are the ones it multiplied). A packed tensor holds two BF16 values per Float slot.

extension Tensor {
  /// These values rounded to BF16, packed two to a Float slot (⌈count / 2⌉ floats: half the
  /// bytes); `unpackedBF16(shape:)` reads them back. Needs native BF16 (`BF16Support`).
  func packedBF16() -> Tensor {
    let n = count
    let packed = Tensor(shape: [(n + 1) / 2], zeroed: true)
    let src = pointer
    packed.pointer.withMemoryRebound(to: UInt16.self, capacity: 2 * packed.count) { dst in
      Parallel.forRange(n, grain: 65_536) { r in
        graft_dnnl_round_to_bf16(src + r.lowerBound, dst + r.lowerBound, Int64(r.count))
      }
    }
    return packed
  }

  /// The values a `packedBF16()` tensor holds, as Floats of `shape` (exact).
  func unpackedBF16(shape: [Int]) -> Tensor {
    let out = Tensor(shape: shape, zeroed: false)
    unpackBF16(rows: 0..<1, width: out.count, into: out.pointer)
    return out
  }

  /// Rows `rows` of a packed tensor seen as [rows, width] BF16 values, as Floats into `dst`.
  func unpackBF16(rows: Range<Int>, width: Int, into dst: UnsafeMutablePointer<Float>) {
    let (start, n) = (rows.lowerBound * width, rows.count * width)
    pointer.withMemoryRebound(to: UInt16.self, capacity: 2 * count) { src in
      let from = src + start
      Parallel.forRange(n, grain: 65_536) { r in
        for i in r { dst[i] = Float(bitPattern: UInt32(from[i]) << 16) }
      }
    }
  }
}
