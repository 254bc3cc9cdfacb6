import Foundation
import GraftTensor

/// `adapter_config.json`: what a run folder needs to rebuild its method on its backbone.
public struct AdapterConfig: Codable, Equatable, Sendable {
  /// Method name (`lora`).
  public var method: String
  /// Version of this folder's layout.
  public var formatVersion: Int
  /// Graft's version at training time.
  public var graftVersion: String
  /// How to load the backbone: an absolute folder or `.npz` path, or a bundled name.
  public var baseModel: String
  /// The backbone's timm architecture.
  public var baseModelArchitecture: String
  /// `fnv1a64:…` of the backbone's weights file; a backbone whose hash differs is refused.
  public var baseModelHash: String
  /// `fnv1a64:…` of the backbone's resolved architecture and input settings
  /// (`TuneBackbone.configHash`); a backbone whose hash differs is refused. Nil in folders of
  /// earlier versions, which recorded the weights' hash only.
  public var baseModelConfigHash: String?
  /// Classes of the head.
  public var numClasses: Int
  /// Their names.
  public var classNames: [String]
  /// The method's options (`method.*`), defaults filled in.
  public var hyperparameters: [String: String]
  /// Image preprocessing used in training and evaluation (image backbones).
  public var preprocessing: ImagePreprocessConfig?
  /// How point clouds were brought to the backbone (point backbones).
  public var pointInput: PointInput?
  /// How video clips were read, for a run on video clips (their frames are images, brought to
  /// the backbone by `preprocessing`); nil for other runs.
  public var videoInput: VideoInput? = nil
  /// Batch size of evaluation (kept so logits are reproduced with the same GEMM shapes).
  public var evalBatchSize: Int
  /// `detection` for a detection run (`DetectionTrainer`); nil for classification.
  public var task: String? = nil
  /// A detection run's category ids, in the order of `classNames` (the COCO ids its results
  /// use); nil for classification.
  public var categoryIDs: [Int]? = nil
  /// The precision the frozen backbone ran in (`backbone.precision`); loading the folder runs
  /// it so again, so evaluation reproduces the run's logits. Nil (fp32) in earlier folders.
  public var backbonePrecision: BackbonePrecision? = nil

  /// The current layout version.
  public static let currentFormat = 1

  /// Checks the sizes before anything is built from them: the class count against the class
  /// names and Graft's limit, the evaluation batch size against 1...65536. Throws a
  /// `ConfigError` naming `source` and the key.
  public func validate(source: String) throws {
    guard (1...DatasetLimits.maxClasses).contains(numClasses), numClasses == classNames.count
    else {
      throw ConfigError(
        "\(source): num_classes \(numClasses) must be 1...\(DatasetLimits.maxClasses) and match "
          + "the \(classNames.count) class_names")
    }
    guard (1...65_536).contains(evalBatchSize) else {
      throw ConfigError("\(source): eval_batch_size \(evalBatchSize) is not in 1...65536")
    }
  }

  /// What the run's samples were brought to: point clouds when the run took them (a point
  /// backbone, or P2P rendering them for an image backbone), else images.
  public var input: BackboneInput? {
    if let pointInput { return .points(pointInput) }
    return preprocessing.map { .image($0) }
  }

  enum CodingKeys: String, CodingKey {
    case method
    case formatVersion = "format_version"
    case graftVersion = "graft_version"
    case baseModel = "base_model_name_or_path"
    case baseModelArchitecture = "base_model_architecture"
    case baseModelHash = "base_model_hash"
    case baseModelConfigHash = "base_model_config_hash"
    case numClasses = "num_classes"
    case classNames = "class_names"
    case hyperparameters
    case preprocessing
    case pointInput = "point_input"
    case videoInput = "video_input"
    case evalBatchSize = "eval_batch_size"
    case task
    case categoryIDs = "category_ids"
    case backbonePrecision = "backbone_precision"
  }
}

/// A method rebuilt from a run folder, on its backbone.
public struct LoadedAdapter {
  /// The method with its trained tensors.
  public var method: TuningMethod
  /// The folder's configuration.
  public var config: AdapterConfig
  /// The backbone it sits on.
  public var backbone: TuneBackbone
  /// What a user should know about how it was checked (one sentence each), for example that
  /// an older folder records only the hash of the backbone's weights.
  public var notes: [String] = []
}

