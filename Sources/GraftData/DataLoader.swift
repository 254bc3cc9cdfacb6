import Foundation
import Synchronization

/// Turns a decoded sample (an image, a point cloud, a clip) into the model's input tensor (for
/// instance `[3, H, W]`), using `generator` for any random augmentation. Runs on loader worker
/// threads, so it must not touch shared mutable state (nor switch the process-wide grad mode: it
/// has no need to, as its inputs never require gradients).
public typealias SampleTransform<Sample> =
  @Sendable (Sample, inout RandomGenerator) throws -> Tensor

/// The transform of image samples.
public typealias ImageTransform = SampleTransform<RGBImage>

/// One batch: the samples' tensors stacked on a new leading axis, and their labels.
public struct Batch {
  /// `[B, …]`: the transform's output shape behind the batch axis, e.g. `[B, 3, H, W]`.
  public let inputs: Tensor
  /// The label of every sample, in batch order.
  public let labels: [Int]
  /// The dataset index of every sample, in batch order.
  public let indices: [Int]
}

/// A sample that could not be loaded; names the dataset index and carries the cause.
public struct DataLoaderError: Error, CustomStringConvertible {
  /// The dataset index of the sample.
  public let sampleIndex: Int
  /// What went wrong, in words.
  public let message: String
  /// The error the dataset or transform threw, if one did.
  public let underlying: (any Error)?

  /// `sample N: message`.
  public var description: String { "sample \(sampleIndex): \(message)" }
}

/// Batches a dataset through a transform, decoding ahead on background threads.
///
/// Order: with `shuffle`, epoch `e` visits the samples in a permutation drawn from a generator
/// seeded by `(seed, e)`, so the same seed gives the same order on every run; without it, in
/// index order. Randomness: the transform of sample `i` in epoch `e` gets a generator seeded by
/// `(seed, e, i)`, so augmentations do not depend on thread timing, worker count or batch size.
/// Hence `workers: 0` (decode on the caller's thread in `next()`) and any worker count yield
/// identical batches.
///
/// Background decoding: `workers` threads each build whole batches, in order of claim, while the
/// caller trains; at most `prefetch` batches are built or waiting ahead of the caller, which
/// bounds memory. An error in a worker is thrown by the caller's `next()` when it reaches that
/// batch; the batches before it arrive first, as in a synchronous run.
public final class DataLoader<Sample>: Sendable {
  /// The samples.
  public let dataset: any Dataset<Sample>
  /// Sample to tensor, with per-sample randomness.
  public let transform: SampleTransform<Sample>
  /// Samples per batch (the last batch may be smaller unless `dropLast`).
  public let batchSize: Int
  /// Whether each epoch visits the samples in a seeded random order.
  public let shuffle: Bool
  /// Seeds the order and every sample's generator.
  public let seed: UInt64
  /// Whether to drop a last batch smaller than `batchSize`.
  public let dropLast: Bool
  /// Background threads per epoch iterator; 0 decodes on the caller's thread.
  public let workers: Int
  /// Most batches being built or ready ahead of the caller.
  public let prefetch: Int
  /// In a data-parallel run: this process's rank and the number of ranks. Each rank loads its
  /// contiguous part of every global batch (`BatchShard.range`); 0 and 1 otherwise.
  public let rank: Int
  /// The number of ranks sharing every batch.
  public let ranks: Int

  /// A loader over `dataset`; `prefetch` defaults to twice the worker count.
  public init<D: Dataset>(
    dataset: D, batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0,
    dropLast: Bool = false, workers: Int = 2, prefetch: Int? = nil, rank: Int = 0,
    ranks: Int = 1, transform: @escaping SampleTransform<Sample>
  ) where D.Sample == Sample {
    precondition(batchSize > 0, "batch size must be positive, got \(batchSize)")
    precondition(ranks >= 1 && (0..<ranks).contains(rank), "rank \(rank) of \(ranks)")
    precondition(workers >= 0, "worker count must not be negative, got \(workers)")
    self.dataset = dataset
    self.transform = transform
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.seed = seed
    self.dropLast = dropLast
    self.workers = workers
    self.prefetch = max(1, prefetch ?? 2 * workers)
    self.rank = rank
    self.ranks = ranks
  }

  /// Batches per epoch.
  public var batchCount: Int {
    dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
  }

