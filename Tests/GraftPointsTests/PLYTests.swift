import Foundation
import XCTest

@testable import GraftPoints

final class PLYTests: XCTestCase {
  /// A PLY attribute with several components comes back as one property per component.
  private func flattened(_ cloud: PointCloud) -> PointCloud {
    var c = cloud
    c.attributes = cloud.attributes.flatMap { a -> [PointAttribute] in
      if a.components == 1 { return [a] }
      return (0..<a.components).map { k in
        PointAttribute(
          name: "\(a.name)_\(k)",
          values: stride(from: k, to: a.values.count, by: a.components).map { a.values[$0] })
      }
    }
    return c
  }

  func testRoundTripsCloudsInEveryEncoding() throws {
    let cloud = richCloud()
    for encoding in PLYEncoding.allCases {
      let contents = try PLY.decode(Data(try PLY.encode(cloud, triangles: nil, encoding: encoding)))
      XCTAssertEqual(contents.header.encoding, encoding)
      XCTAssertNil(contents.mesh)
      assertSameCloud(contents.vertices, flattened(cloud))
    }
  }

  func testRoundTripsMeshesInEveryEncoding() throws {
    let mesh = TriangleMesh(
      vertices: PointCloud(positions: [0, 0, 0, 1, 0, 0, 0, 1, 0, 5, 5, 5]),
      triangles: [0, 1, 2, 2, 1, 3])
    let folder = try temporaryFolder(self)
    for encoding in PLYEncoding.allCases {
      let url = folder.appendingPathComponent("\(encoding.rawValue).ply")
      try PLY.write(mesh, to: url, encoding: encoding)
      let back = try XCTUnwrap(try PLY.read(contentsOf: url).mesh)
      XCTAssertEqual(back, mesh)
    }
  }

