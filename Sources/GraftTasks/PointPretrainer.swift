import Foundation

/// Settings of `graft pretrain --modality points`: the Point-MAE to build and its masked
/// autoencoding recipe.
///
/// The defaults are the bundled `point-mae-furniture` recipe: Point-MAE's grouping (1,024 points,
/// 64 groups of 32) and mask (60 % of the groups, at random), a narrower and shallower model than
/// Point-MAE-small (width 128, 6 blocks of 4 heads, a 2-block decoder) so the weights stay under
/// 8 MB and a run fits 90 minutes on two cores, and the official AdamW recipe (lr 1e-3, weight
/// decay 0.05, cosine after a linear warm-up). Every epoch samples each training mesh's surface
/// afresh (2,048 area-weighted points, then Point-MAE's training input: normalised, 1,024 of them
/// by farthest point sampling of a shuffled pool, scaled and translated).
public struct PointPretrainConfig: Sendable, Equatable, OptionTable {
  /// Token width D.
  public var transDim = 128
  /// Encoder blocks.
  public var depth = 6
  /// Attention heads of the encoder.
  public var numHeads = 4
  /// Points per group.
  public var groupSize = 32
  /// Groups per cloud.
  public var numGroup = 64
  /// Points per cloud given to the model.
  public var npoints = 1024
  /// Decoder blocks.
  public var decoderDepth = 2
  /// Attention heads of the decoder.
  public var decoderHeads = 4
  /// Share of the groups hidden from the encoder.
  public var maskRatio: Float = 0.6
  /// Points sampled from each mesh's surface per epoch.
  public var surfacePoints = 2048
  /// Epochs over the training meshes (60: what fitted the 90-minute budget on two shared cores;
  /// the official recipe runs 300 over ShapeNet).
  public var epochs = 60
  /// Clouds per step.
  public var batchSize = 32
  /// Peak learning rate.
  public var lr: Float = 1e-3
  /// Learning rate at the end of the cosine.
  public var minLR: Float = 1e-6
  /// Decoupled weight decay (not on biases, norms and tokens).
  public var weightDecay: Float = 0.05
  /// Linear warm-up, epochs (the official 10 of 300, scaled to the shorter run).
  public var warmupEpochs = 5
  /// Seed of the initialisation, the sampling, the augmentation and the masks.
  public var seed: UInt64 = 0
  /// Background sampling threads.
  public var workers = 1

  /// The defaults.
  public init() {}

  /// Every key `--set` takes.
  public static let options: [ConfigOption<PointPretrainConfig>] = [
    .int("model.trans_dim", \.transDim, in: 1...4096, "token width D"),
    .int("model.depth", \.depth, in: 1...96, "encoder blocks"),
    .int("model.num_heads", \.numHeads, in: 1...128, "encoder attention heads"),
    .int("model.group_size", \.groupSize, in: 1...4096, "points per group"),
    .int("model.num_group", \.numGroup, in: 2...8192, "groups per cloud"),
    .int("model.npoints", \.npoints, in: 2...1_000_000, "points per cloud given to the model"),
    .int("decoder.depth", \.decoderDepth, in: 1...96, "decoder blocks"),
    .int("decoder.num_heads", \.decoderHeads, in: 1...128, "decoder attention heads"),
    .float("mask.ratio", \.maskRatio, in: 0.01...0.99, "share of the groups hidden"),
    .int(
      "data.surface_points", \.surfacePoints, in: 2...1_000_000,
      "points sampled per mesh per epoch (at least model.npoints)"),
    .int("train.epochs", \.epochs, in: 1...100_000, "epochs over the training meshes"),
    .int("train.batch_size", \.batchSize, in: 1...4096, "clouds per step"),
    .int("train.warmup_epochs", \.warmupEpochs, atLeast: 0, "linear warm-up, epochs"),
    .int("train.workers", \.workers, atLeast: 0, "background sampling threads"),
    ConfigOption("optim.lr", \.lr, "peak learning rate", expectation: "a number > 0") { $0 > 0 },
    ConfigOption("optim.min_lr", \.minLR, "floor of the cosine", expectation: "a number ≥ 0") {
      $0 >= 0
    },
    ConfigOption(
      "optim.weight_decay", \.weightDecay, "decoupled weight decay", expectation: "a number ≥ 0"
    ) { $0 >= 0 },
    ConfigOption("seed", \.seed, "seed of everything random"),
  ]

  /// The encoder's configuration (no head).
  public var encoderConfig: PointMAEConfig {
    PointMAEConfig(
      transDim: transDim, depth: depth, numHeads: numHeads, groupSize: groupSize,
      numGroup: numGroup, numClasses: 0, npoints: npoints)
  }

