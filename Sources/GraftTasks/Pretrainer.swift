import Foundation

/// Settings of `graft pretrain`: the ViT to build and the supervised recipe.
///
/// The defaults are the bundled `vit-nano-fmnist` recipe: a ViT of width 128, depth 6, 4 heads,
/// 28×28 input in 4×4 patches (49 patches and a class token), trained from scratch on the full
/// Fashion-MNIST (28×28 grey replicated to RGB, at its own size) with AdamW, a cosine schedule
/// after a linear warm-up, label smoothing 0.1, and mild random resized crops (scale 0.75–1)
/// with horizontal flips.
public struct PretrainConfig: Sendable, Equatable, OptionTable {
  /// The timm entrypoint the folder names; `model_args` override its sizes.
  public var architecture = "vit_tiny_patch16_224"
  /// Input side, pixels.
  public var imageSize = 28
  /// Patch side, pixels.
  public var patchSize = 4
  /// Token width D.
  public var embedDim = 128
  /// Blocks.
  public var depth = 6
  /// Attention heads.
  public var numHeads = 4
  /// Epochs over the training set.
  public var epochs = 30
  /// Images per step.
  public var batchSize = 128
  /// Peak learning rate (AdamW).
  public var lr: Float = 1e-3
  /// Learning rate at the end of the cosine.
  public var minLR: Float = 1e-5
  /// Decoupled weight decay (not on biases, norms, tokens and position embeddings).
  public var weightDecay: Float = 0.05
  /// Linear warm-up, epochs.
  public var warmupEpochs = 2
  /// Label smoothing of the cross-entropy.
  public var labelSmoothing: Float = 0.1
  /// Smallest area share of the random resized crop.
  public var cropScale = 0.75
  /// Seed of the initialisation, the shuffling and the augmentation.
  public var seed: UInt64 = 0
  /// Background decoding threads.
  public var workers = 1
  /// Training images used (0: all), for quick runs and tests.
  public var trainSamples = 0
  /// Test images evaluated each epoch (0: all).
  public var testSamples = 0
  /// Per-channel mean of the input normalisation (Fashion-MNIST's pixel mean).
  public var mean = [0.2860, 0.2860, 0.2860]
  /// Per-channel std of the input normalisation (Fashion-MNIST's pixel std).
  public var std = [0.3530, 0.3530, 0.3530]

  /// The defaults.
  public init() {}

  /// The ViT these settings build, with a head of `classes` classes.
  public func vitConfig(classes: Int) throws -> ViTConfig {
    var c = ViTConfig(
      imgSize: imageSize, patchSize: patchSize, embedDim: embedDim, depth: depth,
      numHeads: numHeads, numClasses: classes)
    c.globalPool = .token
    try c.validate()
    return c
  }

  /// Every key `--set` takes, declared once with its help.
  public static let options: [ConfigOption<PretrainConfig>] = [
    .int("model.image_size", \.imageSize, atLeast: 1, "input side, pixels"),
    .int("model.patch_size", \.patchSize, atLeast: 1, "patch side, pixels"),
    .int("model.embed_dim", \.embedDim, atLeast: 1, "token width D"),
    .int("model.depth", \.depth, atLeast: 1, "blocks"),
    .int("model.num_heads", \.numHeads, atLeast: 1, "attention heads"),
    .int("train.epochs", \.epochs, atLeast: 1, "epochs over the training set"),
    .int("train.batch_size", \.batchSize, atLeast: 1, "images per step"),
    .int("train.warmup_epochs", \.warmupEpochs, atLeast: 0, "linear warm-up, epochs"),
    nonNegative("train.label_smoothing", \.labelSmoothing, "label smoothing of the loss"),
    ConfigOption(
      "train.crop_scale", \.cropScale, "smallest area share of the random resized crop",
      expectation: "a number in 0...1", valid: { $0 >= 0 && $0 <= 1 }),
    .int("train.samples", \.trainSamples, atLeast: 0, "training images used (0: all)"),
    .int("train.workers", \.workers, atLeast: 0, "background decoding threads"),
    .int("eval.samples", \.testSamples, atLeast: 0, "test images evaluated (0: all)"),
    nonNegative("optim.lr", \.lr, "peak learning rate (AdamW)"),
    nonNegative("optim.min_lr", \.minLR, "learning rate at the end of the cosine"),
    nonNegative("optim.weight_decay", \.weightDecay, "decoupled weight decay"),
    ConfigOption("seed", \.seed, "seed of the initialisation, shuffling and augmentation"),
  ]

