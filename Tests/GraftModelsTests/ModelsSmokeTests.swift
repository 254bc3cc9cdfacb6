import XCTest

@testable import GraftModels

final class ModelsSmokeTests: XCTestCase {
  func testModuleLinks() { XCTAssertGreaterThan(Linear(2, 3, generator: &rng).parameterCount, 0) }
  var rng = RandomGenerator(seed: 0)
}
