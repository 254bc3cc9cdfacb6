import XCTest

@testable import GraftTasks

/// Clouds in memory, for voting tests.
private struct CloudSet: Dataset {
  let clouds: [PointCloud]
  let labels: [Int]
  let classNames: [String]
  var count: Int { clouds.count }
  func sample(at index: Int) throws -> PointCloud { clouds[index] }
}

/// `eval.votes`, mean per-class accuracy and the rotated furniture task.
final class VotingTests: XCTestCase {
  /// `count` random clouds of 48 points, labels cycling over three classes.
  private func clouds(_ count: Int, seed: UInt64 = 4) -> CloudSet {
    var g = RandomGenerator(seed: seed)
    let clouds = (0..<count).map { i in
      PointCloud(
        positions: (0..<(48 * 3)).map { k in
          g.nextNormal() * (k % 3 == i % 3 ? 0.3 : 1)
        })
    }
    return CloudSet(
      clouds: clouds, labels: (0..<count).map { $0 % 3 }, classNames: ["a", "b", "c"])
  }

  private func tinyPointMethod(_ name: String) throws -> TuningMethod {
    let config = PointMAEConfig(
      transDim: 16, depth: 2, numHeads: 2, groupSize: 8, numGroup: 8, numClasses: 0,
      npoints: 32)
    var rng = RandomGenerator(seed: 1)
    let model = try PointMAE(config: config, generator: &rng)
    return try MethodRegistry.make(
      name, backbone: model, classes: 3, options: [:], generator: &rng)
  }

  private func tinyP2P() throws -> P2P {
    var config = ViTConfig(imgSize: 8, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2)
    config.numClasses = 0
    var rng = RandomGenerator(seed: 2)
    let vit = try VisionTransformer(config: config, generator: &rng)
    return try XCTUnwrap(
      MethodRegistry.make(
        "p2p", backbone: vit, classes: 3, options: ["points": "32", "k": "4"],
        generator: &rng) as? P2P)
  }

  func testMeanPerClassAccuracyMatchesAHandComputation() {
    // Class 0: 2 of 3 right; class 1: 1 of 1; class 2: 1 of 4; class 3 has no sample.
    let confusion = [[2, 1, 0, 0], [0, 1, 0, 0], [1, 2, 1, 0], [0, 0, 0, 0]]
    let r = EvaluationResult(
      loss: 0, top1: 0.5, top5: 1, perClass: [], confusion: confusion, count: 8)
    XCTAssertEqual(r.meanPerClass, (2.0 / 3 + 1 + 0.25) / 3, accuracy: 1e-12)
    XCTAssertEqual(r.json()["mean_per_class"] as? Double, r.meanPerClass)
    // Through the accumulator: logits whose argmax is the prediction.
    var acc = EvaluationResult.Accumulator(classes: 2)
    let predicted = [0, 0, 1, 1, 1]
    let labels = [0, 1, 1, 1, 1]
    acc.add(
      logits: Tensor(predicted.flatMap { $0 == 0 ? [1, 0] : [0, 1] }, shape: [5, 2]),
      labels: labels)
    XCTAssertEqual(acc.result.top1, 0.8, accuracy: 1e-12)
    XCTAssertEqual(acc.result.meanPerClass, (1.0 + 0.75) / 2, accuracy: 1e-12)
  }

  func testOneVoteIsExactlyTheUnvotedEvaluation() throws {
    let method = try tinyPointMethod("linear")
    let data = clouds(7)
    let input = BackboneInput.points(PointInput(points: 32))
    let plain = try evaluate(
      method, on: data, transform: PointCloud.transforms(for: input).eval, batchSize: 3)
    let one = try Voting.evaluate(method, on: data, input: input, votes: 1, batchSize: 3)
    XCTAssertEqual(one.logits.scalars, plain.logits.scalars)
    XCTAssertEqual(one.result, plain.result)
  }

