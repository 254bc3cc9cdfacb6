import Foundation

/// Recycles large tensor buffers by exact byte size (ggml-alloc's idea, in its simplest form).
///
/// A training step allocates the same activation sizes every step. Without reuse, every large
/// buffer is a fresh mapping whose pages fault in again on first touch; with it, a step after the
/// first reuses warm memory. Buffers below `minimumBytes` go to the C allocator, which is already
/// fast for them; larger ones are mapped and unmapped here directly, so memory given back really
/// leaves the process (the C allocator keeps freed blocks below its mmap threshold, which it
/// raises as large blocks are freed).
///
/// Idle buffers are kept within the process's own high-water mark: live plus idle bytes never
/// exceed the most bytes that were ever requested at once, plus the largest single buffer (the
/// slack that lets a forward pass keep one block's transients across the peak it reaches in
/// every block, instead of mapping them again). A request that finds no idle buffer of its size
/// is served by the smallest idle buffer up to 4× its size, whole (while the unused tails of lent
/// buffers add up to no more than the slack), else unmaps idle buffers, those whose size was used
/// longest ago first, until a fresh one fits. So the pool adds at most one buffer to a run's
/// peak, and a step whose sizes vary (eval and training batches, a head's odd shapes) still
/// reuses warm memory. `capacityBytes` bounds the idle bytes as well.
public final class BufferPool: Sendable {
  /// The process-wide pool that `TensorStorage` uses.
  public static let shared = BufferPool(
    capacityBytes: ProcessInfo.processInfo.environment["GRAFT_POOL_MIB"].flatMap(Int.init).map {
      $0 << 20
    } ?? (1 << 30),
    memoryLimitBytes: ProcessInfo.processInfo.environment["GRAFT_MEMORY_LIMIT_MIB"].flatMap(
      Int.init
    ).map { $0 << 20 })

  /// Buffers smaller than this are never pooled.
  public let minimumBytes = 1 << 16
  /// Upper bound on idle bytes kept for reuse.
  public let capacityBytes: Int
  /// Upper bound on the pooled-size buffers in use at once (`GRAFT_MEMORY_LIMIT_MIB`), nil for
  /// none: a request beyond it ends the process as running out of memory does (`outOfMemory`).
  public let memoryLimitBytes: Int?

  private struct State {
    // Addresses as integers: raw pointers are not Sendable, the lock makes this safe.
    var free: [Int: [UInt]] = [:]
    /// When each size was last taken or given (a counter), to unmap the stalest first.
    var lastUse: [Int: UInt64] = [:]
    var clock: UInt64 = 0
    var cached = 0
    var live = 0
    var highWater = 0
    var mappings = 0
    var largest = 0
    /// Requested bytes in use (`live` counts whole buffers, lent ones included); the high-water
    /// mark follows this, so a lent buffer's unused tail never raises it.
    var used = 0
    /// Buffers handed out for a smaller request than their size, by address.
    var lent: [UInt: Int] = [:]

