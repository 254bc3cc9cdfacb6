import Foundation
import XCTest

@testable import GraftPoints

final class PointNpyTests: XCTestCase {
  /// A .npy file with a hand-written header and data.
  private func npy(_ dict: String, _ data: [UInt8], version: UInt8 = 1) -> Data {
    var header = Array(dict.utf8)
    while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
    header.append(0x0A)
    var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
    if version == 1 {
      bytes += [UInt8(header.count & 0xFF), UInt8(header.count >> 8)]
    } else {
      withUnsafeBytes(of: UInt32(header.count).littleEndian) { bytes += $0 }
    }
    return Data(bytes + header + data)
  }

  func testRoundTripsFloat32() throws {
    for cloud in [
      PointCloud(positions: [1, 2, 3, 4, 5, 6]),
      PointCloud(positions: [1, 2, 3], normals: [0, 1, 0]),
    ] {
      let bytes = try PointNpy.encode(cloud)
      XCTAssertEqual(try PointNpy.decode(Data(bytes)), cloud)
      // numpy's layout: the data starts on a 64-byte boundary.
      XCTAssertEqual((bytes.count - 4 * cloud.count * (cloud.normals == nil ? 3 : 6)) % 64, 0)
    }
  }

  func testReadsFloat64BigEndianAndFortranOrder() throws {
    // [[1, 2, 3], [4, 5, 6]] stored column by column as big-endian doubles, version 2 header.
    var data = [UInt8]()
    for v in [1.0, 4, 2, 5, 3, 6] { withUnsafeBytes(of: v.bitPattern.bigEndian) { data += $0 } }
    let cloud = try PointNpy.decode(
      npy("{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3), }", data, version: 2))
    XCTAssertEqual(cloud.positions, [1, 2, 3, 4, 5, 6])
  }

  func testMalformedFilesThrowNamedErrors() {
    let data = [UInt8](repeating: 0, count: 24)
    assertPointError(.badHeader, "no \\x93NUMPY magic") { try PointNpy.decode(Data(text: "NUMPY")) }
    assertPointError(.unsupported, "dtype '<i4'") {
      try PointNpy.decode(npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", data))
    }
    assertPointError(.unsupported, "shape (2, 4) is not [N, 3] or [N, 6]") {
      try PointNpy.decode(
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", data + data))
    }
    assertPointError(.truncated, "needs 24 bytes of data, the file has 20") {
      try PointNpy.decode(
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", Array(data.prefix(20))))
    }
    assertPointError(.sizeMismatch, "4 bytes follow") {
      try PointNpy.decode(
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data + [1, 2, 3, 4]))
    }
    assertPointError(.truncated, "shape (1000000000000, 3)") {
      try PointNpy.decode(
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 3), }", data))
    }
    assertPointError(.badHeader, "lacks descr") {
      try PointNpy.decode(npy("{'fortran_order': False, 'shape': (2, 3), }", data))
    }
    var nan = data
    withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { for k in 0..<4 { nan[4 + k] = $0[k] } }
    assertPointError(.nonFiniteValue, "row 0 column 1") {
      try PointNpy.decode(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", nan))
    }
  }
}
