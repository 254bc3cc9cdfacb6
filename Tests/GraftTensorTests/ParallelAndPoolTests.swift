import Foundation
import Synchronization
import XCTest

@testable import GraftTensor

final class ParallelAndPoolTests: XCTestCase {
  /// Records every range `forRange` hands out, then checks they tile `0..<count` exactly.
  private func ranges(_ count: Int, grain: Int) -> [Range<Int>] {
    let lock = NSLock()
    var seen: [Range<Int>] = []
    Parallel.forRange(count, grain: grain) { r in
      lock.lock()
      seen.append(r)
      lock.unlock()
    }
    return seen.sorted { $0.lowerBound < $1.lowerBound }
  }

  func testForRangeCoversEveryIndexExactlyOnce() {
    for count in [0, 1, 2, 3, 7, 999, 1000, 1001, 2047, 32_767, 100_003] {
      for grain in [1, 7, 1000] {
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        hits.initialize(repeating: 0, count: max(count, 1))
        defer { hits.deallocate() }
        Parallel.forRange(count, grain: grain) { r in for i in r { hits[i] += 1 } }
        for i in 0..<count where hits[i] != 1 {
          XCTFail("index \(i) of \(count) (grain \(grain)) visited \(hits[i]) times")
          break
        }
      }
    }
  }

  func testChunksAreContiguousDisjointAndOnePerThread() {
    for (count, grain) in [(2, 1), (5, 2), (1000, 1), (100_003, 1000), (10, 3)] {
      let got = ranges(count, grain: grain)
      let expected = min(Parallel.threadCount, count / grain)
      XCTAssertEqual(got.count, max(expected, 1), "count \(count) grain \(grain)")
      XCTAssertEqual(got.first?.lowerBound, 0)
      XCTAssertEqual(got.last?.upperBound, count)
      for (a, b) in zip(got, got.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
      XCTAssertFalse(got.contains { $0.isEmpty })
    }
    XCTAssertTrue(ranges(0, grain: 1).isEmpty)  // nothing to do: body never called
  }

  func testSmallRangesRunInlineOnTheCallerAsOneRange() {
    let caller = Thread.current
    var sameThread = true
    var calls: [Range<Int>] = []
    Parallel.forRange(100, grain: 1000) { r in
      sameThread = sameThread && Thread.current == caller
      calls.append(r)
    }
    XCTAssertTrue(sameThread)
    XCTAssertEqual(calls, [0..<100])
    // Fewer than two grains' worth is still one inline call.
    calls = []
    Parallel.forRange(1999, grain: 1000) { r in calls.append(r) }
    XCTAssertEqual(calls, [0..<1999])
  }

  func testLargeRangesSplitIntoOneChunkPerThread() throws {
    try XCTSkipIf(Parallel.threadCount < 2, "one core: nothing to split")
    let got = ranges(1_000_000, grain: 1000)
    XCTAssertEqual(got.count, Parallel.threadCount)
    XCTAssertEqual(got.map(\.count).reduce(0, +), 1_000_000)
  }

  func testNestedCallsRunInlineWithoutDeadlock() {
    // Each outer chunk sums its rows with an inner parallel loop; the inner loops must not wait
    // for the pool the outer loop is holding.
    let rows = 64
    let cols = 5000
    let data = (0..<rows * cols).map { Float($0 % 97) }
    let sums = UnsafeMutablePointer<Float>.allocate(capacity: rows)
    defer { sums.deallocate() }
    sums.initialize(repeating: -1, count: rows)
    let shared = UncheckedSendable((data, sums))
    // On another thread, so a deadlock fails the test instead of hanging it.
    let innerSplit = Mutex(false)
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) {
      let (data, sums) = shared.value
      Parallel.forRange(rows, grain: 1) { rowRange in
        for r in rowRange {
          let partial = UnsafeMutablePointer<Float>.allocate(capacity: cols)
          defer { partial.deallocate() }
          var innerRanges: [Range<Int>] = []
          Parallel.forRange(cols, grain: 100) { cr in
            innerRanges.append(cr)  // inline on this thread, so no race
            for c in cr { partial[c] = data[r * cols + c] }
          }
          // The same chunks as a call on a free pool, in order (so per-chunk partial results,
          // and every reduction built on them, do not depend on whether the pool was busy).
          let chunks = min(Parallel.threadCount, cols / 100)
          let expected = (0..<chunks).map { cols * $0 / chunks..<cols * ($0 + 1) / chunks }
          if innerRanges != expected { innerSplit.withLock { $0 = true } }
          var s: Float = 0
          for c in 0..<cols { s += partial[c] }
          sums[r] = s
        }
      }
    }
    XCTAssertEqual(group.wait(timeout: .now() + 20), .success, "nested forRange deadlocked")
    // A call made inside a pool job runs the pool's chunks inline, in order.
    XCTAssertFalse(innerSplit.withLock { $0 }, "a nested call did not run the pool's chunks")
    for r in 0..<rows {
      // Row r holds (r·cols + c) mod 97 for c in 0..<cols: summed exactly in Double.
      let want = (0..<cols).reduce(0.0) { $0 + Double((r * cols + $1) % 97) }
      XCTAssertEqual(Double(sums[r]), want, accuracy: 1e-3 * want, "row \(r)")
    }
  }

