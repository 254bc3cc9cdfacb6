import Foundation
import XCTest

@testable import GraftDetection

/// The XML reader behind the VOC annotations: what annotation tools write parses, and
/// everything malformed is an error with a line number rather than a trap.
final class XMLTreeTests: XCTestCase {
  private func parse(_ text: String) throws -> XMLTreeNode { try XMLTree.parse(Data(text.utf8)) }

  private func refusal(_ bytes: [UInt8]) -> XMLTree.ParseError? {
    do {
      _ = try XMLTree.parse(Data(bytes))
      return nil
    } catch {
      return error
    }
  }

  private func refusal(_ text: String) -> XMLTree.ParseError? { refusal(Array(text.utf8)) }

  func testReadsElementsTextAndMarkup() throws {
    let root = try parse(
      """
      \u{FEFF}<?xml version="1.0" encoding="utf-8"?>
      <!DOCTYPE annotation>
      <!-- written by a tool -->
      <annotation verified='yes' x = "1">
        <filename>a &amp; b &lt;1&gt; &quot;&apos; &#65;&#x42;&#x1F600;.jpg</filename>
        <size><width>500</width><height> 375 </height><depth/></size>
        <note><![CDATA[<not a tag> & raw]]></note>
        <object><name>dog</name></object><object><name>cat</name></object>
      </annotation>
      <!-- trailing comment -->
      """)
    XCTAssertEqual(root.name, "annotation")
    XCTAssertEqual(root.child("filename")?.text, "a & b <1> \"' AB\u{1F600}.jpg")
    XCTAssertEqual(root.child("size")?.child("height")?.trimmed, "375")
    XCTAssertEqual(root.child("size")?.child("depth")?.children.count, 0)
    XCTAssertEqual(root.child("note")?.text, "<not a tag> & raw")
    XCTAssertEqual(
      root.children.filter { $0.name == "object" }.map { $0.child("name")!.text },
      [
        "dog", "cat",
      ])
  }

  func testMalformedDocumentsAreErrorsWithTheirLine() {
    let cases: [(String, String, Int)] = [
      ("<a>\n<b>\n</a>", "</a> closes <b>", 3),
      ("<a>\n<b>", "<b> is not closed", 2),
      ("<a/><b/>", "a second root element <b>", 1),
      ("text", "text outside the root element", 1),
      ("", "no root element", 1),
      ("<a>&bogus;</a>", "unknown entity &bogus;", 1),
      ("<a>&#0;</a>", "&#0; is not a character", 1),
      ("<a>&#xD800;</a>", "&#xD800; is not a character", 1),
      ("<a>fish & chips</a>", "'&' that starts no reference", 1),
      ("<a>\n<!-- open", "a comment is not closed", 2),
      ("<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", "internal subset is not supported", 1),
      ("<a b=c/>", "attribute b of <a> is not quoted", 1),
      ("<a b='<'/>", "'<' inside an attribute value", 1),
      ("<a b='1'c='2'/>", "expected a space before an attribute", 1),
      ("</a>", "</a> closes nothing", 1),
      ("<1a/>", "expected an element name", 1),
      ("<a><![CDATA[x</a>", "a CDATA section is not closed", 1),
      ("<a>\n<!-->", "a comment is not closed", 2),
      ("<?>", "a processing instruction's target", 1),
      ("<a>x]]>y</a>", "']]>' in text", 1),
      ("<a>&#1;</a>", "&#1; is not a character", 1),
      ("<a>&#+65;</a>", "&#+65; is not a character", 1),
      ("<a b='1' b='2'/>", "attribute b of <a> is given twice", 1),
      ("<a>\n\u{1}</a>", "control character U+0001", 2),
      ("<a>\r<b>", "<b> is not closed", 2),
      ("<?xml version='1.0' encoding='shift_jis'?><a/>", "encoding \"shift_jis\" is not", 1),
    ]
    for (text, message, line) in cases {
      guard let error = refusal(text) else {
        XCTFail("accepted: \(text.debugDescription)")
        continue
      }
      XCTAssertTrue(error.message.contains(message), "\(text.debugDescription): \(error)")
      XCTAssertEqual(error.line, line, "\(text.debugDescription): \(error)")
    }
  }

  /// Markup that is well-formed though unusual, and the other encodings annotation tools write.
  func testReadsEdgeCasesAndOtherEncodings() throws {
    XCTAssertEqual(try parse("<a><!-->x--></a>").text, "")
    XCTAssertEqual(try parse("<!DOCTYPE a SYSTEM \"x[1].dtd\"><a>b</a>").text, "b")
    XCTAssertEqual(try parse("<a><?pi data?>c</a>").text, "c")
    let latin1 =
      Array("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>caf".utf8) + [0xE9]
      + Array("</a>".utf8)
    XCTAssertEqual(try XMLTree.parse(Data(latin1)).text, "café")
    var utf16 = Data([0xFF, 0xFE])
    utf16.append("<a>é</a>".data(using: .utf16LittleEndian)!)
    XCTAssertEqual(try XMLTree.parse(utf16).text, "é")
  }

  /// The input on which FoundationXML's parser trapped: an element name that is not UTF-8.
  func testBytesThatAreNotUTF8AreRefused() {
    let bytes =
      Array("<annotation>\n  <".utf8) + [0xFF, 0xF9] + Array("object/></annotation>".utf8)
    XCTAssertEqual(refusal(bytes)?.message, "not UTF-8 text")
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../Fuzz/Regressions/voc").standardized
    let inputs = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
    XCTAssertGreaterThanOrEqual(inputs.count, 2, "the fuzzer's VOC findings")
    for name in inputs {
      let data = (try? Data(contentsOf: url.appendingPathComponent(name))) ?? Data()
      XCTAssertThrowsError(try VOCAnnotations.parse(data, name: name, imageID: 1), name)
    }
  }

  func testNestingIsBounded() {
    let deep = String(repeating: "<a>", count: XMLTree.maxDepth + 1)
    XCTAssertEqual(
      refusal(deep)?.message, "elements nest deeper than \(XMLTree.maxDepth)")
    let fine = String(repeating: "<a>", count: 10) + String(repeating: "</a>", count: 10)
    XCTAssertNil(refusal(fine))
  }
}
