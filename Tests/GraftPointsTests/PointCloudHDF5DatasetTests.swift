import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// HDF5 datasets written in exactly the layouts of PointNet's `modelnet40_ply_hdf5_2048` folder
/// (`ply_data_train<i>.h5`, `train_files.txt`, `shape_names.txt`) and ScanObjectNN's
/// `*_objectdataset*.h5` (no real copies are available to the tests).
final class PointCloudHDF5DatasetTests: XCTestCase {
  private let points = 4

  /// `clouds` clouds whose coordinates start at `first`, ModelNet-style (uint8 [N, 1] labels,
  /// normals) or ScanObjectNN-style (int64 [N] labels, no normals).
  private func writeSet(
    _ url: URL, labels: [Int], first: Float, scan: Bool = false
  ) throws {
    let n = labels.count * points * 3
    let positions = (0..<n).map { first + Float($0) * 0.5 }
    try PointCloudSet(
      clouds: labels.count, pointsPerCloud: points, positions: positions,
      normals: scan ? nil : (0..<n).map { Float($0 % 3 == 1 ? 1 : 0) }, labels: labels
    ).write(to: url, labels: scan ? .scanObjectNN : .modelNet)
  }

  private func modelNetFolder() throws -> URL {
    let folder = try temporaryFolder(self).appendingPathComponent("modelnet40_ply_hdf5_2048")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try writeSet(folder.appendingPathComponent("ply_data_train0.h5"), labels: [3, 0], first: 0)
    try writeSet(
      folder.appendingPathComponent("ply_data_train1.h5"), labels: [1, 4, 2], first: 100)
    try writeSet(folder.appendingPathComponent("ply_data_test0.h5"), labels: [4], first: 200)
    try writeText("a\nb\nc\nd\ne\n", to: folder.appendingPathComponent("shape_names.txt"))
    // PointNet's lists carry paths relative to its own checkout.
    try writeText(
      "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\ndata/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n",
      to: folder.appendingPathComponent("train_files.txt"))
    try writeText(
      "data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n",
      to: folder.appendingPathComponent("test_files.txt"))
    return folder
  }

  func testModelNetFilesInOrderWithNamesAndNormals() throws {
    let folder = try modelNetFolder()
    let data = try PointCloudHDF5Dataset(listFile: folder.appendingPathComponent("train_files.txt"))
    XCTAssertEqual(
      data.files.map(\.lastPathComponent), ["ply_data_train0.h5", "ply_data_train1.h5"])
    XCTAssertEqual(data.classNames, ["a", "b", "c", "d", "e"])
    XCTAssertEqual(data.count, 5)
    XCTAssertEqual(data.labels, [3, 0, 1, 4, 2])
    XCTAssertEqual(data.pointsPerCloud, [4, 4])
    // Sample 3 is the second cloud of the second file.
    let cloud = try data.sample(at: 3)
    XCTAssertEqual(cloud.count, points)
    XCTAssertEqual(cloud.positions, (0..<12).map { 100 + Float(12 + $0) * 0.5 })
    XCTAssertEqual(cloud.normals, (0..<12).map { Float((12 + $0) % 3 == 1 ? 1 : 0) })

    XCTAssertEqual(
      try PointCloudHDF5Dataset.files(in: folder, split: "test").map(\.lastPathComponent),
      ["ply_data_test0.h5"])
    // Without the lists, the ply_data_<split>*.h5 files, sorted.
    try FileManager.default.removeItem(at: folder.appendingPathComponent("train_files.txt"))
    let found = try PointCloudHDF5Dataset.files(in: folder, split: "train")
    XCTAssertEqual(found.map(\.lastPathComponent), ["ply_data_train0.h5", "ply_data_train1.h5"])
    XCTAssertEqual(try PointCloudHDF5Dataset(files: found).labels, data.labels)
  }

  func testScanObjectNNHasNumericNamesAndNoNormals() throws {
    let folder = try temporaryFolder(self)
    try writeSet(
      folder.appendingPathComponent("training_objectdataset_augmentedrot_scale75.h5"),
      labels: [2, 0, 2], first: 0, scan: true)
    try writeSet(
      folder.appendingPathComponent("test_objectdataset_augmentedrot_scale75.h5"),
      labels: [1], first: 0, scan: true)
    let trainFiles = try PointCloudHDF5Dataset.files(in: folder, split: "train")
    XCTAssertEqual(
      trainFiles.map(\.lastPathComponent), ["training_objectdataset_augmentedrot_scale75.h5"])
    let train = try PointCloudHDF5Dataset(files: trainFiles)
    XCTAssertEqual(train.classNames, ["0", "1", "2"])
    XCTAssertEqual(train.labels, [2, 0, 2])
    XCTAssertNil(try train.sample(at: 0).normals)
    // A split that misses the last classes still agrees with the other given the class count.
    let test = try PointCloudHDF5Dataset(
      files: try PointCloudHDF5Dataset.files(in: folder, split: "test"), classCount: 15)
    XCTAssertEqual(test.classNames.count, 15)
    XCTAssertEqual(test.labels, [1])

    try writeSet(
      folder.appendingPathComponent("training_objectdataset.h5"), labels: [0], first: 0, scan: true)
    assertDatasetError(.invalidArgument, path: folder.path, "name one") {
      try PointCloudHDF5Dataset.files(in: folder, split: "train")
    }
    assertDatasetError(.notFound, path: folder.path, "split 'val'") {
      try PointCloudHDF5Dataset.files(in: folder, split: "val")
    }
  }

  func testErrorsNameTheFile() throws {
    let folder = try modelNetFolder()
    let names = folder.appendingPathComponent("shape_names.txt")
    try writeText("a\nb\nc\nd\n", to: names)
    let second = folder.appendingPathComponent("ply_data_train1.h5")
    assertDatasetError(.mismatch, path: second.path, "cloud 1 has label 4") {
      try PointCloudHDF5Dataset(files: [
        folder.appendingPathComponent("ply_data_train0.h5"), second,
      ])
    }
    let elsewhere = try temporaryFolder(self).appendingPathComponent("ply_data_train1.h5")
    try FileManager.default.copyItem(at: second, to: elsewhere)
    assertDatasetError(.mismatch, path: elsewhere.path, "class count is 4") {
      try PointCloudHDF5Dataset(files: [elsewhere], classCount: 4)
    }

    let unlabelled = folder.appendingPathComponent("unlabelled.h5")
    try PointCloudSet(clouds: 1, pointsPerCloud: 1, positions: [0, 0, 0]).write(to: unlabelled)
    assertPointError(.missingField, path: unlabelled.path, "'label'") {
      try PointCloudHDF5Dataset(files: [unlabelled])
    }
    let broken = folder.appendingPathComponent("broken.h5")
    try writeText("not hdf5", to: broken)
    assertPointError(.badHeader, path: broken.path) { try PointCloudHDF5Dataset(files: [broken]) }

    let list = folder.appendingPathComponent("train_files.txt")
    try writeText("ply_data_train0.h5\ndata/missing.h5\n", to: list)
    assertDatasetError(.notFound, path: list.path, line: 2, "missing.h5") {
      try PointCloudHDF5Dataset(listFile: list)
    }
    assertDatasetError(.empty) { try PointCloudHDF5Dataset(files: []) }
  }
}
