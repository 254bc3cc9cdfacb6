import Foundation

// Training a GPT-2-style byte-level BPE the way the `tokenizers` library's `BpeTrainer` does
// with the `ByteLevel` pre-tokenizer (no regex-free mode, no prefix space) and GPT-2's alphabet
// as `initial_alphabet`:
//
// 1. the special tokens take ids 0, 1, … in the order given;
// 2. the 256 byte symbols follow, sorted by code point (the library sorts its alphabet so);
// 3. every text is split by GPT-2's pattern (`GPT2PreTokenizer`) and each piece, spelled in the
//    byte-level alphabet, is counted as a word;
// 4. adjacent pairs are counted over the words (weighted by the word counts) and the pair with
//    the highest count is merged, the smaller pair of ids winning a tie (the order of the
//    library's max-heap of `Merge`s); merging rewrites each word left to right, updates the
//    counts of the pairs around every merge, and re-queues pairs whose count went up;
// 5. training stops when the vocabulary holds `vocabSize` tokens, no pair is left, or the best
//    count is below `minFrequency`.
//
// The merged token's text is the two texts joined; when that text is already in the
// vocabulary (two merges can spell the same token) the merge points to its existing id, as in
// the library.

/// Bad input to `BPETrainer`: what was wrong with it.
public struct BPETrainerError: Error, CustomStringConvertible, Equatable, Sendable {
  /// What is wrong.
  public var message: String

  /// An error saying `message`.
  public init(_ message: String) { self.message = message }

  /// The message.
  public var description: String { message }
}

/// A byte-level BPE vocabulary: token texts by id (in GPT-2's byte-level alphabet, special
/// tokens as written), the merges by rank, and which tokens are special.
public struct BPEVocabulary: Sendable, Equatable {
  /// Token text of each id, 0..<count.
  public var tokens: [String]
  /// The merges, rank 0 first, as pairs of token texts.
  public var merges: [[String]]
  /// Special tokens (added tokens of `tokenizer.json`), in id order.
  public var specialTokens: [String]

  /// A vocabulary of the given parts.
  public init(tokens: [String], merges: [[String]], specialTokens: [String]) {
    self.tokens = tokens
    self.merges = merges
    self.specialTokens = specialTokens
  }

  /// Token text → id.
  public var vocab: [String: Int] {
    var out: [String: Int] = [:]
    for (id, t) in tokens.enumerated() where out[t] == nil { out[t] = id }
    return out
  }

  /// The tokenizer that encodes with this vocabulary (`BPETokenizer`).
  public func tokenizer() throws -> BPETokenizer {
    let vocab = self.vocab
    return try BPETokenizer(
      vocab: vocab, merges: merges.map { ($0[0], $0[1]) },
      addedTokens: specialTokens.compactMap { t in
        vocab[t].map { AddedToken(id: $0, content: t, special: true) }
      })
  }

  /// The vocabulary of a `tokenizer.json` holding a byte-level BPE (as `BPETokenizer` reads
  /// it; the file is checked by loading it). Throws `FileError` naming the file.
  public init(tokenizerJSON url: URL) throws {
    _ = try BPETokenizer(tokenizerJSON: url)
    let object = try GPT2Config.readObject(url)
    guard let model = object["model"]?.objectValue,
      let vocab = model["vocab"]?.objectValue, let merges = model["merges"]?.arrayValue
    else { throw FileError(path: url.path, message: "no model.vocab and model.merges") }
    var byID: [Int: String] = [:]
    for (t, v) in vocab {
      guard let id = v.intValue else {
        throw FileError(path: url.path, message: "model.vocab['\(t)'] is not an id")
      }
      byID[id] = t
    }
    var specials: [String] = []
    for a in object["added_tokens"]?.arrayValue ?? [] {
      guard let o = a.objectValue, let id = o["id"]?.intValue,
        let content = o["content"]?.stringValue
      else { continue }
      if byID[id] == nil { byID[id] = content }
      if o["special"]?.boolValue ?? false { specials.append(content) }
    }
    let count = (byID.keys.max() ?? -1) + 1
    guard byID.count == count else {
      throw FileError(path: url.path, message: "the ids are not 0..<\(count) without gaps")
    }
    tokens = (0..<count).map { byID[$0]! }
    self.merges = merges.map { m in
      m.arrayValue?.compactMap(\.stringValue)
        ?? (m.stringValue ?? "").split(separator: " ", omittingEmptySubsequences: false)
        .map(String.init)
    }
    specialTokens = specials
  }

  // MARK: Files