  func testCallsFromSeveralThreadsAtOnce() {
    // Data-loader workers run tensor ops concurrently with the training loop: four threads each
    // run 1000 small parallel sums; every one must be right and none may hang.
    let group = DispatchGroup()
    let failures = Mutex(0)
    for t in 0..<4 {
      DispatchQueue.global().async(group: group) {
        let n = 2048 + 16 * t
        let values = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { values.deallocate() }
        for i in 0..<n { values[i] = i + t }
        let want = n * (n - 1) / 2 + n * t
        let partials = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { partials.deallocate() }
        for _ in 0..<1000 {
          partials.update(repeating: 0, count: n)
          // Each range adds its total at its lower bound; the chunks tile 0..<n.
          Parallel.forRange(n, grain: 256) { r in
            var s = 0
            for i in r { s += values[i] }
            partials[r.lowerBound] = s
          }
          var total = 0
          for i in 0..<n { total += partials[i] }
          if total != want { failures.withLock { $0 += 1 } }
        }
      }
    }
    XCTAssertEqual(group.wait(timeout: .now() + 20), .success, "deadlock: threads never finished")
    XCTAssertEqual(failures.withLock { $0 }, 0)
  }

  func testLongBodiesRunOnSeveralThreadsAndAreAllWaitedFor() throws {
    try XCTSkipIf(Parallel.threadCount < 2, "one core: nothing to split")
    // Sleeping chunks need no CPU, so they overlap even on a loaded machine. The pause before
    // the second round is longer than the poll window, so the workers are asleep and must be
    // woken.
    for round in 0..<2 {
      if round == 1 { usleep(UInt32(Parallel.spinMicroseconds + 50_000)) }
      let lock = NSLock()
      var threads = Set<ObjectIdentifier>()
      var done = 0
      let start = Date()
      Parallel.forRange(Parallel.threadCount, grain: 1) { r in
        usleep(150_000)
        lock.lock()
        threads.insert(ObjectIdentifier(Thread.current))
        done += r.count
        lock.unlock()
      }
      let elapsed = Date().timeIntervalSince(start)
      XCTAssertEqual(done, Parallel.threadCount, "forRange returned before every chunk finished")
      XCTAssertGreaterThan(threads.count, 1, "round \(round): nothing ran on a pool thread")
      XCTAssertLessThan(elapsed, 0.29, "round \(round): chunks ran one after another")
    }
  }

  func testRunDelayIsTheSecondSchedstatField() {
    // /proc/<pid>/task/<tid>/schedstat: "<on-cpu ns> <waiting-for-a-core ns> <timeslices>\n".
    XCTAssertEqual(ContentionMonitor.runDelay(schedstat: Array("123 456 7\n".utf8)), 456)
    XCTAssertEqual(
      ContentionMonitor.runDelay(schedstat: Array("9876543210 18446744073 42\n".utf8)),
      18_446_744_073)
    XCTAssertEqual(ContentionMonitor.runDelay(schedstat: Array("".utf8)), 0)
  }

