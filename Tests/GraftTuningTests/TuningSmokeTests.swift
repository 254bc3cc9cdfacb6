import XCTest

@testable import GraftTuning

final class TuningSmokeTests: XCTestCase {
  func testModuleLinks() {
    var rng = RandomGenerator(seed: 0)
    XCTAssertEqual(Linear(2, 3, generator: &rng).parameterCount, 9)
  }
}
