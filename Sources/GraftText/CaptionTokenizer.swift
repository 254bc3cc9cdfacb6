/// Caption normalisation as the COCO caption evaluation code does it before scoring:
/// pycocoevalcap's `PTBTokenizer` writes the captions one a line to a file, runs Stanford
/// CoreNLP 3.4.1's `PTBTokenizer` on it with `-preserveLines -lowerCase`, then drops the tokens
/// in its `PUNCTUATIONS` list (`''`, `'`, ` `` `, `` ` ``, `-LRB-`, `-RRB-`, `-LCB-`, `-RCB-`,
/// `.`, `?`, `!`, `,`, `:`, `-`, `--`, `...`, `;`).
///
/// This re-implements the part of Stanford's lexer (a JFlex scanner: longest match, first rule
/// on a tie) that English captions exercise, as hand-written matchers for its word-like rules.
/// It was checked token for token against the jar on the 554 captions of the fixture that
/// `Tools/make_caption_score_fixtures.py` writes (which the tests compare; 400 of them random
/// captions built from caption words, contractions, numbers, hyphenated words, abbreviations
/// and sentence punctuation), and during development on 12,000 more such random captions, with
/// no difference. It reproduces:
/// - lower-casing, and the COCO quirk that brackets survive: the lexer writes `(` as `-LRB-`,
///   lower-casing makes it `-lrb-`, which is not in the upper-case drop list (likewise `-rrb-`,
///   `-lsb-`, `-rsb-`, `-lcb-`, `-rcb-`; emoticons such as `:)` become `:-rrb-`);
/// - contractions split as the Penn Treebank does: `don't` → `do n't`, `can't` → `ca n't`,
///   `won't` → `wo n't`, `it's` → `it 's`, and `'m 're 've 'll 'd` (with a straight apostrophe
///   only when no letter follows: `they'reof` is a quote and `reof`); `cannot` → `can not`, and
///   `gonna`, `gotta`, `wanna`, `gimme`, `lemme` likewise; possessive `dogs'` → `dogs '` (the
///   quote then dropped); `'90s`, `'em`, `'cause`, `'til`, `'n'`, `y'`, `o'clock`, `O'Neill`,
///   `Hawai'i` kept whole; `'tis` → `'t is`; already split `'s` and `n't` kept; curly
///   apostrophes written straight in contractions and kept as written elsewhere;
/// - punctuation split off and dropped, with runs of two or more `?`/`!` kept as one token
///   (`?!`, `!!`), which the drop list does not name, as are `##`, `__`, `**`, `<<`;
/// - hyphenated words (`black-and-white`, `3-year-old`, `2.5-inch`, `u.s.-based`) kept whole,
///   lone hyphens and dash runs (`--`, `—`, `–`) dropped; numbers with `.`, `,` or `:` between
///   digits (`3.5`, `1,000`, `5:30`) split from letters after them (`5:30pm` → `5:30 pm`),
///   signed numbers (`-5`), fractions (`1/2`, `½` → `1/2`; `3 1/2` becomes one token joined by
///   a no-break space, as the lexer writes it), `a/b`, `24/7`, `#tag`, `@name`, `AT&T`, `US$`
///   whole; `$`, `%`, `&`, `+`, `*`, `=` and the like tokens of their own;
/// - a final period kept on single letters, letter-period acronyms (`u.s.`, `e.g.`), the
///   lexer's abbreviation lists (`mr.`, `dr.`, `st.`, `etc.`, `jan.`, `inc.`, …; `no.`, `fig.`
///   and a few others only before a number), and any word before `,` `;` `:` (`dog.,`); split
///   off and dropped everywhere else. A single letter gives its period up before a word such
///   as "The" or "She", and the lexer looks for that word past the end of the line, in the
///   next caption: `tokens(batch:)` takes the captions in the order the wrapper writes them;
/// - the ellipsis character, and characters outside the Basic Multilingual Plane (emoji),
///   which the jar discards.
///
/// Where it can differ from Stanford's lexer: URLs, e-mail addresses beyond `name@host.tld`,
/// SGML/HTML tags and entities (`<b>`, `&amp;`), phone numbers, runs of quote marks (the jar
/// joins `“` and `` ` `` into one token the drop list misses), the list of sentence-starting
/// words (found by probing the jar, so possibly incomplete), rarer elisions (`ev'ry`), and
/// punctuation glued between words (`a.5`, `x!y`, `word'sx`) where more of the lexer's rules
/// compete. On random strings of such glued punctuation about 1 in 100 differ; ordinary
/// caption text does not reach these cases.
public enum CaptionTokenizer {
  /// The tokens of one caption after the COCO wrapper's punctuation filter, lower-cased, as
  /// if it were the last (or only) caption the wrapper tokenised.
  public static func tokens(_ caption: String) -> [String] {
    tokens(chunks: chunks(caption), nextLine: nil)
  }

