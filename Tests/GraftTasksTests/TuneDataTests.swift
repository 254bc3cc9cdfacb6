import XCTest

@testable import GraftTasks

final class TuneDataTests: XCTestCase {
  /// Writes digit `i` of the CSV as an 8×8 PGM at `url`.
  func writeDigit(_ i: Int, to url: URL) throws {
    let image = try digits.train.image(at: i)
    let grey = stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] }
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try (Data("P5 8 8 255\n".utf8) + Data(grey)).write(to: url)
  }

  func testDigitsSplitIsFixed() throws {
    let a = try ImageTuneData.digits(csv: digitsCSV)
    let b = try ImageTuneData.load(digitsCSV.path)
    XCTAssertEqual(a.train.labels, b.train.labels)
    XCTAssertEqual([a.train.count, a.validation.count, a.test.count], [1258, 180, 359])
  }

  func testImageFolderAndVTABLists() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    // An image folder with train/ only: validation and test are cut from it.
    for i in 0..<20 {
      let label = digits.train.label(at: i)
      try writeDigit(i, to: root.appendingPathComponent("folder/train/c\(label)/\(i).pgm"))
    }
    let folder = try ImageTuneData.load(root.appendingPathComponent("folder").path)
    XCTAssertEqual(folder.train.count + folder.validation.count + folder.test.count, 20)
    XCTAssertEqual([folder.validation.count, folder.test.count], [2, 4])
    // A VTAB-1k list folder.
    let vtab = root.appendingPathComponent("vtab")
    var lists: [String: String] = ["train800": "", "val200": "", "test": ""]
    for i in 0..<12 {
      try writeDigit(i, to: vtab.appendingPathComponent("images/\(i).pgm"))
      let split = i < 6 ? "train800" : i < 9 ? "val200" : "test"
      lists[split]! += "images/\(i).pgm \(digits.train.label(at: i))\n"
    }
    for (name, text) in lists {
      try text.write(
        to: vtab.appendingPathComponent(name + ".txt"), atomically: true, encoding: .utf8)
    }
    let v = try ImageTuneData.load(vtab.path)
    XCTAssertEqual([v.train.count, v.validation.count, v.test.count], [6, 3, 3])
    XCTAssertEqual(v.classNames.count, (0..<12).map { digits.train.label(at: $0) }.max()! + 1)
    XCTAssertEqual(try v.test.image(at: 0), try digits.train.image(at: 9))
    // The same folder written on Windows ("\r\n" line ends, classes.txt too) reads the same.
    let names = (0..<v.classNames.count).map { "digit \($0)" }
    for (name, text) in lists {
      try text.replacingOccurrences(of: "\n", with: "\r\n").write(
        to: vtab.appendingPathComponent(name + ".txt"), atomically: true, encoding: .utf8)
    }
    try (names.joined(separator: "\r\n") + "\r\n").write(
      to: vtab.appendingPathComponent("classes.txt"), atomically: true, encoding: .utf8)
    let windows = try ImageTuneData.load(vtab.path)
    XCTAssertEqual(windows.train.labels, v.train.labels)
    XCTAssertEqual(windows.test.labels, v.test.labels)
    XCTAssertEqual(windows.classNames, names)
    XCTAssertThrowsError(try ImageTuneData.load(root.appendingPathComponent("missing").path))
  }

  /// Writes `count` digit images into each class folder `root/<split>/<class>/`.
  func writeSplits(_ root: URL, _ splits: [String: [String]], count: Int = 2) throws {
    var i = 0
    for (split, classes) in splits.sorted(by: { $0.key < $1.key }) {
      for name in classes {
        for _ in 0..<count {
          try writeDigit(i, to: root.appendingPathComponent("\(split)/\(name)/\(i).pgm"))
          i += 1
        }
      }
    }
  }

  /// Image-folder splits are matched by class name: a class that only an evaluation split has
  /// is an error naming it; a class an evaluation split lacks is allowed and noted; labels
  /// follow the training split's class order.
  func testImageFolderSplitsAreMatchedByClassName() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let bad = root.appendingPathComponent("bad")
    try writeSplits(bad, ["train": ["a", "b"], "val": ["a", "b"], "test": ["b", "z"]])
    XCTAssertThrowsError(try ImageTuneData.load(bad.path)) {
      XCTAssertTrue($0 is DatasetError, "\($0)")
      XCTAssertTrue("\($0)".contains("'z'") && "\($0)".contains("test"), "\($0)")
    }
    let partial = root.appendingPathComponent("partial")
    try writeSplits(
      partial, ["train": ["a", "b", "c"], "val": ["a", "b", "c"], "test": ["a", "c"]])
    let data = try ImageTuneData.load(partial.path)
    XCTAssertEqual(data.classNames, ["a", "b", "c"])
    XCTAssertEqual(data.test.classNames, ["a", "b", "c"])
    XCTAssertEqual(data.test.labels, [0, 0, 2, 2])
    XCTAssertTrue(data.description.contains("'b'"), data.description)
    // Splits built in code must agree on names too, not only on their number.
    let ab = try InMemoryDataset(
      images: [digits.train.image(at: 0)], labels: [0], classNames: ["a", "b"])
    let ax = try InMemoryDataset(
      images: [digits.train.image(at: 0)], labels: [0], classNames: ["a", "x"])
    XCTAssertThrowsError(
      try ImageTuneData(train: ab, validation: ab, test: ax, description: "code")
    ) { XCTAssertTrue("\($0)".contains("'x'"), "\($0)") }
  }

  /// A folder too small to hold out validation and test is an error, and a tiny one still
  /// gets one sample in each held-out split (it used to give empty splits, scored as 0 %); one
  /// class is no classification task.
  func testTinyFoldersAndOneClassAreRefusedOrSplitWithoutEmptySplits() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let two = root.appendingPathComponent("two")
    try writeSplits(two, ["train": ["a", "b"]], count: 1)
    XCTAssertThrowsError(try ImageTuneData.load(two.path)) {
      XCTAssertTrue("\($0)".contains("too few"), "\($0)")
    }
    let four = root.appendingPathComponent("four")
    try writeSplits(four, ["train": ["a", "b"]], count: 2)
    let data = try ImageTuneData.load(four.path)
    XCTAssertEqual([data.train.count, data.validation.count, data.test.count], [2, 1, 1])
    let one = root.appendingPathComponent("one")
    try writeSplits(one, ["train": ["a"]], count: 6)
    XCTAssertThrowsError(try ImageTuneData.load(one.path)) {
      XCTAssertTrue("\($0)".contains("two classes or more"), "\($0)")
    }
  }

  /// A folder holding both videos and images is an error naming one of each, whichever the
  /// directory walk meets first (it was read as whichever kind came first).
  func testAFolderOfVideosAndImagesIsAnError() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    try writeSplits(root, ["train": ["a", "b"]], count: 3)
    XCTAssertFalse(try VideoTuneData.isVideoData(root.path))
    let clip = repositoryRoot.appendingPathComponent(
      "Tests/GraftVideoTests/Fixtures/clips/h264.mp4")
    try FileManager.default.copyItem(at: clip, to: root.appendingPathComponent("train/a/c.mp4"))
    XCTAssertThrowsError(try VideoTuneData.isVideoData(root.path)) {
      XCTAssertTrue("\($0)".contains("both videos") && "\($0)".contains("c.mp4"), "\($0)")
    }
  }
}
