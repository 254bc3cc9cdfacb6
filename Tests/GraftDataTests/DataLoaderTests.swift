import Foundation
import Synchronization
import XCTest

@testable import GraftData

/// Image `i` is a 2×2 picture whose every byte is `i`; label `i % 3`. Optionally sleeps a
/// random few hundred microseconds per decode (to shuffle thread timing), counts decodes, and
/// fails on chosen indices.
final class ProbeDataset: Dataset, @unchecked Sendable {
  struct Failure: Error, Equatable { let index: Int }

  let count: Int
  let classNames = ["a", "b", "c"]
  let labels: [Int]
  let failing: Set<Int>
  let jitter: Bool
  let decodes = Atomic<Int>(0)

  init(count: Int, failing: Set<Int> = [], jitter: Bool = false) {
    self.count = count
    self.labels = (0..<count).map { $0 % 3 }
    self.failing = failing
    self.jitter = jitter
  }

  func sample(at index: Int) throws -> RGBImage {
    decodes.add(1, ordering: .relaxed)
    if jitter { usleep(UInt32((index * 7919) % 5) * 100) }
    if failing.contains(index) { throw Failure(index: index) }
    return RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: UInt8(index), count: 12))
  }
}

/// `[3, H, W]` floats: the byte value plus a uniform draw in [0, 0.5) per element, so every
/// element shows both which image it came from and which generator drew its noise.
let noisyTransform: ImageTransform = { image, generator in
  let out = Tensor(shape: [3, image.height, image.width])
  for y in 0..<image.height {
    for x in 0..<image.width {
      for c in 0..<3 {
        out.pointer[(c * image.height + y) * image.width + x] =
          Float(image.pixels[(y * image.width + x) * 3 + c]) + 0.5 * generator.nextFloat()
      }
    }
  }
  return out
}

/// Every batch of one epoch.
func drain(_ iterator: BatchIterator<RGBImage>) throws -> [Batch] {
  var batches: [Batch] = []
  while let b = try iterator.next() { batches.append(b) }
  return batches
}

final class DataLoaderTests: XCTestCase {
  func testBatchesInOrderWithShapesAndLabels() throws {
    let loader = DataLoader(
      dataset: ProbeDataset(count: 10), batchSize: 4, workers: 2, transform: noisyTransform)
    XCTAssertEqual(loader.batchCount, 3)
    let batches = try drain(loader.batches(epoch: 0))
    XCTAssertEqual(batches.map(\.inputs.shape), [[4, 3, 2, 2], [4, 3, 2, 2], [2, 3, 2, 2]])
    XCTAssertEqual(batches.map(\.indices), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    XCTAssertEqual(batches.map(\.labels), [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0]])
    // Element values: sample index plus noise in [0, 0.5).
    for batch in batches {
      let values = batch.inputs.scalars
      for (k, index) in batch.indices.enumerated() {
        for v in values[(k * 12)..<((k + 1) * 12)] {
          XCTAssertGreaterThanOrEqual(v, Float(index))
          XCTAssertLessThan(v, Float(index) + 0.5)
        }
      }
    }
    let dropping = DataLoader(
      dataset: ProbeDataset(count: 10), batchSize: 4, dropLast: true, transform: noisyTransform)
    XCTAssertEqual(
      try drain(dropping.batches(epoch: 0)).map(\.indices), [[0, 1, 2, 3], [4, 5, 6, 7]])
    let empty = DataLoader(dataset: ProbeDataset(count: 0), batchSize: 4, transform: noisyTransform)
    XCTAssertNil(try empty.batches(epoch: 0).next())
  }

  func testSeededShuffleIsReproducibleAndVariesByEpochAndSeed() throws {
    let dataset = ProbeDataset(count: 50)
    func loader(seed: UInt64) -> DataLoader<RGBImage> {
      DataLoader(
        dataset: dataset, batchSize: 8, shuffle: true, seed: seed, workers: 0,
        transform: noisyTransform)
    }
    let order = loader(seed: 7).order(epoch: 0)
    XCTAssertEqual(order.sorted(), Array(0..<50))
    XCTAssertNotEqual(order, Array(0..<50))
    XCTAssertEqual(loader(seed: 7).order(epoch: 0), order)
    XCTAssertNotEqual(loader(seed: 7).order(epoch: 1), order)
    XCTAssertNotEqual(loader(seed: 8).order(epoch: 0), order)
    let batches = try drain(loader(seed: 7).batches(epoch: 0))
    XCTAssertEqual(batches.flatMap(\.indices), order)
    XCTAssertEqual(batches.flatMap(\.labels), order.map { $0 % 3 })
  }

