import Foundation
import GraftTensor

/// Why `graft score captions` could not read its inputs.
public enum CaptionScoreInputError: Error, Equatable, CustomStringConvertible {
  /// The file does not exist.
  case fileMissing(path: String)
  /// The file exists but could not be read.
  case unreadable(path: String, reason: String)
  /// The file is not JSON.
  case notJSON(path: String, reason: String)
  /// The JSON is not laid out as expected (say which entry and which key).
  case badLayout(path: String, reason: String)
  /// The hypotheses file has no entries.
  case noHypotheses(path: String)
  /// Two hypotheses for one video in the hypotheses file `path` (the COCO scorers take exactly
  /// one per video).
  case duplicateHypothesis(path: String, videoID: String)
  /// A hypothesis in `path` for a video that the references file `references` has no caption
  /// for.
  case hypothesisWithoutReferences(path: String, references: String, videoID: String)

  /// The message, naming the file or the video.
  public var description: String {
    switch self {
    case .fileMissing(let path): return "\(path): no such file"
    case .unreadable(let path, let reason): return "\(path): cannot read it (\(reason))"
    case .notJSON(let path, let reason): return "\(path): not JSON (\(reason))"
    case .badLayout(let path, let reason): return "\(path): \(reason)"
    case .noHypotheses(let path): return "\(path): no hypotheses to score"
    case .duplicateHypothesis(let path, let id):
      return "\(path): video \(id) has more than one hypothesis; give exactly one caption per video"
    case .hypothesisWithoutReferences(let path, let references, let id):
      return "\(path): video \(id) has a hypothesis but no reference caption in \(references)"
    }
  }
}

/// The captions `graft score captions` scores: MSR-VTT-style references
/// (`{"sentences": [{"video_id", "caption"}, …]}`, other keys such as `"videos"` ignored) and a
/// list of hypotheses (`[{"video_id", "caption"}, …]`), one per video.
///
/// Videos are scored in the order of the hypotheses file, each with its references in file
/// order. As in the COCO caption evaluation code, which scores the ids of the results it is
/// given, the scored set is the videos that have a hypothesis: videos with references but no
/// hypothesis are left out (listed in `unscoredVideos`), and CIDEr's document frequencies and
/// its `log(number of videos)` come from the scored videos' references only. A hypothesis with
/// no references is an error. Video ids may be strings or integers; an integer id is the same
/// video as its decimal string.
public struct CaptionScoreInput: Equatable, Sendable {
  /// The scored videos, in the hypotheses file's order.
  public var videoIDs: [String]
  /// One raw hypothesis per scored video.
  public var hypotheses: [String]
  /// The raw references of each scored video.
  public var references: [[String]]
  /// Videos with references but no hypothesis, in the references file's order (not scored).
  public var unscoredVideos: [String]

  /// Reads and checks the two files.
  public static func load(referencesPath: String, hypothesesPath: String) throws
    -> CaptionScoreInput
  {
    try parse(
      references: read(referencesPath), referencesName: referencesPath,
      hypotheses: read(hypothesesPath), hypothesesName: hypothesesPath)
  }

  /// Checks and pairs up the two files' contents; the names are for the error messages.
  public static func parse(
    references: Data, referencesName: String, hypotheses: Data, hypothesesName: String
  ) throws -> CaptionScoreInput {
    let refs = try decode(ReferencesFile.self, references, name: referencesName).sentences
    let hyps = try decode([Entry].self, hypotheses, name: hypothesesName)
    guard !hyps.isEmpty else { throw CaptionScoreInputError.noHypotheses(path: hypothesesName) }

    var byVideo: [String: [String]] = [:]
    var referenceOrder: [String] = []
    for r in refs {
      if byVideo[r.videoID] == nil { referenceOrder.append(r.videoID) }
      byVideo[r.videoID, default: []].append(r.caption)
    }
    var seen = Set<String>()
    var input = CaptionScoreInput(videoIDs: [], hypotheses: [], references: [], unscoredVideos: [])
    for h in hyps {
      guard seen.insert(h.videoID).inserted else {
        throw CaptionScoreInputError.duplicateHypothesis(path: hypothesesName, videoID: h.videoID)
      }
      guard let r = byVideo[h.videoID] else {
        throw CaptionScoreInputError.hypothesisWithoutReferences(
          path: hypothesesName, references: referencesName, videoID: h.videoID)
      }
      input.videoIDs.append(h.videoID)
      input.hypotheses.append(h.caption)
      input.references.append(r)
    }
    input.unscoredVideos = referenceOrder.filter { !seen.contains($0) }
    return input
  }

  /// The scores of the paired captions.
  public func score() -> CaptionScores {
    CaptionMetrics.score(hypotheses: hypotheses, references: references)
  }

  // MARK: - Files

  private struct Entry: Decodable {
    var videoID: String
    var caption: String

    enum CodingKeys: String, CodingKey {
      case videoID = "video_id"
      case caption
    }

    init(from decoder: Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      if let s = try? c.decode(String.self, forKey: .videoID) {
        videoID = s
      } else {
        videoID = String(try c.decode(Int.self, forKey: .videoID))
      }
      caption = try c.decode(String.self, forKey: .caption)
    }
  }

  private struct ReferencesFile: Decodable {
    var sentences: [Entry]
  }

  private static func read(_ path: String) throws -> Data {
    guard FileManager.default.fileExists(atPath: path) else {
      throw CaptionScoreInputError.fileMissing(path: path)
    }
    do {
      return try MappedFile.contents(of: URL(fileURLWithPath: path))
    } catch {
      throw CaptionScoreInputError.unreadable(path: path, reason: error.message)
    }
  }

  private static func decode<T: Decodable>(_ type: T.Type, _ data: Data, name: String) throws
    -> T
  {
    do {
      _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
      throw CaptionScoreInputError.notJSON(path: name, reason: error.localizedDescription)
    }
    do {
      return try JSONDecoder().decode(type, from: data)
    } catch let error as DecodingError {
      throw CaptionScoreInputError.badLayout(path: name, reason: describe(error, expecting: type))
    }
  }

  /// A one-line account of where the JSON departs from the expected layout.
  private static func describe<T>(_ error: DecodingError, expecting: T.Type) -> String {
    let wanted =
      T.self == ReferencesFile.self
      ? #"expected {"sentences": [{"video_id", "caption"}, …]}"#
      : #"expected a list of {"video_id", "caption"}"#
    func path(_ keys: [CodingKey]) -> String {
      keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
    func place(_ keys: [CodingKey]) -> String {
      keys.isEmpty ? "top level" : path(keys)
    }
    switch error {
    case .keyNotFound(let key, let ctx):
      return "\(wanted); missing \"\(key.stringValue)\" at \(place(ctx.codingPath))"
    case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
      return "\(wanted); wrong type at \(place(ctx.codingPath))"
    @unknown default:
      return wanted
    }
  }
}
