import Foundation
import XCTest

@testable import GraftPoints

final class OFFTests: XCTestCase {
  func testReadsGeomviewShapes() throws {
    let cube = try OFF.read(contentsOf: Fixtures.url("real/cube.off"))
    XCTAssertEqual(cube.keyword, "OFF")
    let mesh = try XCTUnwrap(cube.mesh)
    XCTAssertEqual(mesh.vertexCount, 8)
    XCTAssertEqual(mesh.faceCount, 6)
    XCTAssertEqual(mesh.triangleCount, 12)
    // A cube with edge √2 × 1.632993: area 6 × 2 × 1.632993².
    XCTAssertEqual(mesh.surfaceArea, 12 * 1.632993 * 1.632993, accuracy: 1e-4)
    // Per-face colours (facecube) are read and not kept; per-vertex ones (COFF) are.
    let facecube = try XCTUnwrap(try OFF.read(contentsOf: Fixtures.url("real/facecube.off")).mesh)
    XCTAssertEqual(facecube.triangleCount, 12)
    XCTAssertNil(facecube.vertices.colors)
    XCTAssertEqual(facecube.surfaceArea, 24, accuracy: 1e-5)
    let vertcube = try OFF.read(contentsOf: Fixtures.url("real/vertcube.off"))
    XCTAssertEqual(vertcube.keyword, "COFF")
    XCTAssertEqual(Array(vertcube.vertices.colors![0..<3]), [13, 204, 26])
    XCTAssertEqual(vertcube.vertices.alpha?[0], 191)
    XCTAssertEqual(Array(vertcube.vertices.colors![21..<24]), [255, 255, 255])
    // Pentagons become fans of three triangles.
    let dodec = try XCTUnwrap(try OFF.read(contentsOf: Fixtures.url("real/dodec.off")).mesh)
    XCTAssertEqual(dodec.faceCount, 12)
    XCTAssertEqual(dodec.triangleCount, 36)
    let mushroom = try XCTUnwrap(try OFF.read(contentsOf: Fixtures.url("real/mushroom.off")).mesh)
    XCTAssertEqual(
      [mushroom.vertexCount, mushroom.faceCount, mushroom.triangleCount], [226, 240, 448])
  }

  func testReadsModelNetsGluedHeaderAndCountsOnTheKeywordLine() throws {
    let glued = "OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    XCTAssertEqual(try OFF.decode(Data(text: glued)).mesh?.triangles, [0, 1, 2])
    let sameLine = "# comment\nOFF 3 1 0 # counts\n0 0 0\n\n1 0 0 # a vertex\n0 1 0\n3 2 1 0\n"
    XCTAssertEqual(try OFF.decode(Data(text: sameLine)).mesh?.triangles, [2, 1, 0])
    let noFaces = try OFF.decode(Data(text: "OFF\n2 0\n1 2 3\n4 5 6\n"))
    XCTAssertNil(noFaces.mesh)
    XCTAssertEqual(noFaces.vertices.positions, [1, 2, 3, 4, 5, 6])
  }

  func testRoundTripsNormalsAndColours() throws {
    let cloud = PointCloud(
      positions: [0, 0, 0, 1, 0, 0, 0, 1, 0], normals: [0, 0, 1, 0, 0, 1, 0, 0, -1],
      colors: [0, 127, 255, 1, 2, 3, 200, 100, 50])
    let mesh = TriangleMesh(vertices: cloud, triangles: [0, 1, 2])
    let bytes = try OFF.encode(mesh.vertices, triangles: mesh.triangles)
    let back = try OFF.decode(Data(bytes))
    XCTAssertEqual(back.keyword, "CNOFF")
    XCTAssertEqual(back.vertices.positions, cloud.positions)
    XCTAssertEqual(back.vertices.normals, cloud.normals)
    XCTAssertEqual(back.vertices.colors, cloud.colors)
    XCTAssertEqual(back.vertices.alpha, [255, 255, 255])
    XCTAssertEqual(back.mesh?.triangles, [0, 1, 2])
    let plain = try OFF.decode(
      Data(try OFF.encode(PointCloud(positions: [1, 2, 3]), triangles: nil)))
    XCTAssertEqual(plain.keyword, "OFF")
  }

  private let good = "OFF\n3 1 3\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"

  func testMalformedFilesThrowNamedErrors() {
    func decode(_ text: String) throws -> OFF.Contents { try OFF.decode(Data(text: text)) }
    assertPointError(.badHeader, "no OFF keyword") { try decode("PLY\n1 0 0\n0 0 0\n") }
    assertPointError(.unsupported, "binary OFF") { try decode("OFF BINARY\n") }
    assertPointError(.unsupported, "not a 3-D") { try decode("4OFF\n1 0 0\n0 0 0 0\n") }
    assertPointError(.badHeader, "no vertex and face counts") { try decode("OFF\n") }
    assertPointError(.badHeader, "bad count 'x'") { try decode("OFF\n3 x 0\n") }
    assertPointError(.countMismatch, "line 4: vertex 1 has 2 values") {
      try decode(good.replacingOccurrences(of: "1 0 0", with: "1 0"))
    }
    // (A long comment keeps the byte count above what the header's counts need at least.)
    let comment = "# " + String(repeating: "-", count: 40) + "\n"
    assertPointError(.truncated, "after 2 of 3 vertices") {
      try decode("OFF\n3 0 0\n0 0 0\n1 0 0\n" + comment)
    }
    assertPointError(.truncated, "after 0 of 1 faces") {
      try decode("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n" + comment)
    }
    assertPointError(.indexOutOfRange, "line 6: face 0 uses vertex 7") {
      try decode(good.replacingOccurrences(of: "3 0 1 2", with: "3 0 1 7"))
    }
    assertPointError(.countMismatch, "face 0 declares 4 corners") {
      try decode(good.replacingOccurrences(of: "3 0 1 2", with: "4 0 1 2"))
    }
    assertPointError(.countMismatch, "data continues") { try decode(good + "3 0 1 2\n") }
    assertPointError(.nonFiniteValue, "vertex 2") {
      try decode(good.replacingOccurrences(of: "0 1 0", with: "0 inf 0"))
    }
    assertPointError(.truncated, "cannot fit") { try decode("OFF\n100000000000 0 0\n0 0 0\n") }
    assertPointError(.badValue, "out of range") { try decode("COFF\n1 0 0\n0 0 0 -1 0 0\n") }
  }
}