  /// The tokens of captions tokenised together, as the COCO wrapper does: it writes them one a
  /// line to one file for the jar, and the lexer looks past the end of a line. The one effect
  /// that reaches a kept token: a caption ending in a single letter and a period (`… plan b.`)
  /// keeps the period unless the next caption starts with a word such as "The" or "She".
  public static func tokens(batch captions: [String]) -> [[String]] {
    let chunked = captions.map(chunks)
    return chunked.indices.map { k in
      let next = chunked[(k + 1)...].first { !$0.isEmpty }?.first
      return tokens(chunks: chunked[k], nextLine: next)
    }
  }

  /// A caption's runs of non-space characters, after the jar's character normalisation.
  private static func chunks(_ caption: String) -> [[Unicode.Scalar]] {
    var scalars: [Unicode.Scalar] = []
    for s in caption.unicodeScalars { appendNormalized(s, to: &scalars) }
    // A token never spans white space except `3 1/2`, which `tokens(chunks:nextLine:)` joins.
    var chunks: [[Unicode.Scalar]] = []
    var current: [Unicode.Scalar] = []
    for s in scalars {
      if isSpace(s) {
        if !current.isEmpty { chunks.append(current) }
        current = []
      } else {
        current.append(s)
      }
    }
    if !current.isEmpty { chunks.append(current) }
    return chunks
  }

  private static func tokens(chunks: [[Unicode.Scalar]], nextLine: [Unicode.Scalar]?)
    -> [String]
  {
    var out: [String] = []
    var k = 0
    while k < chunks.count {
      let next = k + 1 < chunks.count ? chunks[k + 1] : nil
      // The lexer's fraction rule: up to four digits, a space, then d/d becomes one token
      // whose space is written as a no-break space.
      var chunk = chunks[k]
      var following = next
      if let next, endsWithFractionWhole(chunk), startsWithFraction(next) {
        chunk += ["\u{A0}"] + next
        following = k + 2 < chunks.count ? chunks[k + 2] : nil
        k += 1
      }
      let context = Context(next: following ?? nextLine ?? [])
      for t in chunkTokens(chunk, context) where !dropped.contains(t) {
        out.append(t.lowercased())
      }
      k += 1
    }
    return out
  }

  /// What follows a chunk: the next run of non-space characters in the jar's input, on this
  /// line or a later one (empty at the end of the input).
  struct Context {
    var next: [Unicode.Scalar]
  }

  /// The normalised caption as the COCO scorers receive it: the kept tokens joined by spaces.
  public static func normalize(_ caption: String) -> String {
    tokens(caption).joined(separator: " ")
  }

  /// `normalize` over captions tokenised together (see `tokens(batch:)`).
  public static func normalize(batch captions: [String]) -> [String] {
    tokens(batch: captions).map { $0.joined(separator: " ") }
  }

  /// pycocoevalcap's `PUNCTUATIONS` in the lexer's own spelling (before lower-casing), so
  /// bracket tokens, which this tokenizer emits already lower-cased, pass as they do there.
  static let dropped: Set<String> = [
    "''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";",
  ]

  /// Abbreviations whose final period the lexer keeps, matched without regard to case.
  static let abbreviations: Set<String> = [
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "tues", "wed", "thu", "thurs", "fri",
    "ala", "ariz", "calif", "colo", "conn", "ct", "dak", "fla", "ga", "ind", "kan", "kans", "ky",
    "md", "mich", "minn", "mo", "mont", "neb", "nev", "okla", "penn", "tenn", "va", "vt", "wis",
    "wyo",
    "inc", "co", "cos", "corp", "pty", "ptys", "pte", "ptes", "ltd", "plc", "rt", "bancorp",
    "dept", "bhd", "assn", "univ", "intl", "sys", "tel", "est", "ext", "sq", "jr", "sr", "bros",
    "blvd", "rd", "esq", "etc", "al", "seq", "bldg", "ph.d", "ed.d",
    "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty",
    "attys", "lt", "col", "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt", "cpl",
    "pvt", "capt", "st", "ste", "ave", "pres", "lieut", "hon", "brig", "cmdr", "comdr", "pfc",
    "spc", "supt", "supts", "det", "mme", "mlle", "vs", "alex", "cie", "treas", "ph", "mt", "ft",
  ]