  func testBackgroundBatchesEqualSynchronousOnes() throws {
    let dataset = ProbeDataset(count: 37, jitter: true)
    func epochs(workers: Int, prefetch: Int?) throws -> [[Batch]] {
      let loader = DataLoader(
        dataset: dataset, batchSize: 5, shuffle: true, seed: 123, workers: workers,
        prefetch: prefetch, transform: noisyTransform)
      return try (0..<2).map { try drain(loader.batches(epoch: $0)) }
    }
    let reference = try epochs(workers: 0, prefetch: nil)
    for (workers, prefetch) in [(2, nil), (3, 1), (4, 6)] as [(Int, Int?)] {
      let background = try epochs(workers: workers, prefetch: prefetch)
      for (e, (a, b)) in zip(reference, background).enumerated() {
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) {
          XCTAssertEqual(x.indices, y.indices, "epoch \(e), workers \(workers)")
          XCTAssertEqual(x.labels, y.labels)
          XCTAssertEqual(x.inputs.shape, y.inputs.shape)
          XCTAssertEqual(x.inputs.scalars, y.inputs.scalars, "epoch \(e), workers \(workers)")
        }
      }
    }
    // Different epochs draw different noise for the same sample.
    let first = reference[0][0]
    let again = reference[1].first { $0.indices.contains(first.indices[0]) }!
    let k = again.indices.firstIndex(of: first.indices[0])!
    XCTAssertNotEqual(
      Array(first.inputs.scalars[0..<12]), Array(again.inputs.scalars[(k * 12)..<((k + 1) * 12)]))
  }

  func testSampleRandomnessDoesNotDependOnBatchSize() throws {
    let dataset = ProbeDataset(count: 12)
    func perSample(batchSize: Int) throws -> [Int: [Float]] {
      let loader = DataLoader(
        dataset: dataset, batchSize: batchSize, shuffle: true, seed: 9, workers: 2,
        transform: noisyTransform)
      var out: [Int: [Float]] = [:]
      for batch in try drain(loader.batches(epoch: 3)) {
        for (k, index) in batch.indices.enumerated() {
          out[index] = Array(batch.inputs.scalars[(k * 12)..<((k + 1) * 12)])
        }
      }
      return out
    }
    XCTAssertEqual(try perSample(batchSize: 3), try perSample(batchSize: 5))
  }

  func testWorkerErrorSurfacesInOrderThenEnds() throws {
    for workers in [0, 2] {
      let loader = DataLoader(
        dataset: ProbeDataset(count: 20, failing: [6]), batchSize: 4, workers: workers,
        transform: noisyTransform)
      let iterator = loader.batches(epoch: 0)
      XCTAssertEqual(try iterator.next()?.indices, [0, 1, 2, 3])
      do {
        _ = try iterator.next()
        XCTFail("batch 1 holds the failing sample 6")
      } catch let error as DataLoaderError {
        XCTAssertEqual(error.sampleIndex, 6)
        XCTAssertEqual(error.underlying as? ProbeDataset.Failure, ProbeDataset.Failure(index: 6))
        XCTAssertTrue(error.description.contains("sample 6"))
      }
      XCTAssertNil(try iterator.next())
      XCTAssertEqual(iterator.liveWorkers, 0)
    }
  }

  func testTransformErrorsAndShapeMismatchAreErrors() throws {
    struct Refused: Error {}
    let refusing = DataLoader(
      dataset: ProbeDataset(count: 4), batchSize: 2, workers: 1,
      transform: { image, _ in
        if image.pixels[0] == 3 { throw Refused() }
        return Tensor(shape: [1])
      })
    let iterator = refusing.batches(epoch: 0)
    XCTAssertNotNil(try iterator.next())
    XCTAssertThrowsError(try iterator.next()) { error in
      XCTAssertEqual((error as? DataLoaderError)?.sampleIndex, 3)
      XCTAssertTrue((error as? DataLoaderError)?.underlying is Refused)
    }
    let ragged = DataLoader(
      dataset: ProbeDataset(count: 4), batchSize: 4, workers: 1,
      transform: { image, _ in Tensor(shape: [Int(image.pixels[0]) < 2 ? 2 : 3]) })
    XCTAssertThrowsError(try ragged.batches(epoch: 0).next()) { error in
      XCTAssertEqual((error as? DataLoaderError)?.sampleIndex, 2)
      XCTAssertTrue("\(error)".contains("[3]"))
    }
  }

  func testPrefetchIsBoundedAndRunsAhead() throws {
    let dataset = ProbeDataset(count: 40)
    let loader = DataLoader(
      dataset: dataset, batchSize: 2, workers: 2, prefetch: 2, transform: noisyTransform)
    let iterator = loader.batches(epoch: 0)
    // Without any next(), the workers fill the window (2 batches = 4 samples) and stop.
    let deadline = Date().addingTimeInterval(5)
    while dataset.decodes.load(ordering: .relaxed) < 4 && Date() < deadline { usleep(1000) }
    XCTAssertEqual(dataset.decodes.load(ordering: .relaxed), 4)
    usleep(100_000)
    XCTAssertEqual(dataset.decodes.load(ordering: .relaxed), 4)
    _ = try iterator.next()
    usleep(100_000)
    XCTAssertLessThanOrEqual(dataset.decodes.load(ordering: .relaxed), 6)
  }

  func testStoppingEarlyEndsTheWorkers() throws {
    let loader = DataLoader(
      dataset: ProbeDataset(count: 200, jitter: true), batchSize: 4, workers: 3,
      transform: noisyTransform)
    let iterator = loader.batches(epoch: 0)
    _ = try iterator.next()
    XCTAssertGreaterThan(iterator.liveWorkers, 0)
    iterator.close()
    XCTAssertEqual(iterator.liveWorkers, 0)
    XCTAssertNil(try iterator.next())

    // Dropping an iterator mid-epoch (breaking out of a loop) stops its threads too.
    var shared: PrefetchState?
    do {
      let dropped = loader.batches(epoch: 1)
      shared = dropped.shared
      for _ in 0..<2 { _ = try dropped.next() }
    }
    let state = try XCTUnwrap(shared)
    XCTAssertEqual(state.condition.withLock { state.liveWorkers }, 0)
  }

  func testSeedMixSeparatesTuples() {
    let seeds = [
      SeedMix.mix(1, 0, 0), SeedMix.mix(1, 0, 1), SeedMix.mix(1, 1, 0), SeedMix.mix(2, 0, 0),
      SeedMix.mix(1, 0), SeedMix.mix(1),
    ]
    XCTAssertEqual(Set(seeds).count, seeds.count)
    XCTAssertEqual(SeedMix.mix(1, 0, 1), SeedMix.mix(1, 0, 1))
  }
}
