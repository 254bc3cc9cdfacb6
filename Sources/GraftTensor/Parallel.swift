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
/// the next one for `spinMicroseconds`, then sleep; a ViT-Ti forward at batch 1 runs over a hundred
/// short parallel regions back to back, and polling lets each start without a thread wake-up.
/// Below `grain` items a loop runs inline on the caller, so small tensors pay nothing.
///
/// Callers never run this while a BLAS call is in flight (OpenBLAS is single-threaded in Graft),
/// so the two never oversubscribe.
public enum Parallel {
  /// Threads used for parallel loops (the machine's active cores, or `GRAFT_NUM_THREADS`, at most
  /// 4096). Ranks of an MPI job on one machine (`OMPI_COMM_WORLD_LOCAL_SIZE`) share its cores.
  public static let threadCount: Int = {
    let environment = ProcessInfo.processInfo.environment
    if let s = environment["GRAFT_NUM_THREADS"], let n = Int(s), n > 0 {
      return min(n, 4096)
    }
    let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
    let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? 1
    return max(1, cores / max(local, 1))
  }()

  /// How long an idle pool thread keeps polling for the next job before it sleeps, in
  /// microseconds (`GRAFT_SPIN_US`, default 100; 0 never polls). A caller waiting for the last
  /// chunk of its job polls as long, then sleeps. Nobody polls while the pool finds the cores
  /// oversubscribed (another process or other threads want them).
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
  /// as a data-loader worker) runs the same chunks inline on its own thread, one after another,
  /// instead of waiting: it can never deadlock, the cores are busy with the other job anyway, and
  /// a body that keeps a partial result per chunk (a reduction) gives the same answer whether
  /// the pool was free or not, so a run does not depend on what else was running.
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
///
/// Polling only pays while the pool has the cores to itself. When something else wants them
/// (another process, data-loader threads), a polling thread is one more runnable thread than
/// there are cores, and the scheduler takes the difference out of the threads doing the work.
/// Workers therefore watch how long they wait for a core (the kernel's per-thread run delay);
/// while that says the machine is oversubscribed, nobody polls: workers sleep between jobs and
/// the caller sleeps while it waits, which also lets an idle core pick up a preempted worker.
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
  /// Set while the caller is (about to be) blocked on `done`.
  private let callerSleeping = Atomic<Bool>(false)
  /// No thread polls before this time (monotonic nanoseconds): the cores are oversubscribed.
  private let contendedUntil = Atomic<UInt64>(0)
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let wake: UnsafeMutablePointer<pthread_cond_t>
  private let done: UnsafeMutablePointer<pthread_cond_t>
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
    done = .allocate(capacity: 1)
    pthread_cond_init(done, nil)
    for i in 0..<workers {
      let thread = Thread { [unowned self] in
        Thread.current.name = "graft-pool-\(i + 1)"  // named from inside, so the OS sees it
        self.workerLoop()
      }
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
      for c in 0..<chunks { body(count * c / chunks..<count * (c + 1) / chunks) }
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
    // `waitForWork`): either the worker sees this job before blocking, or this sees the sleeper.
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
    // Wait for the chunks other threads claimed: poll (unless the cores are oversubscribed),
    // then sleep until the last one is done. Sleeping rather than yielding lets this core go
    // idle, so the scheduler can move a preempted worker onto it.
    if finished.load(ordering: .acquiring) < chunks {
      var now = monotonicNanoseconds()
      let contended = now < contendedUntil.load(ordering: .relaxed)
      let deadline = contended ? now : now &+ spinNanoseconds
      var polls = 0
      while finished.load(ordering: .acquiring) < chunks {
        polls &+= 1
        guard polls & 63 == 0 else { continue }
        now = monotonicNanoseconds()
        guard now >= deadline else { continue }
        callerSleeping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        while finished.load(ordering: .sequentiallyConsistent) < chunks {
          pthread_cond_wait(done, mutex)
        }
        pthread_mutex_unlock(mutex)
        callerSleeping.store(false, ordering: .relaxed)
      }
    }
    // Drop the caller's closure before `withoutActuallyEscaping` checks it did not escape.
    self.body = nil
  }

