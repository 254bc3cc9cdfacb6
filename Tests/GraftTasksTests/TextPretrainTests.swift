import GraftText
import XCTest

@testable import GraftTasks

/// `graft pretrain --modality text` on a tiny decoder and a few hundred tokens of text.
final class TextPretrainTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-text-pretrain-\(UUID().uuidString)")
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// Written for this test.
  static let text = """
    The cat sat on the mat. The dog sat on the rug. The cat saw the dog and the dog saw the cat.
    A bird sang in the tree, and the cat looked up at the bird in the tree.

    The dog ran to the gate. The cat ran to the door. The bird flew over the gate and the door.
    Then the cat sat on the mat again, and the dog sat on the rug again.

    In the morning the sun came up over the hill. The bird sang, the dog barked, the cat slept.
    In the evening the sun went down behind the hill, and the house was quiet.

    The cat and the dog were friends. They sat together by the fire when the night was cold.
    The bird slept in the tree, and the wind moved the leaves of the tree.
    """

  static let validation = """
    The dog sat by the fire and the cat sat on the mat. The bird sang in the morning.
    """

  func tinyConfig(epochs: Int, dropout: String = "0") throws -> TextPretrainConfig {
    var c = TextPretrainConfig()
    for (k, v) in [
      ("model.n_embd", "32"), ("model.n_layer", "2"), ("model.n_head", "2"),
      ("model.n_positions", "32"), ("model.dropout", dropout), ("tokenizer.vocab_size", "320"),
      ("tokenizer.min_frequency", "2"), ("train.epochs", "\(epochs)"),
      ("train.batch_size", "4"), ("train.warmup_steps", "2"), ("optim.lr", "0.005"),
    ] {
      try c.set(k, v)
    }
    return c
  }

  var corpus: TextCorpus { TextCorpus(train: Self.text, validation: Self.validation) }

  func metrics(_ key: String) throws -> [Double] {
    try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").map {
        let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        return o[key] as! Double
      }
  }

  func testTheLossFallsAndTheFolderLoadsBackWithTheSameLogits() throws {
    let pretrainer = try TextPretrainer(config: try tinyConfig(epochs: 30))
    let result = try XCTUnwrap(pretrainer.run(corpus: corpus, out: folder))
    let train = try metrics("train_loss")
    let validation = try metrics("validation_loss")
    XCTAssertEqual(train.count, 30)
    // From about ln(320) ≈ 5.8 at random init.
    XCTAssertGreaterThan(train.first!, 4.5)
    XCTAssertLessThan(train.last!, 0.6 * train.first!)
    XCTAssertLessThan(validation.last!, validation.first!)
    XCTAssertEqual(result.validationLoss, validation.last!, accuracy: 1e-12)
    XCTAssertEqual(
      try metrics("validation_perplexity").last!, exp(validation.last!), accuracy: 1e-9)

    // A Hugging Face folder: GPT2 reads it back with the same logits, the tokenizer too.
    for name in ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path), name)
    }
    let trained = try XCTUnwrap(pretrainer.model)
    let loaded = try GPT2.load(folder: folder)
    XCTAssertEqual(loaded.config, trained.config)
    XCTAssertEqual(loaded.config.eosTokenIDs, [0])
    let tokenizer = try BPETokenizer.load(folder: folder)
    let ids = [tokenizer.encode("The cat sat by the tree."), tokenizer.encode("A dog ran to it.")]
      .map { Array($0.prefix(6)) }
    trained.eval()
    XCTAssertEqual(loaded.logits(.ids(ids)).scalars, trained.logits(.ids(ids)).scalars)
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
    XCTAssertEqual(config["model_type"] as? String, "gpt2")
    XCTAssertEqual(config["n_embd"] as? Int, 32)
    XCTAssertEqual(config["vocab_size"] as? Int, tokenizer.vocabularySize)
  }

  func testAnInterruptedRunResumesToTheSameWeights() throws {
    let whole = try TextPretrainer(config: try tinyConfig(epochs: 3, dropout: "0.1"))
    try whole.run(corpus: corpus, out: folder)
    let split = folder.appendingPathComponent("split")
    let first = try TextPretrainer(config: try tinyConfig(epochs: 3, dropout: "0.1"))
    XCTAssertNil(try first.run(corpus: corpus, out: split, stopAfter: 1))
    XCTAssertTrue(TextPretrainer.holdsRun(split))
    let second = try TextPretrainer(config: try tinyConfig(epochs: 3, dropout: "0.1"))
    try second.run(corpus: corpus, out: split, resume: true)
    let a = try XCTUnwrap(whole.model)
    let b = try XCTUnwrap(second.model)
    for (name, t) in a.namedParameters() {
      XCTAssertEqual(b.parameter(named: name)?.scalars, t.scalars, name)
    }
    // Other settings are refused on resume.
    let other = try TextPretrainer(config: try tinyConfig(epochs: 4, dropout: "0.1"))
    XCTAssertThrowsError(try other.run(corpus: corpus, out: split, resume: true)) {
      XCTAssertTrue("\($0)".contains("other settings"), "\($0)")
    }
  }

  func testBadInputIsNamed() throws {
    let pretrainer = try TextPretrainer(config: try tinyConfig(epochs: 1))
    XCTAssertThrowsError(
      try pretrainer.run(corpus: TextCorpus(train: " \n\n ", validation: "x"), out: folder)
    ) {
      XCTAssertEqual(
        $0 as? ConfigError, ConfigError("the training text is empty: nothing to pretrain on"))
    }
    var c = TextPretrainConfig()
    XCTAssertThrowsError(try c.set("tokenizer.vocab_size", "256")) {
      XCTAssertTrue("\($0)".contains("tokenizer.vocab_size"), "\($0)")
    }
    // Too few tokens for one sequence.
    XCTAssertThrowsError(
      try pretrainer.run(corpus: TextCorpus(train: "The cat.", validation: "A dog."), out: folder)
    ) {
      XCTAssertTrue("\($0)".contains("fewer than one sequence"), "\($0)")
    }
    // A corrupt tokenizer file is named, and nothing is written.
    let bad = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-text-tokenizer-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: bad) }
    try Data("{\"model\": {\"type\": \"BPE\", \"vocab\": {".utf8).write(to: bad)
    let out = folder.appendingPathComponent("bad")
    XCTAssertThrowsError(try pretrainer.run(corpus: corpus, out: out, tokenizer: bad)) {
      XCTAssertTrue($0 is FileError && "\($0)".contains(bad.path), "\($0)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    c.nHead = 5
    XCTAssertThrowsError(try TextPretrainer(config: c))
  }
}