  func testPointVotesAverageSeededRandomViews() throws {
    let method = try tinyPointMethod("linear")
    let data = clouds(7)
    let input = BackboneInput.points(PointInput(points: 32))
    let a = try Voting.evaluate(method, on: data, input: input, votes: 3, batchSize: 3, seed: 5)
    // Reproducible from the seed and independent of the batch size.
    let b = try Voting.evaluate(method, on: data, input: input, votes: 3, batchSize: 7, seed: 5)
    for (x, y) in zip(a.logits.scalars, b.logits.scalars) { XCTAssertEqual(x, y, accuracy: 1e-5) }
    // Another seed draws other views; and the average is not the single deterministic view.
    let c = try Voting.evaluate(method, on: data, input: input, votes: 3, batchSize: 3, seed: 6)
    XCTAssertNotEqual(a.logits.scalars, c.logits.scalars)
    let plain = try Voting.evaluate(method, on: data, input: input, votes: 1, batchSize: 3)
    XCTAssertNotEqual(a.logits.scalars, plain.logits.scalars)
    XCTAssertEqual(a.logits.shape, [7, 3])
    XCTAssertEqual(a.result.count, 7)
    // Views are Point-MAE's: scaled per axis in [2/3, 3/2) and shifted by less than 0.2.
    var g = RandomGenerator(seed: 9)
    let view = try PointTransforms.voting(points: 32)(data.clouds[0], &g)
    let fixed = try PointCloud.transforms(for: input).eval(data.clouds[0], &g)
    XCTAssertEqual(view.shape, [32, 3])
    XCTAssertNotEqual(view.scalars, fixed.scalars)
  }

  func testP2PVotesOverTheListedViews() throws {
    XCTAssertEqual(try Voting.views(votes: 40), P2P.votingViews)
    XCTAssertEqual(
      try Voting.views(votes: 4), [0, 10, 20, 30].map { P2P.votingViews[$0] })
    XCTAssertThrowsError(try Voting.views(votes: 41))
    let p2p = try tinyP2P()
    let data = clouds(5)
    let input = BackboneInput.points(PointInput(points: 32))
    let voted = try Voting.evaluate(p2p, on: data, input: input, votes: 4, batchSize: 2)
    // By hand: the evaluation clouds seen from each listed view, logits averaged.
    var g = RandomGenerator(seed: 0)
    let transform = try PointCloud.transforms(for: input).eval
    let batch = Tensor.stack(try data.clouds.map { try transform($0, &g) })
    p2p.setTraining(false)
    var sum = [Float](repeating: 0, count: 15)
    for view in try Voting.views(votes: 4) {
      let logits = withNoGrad { p2p.logits(points: batch, view: view) }
      for i in 0..<15 { sum[i] += logits.scalars[i] / 4 }
    }
    for (x, y) in zip(voted.logits.scalars, sum) { XCTAssertEqual(x, y, accuracy: 1e-4) }
    // The evaluation view is restored afterwards.
    XCTAssertEqual(p2p.evaluationView, P2P.fixedView)
  }

  func testVotingIsRefusedWhereItCannotApply() throws {
    var config = TuneConfig(method: "linear")
    XCTAssertThrowsError(try config.set("eval.votes", "0"))
    try config.set("eval.votes", "4")
    XCTAssertEqual(config.votes, 4)
    let p2p = try tinyP2P()
    let input = BackboneInput.points(PointInput(points: 32))
    XCTAssertThrowsError(
      try Voting.check(p2p, votes: 41, input: input, sample: PointCloud.self))
    XCTAssertNoThrow(try Voting.check(p2p, votes: 40, input: input, sample: PointCloud.self))
    // Images have no test-time views.
    var vit = ViTConfig(imgSize: 8, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2)
    vit.numClasses = 0
    var rng = RandomGenerator(seed: 1)
    let model = try VisionTransformer(config: vit, generator: &rng)
    let linear = try MethodRegistry.make(
      "linear", backbone: model, classes: 3, options: [:], generator: &rng)
    let image = TuneBackbone(inMemory: model, name: "tiny").input
    XCTAssertThrowsError(try Voting.check(linear, votes: 2, input: image, sample: RGBImage.self))
    XCTAssertNoThrow(try Voting.check(linear, votes: 1, input: image, sample: RGBImage.self))
  }

