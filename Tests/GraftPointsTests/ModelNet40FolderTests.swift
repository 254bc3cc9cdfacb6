import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// A ModelNet folder written in exactly the `modelnet40_normal_resampled` layout (no real
/// ModelNet40 copy is available to the tests).
final class ModelNet40FolderTests: XCTestCase {
  /// Writes the shape names, the two lists and one text cloud per listed id (tagged by its
  /// position in `train + test`).
  private func makeFolder(
    prefix: String = "modelnet40", names: [String], train: [String], test: [String]
  ) throws -> URL {
    let root = try temporaryFolder(self).appendingPathComponent("modelnet40_normal_resampled")
    try writeText(
      names.joined(separator: "\n") + "\n",
      to: root.appendingPathComponent("\(prefix)_shape_names.txt"))
    // Windows line ends and a blank line, as hand-made lists have.
    try writeText(
      train.joined(separator: "\r\n") + "\r\n\n",
      to: root.appendingPathComponent("\(prefix)_train.txt"))
    try writeText(
      test.joined(separator: "\n"), to: root.appendingPathComponent("\(prefix)_test.txt"))
    for (tag, id) in (train + test).enumerated() {
      let className = String(id[..<id.lastIndex(of: "_")!])
      try FileManager.default.createDirectory(
        at: root.appendingPathComponent(className), withIntermediateDirectories: true)
      try ModelNetText.write(
        taggedCloud(tag), to: root.appendingPathComponent("\(className)/\(id).txt"))
    }
    return root
  }

  func testReadsSplitsLabelsAndCloudsInListOrder() throws {
    // Names deliberately unsorted: a label is the line's index, not a sorted position.
    let root = try makeFolder(
      names: ["airplane", "night_stand", "chair"],
      train: ["chair_0001", "night_stand_0002", "airplane_0001", "chair_0002"],
      test: ["airplane_0003", "night_stand_0001"])
    let train = try ModelNet40Folder(root: root, split: "train")
    XCTAssertEqual(train.classNames, ["airplane", "night_stand", "chair"])
    XCTAssertEqual(train.count, 4)
    XCTAssertEqual(train.ids, ["chair_0001", "night_stand_0002", "airplane_0001", "chair_0002"])
    XCTAssertEqual(train.labels, [2, 1, 0, 2])
    XCTAssertEqual(train.classCounts, [1, 1, 2])
    XCTAssertEqual(
      train.files[1].path, root.appendingPathComponent("night_stand/night_stand_0002.txt").path)
    let cloud = try train.sample(at: 1)
    assertSameCloud(cloud, taggedCloud(1))
    XCTAssertNotNil(cloud.normals)

    let test = try ModelNet40Folder(root: root, split: "test")
    XCTAssertEqual(test.labels, [0, 1])
    assertSameCloud(try test.sample(at: 1), taggedCloud(5))
  }

  func testModelNet10NamesAndLoaderBatches() throws {
    let root = try makeFolder(
      prefix: "modelnet10", names: ["bathtub", "bed"], train: ["bed_0001", "bathtub_0001"],
      test: ["bed_0002"])
    assertDatasetError(
      .notFound, path: root.appendingPathComponent("modelnet40_shape_names.txt").path
    ) {
      try ModelNet40Folder(root: root, split: "train")
    }
    let data = try ModelNet40Folder(root: root, split: "train", categories: 10)
    XCTAssertEqual(data.labels, [1, 0])
    let loader = DataLoader(
      dataset: data, batchSize: 2, workers: 0, transform: PointTransforms.evaluation(points: 4))
    let batch = try XCTUnwrap(try loader.batches(epoch: 0).next())
    XCTAssertEqual(batch.inputs.shape, [2, 4, 3])
    XCTAssertEqual(batch.labels, [1, 0])
  }

  func testLayoutErrorsNameTheFile() throws {
    let root = try makeFolder(
      names: ["chair", "table"], train: ["chair_0001", "table_0001"], test: ["chair_0002"])
    assertDatasetError(
      .notFound, path: root.appendingPathComponent("modelnet40_val.txt").path, "test, train"
    ) {
      try ModelNet40Folder(root: root, split: "val")
    }
    assertDatasetError(.invalidArgument, "40 or 10") {
      try ModelNet40Folder(root: root, split: "train", categories: 20)
    }
    assertDatasetError(.notFound, path: root.appendingPathComponent("nowhere").path) {
      try ModelNet40Folder(root: root.appendingPathComponent("nowhere"), split: "train")
    }

    let list = root.appendingPathComponent("modelnet40_train.txt")
    try writeText("chair_0001\nsofa_0001\n", to: list)
    assertDatasetError(.invalidFormat, path: list.path, line: 2, "class 'sofa'") {
      try ModelNet40Folder(root: root, split: "train")
    }
    try writeText("chair_0001\nchair\n", to: list)
    assertDatasetError(.invalidFormat, path: list.path, line: 2, "not a shape id") {
      try ModelNet40Folder(root: root, split: "train")
    }
    try writeText("chair_0001\ntable_0009\n", to: list)
    assertDatasetError(.notFound, path: root.appendingPathComponent("table/table_0009.txt").path) {
      try ModelNet40Folder(root: root, split: "train")
    }
    try writeText("\n\n", to: list)
    assertDatasetError(.empty, path: list.path) { try ModelNet40Folder(root: root, split: "train") }

    let names = root.appendingPathComponent("modelnet40_shape_names.txt")
    try writeText("chair\ntable\nchair\n", to: names)
    assertDatasetError(.invalidFormat, path: names.path, line: 3, "named twice") {
      try ModelNet40Folder(root: root, split: "test")
    }
  }

  func testMalformedCloudIsAPointFileErrorNamingIt() throws {
    let root = try makeFolder(names: ["chair"], train: ["chair_0001"], test: ["chair_0002"])
    let file = root.appendingPathComponent("chair/chair_0001.txt")
    try writeText("0,0,0,0,0,1\n1,2,3\n", to: file)
    let data = try ModelNet40Folder(root: root, split: "train")
    assertPointError(.countMismatch, path: file.path) { try data.sample(at: 0) }
  }
}
