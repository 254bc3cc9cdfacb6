import Foundation

/// A video captioner built as PLLaVA (Xu et al., 2024) builds one: a frozen image backbone
/// encodes every sampled frame (tokens of block `layer`, −2 as PLLaVA), a trained projector
/// MLP maps them to the decoder's width, adaptive pooling brings them to `pool` (t, h, w), and
/// the pooled visual tokens go before the embedded caption as a prefix of a frozen GPT-2-layout
/// decoder that carries LoRA on q and v of `c_attn` (or, with `lora_targets: all`, on every
/// linear layer). The loss is the next-token loss of the
/// caption tokens only (prefix and padding labelled −100).
///
/// Modes (`PLLaVAConfig.mode`): `lora` trains the projector and the LoRA deltas, `projector`
/// the projector alone, `full` the projector and every decoder weight. `PLLaVAConfig` documents
/// how its defaults scale PLLaVA's down.
///
/// Tensors (what a run folder stores): `projector.*`, in `lora` mode `lora.blocks.<i>.q|v.*`
/// (`lora.blocks.<i>.c_attn|attn_c_proj|mlp_c_fc|mlp_c_proj.*` with `lora_targets: all`),
/// in `full` mode `decoder.*` (Graft's layout of the decoder: projections held [out, in]).
public final class PLLaVACaptioner: Module {
  /// The options.
  public let config: PLLaVAConfig
  /// The frozen frame encoder.
  public let encoder: FrameEncoder
  /// The decoder (frozen unless `full`).
  public let decoder: GPT2
  /// The decoder's tokenizer.
  public let tokenizer: BPETokenizer
  /// The projector MLP.
  public let projector: VisualProjector
  /// The LoRA deltas (`lora` mode only).
  public let lora: DecoderLoRA?
  /// The end-of-text token: the caption's last label, padding and the stop token.
  public let endOfText: Int
  /// The tokens of `config.prompt`, between the visual prefix and the caption.
  public let promptTokens: [Int]

  /// A fresh captioner on `backbone` (any image backbone whose blocks give a patch grid) and
  /// `decoder`. Throws `CaptionError` for a backbone that does not take images, a decoder
  /// without an end-of-text token, or a prefix and caption longer than the decoder's positions;
  /// `ConfigError` for bad options. The captioner uses `decoder.model` itself: in `full` mode
  /// training (or loading a `full` run folder) changes that object's weights.
  public init(
    config: PLLaVAConfig, backbone: TuneBackbone, decoder: CaptionDecoder,
    generator: inout RandomGenerator
  ) throws {
    try config.validate()
    encoder = try Self.frameEncoder(backbone: backbone, config: config)
    let image = encoder.backbone
    let model = decoder.model
    guard
      let eos = model.config.eosTokenIDs.first ?? decoder.tokenizer.id(of: "<|endoftext|>")
    else {
      throw CaptionError(
        .missingDecoder, "\(decoder.reference): the decoder names no end-of-text token")
    }
    let prompt = decoder.tokenizer.encode(config.prompt)
    let visual = config.visualTokens + prompt.count
    let needed = max(visual + config.maxTextTokens + 1, visual + config.maxNewTokens - 1)
    guard needed <= model.config.nPositions else {
      throw CaptionError(
        .sequenceTooLong,
        "\(visual) visual and prompt tokens (method.pool \(config.pool)) and up to "
          + "\(max(config.maxTextTokens + 1, config.maxNewTokens - 1)) caption tokens need "
          + "\(needed) positions; the decoder has \(model.config.nPositions)")
    }
    self.config = config
    self.decoder = model
    self.tokenizer = decoder.tokenizer
    self.endOfText = eos
    self.promptTokens = prompt
    projector = VisualProjector(
      encoderWidth: image.width, decoderWidth: model.width, generator: &generator)
    lora =
      config.mode == .lora
      ? DecoderLoRA(
        decoder: model, rank: config.loraRank, alpha: config.loraAlpha,
        dropout: config.loraDropout, targets: config.loraTargets, generator: &generator) : nil
    super.init()
    model.freeze()
    if config.mode == .full { model.unfreeze() }
    registerModule("projector", projector)
    if let lora { registerModule("lora", lora) }
    registerModule("decoder", model)
  }

  /// The frozen encoder of `config`'s block (`method.layer`) of `backbone`, with the backbone's
  /// eval transform. Throws `CaptionError.unsupportedBackbone` for a backbone that does not take
  /// images, `ConfigError` for a layer it does not have.
  public static func frameEncoder(backbone: TuneBackbone, config: PLLaVAConfig) throws
    -> FrameEncoder
  {
    guard let image = backbone.model as? any ImageBackbone,
      let preprocessing = backbone.preprocessing
    else {
      throw CaptionError(
        .unsupportedBackbone, "\(backbone.reference): the backbone does not take images")
    }
    do {
      return try FrameEncoder(
        backbone: image, transform: EvalTransform(config: preprocessing), layer: config.layer)
    } catch let e as VideoError {
      throw ConfigError("method.layer: \(e.message)")
    }
  }

  // MARK: Inputs

  /// Tokens [B, T, h, w, E] of clips that all have `config.frames` frames, from the frozen
  /// encoder without recording (no activation is kept for backward).
  public func frameTokens(_ clips: [VideoFrames]) -> Tensor {
    withNoGrad {
      let t = clips.first?.count ?? 0
      precondition(clips.allSatisfy { $0.count == t }, "clips of different frame counts")
      let tokens = encoder.tokens(pixels: encoder.pixels(clips))
      return tokens.reshaped([clips.count, t] + Array(tokens.shape.dropFirst()))
    }
  }

