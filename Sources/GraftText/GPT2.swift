import Foundation

// `transformers`' `GPT2LMHeadModel` with its parameter names: token and position tables
// (`transformer.wte`, `transformer.wpe`), pre-norm blocks `transformer.h.N` (`ln_1`, causal
// self-attention `attn.c_attn` / `attn.c_proj`, `ln_2`, `mlp.c_fc` / `mlp.c_proj`), the final
// `transformer.ln_f`, and logits through `wte` (the tied `lm_head`).
//
// GPT-2 stores its projections as `Conv1D` weights [in, out]; they are held here as `Linear`
// layers [out, in] (transposed once at load time, so that every projection is a plain GEMM and a
// LoRA wraps `c_attn` exactly as it wraps a ViT's fused `qkv`: rows q, k, v in that order).
// `checkpointStateDict()` gives them back in the checkpoint's layout.
//
// Dropout (`attn_pdrop`, `resid_pdrop`, `embd_pdrop`) is applied only when asked for, by giving
// the model a `dropoutGenerator` while it is in training mode; by default it runs as
// `transformers` does in `eval()` mode (which is how `from_pretrained` returns a model).

/// The attention of a GPT-2 block: the fused projection `c_attn` (D → 3·D, rows q, k, v) and
/// the output projection `c_proj` (D → D).
public final class GPT2Attention: Module {
  /// q, k, v projection, D → 3·D.
  public let cAttn: Linear
  /// Output projection, D → D.
  public let cProj: Linear

  init(cAttn: Linear, cProj: Linear) {
    self.cAttn = cAttn
    self.cProj = cProj
    super.init()
    registerModule("c_attn", cAttn)
    registerModule("c_proj", cProj)
  }
}

/// The MLP of a GPT-2 block: `c_fc` (D → inner), the activation, `c_proj` (inner → D).
public final class GPT2MLP: Module {
  /// First layer, D → inner.
  public let cFc: Linear
  /// Second layer, inner → D.
  public let cProj: Linear

  init(cFc: Linear, cProj: Linear) {
    self.cFc = cFc
    self.cProj = cProj
    super.init()
    registerModule("c_fc", cFc)
    registerModule("c_proj", cProj)
  }
}

/// One pre-norm block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
public final class GPT2Block: Module {
  /// Norm before attention.
  public let ln1: LayerNorm
  /// Causal self-attention.
  public let attn: GPT2Attention
  /// Norm before the MLP.
  public let ln2: LayerNorm
  /// The MLP.
  public let mlp: GPT2MLP

  init(ln1: LayerNorm, attn: GPT2Attention, ln2: LayerNorm, mlp: GPT2MLP) {
    self.ln1 = ln1
    self.attn = attn
    self.ln2 = ln2
    self.mlp = mlp
    super.init()
    registerModule("ln_1", ln1)
    registerModule("attn", attn)
    registerModule("ln_2", ln2)
    registerModule("mlp", mlp)
  }
}

/// `transformers`' `GPT2Model`: the tables, the blocks and the final norm.
public final class GPT2Transformer: Module {
  /// Token embeddings, [V, D] (also the output projection when tied).
  public let wte: GraftNN.Embedding
  /// Position embeddings, [n_positions, D].
  public let wpe: GraftNN.Embedding
  /// The blocks.
  public let h: ModuleList<GPT2Block>
  /// Norm after the last block.
  public let lnF: LayerNorm

  init(wte: GraftNN.Embedding, wpe: GraftNN.Embedding, h: [GPT2Block], lnF: LayerNorm) {
    self.wte = wte
    self.wpe = wpe
    self.h = ModuleList(h)
    self.lnF = lnF
    super.init()
    registerModule("wte", wte)
    registerModule("wpe", wpe)
    registerModule("h", self.h)
    registerModule("ln_f", lnF)
  }
}

/// The keys and values of every block for the positions seen so far, for incremental decoding:
/// a forward pass given a cache attends to its keys and values as well as its own, and appends
/// its own.
public final class GPT2KVCache {
  /// Keys of each block, [B, heads, T, d] (nil before the first pass).
  public internal(set) var keys: [Tensor?]
  /// Values of each block, [B, heads, T, d].
  public internal(set) var values: [Tensor?]

