import Foundation

// Greedy decoding and beam search as `transformers`' `generate` (5.x) runs them for a
// decoder-only model, step for step, so that a checkpoint gives the same tokens here as there:
//
// - greedy: the arg-max of the last position's logits (the first on ties), until an end-of-text
//   token (kept) or `maxNewTokens`;
// - beam search (`_beam_search`): each step scores every continuation of every running beam by
//   its summed log-probability, keeps the best `max(2, 1 + #eos)·beams` of them, moves those
//   that end in end-of-text (or reach the length limit), if they are among the best `beams`,
//   into the finished set with the score `sum / generated_length^length_penalty`, and continues
//   the best `beams` unfinished ones. With `earlyStopping` false (the default), the search stops
//   once the best running beam, scored at its current length, cannot beat the worst finished
//   one. Scores are Float32 and beams that must not be picked get −1e9 added, as there.

/// How `GPT2.generate` decodes (the fields of `transformers`' `GenerationConfig` it uses).
public struct GenerationOptions: Sendable, Equatable {
  /// New tokens at most (the end-of-text token included).
  public var maxNewTokens = 20
  /// Beams; 1 is greedy decoding.
  public var numBeams = 1
  /// Exponent of the generated length that divides a finished beam's log-probability: above 0
  /// favours longer captions, below 0 shorter ones.
  public var lengthPenalty: Float = 1
  /// Tokens that end a sequence; nil takes the model's (`GPT2Config.eosTokenIDs`).
  public var eosTokenIDs: [Int]?
  /// Stop as soon as `numBeams` beams have finished (`early_stopping=True`) instead of when no
  /// running beam can do better.
  public var earlyStopping = false

  /// `transformers`' defaults with `maxNewTokens` 20.
  public init(
    maxNewTokens: Int = 20, numBeams: Int = 1, lengthPenalty: Float = 1,
    eosTokenIDs: [Int]? = nil, earlyStopping: Bool = false
  ) {
    self.maxNewTokens = maxNewTokens
    self.numBeams = numBeams
    self.lengthPenalty = lengthPenalty
    self.eosTokenIDs = eosTokenIDs
    self.earlyStopping = earlyStopping
  }
}

extension GPT2 {
  /// The tokens generated after `prompt` (one sequence: ids [[…]] or embeddings [1, L, D], such
  /// as a visual prefix followed by embedded tokens), by greedy decoding or beam search with the
  /// KV cache. The prompt is not repeated in the result; a final end-of-text token is kept.
  /// `hooks` apply at every step (an adapter's deltas). Throws `ConfigError` for options out of
  /// range, a prompt of more than one sequence or none, and a prompt and `maxNewTokens` that
  /// need more positions than the model has.
  public func generate(
    _ prompt: GPT2Input, options: GenerationOptions = GenerationOptions(),
    hooks: (any BackboneHooks)? = nil
  ) throws -> [Int] {
    let promptLength: Int
    switch prompt {
    case .ids(let ids):
      guard ids.count == 1, let row = ids.first, !row.isEmpty else {
        throw ConfigError("generate: the prompt must be one non-empty sequence of ids")
      }
      guard row.allSatisfy({ $0 >= 0 && $0 < config.vocabSize }) else {
        throw ConfigError("generate: a prompt id is outside the vocabulary 0..<\(config.vocabSize)")
      }
      promptLength = row.count
    case .embeddings(let e):
      guard e.rank == 3, e.shape[0] == 1, e.shape[1] >= 1, e.shape[2] == width else {
        throw ConfigError("generate: prompt embeddings \(e.shape) must be [1, L ≥ 1, \(width)]")
      }
      promptLength = e.shape[1]
    }
    guard options.maxNewTokens >= 1 else {
      throw ConfigError("generate: maxNewTokens must be at least 1")
    }
    guard options.numBeams >= 1 else { throw ConfigError("generate: numBeams must be at least 1") }
    guard options.lengthPenalty.isFinite else {
      throw ConfigError("generate: lengthPenalty must be finite")
    }
    // The last new token is never fed back.
    guard promptLength + options.maxNewTokens - 1 <= config.nPositions else {
      throw ConfigError(
        "generate: a prompt of \(promptLength) and \(options.maxNewTokens) new tokens need "
          + "\(promptLength + options.maxNewTokens - 1) positions; the model has "
          + "\(config.nPositions)")
    }
    let eos = Set(options.eosTokenIDs ?? config.eosTokenIDs)
    return withNoGrad {
      let cache = GPT2KVCache(layers: depth)
      let first = lastLogits(logits(prompt, cache: cache, hooks: hooks))
      if options.numBeams == 1 {
        return greedy(first: first, cache: cache, options: options, eos: eos, hooks: hooks)
      }
      return beamSearch(first: first, cache: cache, options: options, eos: eos, hooks: hooks)
    }
  }