  func testReadsBigEndianDoublesListsInVerticesAndOtherElements() throws {
    // Vertices with double coordinates, a list property and an int16 field; an `edge` element
    // before the faces; a quad and a pentagon (fans), and a face property after the list.
    var bytes = Array(
      """
      ply
      format binary_big_endian 1.0
      comment made by hand
      obj_info nothing
      element vertex 5
      property double x
      property double y
      property double z
      property list uchar float texcoords
      property short quality
      element edge 1
      property int vertex1
      property int vertex2
      element face 2
      property list uchar uint vertex_indices
      property uchar flags
      end_header

      """.utf8)
    func be<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { bytes += $0 } }
    for i in 0..<5 {
      for v in [Double(i), Double(i) * 0.5, -Double(i)] { be(v.bitPattern) }
      bytes.append(2)
      be(Float(0.25).bitPattern)
      be(Float(0.75).bitPattern)
      be(Int16(-i))
    }
    be(Int32(0))
    be(Int32(1))
    bytes.append(4)
    for v: UInt32 in [0, 1, 2, 3] { be(v) }
    bytes.append(9)
    bytes.append(5)
    for v: UInt32 in [4, 3, 2, 1, 0] { be(v) }
    bytes.append(9)
    let contents = try PLY.decode(Data(bytes))
    XCTAssertEqual(
      contents.vertices.positions, [0, 0, 0, 1, 0.5, -1, 2, 1, -2, 3, 1.5, -3, 4, 2, -4])
    XCTAssertEqual(
      contents.vertices.attributes, [PointAttribute(name: "quality", values: [0, -1, -2, -3, -4])])
    let mesh = try XCTUnwrap(contents.mesh)
    XCTAssertEqual(mesh.faceCount, 2)
    XCTAssertEqual(mesh.triangles, [0, 1, 2, 0, 2, 3, 4, 3, 2, 4, 2, 1, 4, 1, 0])
  }

  func testReadsTheRealBunny() throws {
    let url = Fixtures.url("real/bunny.ply")
    let contents = try PLY.read(contentsOf: url)
    XCTAssertEqual(contents.header.encoding, .ascii)
    XCTAssertEqual(contents.header.comments, ["zipper output"])
    let v = contents.vertices
    XCTAssertEqual(v.count, 1889)
    XCTAssertEqual(Array(v.positions[0..<3]), [-0.0369122, 0.127512, 0.00276757])
    XCTAssertEqual(v.intensity?[0], 0.5)
    XCTAssertEqual(v.attributes.map(\.name), ["confidence"])
    XCTAssertEqual(v.attributes[0].values[1], 0.900159)
    let mesh = try XCTUnwrap(contents.mesh)
    XCTAssertEqual(mesh.faceCount, 3851)
    XCTAssertEqual(mesh.triangleCount, 3851)
    // The scan carries two vertices that no face uses.
    XCTAssertEqual(mesh.referencedVertexCount, 1887)
  }

  func testColoursFromOtherTypes() throws {
    let text = """
      ply
      format ascii 1.0
      element vertex 2
      property float x
      property float y
      property float z
      property float red
      property float green
      property float blue
      property ushort alpha
      end_header
      0 0 0 1 0.5 0 65535
      1 1 1 0 0.2 1 256

      """
    let v = try PLY.decode(Data(text: text)).vertices
    XCTAssertEqual(v.colors, [255, 128, 0, 0, 51, 255])
    XCTAssertEqual(v.alpha, [255, 1])
    assertPointError(.badValue, "colour value 2.0") {
      try PLY.decode(Data(text: text.replacingOccurrences(of: "0 0 0 1 0.5", with: "0 0 0 2 0.5")))
    }
  }

  // MARK: Malformed files

  private let good = """
    ply
    format ascii 1.0
    element vertex 3
    property float x
    property float y
    property float z
    element face 1
    property list uchar int vertex_indices
    end_header
    0 0 0
    1 0 0
    0 1 0
    3 0 1 2

    """

  private func decodeText(_ text: String) throws -> PLY.Contents {
    try PLY.decode(Data(text: text))
  }

  func testMalformedHeadersThrowNamedErrors() throws {
    XCTAssertEqual(try decodeText(good).mesh?.triangles, [0, 1, 2])
    assertPointError(.badHeader, "not a PLY file") { try decodeText("plx\n" + good.dropFirst(4)) }
    assertPointError(.unsupported, "unknown format 'binary_middle_endian'") {
      try decodeText(good.replacingOccurrences(of: "ascii 1.0", with: "binary_middle_endian 1.0"))
    }
    assertPointError(.badHeader, "unknown type 'float16'") {
      try decodeText(good.replacingOccurrences(of: "float y", with: "float16 y"))
    }
    assertPointError(.missingField, "no 'z' property") {
      try decodeText(
        good.replacingOccurrences(of: "property float z\n", with: "").replacingOccurrences(
          of: "0 0 0\n", with: "0 0\n"))
    }
    assertPointError(.missingField, "no 'vertex' element") {
      try decodeText(good.replacingOccurrences(of: "element vertex", with: "element point"))
    }
    assertPointError(.badHeader, "no end_header") {
      try decodeText(good.components(separatedBy: "end_header")[0])
    }
    assertPointError(.badHeader, "unknown header keyword 'end'") {
      try decodeText(good.replacingOccurrences(of: "end_header", with: "end"))
    }
    assertPointError(.badHeader, "property before any element") {
      try decodeText(good.replacingOccurrences(of: "element vertex 3\n", with: ""))
    }
  }

  func testMalformedDataThrowsNamedErrors() throws {
    assertPointError(.indexOutOfRange, "face 0 uses vertex 3, but there are 3 vertices") {
      try decodeText(good.replacingOccurrences(of: "3 0 1 2", with: "3 0 1 3"))
    }
    assertPointError(.countMismatch, "line 11: vertex 1 property 'z' is missing") {
      try decodeText(good.replacingOccurrences(of: "1 0 0", with: "1 0"))
    }
    assertPointError(.countMismatch, "vertex 1 has 1 more values") {
      try decodeText(good.replacingOccurrences(of: "1 0 0", with: "1 0 0 7"))
    }
    assertPointError(.truncated, "after 0 of 1 face") {
      try decodeText(good.replacingOccurrences(of: "3 0 1 2\n", with: ""))
    }
    assertPointError(.countMismatch, "data continues") { try decodeText(good + "3 2 1 0\n") }
    assertPointError(.nonFiniteValue, "mesh vertex 2") {
      try decodeText(good.replacingOccurrences(of: "0 1 0", with: "0 nan 0"))
    }
    // Without faces it is a cloud, where NaN marks a missing point.
    let cloud = try decodeText(
      good.replacingOccurrences(of: "0 1 0", with: "0 nan 0").replacingOccurrences(
        of: "face 1", with: "face 0"
      )
      .replacingOccurrences(of: "3 0 1 2\n", with: ""))
    XCTAssertEqual(cloud.vertices.missingCount, 1)
    assertPointError(.badValue, "'one' is not a number") {
      try decodeText(good.replacingOccurrences(of: "1 0 0", with: "one 0 0"))
    }
    assertPointError(.truncated, "declares 1000000000000 instances") {
      try decodeText(
        good.replacingOccurrences(of: "element vertex 3", with: "element vertex 1000000000000"))
    }

    let mesh = try XCTUnwrap(try decodeText(good).mesh)
    for encoding in [PLYEncoding.binaryLittleEndian, .binaryBigEndian] {
      let bytes = try PLY.encode(mesh.vertices, triangles: mesh.triangles, encoding: encoding)
      assertPointError(.truncated, "face 0") { try PLY.decode(Data(bytes.dropLast(2))) }
      assertPointError(.sizeMismatch, "follow the last element") {
        try PLY.decode(Data(bytes + [7, 7]))
      }
      var bad = bytes
      bad[bad.count - 1] = 9  // the last index's low (or high) byte
      assertPointError(.indexOutOfRange, "face 0") { try PLY.decode(Data(bad)) }
      let end = try XCTUnwrap(bytes.firstRange(of: Array("end_header\n".utf8))).upperBound
      let huge = String(decoding: bytes[..<end], as: UTF8.self)
        .replacingOccurrences(of: "element face 1", with: "element face 99999999999")
      assertPointError(.truncated, "element 'face'") {
        try PLY.decode(Data(Array(huge.utf8) + bytes[end...]))
      }
    }
  }

  func testRefusesWritesItCouldNotReadBack() {
    assertPointError(.invalidWrite, "non-finite") {
      try PLY.encode(PointCloud(positions: [0, .nan, 0]), triangles: nil, encoding: .ascii)
    }
    let clash = PointCloud(
      positions: [0, 0, 0], normals: [0, 0, 1],
      attributes: [PointAttribute(name: "nx", values: [1])])
    assertPointError(.invalidWrite, "'nx' clashes") {
      try PLY.encode(clash, triangles: nil, encoding: .ascii)
    }
    assertPointError(.invalidWrite, "'normal_x' clashes") {
      var c = clash
      c.attributes[0].name = "normal_x"
      return try PCD.encode(c, encoding: .ascii)
    }
    // A lone standard name the cloud does not otherwise use is kept as an attribute.
    var lone = PointCloud(
      positions: [0, 0, 0], attributes: [PointAttribute(name: "normal_x", values: [0.5])])
    XCTAssertEqual(try PCD.decode(Data(try PCD.encode(lone, encoding: .binary))).cloud, lone)
    lone.attributes[0].name = "nx"
    XCTAssertEqual(
      try PLY.decode(Data(try PLY.encode(lone, triangles: nil, encoding: .ascii))).vertices, lone)
  }
}