  /// `tokenizer.json` as the `tokenizers` library writes a trained byte-level BPE: the special
  /// tokens as added tokens, the `ByteLevel` pre-tokenizer (no prefix space) and decoder, the
  /// vocabulary in id order and the merges as pairs.
  public func tokenizerJSON() -> Data {
    let vocab = self.vocab
    var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
    s += "  \"added_tokens\": ["
    s += specialTokens.compactMap { t in
      vocab[t].map { id in
        "\n    {\"id\": \(id), \"content\": \(Self.quoted(t)), \"single_word\": false, "
          + "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
      }
    }.joined(separator: ",")
    s += specialTokens.isEmpty ? "],\n" : "\n  ],\n"
    s += "  \"normalizer\": null,\n"
    s += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
    s += "\"trim_offsets\": true, \"use_regex\": true},\n"
    s += "  \"post_processor\": null,\n"
    s += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
    s += "\"trim_offsets\": true, \"use_regex\": true},\n"
    s +=
      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
    s += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
    s += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
    s += "    \"vocab\": {" + vocabEntries(indent: "\n      ") + "\n    },\n"
    s += "    \"merges\": ["
    s += merges.map { "\n      [\(Self.quoted($0[0])), \(Self.quoted($0[1]))]" }
      .joined(separator: ",")
    s += "\n    ]\n  }\n}\n"
    return Data(s.utf8)
  }

  /// GPT-2's `vocab.json`: token → id, in id order.
  public func vocabJSON() -> Data {
    Data(("{" + vocabEntries(indent: "") + "}\n").utf8)
  }

  /// GPT-2's `merges.txt`: a version line, then one `a b` pair a line.
  public func mergesTXT() -> Data {
    Data(("#version: 0.2\n" + merges.map { $0.joined(separator: " ") + "\n" }.joined()).utf8)
  }

  /// Writes `tokenizer.json`, `vocab.json` and `merges.txt` into `folder` (created if needed),
  /// each atomically.
  public func write(folder: URL) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try AtomicFile.write(tokenizerJSON(), to: folder.appendingPathComponent("tokenizer.json"))
    try AtomicFile.write(vocabJSON(), to: folder.appendingPathComponent("vocab.json"))
    try AtomicFile.write(mergesTXT(), to: folder.appendingPathComponent("merges.txt"))
  }

  private func vocabEntries(indent: String) -> String {
    var seen = Set<String>()
    var parts: [String] = []
    for (id, t) in tokens.enumerated() where seen.insert(t).inserted {
      parts.append(indent + Self.quoted(t) + ": \(id)")
    }
    return parts.joined(separator: indent.isEmpty ? ", " : ",")
  }

  /// `s` as a JSON string.
  static func quoted(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
      switch c {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        if c.value < 0x20 || c.value == 0x7F {
          out += String(format: "\\u%04x", c.value)
        } else {
          out.unicodeScalars.append(c)
        }
      }
    }
    return out + "\""
  }
}

/// Trains a GPT-2-style byte-level BPE on texts as the `tokenizers` library's `BpeTrainer` does
/// with the `ByteLevel` pre-tokenizer (same vocabulary, ids and merges).
public struct BPETrainer: Sendable {
  /// Tokens wanted in all: special tokens, the 256 byte symbols and the merges.
  public var vocabSize: Int
  /// Pairs seen fewer times than this are never merged (the library's `min_frequency`).
  public var minFrequency: Int
  /// Tokens given the first ids, in this order, and kept whole by the tokenizer.
  public var specialTokens: [String]

  /// A trainer with the given settings (checked by `train`).
  public init(
    vocabSize: Int, minFrequency: Int = 0, specialTokens: [String] = ["<|endoftext|>"]
  ) {
    self.vocabSize = vocabSize
    self.minFrequency = minFrequency
    self.specialTokens = specialTokens
  }

  /// The word counts of `texts`: each text split by GPT-2's pattern, each piece spelled in the
  /// byte-level alphabet (the library's `feed`).
  public static func wordCounts<S: Sequence<String>>(_ texts: S) -> [[UInt8]: Int] {
    var counts: [[UInt8]: Int] = [:]
    for text in texts {
      let s = Array(text.unicodeScalars)
      for r in GPT2PreTokenizer.ranges(s) {
        var piece = String.UnicodeScalarView()
        piece.append(contentsOf: s[r])
        counts[Array(String(piece).utf8), default: 0] += 1
      }
    }
    return counts
  }

  /// Trains on `texts` (each pre-tokenized on its own, as the library's `train_from_iterator`
  /// is given them). Throws `BPETrainerError` for a `vocabSize` below the special tokens plus
  /// the 256 byte symbols, a negative `minFrequency` and a corpus without any text.
  public func train<S: Sequence<String>>(_ texts: S) throws -> BPEVocabulary {
    try train(wordCounts: Self.wordCounts(texts))
  }