  /// Abbreviations the lexer lists with a capital first letter (`Ark.` but not `ark.`).
  static let capitalizedAbbreviations: Set<String> = [
    "ark", "del", "ill", "la", "mass", "miss", "ore", "pa", "tex", "wash", "mm",
  ]

  /// Capitalised words before which a single letter loses its period (`a. The` → `a . the`),
  /// as far as they were found by probing the jar.
  static let sentenceStarts: Set<String> = [
    "the", "this", "that", "these", "he", "she", "it", "they", "we", "you", "in", "at", "a",
    "an", "but", "so", "then", "there", "here", "what", "when", "some", "many", "her", "our",
    "their", "one", "if", "as", "after", "while", "however", "now", "last", "once", "since",
    "more", "other", "such", "yet", "about",
  ]

  /// Abbreviations that keep their period only before a number (`no. 5`, `fig. 3`).
  static let numberAbbreviations: Set<String> = [
    "ca", "fig", "figs", "prop", "no", "nos", "art", "bldg", "pp", "op",
  ]

  /// Whole words the lexer splits in two (its "assimilations").
  static let assimilations: [String: Int] = [
    "cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "gimme": 3, "lemme": 3,
  ]

  /// The lexer's names for brackets, already lower-cased as `-lowerCase` writes them, and the
  /// closing quote it writes for a straight double quote (dropped either way).
  static let brackets: [Unicode.Scalar: String] = [
    "(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-",
    "\"": "''",
  ]

  /// Suffixes split off a word after an apostrophe: `'s 'm 'd 're 've 'll`.
  static let apostropheSuffixes = ["s", "m", "d", "re", "ve", "ll"]

  /// Words the lexer keeps whole although they start with an apostrophe.
  static let leadingApostropheWords = ["cause", "till", "til", "em"]

  // MARK: - Characters

  /// Rewrites what the jar normalises before its rules see it.
  private static func appendNormalized(_ s: Unicode.Scalar, to out: inout [Unicode.Scalar]) {
    switch s.value {
    case 0x0A, 0x0D: out.append(" ")  // the wrapper joins a caption's lines
    case 0x201C, 0x201D, 0x201E, 0x0093, 0x0094: out.append("\"")
    case 0x2013, 0x2014, 0x2015, 0x0096, 0x0097: out.append(contentsOf: ["-", "-"])
    case 0xBC: out.append(contentsOf: ["1", "/", "4"])
    case 0xBD: out.append(contentsOf: ["1", "/", "2"])
    case 0xBE: out.append(contentsOf: ["3", "/", "4"])
    case 0x2153: out.append(contentsOf: ["1", "/", "3"])
    case 0x2154: out.append(contentsOf: ["2", "/", "3"])
    case 0x10000...: break  // outside the BMP: the jar drops it as untokenizable
    default:
      // Control characters separate tokens in the jar's output and are not tokens themselves.
      out.append(s.properties.generalCategory == .control ? " " : s)
    }
  }