/// Run folders as PEFT lays them out: `adapter_config.json` and `adapter_model.safetensors`
/// (only the trainable tensors and the method's state buffers, named under the method's prefix).
public enum AdapterCheckpoint {
  /// Why the adapter `adapter` cannot start a new run of `method` with method options `options`
  /// on `backbone` (`--init-from`): another method, backbone weights or config, or options
  /// (the message gives the `--set method.…` that match); nil when it can.
  static func startRefusal(
    _ adapter: AdapterConfig, method: String, options: [String: String], backbone: TuneBackbone
  ) -> String? {
    guard adapter.method == method else {
      return "it holds method '\(adapter.method)', this run trains '\(method)'"
    }
    guard adapter.baseModelHash == backbone.weightsHash else {
      return "it was trained on backbone weights \(adapter.baseModelHash), this run's backbone has "
        + "\(backbone.weightsHash) (\(backbone.reference))"
    }
    if let stored = adapter.baseModelConfigHash, stored != backbone.configHash {
      return "its backbone config hash \(stored) differs from \(backbone.configHash)"
    }
    let differing = adapter.hyperparameters.keys.sorted().filter {
      options[$0] != adapter.hyperparameters[$0]
    }
    guard differing.isEmpty else {
      return "its method options differ ("
        + differing.map { "\($0)=\(adapter.hyperparameters[$0]!), here \(options[$0] ?? "unset")" }
        .joined(separator: "; ") + "); pass "
        + differing.map { "--set method.\($0)=\(adapter.hyperparameters[$0]!)" }.joined(
          separator: " ")
    }
    return nil
  }

  /// The configuration file's name.
  public static let configFile = "adapter_config.json"
  /// The tensors file's name.
  public static let weightsFile = "adapter_model.safetensors"

  /// Writes `config` (atomically).
  public static func writeConfig(_ config: AdapterConfig, to folder: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(
      encoder.encode(config) + Data("\n".utf8), to: folder.appendingPathComponent(configFile))
  }

  /// Writes `method`'s trainable tensors and state buffers (`trainableState()`, atomically) as
  /// `file` (by default the adapter file).
  public static func writeWeights(
    _ method: TuningMethod, to folder: URL, file: String = weightsFile
  ) throws {
    try Safetensors.write(
      method.trainableState(), metadata: ["format": "pt", "method": method.name],
      to: folder.appendingPathComponent(file))
  }

  /// The hash of the tensors file of the adapter folder `folder`: what a run started from it
  /// (`--init-from`) records, so that a sweep notices a source that was trained again.
  public static func tensorsHash(_ folder: URL) throws -> String {
    try FNV1a64.file(folder.appendingPathComponent(weightsFile))
  }

  /// Reads `adapter_config.json` of `folder`.
  public static func readConfig(_ folder: URL) throws -> AdapterConfig {
    let url = folder.appendingPathComponent(configFile)
    guard FileManager.default.fileExists(atPath: url.path) else {
      let started = ["run.json", "tune_config.yaml"].contains {
        FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
      }
      throw ConfigError(
        started
          ? "\(folder.path): no \(configFile) yet (a graft tune run that has not saved its "
            + "adapter: it is starting, or stopped before its first save)"
          : "\(folder.path): no \(configFile) (not a graft tune run folder)")
    }
    do {
      let config = try JSONDecoder().decode(AdapterConfig.self, from: MappedFile.contents(of: url))
      guard config.formatVersion <= AdapterConfig.currentFormat else {
        throw ConfigError(
          "\(url.path): format_version \(config.formatVersion) is newer than this graft reads")
      }
      try config.validate(source: url.path)
      return config
    } catch let e as ConfigError {
      throw e
    } catch {
      throw ConfigError("\(url.path): \(error)")
    }
  }

