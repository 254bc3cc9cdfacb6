import XCTest

@testable import GraftTensor

final class SequencesTests: XCTestCase {
  /// The first element whose key came before, in order; nil when all keys differ.
  func testFirstRepeatedFindsTheSecondOccurrenceInOrder() {
    XCTAssertNil([String]().firstRepeated)
    XCTAssertNil(["a", "b", "c"].firstRepeated)
    XCTAssertEqual(["a", "b", "c", "b", "a"].firstRepeated, "b")
    let pairs = [(1, "x"), (2, "y"), (3, "x")]
    XCTAssertEqual(pairs.firstRepeated(by: \.1)?.0, 3)
  }
}
