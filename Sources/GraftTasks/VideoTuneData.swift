import Foundation
import GraftVideo

/// A rule that picks a clip's frames, as run settings name it (`data.sampling`,
/// `data.train_sampling`).
public enum ClipSampling: String, CaseIterable, Sendable, Codable, OptionValue {
  /// PLLaVA's evaluation rule (`FrameSampling.pllava`).
  case pllava
  /// The middle frame of each of T equal segments (`FrameSampling.middle`).
  case middle
  /// One random frame of each of T equal segments (`FrameSampling.random`), for training.
  case random

  /// The frame rule; `seed` seeds `random`.
  public func rule(seed: UInt64) -> FrameSampling {
    switch self {
    case .pllava: .pllava
    case .middle: .middle
    case .random: .random(seed: seed)
    }
  }
}

/// How a run reads video clips: frames per clip and the sampling rules (recorded in
/// `adapter_config.json` as `video_input`, so evaluation reads clips as the run did).
public struct VideoInput: Codable, Sendable, Equatable {
  /// Frames per clip T.
  public var frames: Int
  /// The rule of evaluation (validation, test, `graft eval`, `graft predict`).
  public var sampling: ClipSampling
  /// The rule of training.
  public var trainSampling: ClipSampling

  /// `frames` frames per clip, picked by `sampling` in evaluation and `trainSampling` in
  /// training.
  public init(
    frames: Int = 8, sampling: ClipSampling = .pllava, trainSampling: ClipSampling = .random
  ) {
    self.frames = frames
    self.sampling = sampling
    self.trainSampling = trainSampling
  }

  enum CodingKeys: String, CodingKey {
    case frames, sampling
    case trainSampling = "train_sampling"
  }
}

extension VideoInput: CustomStringConvertible {
  /// `8 frames, pllava in evaluation, random in training`.
  public var description: String {
    "\(frames) frames, \(sampling.rawValue) in evaluation, \(trainSampling.rawValue) in training"
  }
}

/// A video clip of a tuning task: its file and how the run reads it. The loader's transform
/// decodes it on a worker thread to [T, 3, H, W]; batches are [B, T, 3, H, W], which
/// `TuningMethod` runs frame by frame through the image backbone (`clipLogits`).
public struct ClipSample: Sendable, Equatable {
  /// The video file.
  public var url: URL
  /// How it is read.
  public var input: VideoInput

  /// Wraps the parts.
  public init(url: URL, input: VideoInput) {
    self.url = url
    self.input = input
  }

  /// T frames of the clip by `rule`, each through `transform`: [T, 3, H, W].
  public func frames(rule: FrameSampling, transform: EvalTransform) throws -> Tensor {
    let sampled = try VideoDecoding.sample(
      url, count: input.frames, sampling: rule, threads: 1)
    return transform.batch((0..<sampled.count).map { sampled.image($0) })
  }
}

extension ClipSample: TuneSample {
  /// Every frame through timm's eval transform for the model (as images train); training picks
  /// frames by `trainSampling`, evaluation by `sampling`. A random rule is seeded from the
  /// loader's generator of the clip, which `DataLoader` seeds from the run's seed, the epoch and
  /// the clip's index: the frames do not depend on thread timing, worker count or batch size.
  public static func transforms(for input: BackboneInput) throws -> SampleTransforms<ClipSample> {
    guard case .image(let config) = input else {
      throw ConfigError(
        "the data are video clips, but the run takes point clouds (video runs need an image "
          + "backbone and a method that takes its input)")
    }
    let t = EvalTransform(config: config)
    return SampleTransforms(
      train: { clip, generator in
        try clip.frames(rule: clip.input.trainSampling.rule(seed: generator.next()), transform: t)
      },
      eval: { clip, generator in
        try clip.frames(rule: clip.input.sampling.rule(seed: generator.next()), transform: t)
      })
  }

  /// The clip's middle frame.
  public static func preview(_ sample: ClipSample) -> RGBImage? {
    guard let frames = try? VideoDecoding.sample(sample.url, count: 1, sampling: .middle),
      frames.count == 1
    else { return nil }
    return frames.image(0)
  }
}

/// Labelled clips of a task: a `VideoDataset` whose samples carry the run's `VideoInput`.
public struct ClipDataset: Dataset {
  /// The listed videos.
  public let videos: VideoDataset
  /// How every clip is read.
  public let input: VideoInput

  /// Wraps a listing.
  public init(_ videos: VideoDataset, input: VideoInput) {
    self.videos = videos
    self.input = input
  }

  /// Number of clips.
  public var count: Int { videos.count }
  /// Class names, in label order.
  public var classNames: [String] { videos.classNames }
  /// The label of every clip.
  public var labels: [Int] { videos.labels }
  /// Clip `index` (decoded later, by the loader's transform).
  public func sample(at index: Int) throws -> ClipSample {
    ClipSample(url: videos.files[index], input: input)
  }
}

/// A task of video clips.
public typealias VideoTuneData = TuneData<ClipSample>

