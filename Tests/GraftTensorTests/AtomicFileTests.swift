import XCTest

@testable import GraftTensor

#if canImport(Glibc)
  import Glibc
#endif

/// What `AtomicFile` replaces and what it refuses.
final class AtomicFileTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-atomic-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  /// Asserts that writing `url` throws a `FileError` naming it and saying `expected`, and that
  /// the folder holds no temporary file afterwards.
  private func assertRefused(
    _ url: URL, _ expected: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: url), file: file, line: line) {
      XCTAssertTrue($0 is FileError, "\($0)", file: file, line: line)
      XCTAssertTrue(
        "\($0)".contains(url.path) && "\($0)".contains(expected), "\($0)", file: file, line: line)
    }
    let left = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    XCTAssertFalse(left.contains { $0.contains(".tmp-") }, "\(left)", file: file, line: line)
  }

  /// The type of what is at `url` (not following a link).
  private func type(_ url: URL) -> mode_t {
    var st = stat()
    guard lstat(url.path, &st) == 0 else { return 0 }
    return st.st_mode & S_IFMT
  }

  func testASymbolicLinkIsRefusedAndLeftAsItWas() throws {
    let target = directory.appendingPathComponent("target.txt")
    try Data("kept".utf8).write(to: target)
    let link = directory.appendingPathComponent("link.txt")
    try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
    assertRefused(link, "symbolic link")
    XCTAssertEqual(type(link), S_IFLNK)
    XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "kept")
  }

  func testAFIFOIsRefusedAndLeftAsItWas() throws {
    let fifo = directory.appendingPathComponent("pipe")
    XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
    assertRefused(fifo, "FIFO")
    XCTAssertEqual(type(fifo), S_IFIFO)
  }

  func testADeviceNodeIsRefusedAndLeftAsItWas() throws {
    // A node for the null device (major 1, minor 3: glibc encodes small numbers as major << 8 | minor)
    // in the test's own folder; making one needs root.
    let node = directory.appendingPathComponent("null")
    guard mknod(node.path, S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0 else {
      throw XCTSkip("mknod needs root")
    }
    assertRefused(node, "character device")
    XCTAssertEqual(type(node), S_IFCHR)
  }

  func testAFolderIsRefused() throws {
    let folder = directory.appendingPathComponent("out")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
    assertRefused(folder, "folder")
    XCTAssertEqual(type(folder), S_IFDIR)
  }

  func testRegularFilesAndNewPathsAreWritten() throws {
    let url = directory.appendingPathComponent("new.bin")
    try AtomicFile.write(Data("one".utf8), to: url)
    try AtomicFile.write(Data("two".utf8), to: url)
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "two")
    XCTAssertEqual(type(url), S_IFREG)
  }

  /// A name of up to 255 bytes (multi-byte characters included) is written: the temporary
  /// file's name is shortened, not the output's (a 250-byte name failed with "File name too
  /// long" before).
  func testTheLongestNamesAreWritten() throws {
    for name in [String(repeating: "p", count: 255), String(repeating: "é", count: 127)] {
      let url = directory.appendingPathComponent(name)
      try AtomicFile.write(Data("long".utf8), to: url)
      XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "long")
    }
  }
}
