import Foundation
import XCTest

@testable import GraftPoints

final class PCDTests: XCTestCase {
  /// An organised 4 × 2 cloud with two missing (NaN) points and a viewpoint.
  private func organisedCloud() -> PointCloud {
    var cloud = richCloud(8)
    for k in 0..<3 {
      cloud.positions[3 * 2 + k] = .nan
      cloud.positions[3 * 5 + k] = .nan
    }
    cloud.width = 4
    cloud.height = 2
    cloud.viewpoint = PointViewpoint(
      translation: SIMD3(1, -2.5, 3), rotation: SIMD4(0.5, 0.5, -0.5, 0.5))
    return cloud
  }

  func testRoundTripsEveryFieldInEveryEncoding() throws {
    for cloud in [richCloud(), organisedCloud(), PointCloud(positions: [])] {
      for encoding in PCDEncoding.allCases {
        let bytes = try PCD.encode(cloud, encoding: encoding)
        let (header, back) = try PCD.decode(Data(bytes))
        XCTAssertEqual(header.encoding, encoding)
        XCTAssertEqual(header.version, "0.7")
        assertSameCloud(back, cloud)
        XCTAssertEqual(back.viewpoint, cloud.viewpoint)
      }
    }
  }

  func testWritesWhatPCLWrites() throws {
    var cloud = PointCloud(positions: [1, 2, 3], colors: [255, 128, 1])
    let text = String(decoding: try PCD.encode(cloud, encoding: .ascii), as: UTF8.self)
    XCTAssertEqual(
      text,
      """
      # .PCD v0.7 - Point Cloud Data file format
      VERSION 0.7
      FIELDS x y z rgb
      SIZE 4 4 4 4
      TYPE F F F U
      COUNT 1 1 1 1
      WIDTH 1
      HEIGHT 1
      VIEWPOINT 0 0 0 1 0 0 0
      POINTS 1
      DATA ascii
      1.0 2.0 3.0 4294934529

      """)
    // Binary files type the packed colour F, as PCL's PointXYZRGB does.
    cloud.colors = [1, 2, 3]
    let binary = try PCD.encode(cloud, encoding: .binary)
    XCTAssertTrue(String(decoding: binary.prefix(200), as: UTF8.self).contains("TYPE F F F F\n"))
    XCTAssertEqual(Array(binary.suffix(4)), [3, 2, 1, 255])
  }

  func testReadsVersion06AndOlderHeaders() throws {
    let v06 = """
      # .PCD v.6 - Point Cloud Data file format
      VERSION .6
      FIELDS x y z intensity
      SIZE 4 4 4 2
      TYPE F F F U
      COUNT 1 1 1 1
      WIDTH 2
      HEIGHT 1
      POINTS 2
      DATA ascii
      1 2 3 40000
      -1e-3 5.5 NaN 7

      """
    // Old PCL wrote missing values as `NaN` (pcl_pcd_convert_NaN_nan rewrites them as `nan`).
    let (header, cloud) = try PCD.decode(Data(text: v06))
    XCTAssertEqual(header.version, ".6")
    XCTAssertEqual(cloud.viewpoint, .identity)
    XCTAssertEqual(cloud.intensity, [40000, 7])
    XCTAssertTrue(sameFloats(cloud.positions, [1, 2, 3, -1e-3, 5.5, .nan]))
    XCTAssertEqual(cloud.missingCount, 1)
    // v0.5: COLUMNS, no COUNT, no WIDTH/HEIGHT.
    let v05 = "COLUMNS x y z\nSIZE 8 8 8\nTYPE F F F\nPOINTS 1\nDATA ascii\n0.1 0.2 0.3\n"
    let old = try PCD.decode(Data(text: v05)).cloud
    XCTAssertEqual(old.positions, [Float(0.1), Float(0.2), Float(0.3)])
    XCTAssertEqual(old.width, 1)
  }

