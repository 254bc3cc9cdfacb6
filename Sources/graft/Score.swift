import ArgumentParser
import Foundation
import GraftText

/// `graft score`: scores model outputs against references.
struct ScoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "score",
    abstract: "Score model outputs against references.",
    subcommands: [ScoreCaptions.self])
}

/// `graft score captions`: BLEU-1…4, ROUGE-L and CIDEr-D as the COCO caption evaluation code
/// computes them.
struct ScoreCaptions: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "captions",
    abstract: "BLEU-1..4, ROUGE-L and CIDEr-D of generated captions (COCO caption evaluation).",
    discussion: """
      Captions are lower-cased and tokenised as pycocoevalcap's PTBTokenizer does, then scored \
      with its definitions: corpus BLEU (closest reference length), ROUGE-L (beta 1.2, mean over \
      videos) and CIDEr-D (sigma 6, x10, document frequencies from the scored videos' \
      references). The scored videos are those with a hypothesis; videos that have references \
      but no hypothesis are left out and listed on standard error.
      """)

  @Option(
    help: ArgumentHelp(
      "References, MSR-VTT style: {\"sentences\": [{\"video_id\", \"caption\"}, ...]}.",
      valueName: "refs.json"))
  var refs: String

  @Option(
    help: ArgumentHelp(
      "Hypotheses: a list of {\"video_id\", \"caption\"}, one per video.",
      valueName: "hyps.json"))
  var hyps: String

  @OptionGroup var jsonFlag: JSONFlag

  func run() throws {
    // A CaptionScoreInputError names the file and what is wrong with it; ArgumentParser prints
    // it as "Error: …" and exits with status 1.
    let input = try CaptionScoreInput.load(referencesPath: refs, hypothesesPath: hyps)
    if !input.unscoredVideos.isEmpty {
      let shown = input.unscoredVideos.prefix(5).joined(separator: ", ")
      let more = input.unscoredVideos.count > 5 ? ", …" : ""
      FileHandle.standardError.write(
        Data(
          ("note: \(input.unscoredVideos.count) video(s) with references but no hypothesis "
            + "are not scored (\(shown)\(more))\n").utf8))
    }
    let scores = input.score()
    if jsonFlag.json {
      // Keys in the documented order; Double's description is the shortest round-trip form.
      let body = scores.named.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ")
      print("{\(body)}")
    } else {
      print("Caption scores over \(input.videoIDs.count) videos (COCO caption evaluation)")
      for (name, value) in scores.named {
        let label = name.padding(toLength: 8, withPad: " ", startingAt: 0)
        print("  \(label) \(String(format: "%.4f", value))")
      }
    }
  }
}
