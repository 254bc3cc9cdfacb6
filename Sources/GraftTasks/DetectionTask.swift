import Foundation
import GraftDetection
import GraftTensor

/// What a finished detection run reports (`summary.json`): the twelve COCO numbers on
/// validation and test for the best epoch, and the run's costs.
public struct DetectionSummary {
  /// The method.
  public var method: String
  /// The epoch (1-based) with the best validation AP; its tensors are the adapter.
  public var bestEpoch: Int
  /// COCO scores on validation and test.
  public var validation: COCOBoxScores
  /// COCO scores on test, of the best validation epoch's tensors.
  public var test: COCOBoxScores
  /// Trainable elements (method, pyramid or projections, head).
  public var trainableParameters: Int
  /// Backbone elements (its own classifier excluded).
  public var backboneParameters: Int
  /// Training wall time over all epochs and sessions, seconds.
  public var trainSeconds: Double
  /// Wall time of the whole run over all sessions, seconds.
  public var wallSeconds: Double
  /// Training images per second.
  public var imagesPerSecond: Double
  /// Peak resident memory of the process that finished the run, bytes.
  public var peakRSSBytes: Int

  static func scoresJSON(_ s: COCOBoxScores) -> [String: Any] {
    var out: [String: Any] = [:]
    for (k, v) in s.named { out[k] = v }
    return out
  }

  static func scores(_ any: Any?) -> COCOBoxScores? {
    guard let o = any as? [String: Any] else { return nil }
    var stats: [Double] = []
    for name in COCOBoxScores.names {
      guard let v = o[name] as? Double else { return nil }
      stats.append(v)
    }
    return COCOBoxScores(stats: stats)
  }

  /// As written to `summary.json`.
  public var json: [String: Any] {
    [
      "task": "detection", "method": method, "best_epoch": bestEpoch,
      "validation": Self.scoresJSON(validation), "test": Self.scoresJSON(test),
      "trainable_parameters": trainableParameters, "backbone_parameters": backboneParameters,
      "trainable_share": Double(trainableParameters) / Double(max(backboneParameters, 1)),
      "train_seconds": trainSeconds, "wall_seconds": wallSeconds,
      "train_images_per_second": imagesPerSecond, "peak_rss_bytes": peakRSSBytes,
    ]
  }

  /// Reads a detection `summary.json`; a missing or incomplete file throws a `FileError`.
  public static func read(from url: URL) throws -> DetectionSummary {
    func bad(_ problem: String) -> FileError { FileError(path: url.path, message: problem) }
    guard let data = try? MappedFile.contents(of: url) else {
      throw bad("cannot read (is the run finished?)")
    }
    guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
      throw bad("not a JSON object")
    }
    guard o["task"] as? String == "detection" else { throw bad("not a detection run's summary") }
    guard let method = o["method"] as? String, let best = o["best_epoch"] as? Int,
      let val = scores(o["validation"]), let test = scores(o["test"]),
      let trainable = o["trainable_parameters"] as? Int,
      let backbone = o["backbone_parameters"] as? Int,
      let train = o["train_seconds"] as? Double, let wall = o["wall_seconds"] as? Double,
      let rate = o["train_images_per_second"] as? Double, let rss = o["peak_rss_bytes"] as? Int
    else { throw bad("incomplete detection summary") }
    return DetectionSummary(
      method: method, bestEpoch: best, validation: val, test: test,
      trainableParameters: trainable, backboneParameters: backbone, trainSeconds: train,
      wallSeconds: wall, imagesPerSecond: rate, peakRSSBytes: rss)
  }
}

/// What a detection run carries across epochs and sessions (`state.json` of each committed
/// epoch).
struct DetectionRunState: Codable, Equatable {
  var epoch = 0
  var bestEpoch = 0
  var bestValAP = -1.0
  var metrics: [String] = []
  var trainSeconds = 0.0
  var trainImages = 0
  var wallSeconds = 0.0