  /// An empty cache for a decoder of `layers` blocks.
  public init(layers: Int) {
    keys = Array(repeating: nil, count: layers)
    values = Array(repeating: nil, count: layers)
  }

  /// Positions cached so far.
  public var length: Int { keys.first.flatMap { $0?.shape[2] } ?? 0 }

  /// Sequences in the cache.
  public var batch: Int? { keys.first.flatMap { $0?.shape[0] } }

  /// Keeps rows `rows` of the batch, in that order (beam search's reordering).
  public func select(_ rows: [Int]) {
    withNoGrad {
      keys = keys.map { $0?.indexSelect(0, rows) }
      values = values.map { $0?.indexSelect(0, rows) }
    }
  }
}

/// The input of a decoder pass: token ids, or embeddings (a visual prefix, or tokens already
/// embedded with `GPT2.tokenEmbeddings`).
public enum GPT2Input {
  /// Token ids, one row per sequence (all rows the same length).
  case ids([[Int]])
  /// Input embeddings [B, L, D]; positions are added to them as to embedded tokens.
  case embeddings(Tensor)
}

/// A GPT-2-layout language model (`GPT2LMHeadModel`) that loads a Hugging Face model folder as
/// it is, runs with Graft's autograd (so that adapters on its layers train through it), and
/// decodes incrementally with a `GPT2KVCache`.
public final class GPT2: Module {
  /// The settings.
  public let config: GPT2Config
  /// The tables, blocks and final norm (`transformer.*`).
  public let transformer: GPT2Transformer
  /// The output projection (`lm_head`, weight [V, D], no bias) when it is not tied to `wte`.
  public let lmHead: Linear?

  /// A model over the given modules.
  init(config: GPT2Config, transformer: GPT2Transformer, lmHead: Linear?) {
    self.config = config
    self.transformer = transformer
    self.lmHead = lmHead
    super.init()
    registerModule("transformer", transformer)
    if let lmHead { registerModule("lm_head", lmHead) }
  }

  /// Where dropout masks come from. With a generator and in training mode (`train()`), dropout
  /// is applied where `transformers` applies it in `train()` mode: on the embedded input, the
  /// attention probabilities and each residual branch (after its output projection, before
  /// `BackboneHooks.attentionBranch` / `mlpBranch`). Nil (the default): no dropout.
  public var dropoutGenerator: RandomGenerator?

  /// `x` through dropout of rate `p` when dropout is on.
  private func dropout(_ x: Tensor, _ p: Float) -> Tensor {
    guard isTraining, p > 0, dropoutGenerator != nil else { return x }
    return x.dropout(p: p, training: true, generator: &dropoutGenerator!)
  }

  /// Number of blocks.
  public var depth: Int { config.nLayer }
  /// Width D.
  public var width: Int { config.nEmbd }
  /// The output projection's weight [V, D]: `wte`'s unless untied.
  public var outputWeight: Tensor { lmHead?.weight ?? transformer.wte.weight }

  // MARK: Construction

  /// A freshly initialised model as `transformers` initialises one: weights and tables
  /// N(0, `initializerRange`), the blocks' output projections N(0, `initializerRange`/√(2·layers))
  /// (GPT-2's scaled residual init), biases zero, norms one and zero.
  public convenience init(
    config: GPT2Config, initializerRange: Float = 0.02, generator: inout RandomGenerator
  ) throws {
    try config.validate()
    var weights: [String: Tensor] = [:]
    let residualStd = initializerRange / Float(2 * Swift.max(config.nLayer, 1)).squareRoot()
    for (name, shape) in Self.checkpointShapes(config) {
      if name.hasSuffix("ln_1.weight") || name.hasSuffix("ln_2.weight")
        || name == "transformer.ln_f.weight"
      {
        weights[name] = Tensor.ones(shape)
      } else if name.hasSuffix(".bias") {
        weights[name] = Tensor.zeros(shape)
      } else {
        let std = name.hasSuffix("c_proj.weight") ? residualStd : initializerRange
        weights[name] = Tensor.randn(shape, std: std, generator: &generator)
      }
    }
    try self.init(config: config, weights: weights, source: nil)
  }