  /// A non-negative real setting.
  private static func nonNegative(
    _ key: String, _ path: WritableKeyPath<PretrainConfig, Float>, _ help: String
  ) -> ConfigOption<PretrainConfig> {
    ConfigOption(key, path, help, expectation: "a number ≥ 0") { $0 >= 0 }
  }

  /// Every key `set` takes.
  public static var keys: [String] { options.map(\.key) }

  /// The settings as a JSON object (recorded in the model card and the checkpoint state).
  public var json: [String: Any] {
    [
      "architecture": architecture, "image_size": imageSize, "patch_size": patchSize,
      "embed_dim": embedDim, "depth": depth, "num_heads": numHeads, "epochs": epochs,
      "batch_size": batchSize, "lr": Double(lr), "min_lr": Double(minLR),
      "weight_decay": Double(weightDecay), "warmup_epochs": warmupEpochs,
      "label_smoothing": Double(labelSmoothing), "crop_scale": cropScale, "seed": Int(seed),
      "train_samples": trainSamples, "test_samples": testSamples, "mean": mean, "std": std,
    ]
  }
}

/// The class names of Fashion-MNIST, in label order.
public let fashionMNISTClassNames = [
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot",
]

/// Supervised pretraining of a ViT from scratch, written as a timm model folder.
///
/// The folder gets `config.json` (timm's hub layout: `architecture`, `num_classes`,
/// `model_args` with the sizes, `pretrained_cfg` with the input size, mean, std, crop and
/// `label_names`), `model.safetensors` (timm names, the final epoch's weights),
/// `metrics.jsonl` (one object per epoch: loss, train and test top-1, seconds) and
/// `pretrain.json` (settings, test top-1, wall time). `checkpoint/epoch-NNNNNN/` holds the last
/// epoch's weights, optimizer state and progress, committed as one unit after each epoch
/// (`CheckpointStore`), so `resume` continues an interrupted run to the same result. The test split is evaluated every epoch
/// for the curve; it chooses nothing (the final epoch's weights are the model).
public final class Pretrainer {
  /// The settings.
  public let config: PretrainConfig
  /// The network being trained.
  public let model: VisionTransformer
  /// Class names of the head.
  public let classNames: [String]

  /// A fresh model (timm's initialisation, seeded) for `classNames`.
  public init(config: PretrainConfig, classNames: [String]) throws {
    self.config = config
    self.classNames = classNames
    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    model = try VisionTransformer(
      config: config.vitConfig(classes: classNames.count), generator: &generator)
  }

  /// The eval preprocessing the folder records: resize to the input size (bilinear, no crop),
  /// normalise with the configured mean and std.
  public var preprocessing: ImagePreprocessConfig {
    ImagePreprocessConfig(
      inputSize: [3, config.imageSize, config.imageSize], interpolation: .bilinear, cropPct: 1,
      mean: config.mean, std: config.std)
  }

  /// timm's `config.json` for the folder.
  public func hubConfig() -> [String: Any] {
    let p = preprocessing
    return [
      "architecture": config.architecture, "num_classes": classNames.count,
      "num_features": config.embedDim, "global_pool": "token",
      "model_args": [
        "img_size": config.imageSize, "patch_size": config.patchSize,
        "embed_dim": config.embedDim, "depth": config.depth, "num_heads": config.numHeads,
        "num_classes": classNames.count, "global_pool": "token",
      ],
      "pretrained_cfg": [
        "tag": "graft_fmnist", "custom_load": false,
        "input_size": p.inputSize, "fixed_input_size": true, "interpolation": "bilinear",
        "crop_pct": 1.0, "crop_mode": "center", "mean": p.mean, "std": p.std,
        "num_classes": classNames.count, "pool_size": NSNull(), "first_conv": "patch_embed.proj",
        "classifier": "head", "label_names": classNames,
        "license": "mit", "description": "Graft vit-nano-fmnist: trained on Fashion-MNIST",
      ] as [String: Any],
    ]
  }