extension TuneData where Sample == ClipSample {
  /// The annotation file `spec` names: a `.json` file, or `annotations.json` in a folder (what
  /// `graft data prepare clips` writes); nil when it names neither.
  static func annotations(_ spec: String) -> URL? {
    let url = URL(fileURLWithPath: spec)
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { return nil }
    if !isDir.boolValue { return url.pathExtension.lowercased() == "json" ? url : nil }
    let inside = url.appendingPathComponent("annotations.json")
    return FileManager.default.fileExists(atPath: inside.path) ? inside : nil
  }

  /// Whether `spec` names video data: an annotation file (`annotations(_:)`), or a folder whose
  /// tree (its first 10,000 entries) holds video files and no image. A folder holding both is an
  /// error naming one of each: which kind it meant cannot be told, and deciding by whichever
  /// file a directory walk meets first made the answer change when the folder was copied.
  public static func isVideoData(_ spec: String) throws -> Bool {
    if annotations(spec) != nil { return true }
    let url = URL(fileURLWithPath: spec)
    guard let walk = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)
    else { return false }
    var (video, image): (URL?, URL?) = (nil, nil)
    var seen = 0
    for case let file as URL in walk {
      let ext = file.pathExtension.lowercased()
      if video == nil, VideoDataset.extensions.contains(ext) { video = file }
      if image == nil, ImageFolderDataset.defaultExtensions.contains(ext) { image = file }
      seen += 1
      if seen > 10_000 { break }
    }
    if let video, let image {
      throw DatasetError(
        .invalidFormat, path: url.path,
        "holds both videos (\(video.path)) and images (\(image.path)); a data folder is read as "
          + "one kind: move the other out (thumbnails beside clips, say)")
    }
    return video != nil
  }

  /// Reads the video task `spec` names, every clip read as `input` says:
  /// - an MSR-VTT-style annotation file (`{"videos": [{"video_id", "split", "label"}], …}`,
  ///   MSR-VTT's `category` also serving as the label), or a folder holding `annotations.json`
  ///   (`graft data prepare clips`): its `train`, `val` (or `validate`) and `test` splits;
  ///   missing validation and test splits are cut from training (10 % and 20 %, seed 0), and a
  ///   file without splits is split 70/10/20;
  /// - a folder with `train/` (and optionally `val/`, `test/`) class folders of videos, missing
  ///   splits cut from `train/` as for images;
  /// - any other tree of class folders of videos: split 70/10/20 (seed 0).
  public static func load(_ spec: String, input: VideoInput) throws -> VideoTuneData {
    guard input.frames >= 1 else {
      throw ConfigError("data.frames = \(input.frames): a clip needs at least one frame")
    }
    if let url = annotations(spec) {
      return try load(annotations: url, input: input)
    }
    let url = URL(fileURLWithPath: spec)
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw DatasetError(.invalidArgument, path: url.path, "no such file or folder")
    }
    let trainFolder = url.appendingPathComponent("train")
    guard FileManager.default.fileExists(atPath: trainFolder.path) else {
      let all = ClipDataset(try VideoDataset(folder: url), input: input)
      return try split(all, description: "video folder \(url.path)")
    }
    return try withEvaluationFolders(
      train: ClipDataset(try VideoDataset(folder: trainFolder), input: input), root: url,
      kind: "video", open: { ClipDataset(try VideoDataset(folder: $0), input: input) })
  }

  /// The splits of an MSR-VTT-style annotation file (see `load(_:input:)`).
  static func load(annotations url: URL, input: VideoInput) throws -> VideoTuneData {
    let set = try CaptionedClipSet(contentsOf: url)
    let unlabelled = set.videos.filter { $0.label == nil }
    guard unlabelled.isEmpty else {
      let ids = unlabelled.prefix(3).map { "'\($0.videoID)'" }.joined(separator: ", ")
      throw DatasetError(
        .invalidFormat, path: url.path,
        "\(unlabelled.count) of \(set.videos.count) videos have no label (or category), "
          + "e.g. \(ids): classification needs a label per video")
    }
    let splits = Set(set.videos.compactMap(\.split))
    func part(_ name: String) throws -> ClipDataset? {
      let names: Set<String> = name == "val" ? CaptionedClipSet.validationNames : [name]
      guard !splits.isDisjoint(with: names) else { return nil }
      return ClipDataset(try VideoDataset(annotations: url, split: name), input: input)
    }
    guard let train = try part("train") else {
      guard splits.isEmpty else {
        throw DatasetError(
          .invalidFormat, path: url.path,
          "no video in split 'train' (splits: \(quotedList(splits.sorted())))")
      }
      let all = ClipDataset(try VideoDataset(annotations: url), input: input)
      return try split(all, description: "video annotations \(url.path)")
    }
    let val = try part("val")
    let test = try part("test")
    if let val, let test {
      return try TuneData(
        train: train, validation: val, test: test, description: "video annotations \(url.path)")
    }
    var data = try split(
      train, validationFraction: val == nil ? 0.1 : 0, testFraction: test == nil ? 0.2 : 0,
      description: "video annotations \(url.path), split 'train'")
    if let val { data.validation = val }
    if let test { data.test = test }
    return data
  }
}
