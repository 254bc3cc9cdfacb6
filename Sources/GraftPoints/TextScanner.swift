#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A line-aware reader of whitespace-separated text (the text formats and the text headers of
/// the binary ones), with number parsing that never allocates and errors that name the line.
struct TextScanner {
  let bytes: UnsafeBufferPointer<UInt8>
  /// Offset of the next unread byte.
  var position: Int
  /// 1-based line of `position`.
  var line: Int
  let path: String
  /// A byte that starts a comment running to the end of the line (`#` in OFF and OBJ).
  var comment: UInt8?
  /// Whether commas separate values like blanks (ModelNet's text files).
  var commaSeparates = false

  init(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int = 0, path: String, line: Int = 1) {
    self.bytes = bytes
    self.position = start
    self.line = line
    self.path = path
  }

  var isAtEnd: Bool { position >= bytes.count }

  /// A PointFileError of `kind` whose message starts with the current line.
  func error(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
    PointFileError(kind, path: path, "line \(line): \(message)")
  }

  private func isBlank(_ b: UInt8) -> Bool {
    b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0B || b == 0x0C || (commaSeparates && b == 0x2C)
  }

  /// Skips blanks (and commas when they separate) on the current line.
  mutating func skipBlanks() {
    while position < bytes.count, isBlank(bytes[position]) { position += 1 }
  }

  /// True when nothing but blanks (or a comment) is left on the current line.
  mutating func atLineEnd() -> Bool {
    skipBlanks()
    return position >= bytes.count || bytes[position] == 0x0A || bytes[position] == comment
  }

  /// Moves past the end of the current line.
  mutating func skipLine() {
    while position < bytes.count {
      let b = bytes[position]
      position += 1
      if b == 0x0A {
        line += 1
        return
      }
    }
  }

  /// Skips blank lines and comment lines; false at the end of the data.
  mutating func nextContentLine() -> Bool {
    while true {
      if position >= bytes.count { return false }
      if !atLineEnd() { return true }
      if position >= bytes.count { return false }
      skipLine()
    }
  }

  /// The next token on the current line, or nil at the line's end.
  mutating func token() -> Range<Int>? {
    if atLineEnd() { return nil }
    let start = position
    while position < bytes.count {
      let b = bytes[position]
      if b == 0x0A || isBlank(b) { break }
      position += 1
    }
    return start..<position
  }

  /// Number of tokens left on the current line, without consuming them.
  mutating func tokensLeftOnLine() -> Int {
    let saved = position
    var n = 0
    while token() != nil { n += 1 }
    position = saved
    return n
  }

  func string(_ range: Range<Int>) -> String {
    String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
  }

  /// The rest of the current line, trimmed; the scanner moves to the next line.
  mutating func restOfLine() -> String {
    skipBlanks()
    let start = position
    while position < bytes.count, bytes[position] != 0x0A { position += 1 }
    var end = position
    while end > start, isBlank(bytes[end - 1]) { end -= 1 }
    skipLine()
    return string(start..<end)
  }

  // MARK: Numbers