  /// The order in which epoch `epoch` visits the dataset's indices.
  public func order(epoch: Int) -> [Int] {
    guard shuffle else { return Array(0..<dataset.count) }
    var generator = RandomGenerator(seed: SeedMix.mix(seed, Self.orderStream, UInt64(epoch)))
    return generator.permutation(dataset.count)
  }

  /// The dataset indices of every batch of epoch `epoch` this rank loads (the whole batches in
  /// a single-process run).
  public func batchIndices(epoch: Int) -> [[Int]] {
    globalBatchIndices(epoch: epoch).map { batch in
      guard ranks > 1 else { return batch }
      return Array(batch[BatchShard.range(rank: rank, ranks: ranks, total: batch.count)])
    }
  }

  /// The dataset indices of every global batch of epoch `epoch` (over all ranks).
  public func globalBatchIndices(epoch: Int) -> [[Int]] {
    let order = order(epoch: epoch)
    return (0..<batchCount).map { b in
      Array(order[(b * batchSize)..<min((b + 1) * batchSize, order.count)])
    }
  }

  /// The size of global batch `index` (the same in every epoch).
  public func globalBatchSize(_ index: Int) -> Int {
    min(batchSize, dataset.count - index * batchSize)
  }

  /// The generator the transform of sample `index` gets in epoch `epoch`.
  public func sampleGenerator(epoch: Int, index: Int) -> RandomGenerator {
    RandomGenerator(seed: SeedMix.mix(seed, Self.sampleStream, UInt64(epoch), UInt64(index)))
  }

  /// An iterator over epoch `epoch`'s batches; with workers, they start decoding now.
  public func batches(epoch: Int) -> BatchIterator<Sample> {
    BatchIterator(loader: self, epoch: epoch)
  }

  /// Builds the batch of dataset `indices` on the calling thread (the synchronous path, also
  /// what each worker runs).
  public func loadBatch(_ indices: [Int], epoch: Int) throws -> Batch {
    try loadBatch(indices, epoch: epoch, isCancelled: { false })
  }

  func loadBatch(_ indices: [Int], epoch: Int, isCancelled: () -> Bool) throws -> Batch {
    precondition(!indices.isEmpty, "a batch needs at least one sample")
    var inputs: Tensor? = nil
    var sampleShape: [Int] = []
    for (position, index) in indices.enumerated() {
      if isCancelled() { throw CancellationError() }
      let sample: Sample
      do {
        sample = try dataset.sample(at: index)
      } catch {
        throw DataLoaderError(sampleIndex: index, message: "\(error)", underlying: error)
      }
      var generator = sampleGenerator(epoch: epoch, index: index)
      let tensor: Tensor
      do {
        tensor = try transform(sample, &generator)
      } catch {
        throw DataLoaderError(
          sampleIndex: index, message: "transform failed: \(error)", underlying: error)
      }
      if inputs == nil {
        sampleShape = tensor.shape
        inputs = Tensor(shape: [indices.count] + sampleShape, zeroed: false)
      } else if tensor.shape != sampleShape {
        throw DataLoaderError(
          sampleIndex: index,
          message: "transform gave shape \(tensor.shape), but the batch's first sample "
            + "(index \(indices[0])) has \(sampleShape)",
          underlying: nil)
      }
      (inputs!.pointer + position * tensor.count).update(from: tensor.pointer, count: tensor.count)
    }
    return Batch(inputs: inputs!, labels: indices.map { dataset.label(at: $0) }, indices: indices)
  }

  private static var orderStream: UInt64 { 0x6F72_6465_72 }  // "order"
  private static var sampleStream: UInt64 { 0x7361_6D70_6C65 }  // "sample"
}

/// Independent seeds from a tuple of numbers, through SplitMix64's mixing function.
public enum SeedMix {
  /// A 64-bit seed determined by `seed` and `parts`; changing any input changes it
  /// unpredictably, so generators seeded from different tuples give unrelated streams.
  public static func mix(_ seed: UInt64, _ parts: UInt64...) -> UInt64 {
    var h = finalize(seed &+ 0x9E37_79B9_7F4A_7C15)
    for p in parts { h = finalize(h ^ finalize(p &+ 0x9E37_79B9_7F4A_7C15)) }
    return h
  }