  func testRotatedCloudsKeepTheirShapeAndRotationPerSample() throws {
    let base = clouds(4)
    let rotated = RotatedPointDataset(base, seed: 3)
    XCTAssertEqual(rotated.labels, base.labels)
    for i in 0..<4 {
      let r = rotated.rotation(at: i)
      XCTAssertEqual(r.determinant, 1, accuracy: 1e-5)
      let turned = try rotated.sample(at: i).positions
      XCTAssertEqual(try rotated.sample(at: i).positions, turned)  // fixed per sample
      let original = base.clouds[i].positions
      XCTAssertNotEqual(turned, original)
      // Distances from the origin are kept.
      for j in 0..<48 {
        let a = (0..<3).map { original[3 * j + $0] * original[3 * j + $0] }.reduce(0, +)
        let b = (0..<3).map { turned[3 * j + $0] * turned[3 * j + $0] }.reduce(0, +)
        XCTAssertEqual(a, b, accuracy: 1e-4)
      }
    }
    XCTAssertNotEqual(rotated.rotation(at: 0), rotated.rotation(at: 1))
    XCTAssertNotEqual(rotated.rotation(at: 0), RotatedPointDataset(base, seed: 4).rotation(at: 0))
  }
}

/// A run with `eval.votes` reports the voted and unvoted test results, and sweeps read both.
final class VotingRunTests: XCTestCase {
  func testARunWithVotesReportsBothAndSweepsReadThem() throws {
    var g = RandomGenerator(seed: 8)
    func split(_ n: Int) -> CloudSet {
      let labels = (0..<n).map { $0 % 2 }
      let clouds = labels.map { label in
        // Class 0 flat in y, class 1 round.
        PointCloud(
          positions: (0..<(40 * 3)).map { k in
            g.nextNormal() * (label == 0 && k % 3 == 1 ? 0.05 : 1)
          })
      }
      return CloudSet(clouds: clouds, labels: labels, classNames: ["flat", "round"])
    }
    let data = try TuneData<PointCloud>(
      train: split(12), validation: split(4), test: split(6), description: "tiny")
    let config = PointMAEConfig(
      transDim: 16, depth: 1, numHeads: 2, groupSize: 8, numGroup: 8, numClasses: 0, npoints: 32)
    var rng = RandomGenerator(seed: 1)
    let model = try PointMAE(config: config, generator: &rng)
    let backbone = TuneBackbone(
      model: model, reference: "tiny", architecture: "point_mae",
      weightsHash: FNV1a64.tensors(model.namedParameters()),
      input: .points(PointInput(points: 32)))
    var cfg = try TuneConfig.preset(for: "linear")
    for (k, v) in [
      ("train.epochs", "1"), ("train.batch_size", "6"), ("train.workers", "0"), ("eval.votes", "3"),
    ] {
      try cfg.set(k, v)
    }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-votes-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: folder) }
    let trainer = try Trainer(backbone: backbone, config: cfg, classNames: data.classNames)
    let summary = try XCTUnwrap(try trainer.run(data: data, folder: folder))
    XCTAssertEqual(summary.votes, 3)
    let voted = try XCTUnwrap(summary.testVoted)
    XCTAssertEqual(voted.count, 6)
    // The unvoted figure is the adapter's single-view evaluation, to the bit.
    let plain = try Voting.evaluate(
      trainer.method, on: data.test, input: trainer.taskInput, votes: 1, batchSize: 64)
    XCTAssertEqual(summary.test, plain.result)
    let voteAgain = try Voting.evaluate(
      trainer.method, on: data.test, input: trainer.taskInput, votes: 3, batchSize: 64)
    XCTAssertEqual(voted, voteAgain.result)
    let stored = try TuneSummary.read(from: folder.appendingPathComponent("summary.json"))
    XCTAssertEqual(stored.votes, 3)
    XCTAssertEqual(stored.testVoted?.top1, voted.top1)
    let record = try RunRecord.load(folder: folder, task: "tiny")
    XCTAssertEqual(record.votes, 3)
    XCTAssertEqual(record.testVoted?.top1, voted.top1)
    XCTAssertEqual(record.testMeanPerClass, summary.test.meanPerClass, accuracy: 1e-12)
  }
}
