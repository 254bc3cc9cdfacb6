import Foundation
import GraftDistributed
import GraftTensor
import XCTest

/// K simulated ranks in one process: threads that meet at each collective. Sums run in rank
/// order, in Double.
final class ThreadGroup: @unchecked Sendable {
  let size: Int
  private let condition = NSCondition()
  private var arrived = 0
  private var generation = 0
  private var slots: [[Double]]
  private var published: [[Double]] = []

  init(size: Int) {
    self.size = size
    slots = Array(repeating: [], count: size)
  }

  /// Every rank's `values`, once every rank has given its own.
  func exchange(rank: Int, _ values: [Double]) -> [[Double]] {
    condition.lock()
    defer { condition.unlock() }
    slots[rank] = values
    arrived += 1
    let mine = generation
    if arrived == size {
      published = slots
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      while generation == mine { condition.wait() }
    }
    return published
  }

  /// Runs `body(rank, communicator)` on `size` threads and waits for all.
  func run(_ body: @escaping (Int, any Communicator) -> Void) {
    let done = DispatchGroup()
    // The ranks share read-only inputs (tensors the body captures), as MPI ranks share a seed.
    let shared = Unchecked(body)
    for r in 0..<size {
      done.enter()
      let thread = Thread {
        shared.value(r, ThreadCommunicator(rank: r, group: self))
        done.leave()
      }
      thread.stackSize = 8 << 20
      thread.start()
    }
    done.wait()
  }
}

/// A value handed to other threads that only read it.
struct Unchecked<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

final class ThreadCommunicator: Communicator, @unchecked Sendable {
  let rank: Int
  let group: ThreadGroup
  var size: Int { group.size }

  init(rank: Int, group: ThreadGroup) {
    self.rank = rank
    self.group = group
  }

  func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) {
    let all = group.exchange(rank: rank, values.map(Double.init))
    for i in values.indices { values[i] = Float(all.reduce(0) { $0 + $1[i] }) }
  }

  func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) {
    let all = group.exchange(rank: rank, Array(values))
    for i in values.indices { values[i] = all.reduce(0) { $0 + $1[i] } }
  }

  func allgather(_ values: UnsafeBufferPointer<Float>, counts: [Int]) -> [Float] {
    group.exchange(rank: rank, values.map(Double.init)).flatMap { $0.map(Float.init) }
  }

  func barrier() { _ = group.exchange(rank: rank, []) }
}

/// Results the rank threads hand back.
final class Collected<T>: @unchecked Sendable {
  private let lock = NSLock()
  private var values: [Int: T] = [:]
  func set(_ rank: Int, _ value: T) { lock.withLock { values[rank] = value } }
  subscript(rank: Int) -> T { lock.withLock { values[rank]! } }
}

final class DataParallelTests: XCTestCase {
  func testShardRangesCoverTheBatchInOrder() {
    for total in [1, 5, 7, 16, 64] {
      for ranks in 1...min(total, 5) {
        let parts = (0..<ranks).map { BatchShard.range(rank: $0, ranks: ranks, total: total) }
        XCTAssertEqual(parts.first?.lowerBound, 0)
        XCTAssertEqual(parts.last?.upperBound, total)
        for (a, b) in zip(parts, parts.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
        let sizes = parts.map(\.count)
        XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "\(total) over \(ranks)")
      }
    }
  }

  func testLaunchIsReadFromTheLaunchersEnvironment() {
    XCTAssertNil(MPILaunch.announcedSize([:]))
    XCTAssertEqual(MPILaunch.announcedSize(["OMPI_COMM_WORLD_SIZE": "3"]), 3)
    XCTAssertEqual(MPILaunch.announcedSize(["PMI_SIZE": "2"]), 2)
    XCTAssertEqual(MPILaunch.announcedSize(["PMIX_RANK": "0", "SLURM_NTASKS": "4"]), 4)
    // Slurm alone (no MPI launcher) is not a data-parallel start.
    XCTAssertNil(MPILaunch.announcedSize(["SLURM_NTASKS": "4"]))
  }

