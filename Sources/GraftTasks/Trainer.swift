import Foundation
import GraftTensor

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
  /// Epochs trained: `train.epochs`, or fewer when `train.patience` stopped the run (0 in
  /// summaries written before it was recorded).
  public var epochsTrained = 0
  /// Test-time views averaged for `testVoted` (`eval.votes`); 1 when the run did not vote.
  public var votes = 1
  /// Test results of the best epoch's adapter with `votes` views averaged (`Voting`); nil when
  /// the run did not vote.
  public var testVoted: EvaluationResult? = nil
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
  /// A data-parallel run's ranks and communication (nil for one process).
  public var dataParallel: DataParallelFigures? = nil
  /// The precision the frozen backbone ran in (`backbone.precision`, or fp32 where the CPU had
  /// no native BF16); fp32 for summaries written before the key existed.
  public var backbonePrecision = BackbonePrecision.fp32

  /// Reads a `summary.json`; a missing, malformed or incomplete file throws a `FileError`
  /// naming it.
  public static func read(from url: URL) throws -> TuneSummary {
    func bad(_ problem: String) -> FileError { FileError(path: url.path, message: problem) }
    let data: Data
    do {
      data = try MappedFile.contents(of: url)
    } catch {
      throw bad("cannot read (is the run finished?)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data),
      let o = object as? [String: Any]
    else { throw bad("not a JSON object (a damaged summary: resume the run to rewrite it)") }
    func value<T>(_ key: String, _ type: T.Type) throws -> T {
      guard let v = o[key] as? T else { throw bad("no valid '\(key)'") }
      return v
    }
    func result(_ key: String) throws -> EvaluationResult {
      let r = try value(key, [String: Any].self)
      guard let loss = r["loss"] as? Double, let top1 = r["top1"] as? Double,
        let top5 = r["top5"] as? Double, let count = r["count"] as? Int
      else { throw bad("no valid '\(key)' (loss, top1, top5, count)") }
      return EvaluationResult(
        loss: loss, top1: top1, top5: top5, perClass: r["per_class"] as? [Double] ?? [],
        confusion: r["confusion"] as? [[Int]] ?? [], count: count)
    }
    var summary = TuneSummary(
      method: try value("method", String.self), bestEpoch: try value("best_epoch", Int.self),
      validation: try result("validation"), test: try result("test"),
      epochsTrained: o["epochs_trained"] as? Int ?? 0, votes: o["votes"] as? Int ?? 1,
      testVoted: o["test_voted"] == nil ? nil : try result("test_voted"),
      trainableParameters: try value("trainable_parameters", Int.self),
      backboneParameters: try value("backbone_parameters", Int.self),
      trainSeconds: try value("train_seconds", Double.self),
      wallSeconds: try value("wall_seconds", Double.self),
      imagesPerSecond: try value("train_images_per_second", Double.self),
      peakRSSBytes: try value("peak_rss_bytes", Int.self),
      dataParallel: (o["data_parallel"] as? [String: Any]).flatMap(DataParallelFigures.init))
    if let text = o["backbone_precision"] as? String {
      guard let precision = BackbonePrecision(rawValue: text) else {
        throw bad("'backbone_precision' is \(text), not fp32 or bf16")
      }
      summary.backbonePrecision = precision
    }
    return summary
  }

  /// As written to `summary.json` (`test_voted` only when the run voted).
  public var json: [String: Any] {
    var out: [String: Any] = [
      "method": method, "best_epoch": bestEpoch, "epochs_trained": epochsTrained, "votes": votes,
      "validation": validation.json(confusion: true), "test": test.json(confusion: true),
      "trainable_parameters": trainableParameters, "backbone_parameters": backboneParameters,
      "trainable_share": Double(trainableParameters) / Double(max(backboneParameters, 1)),
      "train_seconds": trainSeconds, "wall_seconds": wallSeconds,
      "train_images_per_second": imagesPerSecond,
      "peak_rss_bytes": peakRSSBytes, "backbone_precision": backbonePrecision.rawValue,
      // The threads of the process that wrote it: its seconds depend on them.
      "threads": Parallel.threadCount,
    ]
    if let testVoted { out["test_voted"] = testVoted.json(confusion: true) }
    if let dataParallel { out["data_parallel"] = dataParallel.json }
    return out
  }
}

/// What a data-parallel run's ranks exchanged (`summary.json`'s `data_parallel`), over the
/// training steps of the call that finished the run.
public struct DataParallelFigures: Equatable, Sendable {
  /// Ranks sharing every batch.
  public var ranks: Int
  /// Bytes each rank contributes to the one fused allreduce of a step (the trainable
  /// gradients, float32, and four figures of the step's loss and accuracy).
  public var allreduceBytesPerStep: Int
  /// Training steps measured.
  public var steps: Int
  /// Seconds rank 0 spent in those steps' gradient allreduces (including waiting for the
  /// slowest rank).
  public var allreduceSeconds: Double
  /// Seconds rank 0 spent in those steps, all of each step.
  public var stepSeconds: Double
  /// Buckets the gradients were allreduced in during the backward pass (`train.bucket_mb`); 0
  /// when they went in one allreduce after it.
  public var buckets = 0

  /// The figures as stated.
  public init(
    ranks: Int, allreduceBytesPerStep: Int, steps: Int, allreduceSeconds: Double,
    stepSeconds: Double
  ) {
    self.ranks = ranks
    self.allreduceBytesPerStep = allreduceBytesPerStep
    self.steps = steps
    self.allreduceSeconds = allreduceSeconds
    self.stepSeconds = stepSeconds
  }

  init?(_ o: [String: Any]) {
    guard let ranks = o["ranks"] as? Int, let bytes = o["allreduce_bytes_per_step"] as? Int,
      let steps = o["steps"] as? Int, let allreduce = o["allreduce_seconds"] as? Double,
      let step = o["step_seconds"] as? Double
    else { return nil }
    self.init(
      ranks: ranks, allreduceBytesPerStep: bytes, steps: steps, allreduceSeconds: allreduce,
      stepSeconds: step)
    buckets = o["buckets"] as? Int ?? 0
  }

  /// As written to `summary.json`.
  public var json: [String: Any] {
    [
      "ranks": ranks, "allreduce_bytes_per_step": allreduceBytesPerStep, "steps": steps,
      "allreduce_seconds": allreduceSeconds, "step_seconds": stepSeconds, "buckets": buckets,
    ]
  }
}

/// JSON text of `object`, keys sorted, on one line; non-finite numbers become `null`.
func jsonLine(_ object: Any) throws -> String {
  String(
    decoding: try JSONSerialization.data(
      withJSONObject: finiteJSON(object), options: [.sortedKeys, .withoutEscapingSlashes]),
    as: UTF8.self)
}

/// `object` with every non-finite `Double` or `Float` replaced by `null` (JSON has no NaN or
/// infinity, and Foundation refuses to write them).
func finiteJSON(_ object: Any) -> Any {
  switch object {
  case let d as Double: return d.isFinite ? d : NSNull()
  case let f as Float: return f.isFinite ? Double(f) : NSNull()
  case let a as [Double]: return a.map { $0.isFinite ? $0 as Any : NSNull() }
  case let a as [Any]: return a.map(finiteJSON)
  case let o as [String: Any]: return o.mapValues(finiteJSON)
  default: return object
  }
}

/// A training step whose loss or gradient was not finite, under `train.nan_policy = stop` (or
/// an epoch in which no step was finite under `skip-step`).
public struct DivergenceError: Error, CustomStringConvertible, Sendable {
  /// The epoch (1-based).
  public var epoch: Int
  /// The optimizer step (0-based over the run).
  public var step: Int
  /// What was not finite, and the last good checkpoint, in words.
  public var message: String

  /// `epoch E, step S: message`.
  public var description: String { "epoch \(epoch), step \(step): \(message)" }
}

/// What a run carries from epoch to epoch and across sessions: `state.json` of the newest
/// `checkpoint/epoch-NNNNNN/`, committed with that epoch's tensors after each epoch so
/// `--resume` continues where the run stopped.
struct RunState: Codable, Equatable {
  /// Epochs completed.
  var epoch = 0
  /// The epoch (1-based) with the best validation top-1 so far; 0 before the first.
  var bestEpoch = 0
  /// Its validation top-1 (−1 before the first epoch).
  var bestValTop1 = -1.0
  /// One JSON line per completed epoch (`metrics.jsonl`).
  var metrics: [String] = []
  /// Training wall time summed over epochs and sessions, seconds.
  var trainSeconds = 0.0
  /// Training samples seen over all epochs.
  var trainImages = 0
  /// Wall time of the earlier sessions, seconds.
  var wallSeconds = 0.0

  enum CodingKeys: String, CodingKey {
    case epoch, metrics
    case bestEpoch = "best_epoch"
    case bestValTop1 = "best_val_top1"
    case trainSeconds = "train_seconds"
    case trainImages = "train_images"
    case wallSeconds = "wall_seconds"
  }

  init() {}

  init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    epoch = try c.decode(Int.self, forKey: .epoch)
    bestEpoch = try c.decode(Int.self, forKey: .bestEpoch)
    bestValTop1 = try c.decode(Double.self, forKey: .bestValTop1)
    metrics = try c.decode([String].self, forKey: .metrics)
    trainSeconds = try c.decode(Double.self, forKey: .trainSeconds)
    trainImages = try c.decode(Int.self, forKey: .trainImages)
    wallSeconds = try c.decodeIfPresent(Double.self, forKey: .wallSeconds) ?? 0
  }
}