  /// Trains on `train`, reports top-1 on `test` each epoch, and writes the model folder `out`.
  /// With `resume`, continues from `out/checkpoint` (same settings required). With
  /// `stopAfter`, returns nil after that many epochs of this call, as if interrupted (tests).
  @discardableResult
  public func run(
    train: any Dataset<RGBImage>, test: any Dataset<RGBImage>, out: URL, resume: Bool = false,
    stopAfter: Int? = nil, progress: ProgressReporter? = nil
  ) throws -> (testTop1: Double, seconds: Double)? {
    guard train.classCount == classNames.count, test.classCount == classNames.count else {
      throw ConfigError(
        "the data has \(train.classCount) classes but the model was built for \(classNames.count)")
    }
    let checkpoints = out.appendingPathComponent("checkpoint")
    let store = CheckpointStore(folder: checkpoints)
    // Checked before anything is created, so a wrong --out is left as it was.
    if resume && !Pretrainer.holdsRun(out) {
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
    var lastTop1 = 0.0
    if resume {
      let resumed = try PretrainResume(
        folder: try store.latest()?.folder ?? checkpoints, settings: settings, model: model,
        optimizer: optimizer, out: out)
      (startEpoch, metricLines, seconds) = (resumed.epoch, resumed.metricLines, resumed.seconds)
      lastTop1 = resumed.state["test_top1"] as? Double ?? 0
      progress?.log("resuming after epoch \(startEpoch) of \(config.epochs)")
    }

    var trainSet: any Dataset<RGBImage> = train
    if config.trainSamples > 0 && config.trainSamples < train.count {
      trainSet = try Subset(train, indices: Array(0..<config.trainSamples))
    }
    var testSet: any Dataset<RGBImage> = test
    if config.testSamples > 0 && config.testSamples < test.count {
      testSet = try Subset(test, indices: Array(0..<config.testSamples))
    }
    let augment = TrainTransform(
      config: preprocessing, scale: config.cropScale...1, ratio: 0.9...(1 / 0.9),
      interpolation: .bilinear)
    let loader = DataLoader(
      dataset: trainSet, batchSize: config.batchSize, shuffle: true, seed: config.seed,
      dropLast: trainSet.count >= 2 * config.batchSize, workers: config.workers,
      transform: { image, generator in augment(image, generator: &generator) })
    let eval = EvalTransform(config: preprocessing)
    let steps = loader.batchCount
    let schedule = CosineSchedule(
      baseLR: config.lr, warmupSteps: min(config.warmupEpochs, config.epochs) * steps,
      totalSteps: config.epochs * steps, minLR: config.minLR)

    for (index, epoch) in (startEpoch..<config.epochs).enumerated() {
      if let stopAfter, index >= stopAfter { return nil }
      let started = Date()
      progress?.beginPhase("epoch \(epoch + 1)/\(config.epochs)", steps: steps)
      model.train()
      var lossSum = 0.0
      var correct = 0
      var seen = 0
      var step = epoch * steps
      let batches = loader.batches(epoch: epoch)
      while let batch = try batches.next() {
        optimizer.learningRateScale = schedule.factor(at: step)
        let logits = model(batch.inputs)
        let loss = logits.crossEntropy(
          targets: batch.labels, labelSmoothing: config.labelSmoothing)
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
        let value = Double(loss.item)
        guard value.isFinite else {
          throw ConfigError(
            "epoch \(epoch + 1), step \(step): the loss is \(value); lower optim.lr")
        }
        lossSum += value * Double(batch.labels.count)
        for (p, l) in zip(logits.detached().argmax(axis: 1), batch.labels) where p == l {
          correct += 1
        }
        seen += batch.labels.count
        step += 1
        progress?.step(samples: batch.labels.count, loss: lossSum / Double(seen))
      }
      batches.close()
      let trainTime = Date().timeIntervalSince(started)
      lastTop1 = try testAccuracy(testSet, transform: eval)
      seconds += Date().timeIntervalSince(started)
      let line: [String: Any] = [
        "epoch": epoch + 1, "train_loss": lossSum / Double(max(seen, 1)),
        "train_top1": Double(correct) / Double(max(seen, 1)), "test_top1": lastTop1,
        "train_seconds": trainTime, "images_per_second": Double(seen) / max(trainTime, 1e-9),
      ]
      metricLines.append(try jsonLine(line))
      progress?.log(
        String(
          format: "epoch %d/%d  train loss %.4f top-1 %.4f  test top-1 %.4f  %.0f img/s",
          epoch + 1, config.epochs, lossSum / Double(max(seen, 1)),
          Double(correct) / Double(max(seen, 1)), lastTop1, Double(seen) / max(trainTime, 1e-9)))
      // The epoch's weights, optimizer and state, committed as one unit (`CheckpointStore`).
      try PretrainResume.commit(
        epoch: epoch + 1, metricLines: metricLines, settings: settings, seconds: seconds,
        figures: ["test_top1": lastTop1], model: model, optimizer: optimizer,
        store: store, out: out)
      // A run resumed from the flat layout of before `CheckpointStore` no longer needs its files.
      for name in ["state.json", "model.safetensors", "optimizer.safetensors"] {
        try? FileManager.default.removeItem(at: checkpoints.appendingPathComponent(name))
      }
    }
    progress?.finish()

    // The model folder: weights, timm config, a record of the run.
    try Safetensors.write(
      model.stateDict(), metadata: ["format": "pt"],
      to: out.appendingPathComponent("model.safetensors"))
    let hub = try JSONSerialization.data(
      withJSONObject: hubConfig(), options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(hub + Data("\n".utf8), to: out.appendingPathComponent("config.json"))
    let record: [String: Any] = [
      "settings": config.json, "test_top1": lastTop1, "seconds": seconds,
      "train_images": trainSet.count, "test_images": testSet.count,
      "peak_rss_bytes": peakResidentBytes(), "cpu_seconds": processCPUSeconds(),
      "graft_version": GraftVersion.string,
    ]
    let recordData = try JSONSerialization.data(
      withJSONObject: record, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(
      recordData + Data("\n".utf8), to: out.appendingPathComponent("pretrain.json"))
    return (lastTop1, seconds)
  }

  /// Whether `out` holds a pretraining run with at least one completed epoch (in epoch folders,
  /// or in the single `checkpoint/state.json` of earlier versions).
  public static func holdsRun(_ out: URL) -> Bool {
    let checkpoints = out.appendingPathComponent("checkpoint")
    return CheckpointStore(folder: checkpoints).hasCommittedEpoch
      || FileManager.default.fileExists(
        atPath: checkpoints.appendingPathComponent("state.json").path)
  }

  /// Top-1 of the model on `dataset` with the eval transform.
  private func testAccuracy(_ dataset: any Dataset<RGBImage>, transform: EvalTransform) throws
    -> Double
  {
    model.eval()
    let loader = DataLoader(
      dataset: dataset, batchSize: 256, workers: config.workers,
      transform: { image, _ in transform(image) })
    var correct = 0
    var seen = 0
    let batches = loader.batches(epoch: 0)
    defer { batches.close() }
    while let batch = try batches.next() {
      let logits = withNoGrad { model(batch.inputs) }
      for (p, l) in zip(logits.argmax(axis: 1), batch.labels) where p == l { correct += 1 }
      seen += batch.labels.count
    }
    return Double(correct) / Double(max(seen, 1))
  }
}