  enum CodingKeys: String, CodingKey {
    case epoch, metrics
    case bestEpoch = "best_epoch"
    case bestValAP = "best_val_ap"
    case trainSeconds = "train_seconds"
    case trainImages = "train_images"
    case wallSeconds = "wall_seconds"
  }
}

/// Trains a method as a detector (`graft tune --task detection`), in the run-folder layout of
/// `Trainer`:
///
/// - `tune_config.yaml`, `run.json` (with `"task": "detection"`), `adapter_config.json` (the
///   backbone's hashes, the categories and their COCO ids, `"task": "detection"`);
/// - `adapter_model.safetensors`: the best epoch's tensors (`DetectionModel.state()`: the
///   method's reached tensors, the pyramid or projections and the FCOS head; no backbone tensor
///   unless the method trains it);
/// - `metrics.jsonl`: per epoch the mean training losses (total, classification, box,
///   centre-ness), the learning rate, validation AP, AP50, AP75 and seconds;
/// - `summary.json` (`DetectionSummary`), `test_detections.json` (COCO results of the test
///   split, in its images' own pixels);
/// - `checkpoint/epoch-NNNNNN/` committed after each epoch (`CheckpointStore`), so `resume`
///   continues an interrupted run and ends as the uninterrupted one.
///
/// Training: each epoch visits the training images in a seeded order, each flipped
/// horizontally with probability 1/2 (seeded by the epoch), in batches of `train.batch_size`;
/// the loss is FCOS's (focal + GIoU + centre-ness BCE); the schedule, optimizer, clipping and
/// `train.nan_policy` are the classification trainer's. The best epoch is the one with the
/// highest validation AP (the first of ties).
public final class DetectionTrainer {
  /// The backbone.
  public let backbone: TuneBackbone
  /// The resolved configuration.
  public let config: TuneConfig
  /// The detector.
  public let model: DetectionModel
  /// The categories (label k is `categories[k]`).
  public let categories: [DetectionCategory]

  /// Builds the detector for `categories` on `backbone`.
  public init(backbone: TuneBackbone, config: TuneConfig, categories: [DetectionCategory]) throws {
    guard !categories.isEmpty else { throw ConfigError("detection needs at least one category") }
    self.backbone = backbone
    self.config = config
    self.categories = categories
    model = try DetectionModel(backbone: backbone, config: config, numClasses: categories.count)
  }

  /// Starts from the tensors of the run in `folder` instead of a fresh initialisation
  /// (`graft tune --task detection --init-from DIR`). The folder must hold the same method on
  /// the same backbone (weights and config hashes) with the same method options. A detection
  /// run must have the same categories, and gives every tensor (method, pyramid or projections,
  /// head); a classification run (or an imported PEFT adapter) gives the method's tensors the
  /// detector trains, each present with its shape, and its classification head is left out: the
  /// pyramid and FCOS head start fresh. Returns what was taken, in words. Errors name the folder
  /// and the mismatch; nothing changes then.
  @discardableResult
  public func initialise(from folder: URL) throws -> String {
    let adapter = try AdapterCheckpoint.readConfig(folder)
    func refuse(_ why: String) -> ConfigError {
      ConfigError("\(folder.path): cannot start from this adapter: \(why)")
    }
    if let why = AdapterCheckpoint.startRefusal(
      adapter, method: config.method, options: model.method.options, backbone: backbone)
    {
      throw refuse(why)
    }
    let url = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    let state = try SafetensorsFile(contentsOf: url).tensors()
    if adapter.task == "detection" {
      let names = categories.map(\.name)
      guard adapter.classNames == names, adapter.categoryIDs == categories.map(\.id) else {
        throw refuse(
          "its categories (\(adapter.classNames.joined(separator: ", "))) are not this data's "
            + "(\(names.joined(separator: ", ")))")
      }
      try model.load(state, source: url.path)
      return "every tensor of the detection run \(folder.path)"
    }
    // A classifier: the method's tensors the detector trains (not its classification head).
    let wanted = Set(model.method.checkpointTensors().map(\.name))
    try model.method.loadTrainableState(state, source: url.path, where: wanted.contains)
    let left = state.keys.filter { !wanted.contains($0) }.count
    return "\(wanted.count) tensors of the \(config.method) run \(folder.path) (its "
      + "\(left) other tensors, the classification head, left out; pyramid and head fresh)"
  }

