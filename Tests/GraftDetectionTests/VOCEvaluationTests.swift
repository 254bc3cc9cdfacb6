import Foundation
import XCTest

@testable import GraftDetection

final class VOCEvaluationTests: XCTestCase {
  func testAPMatchesTheDevkitComputation() throws {
    for name in ["mixed", "random1", "random2", "labelme"] {
      let gtPath = name == "labelme" ? "labelme/annotations.json" : "scores/\(name)_gt.json"
      let truth = try COCOAnnotations.load(path: fixturePath(gtPath), checkBoxes: false)
      let found = try COCOResults.load(
        path: fixturePath("scores/\(name)_dt.json"), groundTruth: truth)
      let voc = try ExpectedScores.load(name).voc
      for (key, offset) in [("offset0", 0.0), ("offset1", 1.0)] {
        let want = voc[key]!
        let got = VOCEvaluation.evaluate(
          groundTruth: truth, detections: found, pixelOffset: offset)
        let label = "\(name) \(key)"
        XCTAssertEqual(got.meanAP.bitPattern, want.mAP.bitPattern, "\(label) mAP \(got.meanAP)")
        XCTAssertEqual(
          got.meanAP11.bitPattern, want.mAP11.bitPattern, "\(label) mAP11 \(got.meanAP11)")
        for (id, ap) in want.ap {
          XCTAssertEqual(
            got.averagePrecision[Int(id)!]?.bitPattern, ap.bitPattern, "\(label) \(id)")
        }
        for (id, ap) in want.ap11 {
          XCTAssertEqual(
            got.averagePrecision11[Int(id)!]?.bitPattern, ap.bitPattern, "\(label) \(id)")
        }
      }
    }
  }

  func testDifficultBoxesAreNeitherCountedNorPenalised() {
    let easy = BoundingBox(x: 0, y: 0, width: 10, height: 10)
    let hard = BoundingBox(x: 50, y: 50, width: 10, height: 10)
    func dataset(hardIsDifficult: Bool) -> DetectionDataset {
      DetectionDataset(
        categories: [DetectionCategory(id: 1, name: "a")],
        images: [
          AnnotatedImage(
            id: 1, fileName: "", width: 100, height: 100,
            annotations: [
              BoxAnnotation(id: 1, categoryID: 1, box: easy),
              BoxAnnotation(id: 2, categoryID: 1, box: hard, isDifficult: hardIsDifficult),
            ])
        ])
    }
    let found = [
      Detection(imageID: 1, categoryID: 1, box: hard, score: 0.9),
      Detection(imageID: 1, categoryID: 1, box: easy, score: 0.8),
    ]
    let withDifficult = VOCEvaluation.evaluate(
      groundTruth: dataset(hardIsDifficult: true), detections: found)
    XCTAssertEqual(withDifficult.meanAP, 1)
    // Eleven additions of 1/11, as voc_ap makes them.
    XCTAssertEqual(withDifficult.meanAP11, 1, accuracy: 1e-15)
    // Missing the easy box instead: recall 0.
    let missed = VOCEvaluation.evaluate(
      groundTruth: dataset(hardIsDifficult: true), detections: [found[0]])
    XCTAssertEqual(missed.meanAP, 0)
    // Not difficult, both boxes count: still perfect, with recall over two boxes.
    XCTAssertEqual(
      VOCEvaluation.evaluate(groundTruth: dataset(hardIsDifficult: false), detections: [found[0]])
        .meanAP, 0.5)
  }

  func testElevenPointAndAreaDiffer() {
    // Recall 0.5 at precision 1, then recall 1 at precision 0.5.
    let recall = [0.5, 0.5, 1.0, 1.0]
    let precision = [1.0, 0.5, 2.0 / 3.0, 0.5]
    XCTAssertEqual(
      VOCEvaluation.areaAP(recall, precision), 0.5 + 0.5 * (2.0 / 3.0), accuracy: 1e-15)
    XCTAssertEqual(
      VOCEvaluation.elevenPointAP(recall, precision), (6 + 5 * (2.0 / 3.0)) / 11, accuracy: 1e-15)
  }
}
