import Foundation
import Synchronization

// GPT-2's byte-level BPE as the Hugging Face `tokenizers` library runs it (its `BPE` model with
// the `ByteLevel` pre-tokenizer and decoder):
//
// 1. added tokens (`<|endoftext|>`) are cut out of the text first, leftmost-longest;
// 2. every other stretch is split by GPT-2's pattern
//    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//    (matched here by hand over Unicode scalars, with the alternation's first-match order and
//    the lookahead's backtracking spelled out in `GPT2PreTokenizer`);
// 3. each piece's UTF-8 bytes are merged by rank, lowest first and leftmost among equals,
//    starting from one symbol per byte (the vocabulary spells bytes with GPT-2's
//    byte-to-unicode map, so that every byte is a printable character).
//
// Decoding maps each token's characters back to bytes (a token with a character outside the
// map contributes its own UTF-8, as the library's `ByteLevel` decoder does) and reads the bytes
// as UTF-8, each maximal invalid subsequence replaced by U+FFFD (Rust's `from_utf8_lossy`).

/// GPT-2's byte-to-unicode map (OpenAI's `bytes_to_unicode`): printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards, in byte order.
public enum ByteLevelAlphabet {
  /// The character of each byte, indexed by the byte.
  public static let characters: [Unicode.Scalar] = {
    var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
    var out = [Unicode.Scalar](repeating: " ", count: 256)
    for b in printable { out[b] = Unicode.Scalar(UInt32(b))! }
    var next: UInt32 = 256
    for b in 0..<256 where !printable.contains(b) {
      out[b] = Unicode.Scalar(next)!
      next += 1
      printable.append(b)
    }
    return out
  }()

  /// The byte each character of the map stands for.
  public static let bytes: [Unicode.Scalar: UInt8] = {
    var out: [Unicode.Scalar: UInt8] = [:]
    for (b, c) in characters.enumerated() { out[c] = UInt8(b) }
    return out
  }()

  /// `bytes` spelled in the map's characters.
  public static func encode<S: Sequence<UInt8>>(_ bytes: S) -> String {
    var s = String.UnicodeScalarView()
    for b in bytes { s.append(characters[Int(b)]) }
    return String(s)
  }

  /// The bytes `token` spells, or nil when a character of it is not in the map.
  public static func decode(_ token: String) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(token.unicodeScalars.count)
    for c in token.unicodeScalars {
      guard let b = bytes[c] else { return nil }
      out.append(b)
    }
    return out
  }
}

/// GPT-2's pre-tokenizer pattern, matched over Unicode scalars.
public enum GPT2PreTokenizer {
  private enum Kind: Equatable {
    case letter, number, space, other
  }

  private static func kind(_ c: Unicode.Scalar) -> Kind {
    // `\s` in the library's regex engine (Oniguruma) is U+0009–U+000D, U+0085 and the Zs, Zl,
    // Zp categories: exactly Unicode's White_Space property.
    if c.properties.isWhitespace { return .space }
    switch c.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
      return .letter
    case .decimalNumber, .letterNumber, .otherNumber:
      return .number
    default:
      return .other
    }
  }

  /// The pieces of `text`, in order; they cover it exactly.
  public static func split(_ text: String) -> [String] {
    let s = Array(text.unicodeScalars)
    return ranges(s).map { r in
      var view = String.UnicodeScalarView()
      view.append(contentsOf: s[r])
      return String(view)
    }
  }

  /// The pieces of `s` as ranges, in order.
  static func ranges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
    let n = s.count
    let kinds = s.map(kind)
    var out: [Range<Int>] = []
    var i = 0
    while i < n {
      let end = match(s, kinds, at: i)
      out.append(i..<end)
      i = end
    }
    return out
  }

  /// The end of the pattern's match at `i` (the alternatives tried in the pattern's order).
  private static func match(_ s: [Unicode.Scalar], _ kinds: [Kind], at i: Int) -> Int {
    let n = s.count
    // 's 't 're 've 'm 'll 'd (ASCII apostrophe, lower case only).
    if s[i] == "'" && i + 1 < n {
      switch s[i + 1] {
      case "s", "t", "m", "d": return i + 2
      case "r", "v":
        if i + 2 < n && s[i + 2] == "e" { return i + 3 }
      case "l":
        if i + 2 < n && s[i + 2] == "l" { return i + 3 }
      default: break
      }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020 then a run of one kind.
    var j = i
    if s[i] == " " && i + 1 < n && kinds[i + 1] != .space { j = i + 1 }
    let k = kinds[j]
    if k != .space {
      var e = j + 1
      while e < n && kinds[e] == k { e += 1 }
      return e
    }
    // `\s+(?!\S)`: the whitespace run, less its last character when a non-space follows (that
    // character then starts the next piece, as a leading space or on its own); `\s+` when the
    // run is a single character before a non-space.
    var e = i + 1
    while e < n && kinds[e] == .space { e += 1 }
    if e == n || e - i == 1 { return e }
    return e - 1
  }
}

