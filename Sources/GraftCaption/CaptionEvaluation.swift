import Foundation

/// Captions for a split of a clip set and their scores against its references.
public enum CaptionEvaluation {
  /// One generated caption.
  public struct Hypothesis: Codable, Sendable, Equatable {
    /// The video.
    public var videoID: String
    /// Its generated caption.
    public var caption: String

    enum CodingKeys: String, CodingKey {
      case videoID = "video_id"
      case caption
    }
  }

  /// The captions of every video of `split` (frames by PLLaVA's eval rule) and their BLEU-1..4,
  /// ROUGE-L and CIDEr-D against the references (`CaptionMetrics`). Throws
  /// `CaptionError.noData` for an empty split and `VideoError` for a video that fails to
  /// decode.
  public static func run(
    _ captioner: PLLaVACaptioner, data: CaptionClips, split: String, beams: Int = 1,
    lengthPenalty: Float = 1, progress: ((Int, Int) -> Void)? = nil
  ) throws -> (hypotheses: [Hypothesis], scores: CaptionScores) {
    let entries = data.entries(split: split)
    guard !entries.isEmpty else {
      throw CaptionError(.noData, "\(data.annotations.path): no '\(split)' videos with captions")
    }
    var hypotheses: [Hypothesis] = []
    for (i, e) in entries.enumerated() {
      let frames = try VideoDecoding.sample(
        e.url, count: captioner.config.frames, sampling: .pllava)
      let caption = try captioner.caption([frames], beams: beams, lengthPenalty: lengthPenalty)[0]
      hypotheses.append(Hypothesis(videoID: e.videoID, caption: caption))
      progress?(i + 1, entries.count)
    }
    let scores = CaptionMetrics.score(
      hypotheses: hypotheses.map(\.caption), references: entries.map(\.captions))
    return (hypotheses, scores)
  }
}