  /// The visual prefix [B, t·h·w, D] of frame tokens [B, T, H, W, E]. Without video
  /// (`config.video` false) the tokens are replaced by zeros first, so every clip gets the
  /// same prefix.
  public func visualPrefix(_ frameTokens: Tensor) -> Tensor {
    let input = config.video ? frameTokens : Tensor.zeros(frameTokens.shape)
    return projector(input, pool: config.poolShape)
  }

  /// A caption's tokens, cut to `maxTextTokens`, then end-of-text.
  public func captionTokens(_ caption: String) -> [Int] {
    Array(tokenizer.encode(caption).prefix(config.maxTextTokens)) + [endOfText]
  }

  /// Input ids [B, L] (the prompt, then the caption padded with end-of-text) and labels
  /// [B, prefix + L]: −100 on the `prefix` visual positions, the prompt and the padding, the
  /// token elsewhere, so that the position before the caption predicts its first token.
  public func sequences(_ captions: [[Int]], prefix: Int) -> (ids: [[Int]], labels: [[Int]]) {
    let length = captions.map(\.count).max() ?? 0
    let ids = captions.map {
      promptTokens + $0 + Array(repeating: endOfText, count: length - $0.count)
    }
    let labels = captions.map { c in
      Array(repeating: -100, count: prefix + promptTokens.count) + c
        + Array(repeating: -100, count: length - c.count)
    }
    return (ids, labels)
  }

  /// The hooks the decoder runs with: the LoRA deltas, if any.
  var hooks: (any BackboneHooks)? { lora }

  // MARK: Loss

  /// Logits [B, prefix + L, V] and labels of `captions` (one per clip) after the visual prefix
  /// of `frameTokens` [B, T, H, W, E].
  public func logits(frameTokens: Tensor, captions: [String]) -> (
    logits: Tensor, labels: [[Int]]
  ) {
    precondition(frameTokens.shape[0] == captions.count, "one caption per clip")
    let prefix = visualPrefix(frameTokens)
    let (ids, labels) = sequences(captions.map(captionTokens), prefix: prefix.shape[1])
    let text = decoder.tokenEmbeddings(ids)
    let input = Tensor.concat([prefix, text], axis: 1)
    return (decoder.logits(.embeddings(input), hooks: hooks), labels)
  }

  /// The mean next-token loss over the caption tokens (end-of-text included) of `captions`.
  public func loss(frameTokens: Tensor, captions: [String]) -> Tensor {
    let (logits, labels) = logits(frameTokens: frameTokens, captions: captions)
    return GPT2.languageModelingLoss(logits: logits, labels: labels)
  }

  // MARK: Generation

  /// The caption of one clip's frame tokens [1, T, H, W, E] by greedy decoding (`beams` 1) or
  /// beam search, from the visual prefix (and the prompt), until end-of-text or `maxNewTokens`; LoRA runs
  /// with `lora_alpha_eval`.
  public func generate(
    frameTokens: Tensor, beams: Int = 1, lengthPenalty: Float = 1
  ) throws -> String {
    precondition(frameTokens.shape[0] == 1, "one clip at a time")
    let wasTraining = isTraining
    eval()
    defer { train(wasTraining) }
    let trainAlpha = lora?.alpha
    lora?.alpha = config.evalAlpha
    defer { if let trainAlpha { lora?.alpha = trainAlpha } }
    let prefix = withNoGrad {
      let visual = visualPrefix(frameTokens)
      guard !promptTokens.isEmpty else { return visual }
      return Tensor.concat([visual, decoder.tokenEmbeddings([promptTokens])], axis: 1)
    }
    let options = GenerationOptions(
      maxNewTokens: config.maxNewTokens, numBeams: beams, lengthPenalty: lengthPenalty,
      eosTokenIDs: [endOfText])
    let ids = try decoder.generate(.embeddings(prefix), options: options, hooks: hooks)
    let text = ids.last == endOfText ? Array(ids.dropLast()) : ids
    return tokenizer.decode(text, skipSpecialTokens: true)
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// One caption per clip (see `generate(frameTokens:beams:lengthPenalty:)`).
  public func caption(
    _ clips: [VideoFrames], beams: Int = 1, lengthPenalty: Float = 1
  ) throws -> [String] {
    try clips.map { clip in
      try generate(frameTokens: frameTokens([clip]), beams: beams, lengthPenalty: lengthPenalty)
    }
  }

  // MARK: Adapter tensors

  /// The tensors a run folder stores: every trainable tensor, by name.
  public func adapterState() -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: trainableParameters().map { ($0.name, $0.tensor) })
  }

  /// Sets the trainable tensors from `state`; every name and shape must match exactly. Throws
  /// `CaptionError.badAdapter` listing what is missing, unexpected or mis-shaped.
  public func loadAdapterState(_ state: [String: Tensor], source: String) throws {
    let expected = trainableParameters()
    let names = Set(expected.map(\.name))
    var problems: [String] = []
    for (name, tensor) in expected {
      guard let given = state[name] else {
        problems.append("missing \(name)")
        continue
      }
      guard given.shape == tensor.shape else {
        problems.append("\(name) is \(given.shape), expected \(tensor.shape)")
        continue
      }
      withNoGrad { tensor.assign(given) }
    }
    problems += state.keys.filter { !names.contains($0) }.sorted().map { "unexpected \($0)" }
    guard problems.isEmpty else {
      throw CaptionError(
        .badAdapter,
        "\(source): " + problems.prefix(8).joined(separator: "; ")
          + (problems.count > 8 ? "; … (\(problems.count) problems)" : ""))
    }
  }
}