  /// The `--dry-run --json` report.
  public func dryRunReport() -> [String: Any] {
    var tensors: [String: Int] = [:]
    for (name, t) in model.trainableTensors { tensors[name] = t.count }
    return [
      "task": "detection", "method": config.method, "trainable_parameters": model.trainableCount,
      "backbone_parameters": model.method.backboneCount, "tensors": tensors,
    ]
  }

  /// The run's `adapter_config.json`.
  public func adapterConfig() -> AdapterConfig {
    var out = AdapterConfig(
      method: config.method, formatVersion: AdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: backbone.reference,
      baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
      baseModelConfigHash: backbone.configHash, numClasses: categories.count,
      classNames: categories.map(\.name), hyperparameters: model.method.options,
      preprocessing: backbone.preprocessing, pointInput: nil, evalBatchSize: config.evalBatchSize)
    out.task = "detection"
    out.categoryIDs = categories.map(\.id)
    return out
  }

  private struct Paths {
    let folder: URL
    var checkpoints: URL { folder.appendingPathComponent("checkpoint") }
    var store: CheckpointStore { CheckpointStore(folder: checkpoints) }
    var config: URL { folder.appendingPathComponent("tune_config.yaml") }
    var metrics: URL { folder.appendingPathComponent("metrics.jsonl") }
    var summary: URL { folder.appendingPathComponent("summary.json") }
    var adapter: URL { folder.appendingPathComponent(AdapterCheckpoint.weightsFile) }
    var finished: URL { checkpoints.appendingPathComponent("finished") }
  }