  func testBufferPoolReusesFreedBuffersOfTheSameSize() {
    let pool = BufferPool(capacityBytes: 1 << 22)
    let bytes = 1 << 18
    let a = pool.take(bytes)
    pool.give(a, bytes)
    XCTAssertEqual(pool.cachedBytes, bytes)
    XCTAssertEqual(pool.take(bytes), a)  // the same warm buffer comes back
    XCTAssertEqual(pool.cachedBytes, 0)
    // Small buffers bypass the pool; the cache never exceeds its capacity.
    let small = pool.take(64)
    pool.give(small, 64)
    XCTAssertEqual(pool.cachedBytes, 0)
    let many = (0..<20).map { _ in pool.take(bytes) }
    for p in many { pool.give(p, bytes) }
    XCTAssertLessThanOrEqual(pool.cachedBytes, 1 << 22)
    pool.trim()
    XCTAssertEqual(pool.cachedBytes, 0)
    pool.give(a, bytes)
    pool.trim()
  }

  func testBufferPoolKeepsLivePlusIdleWithinTheHighWaterMarkAndOneBuffer() {
    let pool = BufferPool(capacityBytes: 1 << 30)
    // `other` is larger than `small`, so no idle buffer can be lent for it.
    let (small, other) = (1 << 18, 5 << 16)
    let held = (0..<3).map { _ in pool.take(small) }
    XCTAssertEqual(pool.highWaterBytes, 3 * small)
    for p in held { pool.give(p, small) }
    XCTAssertEqual(pool.cachedBytes, 3 * small)
    // No idle buffer of this size, but live + idle + it fits the mark plus the largest buffer.
    let z = pool.take(other)
    XCTAssertEqual(pool.cachedBytes, 3 * small)
    // The next does not: idle buffers are unmapped until it fits (two have to go).
    let w = pool.take(other)
    XCTAssertEqual(pool.liveBytes, 2 * other)
    XCTAssertEqual(pool.highWaterBytes, 3 * small)
    XCTAssertEqual(pool.largestBytes, other)
    XCTAssertEqual(pool.cachedBytes, small)
    XCTAssertLessThanOrEqual(
      pool.liveBytes + pool.cachedBytes, pool.highWaterBytes + pool.largestBytes)
    // The pages are usable and come back on reuse, without a new mapping.
    z.storeBytes(of: 1, toByteOffset: other - 4, as: Float.self)
    pool.give(z, other)
    let mapped = pool.freshMappings
    XCTAssertEqual(pool.take(other), z)
    XCTAssertEqual(pool.freshMappings, mapped, "a reused buffer is not mapped again")
    pool.give(z, other)
    pool.give(w, other)
    pool.trim()
    XCTAssertEqual(pool.cachedBytes, 0)
    XCTAssertEqual(pool.liveBytes, 0)
  }

  func testBufferPoolLendsALargerIdleBufferWithinTheMark() {
    let pool = BufferPool(capacityBytes: 1 << 30)
    let (large, small) = ((1 << 18) + 4096, 3 << 16)
    let a = pool.take(large)
    pool.give(a, large)
    let mapped = pool.freshMappings
    // No idle buffer of 3/4 the size: the idle larger one serves it, whole, without a mapping.
    let b = pool.take(small)
    XCTAssertEqual(b, a)
    XCTAssertEqual(pool.freshMappings, mapped)
    XCTAssertEqual(pool.liveBytes, large)
    XCTAssertEqual(pool.highWaterBytes, large, "the mark follows requested bytes")
    pool.give(b, small)
    XCTAssertEqual(pool.liveBytes, 0)
    XCTAssertEqual(pool.cachedBytes, large)
    // Back in its own size class: a request of that size gets it again.
    XCTAssertEqual(pool.take(large), a)
    pool.give(a, large)
    // A buffer more than 4× the request is not lent.
    let tiny = 1 << 16
    let c = pool.take(tiny)
    XCTAssertNotEqual(c, a)
    pool.give(c, tiny)
    pool.trim()
    XCTAssertEqual(pool.liveBytes, 0)
  }

  func testTensorsFromThePoolStartZeroed() {
    do {
      let dirty = Tensor(shape: [1 << 16], zeroed: false)
      dirty.pointer.update(repeating: 7, count: dirty.count)
    }
    let fresh = Tensor(shape: [1 << 16])
    XCTAssertTrue(fresh.scalars.allSatisfy { $0 == 0 })
  }
}
