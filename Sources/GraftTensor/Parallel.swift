import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Data-parallel loops for the non-BLAS ops (elementwise, softmax, layer norm, im2col, pooling)
/// and for the blocks of large GEMMs.
///
/// Work is split into one contiguous chunk per thread and run on Graft's own pool of persistent
/// worker threads (`threadCount − 1` of them, plus the caller). Between jobs the workers poll for
/// the next one for `spinMicroseconds`, then sleep; a small-batch ViT forward runs a few hundred
/// short parallel regions back to back, and polling lets each start without a thread wake-up.
/// Below `grain` items a loop runs inline on the caller, so small tensors pay nothing.
///
/// Callers never run this while a BLAS call is in flight (OpenBLAS is single-threaded in Graft),
/// so the two never oversubscribe.
public enum Parallel {
  /// Threads used for parallel loops (the machine's active cores, or `GRAFT_NUM_THREADS`, at most
  /// 4096).
  public static let threadCount: Int = {
    if let s = ProcessInfo.processInfo.environment["GRAFT_NUM_THREADS"], let n = Int(s), n > 0 {
      return min(n, 4096)
    }
    return max(1, ProcessInfo.processInfo.activeProcessorCount)
  }()

  /// How long an idle pool thread keeps polling for the next job before it sleeps, in
  /// microseconds (`GRAFT_SPIN_US`, default 100; 0 sleeps at once). The caller waits for the last
  /// chunk of a job the same way, then yields its core until the chunk is done.
  public static let spinMicroseconds: Int = {
    if let s = ProcessInfo.processInfo.environment["GRAFT_SPIN_US"], let n = Int(s), n >= 0 {
      return min(n, 1_000_000)
    }
    return 100
  }()

  /// Calls `body` on disjoint contiguous sub-ranges covering `0..<count`, in parallel when
  /// `count` is at least `grain` (items that cost about as much as one float operation each).
  ///
  /// Parallel runs split `0..<count` into `min(threadCount, count / grain)` chunks. A call made
  /// while the pool is running another job (from inside a `body`, or from a second thread such
  /// as a data-loader worker) runs inline on its own thread as one range instead of waiting: it
  /// can never deadlock, and the cores are busy with the other job anyway.
  @inline(__always)
  public static func forRange(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let chunks = min(threadCount, count / max(grain, 1))
    if chunks <= 1 {
      if count > 0 { body(0..<count) }
      return
    }
    WorkerPool.run(count, chunks: chunks, body)
  }
}

/// The persistent threads behind `Parallel.forRange`.
///
/// A job is published in one atomic word, `state` = generation (32 bits) | chunks (16) | next
/// unclaimed chunk (16). The caller and the workers claim chunks by compare-and-swap on that
/// word, so whoever is awake runs the work: if a worker is asleep or descheduled, the caller
/// simply runs its chunk too. A claim from a stale generation fails because the word changed,
/// and the job's body and count are only read after a successful claim, while the caller is
/// still waiting for that chunk. Finished chunks are counted in `finished`.
final class WorkerPool: @unchecked Sendable {
  /// The pool, created with its threads on the first parallel loop; nil on one thread.
  static let shared: WorkerPool? =
    Parallel.threadCount > 1
    ? WorkerPool(
      workers: Parallel.threadCount - 1, spinNanoseconds: Parallel.spinMicroseconds * 1000)
    : nil

  /// Held by the one thread whose job the pool is running (a try-lock: others run inline).
  private let busy = Atomic<Bool>(false)
  private let state = Atomic<UInt64>(0)
  private let finished = Atomic<Int>(0)
  /// Workers that are (about to be) blocked on `wake`.
  private let sleepers = Atomic<Int>(0)
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let wake: UnsafeMutablePointer<pthread_cond_t>
  private let spinNanoseconds: UInt64
  // The current job. Written by the caller before it publishes `state`, read by a thread only
  // after it has claimed one of the job's chunks (so never while being rewritten).
  private var body: ((Range<Int>) -> Void)?
  private var count = 0
  private var generation: UInt64 = 0

  private init(workers: Int, spinNanoseconds: Int) {
    self.spinNanoseconds = UInt64(spinNanoseconds)
    mutex = .allocate(capacity: 1)
    pthread_mutex_init(mutex, nil)
    wake = .allocate(capacity: 1)
    pthread_cond_init(wake, nil)
    for i in 0..<workers {
      let thread = Thread { [unowned self] in self.workerLoop() }
      thread.name = "graft-pool-\(i + 1)"
      thread.stackSize = 8 << 20
      thread.start()
    }
  }