  /// Every setting by key, for the run's record.
  public var json: [String: String] {
    Dictionary(uniqueKeysWithValues: optionValues.map { ($0.key, $0.value) })
  }
}

/// Meshes with labels, sampled into clouds by the loader's transform (every epoch afresh).
public struct MeshDataset: Dataset {
  /// The meshes.
  public let meshes: [TriangleMesh]
  /// Their labels.
  public let labels: [Int]
  /// Class names.
  public let classNames: [String]

  /// Wraps meshes and labels.
  public init(meshes: [TriangleMesh], labels: [Int], classNames: [String]) {
    self.meshes = meshes
    self.labels = labels
    self.classNames = classNames
  }

  /// Number of meshes.
  public var count: Int { meshes.count }
  /// Mesh `index`.
  public func sample(at index: Int) throws -> TriangleMesh { meshes[index] }
}

/// Point-MAE's masked-autoencoder pretraining on meshes (`graft pretrain --modality points`):
/// every epoch each training mesh's surface is sampled afresh and augmented, the model rebuilds
/// the hidden groups, and the Chamfer-L2 loss on fixed samples of the validation meshes (fixed
/// masks) is reported. The encoder is written as a Point-MAE model folder any method attaches
/// to.
public final class PointPretrainer {
  /// The settings.
  public let config: PointPretrainConfig
  /// The model being pretrained.
  public let model: PointMAEPretraining

  /// Builds the model from `config` with its seed.
  public init(config: PointPretrainConfig) throws {
    self.config = config
    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    let encoderConfig = config.encoderConfig
    do {
      try encoderConfig.validate()
    } catch let e as PointMAEConfigError {
      throw ConfigError(e.message)
    }
    guard config.surfacePoints >= config.npoints else {
      throw ConfigError(
        "data.surface_points (\(config.surfacePoints)) is below model.npoints "
          + "(\(config.npoints)): the model's points are taken from the surface points")
    }
    model = try PointMAEPretraining(
      config: encoderConfig, decoderDepth: config.decoderDepth,
      decoderHeads: config.decoderHeads, maskRatio: config.maskRatio, generator: &generator)
  }

  /// A cloud of `mesh` for training: its surface sampled from `generator`, then Point-MAE's
  /// training input.
  private func trainingTransform() -> SampleTransform<TriangleMesh> {
    let input = PointTransforms.training(points: config.npoints)
    let count = config.surfacePoints
    return { mesh, generator in
      let cloud = try mesh.sampleSurface(count: count, seed: generator.next())
      return try input(cloud, &generator)
    }
  }

