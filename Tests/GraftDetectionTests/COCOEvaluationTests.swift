import Foundation
import XCTest

@testable import GraftDetection

/// Fixtures from Tools/make_detection_score_fixtures.py (pycocotools' numbers).
let detectionFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

func fixturePath(_ relative: String) -> String {
  detectionFixtures.appendingPathComponent(relative).path
}

/// A case's `_expected.json`, read by JSONDecoder (which rounds decimals exactly).
struct ExpectedScores: Decodable {
  struct VOC: Decodable {
    var ap: [String: Double]
    var ap11: [String: Double]
    var mAP: Double
    var mAP11: Double
  }
  var coco: [Double]
  var voc: [String: VOC]

  static func load(_ name: String) throws -> ExpectedScores {
    let url = URL(fileURLWithPath: fixturePath("scores/\(name)_expected.json"))
    return try JSONDecoder().decode(ExpectedScores.self, from: Data(contentsOf: url))
  }
}

/// The ground truth and detections of one fixture case.
private func load(_ name: String) throws -> (DetectionDataset, [Detection]) {
  let gtPath = name == "labelme" ? "labelme/annotations.json" : "scores/\(name)_gt.json"
  let truth = try COCOAnnotations.load(path: fixturePath(gtPath), checkBoxes: false)
  let found = try COCOResults.load(
    path: fixturePath("scores/\(name)_dt.json"), groundTruth: truth)
  return (truth, found)
}

final class COCOEvaluationTests: XCTestCase {
  private let cases = ["mixed", "random1", "random2", "labelme"]

  func testTwelveNumbersMatchPycocotools() throws {
    for name in cases {
      let (truth, found) = try load(name)
      let want = try ExpectedScores.load(name).coco
      let got = COCOBoxEvaluation.evaluate(groundTruth: truth, detections: found).stats
      XCTAssertEqual(got.count, 12)
      for (k, (a, b)) in zip(got, want).enumerated() {
        let label = "\(name) \(COCOBoxScores.names[k])"
        XCTAssertEqual(a, b, accuracy: 1e-6, label)
        // Every step follows pycocotools' arithmetic; flag any drift at all.
        XCTAssertEqual(a.bitPattern, b.bitPattern, "\(label): \(a) vs \(b), not bit-identical")
      }
    }
  }

  func testFixtureExercisesEveryRule() throws {
    let (truth, found) = try load("mixed")
    let annotations = truth.images.flatMap(\.annotations)
    XCTAssertTrue(annotations.contains { $0.isCrowd })
    XCTAssertTrue(annotations.contains { $0.id == 0 })
    XCTAssertTrue(
      annotations.contains { $0.area == 1024 } && annotations.contains { $0.area == 9216 })
    XCTAssertTrue(truth.images.contains { $0.annotations.isEmpty })
    let scored = Set(found.map(\.imageID))
    XCTAssertTrue(truth.images.contains { !$0.annotations.isEmpty && !scored.contains($0.id) })
    XCTAssertGreaterThan(found.filter { $0.imageID == 25 && $0.categoryID == 2 }.count, 100)
    XCTAssertLessThan(Set(found.map(\.score)).count, found.count, "no tied scores")
    // Undefined numbers stay -1 and are left out of the means: a category without ground truth.
    let e = COCOBoxEvaluation.accumulate(groundTruth: truth, detections: found)
    let k = e.categoryIDs.firstIndex(of: 7)!
    XCTAssertEqual(e.precision[0][0][k][0][2], -1)
    XCTAssertEqual(e.recall[0][k][0][2], -1)
  }

  func testPerfectDetectionsScoreOneAndUndefinedRangesMinusOne() {
    let boxes = [
      BoundingBox(x: 0, y: 0, width: 50, height: 50),
      BoundingBox(x: 60, y: 60, width: 40, height: 40),
    ]
    let truth = DetectionDataset(
      categories: [DetectionCategory(id: 1, name: "a")],
      images: [
        AnnotatedImage(
          id: 1, fileName: "", width: 0, height: 0,
          annotations: boxes.enumerated().map { BoxAnnotation(id: $0 + 1, categoryID: 1, box: $1) })
      ])
    let found = boxes.map { Detection(imageID: 1, categoryID: 1, box: $0, score: 0.9) }
    let s = COCOBoxEvaluation.evaluate(groundTruth: truth, detections: found).stats
    // AP, AP50, AP75, APm (both boxes are medium), AR10, AR100, ARm: perfect.
    for k in [0, 1, 2, 4, 7, 8, 10] { XCTAssertEqual(s[k], 1, COCOBoxScores.names[k]) }
    // No small or large ground truth: undefined.
    for k in [3, 5, 9, 11] { XCTAssertEqual(s[k], -1, COCOBoxScores.names[k]) }
    // One detection per image finds one of two boxes.
    XCTAssertEqual(s[6], 0.5)
  }