/// A token the tokenizer matches before pre-tokenization (`added_tokens` of `tokenizer.json`).
public struct AddedToken: Sendable, Equatable {
  /// Its id.
  public var id: Int
  /// Its text.
  public var content: String
  /// Special tokens are dropped by `decode(_:skipSpecialTokens:)` when asked.
  public var special: Bool
  /// The match takes the whitespace before it.
  public var lstrip: Bool
  /// The match takes the whitespace after it.
  public var rstrip: Bool

  /// A token with the library's defaults (`lstrip`, `rstrip` false).
  public init(id: Int, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false) {
    self.id = id
    self.content = content
    self.special = special
    self.lstrip = lstrip
    self.rstrip = rstrip
  }
}

/// GPT-2's byte-level BPE tokenizer, read from a Hugging Face `tokenizer.json` or from
/// `vocab.json` + `merges.txt`; encodes and decodes as the `tokenizers` library does.
public final class BPETokenizer: Sendable {
  /// Token text (in the byte-level alphabet) by id; nil for ids the vocabulary skips.
  private let tokenText: [String?]
  /// Id of each single byte (nil when the vocabulary lacks it: the library then drops the byte).
  private let byteIDs: [Int?]
  /// Id of each whole token by its bytes, for `ignore_merges`.
  private let idsByBytes: [[UInt8]: Int]
  /// `(left << 32 | right)` → (rank, merged id).
  private let merges: [UInt64: (rank: Int, id: Int)]
  /// The bytes each id decodes to: its text read through the byte-level alphabet, or the
  /// text's own UTF-8 when a character of it is outside the alphabet.
  private let bytesOfID: [[UInt8]?]
  /// Added tokens, longest first (for leftmost-longest matching).
  private let added: [(scalars: [Unicode.Scalar], token: AddedToken)]
  private let specialIDs: Set<Int>
  /// Whether a space is put before each stretch of text that does not start with one.
  public let addPrefixSpace: Bool
  /// Whether a piece that is itself a vocabulary entry skips the merges (`ignore_merges`).
  public let ignoreMerges: Bool
  /// The added tokens (`<|endoftext|>`), in id order.
  public let addedTokens: [AddedToken]
  private let cache = Mutex<[[UInt8]: [Int]]>([:])
  private static let cacheCapacity = 10_000

