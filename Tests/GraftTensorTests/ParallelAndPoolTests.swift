import Foundation
import XCTest

@testable import GraftTensor

final class ParallelAndPoolTests: XCTestCase {
  func testForRangeCoversEveryIndexExactlyOnce() {
    for count in [0, 1, 7, 32_767, 100_003] {
      let hits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
      hits.initialize(repeating: 0, count: max(count, 1))
      defer { hits.deallocate() }
      Parallel.forRange(count, grain: 1000) { r in for i in r { hits[i] += 1 } }
      for i in 0..<count where hits[i] != 1 {
        XCTFail("index \(i) of \(count) visited \(hits[i]) times")
        break
      }
    }
  }

  func testSmallRangesRunInlineOnTheCaller() {
    let caller = Thread.current
    var sameThread = true
    Parallel.forRange(100, grain: 1000) { _ in sameThread = sameThread && Thread.current == caller }
    XCTAssertTrue(sameThread)
  }

  func testLargeRangesSplitIntoOneChunkPerThread() throws {
    try XCTSkipIf(Parallel.threadCount < 2, "one core: nothing to split")
    let lock = NSLock()
    var chunks: [Range<Int>] = []
    Parallel.forRange(1_000_000, grain: 1000) { r in
      lock.lock()
      chunks.append(r)
      lock.unlock()
    }
    XCTAssertEqual(chunks.count, Parallel.threadCount)
    XCTAssertEqual(chunks.map(\.count).reduce(0, +), 1_000_000)
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

  func testTensorsFromThePoolStartZeroed() {
    do {
      let dirty = Tensor(shape: [1 << 16], zeroed: false)
      dirty.pointer.update(repeating: 7, count: dirty.count)
    }
    let fresh = Tensor(shape: [1 << 16])
    XCTAssertTrue(fresh.scalars.allSatisfy { $0 == 0 })
  }
}