  /// Trains in `folder` and returns the summary; with `resume`, continues from the folder's
  /// last committed epoch (its configuration and backbone must be this run's). With
  /// `stopAfter`, returns nil after that many epochs of this call, as if interrupted (tests).
  public func run(
    data: DetectionTuneData, folder: URL, dataReference: String = "", resume: Bool = false,
    stopAfter: Int? = nil, log: (String) -> Void = { _ in }
  ) throws -> DetectionSummary? {
    guard data.categories == categories else {
      throw ConfigError("the data's categories differ from the detector's")
    }
    let paths = Paths(folder: folder)
    let lock = try RunFolder.Lock(folder, what: "a graft tune run")
    defer { lock.release() }
    AtomicFile.removeTemporaryFiles(in: folder)
    try paths.store.removeLeftovers()
    let side = config.detImageSize
    let trainImages = try DetectionImages(data.train, categories: categories, side: side)
    let valImages = try DetectionImages(data.validation, categories: categories, side: side)
    if let note = model.precisionNote { log(note) }
    let optimizer = makeOptimizer()
    let callStarted = Date()
    var state = DetectionRunState()
    if resume {
      state = try self.resume(paths, optimizer: optimizer)
      if state.epoch >= config.epochs, FileManager.default.fileExists(atPath: paths.finished.path) {
        log("the run finished earlier; its summary.json is kept")
        return try DetectionSummary.read(from: paths.summary)
      }
      log("resuming after epoch \(state.epoch) of \(config.epochs)")
    } else {
      guard !paths.store.hasCommittedEpoch else {
        throw ConfigError(
          "\(folder.path) already holds a run; continue it with --resume \(folder.path)")
      }
      try? FileManager.default.removeItem(at: paths.finished)
      let recorded = try RunConfigFile.write(config, to: folder)
      var run: [String: Any] = [
        "backbone": backbone.reference, "data": dataReference, "method": config.method,
        "task": "detection", recorded.key: recorded.value,
      ]
      // What the data was when this run started (a sweep compares it before reusing the run).
      if let fingerprint = DataFingerprint.of(dataReference) {
        run["data_fingerprint"] = fingerprint
      }
      try AtomicFile.write(
        Data((try jsonLine(run) + "\n").utf8), to: folder.appendingPathComponent("run.json"))
      try AdapterCheckpoint.writeConfig(adapterConfig(), to: folder)
    }
    let count = trainImages.images.count
    let stepsPerEpoch = (count + config.batchSize - 1) / config.batchSize
    var epochsThisCall = 0
    for epoch in state.epoch..<config.epochs {
      if let stopAfter, epochsThisCall >= stopAfter { return nil }
      let started = Date()
      model.method.setTraining(true)
      model.method.generator = RandomGenerator(
        seed: SeedMix.mix(config.seed, 0x6472_6F70, UInt64(epoch)))  // "drop"
      var order = RandomGenerator(seed: SeedMix.mix(config.seed, UInt64(epoch)))
      let permutation = order.permutation(count)
      var flipDraws = RandomGenerator(seed: SeedMix.mix(config.seed, 0x666C_6970, UInt64(epoch)))
      var sums = [Double](repeating: 0, count: 4)
      var seen = 0
      var skipped = 0
      var lr: Float = 0
      for b in 0..<stepsPerEpoch {
        let step = epoch * stepsPerEpoch + b
        let indices = Array(
          permutation[(b * config.batchSize)..<min(count, (b + 1) * config.batchSize)])
        let flips = indices.map { _ in flipDraws.nextFloat() < 0.5 }
        let (images, targets) = trainImages.batch(
          indices, flips: flips, mean: model.mean, std: model.std)
        optimizer.learningRateScale = factor(step: step, stepsPerEpoch: stepsPerEpoch)
        lr = optimizer.effectiveLearningRate()
        let losses = model.detector.loss(images: images, targets: targets)
        let total = losses.total
        let value = total.item
        var finite = value.isFinite
        if finite {
          total.backward()
          finite = optimizer.parameters.allSatisfy { p in
            guard let g = p.grad else { return true }
            return g.scalars.allSatisfy(\.isFinite)
          }
        }
        guard finite else {
          optimizer.zeroGrad()
          if config.nanPolicy == .skipStep {
            skipped += 1
            continue
          }
          throw DivergenceError(
            epoch: epoch + 1, step: step,
            message: "the detection loss or a gradient is not finite (\(value)); stopping "
              + "(train.nan_policy = stop); nothing of this epoch was written")
        }
        if config.clipGrad > 0 { optimizer.clipGradNorm(maxNorm: config.clipGrad) }
        optimizer.step()
        optimizer.zeroGrad()
        let n = Double(indices.count)
        sums[0] += Double(value) * n
        sums[1] += Double(losses.classification.item) * n
        sums[2] += Double(losses.boxRegression.item) * n
        sums[3] += Double(losses.centerness.item) * n
        seen += indices.count
      }
      if skipped > 0 && seen == 0 {
        throw DivergenceError(
          epoch: epoch + 1, step: (epoch + 1) * stepsPerEpoch - 1,
          message: "no step of the epoch had a finite loss and gradient")
      }
      let trainTime = Date().timeIntervalSince(started)
      state.trainSeconds += trainTime
      state.trainImages += seen
      let val = try evaluate(valImages, split: data.validation).scores
      let mean = sums.map { $0 / Double(max(seen, 1)) }
      var line: [String: Any] = [
        "epoch": epoch + 1, "lr": Double(lr), "train_loss": mean[0],
        "train_loss_cls": mean[1], "train_loss_box": mean[2], "train_loss_ctr": mean[3],
        "val_ap": val.stats[0], "val_ap50": val.stats[1], "val_ap75": val.stats[2],
        "seconds": Date().timeIntervalSince(started),
      ]
      if config.nanPolicy == .skipStep { line["skipped_steps"] = skipped }
      state.metrics.append(try jsonLine(line))
      log(
        String(
          format: "epoch %d/%d  train loss %.4f  val AP %.4f AP50 %.4f", epoch + 1,
          config.epochs, mean[0], val.stats[0], val.stats[1]))
      let improved = val.stats[0] > state.bestValAP
      if improved { (state.bestValAP, state.bestEpoch) = (val.stats[0], epoch + 1) }
      state.epoch = epoch + 1
      var saved = state
      saved.wallSeconds = state.wallSeconds + Date().timeIntervalSince(callStarted)
      try checkpoint(saved, improved: improved, paths: paths, optimizer: optimizer)
      epochsThisCall += 1
    }
    return try finish(
      state, paths: paths, data: data, valImages: valImages, callStarted: callStarted, log: log)
  }

