import Foundation
import XCTest

@testable import GraftPoints

final class TextScannerTests: XCTestCase {
  /// The fast decimal path and strtof must agree bit for bit; Swift's own `Float(String)` is the
  /// reference.
  func testNumberParsingIsCorrectlyRounded() {
    var rng = SplitMix(seed: 11)
    var tokens = [
      "0", "-0", "+1", ".5", "5.", "0.208700", "-0.352333993", "1e-05", "3.4028235e+38", "1e39",
      "16777216", "16777217", "0.1", "0.30000001", "123456789012345678901234", "1e-45", "nan",
      "-inf", "0x1p3", "9007199254740993", "2.5e10", "1E3",
    ]
    for _ in 0..<20_000 {
      let digits = String(rng.next() % 10_000_000_000)
      let point = Int(rng.next() % UInt64(digits.count + 1))
      var t = String(digits.prefix(point)) + "." + String(digits.dropFirst(point))
      if rng.next() % 3 == 0 { t += "e\(Int(rng.next() % 30) - 15)" }
      if rng.next() % 2 == 0 { t = "-" + t }
      tokens.append(t)
    }
    for t in tokens {
      let bytes = Array(t.utf8)
      bytes.withUnsafeBufferPointer { buffer in
        let s = TextScanner(buffer, path: "<memory>")
        let f = s.parseFloat(0..<bytes.count)
        let d = s.parseDouble(0..<bytes.count)
        if let expected = Float(t) {
          XCTAssertTrue(
            f.map { $0.bitPattern == expected.bitPattern || ($0.isNaN && expected.isNaN) } ?? false,
            "\(t): \(String(describing: f)) vs \(expected)")
        }
        if let expected = Double(t) {
          XCTAssertTrue(
            d.map { $0.bitPattern == expected.bitPattern || ($0.isNaN && expected.isNaN) } ?? false,
            "\(t): \(String(describing: d)) vs \(expected)")
        }
      }
    }
    for junk in ["", "-", ".", "1.2.3", "1e", "e5", "1,5", "--1", "1e+"] {
      let bytes = Array(junk.utf8)
      bytes.withUnsafeBufferPointer { buffer in
        let s = TextScanner(buffer, path: "<memory>")
        XCTAssertNil(s.parseFloat(0..<bytes.count), junk)
        XCTAssertNil(s.parseDouble(0..<bytes.count), junk)
      }
    }
  }
}