  func testReadsPaddingFieldsCountsAndOtherTypes() throws {
    // x y z, 4 padding bytes ("_" with COUNT 4), a uint8 label, a 3-component int16 field, a
    // double; little endian, packed.
    var bytes = Array(
      """
      VERSION 0.7
      FIELDS x y z _ label triple w
      SIZE 4 4 4 1 1 2 8
      TYPE F F F U U I F
      COUNT 1 1 1 4 1 3 1
      WIDTH 2
      HEIGHT 1
      POINTS 2
      DATA binary

      """.utf8)
    for p in 0..<2 {
      for v: Float in [1, 2, 3] {
        withUnsafeBytes(of: (v + Float(10 * p)).bitPattern.littleEndian) { bytes += $0 }
      }
      bytes += [0xAA, 0xBB, 0xCC, 0xDD]
      bytes.append(UInt8(200 + p))
      for v: Int16 in [-1, 300, -32768] { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
      withUnsafeBytes(of: (0.25 * Double(p + 1)).bitPattern.littleEndian) { bytes += $0 }
    }
    let (header, cloud) = try PCD.decode(Data(bytes))
    XCTAssertEqual(header.pointSize, 12 + 4 + 1 + 6 + 8)
    XCTAssertEqual(cloud.positions, [1, 2, 3, 11, 12, 13])
    XCTAssertEqual(cloud.attributes.map(\.name), ["label", "triple", "w"])
    XCTAssertEqual(cloud.attributes[0].values, [200, 201])
    XCTAssertEqual(cloud.attributes[1].components, 3)
    XCTAssertEqual(cloud.attributes[1].values, [-1, 300, -32768, -1, 300, -32768])
    XCTAssertEqual(cloud.attributes[2].values, [0.25, 0.5])
    // The same in text, where padding is COUNT tokens.
    let text = """
      FIELDS x _ y z rgba
      SIZE 4 4 4 4 4
      TYPE F F F F U
      COUNT 1 2 1 1 1
      WIDTH 1
      DATA ascii
      1 0 0 2 3 2164260864

      """
    let t = try PCD.decode(Data(text: text)).cloud
    XCTAssertEqual(t.positions, [1, 2, 3])
    XCTAssertEqual(t.colors, [0, 0, 0])
    XCTAssertEqual(t.alpha, [129])
  }

  func testReadsOldFloatTextColours() throws {
    // Before PCL 1.8 the packed colour was printed as a float.
    let packed = Float(bitPattern: 0x00FF_8001)
    let text =
      "FIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 1\nDATA ascii\n0 0 0 \(packed)\n"
    XCTAssertEqual(try PCD.decode(Data(text: text)).cloud.colors, [255, 128, 1])
  }

  func testAllowsPCLsZeroPaddingAfterBinaryData() throws {
    let cloud = richCloud()
    for encoding in [PCDEncoding.binary, .binaryCompressed] {
      let bytes = try PCD.encode(cloud, encoding: encoding) + [UInt8](repeating: 0, count: 100)
      assertSameCloud(try PCD.decode(Data(bytes)).cloud, cloud)
      assertPointError(.sizeMismatch, "not zero padding") { try PCD.decode(Data(bytes + [1])) }
    }
  }

  func testWritesAtomicallyAndReadsFromDisk() throws {
    let folder = try temporaryFolder(self)
    let url = folder.appendingPathComponent("cloud.pcd")
    try PCD.write(richCloud(), to: url, encoding: .binaryCompressed)
    assertSameCloud(try PCD.read(contentsOf: url), richCloud())
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["cloud.pcd"])
    let missing = folder.appendingPathComponent("none/cloud.pcd")
    assertPointError(.writeFailed, path: missing.path) { try PCD.write(richCloud(), to: missing) }
    assertPointError(.fileNotFound, path: folder.appendingPathComponent("no.pcd").path) {
      try PCD.read(contentsOf: folder.appendingPathComponent("no.pcd"))
    }
    var bad = richCloud()
    bad.intensity = [1]
    assertPointError(.invalidWrite, path: url.path, "intensity") { try PCD.write(bad, to: url) }
    // The earlier file is untouched.
    assertSameCloud(try PCD.read(contentsOf: url), richCloud())
  }

  // MARK: Malformed files

  private let good = """
    VERSION 0.7
    FIELDS x y z
    SIZE 4 4 4
    TYPE F F F
    COUNT 1 1 1
    WIDTH 2
    HEIGHT 1
    VIEWPOINT 0 0 0 1 0 0 0
    POINTS 2
    DATA ascii
    1 2 3
    4 5 6

    """

  private func decodeText(_ text: String) throws -> PointCloud {
    try PCD.decode(Data(text: text)).cloud
  }

  func testMalformedHeadersThrowNamedErrors() throws {
    XCTAssertEqual(try decodeText(good).positions, [1, 2, 3, 4, 5, 6])
    assertPointError(.badHeader, "unknown header keyword 'COLOUR'") {
      try decodeText(good.replacingOccurrences(of: "VERSION 0.7", with: "COLOUR red"))
    }
    assertPointError(.badHeader, "SIZE has 2") {
      try decodeText(good.replacingOccurrences(of: "SIZE 4 4 4", with: "SIZE 4 4"))
    }
    assertPointError(.missingField, "no 'z' field") {
      try decodeText(good.replacingOccurrences(of: "FIELDS x y z", with: "FIELDS x y w"))
    }
    assertPointError(.countMismatch, "POINTS is 3") {
      try decodeText(good.replacingOccurrences(of: "POINTS 2", with: "POINTS 3"))
    }
    assertPointError(.unsupported, "DATA 'zip'") {
      try decodeText(good.replacingOccurrences(of: "DATA ascii", with: "DATA zip"))
    }
    assertPointError(.badHeader, "no DATA line") {
      try decodeText(good.components(separatedBy: "DATA")[0])
    }
    assertPointError(.badHeader, "TYPE F with SIZE 2") {
      try decodeText(good.replacingOccurrences(of: "SIZE 4 4 4", with: "SIZE 4 2 4"))
    }
    assertPointError(.badHeader, "appears twice") {
      try decodeText(good.replacingOccurrences(of: "FIELDS x y z", with: "FIELDS x y x"))
    }
    assertPointError(.badHeader, "VIEWPOINT needs 7") {
      try decodeText(good.replacingOccurrences(of: "0 0 0 1 0 0 0", with: "0 0 1"))
    }
    assertPointError(.badHeader, "line 6") {
      try decodeText(good.replacingOccurrences(of: "WIDTH 2", with: "WIDTH -2"))
    }
    assertPointError(.tooLarge, "overflows") {
      try decodeText(
        good.replacingOccurrences(of: "WIDTH 2", with: "WIDTH 4611686018427387904")
          .replacingOccurrences(of: "HEIGHT 1", with: "HEIGHT 4").replacingOccurrences(
            of: "POINTS 2\n", with: ""))
    }
  }