  /// Runs `body` over `chunks` chunks of `0..<count` on the pool, or inline when it is busy.
  @inline(never)
  static func run(_ count: Int, chunks: Int, _ body: (Range<Int>) -> Void) {
    guard let pool = shared, chunks < 1 << 16,
      pool.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      body(0..<count)
      return
    }
    withoutActuallyEscaping(body) { body in pool.runJob(count, chunks: chunks, body) }
    pool.busy.store(false, ordering: .releasing)
  }

  private func runJob(_ count: Int, chunks: Int, _ body: @escaping (Range<Int>) -> Void) {
    self.body = body
    self.count = count
    finished.store(0, ordering: .relaxed)
    generation &+= 1
    let gen = generation & 0xFFFF_FFFF
    let published = gen << 32 | UInt64(chunks) << 16
    // Sequentially consistent with the sleepers check (and the worker's mirror image of it in
    // `sleep`): either the worker sees this job before blocking, or this sees the sleeper.
    state.store(published, ordering: .sequentiallyConsistent)
    if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
      pthread_mutex_lock(mutex)
      pthread_cond_broadcast(wake)
      pthread_mutex_unlock(mutex)
    }
    // Claim chunks like any worker; only this thread publishes, so the generation is fixed.
    var s = published
    while s & 0xFFFF < UInt64(chunks) {
      let (claimed, now) = state.compareExchange(
        expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
      if claimed {
        let c = Int(s & 0xFFFF)
        body(count * c / chunks..<count * (c + 1) / chunks)
        finished.add(1, ordering: .relaxed)
        s += 1
      } else {
        s = now
      }
    }
    // Wait for the chunks other threads claimed: poll, then yield the core while they finish.
    if finished.load(ordering: .acquiring) < chunks {
      let deadline = monotonicNanoseconds() &+ spinNanoseconds
      var polls = 0
      while finished.load(ordering: .acquiring) < chunks {
        polls &+= 1
        if polls >= 64 && monotonicNanoseconds() >= deadline { sched_yield() }
      }
    }
    // Drop the caller's closure before `withoutActuallyEscaping` checks it did not escape.
    self.body = nil
  }

  private func workerLoop() {
    while true {
      var s = waitForWork()
      // Claim and run chunks while any are left (of this or a newer job).
      while s & 0xFFFF < (s >> 16) & 0xFFFF {
        let (claimed, now) = state.compareExchange(
          expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
        if claimed {
          runChunk(Int(s & 0xFFFF), of: Int((s >> 16) & 0xFFFF))
          // Release: the body's writes (and the release of its closure) precede the count.
          finished.add(1, ordering: .releasing)
          s = state.load(ordering: .acquiring)
        } else {
          s = now
        }
      }
    }
  }

  /// Runs one claimed chunk. Not inlined: every reference it takes to the caller's closure is
  /// released before it returns, so before the chunk is counted as finished.
  @inline(never)
  private func runChunk(_ c: Int, of chunks: Int) {
    guard let body else { return }
    body(count * c / chunks..<count * (c + 1) / chunks)
  }

  /// Returns a `state` with unclaimed chunks: polls for `spinNanoseconds`, then sleeps until a
  /// caller publishes a job, and polls again after every wake-up.
  private func waitForWork() -> UInt64 {
    while true {
      let deadline = monotonicNanoseconds() &+ spinNanoseconds
      var polls = 0
      while true {
        let s = state.load(ordering: .acquiring)
        if s & 0xFFFF < (s >> 16) & 0xFFFF { return s }
        polls &+= 1
        if polls & 63 == 0 && monotonicNanoseconds() >= deadline { break }
      }
      sleepers.add(1, ordering: .sequentiallyConsistent)
      pthread_mutex_lock(mutex)
      let s = state.load(ordering: .sequentiallyConsistent)
      if s & 0xFFFF >= (s >> 16) & 0xFFFF { pthread_cond_wait(wake, mutex) }
      pthread_mutex_unlock(mutex)
      sleepers.subtract(1, ordering: .relaxed)
    }
  }
}

@inline(__always)
private func monotonicNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Moves a value the compiler cannot prove thread-safe into a parallel loop whose chunks touch
/// disjoint memory.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
