import Foundation
import XCTest

@testable import GraftPoints

/// PCD files written by PCL 1.13's own tools (Tools/make_pcd_fixtures.sh): every encoding of each
/// cloud must read to the same values, and those values must be the ones PCL was given.
final class PCLFixtureTests: XCTestCase {
  private func read(_ name: String) throws -> (header: PCDHeader, cloud: PointCloud) {
    try PCD.decode(Data(contentsOf: Fixtures.url("pcl/\(name).pcd")), path: name)
  }

  /// The cloud in all three encodings, checked to be identical (the text files carry 9
  /// significant digits, enough for every float).
  private func allEncodings(_ name: String, file: StaticString = #filePath, line: UInt = #line)
    throws
    -> PointCloud
  {
    let (binaryHeader, binary) = try read("\(name)_binary")
    XCTAssertEqual(binaryHeader.encoding, .binary, file: file, line: line)
    for encoding in ["ascii", "binary_compressed"] {
      let (header, cloud) = try read("\(name)_\(encoding)")
      XCTAssertEqual(header.encoding.rawValue, encoding, file: file, line: line)
      XCTAssertEqual(
        header.fields.map(\.name), binaryHeader.fields.map(\.name), file: file, line: line)
      assertSameCloud(cloud, binary, file: file, line: line)
    }
    return binary
  }

  /// The points of the input PCL converted: 12 lines of `x y z` with six decimals.
  private func inputPoints() throws -> [Float] {
    let text = try String(contentsOf: Fixtures.url("pcl/inputs/points.xyz"), encoding: .utf8)
    return text.split(whereSeparator: \.isWhitespace).map { Float(String($0))! }
  }

  func testXYZ() throws {
    let cloud = try allEncodings("xyz")
    XCTAssertEqual(cloud.positions, try inputPoints())
    XCTAssertEqual(cloud.count, 12)
    XCTAssertNil(cloud.normals)
    XCTAssertEqual(cloud.viewpoint, .identity)
  }

  func testNormalsAndCurvature() throws {
    let cloud = try allEncodings("normals")
    // PCL wrote the fields as normal_x normal_y normal_z curvature x y z.
    XCTAssertEqual(cloud.positions, try inputPoints())
    let normals = try XCTUnwrap(cloud.normals)
    for i in 0..<cloud.count {
      let n = SIMD3(normals[3 * i], normals[3 * i + 1], normals[3 * i + 2])
      XCTAssertEqual((n * n).sum(), 1, accuracy: 1e-5)
    }
    XCTAssertEqual(cloud.attributes.map(\.name), ["curvature"])
    XCTAssertTrue(cloud.attributes[0].values.allSatisfy { $0 >= 0 && $0 <= 1.0 / 3 })
    // The first normal as PCL printed it (9 significant digits).
    let text = try String(contentsOf: Fixtures.url("pcl/normals_ascii.pcd"), encoding: .utf8)
    let firstRow = text.split(separator: "\n")[11].split(separator: " ").map { Float(String($0))! }
    XCTAssertEqual(Array(normals[0..<3]), Array(firstRow[0..<3]))
  }

  func testPackedColours() throws {
    let cloud = try allEncodings("rgb")
    XCTAssertEqual(cloud.colors, [255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56])
    XCTAssertNil(cloud.alpha)
    XCTAssertEqual(cloud.positions, [0.1, 0.2, 0.3, 1.5, -2.25, 3, -1, 0, 0.5, 2, 2, 2])
  }

  func testIntensityAndAScannersConfidence() throws {
    let cloud = try allEncodings("intensity")
    XCTAssertEqual(cloud.intensity, [0.5, 0.75, 1])
    XCTAssertEqual(
      cloud.attributes, [PointAttribute(name: "confidence", values: [0.85, 0.9, 0.4])])
    XCTAssertEqual(cloud.positions, [0.5, 0.25, -1, 1, 2, 3, -2, 0.125, 4])
  }

  func testOrganisedCloudWithMissingPoints() throws {
    let cloud = try allEncodings("organized")
    XCTAssertEqual(cloud.width, 4)
    XCTAssertEqual(cloud.height, 3)
    XCTAssertTrue(cloud.isOrganized)
    // depth.png has zeros at (row, column) (0, 2), (1, 1), (2, 0): PCL's missing points.
    let depth: [Float] = [1000, 1200, 0, 1500, 900, 0, 1100, 1300, 0, 1000, 1000, 2000]
    for i in 0..<12 {
      XCTAssertEqual(cloud.isFinite(i), depth[i] != 0, "point \(i)")
      if depth[i] != 0 {
        XCTAssertEqual(cloud.positions[3 * i + 2], depth[i] / 1000, accuracy: 1e-6)
      }
      // color.png: red 80 × row, green 60 × column, blue 200 − 50 × row; PCL keeps the colour of
      // missing points too.
      let (row, column) = (i / 4, i % 4)
      XCTAssertEqual(
        Array(cloud.colors![(3 * i)..<(3 * i + 3)]),
        [UInt8(80 * row), UInt8(60 * column), UInt8(200 - 50 * row)])
    }
    XCTAssertEqual(cloud.missingCount, 3)
    let (dense, dropped) = cloud.dense()
    XCTAssertEqual(dropped, 3)
    XCTAssertEqual(dense.count, 9)
    XCTAssertFalse(dense.isOrganized)
    XCTAssertEqual(dense.colors?.count, 27)
    XCTAssertEqual(dense.bounds?.max.z, 2)
  }

  func testFPFHHistogramsWithCount33() throws {
    let cloud = try allEncodings("fpfh")
    let names = cloud.attributes.map(\.name)
    XCTAssertEqual(names, ["fpfh", "curvature"])
    let fpfh = cloud.attributes[0]
    XCTAssertEqual(fpfh.components, 33)
    XCTAssertEqual(cloud.positions, try inputPoints())
    XCTAssertNotNil(cloud.normals)
    // FPFH is three 11-bin histograms, each normalised to 100: a check that COUNT is laid out
    // as PCL lays it out.
    for i in 0..<cloud.count {
      for h in 0..<3 {
        let sum = fpfh.values[(33 * i + 11 * h)..<(33 * i + 11 * h + 11)].reduce(0, +)
        XCTAssertEqual(sum, 100, accuracy: 0.01, "point \(i) histogram \(h)")
      }
    }
  }

  func testViewpoint() throws {
    let (header, cloud) = try read("viewpoint_binary_compressed")
    XCTAssertEqual(header.encoding, .binaryCompressed)
    XCTAssertEqual(cloud.viewpoint.translation, SIMD3(1, 2, 3))
    XCTAssertEqual(cloud.viewpoint.rotation, SIMD4(0.707107, 0, 0.707107, 0))
    XCTAssertEqual(cloud.positions, try inputPoints())
  }

  func testPLYFilesPCLWrites() throws {
    // pcl_pcd2ply adds an empty face element and a camera element, which are skipped.
    let normals = try PLY.read(contentsOf: Fixtures.url("pcl/normals_pcl.ply"))
    XCTAssertEqual(normals.header.elements.map(\.name), ["vertex", "face", "camera"])
    XCTAssertNil(normals.mesh)
    assertSameCloud(normals.vertices, try read("normals_binary").cloud)
    let rgb = try PLY.read(contentsOf: Fixtures.url("pcl/rgb_pcl.ply")).vertices
    assertSameCloud(rgb, try read("rgb_binary").cloud)
    // A NaN coordinate in a PLY cloud (PCL writes missing points so) is kept, as in PCD; the
    // values equal PCL's reading of the text PCD it came from.
    let nan = try PLY.read(contentsOf: Fixtures.url("pcl/nan_pcl.ply")).vertices
    let source = try read("nan_ascii").cloud
    XCTAssertTrue(sameFloats(nan.positions, source.positions))
    XCTAssertEqual(nan.missingCount, 1)
    XCTAssertEqual(nan.alpha, source.alpha)
    XCTAssertEqual(nan.colors, source.colors)
    // PCL 1.13 writes four colour bytes under three declared uchar properties when the rgb field
    // is typed U; PCL reads its own file back as 0 points, and Graft refuses it.
    let malformed = Fixtures.url("pcl/organized_pcl_malformed.ply")
    assertPointError(.sizeMismatch, path: malformed.path, "12 bytes follow the last element") {
      try PLY.read(contentsOf: malformed)
    }
  }

  func testGraftRewritesPCLFilesWithTheSameValues() throws {
    for name in ["normals", "rgb", "intensity", "organized", "fpfh"] {
      let cloud = try read("\(name)_binary").cloud
      for encoding in PCDEncoding.allCases {
        let back = try PCD.decode(Data(try PCD.encode(cloud, encoding: encoding))).cloud
        assertSameCloud(back, cloud)
      }
    }
  }
}