  func testMalformedTextDataThrowsNamedErrors() {
    assertPointError(.countMismatch, "line 12: point 1 has 2 values, the fields need 3") {
      try decodeText(good.replacingOccurrences(of: "4 5 6", with: "4 5"))
    }
    assertPointError(.truncated, "after 1 of 2 points") {
      try decodeText(good.replacingOccurrences(of: "4 5 6\n", with: ""))
    }
    assertPointError(.countMismatch, "data continues") { try decodeText(good + "7 8 9\n") }
    assertPointError(.badValue, "'five' is not a number") {
      try decodeText(good.replacingOccurrences(of: "4 5 6", with: "4 five 6"))
    }
    // A header claiming 10^12 points is refused before anything is allocated.
    assertPointError(.truncated, "cannot fit") {
      try decodeText(
        good.replacingOccurrences(of: "WIDTH 2", with: "WIDTH 1000000000000")
          .replacingOccurrences(of: "POINTS 2", with: "POINTS 1000000000000"))
    }
  }

  func testMalformedBinaryDataThrowsNamedErrors() throws {
    let cloud = richCloud()
    let binary = try PCD.encode(cloud, encoding: .binary)
    assertPointError(.truncated, "need") { try PCD.decode(Data(binary.dropLast(1))) }
    let huge = String(decoding: binary.prefix(400), as: UTF8.self)
    XCTAssertTrue(huge.contains("POINTS 7\n"))
    let claimed = try encodeHeader(cloud, .binary, points: 1_000_000_000_000)
    assertPointError(.truncated, "POINTS 1000000000000") { try PCD.decode(Data(claimed + binary)) }

    let compressed = try PCD.encode(cloud, encoding: .binaryCompressed)
    let header = try compressed.withUnsafeBufferPointer {
      try PCD.parseHeader($0, path: "<memory>")
    }
    let start = header.dataOffset
    func patched(_ offset: Int, _ value: UInt32) -> Data {
      var b = compressed
      withUnsafeBytes(of: value.littleEndian) { for k in 0..<4 { b[start + offset + k] = $0[k] } }
      return Data(b)
    }
    assertPointError(.sizeMismatch, "uncompressed") {
      try PCD.decode(patched(4, UInt32(header.pointSize * 7 + 4)))
    }
    assertPointError(.truncated, "compressed bytes") { try PCD.decode(patched(0, 1_000_000)) }
    var corrupt = compressed
    corrupt[start + 8] = 0xFF  // a back reference before the start of the output
    assertPointError(.corruptData, "binary_compressed data") { try PCD.decode(Data(corrupt)) }
    assertPointError(.truncated, "no size words") {
      try PCD.decode(Data(compressed.prefix(start + 3)))
    }
    // A large claimed size from few compressed bytes is refused before decompressing.
    let bomb = try encodeHeader(PointCloud(positions: []), .binaryCompressed, points: 100_000_000)
    var bombBytes = bomb
    withUnsafeBytes(of: UInt32(2).littleEndian) { bombBytes += $0 }
    withUnsafeBytes(of: UInt32(1_200_000_000).littleEndian) { bombBytes += $0 }
    bombBytes += [0, 0]
    assertPointError(.sizeMismatch, "cannot decode") { try PCD.decode(Data(bombBytes)) }
  }

  /// A PCD header for an x y z cloud that claims `points` points.
  private func encodeHeader(_ cloud: PointCloud, _ encoding: PCDEncoding, points: Int) throws
    -> [UInt8]
  {
    Array(
      "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH \(points)\nHEIGHT 1\nPOINTS \(points)\nDATA \(encoding.rawValue)\n"
        .utf8)
  }

  func testErrorsNameTheFile() throws {
    let folder = try temporaryFolder(self)
    let url = folder.appendingPathComponent("broken.pcd")
    try Data(text: good.replacingOccurrences(of: "4 5 6", with: "4 5")).write(to: url)
    assertPointError(.countMismatch, path: url.path, "line 12") { try PCD.read(contentsOf: url) }
  }
}
