import Foundation

// Data-parallel training: the collective operations ranks share (implemented over MPI by
// GraftDistributed), and the shard of the current global batch this process holds, which the
// ops that look across a batch (BatchNorm's statistics, per-sample dropout) consult so that K
// ranks compute what one process computes on the whole batch.

/// Collective operations over the ranks of a data-parallel job. Every rank calls the same
/// operations in the same order. A failure (a rank that died, a network error) ends every rank
/// with a message naming the operation; none of these returns after one.
public protocol Communicator: AnyObject, Sendable {
  /// This process's rank, 0 ..< `size`.
  var rank: Int { get }
  /// The number of ranks.
  var size: Int { get }
  /// Sums `values` over every rank, in place.
  func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>)
  /// Sums `values` over every rank, in place.
  func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>)
  /// Every rank's `values` concatenated in rank order; `counts[r]` is rank r's count (the same
  /// array on every rank).
  func allgather(_ values: UnsafeBufferPointer<Float>, counts: [Int]) -> [Float]
  /// Waits until every rank has called it.
  func barrier()
  /// Starts summing `values` over every rank, in place, and returns without waiting (MPI's
  /// `MPI_Iallreduce`): `values` must stay alive and untouched until the returned collective's
  /// `wait()`. Every rank starts its collectives in the same order.
  func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>) -> any PendingCollective
}

/// A collective operation started without waiting.
public protocol PendingCollective: AnyObject {
  /// Lets it progress (MPI advances a collective only inside its own calls); does not wait.
  func poll()
  /// Waits until it is complete: its buffer then holds the result.
  func wait()
}

/// A collective that completed when it was started.
public final class CompletedCollective: PendingCollective {
  /// A completed collective.
  public init() {}
  /// Nothing to advance: the collective is complete.
  public func poll() {}
  /// Returns at once: the collective is complete.
  public func wait() {}
}

extension Communicator {
  /// By default the sum is done at once (`allreduceSum`), and the collective is complete.
  public func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>)
    -> any PendingCollective
  {
    allreduceSum(values)
    return CompletedCollective()
  }
}

/// The part of one global batch this rank holds: samples `offset ..< offset + count` of the
/// batch's `total`, in the order one process would see them.
public struct BatchShard: Sendable {
  /// The first sample of this rank's part.
  public var offset: Int
  /// This rank's samples.
  public var count: Int
  /// The global batch's samples.
  public var total: Int
  /// The ranks sharing the batch.
  public let communicator: any Communicator

  /// A shard of `total` samples starting at `offset`.
  public init(offset: Int, count: Int, total: Int, communicator: any Communicator) {
    precondition(offset >= 0 && count >= 0 && offset + count <= total, "bad batch shard")
    self.offset = offset
    self.count = count
    self.total = total
    self.communicator = communicator
  }

  /// Sample `rank`'s part of a batch of `total` over `ranks`: contiguous parts whose sizes
  /// differ by at most one, the larger first.
  public static func range(rank: Int, ranks: Int, total: Int) -> Range<Int> {
    let (base, extra) = total.quotientAndRemainder(dividingBy: ranks)
    let start = rank * base + Swift.min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
  }
}

/// The shard of the batch being trained on, while a data-parallel training step runs (forward
/// and backward); nil otherwise, and always in a single-process run. It belongs to the thread
/// that runs the step (the ops read it before they fan out to the pool), so several simulated
/// ranks can run in one process's threads (the tests do).
public enum DataParallel {
  private final class Box {
    let shard: BatchShard?
    init(_ shard: BatchShard?) { self.shard = shard }
  }
  private static let key = "graft.data-parallel.shard"

  /// The current thread's shard.
  public static var current: BatchShard? {
    (Thread.current.threadDictionary[key] as? Box)?.shard
  }

  /// How many of something the whole global batch holds when this rank's part holds `local`
  /// (each sample bringing as many): `local` in a single-process run. Layers that branch on a
  /// batch's size (a BatchNorm with one value per channel) branch on this, so every rank
  /// branches alike.
  public static func globalCount(_ local: Int) -> Int {
    guard let shard = current, shard.count > 0 else { return local }
    return local / shard.count * shard.total
  }

  /// Runs `body` (a training step's forward and backward) with `shard` current on this thread.
  public static func withShard<T>(_ shard: BatchShard?, _ body: () throws -> T) rethrows -> T {
    let dictionary = Thread.current.threadDictionary
    let saved = dictionary[key]
    dictionary[key] = Box(shard)
    defer { dictionary[key] = saved }
    return try body()
  }
}

extension Tensor {
  /// Dropout of a tensor whose leading axis runs over the batch's samples (each sample owning
  /// `count / batch` consecutive elements), as `dropout`. In a data-parallel step, the mask is
  /// the part of the whole global batch's mask that belongs to this rank's samples, and the
  /// generator ends where one process's would, so K ranks drop what one process drops.
  public func sampleDropout(p: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
    guard let shard = DataParallel.current, training, p > 0, shard.count > 0,
      count % shard.count == 0
    else { return dropout(p: p, training: training, generator: &generator) }
    let perSample = count / shard.count
    for _ in 0..<(shard.offset * perSample) { _ = generator.nextFloat() }
    let out = dropout(p: p, training: training, generator: &generator)
    for _ in 0..<((shard.total - shard.offset - shard.count) * perSample) {
      _ = generator.nextFloat()
    }
    return out
  }
}