  private static func finalize(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// The batches of one epoch, in order. Call `next()` until it returns nil; stopping early is
/// fine: dropping the iterator (or calling `close()`) stops its worker threads.
///
/// After `next()` throws, the epoch is over and later calls return nil.
public final class BatchIterator<Sample> {
  /// The loader this epoch belongs to.
  public let loader: DataLoader<Sample>
  /// The epoch number (seeds the order and augmentations).
  public let epoch: Int
  private let plan: [[Int]]
  private var position = 0
  private var finished = false
  let shared: PrefetchState?

  init(loader: DataLoader<Sample>, epoch: Int) {
    self.loader = loader
    self.epoch = epoch
    self.plan = loader.batchIndices(epoch: epoch)
    if loader.workers > 0 && !plan.isEmpty {
      let shared = PrefetchState(total: plan.count, window: loader.prefetch)
      self.shared = shared
      let workerCount = min(loader.workers, plan.count)
      shared.condition.withLock { shared.liveWorkers = workerCount }
      let job = PrefetchJob(loader: loader, epoch: epoch, plan: plan, state: shared)
      for w in 0..<workerCount {
        let thread = Thread { job.run() }
        thread.name = "graft.data.worker.\(w)"
        thread.stackSize = 8 << 20  // image codecs can use deep stacks
        thread.start()
      }
    } else {
      self.shared = nil
    }
  }

  deinit { close() }

  /// Number of batches this epoch yields in all.
  public var count: Int { plan.count }

  /// The next batch; nil after the last. Rethrows the first error a sample raised.
  public func next() throws -> Batch? {
    guard !finished else { return nil }
    guard position < plan.count else {
      close()
      return nil
    }
    defer { position += 1 }
    do {
      guard let shared else {
        return try loader.loadBatch(plan[position], epoch: epoch)
      }
      return try shared.take(position).get().batch
    } catch {
      close()
      throw error
    }
  }

  /// Stops the workers and waits for them to exit (at most one sample's work each); later
  /// `next()` calls return nil.
  public func close() {
    finished = true
    shared?.cancel()
  }

  /// Worker threads still running (for tests).
  var liveWorkers: Int { shared.map { s in s.condition.withLock { s.liveWorkers } } ?? 0 }
}

/// A finished batch crossing from a worker to the consumer: the worker never touches it again.
struct BatchBox: @unchecked Sendable {
  let batch: Batch
}

/// The state workers and the consumer share, guarded by `condition`.
final class PrefetchState: @unchecked Sendable {
  let condition = NSCondition()
  let total: Int
  let window: Int
  /// Set under the lock; read without it between samples, hence atomic.
  let cancelled = Atomic<Bool>(false)
  var nextToClaim = 0
  var nextToDeliver = 0
  var ready: [Int: Result<BatchBox, any Error>] = [:]
  var liveWorkers = 0

  init(total: Int, window: Int) {
    self.total = total
    self.window = window
  }

  /// Waits for batch `index` (the consumer's next) and removes it.
  func take(_ index: Int) -> Result<BatchBox, any Error> {
    condition.withLock {
      while ready[index] == nil { condition.wait() }
      let result = ready.removeValue(forKey: index)!
      nextToDeliver = index + 1
      condition.broadcast()
      return result
    }
  }

  /// Tells workers to stop, drops ready batches, and waits until every worker has exited.
  func cancel() {
    condition.withLock {
      cancelled.store(true, ordering: .relaxed)
      ready.removeAll()
      condition.broadcast()
      while liveWorkers > 0 { condition.wait() }
    }
  }
}

/// What each worker thread runs: claim the next batch within the window, build it, publish it.
struct PrefetchJob<Sample>: Sendable {
  let loader: DataLoader<Sample>
  let epoch: Int
  let plan: [[Int]]
  let state: PrefetchState

  func run() {
    let c = state.condition
    while true {
      c.lock()
      while !state.cancelled.load(ordering: .relaxed) && state.nextToClaim < state.total
        && state.nextToClaim >= state.nextToDeliver + state.window
      {
        c.wait()
      }
      if state.cancelled.load(ordering: .relaxed) || state.nextToClaim >= state.total {
        state.liveWorkers -= 1
        c.broadcast()
        c.unlock()
        return
      }
      let index = state.nextToClaim
      state.nextToClaim += 1
      c.unlock()

      let result = Result {
        BatchBox(
          batch: try loader.loadBatch(plan[index], epoch: epoch) {
            state.cancelled.load(ordering: .relaxed)
          })
      }
      c.withLock {
        if !state.cancelled.load(ordering: .relaxed) { state.ready[index] = result }
        c.broadcast()
      }
    }
  }
}