  /// A tokenizer over `vocab` (token text in the byte-level alphabet → id), `merges` (pairs of
  /// token texts, by rank) and `addedTokens`. Throws `ConfigError` for an id outside
  /// 0..<2²⁴ and a merge that names a token (or makes one) that is not in the vocabulary.
  public init(
    vocab: [String: Int], merges: [(String, String)], addedTokens: [AddedToken] = [],
    addPrefixSpace: Bool = false, ignoreMerges: Bool = false
  ) throws {
    let limit = 1 << 24
    if let (t, id) = vocab.first(where: { $0.value < 0 || $0.value >= limit }) {
      throw ConfigError("token '\(t)' has id \(id), outside 0..<\(limit)")
    }
    if let t = addedTokens.first(where: { $0.id < 0 || $0.id >= limit }) {
      throw ConfigError("added token '\(t.content)' has id \(t.id), outside 0..<\(limit)")
    }
    var size = 0
    for id in vocab.values { size = Swift.max(size, id + 1) }
    for t in addedTokens { size = Swift.max(size, t.id + 1) }
    var text = [String?](repeating: nil, count: size)
    for (t, id) in vocab { text[id] = t }
    // Added tokens not in the vocabulary decode through their own text.
    for t in addedTokens where text[t.id] == nil { text[t.id] = t.content }
    var byBytes: [[UInt8]: Int] = [:]
    var bytesOfID = [[UInt8]?](repeating: nil, count: size)
    for (id, t) in text.enumerated() {
      guard let t else { continue }
      let b = ByteLevelAlphabet.decode(t)
      bytesOfID[id] = b ?? Array(t.utf8)
      if let b, vocab[t] == id { byBytes[b] = id }
    }
    var byteIDs = [Int?](repeating: nil, count: 256)
    for b in 0..<256 { byteIDs[b] = vocab[String(ByteLevelAlphabet.characters[b])] }
    var table: [UInt64: (rank: Int, id: Int)] = [:]
    for (rank, (a, b)) in merges.enumerated() {
      guard let ia = vocab[a], let ib = vocab[b] else {
        throw ConfigError(
          "merge \(rank) '\(a) \(b)': '\(vocab[a] == nil ? a : b)' is not in the vocabulary")
      }
      guard let merged = vocab[a + b] else {
        throw ConfigError("merge \(rank) '\(a) \(b)': '\(a + b)' is not in the vocabulary")
      }
      let key = UInt64(ia) << 32 | UInt64(ib)
      if table[key] == nil { table[key] = (rank, merged) }
    }
    tokenText = text
    self.byteIDs = byteIDs
    idsByBytes = byBytes
    self.merges = table
    self.bytesOfID = bytesOfID
    let sortedAdded = addedTokens.sorted { $0.id < $1.id }
    self.addedTokens = sortedAdded
    added =
      sortedAdded
      .filter { !$0.content.isEmpty }
      .map { (Array($0.content.unicodeScalars), $0) }
      .sorted { $0.scalars.count > $1.scalars.count }
    specialIDs = Set(sortedAdded.filter(\.special).map(\.id))
    self.addPrefixSpace = addPrefixSpace
    self.ignoreMerges = ignoreMerges
  }

  /// Ids the vocabulary and the added tokens span (the largest id plus one), as the library's
  /// `get_vocab_size(with_added_tokens=True)`.
  public var vocabularySize: Int { tokenText.count }

  /// The id of `token` (in the byte-level alphabet, or an added token's text).
  public func id(of token: String) -> Int? {
    if let a = added.first(where: { $0.token.content == token }) { return a.token.id }
    guard let b = ByteLevelAlphabet.decode(token) else { return nil }
    return idsByBytes[b]
  }

  /// The text of token `id` (in the byte-level alphabet, as `vocab.json` spells it).
  public func token(of id: Int) -> String? {
    id >= 0 && id < tokenText.count ? tokenText[id] : nil
  }

  /// Whether `id` is a special added token.
  public func isSpecial(_ id: Int) -> Bool { specialIDs.contains(id) }

  // MARK: Encoding

  /// The ids of `text`.
  public func encode(_ text: String) -> [Int] {
    var out: [Int] = []
    let s = Array(text.unicodeScalars)
    var start = 0
    for (range, token) in addedMatches(s) {
      encodeStretch(s[start..<range.lowerBound], into: &out)
      out.append(token.id)
      start = range.upperBound
    }
    encodeStretch(s[start...], into: &out)
    return out
  }

  /// The token texts of `text` (as `Encoding.tokens` in the library).
  public func tokens(_ text: String) -> [String] {
    encode(text).map { tokenText[$0] ?? "" }
  }