  /// A note when `folder` holds a `graft tune` run that has not finished (`run.json` but no
  /// `summary.json`): its adapter is the one the run saved last, mid-training, and the note
  /// says whether a process is training it now. Nil for a finished run or an imported adapter.
  public static func unfinishedNote(_ folder: URL) -> String? {
    let exists = { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
    guard exists("run.json"), !exists("summary.json") else { return nil }
    let state =
      RunFolder.lockHolder(of: folder).map { "\($0) is training it now" }
      ?? "it stopped before the end; graft tune --resume \(folder.path) finishes it"
    return
      "\(folder.path): the run is not finished (no summary.json; \(state)): this uses the "
      + "adapter it saved last"
  }

  /// Loads the run in `folder`: its backbone (`backbone` if given, else loaded by the recorded
  /// reference), refused when the weights hash differs; the method rebuilt with the recorded
  /// options; its tensors loaded (every name and shape checked). The frozen backbone runs in
  /// the run's own precision (so evaluation reproduces its logits) unless `precision` is given:
  /// then every matrix of the adapted model, trained ones included, runs in it (`int8`: s8
  /// matrices), for inference only.
  public static func load(
    _ folder: URL, backbone given: TuneBackbone? = nil, precision: BackbonePrecision? = nil
  ) throws -> LoadedAdapter {
    let config = try readConfig(folder)
    if let task = config.task {
      throw ConfigError(
        "\(folder.path): a \(task) run, not a classifier (use graft detect --adapter for it)")
    }
    let backbone = try given ?? TuneBackbone.load(config.baseModel)
    guard backbone.weightsHash == config.baseModelHash else {
      throw ConfigError(
        "\(folder.path): the adapter was trained on backbone '\(config.baseModel)' with weights "
          + "\(config.baseModelHash), but the backbone given has \(backbone.weightsHash) "
          + "(\(backbone.reference)); refusing a different backbone")
    }
    var notes: [String] = unfinishedNote(folder).map { [$0] } ?? []
    if let stored = config.baseModelConfigHash {
      guard stored == backbone.configHash else {
        throw ConfigError(
          "\(folder.path): the backbone '\(backbone.reference)' has the weights the adapter was "
            + "trained on, but another architecture or preprocessing (its config.json changed: "
            + "\(stored) recorded, \(backbone.configHash) now); refusing a different backbone")
      }
    } else {
      notes.append(
        "\(folder.path) records only the hash of the backbone's weights (written by an earlier "
          + "Graft): the backbone's architecture and preprocessing were not checked")
    }
    var generator = RandomGenerator(seed: 0)
    let method: TuningMethod
    do {
      method = try MethodRegistry.make(
        config.method, backbone: backbone.model, classes: config.numClasses,
        options: config.hyperparameters, generator: &generator)
    } catch let error as ConfigError {
      // The options come from the file, not from --set: say so.
      throw ConfigError(
        "\(folder.appendingPathComponent(configFile).path): its hyperparameters do not make a "
          + "\(config.method) method: \(error.message)")
    }
    let url = folder.appendingPathComponent(weightsFile)
    let state = try SafetensorsFile(contentsOf: url).tensors()
    try method.loadTrainableState(state, source: url.path)
    method.setTraining(false)
    let runsIn = precision ?? config.backbonePrecision ?? .fp32
    if precision != nil && runsIn != .fp32 {
      // An inference precision asked for: the whole adapted model runs in it, the matrices the
      // run trained (its head, adapters, a fully tuned backbone) too. Nothing trains after this.
      for (_, tensor) in method.trainableTensors() { tensor.requiresGrad = false }
      applyPrecision(runsIn, to: method)
    }
    let (_, precisionNote) = applyPrecision(runsIn, to: backbone.model)
    if let precisionNote {
      // Whose precision it is: the one asked for now, or the one the run recorded.
      notes.append(
        precision != nil
          ? "\(folder.path): asked to run in \(precisionNote)"
          : "\(folder.path): the run's backbone ran in \(precisionNote)")
    }
    return LoadedAdapter(method: method, config: config, backbone: backbone, notes: notes)
  }
}

extension LoadedAdapter {
  /// Logits and metrics over `dataset` with the run's preprocessing and evaluation batch size
  /// (so the logits are the run's to the bit); with `votes` > 1, the logits of that many
  /// test-time views averaged (`Voting`, views seeded by `seed`). A dataset whose class count
  /// differs from the head's throws.
  public func evaluate<Sample: TuneSample>(
    _ dataset: any Dataset<Sample>, workers: Int = 1, votes: Int = 1, seed: UInt64 = 0
  )
    throws -> (result: EvaluationResult, logits: Tensor)
  {
    guard dataset.classCount == config.numClasses else {
      throw ConfigError(
        "the dataset has \(dataset.classCount) classes but the adapter's head has "
          + "\(config.numClasses) (\(config.classNames.prefix(12).joined(separator: ", "))"
          + (config.numClasses > 12 ? ", …)" : ")"))
    }
    guard let input = config.input else {
      throw ConfigError("the adapter records no backbone input (preprocessing or point_input)")
    }
    try Voting.check(method, votes: votes, input: input, sample: Sample.self)
    return try Voting.evaluate(
      method, on: dataset, input: input, votes: votes, batchSize: config.evalBatchSize,
      workers: workers, seed: seed)
  }

