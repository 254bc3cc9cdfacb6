import Foundation
import GraftTasks
import XCTest

/// Clouds in memory.
private struct CloudSet: Dataset {
  let clouds: [PointCloud]
  let labels: [Int]
  let classNames: [String]
  var count: Int { clouds.count }
  func sample(at index: Int) throws -> PointCloud { clouds[index] }
}

/// The trainer's data-parallel path with three simulated ranks (threads meeting at each
/// collective) against one process, on the point-cloud methods whose layers look across the
/// batch: IDPT (BatchNorms in its prompt generator and head, dropout 0.5 in the head), full
/// fine-tuning of Point-MAE (its mini-PointNet's BatchNorms in training mode) and P2P (training
/// views drawn per cloud).
final class DataParallelTrainingTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-data-parallel-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// `count` clouds of 48 points, one axis squeezed by class.
  private func clouds(_ count: Int, seed: UInt64) -> CloudSet {
    var g = RandomGenerator(seed: seed)
    let clouds = (0..<count).map { i in
      PointCloud(positions: (0..<(48 * 3)).map { k in g.nextNormal() * (k % 3 == i % 3 ? 0.3 : 1) })
    }
    return CloudSet(
      clouds: clouds, labels: (0..<count).map { $0 % 3 }, classNames: ["a", "b", "c"])
  }

  private func data() throws -> TuneData<PointCloud> {
    try TuneData(
      train: clouds(30, seed: 1), validation: clouds(9, seed: 2), test: clouds(9, seed: 3),
      description: "clouds")
  }

  private func backbone(_ kind: String) throws -> TuneBackbone {
    if kind == "vit" {
      var config = ViTConfig(imgSize: 8, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2)
      config.numClasses = 0
      var rng = RandomGenerator(seed: 2)
      return TuneBackbone(
        inMemory: try VisionTransformer(config: config, generator: &rng), name: "tiny-vit")
    }
    let config = PointMAEConfig(
      transDim: 16, depth: 2, numHeads: 2, groupSize: 8, numGroup: 8, numClasses: 0,
      npoints: 32)
    var rng = RandomGenerator(seed: 1)
    let model = try PointMAE(config: config, generator: &rng)
    return TuneBackbone(
      model: model, reference: "tiny-point-mae", architecture: "point_mae",
      weightsHash: FNV1a64.tensors(model.namedParameters()),
      input: .points(PointInput(points: 32)))
  }

  private func config(
    _ method: String, _ options: [String: String], settings: [String: String] = [:]
  ) throws -> TuneConfig {
    var config = try TuneConfig.preset(for: method)
    for (key, value) in settings { try config.set(key, value) }
    try config.set("train.epochs", "2")
    try config.set("train.batch_size", "8")
    try config.set("train.workers", "0")
    for (key, value) in options { try config.set("method.\(key)", value) }
    return config
  }

  /// Trains `method` in `run` as one process, or as `ranks` simulated ranks.
  private func train(
    _ method: String, on kind: String, options: [String: String] = [:],
    settings: [String: String] = [:], ranks: Int, run: URL
  ) throws -> TuneSummary {
    let data = try data()
    let config = try config(method, options, settings: settings)
    if ranks == 1 {
      let trainer = try Trainer(
        backbone: try backbone(kind), config: config, classNames: data.classNames)
      return try XCTUnwrap(try trainer.run(data: data, folder: run))
    }
    let summaries = Collected<Result<TuneSummary, any Error>>()
    // Each rank builds its own backbone and method from the same seeds, as MPI ranks do.
    let trainers = try (0..<ranks).map { _ in
      try Trainer(backbone: try backbone(kind), config: config, classNames: data.classNames)
    }
    ThreadGroup(size: ranks).run { rank, communicator in
      let trainer = trainers[rank]
      trainer.communicator = communicator
      summaries.set(
        rank, Result { try XCTUnwrap(try trainer.run(data: data, folder: run)) })
    }
    let leader = try summaries[0].get()
    for rank in 1..<ranks {
      let other = try summaries[rank].get()
      XCTAssertEqual(other.test.top1, leader.test.top1, "rank \(rank)")
    }
    return leader
  }

  private func lines(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").map {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
  }

  private func assertRanksMatchOneProcess(
    _ method: String, on kind: String, options: [String: String] = [:],
    settings: [String: String] = [:]
  ) throws {
    let one = folder.appendingPathComponent("\(method)-1")
    let three = folder.appendingPathComponent("\(method)-3")
    let a = try train(
      method, on: kind, options: options, settings: settings, ranks: 1, run: one)
    let b = try train(
      method, on: kind, options: options, settings: settings, ranks: 3, run: three)
    XCTAssertEqual(b.dataParallel?.ranks, 3, method)
    XCTAssertEqual(b.dataParallel?.steps, 8, method)
    XCTAssertEqual(
      (b.dataParallel?.buckets ?? 0) > 1, settings["train.bucket_mb"] != nil, method)
    for (x, y) in zip(try lines(one), try lines(three)) {
      let (lx, ly) = (x["train_loss"] as! Double, y["train_loss"] as! Double)
      XCTAssertLessThanOrEqual(abs(lx - ly) / lx, 1e-5, "\(method): \(lx) vs \(ly)")
      XCTAssertEqual(x["train_top1"] as? Double, y["train_top1"] as? Double, method)
      XCTAssertEqual(x["val_top1"] as? Double, y["val_top1"] as? Double, method)
    }
    XCTAssertEqual(a.test.confusion, b.test.confusion, method)
    XCTAssertEqual(a.test.loss, b.test.loss, accuracy: 1e-4 * a.test.loss, method)
  }

  func testIDPTOnThreeRanksMatchesOneProcess() throws {
    try assertRanksMatchOneProcess("idpt", on: "point-mae")
  }

  func testFullFineTuningOfPointMAEOnThreeRanksMatchesOneProcess() throws {
    try assertRanksMatchOneProcess("full", on: "point-mae")
  }

  /// Gradients in buckets of about 1 KiB (train.bucket_mb), each started as soon as the
  /// backward pass has finished its gradients, instead of one allreduce after it.
  func testBucketedGradientsOnThreeRanksMatchOneProcess() throws {
    try assertRanksMatchOneProcess(
      "full", on: "point-mae", settings: ["train.bucket_mb": "0.001"])
  }

  func testP2POnThreeRanksMatchesOneProcess() throws {
    try assertRanksMatchOneProcess("p2p", on: "vit", options: ["points": "32", "k": "4"])
  }
}
