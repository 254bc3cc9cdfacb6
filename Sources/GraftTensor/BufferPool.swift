import Foundation
import Synchronization

/// Recycles large tensor buffers by exact byte size (ggml-alloc's idea, in its simplest form).
///
/// A training step allocates the same activation sizes every step. Without reuse, every large
/// buffer is a fresh `mmap` from the C allocator whose pages fault in again on first touch; with
/// it, a step after the first reuses warm memory. Buffers below `minimumBytes` go straight to the
/// C allocator, which is already fast for them. The cache is bounded by `capacityBytes`.
public final class BufferPool: Sendable {
  /// The process-wide pool that `TensorStorage` uses.
  public static let shared = BufferPool(
    capacityBytes: ProcessInfo.processInfo.environment["GRAFT_POOL_MIB"].flatMap(Int.init).map {
      $0 << 20
    } ?? (1 << 30))

  /// Buffers smaller than this are never pooled.
  public let minimumBytes = 1 << 16
  /// Upper bound on idle bytes kept for reuse.
  public let capacityBytes: Int

  private struct State {
    // Addresses as integers: raw pointers are not Sendable, the lock makes this safe.
    var free: [Int: [UInt]] = [:]
    var cached = 0
  }
  private let state = Mutex(State())

  init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

  /// A 64-byte aligned buffer of exactly `bytes`, reused when one is idle.
  func take(_ bytes: Int) -> UnsafeMutableRawPointer {
    if bytes >= minimumBytes {
      let reused = state.withLock { s -> UInt? in
        guard let p = s.free[bytes]?.popLast() else { return nil }
        s.cached -= bytes
        return p
      }
      if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) { return p }
    }
    return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  }

  /// Returns a buffer obtained from `take(bytes)`.
  func give(_ pointer: UnsafeMutableRawPointer, _ bytes: Int) {
    if bytes >= minimumBytes {
      let address = UInt(bitPattern: pointer)
      let kept = state.withLock { s -> Bool in
        guard s.cached + bytes <= capacityBytes else { return false }
        s.free[bytes, default: []].append(address)
        s.cached += bytes
        return true
      }
      if kept { return }
    }
    pointer.deallocate()
  }

  /// Idle bytes held for reuse.
  public var cachedBytes: Int { state.withLock { $0.cached } }

  /// Frees every idle buffer.
  public func trim() {
    let all = state.withLock { s -> [UInt] in
      defer {
        s.free = [:]
        s.cached = 0
      }
      return s.free.values.flatMap { $0 }
    }
    for a in all { UnsafeMutableRawPointer(bitPattern: a)?.deallocate() }
  }
}
