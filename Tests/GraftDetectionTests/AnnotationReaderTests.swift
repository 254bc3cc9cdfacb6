import Foundation
import XCTest

@testable import GraftDetection

/// labelme's class list without its `_background_` line (ids 1…20, as its COCO export).
private func labelmeClasses() throws -> [String] {
  let text = try String(contentsOfFile: fixturePath("labelme/class_names.txt"), encoding: .utf8)
  return text.split(separator: "\n").map(String.init).filter { $0 != "_background_" }
}

private func vocPaths() -> [String] {
  ["2011_000003", "2011_000006", "2011_000025"].map { fixturePath("labelme/\($0).xml") }
}

private func thrown(_ body: () throws -> Any) -> DetectionError? {
  do {
    _ = try body()
    return nil
  } catch let error as DetectionError {
    return error
  } catch {
    return nil
  }
}

final class AnnotationReaderTests: XCTestCase {
  // MARK: - COCO, on labelme's real export

  func testReadsLabelmeCOCOExport() throws {
    let d = try COCOAnnotations.load(path: fixturePath("labelme/annotations.json"))
    XCTAssertEqual(d.categories.count, 21)
    XCTAssertEqual(d.categories[15], DetectionCategory(id: 15, name: "person"))
    XCTAssertEqual(d.images.map(\.id), [0, 1, 2])
    XCTAssertEqual(d.images[0].fileName, "JPEGImages/2011_000003.jpg")
    XCTAssertEqual(d.images[0].width, 500)
    XCTAssertEqual(d.images[0].height, 338)
    XCTAssertEqual(d.annotationCount, 12)
    let first = d.images[0].annotations[0]
    XCTAssertEqual(first.id, 0)
    XCTAssertEqual(first.categoryID, 15)
    XCTAssertEqual(first.box, BoundingBox(x: 191, y: 107, width: 123, height: 221))
    // The area is the segment's (15689), not the box's (27183).
    XCTAssertEqual(first.area, 15689)
    XCTAssertFalse(first.isCrowd)
    // Annotations land on their own image, in file order.
    XCTAssertEqual(d.images[1].annotations.map(\.id), [3, 4, 5])
    XCTAssertEqual(d.images[2].annotations.map(\.categoryID), [15, 15, 15, 9, 15, 18])
  }