  /// Trains on `train`, reports the validation loss each epoch on `validation`, and writes the
  /// encoder's model folder to `out`. With `resume`, continues from `out/checkpoint` (same
  /// settings required). With `stopAfter`, returns nil after that many epochs of this call.
  @discardableResult
  public func run(
    train: MeshDataset, validation: MeshDataset, out: URL, resume: Bool = false,
    stopAfter: Int? = nil, progress: ProgressReporter? = nil
  ) throws -> (validationLoss: Double, seconds: Double)? {
    guard train.count >= 1, validation.count >= 1 else {
      throw ConfigError("pretraining needs training and validation meshes")
    }
    let checkpoints = out.appendingPathComponent("checkpoint")
    let store = CheckpointStore(folder: checkpoints)
    // Checked before anything is created, so a wrong --out is left as it was.
    if resume && !store.hasCommittedEpoch {
      throw ConfigError(
        "\(out.path): nothing to resume (no completed epoch of graft pretrain in checkpoint/)")
    }
    let lock = try RunFolder.Lock(out, what: "a graft pretrain run")
    defer { lock.release() }
    AtomicFile.removeTemporaryFiles(in: out)
    try store.removeLeftovers()
    let settings = try jsonLine(config.json)
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: model.namedParameters(), lr: config.lr, weightDecay: config.weightDecay))
    var startEpoch = 0
    var metricLines: [String] = []
    var seconds = 0.0
    var lastValidation = 0.0
    if resume, let files = try store.latest()?.folder {
      let resumed = try PretrainResume(
        folder: files, settings: settings, model: model, optimizer: optimizer, out: out)
      (startEpoch, metricLines, seconds) = (resumed.epoch, resumed.metricLines, resumed.seconds)
      lastValidation = resumed.state["validation_loss"] as? Double ?? 0
      progress?.log("resuming after epoch \(startEpoch) of \(config.epochs)")
    }
    let loader = DataLoader(
      dataset: train, batchSize: config.batchSize, shuffle: true, seed: config.seed,
      dropLast: train.count >= 2 * config.batchSize, workers: config.workers,
      transform: trainingTransform())
    let steps = loader.batchCount
    let schedule = CosineSchedule(
      baseLR: config.lr, warmupSteps: min(config.warmupEpochs, config.epochs) * steps,
      totalSteps: config.epochs * steps, minLR: config.minLR)
    let validationClouds = try fixedClouds(validation)

    for (index, epoch) in (startEpoch..<config.epochs).enumerated() {
      if let stopAfter, index >= stopAfter { return nil }
      let started = Date()
      progress?.beginPhase("epoch \(epoch + 1)/\(config.epochs)", steps: steps)
      model.train()
      var lossSum = 0.0
      var seen = 0
      var step = epoch * steps
      let batches = loader.batches(epoch: epoch)
      while let batch = try batches.next() {
        optimizer.learningRateScale = schedule.factor(at: step)
        var masks = RandomGenerator(seed: SeedMix.mix(config.seed, 0x6D61_736B, UInt64(step)))
        let loss = model.loss(batch.inputs, generator: &masks)
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
        let value = Double(loss.item)
        guard value.isFinite else {
          throw ConfigError(
            "epoch \(epoch + 1), step \(step): the loss is \(value); lower optim.lr")
        }
        lossSum += value * Double(batch.labels.count)
        seen += batch.labels.count
        step += 1
        progress?.step(samples: batch.labels.count, loss: lossSum / Double(seen))
      }
      batches.close()
      let trainTime = Date().timeIntervalSince(started)
      lastValidation = validationLoss(validationClouds)
      seconds += Date().timeIntervalSince(started)
      let line: [String: Any] = [
        "epoch": epoch + 1, "train_loss": lossSum / Double(max(seen, 1)),
        "validation_loss": lastValidation, "train_seconds": trainTime,
        "clouds_per_second": Double(seen) / max(trainTime, 1e-9),
      ]
      metricLines.append(try jsonLine(line))
      progress?.log(
        String(
          format: "epoch %d/%d  train chamfer-L2 %.5f  validation %.5f  %.1f clouds/s",
          epoch + 1, config.epochs, lossSum / Double(max(seen, 1)), lastValidation,
          Double(seen) / max(trainTime, 1e-9)))
      // The epoch's weights, optimizer and state, committed as one unit (`CheckpointStore`).
      try PretrainResume.commit(
        epoch: epoch + 1, metricLines: metricLines, settings: settings, seconds: seconds,
        figures: ["validation_loss": lastValidation], model: model, optimizer: optimizer,
        store: store, out: out)
    }
    progress?.finish()

    // The model folder: the encoder alone, as any Point-MAE folder, and a record of the run.
    model.encoder.eval()
    try model.encoder.save(folder: out)
    let record: [String: Any] = [
      "settings": config.json, "validation_loss": lastValidation, "seconds": seconds,
      "train_meshes": train.count, "validation_meshes": validation.count,
      "peak_rss_bytes": peakResidentBytes(), "cpu_seconds": processCPUSeconds(),
      "graft_version": GraftVersion.string,
    ]
    let recordData = try JSONSerialization.data(
      withJSONObject: record, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(
      recordData + Data("\n".utf8), to: out.appendingPathComponent("pretrain.json"))
    return (lastValidation, seconds)
  }

  /// One fixed cloud per validation mesh (sampled with a seed from its index, evaluation input).
  private func fixedClouds(_ validation: MeshDataset) throws -> Tensor {
    let input = PointTransforms.evaluation(points: config.npoints)
    var rows: [Tensor] = []
    for i in 0..<validation.count {
      let cloud = try validation.meshes[i].sampleSurface(
        count: config.surfacePoints, seed: SeedMix.mix(config.seed, 0x7661_6C, UInt64(i)))
      var unused = RandomGenerator(seed: 0)
      rows.append(try input(cloud, &unused).unsqueezed(0))
    }
    return Tensor.concat(rows, axis: 0)
  }

  /// The mean Chamfer-L2 loss over `clouds` [V, N, 3] with fixed masks, in evaluation mode.
  private func validationLoss(_ clouds: Tensor) -> Double {
    model.eval()
    var masks = RandomGenerator(seed: SeedMix.mix(config.seed, 0x7661_6C6D))
    var total = 0.0
    var start = 0
    let count = clouds.shape[0]
    while start < count {
      let n = min(config.batchSize, count - start)
      let batch = clouds.narrow(0, start: start, length: n)
      total += Double(withNoGrad { model.loss(batch, generator: &masks) }.item) * Double(n)
      start += n
    }
    return total / Double(max(count, 1))
  }
}
