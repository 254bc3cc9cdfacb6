import XCTest

@testable import GraftDetection

final class FCOSDatasetBridgeTests: XCTestCase {
  private let categories = [
    DetectionCategory(id: 3, name: "cat"), DetectionCategory(id: 7, name: "dog"),
  ]

  func testTargetsDropCrowdsAndEmptyBoxesAndIndexCategories() throws {
    let image = AnnotatedImage(
      id: 1, fileName: "a.png", width: 100, height: 50,
      annotations: [
        BoxAnnotation(id: 1, categoryID: 7, box: BoundingBox(x: 10, y: 5, width: 20, height: 10)),
        BoxAnnotation(
          id: 2, categoryID: 3, box: BoundingBox(x: 0, y: 0, width: 50, height: 50), isCrowd: true),
        BoxAnnotation(id: 3, categoryID: 3, box: BoundingBox(x: 40, y: 8, width: 0, height: 10)),
        BoxAnnotation(id: 4, categoryID: 3, box: BoundingBox(x: 60, y: 20, width: 30, height: 25)),
      ])
    let target = try XCTUnwrap(FCOSTarget(image, categories: categories, scale: (2, 0.5)))
    XCTAssertEqual(target.labels, [1, 0])
    XCTAssertEqual(target.boxes, [CornerBox(20, 2.5, 60, 7.5), CornerBox(120, 10, 180, 22.5)])
    var unknown = image
    unknown.annotations[0].categoryID = 5
    XCTAssertNil(FCOSTarget(unknown, categories: categories))
  }

  func testDetectionsBecomeCOCOResultsInImagePixels() {
    let found = FCOSDetections(
      boxes: [CornerBox(20, 2.5, 60, 7.5)], scores: [0.75], labels: [1])
    let results = found.cocoDetections(imageID: 9, categories: categories, scale: (2, 0.5))
    XCTAssertEqual(
      results,
      [
        Detection(
          imageID: 9, categoryID: 7, box: BoundingBox(x: 10, y: 5, width: 20, height: 10),
          score: 0.75)
      ])
  }
}
