import Foundation

/// Test-time voting (`eval.votes = N`): the logits of N views of every test sample, averaged,
/// then the metrics of the average.
///
/// - P2P draws each cloud from `views(votes:)`: all 40 of the official `tool/test.py` views
///   (`P2P.votingViews`) for N = 40, else N of them evenly spaced in their order.
/// - Every other method on point clouds sees N random views as Point-MAE's `validate_vote` does
///   (`PointTransforms.voting`: a random 1,024 of the 1,200 farthest points, scaled and
///   translated), view v drawn by the data loader from `(seed, v, sample)`, so a vote is
///   reproducible and independent of the batch size.
/// - N = 1 is no voting: exactly `evaluate`'s single deterministic view.
///
/// Both papers average logits (not probabilities); so does this.
public enum Voting {
  /// Most views P2P votes over: the official list.
  public static var maximumP2PVotes: Int { P2P.votingViews.count }

  /// P2P's `votes` views: indices ⌊i · 40 / votes⌋ of `P2P.votingViews`, so 40 gives the
  /// official list in order. More than 40 throws.
  public static func views(votes: Int) throws -> [P2P.View] {
    let all = P2P.votingViews
    guard (1...all.count).contains(votes) else {
      throw ConfigError(
        "eval.votes = \(votes): P2P votes over at most its \(all.count) official views")
    }
    return (0..<votes).map { all[$0 * all.count / votes] }
  }

  /// Checks that `method` can vote over `votes` views of `Sample`s (before a run trains, so a
  /// bad setting fails at once).
  public static func check<Sample: TuneSample>(
    _ method: TuningMethod, votes: Int, input: BackboneInput, sample: Sample.Type
  ) throws {
    guard votes > 1 else { return }
    if method is P2P {
      _ = try views(votes: votes)
    } else if try Sample.votingTransform(for: input) == nil {
      throw ConfigError(
        "eval.votes = \(votes): voting needs point clouds (these data have no test-time views)")
    }
  }

  /// The metrics and the averaged logits `[count, classes]` of `method` over `dataset` with
  /// `votes` views per sample; `input` is what the samples are brought to (the run's
  /// `taskInput`), `seed` seeds the random views.
  public static func evaluate<Sample: TuneSample>(
    _ method: TuningMethod, on dataset: any Dataset<Sample>, input: BackboneInput, votes: Int,
    batchSize: Int, workers: Int = 1, seed: UInt64 = 0
  ) throws -> (result: EvaluationResult, logits: Tensor) {
    guard votes >= 1 else { throw ConfigError("eval.votes = \(votes) must be at least 1") }
    let plain = try Sample.transforms(for: input).eval
    if votes == 1 {
      return try GraftTasks.evaluate(
        method, on: dataset, transform: plain, batchSize: batchSize, workers: workers)
    }
    var passes: [Tensor] = []
    if let p2p = method as? P2P {
      let saved = p2p.evaluationView
      defer { p2p.evaluationView = saved }
      for view in try views(votes: votes) {
        p2p.evaluationView = view
        passes.append(
          try GraftTasks.evaluate(
            method, on: dataset, transform: plain, batchSize: batchSize, workers: workers
          ).logits)
      }
    } else {
      guard let random = try Sample.votingTransform(for: input) else {
        throw ConfigError(
          "eval.votes = \(votes): voting needs point clouds (these data have no test-time views)")
      }
      method.setTraining(false)
      for v in 0..<votes {
        let loader = DataLoader(
          dataset: dataset, batchSize: batchSize, shuffle: false,
          seed: SeedMix.mix(seed, 0x766F_7465), workers: workers, transform: random)  // "vote"
        var parts: [Tensor] = []
        let batches = loader.batches(epoch: v)
        defer { batches.close() }
        while let batch = try batches.next() { parts.append(withNoGrad { method(batch.inputs) }) }
        passes.append(
          parts.isEmpty ? Tensor.zeros([0, method.classes]) : Tensor.concat(parts, axis: 0))
      }
    }
    let mean = average(passes)
    var acc = EvaluationResult.Accumulator(classes: method.classes)
    if mean.shape[0] > 0 { acc.add(logits: mean, labels: dataset.labels) }
    return (acc.result, mean)
  }

  /// The element-wise mean of equally shaped logits.
  static func average(_ passes: [Tensor]) -> Tensor {
    let out = Tensor(shape: passes[0].shape, zeroed: true)
    let n = out.count
    for t in passes {
      for i in 0..<n { out.pointer[i] += t.pointer[i] }
    }
    let scale = 1 / Float(passes.count)
    for i in 0..<n { out.pointer[i] *= scale }
    return out
  }
}
