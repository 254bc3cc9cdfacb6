import XCTest

@testable import GraftTasks

/// `graft data prepare text` on database lines in WordNet's `data.*` format (written for this
/// test; the real database is not needed).
final class WordNetTextTests: XCTestCase {
  func testSynsetLinesBecomeDocuments() throws {
    XCTAssertEqual(
      try WordNetText.document(
        "00001 03 n 02 tea_kettle 0 kettle 1 001 @ 00002 n 0000 | a pot for boiling water; "
          + "\"put the kettle on\"  "),
      "tea kettle, kettle: a pot for boiling water; \"put the kettle on\"")
    XCTAssertEqual(
      try WordNetText.document("00003 00 s 01 galore(ip) 0 000 | in great numbers  "),
      "galore: in great numbers")
    XCTAssertNil(try WordNetText.document("  1 This software and database is being provided"))
    XCTAssertNil(try WordNetText.document("00004 03 n 01 thing 0 000"))
    XCTAssertThrowsError(try WordNetText.document("not a synset | at all"))
  }

  func testPrepareSplitsAndNamesAMissingFile() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-wordnet-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: root) }
    let database = root.appendingPathComponent("db")
    try FileManager.default.createDirectory(at: database, withIntermediateDirectories: true)
    XCTAssertThrowsError(
      try WordNetText.prepare(database: database, root: root.appendingPathComponent("text"))
    ) {
      XCTAssertTrue("\($0)".contains("data.noun") && "\($0)".contains("wordnet-base"), "\($0)")
    }
    for (i, name) in WordNetText.files.enumerated() {
      let lines = (0..<5).map { j in
        "0000\(i)\(j) 03 n 01 word\(i)_\(j) 0 000 | gloss number \(j) of file \(i)  "
      }
      try Data(("  1 licence header\n" + lines.joined(separator: "\n") + "\n").utf8)
        .write(to: database.appendingPathComponent(name))
    }
    let out = root.appendingPathComponent("text")
    let counts = try WordNetText.prepare(database: database, root: out, validationEvery: 4)
    XCTAssertEqual(counts.train + counts.validation, 20)
    XCTAssertEqual(counts.validation, 5)
    let corpus = try TextCorpus(folder: out)
    XCTAssertEqual(TextCorpus.documents(corpus.train).count, 15)
    XCTAssertEqual(
      TextCorpus.documents(corpus.validation).first, "word0 3: gloss number 3 of file 0")
    XCTAssertTrue(
      try String(contentsOf: out.appendingPathComponent("LICENSE"), encoding: .utf8)
        .contains("Princeton University"))
    try Data("   \n".utf8).write(to: out.appendingPathComponent("validation.txt"))
    XCTAssertThrowsError(try TextCorpus(folder: out)) {
      XCTAssertTrue("\($0)".contains("validation.txt: holds no text"), "\($0)")
    }
  }
}