  private static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }
  /// The lexer's apostrophes (`APOS`): straight, right single quote, and CP1252's.
  private static func isAPOS(_ s: Unicode.Scalar) -> Bool {
    s == "'" || s == "\u{2019}" || s == "\u{92}"
  }
  /// Apostrophes and the quote marks the lexer also accepts inside words (`APOSETCETERA`).
  private static func isApostropheLike(_ s: Unicode.Scalar) -> Bool {
    isAPOS(s) || s == "`" || s == "\u{2018}" || s == "\u{201B}" || s == "\u{91}"
  }
  private static func isDigit(_ s: Unicode.Scalar) -> Bool {
    s.properties.numericType == .decimal
  }
  private static func isLetter(_ s: Unicode.Scalar) -> Bool {
    s.properties.isAlphabetic || s.properties.generalCategory == .nonspacingMark
      || s.properties.generalCategory == .spacingMark
  }
  private static func isAlnum(_ s: Unicode.Scalar) -> Bool { isLetter(s) || isDigit(s) }
  private static func isUpperASCII(_ s: Unicode.Scalar) -> Bool { s.value >= 65 && s.value <= 90 }

  /// Whether a chunk ends in one to four digits that start a token (`3`, `"3`, not `x3` or
  /// `3.3`): the whole-number part of the lexer's `3 1/2`.
  private static func endsWithFractionWhole(_ c: [Unicode.Scalar]) -> Bool {
    var i = c.count
    while i > 0 && isDigit(c[i - 1]) { i -= 1 }
    guard (1...4).contains(c.count - i) else { return false }
    guard i > 0 else { return true }
    let before = c[i - 1]
    return !isAlnum(before) && !".,:-+\\/".unicodeScalars.contains(before)
      && !isApostropheLike(before)
  }

  /// The end of an emoticon at `i` (`:)`, `;-(`, `:]`, `:D`), which the lexer keeps whole,
  /// writing its bracket as it writes brackets.
  private static func emoticonEnd(_ c: [Unicode.Scalar], at i: Int) -> Int? {
    var k = i + 1
    if k < c.count && c[k] == "-" { k += 1 }
    guard k < c.count else { return nil }
    switch c[k] {
    case ")", "(", "]", "[": return k + 1
    case "D", "P", "p": return k + 1 == c.count || !isAlnum(c[k + 1]) ? k + 1 : nil
    default: return nil
    }
  }

  /// Whether a chunk starts with `d/d` (one to four digits each).
  private static func startsWithFraction(_ c: [Unicode.Scalar]) -> Bool {
    var i = 0
    while i < c.count && isDigit(c[i]) { i += 1 }
    guard (1...4).contains(i), i + 1 < c.count, c[i] == "/" else { return false }
    return isDigit(c[i + 1])
  }

  private static func string(_ c: ArraySlice<Unicode.Scalar>) -> String {
    String(String.UnicodeScalarView(c))
  }

  /// Whether `c[i...]` starts with `text` (ASCII, compared without regard to case) and the
  /// character after it, if any, is not a letter or digit.
  private static func hasWord(_ c: [Unicode.Scalar], at i: Int, _ text: String) -> Bool {
    let t = Array(text.unicodeScalars)
    guard i + t.count <= c.count else { return false }
    for (k, u) in t.enumerated() where lowerASCII(c[i + k]) != u { return false }
    return i + t.count == c.count || !isAlnum(c[i + t.count])
  }

  private static func lowerASCII(_ s: Unicode.Scalar) -> Unicode.Scalar {
    isUpperASCII(s) ? Unicode.Scalar(s.value + 32)! : s
  }

  // MARK: - Chunks

  /// The lexer's tokens (before lower-casing and the drop filter) of one run of non-space
  /// characters.
  private static func chunkTokens(_ c: [Unicode.Scalar], _ context: Context) -> [String] {
    var out: [String] = []
    var i = 0
    let n = c.count
    func at(_ k: Int) -> Unicode.Scalar? { k < n ? c[k] : nil }
    while i < n {
      let s = c[i]
      let next = at(i + 1)
      if isSpace(s) {  // the no-break space of a fraction that did not form
        i += 1
        continue
      }
      let startsNumber =
        (s == "-" || s == "+" || s == "." || s == "," || s == ":") && next.map(isDigit) == true
      if isAlnum(s) || startsNumber {
        i = scanWord(c, from: i, into: &out, context)
        continue
      }
      if isApostropheLike(s) {
        if let j = leadingApostropheToken(c, at: i, into: &out) {
          i = j
        } else {
          out.append("'")  // a quote, dropped
          i += 1
        }
        continue
      }
      switch s {
      case ".":
        var j = i
        while j < n && c[j] == "." { j += 1 }
        if j - i < 3 && j < n && isDigit(c[j]) { j -= 1 }  // the last starts a number: `..5`
        out.append(j - i >= 3 ? "..." : ".")
        if j - i == 2 { out.append(".") }
        i = j
      case "?", "!":
        var j = i
        while j < n && (c[j] == "?" || c[j] == "!") { j += 1 }
        out.append(string(c[i..<j]))
        i = j
      case "-":
        var j = i
        while j < n && c[j] == "-" { j += 1 }
        out.append(j - i >= 2 ? "--" : "-")
        i = j
      case ":" where emoticonEnd(c, at: i) != nil, ";" where emoticonEnd(c, at: i) != nil:
        let e = emoticonEnd(c, at: i)!
        let last = c[e - 1]
        out.append(
          string(c[i..<(e - 1)]) + (last == "(" || last == ")" ? brackets[last]! : String(last)))
        i = e
      case "\u{2026}":  // the ellipsis character, its own token (so `I…` keeps no period)
        out.append("...")
        i += 1
      case "(", ")", "[", "]", "{", "}", "\"":
        out.append(brackets[s]!)
        i += 1
      case "#" where next.map(isLetter) == true:
        // A hashtag: `#` and the lexer's WORD.
        let m = Matcher(c: c, context: context)
        let j = m.word(i + 1)!
        out.append(string(c[i..<j]))
        i = j
      case "@" where next.map({ isLetter($0) || $0 == "_" }) == true:
        var j = i + 1
        while j < n && (isAlnum(c[j]) || c[j] == "_") { j += 1 }
        out.append(string(c[i..<j]))
        i = j
      case "#", "_", "*", "@":
        // Runs of these are one token (`##`, `__`, `**`).
        var j = i
        while j < n && c[j] == s { j += 1 }
        out.append(string(c[i..<j]))
        i = j
      case "<" where next == "<", ">" where next == ">":
        out.append(string(c[i..<(i + 2)]))
        i += 2
      default:
        out.append(String(s))
        i += 1
      }
    }
    return out
  }

  /// Scans the token the lexer's word-like rules match at `start`, appends it (split where
  /// those rules split) and returns the index after what it consumed. Like JFlex, it takes the
  /// longest match, counting a rule's trailing context; on a tie the rule listed first wins,
  /// and the lexer lists its splitting rules (`cannot`, `do|n't`, `it|'s`) before the others.
  private static func scanWord(
    _ c: [Unicode.Scalar], from start: Int, into out: inout [String], _ context: Context
  ) -> Int {
    let m = Matcher(c: c, context: context)
    enum Kind { case assimilation, beforeNT, nt, beforeSuffix, whole }
    let candidates: [(Kind, Int?)] = [
      (.assimilation, m.assimilation(start)), (.beforeNT, m.beforeNT(start)),
      (.nt, m.nt(start)), (.beforeSuffix, m.beforeSuffix(start)),
      (.whole, m.abbreviation(start)), (.whole, m.number(start)), (.whole, m.thing(start)),
      (.whole, m.word(start)), (.whole, m.hyphenated(start)), (.whole, m.slashed(start)),
      (.whole, m.fraction(start)), (.whole, m.capitalsJoined(start)), (.whole, m.email(start)),
      (.whole, m.apostropheWord(start)), (.whole, m.dollar(start)), (.whole, m.yApostrophe(start)),
    ]
    var best: (Kind, Int)?
    for case (let kind, let end?) in candidates where end > (best?.1 ?? start) {
      best = (kind, end)
    }
    guard let (kind, end) = best else {
      out.append(String(c[start]))
      return start + 1
    }
    switch kind {
    case .assimilation:
      out.append(string(c[start..<(start + 3)]))
      out.append(string(c[(start + 3)..<end]))
      return end
    case .beforeNT:
      out.append(string(c[start..<(end - 3)]))
      return end - 3
    case .nt:
      out.append(m.ntText(start, end))
      return end
    case .beforeSuffix:
      let apostrophe = (start..<end).last { isAPOS(c[$0]) }!
      out.append(string(c[start..<apostrophe]))
      return apostrophe
    case .whole:
      out.append(string(c[start..<end]))
      return end
    }
  }

  /// Matchers for the lexer's word-like rules; each returns the end of its longest match at
  /// a position, or nil.
  private struct Matcher {
    let c: [Unicode.Scalar]
    let context: Context
    var n: Int { c.count }

    func run(_ i: Int, _ p: (Unicode.Scalar) -> Bool) -> Int {
      var j = i
      while j < n && p(c[j]) { j += 1 }
      return j
    }
    func isASCIILetter(_ s: Unicode.Scalar) -> Bool { s.isASCII && isLetter(s) }
    func isASCIIAlnum(_ s: Unicode.Scalar) -> Bool { s.isASCII && isAlnum(s) }
    func isApostrophe(_ k: Int) -> Bool { k < n && isApostropheLike(c[k]) }

    /// `cannot`, `gonna`, `gotta`, `wanna`, `gimme`, `lemme`, not followed by a letter.
    func assimilation(_ i: Int) -> Int? {
      let e = run(i, isASCIILetter)
      guard e < n ? !isLetter(c[e]) : true else { return nil }
      return assimilations[string(c[i..<e]).lowercased()] != nil ? e : nil
    }

    /// Letters not ending in n, then `n't`: the end of the `n't` (the trailing context).
    func beforeNT(_ i: Int) -> Int? {
      let e = run(i, isASCIILetter)
      let p = e - 1
      guard p > i, c[p] == "n" || c[p] == "N", isApostrophe(e), e + 1 < n,
        c[e + 1] == "t" || c[e + 1] == "T", c[p - 1] != "n", c[p - 1] != "N"
      else { return nil }
      return e + 2
    }

    /// `n't` with any letters straight after it (the lexer keeps them on).
    func nt(_ i: Int) -> Int? {
      guard i + 2 < n, c[i] == "n" || c[i] == "N", isApostrophe(i + 1),
        c[i + 2] == "t" || c[i + 2] == "T"
      else { return nil }
      return run(i + 3, isLetter)
    }

    /// `n't` as the lexer writes it: with a straight apostrophe.
    func ntText(_ i: Int, _ end: Int) -> String {
      String(c[i]) + "'" + string(c[(i + 2)..<end])
    }

    /// Letters and digits, then `'s 'm 'd 're 've 'll` not followed by a letter: the end of
    /// the suffix (the trailing context).
    func beforeSuffix(_ i: Int) -> Int? {
      let e = run(i, isAlnum)
      guard e > i, e < n, isAPOS(c[e]) else { return nil }
      return suffixEnd(c, at: e)
    }

    /// A word and the period the lexer keeps on it: single letters, letter-period acronyms,
    /// and its abbreviation lists.
    func abbreviation(_ i: Int) -> Int? {
      var e = run(i, isASCIILetter)
      guard e > i else { return nil }
      while e + 1 < n, c[e] == ".", isASCIILetter(c[e + 1]) { e = run(e + 1, isASCIILetter) }
      guard e < n, c[e] == "." else { return nil }
      let atEnd = e + 1 == n
      let followedByDigit = atEnd ? context.next.first.map(isDigit) == true : isDigit(c[e + 1])
      // A single letter gives its period up before a sentence-starting word (`a. The`), on
      // the same line or the next.
      if e == i + 1 && atEnd && startsSentence(context.next) { return nil }
      return keepsPeriod(Array(c[i..<e]), followedByDigit: followedByDigit) ? e + 1 : nil
    }

    /// Whether a chunk is one of the capitalised words the lexer takes to start a sentence
    /// after a single letter and a period (the whole chunk: `They,` and `It's` are not).
    func startsSentence(_ w: [Unicode.Scalar]) -> Bool {
      guard let first = w.first, isUpperASCII(first), w.allSatisfy(isASCIILetter) else {
        return false
      }
      return sentenceStarts.contains(string(w[...]).lowercased())
    }

    /// `[-+]?` digits, or digits with `.`, `:` or `,` groups (`3.5`, `1,000`, `5:30`, `.5`).
    func number(_ i: Int) -> Int? {
      var j = i
      if j < n && (c[j] == "-" || c[j] == "+") { j += 1 }
      let digitsStart = j
      j = run(j, isDigit)
      var end: Int? = j > digitsStart ? j : nil
      while j + 1 < n, c[j] == "." || c[j] == ":" || c[j] == ",", isDigit(c[j + 1]) {
        j = run(j + 1, isDigit)
        end = j
      }
      return end
    }

    /// Letters and digits joined by hyphens (`black-and-white`, `3-year-old`), each part
    /// optionally after `d'`, `o'` or `l'` (`o'clock`); underscores between letters join too.
    func thing(_ i: Int) -> Int? {
      func part(_ k: Int) -> Int? {
        var k = k
        if k + 2 < n, "dDoOlL".unicodeScalars.contains(c[k]), isApostrophe(k + 1),
          isAlnum(c[k + 2]), suffixEnd(c, at: k + 1) == nil
        {
          k += 2
        }
        guard k < n, isAlnum(c[k]) else { return nil }
        var e = run(k, isAlnum)
        while e + 1 < n, c[e] == "_", isAlnum(c[e + 1]) { e = run(e + 1, isAlnum) }
        return e
      }
      guard var e = part(i) else { return nil }
      while e < n, isHyphen(c[e]), let next = part(e + 1) { e = next }
      return keepsPeriodBeforePunctuation(e)
    }

    /// The lexer keeps a period on a word or a whole number before `,`, `;` or `:` (`dog.,`).
    func keepsPeriodBeforePunctuation(_ e: Int) -> Int {
      e + 1 < n && c[e] == "." && (c[e + 1] == "," || c[e + 1] == ";" || c[e + 1] == ":")
        ? e + 1 : e
    }

    /// A letter, letters and digits, then more such runs after `.`, `!` or `?`
    /// (`guitar.a`, `e.g` before its final period).
    func word(_ i: Int) -> Int? {
      guard isLetter(c[i]) else { return nil }
      var e = run(i, isAlnum)
      while e + 1 < n, c[e] == "." || c[e] == "!" || c[e] == "?", isLetter(c[e + 1]) {
        e = run(e + 1, isAlnum)
      }
      return keepsPeriodBeforePunctuation(e)
    }

    /// ASCII letters, digits, `.` and `,`, then hyphenated parts (`2.5-inch`, `u.s.-based`).
    func hyphenated(_ i: Int) -> Int? {
      guard isASCIIAlnum(c[i]) else { return nil }
      // `.` and `,` only one at a time (`2.5`, `u.s.`), never a run such as an ellipsis.
      var e = i + 1
      while e < n,
        isASCIIAlnum(c[e]) || (c[e] == "." || c[e] == ",") && !(c[e - 1] == "." || c[e - 1] == ",")
      {
        e += 1
      }
      var matched = false
      while e + 1 < n, c[e] == "-" {
        let alnum = run(e + 1, isASCIIAlnum)
        var acronym = alnum
        if alnum == e + 2 {
          var k = alnum
          while k + 1 < n, c[k] == ".", isASCIILetter(c[k + 1]), k + 2 == n || c[k + 2] == "." {
            k += 2
          }
          if k > alnum, k < n, c[k] == "." { acronym = k + 1 }
        }
        let next = max(alnum, acronym)
        guard next > e + 1 else { break }
        e = next
        matched = true
      }
      return matched ? e : nil
    }

    /// Up to three parts joined by `/` (`and/or`, `50/50`, `1/2-inch`), each letters and
    /// digits with up to two hyphenated letter runs.
    func slashed(_ i: Int) -> Int? {
      func part(_ k: Int) -> Int? {
        guard k < n, isAlnum(c[k]) else { return nil }
        var e = run(k, isAlnum)
        for _ in 0..<2 {
          guard e + 1 < n, c[e] == "-", isLetter(c[e + 1]) else { break }
          e = run(e + 1, isLetter)
        }
        return e
      }
      guard var e = part(i) else { return nil }
      var groups = 0
      while groups < 2 {
        var k = e
        if k < n && c[k] == "\\" { k += 1 }
        guard k < n, c[k] == "/", let next = part(k + 1) else { break }
        e = next
        groups += 1
      }
      return groups > 0 ? e : nil
    }

    /// `1/2`, `3-1/2`, and `3 1/2` (joined by a no-break space in `tokens`).
    func fraction(_ i: Int) -> Int? {
      func simple(_ k: Int) -> Int? {
        let d = run(k, isDigit)
        guard (1...4).contains(d - k) else { return nil }
        var s = d
        if s < n && c[s] == "\\" { s += 1 }
        guard s < n, c[s] == "/" || c[s] == "\u{2044}", s + 1 < n, isDigit(c[s + 1]) else {
          return nil
        }
        return min(run(s + 1, isDigit), s + 5)
      }
      let d = run(i, isDigit)
      if (1...4).contains(d - i), d < n, c[d] == "-" || c[d] == "\u{A0}", let e = simple(d + 1) {
        return e
      }
      return simple(i)
    }

    /// Capitals joined by `&` or `+` (`AT&T`).
    func capitalsJoined(_ i: Int) -> Int? {
      var e = run(i, isUpperASCII)
      guard e > i else { return nil }
      var matched = false
      while e + 1 < n, c[e] == "&" || c[e] == "+", isUpperASCII(c[e + 1]) {
        e = run(e + 1, isUpperASCII)
        matched = true
      }
      return matched ? e : nil
    }

    /// Capitals and a dollar sign (`US$`).
    func dollar(_ i: Int) -> Int? {
      let e = run(i, isUpperASCII)
      return e > i && e < n && c[e] == "$" ? e + 1 : nil
    }

    /// `y'` of `y'all`.
    func yApostrophe(_ i: Int) -> Int? {
      (c[i] == "y" || c[i] == "Y") && i + 1 < n && isAPOS(c[i + 1]) ? i + 2 : nil
    }

    /// A simple e-mail address: `name@host.domain`.
    func email(_ i: Int) -> Int? {
      guard isASCIIAlnum(c[i]) else { return nil }
      let at = run(i) { isASCIIAlnum($0) || $0 == "." || $0 == "_" || $0 == "-" || $0 == "+" }
      guard at < n, c[at] == "@", at + 1 < n, isASCIIAlnum(c[at + 1]) else { return nil }
      var e = run(at + 1) { isASCIIAlnum($0) || $0 == "-" }
      while e + 1 < n, c[e] == ".", isASCIIAlnum(c[e + 1]) {
        e = run(e + 1) { isASCIIAlnum($0) || $0 == "-" }
      }
      return e
    }

    /// Elisions the lexer keeps whole: a letter (not I or Y) and an apostrophe before two or
    /// more letters (`O'Neill`), and letters ending in a vowel, an apostrophe, then a vowel or
    /// a capital (`Hawai'i`).
    func apostropheWord(_ i: Int) -> Int? {
      guard isLetter(c[i]) else { return nil }
      var best: Int?
      let first = c[i]
      if i + 1 < n, isApostrophe(i + 1),
        (isUpperASCII(first) && first != "I" && first != "Y") || first == "n"
      {
        let e = run(i + 2, isLetter)
        if e - (i + 2) >= 2 { best = e }
      }
      let e = run(i, isLetter)
      if e - i >= 2, "aeiouyAEIOUY".unicodeScalars.contains(c[e - 1]), isApostrophe(e),
        e + 1 < n, "aeiou".unicodeScalars.contains(c[e + 1]) || isUpperASCII(c[e + 1])
      {
        best = max(best ?? 0, run(e + 1, isLetter))
      }
      return best
    }

    func keepsPeriod(_ word: [Unicode.Scalar], followedByDigit: Bool) -> Bool {
      let lower = string(word[...]).lowercased()
      if word.count == 1 { return true }
      // Letter-period acronyms: u.s, e.g, a.m, a.k.a.
      let parts = lower.split(separator: ".", omittingEmptySubsequences: false)
      if parts.count > 1 && parts.allSatisfy({ $0.count == 1 }) { return true }
      if abbreviations.contains(lower) { return true }
      if capitalizedAbbreviations.contains(lower) && isUpperASCII(word[0]) { return true }
      return followedByDigit && numberAbbreviations.contains(lower)
    }
  }

  private static func isHyphen(_ s: Unicode.Scalar) -> Bool {
    s == "-" || s == "\u{2010}" || s == "\u{2011}"
  }

  /// If `c[i]` is an apostrophe starting `'s 'm 'd 're 've 'll` (any case), the end of that
  /// suffix. After a straight apostrophe the lexer wants no letter next (`they'reof` is a
  /// quote and `reof`); after a curly one it does not care (`’red` → `'re d`).
  private static func suffixEnd(_ c: [Unicode.Scalar], at i: Int) -> Int? {
    guard i < c.count, isAPOS(c[i]) else { return nil }
    for s in apostropheSuffixes {
      let t = Array(s.unicodeScalars)
      let end = i + 1 + t.count
      guard end <= c.count else { continue }
      if (0..<t.count).allSatisfy({ lowerASCII(c[i + 1 + $0]) == t[$0] }),
        c[i] != "'" || end == c.count || !isLetter(c[end])
      {
        return end
      }
    }
    return nil
  }

  /// Tokens that start with an apostrophe not attached to a preceding word: an already split
  /// `'s`, `'90s`, `'em`, `'tis`. Returns the index after what it appended, or nil for a quote.
  private static func leadingApostropheToken(
    _ c: [Unicode.Scalar], at i: Int, into out: inout [String]
  ) -> Int? {
    let n = c.count
    if let end = suffixEnd(c, at: i) {
      out.append("'" + string(c[(i + 1)..<end]))  // written with a straight apostrophe
      return end
    }
    // The rest keep the apostrophe as written, and only the lexer's `APOS` ones start them.
    guard isAPOS(c[i]) else { return nil }
    // '[2-9]0s
    if i + 3 < n, isDigit(c[i + 1]), c[i + 1] != "0", c[i + 1] != "1", c[i + 2] == "0",
      c[i + 3] == "s" || c[i + 3] == "S"
    {
      out.append(string(c[i..<(i + 4)]))
      return i + 4
    }
    // 'em, 'cause, 'til(l): the lexer matches these as prefixes.
    for w in leadingApostropheWords where hasPrefix(c, at: i + 1, w) {
      let end = i + 1 + w.unicodeScalars.count
      out.append(string(c[i..<end]))
      return end
    }
    // 'n' (rock'n'roll), and 'n, which after a straight apostrophe must not run into a
    // letter (`'news` is a quote and `news`).
    if i + 1 < n, c[i + 1] == "n" || c[i + 1] == "N" {
      if i + 2 < n && isAPOS(c[i + 2]) {
        out.append(string(c[i..<(i + 3)]))
        return i + 3
      }
      if c[i] != "'" || i + 2 == n || !isLetter(c[i + 2]) {
        out.append(string(c[i..<(i + 2)]))
        return i + 2
      }
    }
    // 'tis, 'twas → 't is, 't was
    if hasWord(c, at: i + 1, "tis") || hasWord(c, at: i + 1, "twas") {
      out.append(string(c[i..<(i + 2)]))
      return i + 2
    }
    return nil
  }

  private static func hasPrefix(_ c: [Unicode.Scalar], at i: Int, _ text: String) -> Bool {
    let t = Array(text.unicodeScalars)
    guard i + t.count <= c.count else { return false }
    return (0..<t.count).allSatisfy { lowerASCII(c[i + $0]) == t[$0] }
  }
}
