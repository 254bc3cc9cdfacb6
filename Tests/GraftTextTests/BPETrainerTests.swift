import Foundation
import GraftText
import XCTest

/// `BPETrainer` against the `tokenizers` library's `BpeTrainer` (fixtures of
/// Tools/make_bpe_trainer_fixture.py).
final class BPETrainerTests: XCTestCase {
  let folder = textFixtures.appendingPathComponent("bpe_trainer")

  /// The corpus as the script gives it to `train_from_iterator`: its lines, each with its
  /// newline (`str.splitlines(keepends=True)`; the corpus has only `\n` breaks).
  func corpusLines() throws -> [String] {
    let text = try String(
      contentsOf: folder.appendingPathComponent("corpus.txt"), encoding: .utf8)
    var lines: [String] = []
    var current = ""
    for c in text.unicodeScalars {
      current.unicodeScalars.append(c)
      if c == "\n" {
        lines.append(current)
        current = ""
      }
    }
    if !current.isEmpty { lines.append(current) }
    return lines
  }

  /// The script's `CASES`: file name → (vocab_size, min_frequency, special tokens).
  let cases: [(String, Int, Int, [String])] = [
    ("vocab400", 400, 0, ["<|endoftext|>"]),
    ("vocab330_min3", 330, 3, ["<|endoftext|>", "<|pad|>"]),
    ("minfreq_stops", 2000, 2, []),
  ]

  func testVocabularyAndMergesEqualTheLibrarys() throws {
    let lines = try corpusLines()
    for (name, size, minimum, specials) in cases {
      let expected = try BPEVocabulary(
        tokenizerJSON: folder.appendingPathComponent(name + ".json"))
      let trained = try BPETrainer(
        vocabSize: size, minFrequency: minimum, specialTokens: specials
      ).train(lines)
      XCTAssertEqual(trained.tokens.count, expected.tokens.count, name)
      XCTAssertEqual(trained.tokens, expected.tokens, name)
      XCTAssertEqual(trained.merges, expected.merges, name)
      XCTAssertEqual(trained.specialTokens, expected.specialTokens, name)
    }
    // The cases cover both stops: the vocabulary size, and min_frequency before it.
    let stopped = try BPEVocabulary(
      tokenizerJSON: folder.appendingPathComponent("minfreq_stops.json"))
    XCTAssertLessThan(stopped.tokens.count, 2000)
    XCTAssertGreaterThan(stopped.merges.count, 100)
  }

  func testWrittenFilesLoadBackAndEncodeAsTheLibrarysTokenizer() throws {
    let trained = try BPETrainer(vocabSize: 400).train(try corpusLines())
    let out = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-bpe-trainer-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: out) }
    try trained.write(folder: out)
    let library = try BPETokenizer(
      tokenizerJSON: folder.appendingPathComponent("vocab400.json"))
    let fromJSON = try BPETokenizer(tokenizerJSON: out.appendingPathComponent("tokenizer.json"))
    let fromPair = try BPETokenizer(
      vocabJSON: out.appendingPathComponent("vocab.json"),
      mergesTXT: out.appendingPathComponent("merges.txt"))
    XCTAssertEqual(
      try BPEVocabulary(tokenizerJSON: out.appendingPathComponent("tokenizer.json")),
      trained)
    let text =
      try String(contentsOf: folder.appendingPathComponent("corpus.txt"), encoding: .utf8)
      + "<|endoftext|> Unseen words: zebra, quokka, 2026 — \u{1F600}\n"
    let ids = library.encode(text)
    XCTAssertEqual(fromJSON.encode(text), ids)
    XCTAssertEqual(fromPair.encode(text), ids)
    XCTAssertEqual(fromJSON.decode(ids), text)
    XCTAssertEqual(library.id(of: "<|endoftext|>"), 0)
    XCTAssertTrue(fromJSON.isSpecial(0))
    // Merging compressed the corpus.
    XCTAssertLessThan(ids.count, text.utf8.count * 2 / 3)
  }

  func testBadSettingsAndCorporaAreNamed() throws {
    XCTAssertThrowsError(try BPETrainer(vocabSize: 256).train(["some text"])) {
      XCTAssertTrue("\($0)".contains("vocab_size 256 is below"), "\($0)")
    }
    XCTAssertThrowsError(try BPETrainer(vocabSize: 300).train([String]())) {
      XCTAssertEqual(
        $0 as? BPETrainerError,
        BPETrainerError(
          "the corpus holds no text to train a tokenizer on"))
    }
    XCTAssertThrowsError(try BPETrainer(vocabSize: 300).train(["", ""]))
    // Exactly the alphabet and the specials: no merges, but a working tokenizer.
    let bare = try BPETrainer(vocabSize: 257).train(["aaaa bbbb"])
    XCTAssertEqual(bare.merges, [])
    XCTAssertEqual(try bare.tokenizer().encode("ab").count, 2)
  }

  func testACorruptTokenizerFileIsNamed() throws {
    let bad = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-bad-tokenizer-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: bad) }
    try Data("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a".utf8)
      .write(to: bad)
    XCTAssertThrowsError(try BPEVocabulary(tokenizerJSON: bad)) {
      XCTAssertTrue("\($0)".contains(bad.path), "\($0)")
    }
  }
}