/// One epoch's training figures.
struct EpochTraining {
  var lossSum = 0.0
  var correct = 0
  var seen = 0
  var lr: Float = 0
  /// Steps skipped for a non-finite loss or gradient (`train.nan_policy = skip-step`).
  var skipped = 0

  var loss: Double { lossSum / Double(max(seen, 1)) }
  var top1: Double { Double(correct) / Double(max(seen, 1)) }
}

/// Trains one method on one backbone and task, writing the run folder:
///
/// - `tune_config.yaml`: the resolved configuration; `run.json`: backbone and data references;
/// - `adapter_config.json`, `adapter_model.safetensors`: the best epoch's trainable tensors;
/// - `metrics.jsonl`: one object per epoch (losses, accuracies, learning rate, seconds);
/// - `summary.json`: the best epoch's validation and the test results, parameter counts, wall
///   time, peak RSS, images/s; `test_logits.safetensors`: the test split's logits;
/// - `report.html`: the run's charts (see `ReportWriter`);
/// - `checkpoint/epoch-NNNNNN/`: the last epoch's tensors, the optimizer state and
///   `state.json` (`RunState`), committed as one unit after each epoch (see `CheckpointStore`)
///   so `run(resume: true)` continues an interrupted run, even one killed in the middle of a
///   checkpoint, and ends with the same result as an uninterrupted one; `checkpoint/finished`
///   once the run is complete. `.graft.lock` is locked while a process writes the folder.
///
/// `run` is the sequence of steps below: `start` (or `resume`), then per epoch `trainEpoch`,
/// `evaluate` on validation and `checkpoint`, then `finish`.
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
  /// The feature cache of the current `run`, when it uses one (see `FeatureCache`).
  var featureCache: FeatureCache? = nil
  /// The ranks of a data-parallel run (`mpirun -np K graft tune`); nil for one process.
  ///
  /// Every rank builds the same method from the same seed and takes its contiguous part of each
  /// global batch (`train.batch_size` stays the global batch); its loss is its samples' share
  /// of the batch's mean, so the trainable gradients summed by one fused allreduce per step are
  /// one process's, and every rank takes the same optimizer step. BatchNorms in training mode
  /// use the global batch's statistics and per-sample dropout draws the global batch's mask
  /// (`DataParallel`). Validation and test are split across ranks and their logits gathered.
  /// Rank 0 alone writes the run folder; a resumed run may use any number of ranks.
  public var communicator: (any Communicator)? = nil
  /// The folder `initialise(from:freshHead:)` took tensors from, and whether the head started
  /// fresh; a new run records both in `run.json` (so that a resume before the first committed
  /// epoch starts from the same tensors).
  public private(set) var initialisation: (folder: String, freshHead: Bool)?
  private var ranks: Int { communicator?.size ?? 1 }
  private var rank: Int { communicator?.rank ?? 0 }
  /// Whether this process writes the run folder (rank 0, or the only process).
  private var writesRun: Bool { rank == 0 }
  /// The current call's data-parallel figures.
  private var parallelFigures: DataParallelFigures? = nil
  /// A data-parallel run's gradient buckets, when its gradients are large (`train.bucket_mb`).
  private var gradientBuckets: GradientBuckets? = nil

  /// Builds the method on `backbone` for `classNames.count` classes. Unknown methods and
  /// options throw, and so does a cosine floor above its peak.
  public init(backbone: TuneBackbone, config: TuneConfig, classNames: [String]) throws {
    guard config.schedule != .cosine || config.minLR <= config.lr else {
      throw ConfigError(
        "optim.min_lr (\(config.minLR)) is above optim.lr (\(config.lr)): the cosine would rise "
          + "instead of decaying; give a floor at most the peak")
    }
    self.backbone = backbone
    self.config = config
    self.classNames = classNames
    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    method = try MethodRegistry.make(
      config.method, backbone: backbone.model, classes: classNames.count,
      options: config.methodOptions, generator: &generator)
    method.backboneTrainMode = config.backboneTrainMode
    let (precision, note) = applyPrecision(config.precision, to: backbone.model)
    (backbonePrecision, precisionNote) = (precision, note.map { "backbone.precision=\($0)" })
    backbone.model.setBlockRecompute(config.recompute)
  }

  /// The precision the frozen backbone runs in: `backbone.precision`, or fp32 where this CPU has
  /// no native BF16 (`precisionNote` says so).
  public let backbonePrecision: BackbonePrecision
  /// Why the run uses another precision than asked, for the log; nil when it does not.
  public let precisionNote: String?

  /// Starts from the trained tensors of the run (or imported adapter folder) in `folder` instead
  /// of the method's fresh initialisation (`graft tune --init-from DIR`). The folder must hold
  /// the same method on the same backbone (weights and config hashes) with the same method
  /// options. The method's own tensors (all but its `classifierModules`) are always taken, each
  /// present with its shape: continued training of a PEFT LoRA brought in by `graft import`, or
  /// PVP's warm start, prompts pretrained on another task. The head comes too when it fits (as
  /// many classes) and `freshHead` is false, with a note when the class names differ (another
  /// task's head would mean other classes: pass `freshHead` then); otherwise it keeps its fresh
  /// initialisation. Returns what was taken, in words. Errors name the folder and the mismatch;
  /// nothing changes then.
  @discardableResult
  public func initialise(from folder: URL, freshHead: Bool = false) throws -> String {
    let adapter = try AdapterCheckpoint.readConfig(folder)
    func refuse(_ why: String) -> ConfigError {
      ConfigError("\(folder.path): cannot start from this adapter: \(why)")
    }
    if let why = AdapterCheckpoint.startRefusal(
      adapter, method: config.method, options: method.options, backbone: backbone)
    {
      throw refuse(why)
    }
    if adapter.task == "detection" {
      throw refuse("it is a detection run; a classifier starts from a classification run")
    }
    let url = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    let state = try SafetensorsFile(contentsOf: url).tensors()
    if !freshHead, adapter.numClasses == classNames.count {
      try method.loadTrainableState(state, source: url.path)
      initialisation = (folder.path, freshHead)
      var note = "every tensor of \(folder.path), its head included (\(classNames.count) classes)"
      if adapter.classNames != classNames {
        note +=
          "; its class names (\(adapter.classNames.prefix(4).joined(separator: ", "))…) are not "
          + "this data's (\(classNames.prefix(4).joined(separator: ", "))…): if they are other "
          + "classes, start over with --fresh-head"
      }
      return note
    }
    let methodTensors = { [method] (name: String) in !method.isClassifierTensor(name) }
    try method.loadTrainableState(state, source: url.path, where: methodTensors)
    initialisation = (folder.path, freshHead)
    let why =
      freshHead
      ? "--fresh-head"
      : "it has \(adapter.numClasses) classes, this data \(classNames.count)"
    let taken = method.checkpointTensors().filter { methodTensors($0.name) }.count
    return "the \(taken) method tensors of \(folder.path); the head starts fresh (\(why))"
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

  /// What the run's samples are brought to: the backbone's input, or the method's own when it
  /// takes another kind (P2P takes point clouds for an image backbone).
  public var taskInput: BackboneInput {
    switch method.taskInput {
    case .backbone: backbone.input
    case .points(let count): .points(PointInput(points: count))
    }
  }

  /// The `adapter_config.json` of this run; `videoInput` for a run on video clips.
  public func adapterConfig(videoInput: VideoInput? = nil) throws -> AdapterConfig {
    var out = AdapterConfig(
      method: config.method, formatVersion: AdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: backbone.reference,
      baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
      baseModelConfigHash: backbone.configHash,
      numClasses: classNames.count, classNames: classNames,
      hyperparameters: method.options, preprocessing: backbone.preprocessing,
      pointInput: {
        if case .points(let p) = taskInput { return p }
        return nil
      }(), evalBatchSize: config.evalBatchSize)
    out.videoInput = videoInput
    out.backbonePrecision = backbonePrecision == .fp32 ? nil : backbonePrecision
    return out
  }

  /// The optimizer `config` names over `method`'s trainable tensors: decay / no-decay groups at
  /// `config.lr`, SGD with momentum or AdamW (the benchmarks build theirs the same way).
  public static func makeOptimizer(for method: TuningMethod, config: TuneConfig)
    -> any Optimizer
  {
    let groups = ParameterGroup.defaultGroups(
      named: method.trainableTensors(), lr: config.lr, weightDecay: config.weightDecay)
    switch config.optimizer {
    case .sgd: return SGD(groups: groups, momentum: config.momentum)
    case .adamw: return AdamW(groups: groups)
    }
  }

  /// The learning-rate factor of optimizer step `step`.
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

  /// The files of a run folder.
  private struct Paths {
    let folder: URL
    var checkpoints: URL { folder.appendingPathComponent("checkpoint") }
    var store: CheckpointStore { CheckpointStore(folder: checkpoints) }
    var config: URL { folder.appendingPathComponent("tune_config.yaml") }
    var metrics: URL { folder.appendingPathComponent("metrics.jsonl") }
    var summary: URL { folder.appendingPathComponent("summary.json") }
    /// Written last by `finish`: the run is complete.
    var finished: URL { checkpoints.appendingPathComponent("finished") }
    /// The layout before epoch folders: `checkpoint/state.json` beside the tensors.
    var legacyState: URL { checkpoints.appendingPathComponent("state.json") }
  }

  /// The files of one epoch's checkpoint.
  private enum EpochFile {
    static let state = "state.json"
    static let last = "last.safetensors"
    static let optimizer = "optimizer.safetensors"
  }

  /// Whether `folder` holds a run with at least one completed epoch (which `run(resume:)`
  /// continues and a new run must not overwrite).
  public static func holdsRun(_ folder: URL) -> Bool {
    let paths = Paths(folder: folder)
    return paths.store.hasCommittedEpoch
      || FileManager.default.fileExists(atPath: paths.legacyState.path)
  }

  /// Trains in `folder` (created if needed) and returns the summary; with `resume`, continues
  /// from the folder's last completed epoch (its configuration must be this one). With
  /// `stopAfter`, returns nil after that many epochs of this call, as if interrupted (tests).
  public func run<Sample: TuneSample>(
    data: TuneData<Sample>, folder: URL, dataReference: String = "", resume: Bool = false,
    stopAfter: Int? = nil, log: (String) -> Void = { _ in }
  ) throws -> TuneSummary? {
    guard data.classNames.count == classNames.count else {
      throw ConfigError(
        "the data has \(data.classNames.count) classes but the head was built for "
          + "\(classNames.count)")
    }
    // Before anything is written: data the run cannot take, and clips read otherwise than
    // the run records, are refused. An empty split would be scored as 0 % (and select the
    // best epoch on nothing).
    for (name, split) in [
      ("training", data.train), ("validation", data.validation), ("test", data.test),
    ] where split.count == 0 {
      throw DatasetError(.empty, path: data.description, "the \(name) split has no sample")
    }
    if config.patience > 0 && config.trainOn == .trainAndValidation {
      throw ConfigError(
        "train.patience needs a held-out validation split, and data.train_on=train+val trains "
          + "on it: set one or the other")
    }
    let data = config.trainOn == .trainAndValidation ? try data.joiningValidation() : data
    let transforms = try Sample.transforms(for: taskInput)
    try Voting.check(method, votes: config.votes, input: taskInput, sample: Sample.self)
    if Sample.self == ClipSample.self, data.train.count > 0,
      let clip = try data.train.sample(at: 0) as? ClipSample, clip.input != config.videoInput
    {
      throw ConfigError(
        "the clips are read as \(clip.input) but the settings say \(config.videoInput) "
          + "(data.frames, data.sampling, data.train_sampling): load the data with "
          + "config.videoInput")
    }
    let paths = Paths(folder: folder)
    // One process per run folder, for the whole run; then nothing else writes here, and
    // what interrupted writes left behind can go.
    // In a data-parallel run rank 0 alone writes: it alone holds the lock.
    let lock = writesRun ? try RunFolder.Lock(folder, what: "a graft tune run") : nil
    defer { lock?.release() }
    if writesRun {
      AtomicFile.removeTemporaryFiles(in: folder)
      try paths.store.removeLeftovers()
    }
    if let precisionNote { log(precisionNote) }
    let optimizer = Trainer.makeOptimizer(for: method, config: config)
    let callStarted = Date()
    var state: RunState
    if resume {
      state = try self.resume(paths, optimizer: optimizer)
      if state.epoch >= config.epochs || stopsEarly(state),
        let summary = try finishedSummary(paths)
      {
        log("the run finished earlier; its summary.json is kept")
        return summary
      }
      log("resuming after epoch \(state.epoch) of \(config.epochs)")
    } else {
      guard !Trainer.holdsRun(folder) else {
        throw ConfigError(
          "\(folder.path) already holds a run; continue it with --resume \(folder.path)")
      }
      state = RunState()
      if writesRun {
        try start(
          paths, dataReference: dataReference,
          videoInput: Sample.self == ClipSample.self ? config.videoInput : nil)
      }
      // Every rank reads rank 0's files later (the best adapter at the end, the checkpoint on
      // resume): a rank that cannot see them must say so now, not after training.
      if let communicator, ranks > 1 {
        communicator.barrier()
        guard FileManager.default.fileExists(atPath: paths.config.path) else {
          throw ConfigError(
            "rank \(rank) cannot see \(paths.config.path), which rank 0 has written: the run "
              + "folder must be on a filesystem every machine of the job shares")
        }
      }
    }

    // Ranks hold parts of batches; the cache serves whole ones from one process's files.
    featureCache =
      ranks > 1
      ? nil : try FeatureCache.session(self, cacheable: transforms.cacheable, runFolder: folder)
    defer { featureCache = nil }
    let loader = DataLoader(
      dataset: try trainingSet(data), batchSize: config.batchSize, shuffle: true,
      seed: config.seed, workers: config.workers, rank: rank, ranks: ranks,
      transform: transforms.train)
    try checkShards(loader)
    parallelFigures = nil
    var epochsThisCall = 0
    for epoch in state.epoch..<config.epochs {
      if let stopAfter, epochsThisCall >= stopAfter { return nil }
      if stopsEarly(state) {
        log(
          "early stop after epoch \(state.epoch): no better validation top-1 for "
            + "\(config.patience) epochs (best: epoch \(state.bestEpoch))")
        break
      }
      let started = Date()
      let training = try trainEpoch(
        epoch, loader: loader, optimizer: optimizer, lastCheckpoint: lastCheckpoint(paths, state))
      let trainTime = Date().timeIntervalSince(started)
      state.trainSeconds += trainTime
      state.trainImages += training.seen
      let (val, _) = try evaluateSplit("val", data.validation, transform: transforms.eval)
      featureCache?.drain(log)
      // Finite steps can still leave weights whose outputs are not: such an epoch must not be
      // selected, checkpointed as good or scored (NaN logits all "predict" class 0).
      guard val.loss.isFinite else {
        throw DivergenceError(
          epoch: epoch + 1, step: (epoch + 1) * loader.batchCount - 1,
          message: "the validation loss is \(val.loss) after this epoch's updates (the weights "
            + "diverged: lower optim.lr); nothing of this epoch was written; "
            + lastCheckpoint(paths, state))
      }
      var line: [String: Any] = [
        "epoch": epoch + 1, "lr": Double(training.lr), "train_loss": training.loss,
        "train_top1": training.top1, "val_loss": val.loss, "val_top1": val.top1,
        "val_top5": val.top5, "val_per_class": val.perClass,
        "seconds": Date().timeIntervalSince(started),
      ]
      if config.nanPolicy == .skipStep {
        line["skipped_steps"] = training.skipped
        if training.skipped > 0 {
          log("epoch \(epoch + 1): skipped \(training.skipped) steps with a non-finite loss")
        }
      }
      state.metrics.append(try jsonLine(line))
      log(
        String(
          format: "epoch %d/%d  train loss %.4f top-1 %.3f  val loss %.4f top-1 %.3f",
          epoch + 1, config.epochs, training.loss, training.top1, val.loss, val.top1))
      // Training on validation too leaves nothing to select on: every epoch replaces the adapter.
      let improved = config.trainOn == .trainAndValidation || val.top1 > state.bestValTop1
      if improved { (state.bestValTop1, state.bestEpoch) = (val.top1, epoch + 1) }
      state.epoch = epoch + 1
      var saved = state
      saved.wallSeconds = state.wallSeconds + Date().timeIntervalSince(callStarted)
      if writesRun {
        try checkpoint(saved, improved: improved, paths: paths, optimizer: optimizer)
      }
      epochsThisCall += 1
    }
    return try finish(
      state, paths: paths, data: data, transform: transforms.eval,
      dataReference: dataReference, callStarted: callStarted, log: log)
  }

  /// Whether `train.patience` epochs in a row have passed without a better validation top-1.
  private func stopsEarly(_ state: RunState) -> Bool {
    config.patience > 0 && state.bestEpoch > 0 && state.epoch - state.bestEpoch >= config.patience
  }

  // MARK: Steps

  /// A new run: writes the configuration, `run.json` and `adapter_config.json`.
  private func start(_ paths: Paths, dataReference: String, videoInput: VideoInput?) throws {
    try? FileManager.default.removeItem(at: paths.finished)
    let recorded = try RunConfigFile.write(config, to: paths.folder)
    var run: [String: Any] = [
      "backbone": backbone.reference, "data": dataReference, "method": config.method,
      recorded.key: recorded.value,
    ]
    // What the data was when this run started (a sweep compares it before reusing the run).
    if let fingerprint = DataFingerprint.of(dataReference) { run["data_fingerprint"] = fingerprint }
    if let initialisation {
      run["init_from"] = initialisation.folder
      run["fresh_head"] = initialisation.freshHead
      run["init_from_hash"] = try AdapterCheckpoint.tensorsHash(
        URL(fileURLWithPath: initialisation.folder))
    }
    try AtomicFile.write(
      Data((try jsonLine(run) + "\n").utf8), to: paths.folder.appendingPathComponent("run.json"))
    try AdapterCheckpoint.writeConfig(adapterConfig(videoInput: videoInput), to: paths.folder)
  }

  /// An interrupted run: checks that the folder's configuration and backbone are this run's,
  /// then loads the newest committed epoch's state, tensors and optimizer state (none: the
  /// run starts over from its first epoch), and rewrites `metrics.jsonl` from that state.
  private func resume(_ paths: Paths, optimizer: any Optimizer) throws -> RunState {
    guard FileManager.default.fileExists(atPath: paths.config.path) else {
      throw ConfigError(
        "\(paths.folder.path): nothing to resume (no tune_config.yaml: not a graft tune run)")
    }
    let recorded = try RunConfigFile.read(paths.folder, method: config.method)
    let differences = try config.resumeConflicts(with: recorded)
    guard differences.isEmpty, recorded.method == config.method else {
      throw ConfigError(
        "\(paths.config.path): the run's configuration differs from this one ("
          + differences.map { "\($0.key): \($0.recorded) in the run, \($0.now) now" }
          .joined(separator: "; ") + ")")
    }
    let adapter = try AdapterCheckpoint.readConfig(paths.folder)
    guard adapter.baseModelHash == backbone.weightsHash,
      adapter.baseModelConfigHash.map({ $0 == backbone.configHash }) ?? true
    else {
      throw ConfigError(
        "\(paths.folder.path): the run used another backbone (weights \(adapter.baseModelHash), "
          + "settings \(adapter.baseModelConfigHash ?? "not recorded"))")
    }
    let files: URL
    if let committed = try paths.store.latest() {
      files = committed.folder
    } else if FileManager.default.fileExists(atPath: paths.legacyState.path) {
      files = paths.checkpoints
    } else {
      if writesRun { try writeMetrics([], paths: paths) }
      return RunState()
    }
    let stateURL = files.appendingPathComponent(EpochFile.state)
    let state: RunState
    do {
      state = try JSONDecoder().decode(RunState.self, from: MappedFile.contents(of: stateURL))
    } catch {
      throw ConfigError("\(stateURL.path): unreadable state")
    }
    let last = files.appendingPathComponent(EpochFile.last)
    try method.loadTrainableState(SafetensorsFile(contentsOf: last).tensors(), source: last.path)
    try optimizer.loadStateDict(
      SafetensorsFile(contentsOf: files.appendingPathComponent(EpochFile.optimizer)).tensors())
    if writesRun { try writeMetrics(state.metrics, paths: paths) }
    return state
  }

  /// The stored summary of a run that finished (nil when `finish` did not complete).
  private func finishedSummary(_ paths: Paths) throws -> TuneSummary? {
    let fm = FileManager.default
    guard fm.fileExists(atPath: paths.summary.path) else { return nil }
    // Before epoch folders, a finished run was one whose summary.json was written.
    guard fm.fileExists(atPath: paths.finished.path) || !paths.store.hasCommittedEpoch else {
      return nil
    }
    return try TuneSummary.read(from: paths.summary)
  }

  /// `metrics.jsonl`: one line per completed epoch.
  private func writeMetrics(_ lines: [String], paths: Paths) throws {
    try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: paths.metrics)
  }

  /// The training split, cut to `data.train_samples` (a seeded choice) when set.
  private func trainingSet<Sample>(_ data: TuneData<Sample>) throws -> any Dataset<Sample> {
    let full = data.train
    guard config.trainSamples > 0 && config.trainSamples < full.count else { return full }
    var g = RandomGenerator(seed: SeedMix.mix(config.seed, 0x7375_6273))  // "subs"
    return try Subset(
      full, indices: Array(g.permutation(full.count).prefix(config.trainSamples)).sorted())
  }

  /// The last good checkpoint, in words, for `DivergenceError`.
  private func lastCheckpoint(_ paths: Paths, _ state: RunState) -> String {
    state.epoch == 0
      ? "the run has no completed epoch to resume (\(paths.folder.path))"
      : "the last good checkpoint is epoch \(state.epoch) in \(paths.checkpoints.path) "
        + "(--resume continues from it)"
  }

  /// Whether every gradient of `optimizer`'s parameters is finite.
  private func gradientsAreFinite(_ optimizer: any Optimizer) -> Bool {
    for p in optimizer.parameters {
      guard let g = p.grad else { continue }
      let values = UnsafeBufferPointer(start: g.pointer, count: g.count)
      // A sum is NaN when any term is NaN or two infinities cancel, infinite when one is.
      var sum: Float = 0
      for v in values { sum += v * 0 }
      if !sum.isFinite { return false }
    }
    return true
  }

  /// One epoch of training steps. A step whose loss or gradient is not finite stops the run
  /// or is skipped (`train.nan_policy`) before it changes a parameter.
  private func trainEpoch<Sample>(
    _ epoch: Int, loader: DataLoader<Sample>, optimizer: any Optimizer, lastCheckpoint: String
  ) throws -> EpochTraining {
    method.setTraining(true)
    method.generator = RandomGenerator(
      seed: SeedMix.mix(config.seed, 0x6472_6F70, UInt64(epoch)))  // "drop"
    let stepsPerEpoch = loader.batchCount
    var step = epoch * stepsPerEpoch
    var out = EpochTraining()
    let batches = try TrainingBatches(
      loader: loader, epoch: epoch, method: method, cache: featureCache)
    defer { batches.close() }
    var batchIndex = 0
    while let batch = try batches.next() {
      optimizer.learningRateScale = factor(step: step, stepsPerEpoch: stepsPerEpoch)
      out.lr = optimizer.effectiveLearningRate()
      let result: StepResult
      if let communicator, ranks > 1 {
        let total = loader.globalBatchSize(batchIndex)
        batchIndex += 1
        let started = DispatchTime.now().uptimeNanoseconds
        let figures = try dataParallelStep(
          batch, sample: Sample.self, total: total, communicator: communicator,
          optimizer: optimizer)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        var sums =
          parallelFigures
          ?? DataParallelFigures(
            ranks: ranks, allreduceBytesPerStep: figures.bytes, steps: 0, allreduceSeconds: 0,
            stepSeconds: 0)
        sums.steps += 1
        sums.buckets = gradientBuckets?.count ?? 0
        sums.allreduceSeconds += figures.allreduceSeconds
        sums.stepSeconds += seconds
        parallelFigures = sums
        result = StepResult(
          finite: figures.finite, loss: figures.loss, lossSum: figures.lossSum,
          correct: figures.correct, seen: total)
      } else {
        result = localStep(batch, optimizer: optimizer)
      }
      guard result.finite else {
        let what =
          result.loss.isFinite ? "a gradient is not finite" : "the loss is \(result.loss)"
        switch config.nanPolicy {
        case .stop:
          throw DivergenceError(
            epoch: epoch + 1, step: step,
            message: "\(what) (not finite): stopping (train.nan_policy = stop; skip-step skips "
              + "such steps); nothing of this epoch was written; \(lastCheckpoint)")
        case .skipStep:
          optimizer.zeroGrad()
          out.skipped += 1
          step += 1
          continue
        }
      }
      if config.clipGrad > 0 { optimizer.clipGradNorm(maxNorm: config.clipGrad) }
      optimizer.step()
      optimizer.zeroGrad()
      out.lossSum += result.lossSum
      out.correct += result.correct
      out.seen += result.seen
      step += 1
    }
    if out.skipped > 0 && out.seen == 0 {
      throw DivergenceError(
        epoch: epoch + 1, step: step - 1,
        message: "no step of the epoch had a finite loss and gradient (all \(out.skipped) "
          + "skipped); \(lastCheckpoint)")
    }
    return out
  }

  /// What a training step's forward and backward gave, before the update.
  private struct StepResult {
    /// The loss and every gradient are finite.
    var finite: Bool
    /// The batch's mean loss.
    var loss: Float
    /// The loss summed over the batch's samples, and those classified right, and their count.
    var lossSum: Double
    var correct: Int
    var seen: Int
  }

  /// Forward and backward of `batch` in one process; the backward is skipped for a non-finite
  /// loss.
  private func localStep<Sample>(
    _ batch: TrainingBatches<Sample>.Item, optimizer: any Optimizer
  ) -> StepResult {
    let logits = batch.logits()
    let loss = logits.crossEntropy(targets: batch.labels, labelSmoothing: config.labelSmoothing)
    let lossValue = loss.item
    var finite = lossValue.isFinite
    if finite {
      loss.backward()
      finite = gradientsAreFinite(optimizer)
    }
    let predicted = logits.detached().argmax(axis: 1)
    let correct = zip(predicted, batch.labels).filter { $0 == $1 }.count
    return StepResult(
      finite: finite, loss: lossValue, lossSum: Double(lossValue) * Double(batch.labels.count),
      correct: correct, seen: batch.labels.count)
  }

  /// One data-parallel training step on this rank's part `batch` of a global batch of `total`
  /// samples: forward and backward with the shard current (so BatchNorm and dropout see the
  /// global batch), the loss scaled to this part's share of the global mean, then one
  /// allreduce of every trainable gradient packed with the step's loss sum, correct count and
  /// a non-finite flag. Every rank ends the step with the same gradients and figures.
  private func dataParallelStep<Sample>(
    _ batch: TrainingBatches<Sample>.Item, sample: Sample.Type, total: Int,
    communicator: any Communicator,
    optimizer: any Optimizer
  ) throws -> (
    finite: Bool, loss: Float, lossSum: Double, correct: Int, bytes: Int, allreduceSeconds: Double
  ) {
    let count = batch.labels.count
    let part = BatchShard.range(rank: rank, ranks: ranks, total: total)
    precondition(part.count == count, "rank \(rank): batch part \(count) vs \(part)")
    let shard = BatchShard(
      offset: part.lowerBound, count: count, total: total, communicator: communicator)
    let parameters = optimizer.parameters
    let gradientCount = parameters.reduce(0) { $0 + $1.count }
    // Large gradients go in buckets started during the backward pass; small ones in one
    // allreduce with the step's figures after it.
    let buckets = bucketsFor(parameters, bytes: 4 * gradientCount, communicator: communicator)
    buckets?.begin()
    var lossValue: Float = 0
    var correct = 0
    DataParallel.withShard(shard) {
      let logits = batch.logits()
      let loss = logits.crossEntropy(targets: batch.labels, labelSmoothing: config.labelSmoothing)
      lossValue = loss.item
      // Every rank runs the backward, whatever its loss, so that the collectives inside it
      // (SyncBatchNorm's, the buckets') stay in step; the flag below decides for all.
      (loss * (Float(count) / Float(total))).backward(
        nil,
        leafGradientIsFinal: buckets.map { b in { b.gradientIsFinal($0) } })
      let predicted = logits.detached().argmax(axis: 1)
      for (p, l) in zip(predicted, batch.labels) where p == l { correct += 1 }
    }
    let fused = buckets == nil
    var buffer = [Float](repeating: 0, count: (fused ? gradientCount : 0) + 4)
    var offset = 0
    if fused {
      buffer.withUnsafeMutableBufferPointer { b in
        for p in parameters {
          if let g = p.grad { (b.baseAddress! + offset).update(from: g.pointer, count: p.count) }
          offset += p.count
        }
      }
    }
    buffer[offset] = lossValue.isFinite ? lossValue * Float(count) : 0
    buffer[offset + 1] = Float(correct)
    buffer[offset + 2] = lossValue.isFinite ? 0 : 1
    buffer[offset + 3] = lossValue.isFinite ? 0 : lossValue.isNaN ? 1 : 0
    let started = DispatchTime.now().uptimeNanoseconds
    buffer.withUnsafeMutableBufferPointer { communicator.allreduceSum($0) }
    buckets?.finish()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    offset = 0
    if fused {
      buffer.withUnsafeBufferPointer { b in
        for p in parameters {
          if let g = p.grad { g.pointer.update(from: b.baseAddress! + offset, count: p.count) }
          offset += p.count
        }
      }
    }
    let nonFiniteLoss = buffer[offset + 2] > 0
    let loss: Float =
      nonFiniteLoss
      ? (buffer[offset + 3] > 0 ? .nan : .infinity) : buffer[offset] / Float(total)
    return (
      finite: !nonFiniteLoss && gradientsAreFinite(optimizer), loss: loss,
      lossSum: Double(buffer[offset]), correct: Int(buffer[offset + 1].rounded()),
      bytes: 4 * (gradientCount + 4), allreduceSeconds: seconds
    )
  }

  /// The gradient buckets of `parameters` when their `bytes` exceed `train.bucket_mb` (built
  /// once per run), else nil.
  private func bucketsFor(_ parameters: [Tensor], bytes: Int, communicator: any Communicator)
    -> GradientBuckets?
  {
    let capacity = Int(config.bucketMiB * 1_048_576)
    guard bytes > capacity else { return nil }
    if let gradientBuckets, gradientBuckets.covers(parameters) { return gradientBuckets }
    gradientBuckets = GradientBuckets(
      parameters: parameters, capacityBytes: capacity, communicator: communicator)
    return gradientBuckets
  }

  /// Refuses a data-parallel run in which some global batch has fewer samples than there are
  /// ranks: a rank would hold nothing, and the collectives of its step could not match.
  private func checkShards<Sample>(_ loader: DataLoader<Sample>) throws {
    guard ranks > 1, loader.batchCount > 0 else { return }
    let smallest = loader.globalBatchSize(loader.batchCount - 1)
    guard smallest >= ranks else {
      throw ConfigError(
        "the training set (\(loader.dataset.count) samples in batches of \(loader.batchSize)) "
          + "has a batch of \(smallest) samples, fewer than the \(ranks) ranks: run with at "
          + "most \(smallest) ranks, or change train.batch_size or data.train_samples")
    }
  }

  /// The metrics and logits of split `name` (`val`, `test`): from the feature cache when the run
  /// uses one, else through the backbone; in a data-parallel run, each rank evaluates its
  /// contiguous part and every rank gathers all the logits.
  private func evaluateSplit<Sample>(
    _ name: String, _ dataset: any Dataset<Sample>, transform: @escaping SampleTransform<Sample>
  ) throws -> (result: EvaluationResult, logits: Tensor) {
    if let featureCache, dataset.count > 0,
      let cached = try featureCache.evaluate(name, dataset: dataset, transform: transform)
    {
      return cached
    }
    if let communicator, ranks > 1 {
      return try evaluateSharded(dataset, transform: transform, communicator: communicator)
    }
    return try evaluate(
      method, on: dataset, transform: transform, batchSize: config.evalBatchSize,
      workers: config.workers)
  }

  /// `evaluate` split across ranks: this rank's contiguous part through the method, then every
  /// rank's logits gathered in dataset order and scored in `eval_batch_size` chunks, as one
  /// process scores them.
  private func evaluateSharded<Sample>(
    _ dataset: any Dataset<Sample>, transform: @escaping SampleTransform<Sample>,
    communicator: any Communicator
  ) throws -> (result: EvaluationResult, logits: Tensor) {
    let classes = method.classes
    let part = BatchShard.range(rank: rank, ranks: ranks, total: dataset.count)
    let local: Tensor
    if part.isEmpty {
      local = Tensor.zeros([0, classes])
    } else {
      local = try evaluate(
        method, on: try Subset(dataset, indices: Array(part)), transform: transform,
        batchSize: config.evalBatchSize, workers: config.workers
      ).logits
    }
    let counts = (0..<ranks).map {
      BatchShard.range(rank: $0, ranks: ranks, total: dataset.count).count * classes
    }
    let values = communicator.allgather(
      UnsafeBufferPointer(start: local.pointer, count: local.count), counts: counts)
    let logits = Tensor(values, shape: [dataset.count, classes])
    var accumulator = EvaluationResult.Accumulator(classes: classes)
    var start = 0
    while start < dataset.count {
      let n = min(config.evalBatchSize, dataset.count - start)
      accumulator.add(
        logits: logits.narrow(0, start: start, length: n),
        labels: (start..<(start + n)).map { dataset.label(at: $0) })
      start += n
    }
    return (accumulator.result, logits)
  }

  /// After an epoch: the best adapter (when it improved), then the epoch's checkpoint (last
  /// tensors, optimizer, state) committed as one unit (`CheckpointStore`), then the metrics.
  /// A crash before the commit replays the epoch identically from the previous one (and so
  /// rewrites the same adapter); a crash after it continues from this one.
  private func checkpoint(
    _ state: RunState, improved: Bool, paths: Paths, optimizer: any Optimizer
  ) throws {
    if improved { try AdapterCheckpoint.writeWeights(method, to: paths.folder) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let stateData = try encoder.encode(state)
    try paths.store.commit(epoch: state.epoch) { dir in
      try AdapterCheckpoint.writeWeights(method, to: dir, file: EpochFile.last)
      try Safetensors.write(
        optimizer.stateDict(), to: dir.appendingPathComponent(EpochFile.optimizer))
      try AtomicFile.write(stateData, to: dir.appendingPathComponent(EpochFile.state))
    }
    // A legacy checkpoint (from before epoch folders) is superseded now.
    for name in [EpochFile.state, EpochFile.last, EpochFile.optimizer] {
      try? FileManager.default.removeItem(at: paths.checkpoints.appendingPathComponent(name))
    }
    try writeMetrics(state.metrics, paths: paths)
  }

  /// The best epoch's adapter, read back from its file, on validation and test; writes the test
  /// logits, `summary.json` and the report.
  private func finish<Sample: TuneSample>(
    _ state: RunState, paths: Paths, data: TuneData<Sample>,
    transform: @escaping SampleTransform<Sample>, dataReference: String, callStarted: Date,
    log: (String) -> Void
  ) throws -> TuneSummary {
    let folder = paths.folder
    let best = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    // Rank 0 wrote the best adapter: every rank reads it once rank 0 is done writing.
    communicator?.barrier()
    try method.loadTrainableState(SafetensorsFile(contentsOf: best).tensors(), source: best.path)
    let (val, _) = try evaluateSplit("val", data.validation, transform: transform)
    let (test, logits) = try evaluateSplit("test", data.test, transform: transform)
    featureCache?.drain(log)
    var voted: (result: EvaluationResult, logits: Tensor)? = nil
    if config.votes > 1 {
      voted = try Voting.evaluate(
        method, on: data.test, input: taskInput, votes: config.votes,
        batchSize: config.evalBatchSize, workers: config.workers, seed: config.seed)
    }
    var summary = TuneSummary(
      method: config.method, bestEpoch: state.bestEpoch, validation: val, test: test,
      epochsTrained: state.epoch, votes: config.votes, testVoted: voted?.result,
      trainableParameters: method.trainableCount, backboneParameters: method.backboneCount,
      trainSeconds: state.trainSeconds,
      wallSeconds: state.wallSeconds + Date().timeIntervalSince(callStarted),
      imagesPerSecond: Double(state.trainImages) / max(state.trainSeconds, 1e-9),
      peakRSSBytes: peakResidentBytes())
    summary.dataParallel = parallelFigures
    summary.backbonePrecision = backbonePrecision
    guard writesRun else { return summary }
    var logitFiles = ["logits": logits]
    if let voted { logitFiles["logits_voted"] = voted.logits }
    try Safetensors.write(
      logitFiles, to: folder.appendingPathComponent("test_logits.safetensors"))
    let text = try JSONSerialization.data(
      withJSONObject: finiteJSON(summary.json), options: [.sortedKeys, .prettyPrinted])
    try AtomicFile.write(text + Data("\n".utf8), to: folder.appendingPathComponent("summary.json"))
    try ReportWriter.writeRun(
      folder: folder, backbone: backbone.reference,
      dataReference: dataReference.isEmpty ? "data" : dataReference, data: data)
    // Last: the run is complete, and a later resume keeps what was written.
    try AtomicFile.write(Data("\(state.epoch)\n".utf8), to: paths.finished)
    log(
      String(
        format: "best epoch %d: val top-1 %.4f; test top-1 %.4f top-5 %.4f mean per-class %.4f",
        state.bestEpoch, val.top1, test.top1, test.top5, test.meanPerClass))
    if let voted {
      log(
        String(
          format: "test with %d votes: top-1 %.4f mean per-class %.4f", config.votes,
          voted.result.top1, voted.result.meanPerClass))
    }
    return summary
  }
}
