import XCTest

@testable import GraftPoints

final class LZFTests: XCTestCase {
  private func roundTrip(_ input: [UInt8], file: StaticString = #filePath, line: UInt = #line)
    throws
    -> [UInt8]
  {
    let compressed = input.withUnsafeBytes { LZF.compress($0) }
    let back = try compressed.withUnsafeBytes { try LZF.decompress($0, count: input.count) }
    XCTAssertEqual(back, input, file: file, line: line)
    return compressed
  }

  func testRoundTripsRandomRepetitiveAndEdgeInputs() throws {
    var rng = SplitMix(seed: 1)
    let random = (0..<10_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let compressedRandom = try roundTrip(random)
    // Incompressible data costs one control byte per 32 literals.
    XCTAssertLessThanOrEqual(compressedRandom.count, random.count + random.count / 32 + 1)
    let zeros = [UInt8](repeating: 0, count: 100_000)
    XCTAssertLessThan(try roundTrip(zeros).count, 1_500)
    // Float fields laid out one after another, as binary_compressed PCD data is.
    var floats = [UInt8]()
    for i in 0..<3000 { withUnsafeBytes(of: Float(i % 97) * 0.5) { floats += $0 } }
    XCTAssertLessThan(try roundTrip(floats).count, floats.count / 2)
    for n in 0..<70 { _ = try roundTrip((0..<n).map { UInt8($0 % 5) }) }
    _ = try roundTrip([])
    // Matches longer than 264 bytes and offsets near the 8192-byte window.
    let block = (0..<8191).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    _ = try roundTrip(block + block + [UInt8](repeating: 7, count: 1000))
  }

  func testDecodesAHandWrittenStream() throws {
    // Literal run "abc", then a back reference of length 5 at distance 3 (overlapping copy),
    // then a long reference: 7 + 2 extra + 2 = 11 bytes at distance 1.
    let stream: [UInt8] = [2, 97, 98, 99, 3 << 5, 2, 7 << 5, 2, 0]
    let out = try stream.withUnsafeBytes { try LZF.decompress($0, count: 3 + 5 + 11) }
    XCTAssertEqual(
      String(decoding: out, as: UTF8.self), "abcabcab" + String(repeating: "b", count: 11))
  }

  func testRefusesMalformedStreams() {
    func fails(_ stream: [UInt8], _ count: Int, _ fragment: String) {
      XCTAssertThrowsError(try stream.withUnsafeBytes { try LZF.decompress($0, count: count) }) {
        XCTAssertTrue("\($0)".contains(fragment), "\($0)")
      }
    }
    fails([5, 1, 2], 6, "ends inside a literal run")
    fails([1 << 5, 0], 3, "before the start")
    fails([0, 9, 1 << 5, 0], 10, "decodes to 4 bytes")
    fails([2, 1, 2, 3], 2, "more than 2 bytes")
    fails([0, 1, 7 << 5], 20, "ends inside a back reference")
    fails([], 4, "empty")
  }
}
