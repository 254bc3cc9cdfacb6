import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// Class-per-folder trees of cloud and mesh files: the point-cloud ImageFolder.
final class PointFolderDatasetTests: XCTestCase {
  /// A unit square of two triangles, z = 0 (anything sampled from it lies on it).
  private let square = TriangleMesh(
    vertices: PointCloud(positions: [0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0]),
    triangles: [0, 1, 2, 0, 2, 3])

  func testClassesOrderCloudsAndSampledMeshes() throws {
    let root = try temporaryFolder(self).appendingPathComponent("furniture")
    let fm = FileManager.default
    for folder in ["chair/sub", "bed", ".cache", "table"] {
      try fm.createDirectory(
        at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
    }
    try PointFile.write(taggedCloud(1), to: root.appendingPathComponent("chair/b.ply"))
    try PointFile.write(square, to: root.appendingPathComponent("chair/a.off"))
    try PointFile.write(taggedCloud(2), to: root.appendingPathComponent("chair/sub/c.npy"))
    try PointFile.write(taggedCloud(3), to: root.appendingPathComponent("bed/x.txt"))
    try PointFile.write(taggedCloud(4), to: root.appendingPathComponent("table/B.pcd"))
    try PointFile.write(taggedCloud(5), to: root.appendingPathComponent("table/a.PLY"))
    try writeText("notes", to: root.appendingPathComponent("table/readme.md"))
    try PointFile.write(taggedCloud(6), to: root.appendingPathComponent(".cache/z.ply"))

    let data = try PointFolderDataset(root: root, meshPoints: 50, seed: 7)
    XCTAssertEqual(data.classNames, ["bed", "chair", "table"])
    // Files before subfolders' files, names by code points (upper case first).
    XCTAssertEqual(
      data.relativePaths,
      ["bed/x.txt", "chair/a.off", "chair/b.ply", "chair/sub/c.npy", "table/B.pcd", "table/a.PLY"])
    XCTAssertEqual(data.labels, [0, 1, 1, 1, 2, 2])
    assertSameCloud(try data.sample(at: 2), taggedCloud(1), organisation: false)
    assertSameCloud(try data.sample(at: 0), taggedCloud(3), organisation: false)

    let mesh = try data.sample(at: 1)
    XCTAssertEqual(mesh.count, 50)
    XCTAssertEqual(
      mesh,
      try square.sampleSurface(
        count: 50, seed: PointFolderDataset.meshSeed(for: "chair/a.off", seed: 7)))
    XCTAssertEqual(try data.sample(at: 1), mesh, "a mesh gives the same cloud on every read")
    XCTAssertTrue((0..<50).allSatisfy { mesh.positions[3 * $0 + 2] == 0 })
    let reseeded = try PointFolderDataset(root: root, meshPoints: 50, seed: 8)
    XCTAssertNotEqual(try reseeded.sample(at: 1).positions, mesh.positions)
    XCTAssertNotEqual(
      PointFolderDataset.meshSeed(for: "chair/a.off", seed: 7),
      PointFolderDataset.meshSeed(for: "chair/b.off", seed: 7))
  }

  func testSplitSubfoldersAsInModelNetOFF() throws {
    let root = try temporaryFolder(self).appendingPathComponent("ModelNet10")
    for (name, split, tag) in [
      ("chair", "train", 1), ("chair", "test", 2), ("desk", "train", 3), ("desk", "test", 4),
      ("desk", "train", 5),
    ] {
      let url = root.appendingPathComponent("\(name)/\(split)/\(name)_000\(tag).off")
      try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try PointFile.write(square, to: url)
    }
    let train = try PointFolderDataset(root: root, split: "train", meshPoints: 8)
    XCTAssertEqual(
      train.relativePaths,
      ["chair/train/chair_0001.off", "desk/train/desk_0003.off", "desk/train/desk_0005.off"])
    XCTAssertEqual(train.labels, [0, 1, 1])
    XCTAssertEqual(try PointFolderDataset(root: root, split: "test").labels, [0, 1])
    assertDatasetError(.notFound, path: root.appendingPathComponent("chair/val").path) {
      try PointFolderDataset(root: root, split: "val")
    }
  }

  func testErrorsNameTheFolderOrFile() throws {
    let root = try temporaryFolder(self)
    assertDatasetError(.notFound, path: root.appendingPathComponent("none").path) {
      try PointFolderDataset(root: root.appendingPathComponent("none"))
    }
    assertDatasetError(.empty, path: root.path, "no class folders") {
      try PointFolderDataset(root: root)
    }
    try writeText("notes", to: root.appendingPathComponent("lamp/readme.md"))
    assertDatasetError(.empty, path: root.appendingPathComponent("lamp").path, "no point file") {
      try PointFolderDataset(root: root)
    }
    let bad = root.appendingPathComponent("lamp/broken.ply")
    try writeText(
      "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n", to: bad)
    let data = try PointFolderDataset(root: root)
    assertPointError(.missingField, path: bad.path, "'y'") { try data.sample(at: 0) }
    let flat = root.appendingPathComponent("lamp/flat.obj")
    try writeText("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", to: flat)
    let meshes = try PointFolderDataset(root: root, extensions: ["obj"])
    assertPointError(.noSurface, path: flat.path) { try meshes.sample(at: 0) }
    assertDatasetError(.invalidArgument) { try PointFolderDataset(root: root, meshPoints: 0) }
  }
}
