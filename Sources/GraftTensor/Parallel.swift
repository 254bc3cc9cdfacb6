import Dispatch
import Foundation

/// Data-parallel loops for the non-BLAS ops (elementwise, softmax, layer norm, im2col, pooling).
///
/// Work is split into one contiguous chunk per core and run on libdispatch's persistent worker
/// threads; below `grain` items it runs inline on the caller, so small tensors pay nothing.
/// Callers never run this while a BLAS call is in flight, so the two never oversubscribe.
public enum Parallel {
  /// Threads used for parallel loops (the machine's active cores, or `GRAFT_NUM_THREADS`).
  public static let threadCount: Int = {
    if let s = ProcessInfo.processInfo.environment["GRAFT_NUM_THREADS"], let n = Int(s), n > 0 {
      return n
    }
    return max(1, ProcessInfo.processInfo.activeProcessorCount)
  }()

  /// Calls `body` on disjoint sub-ranges covering `0..<count`, in parallel when `count` is at
  /// least `grain` (items that cost about as much as one float operation each).
  @inline(__always)
  public static func forRange(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let chunks = min(threadCount, count / max(grain, 1))
    if chunks <= 1 {
      if count > 0 { body(0..<count) }
      return
    }
    withoutActuallyEscaping(body) { body in
      let box = UncheckedSendable(body)
      DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks
        let hi = count * (c + 1) / chunks
        box.value(lo..<hi)
      }
    }
  }
}

/// Moves a value the compiler cannot prove thread-safe into a parallel loop whose chunks touch
/// disjoint memory.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
