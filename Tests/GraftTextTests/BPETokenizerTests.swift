import Foundation
import GraftText
import XCTest

/// The fixtures of Tools/make_text_fixtures.py.
let textFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

/// The `tokenizers` library's encodings and decodings of the fixture strings.
struct TokenizerCases: Decodable {
  struct Encode: Decodable {
    var text: String
    var ids: [Int]
    var tokens: [String]
    var decoded: String
    var decoded_skipping_special: String
  }
  struct Decode: Decodable {
    var ids: [Int]
    var decoded: String
  }
  var special_tokens: [String]
  var encode: [Encode]
  var decode: [Decode]

  static func load() throws -> TokenizerCases {
    let data = try Data(contentsOf: textFixtures.appendingPathComponent("tokenizer_cases.json"))
    return try JSONDecoder().decode(TokenizerCases.self, from: data)
  }
}

/// Scalar-by-scalar equality (Swift's `==` on strings is canonical equivalence, which would
/// accept a decode that changed "é" into "e\u{301}").
func XCTAssertSameScalars(
  _ a: String, _ b: String, _ message: String, file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(
    Array(a.unicodeScalars), Array(b.unicodeScalars), message, file: file, line: line)
}

final class BPETokenizerTests: XCTestCase {
  let folder = textFixtures.appendingPathComponent("tokenizer")

  func testByteLevelAlphabetIsGPT2s() {
    let chars = ByteLevelAlphabet.characters
    XCTAssertEqual(Set(chars).count, 256)
    XCTAssertEqual(chars[Int(UInt8(ascii: "A"))], "A")
    XCTAssertEqual(chars[0x20], "\u{120}")  // Ġ
    XCTAssertEqual(chars[0x0A], "\u{10A}")  // Ċ
    XCTAssertEqual(chars[0x00], "\u{100}")
    XCTAssertEqual(chars[0xAD], "\u{143}")  // the last of the remapped bytes
    XCTAssertEqual(ByteLevelAlphabet.decode("Ġhi"), [0x20, 0x68, 0x69])
    XCTAssertNil(ByteLevelAlphabet.decode(" "))
  }

  func testPreTokenizerPattern() {
    // The alternation and the lookahead case by case.
    XCTAssertEqual(GPT2PreTokenizer.split("a  b"), ["a", " ", " b"])
    XCTAssertEqual(GPT2PreTokenizer.split("x   "), ["x", "   "])
    XCTAssertEqual(GPT2PreTokenizer.split("a\tb"), ["a", "\t", "b"])
    XCTAssertEqual(GPT2PreTokenizer.split("a \tb"), ["a", " ", "\t", "b"])
    XCTAssertEqual(GPT2PreTokenizer.split("I'm don't 'S"), ["I", "'m", " don", "'t", " '", "S"])
    XCTAssertEqual(GPT2PreTokenizer.split("we'll they're"), ["we", "'ll", " they", "'re"])
    XCTAssertEqual(GPT2PreTokenizer.split("x 42!? y"), ["x", " 42", "!?", " y"])
    XCTAssertEqual(GPT2PreTokenizer.split(" ?!"), [" ?!"])
    XCTAssertEqual(GPT2PreTokenizer.split("ab12"), ["ab", "12"])
    XCTAssertEqual(GPT2PreTokenizer.split(""), [])
  }

  private func checkAgainstLibrary(_ tok: BPETokenizer, form: String) throws {
    let cases = try TokenizerCases.load()
    XCTAssertGreaterThan(cases.encode.count, 20)
    for c in cases.encode {
      let ids = tok.encode(c.text)
      XCTAssertEqual(ids, c.ids, "\(form): encode \(c.text.debugDescription)")
      XCTAssertEqual(tok.tokens(c.text), c.tokens, "\(form): tokens of \(c.text.debugDescription)")
      XCTAssertSameScalars(tok.decode(c.ids), c.decoded, "\(form): decode of \(c.ids)")
      XCTAssertSameScalars(
        tok.decode(c.ids, skipSpecialTokens: true), c.decoded_skipping_special,
        "\(form): decode of \(c.ids) skipping special tokens")
    }
    for c in cases.decode {
      XCTAssertSameScalars(tok.decode(c.ids), c.decoded, "\(form): decode of \(c.ids)")
    }
  }

  func testTokenizerJSONMatchesTheLibrary() throws {
    let tok = try BPETokenizer(tokenizerJSON: folder.appendingPathComponent("tokenizer.json"))
    XCTAssertEqual(tok.vocabularySize, 600)
    XCTAssertEqual(tok.addedTokens.map(\.content), ["<|endoftext|>"])
    XCTAssertTrue(tok.isSpecial(tok.id(of: "<|endoftext|>")!))
    try checkAgainstLibrary(tok, form: "tokenizer.json")
  }