  func testCrowdRegionAbsorbsDetectionsWithoutPenalty() {
    let truth = DetectionDataset(
      categories: [DetectionCategory(id: 1, name: "a")],
      images: [
        AnnotatedImage(
          id: 1, fileName: "", width: 0, height: 0,
          annotations: [
            BoxAnnotation(
              id: 1, categoryID: 1, box: BoundingBox(x: 0, y: 0, width: 20, height: 20)),
            BoxAnnotation(
              id: 2, categoryID: 1, box: BoundingBox(x: 100, y: 0, width: 200, height: 200),
              isCrowd: true),
          ])
      ])
    var found = [
      Detection(imageID: 1, categoryID: 1, box: truth.images[0].annotations[0].box, score: 0.5)
    ]
    let alone = COCOBoxEvaluation.evaluate(groundTruth: truth, detections: found).stats[0]
    // Detections inside the crowd, scored above the true positive: ignored, not false positives.
    for i in 0..<5 {
      found.append(
        Detection(
          imageID: 1, categoryID: 1,
          box: BoundingBox(x: 110 + Double(i) * 30, y: 10, width: 25, height: 25),
          score: 0.9))
    }
    XCTAssertEqual(
      COCOBoxEvaluation.evaluate(groundTruth: truth, detections: found).stats[0], alone)
    // The same detections without the crowd region are false positives ahead of the match.
    var plain = truth
    plain.images[0].annotations.removeLast()
    XCTAssertLessThan(
      COCOBoxEvaluation.evaluate(groundTruth: plain, detections: found).stats[0], alone)
  }

  func testIoUWithCrowdDividesByTheDetectionsArea() {
    let d = BoundingBox(x: 0, y: 0, width: 10, height: 10)
    let g = BoundingBox(x: 5, y: 0, width: 100, height: 100)
    XCTAssertEqual(COCOBoxEvaluation.iou(d, g, crowd: true), 0.5)
    XCTAssertEqual(COCOBoxEvaluation.iou(d, g, crowd: false), 50.0 / (100 + 10000 - 50))
    XCTAssertEqual(
      COCOBoxEvaluation.iou(d, BoundingBox(x: 10, y: 0, width: 5, height: 5), crowd: false), 0)
  }

  func testThresholdsAreNumpysLinspace() {
    XCTAssertEqual(COCOBoxEvaluation.iouThresholds.count, 10)
    XCTAssertEqual(COCOBoxEvaluation.iouThresholds[5], 0.75)
    XCTAssertEqual(COCOBoxEvaluation.recallThresholds.count, 101)
    // i * 0.01, not i / 100: numpy's linspace multiplies by the step.
    XCTAssertEqual(COCOBoxEvaluation.recallThresholds[35], 35 * 0.01)
    XCTAssertNotEqual(35 * 0.01, 35.0 / 100)
  }

  func testPairwiseSumDiffersFromALeftFoldLikeNumpy() {
    // numpy sums in eight lanes; a plain left fold rounds differently on these.
    var values: [Double] = []
    for i in 0..<100 {
      let step: Double = 0.1 * Double(i % 7)
      values.append(step + 1e-3 / Double(i + 1))
    }
    let fold = values.reduce(0, +)
    let pairwise = NumpyArithmetic.sum(values)
    XCTAssertEqual(pairwise, fold, accuracy: 1e-12)
    var lanes = Array(values[0..<8])
    for i in stride(from: 8, to: 96, by: 8) { for j in 0..<8 { lanes[j] += values[i + j] } }
    let left: Double = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    let right: Double = (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    var expected = left + right
    for i in 96..<100 { expected += values[i] }
    XCTAssertEqual(pairwise, expected)
  }
}
