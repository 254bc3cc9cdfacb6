import Foundation

/// What a finished run reports (`summary.json`).
public struct TuneSummary {
  /// The method.
  public var method: String
  /// The epoch (1-based) whose validation top-1 was best; its tensors are the adapter.
  public var bestEpoch: Int
  /// Validation results of the best epoch.
  public var validation: EvaluationResult
  /// Test results of the best epoch's adapter.
  public var test: EvaluationResult
  /// Trainable elements.
  public var trainableParameters: Int
  /// Backbone elements (its own head excluded).
  public var backboneParameters: Int
  /// Training wall time over all epochs (summed across resumed sessions), seconds.
  public var trainSeconds: Double
  /// Wall time of the whole run (training, evaluation, checkpoints; summed across resumed
  /// sessions), seconds.
  public var wallSeconds: Double
  /// Training images per second.
  public var imagesPerSecond: Double
  /// Peak resident memory of the process that finished the run, bytes.
  public var peakRSSBytes: Int

  /// As written to `summary.json`.
  public var json: [String: Any] {
    [
      "method": method, "best_epoch": bestEpoch,
      "validation": validation.json(confusion: true), "test": test.json(confusion: true),
      "trainable_parameters": trainableParameters, "backbone_parameters": backboneParameters,
      "trainable_share": Double(trainableParameters) / Double(max(backboneParameters, 1)),
      "train_seconds": trainSeconds, "wall_seconds": wallSeconds,
      "train_images_per_second": imagesPerSecond,
      "peak_rss_bytes": peakRSSBytes,
    ]
  }
}

