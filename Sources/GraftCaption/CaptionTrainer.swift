import Foundation

/// How a captioner is trained. Defaults follow PLLaVA's recipe (AdamW, betas (0.9, 0.999),
/// weight decay 0.02, cosine with warm-up ratio 0.2 and a floor of 0.25 of the peak) with the
/// learning rate raised from its 2e-5 for a 7B model to 1e-3 for small decoders trained briefly.
public struct CaptionTrainingOptions: Sendable {
  /// Passes over the training clips.
  public var epochs = 10
  /// Clips per step, each with one of its reference captions drawn at random.
  public var batchSize = 8
  /// Peak learning rate.
  public var lr: Float = 1e-3
  /// Decoupled weight decay (not on biases and norms).
  public var weightDecay: Float = 0.02
  /// Share of the steps spent warming up.
  public var warmupRatio = 0.2
  /// The cosine's floor, as a share of the peak.
  public var minLRRatio: Float = 0.25
  /// Seed of the order, the frames drawn, the captions drawn and the LoRA dropout.
  public var seed: UInt64 = 0
  /// Training clips used at most (nil: all), for short runs.
  public var maxClips: Int?

  /// The defaults.
  public init() {}

  /// The options as text, as run folders record them.
  public var record: [String: String] {
    [
      "epochs": "\(epochs)", "batch_size": "\(batchSize)", "lr": "\(lr)",
      "weight_decay": "\(weightDecay)", "warmup_ratio": "\(warmupRatio)",
      "min_lr_ratio": "\(minLRRatio)", "seed": "\(seed)", "optimizer": "adamw",
      "schedule": "cosine",
    ]
  }
}

/// One epoch's record.
public struct CaptionEpoch: Codable, Sendable, Equatable {
  /// 1-based.
  public var epoch: Int
  /// Mean training loss over the epoch's steps.
  public var trainLoss: Double
  /// Mean loss over every (validation clip, reference) pair, frames by PLLaVA's eval rule;
  /// nil without validation clips.
  public var valLoss: Double?
  /// Learning rate of the epoch's last step.
  public var lr: Double
  /// Seconds the epoch took.
  public var seconds: Double

  enum CodingKeys: String, CodingKey {
    case epoch
    case trainLoss = "train_loss"
    case valLoss = "val_loss"
    case lr, seconds
  }
}

/// Trains a `PLLaVACaptioner` on a captioned clip set: training frames drawn at random, one
/// per segment (PLLaVA's training sampling), validation frames by PLLaVA's eval rule; the
/// frozen frame encoder runs without recording; AdamW with a cosine schedule over batches of
/// (video, one random reference caption); a validation loss after every epoch. With an output
/// folder, the run folder (`CaptionAdapter`) and `history.json` are rewritten after each epoch.
public final class CaptionTrainer {
  /// The model trained.
  public let captioner: PLLaVACaptioner
  /// The image backbone it sits on (recorded in the run folder).
  public let backbone: TuneBackbone
  /// The decoder (recorded in the run folder).
  public let decoder: CaptionDecoder
  /// The options.
  public let options: CaptionTrainingOptions
  /// Progress lines.
  public var log: ((String) -> Void)?

  /// A trainer of `captioner`, which was built on `backbone` and `decoder`.
  public init(
    captioner: PLLaVACaptioner, backbone: TuneBackbone, decoder: CaptionDecoder,
    options: CaptionTrainingOptions = CaptionTrainingOptions()
  ) {
    self.captioner = captioner
    self.backbone = backbone
    self.decoder = decoder
    self.options = options
  }

  /// Decodes `entries` with `sampling` (seeded per clip for random sampling).
  func frames(_ entries: [CaptionClips.Entry], sampling: (Int) -> FrameSampling) throws
    -> [VideoFrames]
  {
    try entries.enumerated().map { i, e in
      try VideoDecoding.sample(e.url, count: captioner.config.frames, sampling: sampling(i))
    }
  }

