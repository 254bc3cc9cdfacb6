import Foundation

/// What is trained in a captioner.
public enum CaptionMode: String, CaseIterable, Codable, Sendable, OptionValue {
  /// Projector and LoRA on q and v of the decoder's `c_attn` (PLLaVA).
  case lora
  /// The projector alone (the decoder frozen, no LoRA).
  case projector
  /// The projector and every decoder weight.
  case full
}

/// The options of `pllava` (`method.*`), PLLaVA's settings scaled to small decoders and short
/// clips.
///
/// PLLaVA trains LoRA with r = 128, α = 32, dropout 0.05 on q and v of a 7B model and pools 16
/// frames of 24 × 24 tokens to (16, 12, 12). Scaled down here: r = 8 with the same α/r = 1/4
/// (α = 2), dropout 0.05, 8 frames pooled to (4, 2, 2). Its evaluation reloads the LoRA with
/// α = 4 (an eighth of the training α); `lora_alpha_eval` does the same at generation but
/// defaults to the training α (no down-weighting), since a short run's LoRA is small already.
public struct PLLaVAConfig: OptionTable, Codable, Equatable, Sendable {
  /// What is trained.
  public var mode = CaptionMode.lora
  /// Frames sampled per video.
  public var frames = 8
  /// Pooled grid (t, h, w) of visual tokens.
  public var pool = [4, 2, 2]
  /// The frame encoder block whose output is taken (−2: PLLaVA's second-to-last).
  public var layer = -2
  /// Rank of each LoRA delta.
  public var loraRank = 8
  /// LoRA scaling in training: the delta is multiplied by alpha / rank.
  public var loraAlpha: Float = 2
  /// LoRA scaling at generation (PLLaVA's post-training down-weighting); nil: `loraAlpha`.
  public var loraAlphaEval: Float?
  /// Dropout on the LoRA input while training.
  public var loraDropout: Float = 0.05
  /// Which decoder layers carry LoRA: q and v of `c_attn` (PLLaVA), or every linear layer.
  public var loraTargets = DecoderLoRATargets.qv
  /// Caption tokens at most (the end-of-text token not counted); longer captions are cut.
  public var maxTextTokens = 24
  /// Tokens a generated caption may have at most (end-of-text included).
  public var maxNewTokens = 24
  /// Text between the visual tokens and the caption (context, never a target), as PLLaVA's
  /// prompt template; empty: none. `<|endoftext|>` gives the decoder the start-of-text context
  /// a GPT-2 saw in pretraining.
  public var prompt = ""
  /// Whether the prefix sees the video. `false` is the no-video baseline of `graft bench
  /// captions`: the frame tokens are zeroed before the projector, so the visual prefix becomes a
  /// trained constant (the projector's biases) with the same positions and trainable tensors.
  /// It learns every caption prior the video arm can (wording, length, the commonest nouns)
  /// and nothing about the clip, so the gap between the two arms is the video's share.
  public var video = true

  /// The defaults.
  public init() {}

  /// The scaling used at generation.
  public var evalAlpha: Float { loraAlphaEval ?? loraAlpha }

  /// The pooled grid as a triple.
  public var poolShape: (Int, Int, Int) { (pool[0], pool[1], pool[2]) }

  /// Visual tokens in the prefix.
  public var visualTokens: Int { pool.reduce(1, *) }

  /// The options with their keys and help.
  public static let options: [ConfigOption<PLLaVAConfig>] = [
    ConfigOption("mode", \.mode, "what is trained: lora (projector + LoRA), projector, full"),
    .int("frames", \.frames, in: 1...256, "frames sampled per video"),
    ConfigOption("pool", \.pool, "pooled grid t,h,w of visual tokens"),
    .int("layer", \.layer, in: -64...63, "frame encoder block taken (−2: second-to-last)"),
    .int("lora_rank", \.loraRank, in: 1...4096, "rank of each LoRA delta"),
    ConfigOption("lora_alpha", \.loraAlpha, "LoRA scaling alpha / rank in training"),
    ConfigOption(
      "lora_alpha_eval", \.loraAlphaEvalText,
      "LoRA alpha at generation (PLLaVA's down-weighting); auto: lora_alpha"),
    .float("lora_dropout", \.loraDropout, in: 0...0.99, "dropout on the LoRA input in training"),
    ConfigOption(
      "lora_targets", \.loraTargets,
      "decoder layers with LoRA: qv (q and v of c_attn, PLLaVA) or all (every linear layer)"),
    .int("max_text_tokens", \.maxTextTokens, in: 1...4096, "caption tokens at most in training"),
    .int("max_new_tokens", \.maxNewTokens, in: 1...4096, "tokens generated at most"),
    ConfigOption(
      "prompt", \.prompt, "text after the visual tokens, before the caption (not a target)"),
    ConfigOption(
      "video", \.video,
      "false: the no-video baseline (frame tokens zeroed, a trained constant prefix)"),
  ]

  /// `lora_alpha_eval` as text (`auto` for nil).
  var loraAlphaEvalText: String {
    get { loraAlphaEval.map { "\($0)" } ?? "auto" }
    set { loraAlphaEval = newValue == "auto" ? nil : Float(newValue) }
  }

  /// The defaults with `given` (keys without `method.`) applied, then checked. Unknown keys and
  /// bad values throw `ConfigError`.
  public static func parse(_ given: [String: String]) throws -> PLLaVAConfig {
    var config = PLLaVAConfig()
    for key in given.keys.sorted() {
      guard let option = option(key) else {
        throw ConfigError(
          "pllava has no option '\(key)' (options: "
            + options.map(\.key).sorted().joined(separator: ", ") + ")")
      }
      if key == "lora_alpha_eval", given[key] != "auto", Float(given[key]!) == nil {
        throw ConfigError("method.lora_alpha_eval: '\(given[key]!)' is not a number or auto")
      }
      try option.set(&config, from: given[key]!, shownKey: "method." + key)
    }
    try config.validate()
    return config
  }

  /// Checks the options that need each other.
  public func validate() throws {
    guard pool.count == 3, pool.allSatisfy({ $0 >= 1 }) else {
      throw ConfigError("method.pool must be three positive sizes t,h,w, got \(pool)")
    }
    guard pool[0] <= frames else {
      throw ConfigError("method.pool: \(pool[0]) time cells from \(frames) frames")
    }
    guard loraAlpha.isFinite, evalAlpha.isFinite else {
      throw ConfigError("method.lora_alpha and method.lora_alpha_eval must be finite")
    }
  }

  /// Every option's value as text, by key (what run folders record).
  public var resolved: [String: String] {
    Dictionary(uniqueKeysWithValues: optionValues.map { ($0.key, $0.value) })
  }
}