  /// Logits [N, classes] of the video files `clips`, read as the run read its evaluation clips
  /// (`videoInput`; the defaults for a run on images), in batches of the run's evaluation size.
  /// Throws for an adapter whose backbone does not take images, and `VideoError` naming a file
  /// that gives no frame.
  public func predict(clips: [URL]) throws -> Tensor {
    method.setTraining(false)
    guard let preprocessing = config.preprocessing else {
      throw ConfigError("the adapter's backbone does not take images (nor video frames)")
    }
    let t = EvalTransform(config: preprocessing)
    let input = config.videoInput ?? VideoInput()
    var parts: [Tensor] = []
    var start = 0
    while start < clips.count {
      let end = min(start + config.evalBatchSize, clips.count)
      let frames = try clips[start..<end].map {
        try ClipSample(url: $0, input: input).frames(
          rule: input.sampling.rule(seed: 0), transform: t)
      }
      let batch = Tensor.concat(frames, axis: 0)
      let clipsBatch = batch.reshaped(
        [end - start, input.frames] + Array(frames[0].shape.dropFirst()))
      parts.append(withNoGrad { method(clipsBatch) })
      start = end
    }
    return parts.isEmpty ? Tensor.zeros([0, config.numClasses]) : Tensor.concat(parts, axis: 0)
  }

  /// Logits [N, classes] of `clouds` and the clouds as the method saw them [N, points, 3 or 6],
  /// through the run's evaluation transform (`PointTransforms.evaluation`: normalised, farthest
  /// point sampled), in batches of the run's evaluation size. Throws for an adapter whose run
  /// did not take point clouds.
  public func predict(clouds: [PointCloud], sources: [String]? = nil) throws -> (
    logits: Tensor, inputs: Tensor
  ) {
    method.setTraining(false)
    guard let pointInput = config.pointInput else {
      throw ConfigError("the adapter's run did not take point clouds")
    }
    let transform = try PointCloud.transforms(for: .points(pointInput)).eval
    var generator = RandomGenerator(seed: 0)
    let inputs = try clouds.enumerated().map { i, cloud in
      do {
        return try transform(cloud, &generator).unsqueezed(0)
      } catch let error as DatasetError where error.path.isEmpty {
        // Name the file (or the cloud's place) the transform could not use.
        let source = sources?[i] ?? "cloud \(i + 1) of \(clouds.count)"
        throw DatasetError(error.kind, path: source, error.message)
      }
    }
    var parts: [Tensor] = []
    var start = 0
    while start < inputs.count {
      let end = min(start + config.evalBatchSize, inputs.count)
      let batch = Tensor.concat(Array(inputs[start..<end]), axis: 0)
      parts.append(withNoGrad { method(batch) })
      start = end
    }
    guard !parts.isEmpty else {
      return (Tensor.zeros([0, config.numClasses]), Tensor.zeros([0, pointInput.points, 3]))
    }
    return (Tensor.concat(parts, axis: 0), Tensor.concat(inputs, axis: 0))
  }

  /// Logits [N, classes] of `images`, preprocessed as in training, in batches of the run's
  /// evaluation size. Throws for an adapter whose backbone does not take images.
  public func predict(_ images: [RGBImage]) throws -> Tensor {
    method.setTraining(false)
    guard let preprocessing = config.preprocessing else {
      throw ConfigError("the adapter's backbone does not take images")
    }
    let t = EvalTransform(config: preprocessing)
    var parts: [Tensor] = []
    var start = 0
    while start < images.count {
      let end = min(start + config.evalBatchSize, images.count)
      let batch = t.batch(Array(images[start..<end]))
      parts.append(withNoGrad { method(batch) })
      start = end
    }
    return parts.isEmpty ? Tensor.zeros([0, config.numClasses]) : Tensor.concat(parts, axis: 0)
  }
}
