import Foundation
import XCTest

@testable import GraftPoints

final class OBJTests: XCTestCase {
  func testReadsEveryCornerFormNegativeIndicesAndPolygons() throws {
    let text = """
      # a unit square and a triangle, with every corner form
      mtllib scene.mtl
      o square
      v 0 0 0
      v 1 0 0
      v 1 1 0
      v 0 1 0 1.0
      vt 0 0
      vt 1 0
      vn 0 0 1
      g faces
      usemtl red
      s off
      f 1/1/1 2/2/1 3//1 4
      v 5 5 5
      v 6 5 5
      v 5 6 5
      f -3/-1 -2/-2 \\
        -1//-1
      l 1 2

      """
    let contents = try OBJ.decode(Data(text: text))
    XCTAssertEqual(contents.normalCount, 1)
    XCTAssertEqual(contents.textureCount, 2)
    let mesh = try XCTUnwrap(contents.mesh)
    XCTAssertEqual(mesh.vertexCount, 7)
    XCTAssertEqual(mesh.faceCount, 2)
    // The quad becomes a fan from its first corner; the negative indices count back from the
    // latest vertex at the time.
    XCTAssertEqual(mesh.triangles, [0, 1, 2, 0, 2, 3, 4, 5, 6])
    XCTAssertEqual(mesh.surfaceArea, 1.5, accuracy: 1e-6)
    XCTAssertNil(mesh.vertices.colors)
  }

  func testReadsVertexColoursAndRoundTrips() throws {
    let mesh = TriangleMesh(
      vertices: PointCloud(
        positions: [0, 0, 0, 1, 0, 0, 0, 1, 0.5], colors: [255, 0, 10, 0, 255, 20, 1, 2, 3]),
      triangles: [0, 1, 2])
    let back = try OBJ.decode(Data(try OBJ.encode(mesh.vertices, triangles: mesh.triangles)))
    XCTAssertEqual(back.mesh, mesh)
    let cloud = try OBJ.decode(Data(text: "v 1 2 3\nv 4 5 6\n"))
    XCTAssertNil(cloud.mesh)
    XCTAssertEqual(cloud.vertices.positions, [1, 2, 3, 4, 5, 6])
  }

  func testMalformedFilesThrowNamedErrors() {
    func decode(_ text: String) throws -> OBJ.Contents { try OBJ.decode(Data(text: text)) }
    let square = "v 0 0 0\nv 1 0 0\nv 1 1 0\n"
    assertPointError(.badValue, "line 4: face corner '0' has a bad index") {
      try decode(square + "f 0 1 2\n")
    }
    assertPointError(.indexOutOfRange, "refers to vertex 4, but 3 are defined") {
      try decode(square + "f 1 2 4\n")
    }
    assertPointError(.indexOutOfRange, "refers to vertex -4") {
      try decode(square + "f -4 -1 -2\n")
    }
    assertPointError(.indexOutOfRange, "texture coordinate 1, but 0") {
      try decode(square + "f 1/1 2/1 3/1\n")
    }
    assertPointError(.indexOutOfRange, "normal 2") {
      try decode(square + "vn 0 0 1\nf 1//2 2//1 3//1\n")
    }
    // Texture coordinates defined after the face that uses them (Scopia's truck.obj in
    // sweethome3d-furniture) are fine; past the file's last one they are not.
    XCTAssertEqual(
      try decode(square + "f 1/2 2/2 3/1\nvt 0 0\nvt 1 1\n").mesh?.triangles, [0, 1, 2])
    assertPointError(
      .indexOutOfRange, "line 4: face corner '3/3' refers to texture coordinate 3, but 2"
    ) {
      try decode(square + "f 1/2 2/1 3/3\nvt 0 0\nvt 1 1\n")
    }
    assertPointError(.badValue, "is not v, v/vt") { try decode(square + "f 1/2/3/4 2 3\n") }
    assertPointError(.countMismatch, "line 2: v has 2 values") { try decode("v 0 0 0\nv 1 0\n") }
    assertPointError(.nonFiniteValue, "vertex 1") { try decode("v 0 0 0\nv nan 0 0\n") }
    assertPointError(.badValue, "'x' is not a number") { try decode("v 0 x 0\n") }
    assertPointError(.badValue, "outside [0, 1]") { try decode("v 0 0 0 255 0 0\n") }
  }
}