  /// A model holding `weights`, named and shaped as in a `transformers` checkpoint (Conv1D
  /// weights [in, out]; the `transformer.` prefix optional; `lm_head.weight` only when untied;
  /// the old causal-mask buffers `attn.bias` / `attn.masked_bias` ignored). Throws
  /// `StateDictError` (its `source` the given file) listing every missing, unexpected and
  /// mis-shaped tensor with both shapes.
  public convenience init(config: GPT2Config, weights: [String: Tensor], source: String?) throws {
    try config.validate()
    var byName: [String: Tensor] = [:]
    var unexpected: [String] = []
    for (key, t) in weights {
      let name =
        key.hasPrefix("transformer.") || key.hasPrefix("lm_head.") ? key : "transformer." + key
      if name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") { continue }
      if name == "lm_head.weight" && config.tieWordEmbeddings { continue }
      if byName[name] != nil {
        unexpected.append(key)
        continue
      }
      byName[name] = t
    }
    var missing: [String] = []
    var misshaped: [StateDictError.Mismatch] = []
    var picked: [String: Tensor] = [:]
    let expected = Self.checkpointShapes(config)
    for (name, shape) in expected {
      guard let t = byName.removeValue(forKey: name) else {
        missing.append(name)
        continue
      }
      guard t.shape == shape else {
        misshaped.append(.init(name: name, expected: shape, got: t.shape))
        continue
      }
      picked[name] = t
    }
    unexpected += byName.keys
    guard missing.isEmpty && misshaped.isEmpty && unexpected.isEmpty else {
      throw StateDictError(
        missing: missing, unexpected: unexpected.sorted(), misshaped: misshaped, source: source)
    }
    func leaf(_ name: String) -> Tensor { picked[name]!.detached() }
    func linear(_ prefix: String) -> Linear {
      // Conv1D [in, out] → Linear [out, in].
      let w = withNoGrad { picked[prefix + ".weight"]!.detached().transposed(0, 1) }
      return Linear(weight: w.detached(), bias: leaf(prefix + ".bias"))
    }
    func norm(_ prefix: String) -> LayerNorm {
      let n = LayerNorm(config.nEmbd, eps: config.layerNormEpsilon)
      n.weight!.assign(picked[prefix + ".weight"]!)
      n.bias!.assign(picked[prefix + ".bias"]!)
      return n
    }
    var blocks: [GPT2Block] = []
    for i in 0..<config.nLayer {
      let p = "transformer.h.\(i)"
      blocks.append(
        GPT2Block(
          ln1: norm(p + ".ln_1"),
          attn: GPT2Attention(cAttn: linear(p + ".attn.c_attn"), cProj: linear(p + ".attn.c_proj")),
          ln2: norm(p + ".ln_2"),
          mlp: GPT2MLP(cFc: linear(p + ".mlp.c_fc"), cProj: linear(p + ".mlp.c_proj"))))
    }
    let transformer = GPT2Transformer(
      wte: GraftNN.Embedding(weight: leaf("transformer.wte.weight")),
      wpe: GraftNN.Embedding(weight: leaf("transformer.wpe.weight")), h: blocks,
      lnF: norm("transformer.ln_f"))
    self.init(
      config: config, transformer: transformer,
      lmHead: config.tieWordEmbeddings ? nil : Linear(weight: leaf("lm_head.weight"), bias: nil))
  }