/// JSON text of `object`, keys sorted, on one line.
func jsonLine(_ object: Any) throws -> String {
  String(
    decoding: try JSONSerialization.data(
      withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
}

/// Trains one method on one backbone and task, writing the run folder:
///
/// - `tune_config.yaml`: the resolved configuration; `run.json`: backbone and data references;
/// - `adapter_config.json`, `adapter_model.safetensors`: the best epoch's trainable tensors;
/// - `metrics.jsonl`: one object per epoch (losses, accuracies, learning rate, seconds);
/// - `summary.json`: the best epoch's validation and the test results, parameter counts, wall
///   time, peak RSS, images/s; `test_logits.safetensors`: the test split's logits;
/// - `report.html`: the run's charts (see `ReportWriter`);
/// - `checkpoint/`: the last epoch's tensors, the optimizer state and `state.json`, written
///   atomically after each epoch so `run(resume: true)` continues an interrupted run and ends
///   with the same result as an uninterrupted one.
///
/// Determinism: one seed; the method is built from `(seed, "init")`, epoch `e` shuffles by
/// `(seed, e)` and its dropout draws from `(seed, "dropout", e)`, so nothing random needs to be
/// saved besides the optimizer state.
public final class Trainer {
  /// The backbone.
  public let backbone: TuneBackbone
  /// The resolved configuration.
  public let config: TuneConfig
  /// The method being trained.
  public let method: TuningMethod
  /// Class names of the head.
  public let classNames: [String]

  /// Builds the method on `backbone` for `classNames.count` classes. Unknown methods and
  /// options throw.
  public init(backbone: TuneBackbone, config: TuneConfig, classNames: [String]) throws {
    self.backbone = backbone
    self.config = config
    self.classNames = classNames
    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    method = try MethodRegistry.make(
      config.method, backbone: backbone.model, classes: classNames.count,
      options: config.methodOptions, generator: &generator)
    method.backboneTrainMode = config.backboneTrainMode
  }

  /// The `--dry-run --json` report: method, trainable and backbone element counts, and every
  /// trainable tensor's element count by checkpoint name.
  public func dryRunReport() -> [String: Any] {
    var tensors: [String: Int] = [:]
    for (name, t) in method.trainableTensors() { tensors[name] = t.count }
    return [
      "method": config.method, "trainable_parameters": method.trainableCount,
      "backbone_parameters": method.backboneCount, "tensors": tensors,
    ]
  }

  /// The `adapter_config.json` of this run.
  public func adapterConfig() throws -> AdapterConfig {
    AdapterConfig(
      method: config.method, formatVersion: AdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: backbone.reference,
      baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
      numClasses: classNames.count, classNames: classNames,
      hyperparameters: method.options.values, preprocessing: backbone.preprocessing,
      evalBatchSize: config.evalBatchSize)
  }

  private func makeOptimizer() -> any Optimizer {
    Trainer.makeOptimizer(for: method, config: config)
  }

  /// The optimizer `config` names over `method`'s trainable tensors: decay / no-decay groups at
  /// `config.lr`, SGD with momentum or AdamW (shared with `TuneBenchmark`).
  static func makeOptimizer(for method: TuningMethod, config: TuneConfig) -> any Optimizer {
    let groups = ParameterGroup.defaultGroups(
      named: method.trainableTensors(), lr: config.lr, weightDecay: config.weightDecay)
    if config.optimizer == "sgd" { return SGD(groups: groups, momentum: config.momentum) }
    return AdamW(groups: groups)
  }

  private func factor(step: Int, stepsPerEpoch: Int) -> Float {
    let warm = config.warmupEpochs * stepsPerEpoch
    let total = config.epochs * stepsPerEpoch
    if config.schedule == "constant" {
      return step < warm ? Float(step) / Float(warm) : 1
    }
    return CosineSchedule(
      baseLR: config.lr, warmupSteps: min(warm, total), totalSteps: total, minLR: config.minLR
    ).factor(at: step)
  }

  /// Trains in `folder` (created if needed) and returns the summary; with `resume`, continues
  /// from the folder's last completed epoch (its configuration must be this one). With
  /// `stopAfter`, returns nil after that many epochs of this call, as if interrupted (tests).
  public func run(
    data: TuneData, folder: URL, dataReference: String = "", resume: Bool = false,
    stopAfter: Int? = nil, log: (String) -> Void = { _ in }
  ) throws -> TuneSummary? {
    guard data.classNames.count == classNames.count else {
      throw TuningError(
        "the data has \(data.classNames.count) classes but the head was built for "
          + "\(classNames.count)")
    }
    let fm = FileManager.default
    let checkpoints = folder.appendingPathComponent("checkpoint")
    try fm.createDirectory(at: checkpoints, withIntermediateDirectories: true)
    let yaml = try config.yaml()
    let configURL = folder.appendingPathComponent("tune_config.yaml")
    let stateURL = checkpoints.appendingPathComponent("state.json")
    let optimizer = makeOptimizer()

    // Progress carried across sessions.
    var startEpoch = 0
    var bestEpoch = 0
    var bestTop1 = -1.0
    var metricLines: [String] = []
    var trainSeconds = 0.0
    var trainImages = 0
    let callStarted = Date()
    var earlierWall = 0.0
    if resume {
      guard fm.fileExists(atPath: stateURL.path) else {
        throw TuningError("\(folder.path): nothing to resume (no checkpoint/state.json)")
      }
      let stored = try String(contentsOf: configURL, encoding: .utf8)
      guard stored == yaml else {
        throw TuningError("\(configURL.path): the run's configuration differs from this one")
      }
      let adapter = try AdapterCheckpoint.readConfig(folder)
      guard adapter.baseModelHash == backbone.weightsHash else {
        throw TuningError(
          "\(folder.path): the run used another backbone (\(adapter.baseModelHash))")
      }
      guard
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: stateURL))
          as? [String: Any],
        let epoch = state["epoch"] as? Int, let best = state["best_epoch"] as? Int,
        let top1 = state["best_val_top1"] as? Double, let lines = state["metrics"] as? [String],
        let seconds = state["train_seconds"] as? Double, let images = state["train_images"] as? Int
      else { throw TuningError("\(stateURL.path): unreadable state") }
      (startEpoch, bestEpoch, bestTop1, metricLines) = (epoch, best, top1, lines)
      (trainSeconds, trainImages) = (seconds, images)
      earlierWall = state["wall_seconds"] as? Double ?? 0
      let last = checkpoints.appendingPathComponent("last.safetensors")
      try method.loadTrainableState(
        SafetensorsFile(contentsOf: last).tensors(), source: last.path)
      try optimizer.loadStateDict(
        SafetensorsFile(contentsOf: checkpoints.appendingPathComponent("optimizer.safetensors"))
          .tensors())
      log("resuming after epoch \(startEpoch) of \(config.epochs)")
    } else {
      try AtomicFile.write(Data(yaml.utf8), to: configURL)
      let run: [String: Any] = [
        "backbone": backbone.reference, "data": dataReference, "method": config.method,
      ]
      try AtomicFile.write(
        Data((try jsonLine(run) + "\n").utf8), to: folder.appendingPathComponent("run.json"))
      try AdapterCheckpoint.writeConfig(adapterConfig(), to: folder)
    }

    var trainSet: any Dataset = data.train
    if config.trainSamples > 0 && config.trainSamples < trainSet.count {
      var g = RandomGenerator(seed: SeedMix.mix(config.seed, 0x7375_6273))  // "subs"
      trainSet = try Subset(
        trainSet, indices: Array(g.permutation(trainSet.count).prefix(config.trainSamples)).sorted()
      )
    }
    let transform = backbone.transform
    let loader = DataLoader(
      dataset: trainSet, batchSize: config.batchSize, shuffle: true, seed: config.seed,
      workers: config.workers, transform: transform)
    let stepsPerEpoch = loader.batchCount
    var epochsThisCall = 0
    for epoch in startEpoch..<config.epochs {
      if let stopAfter, epochsThisCall >= stopAfter { return nil }
      let started = Date()
      method.setTraining(true)
      method.generator = RandomGenerator(
        seed: SeedMix.mix(config.seed, 0x6472_6F70, UInt64(epoch)))  // "drop"
      var step = epoch * stepsPerEpoch
      var lossSum = 0.0
      var correct = 0
      var seen = 0
      var lr: Float = 0
      let batches = loader.batches(epoch: epoch)
      while let batch = try batches.next() {
        optimizer.learningRateScale = factor(step: step, stepsPerEpoch: stepsPerEpoch)
        lr = optimizer.effectiveLearningRate()
        let logits = method(batch.images)
        let loss = logits.crossEntropy(
          targets: batch.labels, labelSmoothing: config.labelSmoothing)
        loss.backward()
        if config.clipGrad > 0 { optimizer.clipGradNorm(maxNorm: config.clipGrad) }
        optimizer.step()
        optimizer.zeroGrad()
        lossSum += Double(loss.item) * Double(batch.labels.count)
        let predicted = logits.detached().argmax(axis: 1)
        for (p, l) in zip(predicted, batch.labels) where p == l { correct += 1 }
        seen += batch.labels.count
        step += 1
      }
      batches.close()
      let trainTime = Date().timeIntervalSince(started)
      trainSeconds += trainTime
      trainImages += seen
      let (val, _) = try evaluate(
        method, on: data.validation, transform: transform, batchSize: config.evalBatchSize,
        workers: config.workers)
      let line: [String: Any] = [
        "epoch": epoch + 1, "lr": Double(lr), "train_loss": lossSum / Double(max(seen, 1)),
        "train_top1": Double(correct) / Double(max(seen, 1)), "val_loss": val.loss,
        "val_top1": val.top1, "val_top5": val.top5, "val_per_class": val.perClass,
        "seconds": Date().timeIntervalSince(started),
      ]
      metricLines.append(try jsonLine(line))
      log(
        String(
          format: "epoch %d/%d  train loss %.4f top-1 %.3f  val loss %.4f top-1 %.3f",
          epoch + 1, config.epochs, lossSum / Double(max(seen, 1)),
          Double(correct) / Double(max(seen, 1)), val.loss, val.top1))
      // Checkpoint: best adapter, last tensors, optimizer, metrics, then the state file that
      // commits the epoch (an interruption before it replays the epoch identically).
      if val.top1 > bestTop1 {
        (bestTop1, bestEpoch) = (val.top1, epoch + 1)
        try AdapterCheckpoint.writeWeights(method, to: folder)
      }
      try AdapterCheckpoint.writeWeights(method, to: checkpoints, file: "last.safetensors")
      try Safetensors.write(
        optimizer.stateDict(), to: checkpoints.appendingPathComponent("optimizer.safetensors"))
      try AtomicFile.write(
        Data(metricLines.map { $0 + "\n" }.joined().utf8),
        to: folder.appendingPathComponent("metrics.jsonl"))
      let state: [String: Any] = [
        "epoch": epoch + 1, "best_epoch": bestEpoch, "best_val_top1": bestTop1,
        "metrics": metricLines, "train_seconds": trainSeconds, "train_images": trainImages,
        "wall_seconds": earlierWall + Date().timeIntervalSince(callStarted),
      ]
      try AtomicFile.write(Data(try jsonLine(state).utf8), to: stateURL)
      epochsThisCall += 1
    }

    // The best epoch's adapter, read back from its file, on validation and test.
    let best = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    try method.loadTrainableState(SafetensorsFile(contentsOf: best).tensors(), source: best.path)
    let (val, _) = try evaluate(
      method, on: data.validation, transform: transform, batchSize: config.evalBatchSize,
      workers: config.workers)
    let (test, logits) = try evaluate(
      method, on: data.test, transform: transform, batchSize: config.evalBatchSize,
      workers: config.workers)
    try Safetensors.write(
      ["logits": logits], to: folder.appendingPathComponent("test_logits.safetensors"))
    let summary = TuneSummary(
      method: config.method, bestEpoch: bestEpoch, validation: val, test: test,
      trainableParameters: method.trainableCount, backboneParameters: method.backboneCount,
      trainSeconds: trainSeconds, wallSeconds: earlierWall + Date().timeIntervalSince(callStarted),
      imagesPerSecond: Double(trainImages) / max(trainSeconds, 1e-9),
      peakRSSBytes: peakResidentBytes())
    let text = try JSONSerialization.data(
      withJSONObject: summary.json, options: [.sortedKeys, .prettyPrinted])
    try AtomicFile.write(text + Data("\n".utf8), to: folder.appendingPathComponent("summary.json"))
    try ReportWriter.writeRun(
      folder: folder, backbone: backbone.reference,
      dataReference: dataReference.isEmpty ? "data" : dataReference, data: data)
    log(
      String(
        format: "best epoch %d: val top-1 %.4f; test top-1 %.4f top-5 %.4f", bestEpoch, val.top1,
        test.top1, test.top5))
    return summary
  }
}