  func testVocabAndMergesMatchTheLibrary() throws {
    let tok = try BPETokenizer(
      vocabJSON: folder.appendingPathComponent("vocab.json"),
      mergesTXT: folder.appendingPathComponent("merges.txt"))
    XCTAssertEqual(tok.vocabularySize, 600)
    try checkAgainstLibrary(tok, form: "vocab.json + merges.txt")
  }

  /// The `"a b"` string form of merges (older `tokenizer.json` files) reads the same.
  func testStringMergesInTokenizerJSON() throws {
    let data = try Data(contentsOf: folder.appendingPathComponent("tokenizer.json"))
    var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    var model = json["model"] as! [String: Any]
    let pairs = model["merges"] as! [[String]]
    XCTAssertFalse(pairs.isEmpty)
    model["merges"] = pairs.map { $0.joined(separator: " ") }
    json["model"] = model
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-bpe-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("tokenizer.json")
    try JSONSerialization.data(withJSONObject: json).write(to: url)
    try checkAgainstLibrary(try BPETokenizer(tokenizerJSON: url), form: "string merges")
    // A folder finds its tokenizer.json.
    XCTAssertEqual(try BPETokenizer.load(folder: dir).encode("A man is"), [33, 446, 287])
  }

  func testAddPrefixSpaceAndStripFlags() throws {
    let base = try BPETokenizer(tokenizerJSON: folder.appendingPathComponent("tokenizer.json"))
    var vocab: [String: Int] = [:]
    for id in 0..<base.vocabularySize { vocab[base.token(of: id)!] = id }
    let eot = vocab["<|endoftext|>"]!
    let prefixed = try BPETokenizer(
      vocab: vocab, merges: [],
      addedTokens: [AddedToken(id: eot, content: "<|endoftext|>", special: true)],
      addPrefixSpace: true)
    // Every stretch between added tokens gets its leading space; bytes stay unmerged.
    XCTAssertEqual(
      prefixed.tokens("a<|endoftext|>b"), ["Ġ", "a", "<|endoftext|>", "Ġ", "b"])
    let stripping = try BPETokenizer(
      vocab: vocab, merges: [],
      addedTokens: [
        AddedToken(id: eot, content: "<|endoftext|>", special: true, lstrip: true, rstrip: true)
      ])
    XCTAssertEqual(stripping.tokens("a  <|endoftext|>  b"), ["a", "<|endoftext|>", "b"])
  }

  func testErrorsNameTheFile() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-bpe-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    func expect(_ name: String, _ contents: String, _ fragment: String) {
      let url = dir.appendingPathComponent(name)
      try? contents.write(to: url, atomically: true, encoding: .utf8)
      XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: url)) { e in
        let text = "\(e)"
        XCTAssertTrue(text.contains(url.path), text)
        XCTAssertTrue(text.contains(fragment), "\(text) lacks '\(fragment)'")
      }
    }
    expect("a.json", "{not json", "not valid JSON")
    expect("b.json", #"{"model": {"vocab": {}}}"#, "merges")
    expect(
      "c.json",
      #"{"model": {"type": "WordPiece", "vocab": {}, "merges": []}, "pre_tokenizer": null}"#,
      "WordPiece")
    expect(
      "d.json",
      #"{"model": {"vocab": {"a": 0}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}}"#,
      "'b' is not in the vocabulary")
    expect(
      "f.json",
      #"{"model": {"vocab": {"a": -1}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}"#,
      "token 'a' has id -1")
    expect(
      "e.json", #"{"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": null}"#,
      "pre_tokenizer")
    let missing = dir.appendingPathComponent("none.json")
    XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: missing)) { e in
      XCTAssertEqual(e as? FileError, FileError(path: missing.path, message: "no such file"))
    }
    let merges = dir.appendingPathComponent("merges.txt")
    try "#version: 0.2\na b c\n".write(to: merges, atomically: true, encoding: .utf8)
    try #"{"a": 0, "b": 1}"#.write(
      to: dir.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
    XCTAssertThrowsError(
      try BPETokenizer(vocabJSON: dir.appendingPathComponent("vocab.json"), mergesTXT: merges)
    ) { e in
      XCTAssertEqual(
        e as? FileError, FileError(path: merges.path, message: "line 2 is not two tokens: 'a b c'"))
    }
  }
}