  /// Trains on word counts (UTF-8 bytes of each pre-tokenized piece → occurrences).
  public func train(wordCounts: [[UInt8]: Int]) throws -> BPEVocabulary {
    var tokens: [String] = []
    var ids: [String: Int] = [:]
    func add(_ t: String) {
      if ids[t] == nil {
        ids[t] = tokens.count
        tokens.append(t)
      }
    }
    specialTokens.forEach(add)
    let alphabet = ByteLevelAlphabet.characters.sorted { $0.value < $1.value }
    for c in alphabet { add(String(c)) }
    guard vocabSize >= tokens.count else {
      throw BPETrainerError(
        "tokenizer.vocab_size \(vocabSize) is below the \(specialTokens.count) special "
          + "tokens plus the 256 byte symbols (\(tokens.count))")
    }
    guard minFrequency >= 0 else {
      throw BPETrainerError("tokenizer.min_frequency \(minFrequency) must not be negative")
    }
    guard wordCounts.values.contains(where: { $0 > 0 }) else {
      throw BPETrainerError("the corpus holds no text to train a tokenizer on")
    }
    let byteID = (0..<256).map { ids[String(ByteLevelAlphabet.characters[$0])]! }

    // Words as symbol ids, in a fixed order (the result does not depend on it).
    let sortedWords = wordCounts.filter { $0.value > 0 }.sorted {
      $0.key.lexicographicallyPrecedes($1.key)
    }
    var words = sortedWords.map { $0.key.map { Int32(byteID[Int($0)]) } }
    let counts = sortedWords.map(\.value)

    var pairCounts: [UInt64: Int] = [:]
    var whereToUpdate: [UInt64: Set<Int>] = [:]
    for (i, w) in words.enumerated() where w.count > 1 {
      for j in 0..<(w.count - 1) {
        let p = Self.key(w[j], w[j + 1])
        pairCounts[p, default: 0] += counts[i]
        whereToUpdate[p, default: []].insert(i)
      }
    }
    var queue = MergeQueue()
    for (p, positions) in whereToUpdate {
      let c = pairCounts[p]!
      if c > 0 { queue.push(.init(pair: p, count: c, positions: positions)) }
    }
    whereToUpdate.removeAll()

    var merges: [[String]] = []
    while tokens.count < vocabSize, var top = queue.pop() {
      let current = pairCounts[top.pair]!
      if top.count != current {
        top.count = current
        queue.push(top)
        continue
      }
      if top.count < 1 || minFrequency > top.count { break }
      let (a, b) = (Int32(truncatingIfNeeded: top.pair >> 32), Int32(truncatingIfNeeded: top.pair))
      let text = tokens[Int(a)] + tokens[Int(b)]
      add(text)
      let replacement = Int32(ids[text]!)
      merges.append([tokens[Int(a)], tokens[Int(b)]])
      for i in top.positions {
        for (p, change) in Self.merge(&words[i], a, b, replacement) {
          pairCounts[p, default: 0] += change * counts[i]
          if change > 0 { whereToUpdate[p, default: []].insert(i) }
        }
      }
      for (p, positions) in whereToUpdate {
        let c = pairCounts[p]!
        if c > 0 { queue.push(.init(pair: p, count: c, positions: positions)) }
      }
      whereToUpdate.removeAll(keepingCapacity: true)
    }
    return BPEVocabulary(tokens: tokens, merges: merges, specialTokens: specialTokens)
  }

  private static func key(_ a: Int32, _ b: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
  }

  /// Merges every `a b` of `word` into `replacement`, left to right, and returns the changes to
  /// the pair counts of one occurrence of the word (the library's `Word::merge`).
  private static func merge(
    _ word: inout [Int32], _ a: Int32, _ b: Int32, _ replacement: Int32
  ) -> [(UInt64, Int)] {
    var changes: [(UInt64, Int)] = []
    var i = 0
    while i < word.count {
      if word[i] == a && i + 1 < word.count && word[i + 1] == b {
        if i > 0 {
          changes.append((key(word[i - 1], a), -1))
          changes.append((key(word[i - 1], replacement), 1))
        }
        word[i] = replacement
        word.remove(at: i + 1)
        if i < word.count - 1 {
          changes.append((key(b, word[i + 1]), -1))
          changes.append((key(replacement, word[i + 1]), 1))
        }
      }
      i += 1
    }
    return changes
  }
}

/// A pair to merge, with its count when queued and the words it was seen in since.
private struct QueuedMerge {
  var pair: UInt64
  var count: Int
  var positions: Set<Int>

  /// The library's order: the higher count first, then the smaller pair of ids.
  func outranks(_ o: QueuedMerge) -> Bool {
    count != o.count ? count > o.count : pair < o.pair
  }
}

/// A binary max-heap of merges by `QueuedMerge.outranks`.
private struct MergeQueue {
  private var items: [QueuedMerge] = []

  mutating func push(_ m: QueuedMerge) {
    items.append(m)
    var i = items.count - 1
    while i > 0 {
      let parent = (i - 1) / 2
      guard items[i].outranks(items[parent]) else { break }
      items.swapAt(i, parent)
      i = parent
    }
  }

  mutating func pop() -> QueuedMerge? {
    guard !items.isEmpty else { return nil }
    items.swapAt(0, items.count - 1)
    let top = items.removeLast()
    var i = 0
    while true {
      let (l, r) = (2 * i + 1, 2 * i + 2)
      var best = i
      if l < items.count && items[l].outranks(items[best]) { best = l }
      if r < items.count && items[r].outranks(items[best]) { best = r }
      if best == i { break }
      items.swapAt(i, best)
      i = best
    }
    return top
  }
}
