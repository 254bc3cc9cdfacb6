import CDNNLShim
import Foundation

// INT8 frozen weights for inference: a frozen matrix can carry an s8 copy with one scale per
// output channel (symmetric, max|w|/127), and its forward product then quantizes each input row
// on the fly (one scale per row, max|x|/127: per-token dynamic quantization) and runs oneDNN's
// s8 matmul with int32 accumulation (AVX-512 VNNI's `vpdpbusd`), the result scaled back to FP32.
// The input gradient never uses it: INT8 is for inference (`graft embed --precision int8`,
// `graft eval --precision int8`), not for training.

/// A weight's s8 copy, row-major [out, in], with one scale per row (output channel).
public final class Int8Weights: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Int8>
  /// w ≈ q · scales[row].
  let scales: [Float]
  let rows: Int
  let columns: Int

  /// Quantizes `weights` [rows, columns] by the rule the inputs' rows follow
  /// (`graft_dnnl_quantize_rows`); built only where `Int8Support.isAvailable`.
  init(from weights: UnsafePointer<Float>, rows: Int, columns: Int) {
    self.rows = rows
    self.columns = columns
    pointer = .allocate(capacity: Swift.max(rows * columns, 1))
    StorageStats.allocated(bytes: Swift.max(rows * columns, 1) + rows * 4)
    var scales = [Float](repeating: 1, count: rows)
    graft_dnnl_quantize_rows(
      weights, Int64(rows), Int64(columns), Int64(columns), pointer, &scales)
    self.scales = scales
  }

  func fits(_ weight: Tensor) -> Bool {
    weight.rank == 2 && weight.shape[0] == rows && weight.shape[1] == columns
  }

  deinit {
    StorageStats.freed(bytes: Swift.max(rows * columns, 1) + rows * 4)
    pointer.deallocate()
  }
}

/// Whether this machine runs INT8 products natively (AVX-512 VNNI or AMX), decided once.
public enum Int8Support {
  private static let probe = NativeKernelProbe(missing: "AVX-512 VNNI", fallback: "int8 kernel") {
    graft_dnnl_s8_probe($0, $1)
  }

  /// nil when oneDNN has a native int8 matmul kernel on this CPU; otherwise why not.
  public static var unavailableReason: String? { probe.unavailableReason }

  /// The oneDNN kernel INT8 products run on (for example "brg:avx512_core_vnni"), or nil.
  public static var kernel: String? { probe.nativeKernel }

  /// Whether INT8 products run natively here.
  public static var isAvailable: Bool { unavailableReason == nil }
}

extension Tensor {
  /// The s8 copy inference products use: only while the weight is frozen and laid out as this
  /// tensor.
  var frozenInt8: Int8Weights? {
    guard !requiresGrad, let copy = storage.int8, copy.fits(self) else { return nil }
    return copy
  }

  /// Whether forward products with this weight run in INT8.
  public var productsRunInInt8: Bool { frozenInt8 != nil }

  /// Gives this frozen 2-D weight an s8 copy (per-output-channel scales) that its forward
  /// products then use, each input row quantized on the fly. Returns false, changing nothing,
  /// for a tensor that trains, is not 2-D, or where this CPU has no native INT8
  /// (`Int8Support`). The FP32 pages of a mapped checkpoint are handed back as `storeInBF16`
  /// does. For inference only: the gradient through the weight uses its FP32 values.
  @discardableResult
  public func storeInInt8() -> Bool {
    guard rank == 2, !requiresGrad, Int8Support.isAvailable else { return false }
    if storage.int8 == nil {
      storage.int8 = Int8Weights(from: pointer, rows: shape[0], columns: shape[1])
      storage.releaseBorrowedPages()
    }
    return true
  }

  /// Drops the s8 copy.
  public func dropInt8() { storage.int8 = nil }
}

/// c[m, n] = dequantize(q8(a[m, k])·W8ᵀ) + bias, a's rows quantized on the fly; rows split
/// across the pool as the BF16 products are.
func int8Product(
  _ a: UnsafePointer<Float>, rows m: Int, k: Int, _ weights: Int8Weights, n: Int,
  bias: UnsafePointer<Float>?, into c: UnsafeMutablePointer<Float>
) {
  weights.scales.withUnsafeBufferPointer { columnScales in
    forRowBlocks(m) { range, block in
      let quantized = UnsafeMutablePointer<Int8>.allocate(capacity: block * k)
      let rowScales = UnsafeMutablePointer<Float>.allocate(capacity: block)
      defer {
        quantized.deallocate()
        rowScales.deallocate()
      }
      for index in range {
        let first = index * block
        let count = Swift.min(block, m - first)
        graft_dnnl_quantize_rows(
          a + first * k, Int64(count), Int64(k), Int64(k), quantized, rowScales)
        let out = c + first * n
        let status = graft_dnnl_s8_gemm(
          quantized, Int64(k), weights.pointer, Int64(k), columnScales.baseAddress, out,
          Int64(n), Int64(count), Int64(n), Int64(k))
        precondition(
          status == GRAFT_DNNL_OK,
          "oneDNN's int8 matmul failed (status \(status), oneDNN \(graft_dnnl_last_error())) "
            + "on [\(count), \(k)]·[\(k), \(n)]; run with --precision fp32")
        for r in 0..<count {
          let row = out + r * n
          let scale = rowScales[r]
          if let bias {
            for j in 0..<n { row[j] = row[j] * scale + bias[j] }
          } else {
            for j in 0..<n { row[j] *= scale }
          }
        }
      }
    }
  }
}
