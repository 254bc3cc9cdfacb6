import Foundation
import GraftModels
import XCTest

/// `ZipFile`, the public face of the zip reader that the furniture preparation reads `.sh3f`
/// libraries with.
final class ZipFileTests: XCTestCase {
  private let text = Array("the quick brown fox\n".utf8)
  private lazy var big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

  private func archive(_ members: [TestZip.Member]) throws -> URL {
    let url = temporaryFolder().appendingPathComponent("library.sh3f")
    addTeardownBlock { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
    try TestZip.write(members, to: url)
    return url
  }

  func testReadsStoredAndDeflatedMembers() throws {
    let url = try archive([
      .init(name: "folder/", bytes: []),
      .init(name: "folder/a.txt", bytes: text),
      .init(name: "big.bin", bytes: big, deflated: true),
      .init(name: "empty", bytes: [], deflated: true),
    ])
    let zip = try ZipFile(contentsOf: url)
    XCTAssertEqual(zip.names, ["folder/", "folder/a.txt", "big.bin", "empty"])
    XCTAssertTrue(zip.contains("big.bin"))
    XCTAssertEqual(zip.size(of: "big.bin"), 70_000)
    XCTAssertEqual(Array(try zip.data("folder/a.txt")), text)
    XCTAssertEqual(Array(try zip.data("big.bin")), big)
    XCTAssertEqual(try zip.data("empty").count, 0)
  }

  func testDamageIsANamedError() throws {
    var bytes = TestZip.archive([
      .init(name: "a.txt", bytes: text), .init(name: "b", bytes: text, deflated: true),
    ])
    // Flip a byte of a.txt's data (after its 30-byte header and 5-byte name).
    bytes[35] ^= 0xFF
    let url = try archive([])
    try Data(bytes).write(to: url)
    let zip = try ZipFile(contentsOf: url)
    XCTAssertThrowsError(try zip.data("a.txt")) {
      let error = $0 as? NumpyArchiveError
      XCTAssertEqual(error?.kind, .checksumMismatch)
      XCTAssertEqual(error?.member, "a.txt")
      XCTAssertEqual(error?.path, url.path)
    }
    XCTAssertEqual(Array(try zip.data("b")), text)
    XCTAssertThrowsError(try zip.data("c")) {
      XCTAssertEqual(($0 as? NumpyArchiveError)?.kind, .memberNotFound)
    }
    try Data(bytes.prefix(bytes.count - 30)).write(to: url)
    XCTAssertThrowsError(try ZipFile(contentsOf: url)) {
      XCTAssertEqual(($0 as? NumpyArchiveError)?.kind, .truncated, "\($0)")
    }
    XCTAssertThrowsError(try ZipFile(contentsOf: url.appendingPathExtension("none"))) {
      XCTAssertEqual(($0 as? NumpyArchiveError)?.kind, .fileNotFound)
    }
  }
}