  /// The run's optimizer: the method's tensors at `optim.lr`, the pyramid (or projections) and
  /// head at `det.lr` (`optim.lr` when 0), each split into decay and no-decay groups.
  func makeOptimizer() -> any Optimizer {
    let own = model.method.trainableTensors()
    let detector = model.detector.namedParameters.map { (name: "det." + $0.0, tensor: $0.1) }
    let groups =
      ParameterGroup.defaultGroups(named: own, lr: config.lr, weightDecay: config.weightDecay)
      + ParameterGroup.defaultGroups(
        named: detector, lr: config.detLR > 0 ? config.detLR : config.lr,
        weightDecay: config.weightDecay
      ).map { group in
        var g = group
        g.name = "det_" + g.name
        return g
      }
    let used = groups.filter { !$0.parameters.isEmpty }
    return config.optimizer == .sgd
      ? SGD(groups: used, momentum: config.momentum) : AdamW(groups: used)
  }

  /// COCO scores and detections (in the images' own pixels) of `images`, the split `split`.
  func evaluate(_ images: DetectionImages, split: DetectionSplit) throws
    -> (scores: COCOBoxScores, detections: [Detection])
  {
    let found = detections(images, split: split)
    return (
      COCOBoxEvaluation.evaluate(groundTruth: split.dataset, detections: found), found
    )
  }

  /// The detections of every image of `split`, COCO's result format.
  func detections(_ images: DetectionImages, split: DetectionSplit) -> [Detection] {
    var out: [Detection] = []
    let n = images.images.count
    var start = 0
    while start < n {
      let indices = Array(start..<min(n, start + config.evalBatchSize))
      let (batch, _) = images.batch(indices, mean: model.mean, std: model.std)
      for (i, found) in zip(indices, model.detect(batch)) {
        out += found.cocoDetections(
          imageID: split.dataset.images[i].id, categories: categories, scale: images.scales[i])
      }
      start += config.evalBatchSize
    }
    return out
  }

  private func factor(step: Int, stepsPerEpoch: Int) -> Float {
    let warm = config.warmupEpochs * stepsPerEpoch
    let total = config.epochs * stepsPerEpoch
    switch config.schedule {
    case .constant:
      return step < warm ? Float(step) / Float(warm) : 1
    case .cosine:
      return CosineSchedule(
        baseLR: config.lr, warmupSteps: min(warm, total), totalSteps: total, minLR: config.minLR
      ).factor(at: step)
    }
  }

  private func resume(_ paths: Paths, optimizer: any Optimizer) throws -> DetectionRunState {
    guard FileManager.default.fileExists(atPath: paths.config.path) else {
      throw ConfigError(
        "\(paths.folder.path): nothing to resume (no tune_config.yaml: not a graft tune run)")
    }
    let recorded = try RunConfigFile.read(paths.folder, method: config.method)
    let differences = try config.resumeConflicts(with: recorded)
    guard differences.isEmpty else {
      throw ConfigError(
        "\(paths.config.path): the run's configuration differs from this one ("
          + differences.map { "\($0.key): \($0.recorded) in the run, \($0.now) now" }
          .joined(separator: "; ") + ")")
    }
    let adapter = try AdapterCheckpoint.readConfig(paths.folder)
    guard adapter.task == "detection" else {
      throw ConfigError("\(paths.folder.path): not a detection run")
    }
    guard adapter.baseModelHash == backbone.weightsHash,
      adapter.baseModelConfigHash.map({ $0 == backbone.configHash }) ?? true
    else {
      throw ConfigError(
        "\(paths.folder.path): the run used another backbone (weights \(adapter.baseModelHash))")
    }
    guard let committed = try paths.store.latest() else {
      try writeMetrics([], paths: paths)
      return DetectionRunState()
    }
    let stateURL = committed.file("state.json")
    let state: DetectionRunState
    do {
      state = try JSONDecoder().decode(
        DetectionRunState.self, from: MappedFile.contents(of: stateURL))
    } catch {
      throw ConfigError("\(stateURL.path): unreadable state")
    }
    let last = committed.file("last.safetensors")
    try model.load(SafetensorsFile(contentsOf: last).tensors(), source: last.path)
    try optimizer.loadStateDict(
      SafetensorsFile(contentsOf: committed.file("optimizer.safetensors")).tensors())
    try writeMetrics(state.metrics, paths: paths)
    return state
  }

