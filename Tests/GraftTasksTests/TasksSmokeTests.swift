import XCTest

@testable import GraftTasks

final class TasksSmokeTests: XCTestCase {
  func testModuleLinks() {
    XCTAssertEqual(RGBImage(width: 1, height: 1, pixels: [1, 2, 3]).pixels.count, 3)
  }
}
