import Foundation

/// One arm of `graft bench captions`: a training mode, with or without the video.
public struct CaptionArm: Codable, Sendable, Equatable, Hashable {
  /// What is trained.
  public var mode: CaptionMode
  /// Whether the prefix sees the video (`PLLaVAConfig.video`).
  public var video: Bool

  /// An arm.
  public init(mode: CaptionMode, video: Bool) {
    self.mode = mode
    self.video = video
  }

  /// `lora`, `lora-no-video`, `projector`, …: the arm's name and run folder.
  public var name: String { mode.rawValue + (video ? "" : "-no-video") }

  /// Reads a name as `name` writes it. Throws `ConfigError` for anything else.
  public static func parse(_ text: String) throws -> CaptionArm {
    let blind = text.hasSuffix("-no-video")
    let mode = blind ? String(text.dropLast("-no-video".count)) : text
    guard let m = CaptionMode(rawValue: mode) else {
      throw ConfigError(
        "unknown captioning arm '\(text)' (a mode: "
          + CaptionMode.allCases.map(\.rawValue).joined(separator: ", ")
          + ", optionally followed by -no-video)")
    }
    return CaptionArm(mode: m, video: !blind)
  }
}

/// What one arm of `graft bench captions` measured (its `result.json`).
public struct CaptionArmResult: Codable, Sendable {
  /// The arm's name (`CaptionArm.name`).
  public var arm: String
  /// Its mode.
  public var mode: String
  /// Whether the prefix saw the video.
  public var video: Bool
  /// Trainable parameters.
  public var trainable: Int
  /// Training clips.
  public var trainClips: Int
  /// The epochs' losses.
  public var history: [CaptionEpoch]
  /// Seconds of training (frames decoded and encoded included).
  public var trainSeconds: Double
  /// Seconds captioning the test split.
  public var evalSeconds: Double
  /// Peak resident memory of the process, MiB (set by the caller that measures it).
  public var peakRSSMiB: Double?
  /// BLEU-1..4, ROUGE-L, CIDEr-D on the test split, by `CaptionScores.named`'s names.
  public var scores: [String: Double]
  /// Test captions that name their clip's action (`ActionMentions`).
  public var actionNamed: Int
  /// Test clips with an action label.
  public var actionCounted: Int
  /// Different captions among the test captions.
  public var distinctCaptions: Int
  /// The test captions.
  public var captions: [CaptionEvaluation.Hypothesis]
  /// The settings the arm ran with (decoder, data, recipe), as the caller records them: a
  /// finished arm is reused only with the same settings.
  public var settings: [String: String]?

  enum CodingKeys: String, CodingKey {
    case arm, mode, video, trainable, history, scores, captions, settings
    case trainClips = "train_clips"
    case trainSeconds = "train_seconds"
    case evalSeconds = "eval_seconds"
    case peakRSSMiB = "peak_rss_mib"
    case actionNamed = "action_named"
    case actionCounted = "action_counted"
    case distinctCaptions = "distinct_captions"
  }
}

/// The arms of `graft bench captions` and `graft demo video`: each trains a PLLaVA captioner
/// with one mode, with or without the video, then captions the test split greedily.
public enum CaptionBenchmark {
  /// File of an arm's result in its run folder.
  public static let resultFile = "result.json"

  /// Trains `arm` on `data` (`base` options with the arm's mode and video setting; `decoder`
  /// loaded fresh by the caller, since `full` changes its weights) and scores its test
  /// captions. With `out`, the run folder and `result.json` are written there. Throws what
  /// `CaptionTrainer.train` and `CaptionEvaluation.run` throw.
  public static func run(
    _ arm: CaptionArm, base: PLLaVAConfig, options: CaptionTrainingOptions,
    backbone: TuneBackbone, decoder: CaptionDecoder, data: CaptionClips, out: URL?,
    log: ((String) -> Void)? = nil
  ) throws -> CaptionArmResult {
    var config = base
    config.mode = arm.mode
    config.video = arm.video
    var generator = RandomGenerator(seed: options.seed)
    let captioner = try PLLaVACaptioner(
      config: config, backbone: backbone, decoder: decoder, generator: &generator)
    let trainer = CaptionTrainer(
      captioner: captioner, backbone: backbone, decoder: decoder, options: options)
    trainer.log = log.map { log in { log("\(arm.name): " + $0) } }
    let started = Date()
    let history = try trainer.train(on: data, out: out)
    let trainSeconds = Date().timeIntervalSince(started)
    let evalStarted = Date()
    let (hypotheses, scores) = try CaptionEvaluation.run(captioner, data: data, split: "test")
    let evalSeconds = Date().timeIntervalSince(evalStarted)
    let labels = data.entries(split: "test").map(\.label)
    let named = ActionMentions.named(hypotheses.map(\.caption), labels: labels)
    var trainClips = data.entries(split: "train").count
    if let n = options.maxClips { trainClips = min(trainClips, n) }
    let result = CaptionArmResult(
      arm: arm.name, mode: arm.mode.rawValue, video: arm.video,
      trainable: captioner.trainableParameterCount, trainClips: trainClips, history: history,
      trainSeconds: trainSeconds, evalSeconds: evalSeconds, peakRSSMiB: nil,
      scores: Dictionary(uniqueKeysWithValues: scores.named), actionNamed: named.named,
      actionCounted: named.of, distinctCaptions: Set(hypotheses.map(\.caption)).count,
      captions: hypotheses, settings: nil)
    if let out { try write(result, to: out) }
    return result
  }

  /// Writes `result.json` into `folder`, atomically.
  public static func write(_ result: CaptionArmResult, to folder: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try AtomicFile.write(
      encoder.encode(result) + Data("\n".utf8), to: folder.appendingPathComponent(resultFile))
  }

  /// Reads the `result.json` of a finished arm, or nil when there is none. Throws
  /// `CaptionError.badAdapter` for a file that is not one.
  public static func readResult(in folder: URL) throws -> CaptionArmResult? {
    let url = folder.appendingPathComponent(resultFile)
    guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
    do {
      return try JSONDecoder().decode(CaptionArmResult.self, from: data)
    } catch {
      throw CaptionError(.badAdapter, "\(url.path): not a captioning arm's result: \(error)")
    }
  }
}
