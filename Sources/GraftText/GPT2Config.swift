import Foundation

/// The activation between a GPT-2 block's MLP layers (`activation_function` in `config.json`,
/// named as `transformers`' `ACT2FN`).
public enum GPT2Activation: String, Sendable, CaseIterable {
  /// GELU with the tanh approximation, GPT-2's own (`gelu_new`).
  case geluNew = "gelu_new"
  /// The same tanh approximation under PyTorch's name.
  case geluPyTorchTanh = "gelu_pytorch_tanh"
  /// The same tanh approximation, written `x·(1 + 0.044715·x²)` inside the tanh.
  case geluFast = "gelu_fast"
  /// Exact (erf) GELU.
  case gelu
  /// max(x, 0).
  case relu

  /// The function on a tensor.
  func apply(_ x: Tensor) -> Tensor {
    switch self {
    case .geluNew, .geluPyTorchTanh, .geluFast: x.geluTanh()
    case .gelu: x.gelu()
    case .relu: x.relu()
    }
  }
}

/// The settings of a GPT-2-layout decoder (`transformers`' `GPT2Config`, as in a model folder's
/// `config.json`), with GPT-2 small's defaults.
public struct GPT2Config: Sendable, Equatable {
  /// Vocabulary size V (rows of `wte`).
  public var vocabSize = 50_257
  /// Longest sequence (rows of `wpe`).
  public var nPositions = 1024
  /// Width D.
  public var nEmbd = 768
  /// Number of blocks.
  public var nLayer = 12
  /// Attention heads.
  public var nHead = 12
  /// MLP hidden width; `n_inner: null` means 4·D.
  public var nInner: Int?
  /// LayerNorm ε.
  public var layerNormEpsilon: Float = 1e-5
  /// The MLP activation.
  public var activation = GPT2Activation.geluNew
  /// Attention scores are divided by √(D / heads).
  public var scaleAttnWeights = true
  /// Attention scores of block i are further divided by i + 1.
  public var scaleAttnByInverseLayerIdx = false
  /// The output projection shares `wte`.
  public var tieWordEmbeddings = true
  /// Dropout on the attention probabilities (`attn_pdrop`).
  public var attnPdrop: Float = 0.1
  /// Dropout on each residual branch (`resid_pdrop`).
  public var residPdrop: Float = 0.1
  /// Dropout on the embedded input (`embd_pdrop`).
  public var embdPdrop: Float = 0.1
  /// Start and end of text (both `<|endoftext|>` in GPT-2).
  public var bosTokenID: Int?
  /// End of text: generation stops at any of these (`eos_token_id`, a number or a list).
  public var eosTokenIDs: [Int] = []

  /// GPT-2 small's settings.
  public init() {}

  /// The MLP hidden width.
  public var innerWidth: Int { nInner ?? 4 * nEmbd }
  /// Width of one attention head.
  public var headWidth: Int { nEmbd / nHead }

  /// Bounds that catch a corrupt config before anything is allocated.
  static let limits = (width: 1 << 16, depth: 4096, vocab: 1 << 24, positions: 1 << 22)

  /// Throws `ConfigError` naming the setting when the sizes cannot make a model.
  public func validate() throws {
    func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
    try check(
      vocabSize >= 1 && vocabSize <= Self.limits.vocab, "vocab_size \(vocabSize) is out of range")
    try check(
      nPositions >= 1 && nPositions <= Self.limits.positions,
      "n_positions \(nPositions) is out of range")
    try check(nEmbd >= 1 && nEmbd <= Self.limits.width, "n_embd \(nEmbd) is out of range")
    try check(nLayer >= 0 && nLayer <= Self.limits.depth, "n_layer \(nLayer) is out of range")
    try check(
      nHead >= 1 && nEmbd % nHead == 0, "n_embd \(nEmbd) is not divisible by n_head \(nHead)")
    try check(
      innerWidth >= 1 && innerWidth <= 16 * Self.limits.width,
      "n_inner \(innerWidth) is out of range")
    try check(
      layerNormEpsilon > 0 && layerNormEpsilon.isFinite,
      "layer_norm_epsilon \(layerNormEpsilon) must be positive")
    for (key, p) in [
      ("attn_pdrop", attnPdrop), ("resid_pdrop", residPdrop), ("embd_pdrop", embdPdrop),
    ] {
      try check(p >= 0 && p < 1, "\(key) \(p) must be in [0, 1)")
    }
  }