  /// Trains on `data`'s `train` split, validating on `val`; returns the epochs' records.
  /// Throws `CaptionError.noData` for a set without training clips, `VideoError` for a video
  /// that fails to decode (naming the file), and errors writing the run folder.
  @discardableResult
  public func train(on data: CaptionClips, out: URL? = nil) throws -> [CaptionEpoch] {
    var trainSet = data.entries(split: "train")
    if let n = options.maxClips { trainSet = Array(trainSet.prefix(n)) }
    guard !trainSet.isEmpty else {
      throw CaptionError(.noData, "\(data.annotations.path): no training clips with captions")
    }
    guard options.epochs >= 1, options.batchSize >= 1 else {
      throw ConfigError("epochs and batch size must be at least 1")
    }
    guard options.lr.isFinite, options.lr > 0 else {
      throw ConfigError("the learning rate must be a number > 0, not \(options.lr)")
    }
    let valSet = data.entries(split: "val")
    // The eval rule is deterministic: the validation tokens are computed once.
    let valTokens = try valSet.map { e in
      captioner.frameTokens([
        try VideoDecoding.sample(e.url, count: captioner.config.frames, sampling: .pllava)
      ])
    }
    let stepsPerEpoch = (trainSet.count + options.batchSize - 1) / options.batchSize
    let total = stepsPerEpoch * options.epochs
    let schedule = CosineSchedule(
      baseLR: options.lr, warmupSteps: Int(Double(total) * options.warmupRatio),
      totalSteps: total, minLR: options.lr * options.minLRRatio)
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: captioner.trainableParameters(), lr: options.lr,
        weightDecay: options.weightDecay))
    var generator = RandomGenerator(seed: options.seed)
    var history: [CaptionEpoch] = []
    var step = 0
    log?(
      "pllava (\(captioner.config.mode.rawValue)): \(captioner.trainableParameterCount) "
        + "trainable parameters, \(trainSet.count) training clips, \(valSet.count) validation "
        + "clips, \(total) steps")
    for epoch in 1...options.epochs {
      let started = Date()
      captioner.train()
      var order = Array(trainSet.indices)
      order.shuffle(using: &generator)
      var sum = 0.0
      var lr: Float = 0
      for start in stride(from: 0, to: order.count, by: options.batchSize) {
        let batch = order[start..<min(start + options.batchSize, order.count)].map { trainSet[$0] }
        let seeds = batch.map { _ in generator.next() }
        let clips = try frames(batch) { .random(seed: seeds[$0]) }
        let captions = batch.map {
          $0.captions[Int.random(in: 0..<$0.captions.count, using: &generator)]
        }
        optimizer.apply(schedule, step: step)
        lr = schedule.lr(at: step)
        let loss = captioner.loss(frameTokens: captioner.frameTokens(clips), captions: captions)
        // A diverged step ends the run before its NaN reaches a weight or a file; the folder
        // keeps the last good epoch.
        let value = Double(loss.scalars[0])
        guard value.isFinite else {
          throw ConfigError(
            "epoch \(epoch), step \(step): the training loss is \(value); lower the learning rate"
              + (out.map { " (\($0.path) keeps the last finished epoch, if any)" } ?? ""))
        }
        optimizer.zeroGrad()
        loss.backward()
        optimizer.step()
        sum += value
        step += 1
      }
      let valLoss = valTokens.isEmpty ? nil : validationLoss(valSet, tokens: valTokens)
      if let valLoss, !valLoss.isFinite {
        throw ConfigError(
          "epoch \(epoch): the validation loss is \(valLoss) (the weights diverged); lower the "
            + "learning rate"
            + (out.map { " (\($0.path) keeps the last finished epoch, if any)" } ?? ""))
      }
      let record = CaptionEpoch(
        epoch: epoch, trainLoss: sum / Double(stepsPerEpoch), valLoss: valLoss,
        lr: Double(lr), seconds: Date().timeIntervalSince(started))
      history.append(record)
      log?(
        "epoch \(epoch)/\(options.epochs): train loss "
          + String(format: "%.4f", record.trainLoss)
          + (valLoss.map { String(format: ", val loss %.4f", $0) } ?? "")
          + String(format: ", %.1f s", record.seconds))
      if let out { try write(out, history: history) }
    }
    captioner.eval()
    return history
  }

  /// The mean loss over every (clip, reference caption) pair, in evaluation mode.
  public func validationLoss(_ entries: [CaptionClips.Entry], tokens: [Tensor]) -> Double {
    captioner.eval()
    defer { captioner.train() }
    var sum = 0.0
    var count = 0
    withNoGrad {
      for (e, t) in zip(entries, tokens) {
        let repeated = Tensor.concat(Array(repeating: t, count: e.captions.count), axis: 0)
        let loss = captioner.loss(frameTokens: repeated, captions: e.captions)
        // The loss is a mean over the batch's tokens: weigh it back by its token count.
        let n = e.captions.map { captioner.captionTokens($0).count }.reduce(0, +)
        sum += Double(loss.scalars[0]) * Double(n)
        count += n
      }
    }
    return sum / Double(max(count, 1))
  }

  /// The run folder and `history.json`, each written atomically.
  func write(_ out: URL, history: [CaptionEpoch]) throws {
    try CaptionAdapter.save(
      captioner, backbone: backbone, decoder: decoder, training: options.record, to: out)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(
      encoder.encode(history) + Data("\n".utf8), to: out.appendingPathComponent("history.json"))
  }
}