    /// Removes idle buffers, stalest size first, until `need` more bytes fit under `limit`;
    /// returns them (to unmap outside the lock).
    mutating func evict(toFit need: Int, under limit: Int) -> [(UInt, Int)] {
      var out: [(UInt, Int)] = []
      while live + cached + need > limit, cached > 0 {
        guard let size = free.keys.min(by: { lastUse[$0, default: 0] < lastUse[$1, default: 0] })
        else { break }
        guard let address = free[size]?.popLast() else { break }
        if free[size]!.isEmpty { free[size] = nil }
        out.append((address, size))
        cached -= size
      }
      return out
    }
  }
  /// `State` behind an `NSLock` (a pthread mutex), not the Synchronization module's `Mutex`:
  /// on Linux ThreadSanitizer does not see `Mutex`'s locking and reports a race on everything
  /// it guards (a ten-line program that only updates a struct under it from two threads is
  /// reported too), which hid real races behind false ones.
  private final class LockedState: @unchecked Sendable {
    private let lock = NSLock()
    private var state = State()

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
      lock.lock()
      defer { lock.unlock() }
      return try body(&state)
    }
  }
  private let state = LockedState()

  init(capacityBytes: Int, memoryLimitBytes: Int? = nil) {
    self.capacityBytes = capacityBytes
    self.memoryLimitBytes = memoryLimitBytes
  }

  /// A 64-byte aligned buffer of exactly `bytes`, reused when one is idle; all zero bytes when
  /// `zeroed` (fresh mappings already are).
  func take(_ bytes: Int, zeroed: Bool = false) -> UnsafeMutableRawPointer {
    guard bytes >= minimumBytes else {
      let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
      if zeroed { p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
      return p
    }
    let (reused, evicted, live) = state.withLock { s -> (UInt?, [(UInt, Int)], Int?) in
      if let limit = memoryLimitBytes, s.live + bytes > limit {
        return (nil, [], s.live)
      }
      s.clock += 1
      s.lastUse[bytes] = s.clock
      s.used += bytes
      s.highWater = max(s.highWater, s.used)
      if let p = s.free[bytes]?.popLast() {
        if s.free[bytes]!.isEmpty { s.free[bytes] = nil }
        s.cached -= bytes
        s.live += bytes
        return (p, [], nil)
      }
      // No idle buffer of this size: the smallest idle one up to 4× as large will do, as long
      // as the unused tails of all lent buffers stay within the slack (one largest buffer), so
      // whole buffers in use never exceed the mark plus the slack.
      if let size = s.free.keys.lazy.filter({ $0 > bytes && $0 <= 4 * bytes }).min(),
        s.live - s.used + size <= Swift.max(s.largest, bytes),
        let p = s.free[size]?.popLast()
      {
        if s.free[size]!.isEmpty { s.free[size] = nil }
        s.lastUse[size] = s.clock
        s.lent[p] = size
        s.cached -= size
        s.live += size
        return (p, [], nil)
      }
      s.largest = Swift.max(s.largest, bytes)
      let evicted = s.evict(
        toFit: bytes, under: Swift.max(s.highWater + s.largest, s.live + bytes))
      s.mappings += 1
      s.live += bytes
      return (nil, evicted, nil)
    }
    if let live { Self.outOfMemory(bytes, inUse: live, limit: memoryLimitBytes) }
    for (address, size) in evicted { Self.unmap(address, size) }
    if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) {
      if zeroed { p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
      return p
    }
    if let p = Self.map(bytes) { return p }
    // The kernel refused: give back every idle buffer and try once more.
    trim()
    if let p = Self.map(bytes) { return p }
    Self.outOfMemory(bytes, inUse: liveBytes, limit: nil)
  }

  /// Ends the process with a message (exit status 1, not a trap): a tensor buffer of `bytes`
  /// could not be had. Every output Graft writes is atomic, so what was written stays whole.
  ///
  /// `_exit`, not `exit`: other threads (data-loading workers, the GEMM pool) are still running,
  /// and `exit`'s teardown (atexit handlers, C++ destructors of the libraries) under them ended
  /// one run with SIGSEGV after the message. C output streams are flushed first.
  private static func outOfMemory(_ bytes: Int, inUse: Int, limit: Int?) -> Never {
    func mib(_ b: Int) -> String { String(format: "%.1f MiB", Double(b) / 1_048_576) }
    let cause =
      limit.map { "it would pass GRAFT_MEMORY_LIMIT_MIB=\($0 >> 20)" }
      ?? "the system refused the memory"
    FileHandle.standardError.write(
      Data(
        ("graft: out of memory: a tensor of \(mib(bytes)) did not fit (\(mib(inUse)) of tensors "
          + "in use; \(cause)); use a smaller train.batch_size or train.eval_batch_size, "
          + "smaller method sizes (method.*: heads, prompt_length, rank, …) or a smaller model"
          + "\n").utf8))
    fflush(nil)  // every C output stream
    _exit(1)
  }

  /// Returns a buffer obtained from `take(bytes)`.
  func give(_ pointer: UnsafeMutableRawPointer, _ bytes: Int) {
    guard bytes >= minimumBytes else {
      pointer.deallocate()
      return
    }
    let address = UInt(bitPattern: pointer)
    let (kept, size) = state.withLock { s -> (Bool, Int) in
      let size = s.lent.removeValue(forKey: address) ?? bytes
      s.used -= bytes
      s.live -= size
      guard s.cached + size <= capacityBytes else { return (false, size) }
      s.clock += 1
      s.lastUse[size] = s.clock
      s.free[size, default: []].append(address)
      s.cached += size
      return (true, size)
    }
    if !kept { Self.unmap(address, size) }
  }

  /// Fresh zero pages from the kernel (page aligned, so 64-byte aligned); nil when refused.
  private static func map(_ bytes: Int) -> UnsafeMutableRawPointer? {
    guard
      let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      p != MAP_FAILED
    else { return nil }
    return p
  }

  private static func unmap(_ address: UInt, _ bytes: Int) {
    munmap(UnsafeMutableRawPointer(bitPattern: address), bytes)
  }

  /// How many buffers were mapped fresh (not reused) so far: a repeated training step should
  /// add none.
  public var freshMappings: Int { state.withLock { $0.mappings } }

  /// The largest buffer requested so far.
  public var largestBytes: Int { state.withLock { $0.largest } }

  /// Bytes of pooled-size buffers in use (whole buffers, a lent one at its full size).
  public var liveBytes: Int { state.withLock { $0.live } }

  /// The most pooled-size bytes ever requested at once: whole buffers live plus idle stay below
  /// it plus `largestBytes`.
  public var highWaterBytes: Int { state.withLock { $0.highWater } }

  /// Idle bytes held for reuse.
  public var cachedBytes: Int { state.withLock { $0.cached } }

  /// Frees every idle buffer.
  public func trim() {
    let all = state.withLock { s -> [(UInt, Int)] in
      defer {
        s.free = [:]
        s.cached = 0
      }
      return s.free.flatMap { size, addresses in addresses.map { ($0, size) } }
    }
    for (address, size) in all { Self.unmap(address, size) }
  }
}
