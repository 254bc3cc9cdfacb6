import Foundation

/// How well a clip's action can be read from what the captioner sees: a linear probe (softmax
/// regression) on the frozen encoder's tokens of each clip's frames, pooled to the captioner's
/// `pool` (t, h, w) as its visual prefix is (before the projector), trained on the `train`
/// split's labelled clips and scored on `test`'s.
///
/// A caption that names its clip's action (`ActionMentions`) needs the action in the prefix;
/// the probe says how much of it is there, so `graft demo video` can set a captioner's "action
/// named" count against the same tokens' ceiling. The features keep the pooled tokens' order
/// (t·h·w·D values per clip), so an action and its reverse stay apart. Deterministic: frames by
/// PLLaVA's eval rule, features standardised on the training clips, a full-batch AdamW head.
public struct ActionProbe: Codable, Sendable, Equatable {
  /// The action labels of the training clips, in label order (the head's classes).
  public var classes: [String]
  /// Labelled training clips.
  public var trainClips: Int
  /// Labelled test clips.
  public var testClips: Int
  /// Test clips whose action the probe predicts.
  public var testCorrect: Int
  /// Features per clip (t·h·w·D).
  public var width: Int

  /// `testCorrect / testClips`.
  public var accuracy: Double { Double(testCorrect) / Double(max(testClips, 1)) }

  enum CodingKeys: String, CodingKey {
    case classes, width
    case trainClips = "train_clips"
    case testClips = "test_clips"
    case testCorrect = "test_correct"
  }

  /// Full-batch steps of the head.
  public static let steps = 200

  /// Probes `data` with the visual input of a captioner of `config` on `backbone`: its frame
  /// encoder (`PLLaVACaptioner.frameEncoder`), `method.frames` frames, pooled to `method.pool`.
  public static func measure(
    _ data: CaptionClips, backbone: TuneBackbone, config: PLLaVAConfig, seed: UInt64 = 0
  ) throws -> ActionProbe {
    try measure(
      data, encoder: PLLaVACaptioner.frameEncoder(backbone: backbone, config: config),
      frames: config.frames, pool: config.poolShape, seed: seed)
  }

  /// Probes `data` through `encoder` with `frames` frames per clip pooled to `pool`. Throws
  /// `CaptionError.noData` when the train or test split has no clip with an action label (or a
  /// test label the training clips lack), `VideoError` for a video that fails to decode.
  public static func measure(
    _ data: CaptionClips, encoder: FrameEncoder, frames: Int, pool: (Int, Int, Int),
    seed: UInt64 = 0
  ) throws -> ActionProbe {
    let train = data.entries(split: "train").filter { $0.label != nil }
    let test = data.entries(split: "test").filter { $0.label != nil }
    guard !train.isEmpty, !test.isEmpty else {
      throw CaptionError(
        .noData,
        "\(data.annotations.path): the action probe needs clips with a label in both the "
          + "'train' and the 'test' split (train \(train.count), test \(test.count))")
    }
    let classes = Array(Set(train.compactMap(\.label))).sorted()
    let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    if let unseen = test.first(where: { index[$0.label!] == nil }) {
      throw CaptionError(
        .noData,
        "\(data.annotations.path): test clip \(unseen.videoID) has action '\(unseen.label!)', "
          + "which no training clip has")
    }
    let trainFeatures = try features(train, encoder: encoder, frames: frames, pool: pool)
    let testFeatures = try features(test, encoder: encoder, frames: frames, pool: pool)
    let width = trainFeatures.shape[1]
    // Standardised with the training clips' mean and spread, so one rate suits any backbone.
    let mean = trainFeatures.mean(axis: 0, keepDims: true)
    let spread = (trainFeatures.variance(axes: [0], correction: 0, keepDims: true) + 1e-8).sqrt()
    let x = (trainFeatures - mean) / spread
    let y = train.map { index[$0.label!]! }
    var generator = RandomGenerator(seed: seed)
    let head = Linear(width, classes.count, generator: &generator)
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: head.namedParameters(), lr: 1e-2, weightDecay: 1e-2))
    for _ in 0..<steps {
      let loss = head(x).crossEntropy(targets: y)
      optimizer.zeroGrad()
      loss.backward()
      optimizer.step()
    }
    let predicted = withNoGrad { head((testFeatures - mean) / spread) }.argmax(axis: 1)
    let correct = zip(predicted, test).filter { $0 == index[$1.label!]! }.count
    return ActionProbe(
      classes: classes, trainClips: train.count, testClips: test.count, testCorrect: correct,
      width: width)
  }

  /// Pooled tokens of `entries`, [clips, t·h·w·D], a few clips per encoder batch.
  static func features(
    _ entries: [CaptionClips.Entry], encoder: FrameEncoder, frames: Int, pool: (Int, Int, Int)
  ) throws -> Tensor {
    var rows: [Tensor] = []
    for start in stride(from: 0, to: entries.count, by: 16) {
      let clips = try entries[start..<min(start + 16, entries.count)].map {
        try VideoDecoding.sample($0.url, count: frames, sampling: .pllava)
      }
      let pooled = withNoGrad { encoder.encode(clips, pool: pool).pooled }
      rows.append(pooled.reshaped([clips.count, pooled.count / clips.count]))
    }
    return Tensor.concat(rows, axis: 0)
  }
}
