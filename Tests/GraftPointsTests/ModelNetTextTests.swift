import Foundation
import XCTest

@testable import GraftPoints

final class ModelNetTextTests: XCTestCase {
  func testReadsModelNetsLayout() throws {
    let text = "0.208700,-0.062400,0.103100,0.185700,-0.862000,-0.471600\n-0.5,0.25,1e-3,0,0,1\n"
    let cloud = try ModelNetText.decode(Data(text: text))
    XCTAssertEqual(cloud.positions, [0.2087, -0.0624, 0.1031, -0.5, 0.25, 0.001])
    XCTAssertEqual(cloud.normals, [0.1857, -0.862, -0.4716, 0, 0, 1])
    let plain = try ModelNetText.decode(Data(text: "1 2 3\r\n4 5 6\r\n\r\n"))
    XCTAssertEqual(plain.positions, [1, 2, 3, 4, 5, 6])
    XCTAssertNil(plain.normals)
  }

  func testRoundTrips() throws {
    let cloud = PointCloud(positions: [0.1, -2e-9, 3e9, 4, 5, 6], normals: [0, 0, 1, 0.6, 0.8, 0])
    XCTAssertEqual(try ModelNetText.decode(Data(try ModelNetText.encode(cloud))), cloud)
    let bare = PointCloud(positions: [0.1, 0.2, 0.3])
    XCTAssertEqual(try ModelNetText.decode(Data(try ModelNetText.encode(bare))), bare)
  }

  func testMalformedFilesThrowNamedErrors() {
    func decode(_ text: String) throws -> PointCloud { try ModelNetText.decode(Data(text: text)) }
    assertPointError(.countMismatch, "line 2: point 1 has 3 values, the first point has 6") {
      try decode("1,2,3,4,5,6\n1,2,3\n")
    }
    assertPointError(.countMismatch, "4 values (3 or 6 expected)") { try decode("1,2,3,4\n") }
    assertPointError(.badValue, "'2..5' is not a number") { try decode("1,2..5,3\n") }
    assertPointError(.nonFiniteValue, "point 0") { try decode("1,nan,3\n") }
  }
}