  /// Loads a Hugging Face model folder: `config.json` (a `gpt2` model) and `model.safetensors`.
  /// Throws `FileError` naming the file for a missing or malformed config or a missing weights
  /// file, `SafetensorsError` for a malformed weights file, and `StateDictError` (its `source`
  /// the weights file) naming every missing, unexpected or mis-shaped tensor.
  public static func load(folder: URL) throws -> GPT2 {
    let config = try GPT2Config.read(folder.appendingPathComponent("config.json"))
    let weightsURL = folder.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      let hasPickle = FileManager.default.fileExists(
        atPath: folder.appendingPathComponent("pytorch_model.bin").path)
      throw FileError(
        path: weightsURL.path,
        message: "no such file"
          + (hasPickle ? " (pytorch_model.bin is not read: save with safe_serialization)" : ""))
    }
    let file = try SafetensorsFile(contentsOf: weightsURL)
    return try GPT2(config: config, weights: try file.tensors(), source: weightsURL.path)
  }

  /// Every tensor of a `transformers` checkpoint of `config`, with its shape (Conv1D weights
  /// [in, out]), in the order `named_parameters` lists them.
  public static func checkpointShapes(_ config: GPT2Config) -> [(name: String, shape: [Int])] {
    let (d, inner) = (config.nEmbd, config.innerWidth)
    var out: [(String, [Int])] = [
      ("transformer.wte.weight", [config.vocabSize, d]),
      ("transformer.wpe.weight", [config.nPositions, d]),
    ]
    for i in 0..<config.nLayer {
      let p = "transformer.h.\(i)."
      out += [
        (p + "ln_1.weight", [d]), (p + "ln_1.bias", [d]),
        (p + "attn.c_attn.weight", [d, 3 * d]), (p + "attn.c_attn.bias", [3 * d]),
        (p + "attn.c_proj.weight", [d, d]), (p + "attn.c_proj.bias", [d]),
        (p + "ln_2.weight", [d]), (p + "ln_2.bias", [d]),
        (p + "mlp.c_fc.weight", [d, inner]), (p + "mlp.c_fc.bias", [inner]),
        (p + "mlp.c_proj.weight", [inner, d]), (p + "mlp.c_proj.bias", [d]),
      ]
    }
    out += [("transformer.ln_f.weight", [d]), ("transformer.ln_f.bias", [d])]
    if !config.tieWordEmbeddings { out.append(("lm_head.weight", [config.vocabSize, d])) }
    return out
  }

  /// The weights named and laid out as a `transformers` checkpoint (Conv1D weights [in, out]),
  /// ready for `Safetensors.write`: what `GPT2(config:weights:source:)` reads back.
  public func checkpointStateDict() -> [String: Tensor] {
    withNoGrad {
      var out: [String: Tensor] = [
        "transformer.wte.weight": transformer.wte.weight,
        "transformer.wpe.weight": transformer.wpe.weight,
        "transformer.ln_f.weight": transformer.lnF.weight!,
        "transformer.ln_f.bias": transformer.lnF.bias!,
      ]
      for (i, b) in transformer.h.enumerated() {
        let p = "transformer.h.\(i)."
        let layers: [(String, Linear)] = [
          ("attn.c_attn", b.attn.cAttn), ("attn.c_proj", b.attn.cProj),
          ("mlp.c_fc", b.mlp.cFc), ("mlp.c_proj", b.mlp.cProj),
        ]
        for (name, l) in layers {
          out[p + name + ".weight"] = l.weight.transposed(0, 1)
          out[p + name + ".bias"] = l.bias!
        }
        out[p + "ln_1.weight"] = b.ln1.weight!
        out[p + "ln_1.bias"] = b.ln1.bias!
        out[p + "ln_2.weight"] = b.ln2.weight!
        out[p + "ln_2.bias"] = b.ln2.bias!
      }
      if let lmHead { out["lm_head.weight"] = lmHead.weight }
      return out
    }
  }

  // MARK: Layers for adapters

  /// The linear layer at `site`: `.qkv` is `c_attn` (rows q, k, v), `.attentionOut` the
  /// attention's `c_proj`, `.mlpIn` `c_fc`, `.mlpOut` the MLP's `c_proj`. Nil for a block
  /// index out of range.
  public func linearLayer(at site: LinearSite) -> Linear? {
    guard site.block >= 0 && site.block < depth else { return nil }
    let b = transformer.h[site.block]
    switch site.role {
    case .qkv: return b.attn.cAttn
    case .attentionOut: return b.attn.cProj
    case .mlpIn: return b.mlp.cFc
    case .mlpOut: return b.mlp.cProj
    }
  }

  /// The parameter path of the layer at `site` (`transformer.h.3.attn.c_attn`); its tensors are
  /// the path plus `.weight` (held [out, in]) and `.bias`.
  public func linearPath(at site: LinearSite) -> String? {
    guard site.block >= 0 && site.block < depth else { return nil }
    let role =
      switch site.role {
      case .qkv: "attn.c_attn"
      case .attentionOut: "attn.c_proj"
      case .mlpIn: "mlp.c_fc"
      case .mlpOut: "mlp.c_proj"
      }
    return "transformer.h.\(site.block).\(role)"
  }

  // MARK: Forward

  /// Token embeddings [B, L, D] of `ids` (rows of `wte`, without positions), for building an
  /// `.embeddings` input that mixes tokens with other vectors.
  public func tokenEmbeddings(_ ids: [[Int]]) -> Tensor {
    let b = ids.count
    let l = ids.first?.count ?? 0
    precondition(ids.allSatisfy { $0.count == l }, "token rows of different lengths")
    let flat = ids.flatMap { $0 }
    precondition(
      flat.allSatisfy { $0 >= 0 && $0 < config.vocabSize },
      "token id out of range 0..<\(config.vocabSize)")
    return transformer.wte(flat, shape: [b, l])
  }

  /// The final hidden states [B, L, D] (after `ln_f`) of `input`.
  ///
  /// - `attentionMask`: [B, T] of 1 (attend) and 0 (padding) over the cached and the new
  ///   positions (T = cache length + L), as `transformers`' `attention_mask`; nil attends to all.
  /// - `positionIDs`: [B, L] position of each new token; nil numbers them from the cache length
  ///   on (`transformers`' default, whatever the padding).
  /// - `cache`: keys and values of earlier positions, extended in place with the new ones.
  /// - `hooks`: called at every linear layer (`linear`, with `LinearSite` roles as in
  ///   `linearLayer(at:)`) and residual branch (`attentionBranch`, `mlpBranch`) of every block;
  ///   the points outside blocks are not called.
  public func hiddenStates(
    _ input: GPT2Input, attentionMask: [[Int]]? = nil, positionIDs: [[Int]]? = nil,
    cache: GPT2KVCache? = nil, hooks: (any BackboneHooks)? = nil
  ) -> Tensor {
    var x: Tensor
    switch input {
    case .ids(let ids): x = tokenEmbeddings(ids)
    case .embeddings(let e):
      precondition(
        e.rank == 3 && e.shape[2] == width, "input embeddings \(e.shape) must be [B, L, \(width)]")
      x = e
    }
    let (b, l) = (x.shape[0], x.shape[1])
    let past = cache?.length ?? 0
    if let n = cache?.batch, past > 0 {
      precondition(n == b, "the cache holds \(n) sequences, the input \(b)")
    }
    let positions = positionIDs ?? Array(repeating: Array(past..<(past + l)), count: b)
    precondition(
      positions.count == b && positions.allSatisfy { $0.count == l },
      "position ids must be [\(b), \(l)]")
    precondition(
      positions.allSatisfy { $0.allSatisfy { $0 >= 0 && $0 < config.nPositions } },
      "positions go past n_positions \(config.nPositions) (cache \(past) + \(l) new)")
    x = dropout(x + transformer.wpe(positions.flatMap { $0 }, shape: [b, l]), config.embdPdrop)
    let bias = Self.attentionBias(batch: b, queries: l, past: past, mask: attentionMask)
    for (i, block) in transformer.h.enumerated() {
      x = self.block(i, block, x, bias: bias, cache: cache, hooks: hooks)
    }
    return transformer.lnF(x)
  }

  /// Logits [B, L, V] of `input` (see `hiddenStates` for the arguments).
  public func logits(
    _ input: GPT2Input, attentionMask: [[Int]]? = nil, positionIDs: [[Int]]? = nil,
    cache: GPT2KVCache? = nil, hooks: (any BackboneHooks)? = nil
  ) -> Tensor {
    project(
      hiddenStates(
        input, attentionMask: attentionMask, positionIDs: positionIDs, cache: cache, hooks: hooks))
  }

  /// Logits [..., V] of hidden states [..., D] (the tied `lm_head`).
  public func project(_ hidden: Tensor) -> Tensor {
    hidden.matmul(outputWeight, transposeOther: true)
  }

  /// The next-token loss of `logits` [B, L, V] against `labels` [B, L] as `transformers`'
  /// `GPT2LMHeadModel(labels:)` computes it: position i predicts label i + 1, labels equal to
  /// `ignoreIndex` (padding, a visual prefix, a prompt) count for nothing, and the mean is over
  /// the predicted labels (NaN when there are none, as PyTorch).
  public static func languageModelingLoss(
    logits: Tensor, labels: [[Int]], ignoreIndex: Int = -100
  ) -> Tensor {
    precondition(logits.rank == 3, "logits \(logits.shape) must be [B, L, V]")
    let (b, l, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
    precondition(
      labels.count == b && labels.allSatisfy { $0.count == l }, "labels must be [\(b), \(l)]")
    let targets = labels.flatMap { row in Array(row.dropFirst()) + [ignoreIndex] }
    return logits.reshaped([b * l, v]).crossEntropy(targets: targets, ignoreIndex: ignoreIndex)
  }

  /// The value added to masked attention scores, as `transformers` (the smallest float).
  static let maskedScore = -Float.greatestFiniteMagnitude

  /// The additive attention mask [B or 1, 1, L, T]: 0 where query i (at position past + i) may
  /// see key j, `maskedScore` where j is in its future or padding.
  static func attentionBias(batch b: Int, queries l: Int, past: Int, mask: [[Int]]?) -> Tensor {
    let t = past + l
    if let mask {
      precondition(
        mask.count == b && mask.allSatisfy { $0.count == t },
        "attention mask must be [\(b), \(t)] (cached and new positions)")
    }
    let rows = mask == nil ? 1 : b
    let out = Tensor(shape: [rows, 1, l, t])
    let p = out.pointer
    for r in 0..<rows {
      for i in 0..<l {
        for j in 0..<t where j > past + i || mask?[r][j] == 0 {
          p[(r * l + i) * t + j] = maskedScore
        }
      }
    }
    return out
  }

  /// Block `index` on `x` [B, L, D].
  private func block(
    _ index: Int, _ block: GPT2Block, _ x: Tensor, bias: Tensor, cache: GPT2KVCache?,
    hooks: (any BackboneHooks)?
  ) -> Tensor {
    let (b, l, d) = (x.shape[0], x.shape[1], x.shape[2])
    let heads = config.nHead
    let hd = d / heads
    func linear(_ layer: Linear, _ role: LinearRole, _ input: Tensor) -> Tensor {
      let y = layer(input)
      return hooks?.linear(LinearSite(block: index, role: role), input: input, output: y) ?? y
    }
    func split(_ t: Tensor) -> Tensor { t.reshaped([b, l, heads, hd]).permuted([0, 2, 1, 3]) }
    let h = block.ln1(x)
    let qkv = linear(block.attn.cAttn, .qkv, h).split([d, d, d], axis: 2)
    var (q, k, v) = (split(qkv[0]), split(qkv[1]), split(qkv[2]))
    if let cache {
      if let pk = cache.keys[index], let pv = cache.values[index] {
        k = Tensor.concat([pk, k], axis: 2)
        v = Tensor.concat([pv, v], axis: 2)
      }
      cache.keys[index] = k
      cache.values[index] = v
    }
    var scale: Float = config.scaleAttnWeights ? 1 / Float(hd).squareRoot() : 1
    if config.scaleAttnByInverseLayerIdx { scale /= Float(index + 1) }
    let scores = q.matmul(k, transposeOther: true) * scale + bias
    let probabilities = dropout(scores.softmax(axis: -1), config.attnPdrop)
    let mixed = probabilities.matmul(v).permuted([0, 2, 1, 3]).reshaped([b, l, d])
    var a = dropout(linear(block.attn.cProj, .attentionOut, mixed), config.residPdrop)
    if let hooks { a = hooks.attentionBranch(index, input: x, output: a) }
    let x1 = x + a
    let hidden = config.activation.apply(linear(block.mlp.cFc, .mlpIn, block.ln2(x1)))
    var m = dropout(linear(block.mlp.cProj, .mlpOut, hidden), config.residPdrop)
    if let hooks { m = hooks.mlpBranch(index, input: x1, output: m) }
    return x1 + m
  }
}