  /// Non-overlapping matches of added tokens, leftmost first and longest at each position, each
  /// widened over whitespace on the sides its token strips.
  private func addedMatches(_ s: [Unicode.Scalar]) -> [(Range<Int>, AddedToken)] {
    guard !added.isEmpty else { return [] }
    var out: [(Range<Int>, AddedToken)] = []
    var i = 0
    var floor = 0
    let n = s.count
    while i < n {
      var found: (scalars: [Unicode.Scalar], token: AddedToken)?
      for a in added where a.scalars.count <= n - i && a.scalars.first == s[i] {
        if s[i..<(i + a.scalars.count)].elementsEqual(a.scalars) {
          found = a
          break
        }
      }
      guard let found else {
        i += 1
        continue
      }
      var lower = i
      var upper = i + found.scalars.count
      if found.token.lstrip {
        while lower > floor && s[lower - 1].properties.isWhitespace { lower -= 1 }
      }
      if found.token.rstrip {
        while upper < n && s[upper].properties.isWhitespace { upper += 1 }
      }
      out.append((lower..<upper, found.token))
      i = upper
      floor = upper
    }
    return out
  }

  /// Pre-tokenizes and merges a stretch of text between added tokens.
  private func encodeStretch(_ stretch: ArraySlice<Unicode.Scalar>, into out: inout [Int]) {
    guard !stretch.isEmpty else { return }
    var s = Array(stretch)
    if addPrefixSpace && s[0] != " " { s.insert(" ", at: 0) }
    for r in GPT2PreTokenizer.ranges(s) {
      var piece = String.UnicodeScalarView()
      piece.append(contentsOf: s[r])
      out += encodePiece(Array(String(piece).utf8))
    }
  }

  /// The ids of one pre-tokenized piece, through the cache.
  private func encodePiece(_ bytes: [UInt8]) -> [Int] {
    if let hit = cache.withLock({ $0[bytes] }) { return hit }
    let ids = merge(bytes)
    cache.withLock { c in
      if c.count >= Self.cacheCapacity { c.removeAll(keepingCapacity: true) }
      c[bytes] = ids
    }
    return ids
  }

