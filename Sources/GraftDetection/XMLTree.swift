import Foundation

/// An XML element: its name, the text directly inside it and its child elements.
final class XMLTreeNode {
  let name: String
  var text = ""
  var children: [XMLTreeNode] = []

  init(name: String) { self.name = name }

  /// The first child element called `name`.
  func child(_ name: String) -> XMLTreeNode? { children.first { $0.name == name } }

  /// The text without surrounding white space.
  var trimmed: String { text.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// A small XML reader for annotation files: elements, attributes (checked, then dropped), text
/// with character references and the five predefined entities, CDATA sections, comments,
/// processing instructions and a DOCTYPE without an internal subset; UTF-8, UTF-16 (by its
/// byte-order mark), ISO-8859-1 and windows-1252 (by the declaration). It has no namespaces and
/// no user-defined entities, so nothing is fetched and nothing expands.
///
/// It replaces FoundationXML's `XMLParser`, which trapped on an element name that was not UTF-8
/// and leaked on every malformed file (found by `Tools/fuzz.sh voc`; the inputs are in
/// `Fuzz/Regressions/voc`).
enum XMLTree {
  /// Why a document was refused, with the 1-based line where the problem was found.
  struct ParseError: Error, Equatable, CustomStringConvertible {
    let line: Int
    let message: String
    var description: String { "line \(line): \(message)" }
  }

  /// Elements may nest at most this deep (VOC files use 3).
  static let maxDepth = 256

  /// The root element of `data`.
  static func parse(_ data: Data) throws(ParseError) -> XMLTreeNode {
    var reader = Reader(bytes: try utf8(data))
    return try reader.document()
  }

  /// The document as UTF-8: UTF-16 by its byte-order mark, ISO-8859-1 and windows-1252 by the
  /// XML declaration's `encoding` (as some annotation tools write), UTF-8 otherwise.
  static func utf8(_ data: Data) throws(ParseError) -> [UInt8] {
    let bytes = [UInt8](data)
    func transcoded(_ encoding: String.Encoding, _ name: String) throws(ParseError) -> [UInt8] {
      guard let text = String(data: data, encoding: encoding) else {
        throw ParseError(line: 1, message: "not \(name) text")
      }
      return Array(text.utf8)
    }
    if bytes.starts(with: [0xFF, 0xFE]) { return try transcoded(.utf16LittleEndian, "UTF-16") }
    if bytes.starts(with: [0xFE, 0xFF]) { return try transcoded(.utf16BigEndian, "UTF-16") }
    guard bytes.starts(with: Array("<?xml".utf8)), let end = bytes.firstIndex(of: UInt8(ascii: ">"))
    else { return bytes }
    let declaration = String(decoding: bytes[..<end], as: UTF8.self).lowercased()
    guard let range = declaration.range(of: "encoding") else { return bytes }
    let value = declaration[range.upperBound...].drop { $0 == " " || $0 == "=" || $0 == "\t" }
    guard let quote = value.first, quote == "\"" || quote == "'" else { return bytes }
    let name = value.dropFirst().prefix { $0 != quote }
    switch name {
    case "utf-8", "utf8", "us-ascii", "ascii": return bytes
    case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
      return try transcoded(.isoLatin1, String(name))
    case "windows-1252", "cp1252": return try transcoded(.windowsCP1252, String(name))
    default:
      throw ParseError(
        line: 1,
        message: "encoding \"\(name)\" is not supported (UTF-8, UTF-16, ISO-8859-1, windows-1252)")
    }
  }

  private struct Reader {
    let bytes: [UInt8]
    var i = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func fail(_ message: String, at position: Int? = nil) -> ParseError {
      // Lines end in LF, CR LF or a lone CR.
      let end = min(position ?? i, bytes.count)
      var line = 1
      for k in 0..<end where bytes[k] == 0x0A || (bytes[k] == 0x0D && bytes[safe: k + 1] != 0x0A) {
        line += 1
      }
      return ParseError(line: line, message: message)
    }

    func starts(with s: String) -> Bool {
      let u = Array(s.utf8)
      return bytes.count - i >= u.count && bytes[i..<i + u.count].elementsEqual(u)
    }

    /// Moves past the next `terminator` after the `opening` bytes at `i`, or fails with
    /// `unclosed` (so `<!-->` does not close itself).
    mutating func skip(opening: Int, past terminator: String, unclosed: String) throws(ParseError) {
      let start = i
      i += opening
      let t = Array(terminator.utf8)
      while i + t.count <= bytes.count {
        if bytes[i..<i + t.count].elementsEqual(t) {
          i += t.count
          return
        }
        i += 1
      }
      throw fail(unclosed, at: start)
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    mutating func skipSpace() { while i < bytes.count, Self.isSpace(bytes[i]) { i += 1 } }

    /// An element or attribute name: a letter, `_`, `:` or any non-ASCII character first, then
    /// those, digits, `-` and `.`.
    mutating func name(_ what: String) throws(ParseError) -> String {
      let start = i
      func isNameByte(_ b: UInt8, first: Bool) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
          UInt8(ascii: "_"), UInt8(ascii: ":"), 0x80...0xFF:
          return true
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."):
          return !first
        default: return false
        }
      }
      while i < bytes.count, isNameByte(bytes[i], first: i == start) { i += 1 }
      guard i > start else { throw fail("expected \(what)") }
      return String(decoding: bytes[start..<i], as: UTF8.self)
    }

    /// Text up to the next `<` (or up to `quote`), with references replaced.
    mutating func text(until stop: UInt8) throws(ParseError) -> String {
      var out: [UInt8] = []
      while i < bytes.count, bytes[i] != stop {
        if stop == UInt8(ascii: "<"), starts(with: "]]>") {
          throw fail("']]>' in text (it may only end a CDATA section)")
        }
        if bytes[i] == UInt8(ascii: "&") {
          out += try reference()
        } else {
          if stop != UInt8(ascii: "<"), bytes[i] == UInt8(ascii: "<") {
            throw fail("'<' inside an attribute value")
          }
          out.append(bytes[i])
          i += 1
        }
      }
      return String(decoding: out, as: UTF8.self)
    }

    /// The UTF-8 bytes of the reference at `&`.
    mutating func reference() throws(ParseError) -> [UInt8] {
      let start = i + 1
      guard let end = bytes[start..<min(bytes.count, start + 12)].firstIndex(of: UInt8(ascii: ";"))
      else { throw fail("'&' that starts no reference (write &amp;)") }
      let body = String(decoding: bytes[start..<end], as: UTF8.self)
      i = end + 1
      switch body {
      case "lt": return [UInt8(ascii: "<")]
      case "gt": return [UInt8(ascii: ">")]
      case "amp": return [UInt8(ascii: "&")]
      case "quot": return [UInt8(ascii: "\"")]
      case "apos": return [UInt8(ascii: "'")]
      default: break
      }
      var value: UInt32?
      if body.hasPrefix("#x") {
        let digits = body.dropFirst(2)
        value = digits.allSatisfy(\.isHexDigit) ? UInt32(digits, radix: 16) : nil
      } else if body.hasPrefix("#") {
        let digits = body.dropFirst(1)
        value = digits.allSatisfy { $0.isASCII && $0.isNumber } ? UInt32(digits, radix: 10) : nil
      } else {
        throw fail("unknown entity &\(body); (only the five of XML are defined)")
      }
      // XML 1.0's characters: no C0 controls but tab, line feed and carriage return.
      guard let v = value, v >= 0x20 || v == 0x09 || v == 0x0A || v == 0x0D,
        let scalar = Unicode.Scalar(v)
      else { throw fail("&\(body); is not a character") }
      return Array(String(Character(scalar)).utf8)
    }

    mutating func document() throws(ParseError) -> XMLTreeNode {
      guard String(validating: bytes, as: UTF8.self) != nil else {
        throw fail("not UTF-8 text")
      }
      if let k = bytes.firstIndex(where: { $0 < 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) {
        throw fail(
          "control character U+\(String(format: "%04X", bytes[k])) (not allowed in XML)", at: k)
      }
      if starts(with: "\u{FEFF}") { i += 3 }
      var root: XMLTreeNode?
      // Open elements, with where each began (for the line of an unclosed one).
      var stack: [(node: XMLTreeNode, at: Int)] = []
      while i < bytes.count {
        if bytes[i] != UInt8(ascii: "<") {
          let text = try text(until: UInt8(ascii: "<"))
          if let open = stack.last?.node {
            open.text += text
          } else if text.contains(where: { !$0.isWhitespace }) {
            throw fail("text outside the root element")
          }
          continue
        }
        if starts(with: "<?") {
          let start = i
          i += 2
          _ = try name("a processing instruction's target after '<?'")
          i = start
          try skip(opening: 2, past: "?>", unclosed: "a processing instruction is not closed")
        } else if starts(with: "<!--") {
          try skip(opening: 4, past: "-->", unclosed: "a comment is not closed")
        } else if starts(with: "<![CDATA[") {
          guard let open = stack.last?.node else {
            throw fail("a CDATA section outside the root")
          }
          let start = i + 9
          try skip(opening: 9, past: "]]>", unclosed: "a CDATA section is not closed")
          open.text += String(decoding: bytes[start..<i - 3], as: UTF8.self)
        } else if starts(with: "<!DOCTYPE") {
          guard root == nil else { throw fail("a DOCTYPE after the root element") }
          var quote: UInt8? = nil
          while i < bytes.count, quote != nil || bytes[i] != UInt8(ascii: ">") {
            if let q = quote {
              if bytes[i] == q { quote = nil }
            } else if bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") {
              quote = bytes[i]
            } else if bytes[i] == UInt8(ascii: "[") {
              throw fail("a DOCTYPE with an internal subset is not supported")
            }
            i += 1
          }
          guard i < bytes.count else { throw fail("the DOCTYPE is not closed") }
          i += 1
        } else if starts(with: "</") {
          i += 2
          let name = try name("an element name after '</'")
          skipSpace()
          guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else {
            throw fail("</\(name) is not closed by '>'")
          }
          i += 1
          guard let open = stack.popLast()?.node else { throw fail("</\(name)> closes nothing") }
          guard open.name == name else {
            throw fail("</\(name)> closes <\(open.name)>")
          }
        } else {
          let opened = i
          i += 1
          let node = XMLTreeNode(name: try name("an element name after '<'"))
          if let parent = stack.last?.node {
            parent.children.append(node)
          } else if root != nil {
            throw fail("a second root element <\(node.name)>")
          } else {
            root = node
          }
          var selfClosing = false
          var attributes = Set<String>()
          while true {
            let hadSpace = i < bytes.count && Self.isSpace(bytes[i])
            skipSpace()
            guard i < bytes.count else { throw fail("<\(node.name) is not closed") }
            if bytes[i] == UInt8(ascii: ">") {
              i += 1
              break
            }
            if starts(with: "/>") {
              i += 2
              selfClosing = true
              break
            }
            guard hadSpace else {
              throw fail("<\(node.name): expected a space before an attribute")
            }
            let attribute = try name("an attribute name in <\(node.name)>")
            guard attributes.insert(attribute).inserted else {
              throw fail("attribute \(attribute) of <\(node.name)> is given twice")
            }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else {
              throw fail("attribute \(attribute) of <\(node.name)> has no '='")
            }
            i += 1
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'")
            else { throw fail("attribute \(attribute) of <\(node.name)> is not quoted") }
            let quote = bytes[i]
            i += 1
            _ = try text(until: quote)
            guard i < bytes.count else { throw fail("attribute \(attribute) is not closed") }
            i += 1
          }
          if !selfClosing {
            guard stack.count < XMLTree.maxDepth else {
              throw fail("elements nest deeper than \(XMLTree.maxDepth)")
            }
            stack.append((node, opened))
          }
        }
      }
      if let (open, at) = stack.last { throw fail("<\(open.name)> is not closed", at: at) }
      guard let root else { throw fail("no root element") }
      return root
    }
  }
}

extension Array {
  /// The element at `index`, or nil past either end.
  fileprivate subscript(safe index: Int) -> Element? {
    indices.contains(index) ? self[index] : nil
  }
}