  /// The last position's logits of each row of [B, L, V], as B arrays.
  private func lastLogits(_ logits: Tensor) -> [[Float]] {
    let (b, l, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
    let p = logits.pointer
    return (0..<b).map { r in Array(UnsafeBufferPointer(start: p + (r * l + l - 1) * v, count: v)) }
  }

  private func greedy(
    first: [[Float]], cache: GPT2KVCache, options: GenerationOptions, eos: Set<Int>,
    hooks: (any BackboneHooks)?
  ) -> [Int] {
    var out: [Int] = []
    var row = first[0]
    while true {
      var best = 0
      for i in 1..<row.count where row[i] > row[best] { best = i }
      out.append(best)
      if eos.contains(best) || out.count == options.maxNewTokens { return out }
      row = lastLogits(logits(.ids([[best]]), cache: cache, hooks: hooks))[0]
    }
  }

  /// `log_softmax` of one row, in Float32 as PyTorch computes it.
  private static func logSoftmax(_ row: [Float]) -> [Float] {
    let m = row.max() ?? 0
    var sum: Float = 0
    for x in row { sum += Foundation.exp(x - m) }
    let lse = Foundation.log(sum)
    return row.map { $0 - m - lse }
  }

  /// `length^penalty`, computed in double as Python does before the Float32 division.
  private static func lengthScale(_ length: Int, _ penalty: Float) -> Float {
    Float(Foundation.pow(Double(length), Double(penalty)))
  }

  /// The indices of the `k` largest of `values`, largest first (the lower index first on ties).
  private static func topK(_ values: [Float], _ k: Int) -> [Int] {
    var best: [Int] = []
    best.reserveCapacity(k + 1)
    for i in values.indices {
      guard best.count < k || values[i] > values[best[best.count - 1]] else { continue }
      var at = best.count
      while at > 0 && values[i] > values[best[at - 1]] { at -= 1 }
      best.insert(i, at: at)
      if best.count > k { best.removeLast() }
    }
    return best
  }

  private func beamSearch(
    first: [[Float]], cache: GPT2KVCache, options: GenerationOptions, eos: Set<Int>,
    hooks: (any BackboneHooks)?
  ) -> [Int] {
    let beams = options.numBeams
    let keep = Swift.max(2, 1 + eos.count) * beams
    let penalty = options.lengthPenalty
    let veto: Float = -1e9
    // The prompt was run once; every beam starts from its cache.
    cache.select(Array(repeating: 0, count: beams))
    var logitRows = Array(repeating: first[0], count: beams)
    var running: [[Int]] = Array(repeating: [], count: beams)
    // Only the first beam is live at the start, so the beams do not all pick the same tokens.
    var runningScores: [Float] = [0] + Array(repeating: veto, count: beams - 1)
    var finished: [[Int]] = Array(repeating: [], count: beams)
    var finishedScores = [Float](repeating: veto, count: beams)
    var isFinished = [Bool](repeating: false, count: beams)
    var improvable = true
    var generated = 0
    while true {
      let v = logitRows[0].count
      var scores = [Float](repeating: 0, count: beams * v)
      for b in 0..<beams {
        let lp = Self.logSoftmax(logitRows[b])
        for t in 0..<v { scores[b * v + t] = lp[t] + runningScores[b] }
      }
      let top = Self.topK(scores, keep)
      let candidates = top.map { (beam: $0 / v, token: $0 % v, score: scores[$0]) }
      let hits = candidates.map { c in
        generated + 1 >= options.maxNewTokens || eos.contains(c.token)
      }
      // The best unfinished continuations run on.
      let live = zip(candidates, hits).map { c, hit in c.score + (hit ? veto : 0) }
      let next = Self.topK(live, beams)
      let sources = next.map { candidates[$0].beam }
      let nextRunning = next.map { running[candidates[$0].beam] + [candidates[$0].token] }
      runningScores = next.map { live[$0] }
      // Finished ones among the best `beams` candidates join the finished set if good enough.
      let full = isFinished.allSatisfy { $0 } && options.earlyStopping
      let divisor = Self.lengthScale(generated + 1, penalty)
      var mergedTokens = finished
      var mergedScores = finishedScores
      var mergedFinished = isFinished
      for (k, c) in candidates.enumerated() {
        let justFinished = hits[k] && k < beams
        var s = c.score / divisor
        if full { s += veto }
        if !improvable { s += veto }
        if !justFinished { s += veto }
        mergedTokens.append(running[c.beam] + [c.token])
        mergedScores.append(s)
        mergedFinished.append(justFinished)
      }
      let kept = Self.topK(mergedScores, beams)
      finished = kept.map { mergedTokens[$0] }
      finishedScores = kept.map { mergedScores[$0] }
      isFinished = kept.map { mergedFinished[$0] }
      running = nextRunning
      generated += 1
      // Can a running beam still beat the worst finished one (scored at the current length)?
      let bestPossible = runningScores[0] / Self.lengthScale(generated, penalty)
      let worst = finishedScores.min() ?? veto
      improvable = improvable && isFinished.contains { bestPossible > ($0 ? worst : veto) }
      let openBeam = !(isFinished.allSatisfy { $0 } && options.earlyStopping)
      if !(improvable && openBeam && !hits.allSatisfy { $0 }) { break }
      cache.select(sources)
      let step = logits(.ids(running.map { [$0.last!] }), cache: cache, hooks: hooks)
      logitRows = lastLogits(step)
    }
    return finished[0]
  }
}