  /// Calls `body` with the token copied into a NUL-terminated buffer (strtof needs one).
  private func withCString<T>(_ range: Range<Int>, _ body: (UnsafePointer<CChar>) -> T?) -> T? {
    let n = range.count
    guard n > 0, n < 512 else { return nil }
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buffer in
      for i in 0..<n { buffer[i] = CChar(bitPattern: bytes[range.lowerBound + i]) }
      buffer[n] = 0
      return body(UnsafePointer(buffer.baseAddress!))
    }
  }

  /// The token as a Float, correctly rounded (`nan` and `inf` accepted), or nil.
  func parseFloat(_ range: Range<Int>) -> Float? {
    // Clinger's fast path: a mantissa and a power of ten that are both exact Floats give the
    // correctly rounded value in one division or multiplication. Covers most short decimals
    // (ModelNet's `0.208700`); everything else goes to strtof.
    if let d = decimal(range), d.mantissa <= 1 << 24, abs(d.exponent) <= 10 {
      let m = Float(d.mantissa)
      let v = d.exponent < 0 ? m / floatPowersOfTen[-d.exponent] : m * floatPowersOfTen[d.exponent]
      return d.negative ? -v : v
    }
    return withCString(range) { s in
      var end: UnsafeMutablePointer<CChar>?
      let v = strtof(s, &end)
      return end.map { $0 - UnsafeMutablePointer(mutating: s) } == range.count ? v : nil
    }
  }

  /// The token as a Double, correctly rounded, or nil.
  func parseDouble(_ range: Range<Int>) -> Double? {
    if let d = decimal(range), d.mantissa <= 1 << 53, abs(d.exponent) <= 22 {
      let m = Double(d.mantissa)
      let v =
        d.exponent < 0 ? m / doublePowersOfTen[-d.exponent] : m * doublePowersOfTen[d.exponent]
      return d.negative ? -v : v
    }
    return withCString(range) { s in
      var end: UnsafeMutablePointer<CChar>?
      let v = strtod(s, &end)
      return end.map { $0 - UnsafeMutablePointer(mutating: s) } == range.count ? v : nil
    }
  }

  /// A plain decimal token (`-12.5`, `3e-4`, `.5`) as sign, integer mantissa (at most 19
  /// significant digits) and power of ten; nil for anything else (then strtof decides).
  @inline(__always)
  private func decimal(_ range: Range<Int>) -> (negative: Bool, mantissa: UInt64, exponent: Int)? {
    var i = range.lowerBound
    let end = range.upperBound
    var negative = false
    if i < end, bytes[i] == 0x2D || bytes[i] == 0x2B {
      negative = bytes[i] == 0x2D
      i += 1
    }
    var mantissa: UInt64 = 0
    var significant = 0
    var exponent = 0
    var digits = 0
    var fraction = false
    while i < end {
      let b = bytes[i]
      if b == 0x2E, !fraction {
        fraction = true
      } else if b >= 0x30, b <= 0x39 {
        digits += 1
        if mantissa != 0 || b != 0x30 { significant += 1 }
        guard significant <= 19 else { return nil }
        mantissa = mantissa * 10 + UInt64(b - 0x30)
        if fraction { exponent -= 1 }
      } else {
        break
      }
      i += 1
    }
    guard digits > 0 else { return nil }
    if i < end, bytes[i] | 0x20 == 0x65 {  // e or E
      i += 1
      var sign = 1
      if i < end, bytes[i] == 0x2D || bytes[i] == 0x2B {
        sign = bytes[i] == 0x2D ? -1 : 1
        i += 1
      }
      var e = 0
      var expDigits = 0
      while i < end, bytes[i] >= 0x30, bytes[i] <= 0x39, expDigits < 4 {
        e = e * 10 + Int(bytes[i] - 0x30)
        expDigits += 1
        i += 1
      }
      guard expDigits > 0 else { return nil }
      exponent += sign * e
    }
    guard i == end else { return nil }
    return (negative, mantissa, exponent)
  }

  /// The token as a decimal integer (optional sign), or nil on junk or overflow.
  func parseInt(_ range: Range<Int>) -> Int? {
    var i = range.lowerBound
    var negative = false
    if i < range.upperBound, bytes[i] == 0x2D || bytes[i] == 0x2B {
      negative = bytes[i] == 0x2D
      i += 1
    }
    guard i < range.upperBound else { return nil }
    var value = 0
    while i < range.upperBound {
      let d = Int(bytes[i]) - 48
      guard d >= 0, d <= 9 else { return nil }
      let (m, o1) = value.multipliedReportingOverflow(by: 10)
      let (s, o2) = m.addingReportingOverflow(negative ? -d : d)
      guard !o1, !o2 else { return nil }
      value = s
      i += 1
    }
    return value
  }

  /// Whether the token is an unsigned decimal integer (digits only).
  func isDigits(_ range: Range<Int>) -> Bool {
    !range.isEmpty && range.allSatisfy { bytes[$0] >= 48 && bytes[$0] <= 57 }
  }

  /// The next token as a Float; throws naming `what` when it is missing or malformed.
  mutating func float(_ what: @autoclosure () -> String) throws -> Float {
    guard let r = token() else { throw error(.countMismatch, "\(what()) is missing") }
    guard let v = parseFloat(r) else {
      throw error(.badValue, "\(what()): '\(string(r))' is not a number")
    }
    return v
  }

  /// The next token as a Double; throws naming `what` when it is missing or malformed.
  mutating func double(_ what: @autoclosure () -> String) throws -> Double {
    guard let r = token() else { throw error(.countMismatch, "\(what()) is missing") }
    guard let v = parseDouble(r) else {
      throw error(.badValue, "\(what()): '\(string(r))' is not a number")
    }
    return v
  }

  /// The next token as an integer; throws naming `what` when it is missing or malformed.
  mutating func int(_ what: @autoclosure () -> String) throws -> Int {
    guard let r = token() else { throw error(.countMismatch, "\(what()) is missing") }
    guard let v = parseInt(r) else {
      throw error(.badValue, "\(what()): '\(string(r))' is not an integer")
    }
    return v
  }

  /// Throws unless the rest of the line is empty (or a comment); `what` names the record.
  mutating func expectLineEnd(_ what: @autoclosure () -> String) throws {
    let extra = tokensLeftOnLine()
    if extra > 0 { throw error(.countMismatch, "\(what()) has \(extra) more values than expected") }
    skipLine()
  }
}

/// 10^0 ... 10^10, each exact as a Float.
private let floatPowersOfTen: [Float] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10]

/// 10^0 ... 10^22, each exact as a Double.
private let doublePowersOfTen: [Double] = [
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
  1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

/// Shortest text that reads back as the same Float (`1.0`, `0.1`, `1e-05`, `nan`).
func floatText(_ v: Float) -> String { v.description }

/// Shortest text that reads back as the same Double.
func doubleText(_ v: Double) -> String { v.description }
