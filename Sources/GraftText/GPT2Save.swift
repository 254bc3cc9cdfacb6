import Foundation

// A GPT-2-layout decoder written as a Hugging Face model folder: `config.json` with the keys of
// `transformers`' `GPT2Config` and `model.safetensors` in the checkpoint's layout (Conv1D weights
// [in, out], `transformer.` prefixes, no `lm_head.weight` when it is tied), which
// `GPT2LMHeadModel.from_pretrained` and `GPT2.load(folder:)` both read.

extension GPT2Config {
  /// The `config.json` object `transformers` writes for these settings (`GPT2LMHeadModel`,
  /// float32), with `initializerRange` as `initializer_range`.
  public func jsonObject(initializerRange: Double = 0.02) -> [String: Any] {
    // The shortest decimal of each Float (0.1, not 0.10000000149011612).
    func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }
    var o: [String: Any] = [
      "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
      "activation_function": activation.rawValue, "vocab_size": vocabSize,
      "n_positions": nPositions, "n_embd": nEmbd, "n_layer": nLayer, "n_head": nHead,
      "n_inner": nInner.map { $0 as Any } ?? NSNull(),
      "layer_norm_epsilon": decimal(layerNormEpsilon), "attn_pdrop": decimal(attnPdrop),
      "resid_pdrop": decimal(residPdrop), "embd_pdrop": decimal(embdPdrop),
      "initializer_range": initializerRange, "scale_attn_weights": scaleAttnWeights,
      "scale_attn_by_inverse_layer_idx": scaleAttnByInverseLayerIdx,
      "reorder_and_upcast_attn": false, "tie_word_embeddings": tieWordEmbeddings,
      "use_cache": true, "dtype": "float32",
      "summary_type": "cls_index", "summary_use_proj": true, "summary_activation": NSNull(),
      "summary_proj_to_labels": true, "summary_first_dropout": 0.1,
    ]
    o["bos_token_id"] = bosTokenID.map { $0 as Any } ?? NSNull()
    switch eosTokenIDs.count {
    case 0: o["eos_token_id"] = NSNull()
    case 1: o["eos_token_id"] = eosTokenIDs[0]
    default: o["eos_token_id"] = eosTokenIDs
    }
    return o
  }
}

extension GPT2 {
  /// Writes `config.json` and `model.safetensors` into `folder` (created if needed), each
  /// atomically; the weights as `checkpointStateDict()` gives them, with the `pt` format
  /// metadata `transformers` expects.
  public func save(folder: URL, initializerRange: Double = 0.02) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let config = try JSONSerialization.data(
      withJSONObject: self.config.jsonObject(initializerRange: initializerRange),
      options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try Safetensors.write(
      checkpointStateDict(), metadata: ["format": "pt"],
      to: folder.appendingPathComponent("model.safetensors"))
    try AtomicFile.write(config + Data("\n".utf8), to: folder.appendingPathComponent("config.json"))
  }
}
