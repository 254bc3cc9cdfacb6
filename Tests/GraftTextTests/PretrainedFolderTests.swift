import Foundation
import GraftText
import XCTest

/// A model folder written by `graft pretrain --modality text` (the tiny run of
/// Fixtures/README.md), against `transformers`' logits for it (Tools/check_text_model.py).
final class PretrainedFolderTests: XCTestCase {
  let folder = textFixtures.appendingPathComponent("pretrained-tiny")

  func testTransformersReadsTheFolderToTheSameLogits() throws {
    let file = try SafetensorsFile(
      contentsOf: textFixtures.appendingPathComponent("pretrained_tiny_logits.safetensors"))
    let shape = try file.info("input_ids").shape
    let flat = try file.intArray("input_ids")
    let ids = (0..<shape[0]).map { Array(flat[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    let expected = try file.tensor("logits")
    // The folder's tokenizer gives the ids the `tokenizers` library gave.
    let tokenizer = try BPETokenizer.load(folder: folder)
    let sentences = [
      "The cat sat by the fire.", "A bird sang in the tree, and the dog barked at the gate.",
    ]
    for (row, s) in zip(ids, sentences) {
      XCTAssertEqual(Array(tokenizer.encode(s).prefix(row.count)), row)
    }
    let model = try GPT2.load(folder: folder)
    let logits = model.logits(.ids(ids))
    XCTAssertEqual(logits.shape, expected.shape)
    var worst: Float = 0
    for (a, b) in zip(logits.scalars, expected.scalars) { worst = max(worst, abs(a - b)) }
    XCTAssertLessThan(worst, 1e-4)
    print("Graft-written GPT-2 folder: max |logit difference| \(worst) against transformers")
    // Saving it again gives the same tensors and config.
    let again = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-gpt2-save-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: again) }
    try model.save(folder: again)
    let reloaded = try GPT2.load(folder: again)
    XCTAssertEqual(reloaded.config, model.config)
    XCTAssertEqual(reloaded.logits(.ids(ids)).scalars, logits.scalars)
    let original = try SafetensorsFile(
      contentsOf: folder.appendingPathComponent("model.safetensors"))
    let written = try SafetensorsFile(contentsOf: again.appendingPathComponent("model.safetensors"))
    XCTAssertEqual(Set(try written.tensors().keys), Set(try original.tensors().keys))
    XCTAssertNil(try written.tensors()["lm_head.weight"])
  }
}
