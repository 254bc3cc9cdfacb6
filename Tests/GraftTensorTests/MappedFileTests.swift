import Foundation
import GraftTensor
import XCTest

final class MappedFileTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-mapped-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  func testHoldsTheWholeFileCopyOnWrite() throws {
    // Small files are read, large ones mapped; both behave the same.
    for size in [5, MappedFile.mappingThreshold + 5] {
      let url = directory.appendingPathComponent("bytes\(size).bin")
      let content = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 + 1) })
      try content.write(to: url)
      let file = try MappedFile(path: url.path)
      XCTAssertEqual(file.count, size)
      XCTAssertEqual(file.data, content)
      XCTAssertEqual(Int(bitPattern: file.bytes.baseAddress!) % 64, 0)
      file.mutableBytes[size - 1] = 0
      XCTAssertEqual(file.withBytes { $0[size - 1] }, 0, "this process sees its write")
      XCTAssertEqual(try Data(contentsOf: url), content, "the file does not")
      XCTAssertEqual(try MappedFile(path: url.path).withBytes { $0.last }, content.last)
    }
  }

  func testEveryFailureNamesThePath() throws {
    let empty = directory.appendingPathComponent("empty.bin")
    try Data().write(to: empty)
    XCTAssertEqual(try MappedFile(path: empty.path, allowingEmpty: true).count, 0)
    let fifo = directory.appendingPathComponent("pipe")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    let cases: [(String, MappedFileError.Kind, String)] = [
      (directory.appendingPathComponent("missing.bin").path, .notFound, "no such file"),
      (directory.path, .directory, "is a directory"),
      (fifo.path, .notRegularFile, "not a regular file"),  // refused without blocking
      (empty.path, .empty, "empty"),
      (empty.path + "/below", .unreadable, "cannot open"),
    ]
    for (path, kind, text) in cases {
      XCTAssertThrowsError(try MappedFile(path: path), path) { error in
        guard let error = error as? MappedFileError else { return XCTFail("\(error)") }
        XCTAssertEqual(error.kind, kind, "\(error)")
        XCTAssertEqual(error.path, path)
        XCTAssertTrue(error.description.hasPrefix(path + ": "), "\(error)")
        XCTAssertTrue(error.description.contains(text), "\(error)")
      }
    }
  }

  /// `contents(of:)`, what every reader uses in place of `Data(contentsOf:)`: the bytes, empty
  /// for an empty file, and a named error without blocking for a FIFO.
  func testContentsReadsFilesAndRefusesOtherKinds() throws {
    let url = directory.appendingPathComponent("small.json")
    try Data("{}".utf8).write(to: url)
    XCTAssertEqual(try MappedFile.contents(of: url), Data("{}".utf8))
    // Files of any size are read, not mapped (a truncation meanwhile would be a SIGBUS).
    let large = directory.appendingPathComponent("large.json")
    let content = Data(
      (0..<(MappedFile.mappingThreshold + 7)).map { UInt8(truncatingIfNeeded: $0) })
    try content.write(to: large)
    XCTAssertFalse(try MappedFile(path: large.path, mapping: false).isMapped)
    XCTAssertTrue(try MappedFile(path: large.path).isMapped)
    XCTAssertEqual(try MappedFile.contents(of: large), content)
    let empty = directory.appendingPathComponent("empty.json")
    try Data().write(to: empty)
    XCTAssertEqual(try MappedFile.contents(of: empty), Data())
    let fifo = directory.appendingPathComponent("pipe.json")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    XCTAssertThrowsError(try MappedFile.contents(of: fifo)) { error in
      XCTAssertEqual((error as? MappedFileError)?.kind, .notRegularFile, "\(error)")
    }
  }
}