  func testMissingImageFileIsNamed() throws {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-detection-\(UUID().uuidString)")
    try FileManager.default.createDirectory(
      at: folder.appendingPathComponent("JPEGImages"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    for name in ["2011_000003.jpg", "2011_000025.jpg"] {
      XCTAssertTrue(
        FileManager.default.createFile(
          atPath: folder.appendingPathComponent("JPEGImages/\(name)").path, contents: Data()))
    }
    let path = fixturePath("labelme/annotations.json")
    let error = thrown { try COCOAnnotations.load(path: path, imagesDirectory: folder.path) }
    XCTAssertEqual(
      error,
      .imageFileMissing(
        path: path, imagePath: folder.appendingPathComponent("JPEGImages/2011_000006.jpg").path))
    XCTAssertTrue(
      FileManager.default.createFile(
        atPath: folder.appendingPathComponent("JPEGImages/2011_000006.jpg").path, contents: Data()))
    XCTAssertNoThrow(try COCOAnnotations.load(path: path, imagesDirectory: folder.path))
  }

  private func coco(_ annotations: String, images: String? = nil) -> Data {
    let imageList = images ?? #"[{"id": 1, "file_name": "a.png", "width": 100, "height": 50}]"#
    return Data(
      #"{"images": \#(imageList), "categories": [{"id": 3, "name": "cat"}], "annotations": \#(annotations)}"#
        .utf8)
  }

  func testCOCOBoxBoundsToleranceIsOnePixel() throws {
    let inside = coco(
      #"[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [-0.9, 0, 100.8, 50.9]}]"#)
    let d = try COCOAnnotations.parse(inside, name: "t.json")
    // No area in the file: the box's.
    XCTAssertEqual(d.images[0].annotations[0].area, 100.8 * 50.9)
    let outside = coco(#"[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 91.5, 5]}]"#)
    guard
      case .boxOutsideImage(let path, let entry, _, 100, 50)? = thrown({
        try COCOAnnotations.parse(outside, name: "t.json")
      })
    else { return XCTFail("a box 1.5 pixel past the right edge was accepted") }
    XCTAssertEqual(path, "t.json")
    XCTAssertEqual(entry, "annotations[0]")
    // Scoring does not check bounds, as pycocotools does not.
    XCTAssertNoThrow(try COCOAnnotations.parse(outside, name: "t.json", checkBoxes: false))
  }

  func testCOCONamedErrors() {
    let unknownCategory = coco(
      #"[{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]}]"#)
    XCTAssertEqual(
      thrown { try COCOAnnotations.parse(unknownCategory, name: "t.json") },
      .unknownCategory(path: "t.json", entry: "annotations[0]", category: "id 4"))
    let unknownImage = coco(#"[{"id": 1, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5]}]"#)
    XCTAssertEqual(
      thrown { try COCOAnnotations.parse(unknownImage, name: "t.json") },
      .unknownImage(path: "t.json", entry: "annotations[0]", imageID: 2))
    let threeNumbers = coco(#"[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5]}]"#)
    guard
      case .malformed(_, let reason)? = thrown({
        try COCOAnnotations.parse(threeNumbers, name: "t.json")
      })
    else { return XCTFail("a three-number bbox was accepted") }
    XCTAssertTrue(reason.contains("annotations[0]") && reason.contains("bbox"), reason)
    let duplicate = coco(
      #"[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]}, {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]}]"#
    )
    XCTAssertEqual(
      thrown { try COCOAnnotations.parse(duplicate, name: "t.json") },
      .duplicateID(path: "t.json", what: "annotations", id: 1))
    guard
      case .malformed? = thrown({
        try COCOAnnotations.parse(Data("{\"images\": [".utf8), name: "t.json")
      })
    else { return XCTFail("truncated JSON was accepted") }
    XCTAssertEqual(
      thrown { try COCOAnnotations.load(path: "/nonexistent/gt.json") },
      .fileMissing(path: "/nonexistent/gt.json"))
  }

  func testResultsMustNameKnownImagesAndCategories() throws {
    let truth = try COCOAnnotations.parse(coco("[]"), name: "gt.json")
    let good = Data(
      #"[{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.25}]"#.utf8)
    XCTAssertEqual(
      try COCOResults.parse(good, name: "dt.json", groundTruth: truth),
      [
        Detection(
          imageID: 1, categoryID: 3, box: BoundingBox(x: 1, y: 2, width: 3, height: 4), score: 0.25)
      ])
    let badImage = Data(
      #"[{"image_id": 9, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.25}]"#.utf8)
    XCTAssertEqual(
      thrown { try COCOResults.parse(badImage, name: "dt.json", groundTruth: truth) },
      .unknownImage(path: "dt.json", entry: "[0]", imageID: 9))
    let badCategory = Data(
      #"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.25}]"#.utf8)
    XCTAssertEqual(
      thrown { try COCOResults.parse(badCategory, name: "dt.json", groundTruth: truth) },
      .unknownCategory(path: "dt.json", entry: "[0]", category: "id 1"))
    let noScore = Data(#"[{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}]"#.utf8)
    guard
      case .malformed? = thrown({
        try COCOResults.parse(noScore, name: "dt.json", groundTruth: truth)
      })
    else { return XCTFail("a detection without score was accepted") }
  }

  func testLongDecimalsParseToTheNearestDouble() throws {
    // Python writes 17 significant digits; JSONSerialization keeps such numbers as decimals,
    // whose doubleValue can miss by an ulp. The scores depend on every bit.
    let truth = try COCOAnnotations.parse(coco("[]"), name: "gt.json")
    let data = Data(
      #"[{"image_id": 1, "category_id": 3, "bbox": [107.36900369003689, 0.1, 1e2, 329.36900369003695], "score": 0.30000000000000004}]"#
        .utf8)
    let d = try COCOResults.parse(data, name: "dt.json", groundTruth: truth)[0]
    XCTAssertEqual(d.box.x.bitPattern, (107.36900369003689 as Double).bitPattern)
    XCTAssertEqual(d.box.width, 100)
    XCTAssertEqual(d.box.height.bitPattern, (329.36900369003695 as Double).bitPattern)
    XCTAssertEqual(d.score.bitPattern, (0.1 + 0.2).bitPattern)
  }

  // MARK: - VOC, on labelme's real export

  func testReadsLabelmeVOCExport() throws {
    let d = try VOCAnnotations.load(
      paths: vocPaths(), categories: try labelmeClasses(), oneBasedPixels: false)
    XCTAssertEqual(
      d.images.map(\.fileName), ["2011_000003.jpg", "2011_000006.jpg", "2011_000025.jpg"])
    XCTAssertEqual(d.images.map(\.id), [1, 2, 3])
    XCTAssertEqual(d.annotationCount, 9)
    XCTAssertEqual(d.images[0].width, 500)
    XCTAssertEqual(d.images[0].height, 338)
    let person = d.images[0].annotations[0]
    XCTAssertEqual(d.categories[person.categoryID - 1].name, "person")
    XCTAssertEqual(person.categoryID, 15)
    XCTAssertEqual(person.box.x, 191)
    XCTAssertEqual(person.box.y, 107.36900369003689)
    XCTAssertEqual(person.box.maxX, 313)
    XCTAssertEqual(person.box.maxY, 329.36900369003695, accuracy: 1e-12)
    XCTAssertFalse(person.isDifficult)
    // Ids run on across files, from 1.
    XCTAssertEqual(d.images.flatMap(\.annotations).map(\.id), Array(1...9))
    // VOC's 1-based convention moves the top-left corner by one pixel.
    let shifted = try VOCAnnotations.load(paths: vocPaths(), categories: try labelmeClasses())
    XCTAssertEqual(shifted.images[0].annotations[0].box.x, 190)
    XCTAssertEqual(shifted.images[0].annotations[0].box.maxX, 313)
  }

  func testVOCWrittenAsCOCOReadsBackWithItsDifficultFlags() throws {
    var d = try VOCAnnotations.load(
      paths: vocPaths(), categories: try labelmeClasses(), oneBasedPixels: false)
    d.images[1].annotations[0].isDifficult = true
    let data = try COCOWriter.encode(d)
    XCTAssertEqual(try COCOAnnotations.parse(data, name: "voc.json"), d)
    XCTAssertEqual(
      String(decoding: data, as: UTF8.self).components(separatedBy: "\"difficult\"").count, 2)
  }

  private func vocXML(_ object: String) -> Data {
    Data(
      """
      <annotation><filename>a.jpg</filename><size><width>100</width><height>80</height></size>
      \(object)</annotation>
      """.utf8)
  }

  func testVOCNamedErrors() throws {
    let hard = vocXML(
      "<object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>80</ymax></bndbox></object>"
    )
    let image = try VOCAnnotations.parse(hard, name: "a.xml", imageID: 1)
    XCTAssertTrue(image.annotations[0].isDifficult)
    XCTAssertEqual(image.annotations[0].box, BoundingBox(x: 0, y: 0, width: 100, height: 80))
    XCTAssertEqual(image.annotations[0].categoryID, 12)

    let unknown = vocXML(
      "<object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    )
    XCTAssertEqual(
      thrown { try VOCAnnotations.parse(unknown, name: "a.xml", imageID: 1) },
      .unknownCategory(path: "a.xml", entry: "object 1", category: "\"unicorn\""))
    let outside = vocXML(
      "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>103</xmax><ymax>9</ymax></bndbox></object>"
    )
    guard
      case .boxOutsideImage(_, "object 1", _, 100, 80)? = thrown({
        try VOCAnnotations.parse(outside, name: "a.xml", imageID: 1)
      })
    else { return XCTFail("a box 3 pixels past the edge was accepted") }
    let noBox = vocXML("<object><name>dog</name></object>")
    guard
      case .malformed(_, let reason)? = thrown({
        try VOCAnnotations.parse(noBox, name: "a.xml", imageID: 1)
      })
    else { return XCTFail("an object without bndbox was accepted") }
    XCTAssertTrue(reason.contains("object 1"), reason)
    guard
      case .malformed? = thrown({
        try VOCAnnotations.parse(Data("<annotation><size>".utf8), name: "a.xml", imageID: 1)
      })
    else { return XCTFail("truncated XML was accepted") }
  }
}
