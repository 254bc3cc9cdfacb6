import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// Recognising a point-cloud dataset's layout from its path, as `--data` does.
final class PointDatasetsTests: XCTestCase {
  private func cloud(_ url: URL, _ tag: Int = 0) throws {
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try PointFile.write(taggedCloud(tag), to: url)
  }

  func testEveryLayout() throws {
    let base = try temporaryFolder(self)

    let modelNet = base.appendingPathComponent("modelnet")
    try writeText(
      "chair\ntable\n", to: modelNet.appendingPathComponent("modelnet10_shape_names.txt"))
    try writeText("table_0001\n", to: modelNet.appendingPathComponent("modelnet10_train.txt"))
    try cloud(modelNet.appendingPathComponent("table/table_0001.txt"))
    XCTAssertEqual(try PointDatasets.layout(of: modelNet, split: "train"), .modelNetFolder)
    let m = try PointDatasets.open(modelNet, split: "train")
    XCTAssertEqual(m.classNames, ["chair", "table"])
    XCTAssertEqual(m.labels, [1])

    let h5 = base.appendingPathComponent("scan")
    try FileManager.default.createDirectory(at: h5, withIntermediateDirectories: true)
    let file = h5.appendingPathComponent("test_objectdataset.h5")
    try PointCloudSet(clouds: 2, pointsPerCloud: 1, positions: [0, 0, 0, 1, 1, 1], labels: [1, 0])
      .write(to: file, labels: .scanObjectNN)
    XCTAssertEqual(try PointDatasets.layout(of: h5, split: "test"), .hdf5)
    XCTAssertEqual(try PointDatasets.open(h5, split: "test").labels, [1, 0])
    XCTAssertEqual(try PointDatasets.layout(of: file, split: "x"), .hdf5)
    XCTAssertEqual(try PointDatasets.open(file, split: "x").count, 2)

    let splits = base.appendingPathComponent("furniture")
    for (split, name, tag) in [
      ("train", "bed", 1), ("train", "sofa", 2), ("test", "bed", 3), ("test", "sofa", 4),
    ] {
      try cloud(splits.appendingPathComponent("\(split)/\(name)/\(tag).ply"), tag)
    }
    XCTAssertEqual(try PointDatasets.layout(of: splits, split: "test"), .splitFolders)
    let test = try PointDatasets.open(splits, split: "test")
    XCTAssertEqual(test.classNames, ["bed", "sofa"])
    assertSameCloud(try test.sample(at: 1), taggedCloud(4), organisation: false)

    let offTree = base.appendingPathComponent("ModelNet40")
    try cloud(offTree.appendingPathComponent("airplane/train/airplane_0001.ply"))
    try cloud(offTree.appendingPathComponent("airplane/test/airplane_0002.ply"))
    XCTAssertEqual(try PointDatasets.layout(of: offTree, split: "train"), .classSplitFolders)
    XCTAssertEqual(
      (try PointDatasets.open(offTree, split: "test") as? PointFolderDataset)?.relativePaths,
      ["airplane/test/airplane_0002.ply"])

    let plain = base.appendingPathComponent("plain")
    try cloud(plain.appendingPathComponent("cup/a.npy"))
    XCTAssertEqual(try PointDatasets.layout(of: plain, split: "train"), .classFolders)
    XCTAssertEqual(try PointDatasets.open(plain, split: "train").count, 1)

    assertDatasetError(.notFound) {
      try PointDatasets.open(base.appendingPathComponent("no"), split: "train")
    }
    assertDatasetError(.invalidArgument) {
      try PointDatasets.open(plain.appendingPathComponent("cup/a.npy"), split: "train")
    }
  }
}