  private func workerLoop() {
    var monitor = ContentionMonitor()
    while true {
      var s = waitForWork(&monitor)
      // Claim and run chunks while any are left (of this or a newer job).
      while s & 0xFFFF < (s >> 16) & 0xFFFF {
        let (claimed, now) = state.compareExchange(
          expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
        if claimed {
          runChunk(Int(s & 0xFFFF), of: Int((s >> 16) & 0xFFFF))
          // The body's writes (and the release of its closure) precede the count; sequentially
          // consistent with the caller's `callerSleeping` store, as for `sleepers`.
          finished.add(1, ordering: .sequentiallyConsistent)
          if callerSleeping.load(ordering: .sequentiallyConsistent) {
            pthread_mutex_lock(mutex)
            pthread_cond_signal(done)
            pthread_mutex_unlock(mutex)
          }
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

  /// Returns a `state` with unclaimed chunks: polls for `spinNanoseconds` (unless the cores are
  /// oversubscribed), then sleeps until a caller publishes a job, and polls again after every
  /// wake-up.
  private func waitForWork(_ monitor: inout ContentionMonitor) -> UInt64 {
    while true {
      var now = monotonicNanoseconds()
      if monitor.oversubscribed(at: now) { markContended(at: now, &monitor) }
      if spinNanoseconds > 0 && now >= contendedUntil.load(ordering: .relaxed) {
        let deadline = now &+ spinNanoseconds
        var last = now
        var polls = 0
        while true {
          let s = state.load(ordering: .acquiring)
          if s & 0xFFFF < (s >> 16) & 0xFFFF { return s }
          polls &+= 1
          guard polls & 63 == 0 else { continue }
          now = monotonicNanoseconds()
          // Descheduled between two reads (normally ~0.1 µs apart): the core was wanted.
          if now &- last > WorkerPool.preemptionGap {
            markContended(at: now, &monitor)
            break
          }
          if now >= deadline { break }
          last = now
        }
      }
      sleepers.add(1, ordering: .sequentiallyConsistent)
      pthread_mutex_lock(mutex)
      let s = state.load(ordering: .sequentiallyConsistent)
      let idle = s & 0xFFFF >= (s >> 16) & 0xFFFF
      if idle { pthread_cond_wait(wake, mutex) }
      pthread_mutex_unlock(mutex)
      sleepers.subtract(1, ordering: .relaxed)
      if !idle { return s }
    }
  }

  /// Stops all polling for a while: `penalty`, doubled each time contention is found again soon
  /// after the last quiet period ended, so steady contention costs almost no polling.
  private func markContended(at now: UInt64, _ monitor: inout ContentionMonitor) {
    let soon = now &- monitor.quietEnd < monitor.penalty
    monitor.penalty =
      soon ? min(monitor.penalty * 2, WorkerPool.maxPenalty) : WorkerPool.basePenalty
    monitor.quietEnd = now &+ monitor.penalty
    contendedUntil.store(monitor.quietEnd, ordering: .relaxed)
  }

  /// A gap this long between two clock reads of a polling loop means the thread was preempted.
  static let preemptionGap: UInt64 = 30_000
  /// First quiet period after contention is found; it doubles up to `maxPenalty`.
  static let basePenalty: UInt64 = 4_000_000
  static let maxPenalty: UInt64 = 256_000_000
}

/// Watches one worker's run delay (time spent runnable but waiting for a core), from
/// `/proc/thread-self/schedstat`.
struct ContentionMonitor {
  /// End of the last quiet period this worker started, and the length of the next one.
  var quietEnd: UInt64 = 0
  var penalty = WorkerPool.basePenalty
  private let fd: Int32 = open("/proc/thread-self/schedstat", O_RDONLY)
  private var lastCheck: UInt64 = 0
  private var lastDelay: UInt64 = 0

  /// Whether, since the last check (at most one a millisecond), this thread spent more than
  /// 1/16 of the time waiting for a core.
  mutating func oversubscribed(at now: UInt64) -> Bool {
    guard fd >= 0, now &- lastCheck >= 1_000_000 else { return false }
    var buffer = (
      UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0)
    )
    let n = withUnsafeMutableBytes(of: &buffer) { pread(fd, $0.baseAddress, $0.count - 1, 0) }
    guard n > 0 else { return false }
    let delay = withUnsafeBytes(of: &buffer) { ContentionMonitor.runDelay(schedstat: $0.prefix(n)) }
    defer { (lastCheck, lastDelay) = (now, delay) }
    return lastCheck != 0 && (delay &- lastDelay) &* 16 > now &- lastCheck
  }

  /// The second field of a schedstat line, "<cpu ns> <run delay ns> <timeslices>".
  static func runDelay(schedstat bytes: some Collection<UInt8>) -> UInt64 {
    var field = 0
    var value: UInt64 = 0
    for byte in bytes {
      if byte == UInt8(ascii: " ") {
        field += 1
        if field == 2 { break }
        value = 0
      } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
        value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
      }
    }
    return field >= 1 ? value : 0
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
