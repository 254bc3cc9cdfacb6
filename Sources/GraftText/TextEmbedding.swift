import Foundation

/// What `TextEmbedding.run` wrote.
public struct TextEmbeddingSummary: Sendable {
  /// The file written.
  public var output: URL
  /// The text's token ids.
  public var ids: [Int]
  /// Shape of the logits written, [1, L, V].
  public var logitsShape: [Int]
}

/// `graft embed --model <language model> --text …`: a language model folder's token ids and
/// logits for one text.
public enum TextEmbedding {
  /// Whether `folder` holds a GPT-2-layout language model: a `config.json` whose `model_type`
  /// or `architectures` say so. False when there is no readable config.
  public static func isLanguageModel(_ folder: URL) -> Bool {
    let config = folder.appendingPathComponent("config.json")
    guard let object = try? GPT2Config.readObject(config) else { return false }
    return GPT2Config.describesLanguageModel(object)
  }

  /// Tokenizes `text` with the folder's tokenizer (`tokenizer.json`, or `vocab.json` +
  /// `merges.txt`), runs the model (`config.json` + `model.safetensors`) and writes `ids`
  /// [1, L] (I64) and `logits` [1, L, V] (F32) to `output`, atomically. Throws `FileError` for
  /// a text with no tokens or more than the model's positions, and the loaders' errors (each
  /// naming its file).
  public static func run(model folder: URL, text: String, output: URL) throws
    -> TextEmbeddingSummary
  {
    let tokenizer = try BPETokenizer.load(folder: folder)
    let model = try GPT2.load(folder: folder)
    let ids = tokenizer.encode(text)
    guard !ids.isEmpty else { throw FileError(path: "<text>", message: "the text has no tokens") }
    guard ids.count <= model.config.nPositions else {
      throw FileError(
        path: "<text>",
        message: "\(ids.count) tokens is more than the model's \(model.config.nPositions) positions"
      )
    }
    if let bad = ids.first(where: { $0 >= model.config.vocabSize }) {
      throw FileError(
        path: folder.path,
        message:
          "the tokenizer gives id \(bad), past the model's vocab_size \(model.config.vocabSize)")
    }
    let logits = withNoGrad { model.logits(.ids([ids])) }
    try Safetensors.write(
      raw: [
        "ids": .init(i64: ids, shape: [1, ids.count]),
        "logits": .init(f32: logits),
      ], to: output)
    return TextEmbeddingSummary(output: output, ids: ids, logitsShape: logits.shape)
  }
}