  /// The settings of a `config.json` object. Throws `ConfigError` naming the key for a value of
  /// the wrong type, a model that is not GPT-2's layout (`model_type` other than `gpt2`, cross
  /// attention) and an activation this decoder does not have.
  public init(json o: [String: JSONValue]) throws {
    if let type = o["model_type"]?.stringValue, type != "gpt2" {
      throw ConfigError("model_type '\(type)' is not a GPT-2-layout decoder ('gpt2')")
    }
    func int(_ key: String, _ fallback: Int) throws -> Int {
      guard let v = o[key], !v.isNull else { return fallback }
      guard let i = v.intValue else { throw ConfigError("\(key) must be a whole number, got \(v)") }
      return i
    }
    func optionalInt(_ key: String) throws -> Int? {
      guard let v = o[key], !v.isNull else { return nil }
      if let list = v.arrayValue, let first = list.first?.intValue { return first }
      guard let i = v.intValue else { throw ConfigError("\(key) must be a whole number, got \(v)") }
      return i
    }
    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
      guard let v = o[key], !v.isNull else { return fallback }
      guard let b = v.boolValue else { throw ConfigError("\(key) must be true or false, got \(v)") }
      return b
    }
    vocabSize = try int("vocab_size", vocabSize)
    nPositions = try int("n_positions", try int("n_ctx", nPositions))
    nEmbd = try int("n_embd", nEmbd)
    nLayer = try int("n_layer", nLayer)
    nHead = try int("n_head", nHead)
    nInner = try optionalInt("n_inner")
    if let v = o["layer_norm_epsilon"], !v.isNull {
      guard let d = v.doubleValue else {
        throw ConfigError("layer_norm_epsilon must be a number, got \(v)")
      }
      layerNormEpsilon = Float(d)
    }
    if let v = o["activation_function"], !v.isNull {
      guard let name = v.stringValue, let a = GPT2Activation(rawValue: name) else {
        throw ConfigError(
          "activation_function \(v) is not supported (known: "
            + GPT2Activation.allCases.map(\.rawValue).joined(separator: ", ") + ")")
      }
      activation = a
    }
    func probability(_ key: String, _ fallback: Float) throws -> Float {
      guard let v = o[key], !v.isNull else { return fallback }
      guard let d = v.doubleValue else { throw ConfigError("\(key) must be a number, got \(v)") }
      return Float(d)
    }
    attnPdrop = try probability("attn_pdrop", attnPdrop)
    residPdrop = try probability("resid_pdrop", residPdrop)
    embdPdrop = try probability("embd_pdrop", embdPdrop)
    scaleAttnWeights = try bool("scale_attn_weights", true)
    scaleAttnByInverseLayerIdx = try bool("scale_attn_by_inverse_layer_idx", false)
    tieWordEmbeddings = try bool("tie_word_embeddings", true)
    if try bool("add_cross_attention", false) {
      throw ConfigError("add_cross_attention is not supported (a decoder-only model is)")
    }
    bosTokenID = try optionalInt("bos_token_id")
    if let v = o["eos_token_id"], !v.isNull {
      let items = v.arrayValue ?? [v]
      eosTokenIDs = try items.map { item in
        guard let i = item.intValue else {
          throw ConfigError("eos_token_id must be a whole number or a list of them, got \(v)")
        }
        return i
      }
    }
    try validate()
  }

  /// Whether a `config.json` object describes a GPT-2-layout language model (`model_type`
  /// `gpt2`, or an architecture named `GPT2…`).
  public static func describesLanguageModel(_ o: [String: JSONValue]) -> Bool {
    if o["model_type"]?.stringValue == "gpt2" { return true }
    let archs = o["architectures"]?.arrayValue?.compactMap(\.stringValue) ?? []
    return archs.contains { $0.hasPrefix("GPT2") }
  }

  /// Reads `url` (a `config.json`); throws `FileError` naming the file.
  public static func read(_ url: URL) throws -> GPT2Config {
    let object = try readObject(url)
    do {
      return try GPT2Config(json: object)
    } catch let e as ConfigError {
      throw FileError(path: url.path, message: e.message)
    }
  }

  /// The top-level object of the JSON file at `url`; throws `FileError` naming the file.
  public static func readObject(_ url: URL) throws -> [String: JSONValue] {
    try JSONFile.readObject(url, missing: "a model folder has one")
  }
}