  /// BPE on one piece: repeatedly merge the adjacent pair of lowest rank, leftmost among equal
  /// ranks (the order of the library's priority queue).
  private func merge(_ bytes: [UInt8]) -> [Int] {
    if ignoreMerges, let id = idsByBytes[bytes] { return [id] }
    var symbols = bytes.compactMap { byteIDs[Int($0)] }
    guard symbols.count > 1 else { return symbols }
    // ranks[i]: the merge of symbols i and i + 1 (nil when there is none); only the two pairs
    // next to a merge change, so each merge costs one scan of `ranks` and no lookups beyond.
    func pair(_ i: Int) -> (rank: Int, id: Int)? {
      merges[UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])]
    }
    var ranks = (0..<(symbols.count - 1)).map(pair)
    while true {
      var best = -1
      for i in ranks.indices {
        if let r = ranks[i], best < 0 || r.rank < ranks[best]!.rank { best = i }
      }
      guard best >= 0 else { break }
      symbols[best] = ranks[best]!.id
      symbols.remove(at: best + 1)
      ranks.remove(at: best)
      if best > 0 { ranks[best - 1] = pair(best - 1) }
      if best < ranks.count { ranks[best] = pair(best) }
    }
    return symbols
  }

  // MARK: Decoding

  /// The text of `ids`. Ids outside the vocabulary are skipped, and special tokens too with
  /// `skipSpecialTokens` (the `tokenizers` library's `decode` defaults to skipping them,
  /// `transformers`' to keeping them). Bytes that are not valid UTF-8 become U+FFFD, one per
  /// maximal invalid subsequence.
  public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
    var bytes: [UInt8] = []
    for id in ids where id >= 0 && id < bytesOfID.count {
      if skipSpecialTokens && specialIDs.contains(id) { continue }
      if let b = bytesOfID[id] { bytes += b }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

// MARK: - Files

extension BPETokenizer {
  /// Reads a Hugging Face `tokenizer.json` holding a byte-level BPE (GPT-2's layout: no
  /// normalizer, a `ByteLevel` pre-tokenizer with its regex, a `BPE` model with `vocab` and
  /// `merges` in either the `"a b"` or the `["a", "b"]` form, `added_tokens`). Throws
  /// `FileError` naming the file for a missing or malformed file and for settings this
  /// tokenizer does not implement.
  public convenience init(tokenizerJSON url: URL) throws {
    let data = try Self.read(url)
    let file: TokenizerFile
    do {
      file = try JSONDecoder().decode(TokenizerFile.self, from: data)
    } catch let e as DecodingError {
      throw FileError(path: url.path, message: "not a tokenizer.json: \(Self.describe(e))")
    } catch {
      throw FileError(path: url.path, message: "not valid JSON")
    }
    func unsupported(_ what: String) -> FileError {
      FileError(path: url.path, message: "\(what) is not supported (only GPT-2's byte-level BPE)")
    }
    let m = file.model
    if let type = m.type, type != "BPE" { throw unsupported("model type '\(type)'") }
    if let n = file.normalizer, !n.isNull { throw unsupported("a normalizer (\(n))") }
    if m.continuing_subword_prefix?.isEmpty == false {
      throw unsupported("continuing_subword_prefix")
    }
    if m.end_of_word_suffix?.isEmpty == false { throw unsupported("end_of_word_suffix") }
    if m.byte_fallback == true { throw unsupported("byte_fallback") }
    if let d = m.dropout, d > 0 { throw unsupported("BPE dropout") }
    var prefixSpace = false
    var byteLevel: [String: JSONValue]?
    if let p = file.pre_tokenizer?.objectValue {
      if p["type"]?.stringValue == "ByteLevel" {
        byteLevel = p
      } else if p["type"]?.stringValue == "Sequence",
        let list = p["pretokenizers"]?.arrayValue, list.count == 1,
        list[0].objectValue?["type"]?.stringValue == "ByteLevel"
      {
        byteLevel = list[0].objectValue
      }
    }
    guard let byteLevel else {
      throw unsupported("pre_tokenizer \(file.pre_tokenizer?.description ?? "null")")
    }
    if byteLevel["use_regex"]?.boolValue == false { throw unsupported("ByteLevel without regex") }
    prefixSpace = byteLevel["add_prefix_space"]?.boolValue ?? false
    var addedTokens: [AddedToken] = []
    for a in file.added_tokens ?? [] {
      if a.single_word == true { throw unsupported("single_word added token '\(a.content)'") }
      addedTokens.append(
        AddedToken(
          id: a.id, content: a.content, special: a.special ?? false, lstrip: a.lstrip ?? false,
          rstrip: a.rstrip ?? false))
    }
    var pairs: [(String, String)] = []
    pairs.reserveCapacity(m.merges.count)
    for (rank, merge) in m.merges.enumerated() {
      guard let pair = merge.pair else {
        throw FileError(
          path: url.path, message: "model.merges[\(rank)] is not two tokens: \(merge.raw)")
      }
      pairs.append(pair)
    }
    do {
      try self.init(
        vocab: m.vocab, merges: pairs, addedTokens: addedTokens, addPrefixSpace: prefixSpace,
        ignoreMerges: m.ignore_merges ?? false)
    } catch let e as ConfigError {
      throw FileError(path: url.path, message: e.message)
    }
  }

  /// Reads GPT-2's `vocab.json` (token → id) and `merges.txt` (one `a b` pair a line after an
  /// optional `#version` line). Tokens of `specialTokens` found in the vocabulary become special
  /// added tokens, as `transformers`' `GPT2Tokenizer` makes `<|endoftext|>`. Throws `FileError`
  /// naming the file.
  public convenience init(
    vocabJSON: URL, mergesTXT: URL, specialTokens: [String] = ["<|endoftext|>"],
    addPrefixSpace: Bool = false
  ) throws {
    let vocab: [String: Int]
    do {
      vocab = try JSONDecoder().decode([String: Int].self, from: try Self.read(vocabJSON))
    } catch let e as FileError {
      throw e
    } catch {
      throw FileError(path: vocabJSON.path, message: "not a JSON object of token ids")
    }
    let text = String(decoding: try Self.read(mergesTXT), as: UTF8.self)
    var pairs: [(String, String)] = []
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = line.hasSuffix("\r") ? line.dropLast() : line
      if line.isEmpty || (n == 0 && line.hasPrefix("#version")) { continue }
      let parts = line.split(separator: " ", omittingEmptySubsequences: false)
      guard parts.count == 2 else {
        throw FileError(
          path: mergesTXT.path, message: "line \(n + 1) is not two tokens: '\(line)'")
      }
      pairs.append((String(parts[0]), String(parts[1])))
    }
    let addedTokens = specialTokens.compactMap { t in
      vocab[t].map { AddedToken(id: $0, content: t, special: true) }
    }
    do {
      try self.init(
        vocab: vocab, merges: pairs, addedTokens: addedTokens, addPrefixSpace: addPrefixSpace)
    } catch let e as ConfigError {
      throw FileError(path: mergesTXT.path, message: e.message)
    }
  }

  /// The tokenizer of a model folder: its `tokenizer.json`, else `vocab.json` + `merges.txt`.
  public static func load(folder: URL) throws -> BPETokenizer {
    let json = folder.appendingPathComponent("tokenizer.json")
    if FileManager.default.fileExists(atPath: json.path) {
      return try BPETokenizer(tokenizerJSON: json)
    }
    let vocab = folder.appendingPathComponent("vocab.json")
    let merges = folder.appendingPathComponent("merges.txt")
    guard FileManager.default.fileExists(atPath: vocab.path) else {
      throw FileError(
        path: folder.path, message: "no tokenizer.json, nor vocab.json and merges.txt")
    }
    return try BPETokenizer(vocabJSON: vocab, mergesTXT: merges)
  }

  private static func read(_ url: URL) throws -> Data {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw FileError(path: url.path, message: "no such file")
    }
    do {
      return try MappedFile(path: url.path, allowingEmpty: true).data
    } catch {
      throw FileError(path: url.path, message: "cannot read: \(error.message)")
    }
  }

  private static func describe(_ e: DecodingError) -> String {
    func path(_ c: DecodingError.Context) -> String {
      let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }
        .joined()
      return p.isEmpty ? "top level" : String(p.drop { $0 == "." })
    }
    switch e {
    case .keyNotFound(let key, let c):
      return "\(path(c)): missing key '\(key.stringValue)'"
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
      return "\(path(c)): \(c.debugDescription)"
    @unknown default:
      return "\(e)"
    }
  }
}