  /// SyncBatchNorm: 3 ranks holding uneven parts of a batch of 7 compute the whole batch's
  /// output, input gradient, running statistics and (summed) weight and bias gradients.
  func testSynchronisedBatchNormMatchesTheWholeBatch() {
    for shape in [[7, 5], [7, 4, 6]] {
      var g = RandomGenerator(seed: 11)
      let x = Tensor.randn(shape, mean: 0.7, std: 2, generator: &g)
      let r = Tensor.randn(shape, generator: &g)
      let weight = Tensor.randn([shape[1]], generator: &g)
      let bias = Tensor.randn([shape[1]], generator: &g)

      func run(_ x: Tensor, _ r: Tensor, total: Int) -> (
        y: Tensor, dx: Tensor, dw: Tensor, db: Tensor, mean: Tensor, variance: Tensor
      ) {
        let input = x.detached()
        input.requiresGrad = true
        let (w, b) = (weight.detached(), bias.detached())
        w.requiresGrad = true
        b.requiresGrad = true
        let (rm, rv) = (Tensor.zeros([shape[1]]), Tensor.ones([shape[1]]))
        let y = input.batchNorm(
          weight: w, bias: b, runningMean: rm, runningVar: rv, training: true)
        ((y * r).sum() * (1 / Float(total))).backward()
        return (y.detached(), input.grad!, w.grad!, b.grad!, rm, rv)
      }
      let whole = run(x, r, total: shape[0])
      let group = ThreadGroup(size: 3)
      let parts = Collected<(Range<Int>, (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor))>()
      group.run { rank, comm in
        let part = BatchShard.range(rank: rank, ranks: 3, total: shape[0])
        let shard = BatchShard(
          offset: part.lowerBound, count: part.count, total: shape[0], communicator: comm)
        let out = DataParallel.withShard(shard) {
          run(
            x.narrow(0, start: part.lowerBound, length: part.count),
            r.narrow(0, start: part.lowerBound, length: part.count),
            total: shape[0])
        }
        parts.set(rank, (part, (out.y, out.dx, out.dw, out.db, out.mean, out.variance)))
      }
      let perSample = x.count / shape[0]
      var dw = [Float](repeating: 0, count: shape[1])
      var db = dw
      for rank in 0..<3 {
        let (part, out) = parts[rank]
        for (name, got, want) in [("y", out.0, whole.y), ("dx", out.1, whole.dx)] {
          for i in 0..<(part.count * perSample) {
            XCTAssertEqual(
              got.pointer[i], want.pointer[part.lowerBound * perSample + i], accuracy: 1e-5,
              "\(name) \(shape) rank \(rank)")
          }
        }
        for c in 0..<shape[1] {
          dw[c] += out.2.pointer[c]
          db[c] += out.3.pointer[c]
          XCTAssertEqual(out.4.pointer[c], whole.mean.pointer[c], accuracy: 1e-6)
          XCTAssertEqual(out.5.pointer[c], whole.variance.pointer[c], accuracy: 1e-5)
        }
      }
      for c in 0..<shape[1] {
        XCTAssertEqual(dw[c], whole.dw.pointer[c], accuracy: 1e-5)
        XCTAssertEqual(db[c], whole.db.pointer[c], accuracy: 1e-5)
      }
    }
  }

  /// Per-sample dropout: each rank's mask is its rows of the whole batch's mask, and every
  /// rank's generator ends where one process's does.
  func testSampleDropoutDrawsTheWholeBatchsMask() {
    let x = Tensor.ones([7, 3, 4])
    var g = RandomGenerator(seed: 5)
    let whole = x.sampleDropout(p: 0.5, training: true, generator: &g)
    let after = g.next()
    let group = ThreadGroup(size: 3)
    let parts = Collected<(Range<Int>, Tensor, UInt64)>()
    group.run { rank, comm in
      let part = BatchShard.range(rank: rank, ranks: 3, total: 7)
      var generator = RandomGenerator(seed: 5)
      let shard = BatchShard(
        offset: part.lowerBound, count: part.count, total: 7, communicator: comm)
      let y = DataParallel.withShard(shard) {
        x.narrow(0, start: part.lowerBound, length: part.count)
          .sampleDropout(p: 0.5, training: true, generator: &generator)
      }
      parts.set(rank, (part, y, generator.next()))
    }
    for rank in 0..<3 {
      let (part, y, next) = parts[rank]
      XCTAssertEqual(next, after, "rank \(rank)'s generator")
      for i in 0..<y.count {
        XCTAssertEqual(y.pointer[i], whole.pointer[part.lowerBound * 12 + i])
      }
    }
    // Without a shard it is plain dropout.
    var a = RandomGenerator(seed: 9)
    var b = RandomGenerator(seed: 9)
    let plain = x.dropout(p: 0.5, training: true, generator: &a)
    let sample = x.sampleDropout(p: 0.5, training: true, generator: &b)
    XCTAssertEqual(plain.scalars, sample.scalars)
  }
}
