import Foundation
import GraftText
import XCTest

final class TextEmbeddingTests: XCTestCase {
  func testWritesIdsAndLogitsOfTheFolder() throws {
    let folder = textFixtures.appendingPathComponent("gpt2-tiny")
    XCTAssertTrue(TextEmbedding.isLanguageModel(folder))
    XCTAssertFalse(TextEmbedding.isLanguageModel(textFixtures.appendingPathComponent("tokenizer")))
    let out = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-text-\(UUID().uuidString).safetensors")
    defer { try? FileManager.default.removeItem(at: out) }
    let summary = try TextEmbedding.run(
      model: folder, text: "A man is slicing a tomato on a board.", output: out)
    // The fixture's first row is this text, unpadded, with transformers' logits.
    let ref = try SafetensorsFile(
      contentsOf: textFixtures.appendingPathComponent("gpt2_logits.safetensors"))
    let refShape = try ref.info("input_ids").shape
    let refIDs = Array(try ref.intArray("input_ids").prefix(refShape[1]))
    let file = try SafetensorsFile(contentsOf: out)
    XCTAssertEqual(try file.info("ids").dtype, .i64)
    XCTAssertEqual(try file.info("ids").shape, [1, refShape[1]])
    XCTAssertEqual(try file.intArray("ids"), refIDs)
    XCTAssertEqual(summary.ids, refIDs)
    let logits = try file.tensor("logits")
    XCTAssertEqual(logits.shape, [1, refShape[1], 600])
    let refLogits = Array(try ref.tensor("logits").scalars.prefix(logits.count))
    XCTAssertLessThanOrEqual(relativeError(logits.scalars, refLogits), 1e-4)

    XCTAssertThrowsError(try TextEmbedding.run(model: folder, text: "", output: out)) { e in
      XCTAssertEqual(e as? FileError, FileError(path: "<text>", message: "the text has no tokens"))
    }
    let long = String(repeating: "tomato ", count: 60)
    XCTAssertThrowsError(try TextEmbedding.run(model: folder, text: long, output: out)) { e in
      XCTAssertTrue("\(e)".contains("more than the model's 48 positions"), "\(e)")
    }
  }
}