  private func writeMetrics(_ lines: [String], paths: Paths) throws {
    try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: paths.metrics)
  }

  private func writeWeights(to url: URL) throws {
    try Safetensors.write(
      model.state(), metadata: ["format": "pt", "method": config.method, "task": "detection"],
      to: url)
  }

  private func checkpoint(
    _ state: DetectionRunState, improved: Bool, paths: Paths, optimizer: any Optimizer
  ) throws {
    if improved { try writeWeights(to: paths.adapter) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let stateData = try encoder.encode(state)
    try paths.store.commit(epoch: state.epoch) { dir in
      try writeWeights(to: dir.appendingPathComponent("last.safetensors"))
      try Safetensors.write(
        optimizer.stateDict(), to: dir.appendingPathComponent("optimizer.safetensors"))
      try AtomicFile.write(stateData, to: dir.appendingPathComponent("state.json"))
    }
    try writeMetrics(state.metrics, paths: paths)
  }

  private func finish(
    _ state: DetectionRunState, paths: Paths, data: DetectionTuneData,
    valImages: DetectionImages, callStarted: Date, log: (String) -> Void
  ) throws -> DetectionSummary {
    try model.load(SafetensorsFile(contentsOf: paths.adapter).tensors(), source: paths.adapter.path)
    let val = try evaluate(valImages, split: data.validation).scores
    let testImages = try DetectionImages(
      data.test, categories: categories, side: config.detImageSize)
    let (test, found) = try evaluate(testImages, split: data.test)
    try AtomicFile.write(
      DetectionResultsFile.encode(found),
      to: paths.folder.appendingPathComponent("test_detections.json"))
    let summary = DetectionSummary(
      method: config.method, bestEpoch: state.bestEpoch, validation: val, test: test,
      trainableParameters: model.trainableCount, backboneParameters: model.method.backboneCount,
      trainSeconds: state.trainSeconds,
      wallSeconds: state.wallSeconds + Date().timeIntervalSince(callStarted),
      imagesPerSecond: Double(state.trainImages) / max(state.trainSeconds, 1e-9),
      peakRSSBytes: peakResidentBytes())
    let text = try JSONSerialization.data(
      withJSONObject: finiteJSON(summary.json), options: [.sortedKeys, .prettyPrinted])
    try AtomicFile.write(text + Data("\n".utf8), to: paths.summary)
    try AtomicFile.write(Data("\(state.epoch)\n".utf8), to: paths.finished)
    log(
      String(
        format: "best epoch %d: val AP %.4f; test AP %.4f AP50 %.4f AP75 %.4f", state.bestEpoch,
        val.stats[0], test.stats[0], test.stats[1], test.stats[2]))
    return summary
  }
}

/// COCO's result format: a JSON list of `{image_id, category_id, bbox: [x, y, w, h], score}`.
public enum DetectionResultsFile {
  /// The detections as COCO result JSON (one line per detection, in the given order).
  public static func encode(_ detections: [Detection]) throws -> Data {
    let rows = try detections.map { d -> String in
      try jsonLine(
        [
          "image_id": d.imageID, "category_id": d.categoryID,
          "bbox": [d.box.x, d.box.y, d.box.width, d.box.height], "score": d.score,
        ] as [String: Any])
    }
    return Data(("[\n" + rows.joined(separator: ",\n") + (rows.isEmpty ? "]\n" : "\n]\n")).utf8)
  }
}