/// The parts of `tokenizer.json` a byte-level BPE needs.
private struct TokenizerFile: Decodable {
  struct Added: Decodable {
    var id: Int
    var content: String
    var single_word: Bool?
    var lstrip: Bool?
    var rstrip: Bool?
    var special: Bool?
  }

  /// One merge, `"a b"` or `["a", "b"]`.
  struct Merge: Decodable {
    var pair: (String, String)?
    var raw: String

    init(from decoder: any Decoder) throws {
      let c = try decoder.singleValueContainer()
      if let s = try? c.decode(String.self) {
        raw = "\"\(s)\""
        let parts = s.split(separator: " ", omittingEmptySubsequences: false)
        pair = parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
      } else {
        let a = try c.decode([String].self)
        raw = "\(a)"
        pair = a.count == 2 ? (a[0], a[1]) : nil
      }
    }
  }

  struct Model: Decodable {
    var type: String?
    var vocab: [String: Int]
    var merges: [Merge]
    var dropout: Double?
    var continuing_subword_prefix: String?
    var end_of_word_suffix: String?
    var byte_fallback: Bool?
    var ignore_merges: Bool?
  }

  var added_tokens: [Added]?
  var normalizer: JSONValue?
  var pre_tokenizer: JSONValue?
  var model: Model
}
