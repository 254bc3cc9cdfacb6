import ArgumentParser
import Foundation
import GraftDetection
import GraftText

/// `graft score`: scores model outputs against references.
struct ScoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "score",
    abstract: "Score model outputs against references.",
    subcommands: [ScoreCaptions.self, ScoreDetections.self])
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

/// `graft score detections`: COCO's twelve box scores as pycocotools computes them, or VOC's AP.
struct ScoreDetections: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "detections",
    abstract: "COCO box AP/AR (pycocotools' COCOeval) or VOC AP of detections.",
    discussion: """
      --metric coco (the default) prints the twelve numbers of pycocotools' COCOeval for boxes: \
      AP over IoU 0.50:0.05:0.95, AP50, AP75, AP for small/medium/large objects (by the \
      annotation's area), AR with 1/10/100 detections per image and AR by size; -1 where \
      there is no ground truth to measure on. --metric voc prints VOC's AP at IoU 0.5 per \
      category and its mean, by the area under the precision envelope (mAP) and by VOC 2007's \
      11 points (mAP11); difficult objects and crowd regions are neither counted nor \
      penalised. Every image and category of the ground truth is scored; detections of \
      images or categories it does not list are an error.
      """)

  @Option(
    help: ArgumentHelp(
      "Ground truth, a COCO annotation file (images, annotations, categories).",
      valueName: "gt.json"))
  var gt: String

  @Option(
    help: ArgumentHelp(
      "Detections, COCO's result format: [{\"image_id\", \"category_id\", \"bbox\", \"score\"}].",
      valueName: "dets.json"))
  var dt: String

  @Option(help: "coco (the twelve COCO numbers) or voc (VOC AP at IoU 0.5).")
  var metric: DetectionMetric = .coco

  @Flag(
    help: ArgumentHelp(
      "With --metric voc, the VOC devkit's integer-pixel convention (extents x2 - x1 + 1)."))
  var vocPixelOffset = false

  @OptionGroup var jsonFlag: JSONFlag

  func run() throws {
    // A DetectionError names the file and what is wrong; ArgumentParser prints it as "Error: …".
    // Boxes are not checked against image sizes, as pycocotools does not check them.
    let truth = try COCOAnnotations.load(path: gt, checkBoxes: false)
    let detections = try COCOResults.load(path: dt, groundTruth: truth)
    switch metric {
    case .coco:
      let scores = COCOBoxEvaluation.evaluate(groundTruth: truth, detections: detections)
      if jsonFlag.json {
        // Keys in COCOeval.stats order; Double's description is the shortest round-trip form.
        print("{" + scores.named.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
      } else {
        print(
          "COCO box scores: \(truth.images.count) images, \(truth.annotationCount) boxes, "
            + "\(detections.count) detections")
        for (name, value) in scores.named {
          print("  \(name.padding(toLength: 6, withPad: " ", startingAt: 0)) \(format(value))")
        }
      }
    case .voc:
      let scores = VOCEvaluation.evaluate(
        groundTruth: truth, detections: detections, pixelOffset: vocPixelOffset ? 1 : 0)
      if jsonFlag.json {
        print("{\"mAP\": \(scores.meanAP), \"mAP11\": \(scores.meanAP11)}")
      } else {
        print("VOC AP at IoU 0.5: mAP \(format(scores.meanAP)), mAP11 \(format(scores.meanAP11))")
        for category in truth.categories {
          let ap = scores.averagePrecision[category.id] ?? -1
          let ap11 = scores.averagePrecision11[category.id] ?? -1
          print("  \(category.name): AP \(format(ap)), AP11 \(format(ap11))")
        }
      }
    }
  }

  private func format(_ value: Double) -> String {
    value < 0 ? "-1 (undefined)" : String(format: "%.4f", value)
  }
}

/// The scores `graft score detections` computes.
enum DetectionMetric: String, ExpressibleByArgument, CaseIterable {
  case coco
  case voc
}
