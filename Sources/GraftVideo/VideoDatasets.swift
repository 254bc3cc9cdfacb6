import Foundation
import GraftData
import GraftTensor

/// A video of a dataset, decoded only when the loader's transform runs (on its worker threads).
public struct VideoClip: Sendable, Equatable {
  /// The file.
  public var url: URL

  /// Wraps a file.
  public init(url: URL) { self.url = url }
}

/// Labelled videos for the background `DataLoader`: a class-per-folder tree, or an MSR-VTT-style
/// annotation file whose videos carry a `label` (or MSR-VTT's `category`). Samples are
/// `VideoClip`s; `VideoDatasets.transform` decodes and preprocesses them.
public struct VideoDataset: Dataset {
  /// Extensions of video files in a folder tree.
  public static let extensions: Set<String> = [
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "gif", "mpg", "mpeg", "ogv", "3gp", "flv",
  ]

  /// Class names, in label order.
  public let classNames: [String]
  /// The files, in index order.
  public let files: [URL]
  /// The label of every file.
  public let labels: [Int]

  /// Number of videos.
  public var count: Int { files.count }

  /// The video at `index`.
  public func sample(at index: Int) throws -> VideoClip { VideoClip(url: files[index]) }

  /// Videos under `root/<class>/…` (any depth), classes in code-point order, as
  /// `ImageFolderDataset` lists images.
  public init(folder root: URL) throws {
    let listing: ImageFolderDataset
    do {
      listing = try ImageFolderDataset(root: root, extensions: Self.extensions) { url in
        throw DatasetError(.invalidArgument, path: url.path, "a video, not an image")
      }
    } catch let error as DatasetError {
      // The listing is the image folder's, whose messages speak of images.
      throw DatasetError(
        error.kind, path: error.path, line: error.line,
        error.message.replacingOccurrences(of: "image folder", with: "video folder")
          .replacingOccurrences(of: "<image>", with: "<video>")
          .replacingOccurrences(of: "no image file", with: "no video file"))
    }
    classNames = listing.classNames
    files = listing.files
    labels = listing.labels
  }

  /// The labelled videos of `split` (nil: all; `val` also matches MSR-VTT's `validate`) in an
  /// MSR-VTT-style annotation file; each file is its `file` entry, else `<video_id>.mp4`,
  /// relative to `videos` (default: the annotation file's folder). Classes are the labels of
  /// the whole file in code-point order, so every split numbers them alike.
  public init(annotations url: URL, split: String? = nil, videos: URL? = nil) throws {
    let set = try CaptionedClipSet(contentsOf: url)
    let folder = videos ?? url.deletingLastPathComponent()
    let names = Set(set.videos.compactMap(\.label)).sorted {
      $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars)
    }
    guard !names.isEmpty else {
      throw DatasetError(.empty, path: url.path, "no video has a label (or category)")
    }
    let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
    let wanted: Set<String>? = split.map { $0 == "val" ? CaptionedClipSet.validationNames : [$0] }
    var files: [URL] = []
    var labels: [Int] = []
    for video in set.videos {
      if let wanted, !wanted.contains(video.split ?? "") { continue }
      guard let label = video.label else {
        throw DatasetError(.invalidFormat, path: url.path, "video '\(video.videoID)' has no label")
      }
      files.append(folder.appendingPathComponent(video.file ?? video.videoID + ".mp4"))
      labels.append(index[label]!)
    }
    guard !files.isEmpty else {
      throw DatasetError(.empty, path: url.path, "no video in split '\(split ?? "")'")
    }
    classNames = names
    self.files = files
    self.labels = labels
  }
}

/// Sample transforms of video clips.
public enum VideoDatasets {
  /// Decodes `frames` frames of a clip by `sampling` and preprocesses each with `transform`:
  /// [T, 3, H, W]. With `.random`, the seed comes from the loader's per-sample generator, so
  /// epochs differ and runs repeat. Runs on the loader's worker threads (one decoding thread
  /// each).
  public static func transform(
    frames: Int, sampling: FrameSampling, transform: EvalTransform
  ) -> SampleTransform<VideoClip> {
    { clip, generator in
      var rule = sampling
      if case .random = sampling { rule = .random(seed: generator.next()) }
      let sampled = try VideoDecoding.sample(clip.url, count: frames, sampling: rule, threads: 1)
      return transform.batch((0..<sampled.count).map { sampled.image($0) })
    }
  }
}
