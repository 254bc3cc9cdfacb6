import Foundation
import XCTest

@testable import GraftPoints

final class PointFileTests: XCTestCase {
  func testWritesAndReadsEveryFormatByExtension() throws {
    let folder = try temporaryFolder(self)
    let cloud = PointCloud(
      positions: [0.5, -1, 2, 3, 4.25, -5, 1e-3, 0, 7], normals: [0, 0, 1, 0, 1, 0, 1, 0, 0],
      colors: [10, 20, 30, 40, 50, 60, 70, 80, 90])
    let cases: [(String, String?, String, [String])] = [
      ("a.pcd", nil, "pcd-binary", ["x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb"]),
      ("b.pcd", "ascii", "pcd-ascii", ["x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb"]),
      (
        "c.pcd", "binary_compressed", "pcd-binary_compressed",
        ["x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb"]
      ),
      (
        "d.ply", nil, "ply-binary_little_endian",
        ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"]
      ),
      (
        "e.ply", "binary_big_endian", "ply-binary_big_endian",
        ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"]
      ),
      ("f.ply", "ascii", "ply-ascii", ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"]),
      ("g.off", nil, "cnoff", ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha"]),
      ("h.obj", nil, "obj", ["x", "y", "z", "red", "green", "blue"]),
      ("i.txt", nil, "modelnet-txt", ["x", "y", "z", "nx", "ny", "nz"]),
      ("j.npy", nil, "npy", ["x", "y", "z", "nx", "ny", "nz"]),
      ("k.h5", nil, "hdf5", ["x", "y", "z", "nx", "ny", "nz"]),
    ]
    for (name, encoding, format, fields) in cases {
      let url = folder.appendingPathComponent(name)
      let written = try PointFile.write(cloud, to: url, encoding: encoding)
      XCTAssertEqual(written.description, format, name)
      let contents = try PointFile.read(url)
      XCTAssertEqual(contents.format.description, format, name)
      XCTAssertEqual(contents.fields, fields, name)
      XCTAssertEqual(contents.points.positions, cloud.positions, name)
      if name != "h.obj" { XCTAssertEqual(contents.points.normals, cloud.normals, name) }
      if fields.contains("red") || fields.contains("rgb") {
        XCTAssertEqual(contents.points.colors, cloud.colors, name)
      }
    }
  }

  func testMeshesKeepFacesInMeshFormatsAndAreSampledForClouds() throws {
    let folder = try temporaryFolder(self)
    let mesh = try XCTUnwrap(try OFF.read(contentsOf: Fixtures.url("real/cube.off")).mesh)
    for name in ["m.ply", "m.off", "m.obj"] {
      let url = folder.appendingPathComponent(name)
      try PointFile.write(mesh, to: url)
      guard case .mesh(let back) = try PointFile.read(url).geometry else { return XCTFail(name) }
      XCTAssertEqual(back.triangles, mesh.triangles, name)
      XCTAssertEqual(back.vertices.positions, mesh.vertices.positions, name)
      let sampled = try PointFile.readCloud(url, points: 300, seed: 5)
      XCTAssertEqual(sampled.count, 300)
      XCTAssertEqual(sampled, try mesh.sampleSurface(count: 300, seed: 5))
    }
    assertPointError(
      .invalidWrite, path: folder.appendingPathComponent("m.pcd").path, "hold no faces"
    ) {
      try PointFile.write(mesh, to: folder.appendingPathComponent("m.pcd"))
    }
  }

  func testChoosesTheFormatByContentBeforeExtension() throws {
    let folder = try temporaryFolder(self)
    // A PCD file with a misleading extension, and one with none.
    let cloud = PointCloud(positions: [1, 2, 3])
    let bytes = try PCD.encode(cloud, encoding: .binary)
    for name in ["cloud.ply", "cloud.bin"] {
      let url = folder.appendingPathComponent(name)
      try Data(bytes).write(to: url)
      XCTAssertEqual(try PointFile.read(url).format, .pcd(.binary))
    }
    let off = folder.appendingPathComponent("shape.dat")
    try Data(text: "# shape\nOFF\n1 0 0\n1 2 3\n").write(to: off)
    XCTAssertEqual(try PointFile.read(off).format, .off("OFF"))
    let unknown = folder.appendingPathComponent("notes.md")
    try Data(text: "hello\n").write(to: unknown)
    assertPointError(.unknownFormat, path: unknown.path) { try PointFile.read(unknown) }
  }

  func testRefusesEncodingsAFormatDoesNotHave() throws {
    let folder = try temporaryFolder(self)
    let cloud = PointCloud(positions: [1, 2, 3])
    let url = folder.appendingPathComponent("a.off")
    assertPointError(.invalidWrite, path: url.path, "not binary") {
      try PointFile.write(cloud, to: url, encoding: "binary")
    }
    let pcd = folder.appendingPathComponent("a.pcd")
    assertPointError(.invalidWrite, path: pcd.path, "not binary_big_endian") {
      try PointFile.write(cloud, to: pcd, encoding: "binary_big_endian")
    }
    let xyz = folder.appendingPathComponent("a.xyzrgb")
    assertPointError(.unknownFormat, path: xyz.path) { try PointFile.write(cloud, to: xyz) }
    XCTAssertEqual(
      try PointFile.write(cloud, to: folder.appendingPathComponent("b.ply"), encoding: "binary"),
      .ply(.binaryLittleEndian))
  }

  func testDenseCloudsAndTensors() throws {
    var cloud = PointCloud(
      positions: [1, 2, 3, .nan, .nan, .nan, 4, 5, 6], normals: [0, 0, 1, 0, 0, 1, 1, 0, 0])
    cloud.width = 3
    XCTAssertEqual(cloud.missingCount, 1)
    let (dense, dropped) = cloud.dense()
    XCTAssertEqual(dropped, 1)
    XCTAssertEqual(dense.positions, [1, 2, 3, 4, 5, 6])
    XCTAssertEqual(dense.normals, [0, 0, 1, 1, 0, 0])
    let t = dense.tensor(withNormals: true)
    XCTAssertEqual(t.shape, [2, 6])
    XCTAssertEqual(
      Array(UnsafeBufferPointer(start: t.pointer, count: 12)), [1, 2, 3, 0, 0, 1, 4, 5, 6, 1, 0, 0])
    XCTAssertEqual(dense.tensor().shape, [2, 3])
    // Formats other than PCD refuse NaN points rather than write them.
    let url = try temporaryFolder(self).appendingPathComponent("c.npy")
    assertPointError(.invalidWrite, path: url.path, "non-finite") {
      try PointFile.write(cloud, to: url)
    }
  }
}
