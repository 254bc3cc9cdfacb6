import Foundation

/// A captioned clip set (`graft data prepare clips` output, or any MSR-VTT-style annotation
/// file) with its videos resolved to files.
public struct CaptionClips: Sendable {
  /// One video with its reference captions.
  public struct Entry: Sendable, Equatable {
    /// Its id.
    public var videoID: String
    /// The video file.
    public var url: URL
    /// Its reference captions (at least one).
    public var captions: [String]
    /// Its class label (an action of `ClipSetGenerator.actions` for Graft's clip set), if any.
    public var label: String?
  }

  /// The annotation file.
  public let annotations: URL
  /// The parsed annotations.
  public let set: CaptionedClipSet

  /// Reads `path`: an annotation JSON file, or a folder holding `annotations.json`. Video
  /// files are relative to the annotation file's folder. Throws `FileError` for a missing or
  /// malformed file.
  public init(path: URL) throws {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isFolder) else {
      throw FileError(path: path.path, message: "no such clip set (a folder or annotation JSON)")
    }
    annotations = isFolder.boolValue ? path.appendingPathComponent("annotations.json") : path
    guard FileManager.default.fileExists(atPath: annotations.path) else {
      throw FileError(path: annotations.path, message: "no such annotation file")
    }
    set = try CaptionedClipSet(contentsOf: annotations)
  }

  /// Whether a video's split is `split` (`val` also matches MSR-VTT's `validate`).
  static func matches(_ given: String?, _ split: String) -> Bool {
    guard let given else { return false }
    let aliases: [String: Set<String>] = [
      "val": CaptionedClipSet.validationNames, "validate": CaptionedClipSet.validationNames,
    ]
    return aliases[split]?.contains(given) ?? (given == split)
  }

  /// The videos of `split` that have at least one caption, in file order.
  public func entries(split: String) -> [Entry] {
    let captions = set.captionsByVideo
    let folder = annotations.deletingLastPathComponent()
    return set.videos.compactMap { v in
      guard Self.matches(v.split, split), let refs = captions[v.videoID], !refs.isEmpty else {
        return nil
      }
      return Entry(
        videoID: v.videoID, url: folder.appendingPathComponent(v.file ?? v.videoID + ".mp4"),
        captions: refs, label: v.label)
    }
  }
}
