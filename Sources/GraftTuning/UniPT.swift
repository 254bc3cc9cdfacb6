import Foundation

/// `unipt`: Universal Parallel Tuning (Diao et al., CVPR 2024; Paranioar/UniPT), the
/// transformer variant of its VSE∞/BERT text tower (`VSE-infty/lib/adapter_for_transformer.py`)
/// on any backbone. A light network beside the backbone reads every hidden state, computed without
/// recording (no gradient reaches the backbone, which keeps no activations). Once a step has
/// kept `keep_mib` of the layers' interactions, each further layer's is recomputed in backward
/// (activation checkpointing), so the step keeps its inputs, not its [B, N, N] matrices. What
/// trains: the Down, projection, Up and confidence layers and the new head; nothing of the
/// backbone.
///
/// Inputs: H₀ (the embedded sequence entering block 0, `BackboneOutput.embedded`),
/// H₁ … H_{L−1} (the outputs of blocks 0 … L−2) and F, the backbone's final tokens
/// (`BackboneOutput.tokens`: the last block's output after the final norm, or without it for
/// models that norm after pooling). With m = D / r
/// (r = `reduction`) and `Down_l = LayerNorm_m ∘ Linear_{D→m}`, l = 0 … L:
/// - anchor `A = Down_L(F)` [B, N, m] and its token mean `ā`;
/// - for l = 0 … L − 1: `T_l = Down_l(H_l)`, `S_l = ReLU(A·T_lᵀ)` [B, N, N],
///   `W_l = S_l / (Σ_keys S_l + 1e-8) + I`, `M_l = W_l·T_l` (the identity adds `T_l`), and the
///   confidence `c_l = gate_layer(ā ⊙ t̄_l)` (Linear m → 1, t̄_l the token mean of `T_l`);
/// - `M = Σ_l softmax_l(c)_l · M_l`, `O = A + projection_layer(M)` (Linear m → m, LayerNorm);
/// - `Z = F + upsample_layer(O)` with `upsample_layer = Linear_{m→D} ∘ ReLU`;
/// - logits = `head(pool(Z))`, `pool` being the backbone's own pooling with
///   `BackboneOutput.prefixTokenCount` (class token, or the mean of the patch rows then its
///   frozen `fc_norm`).
///
/// As the official code: the last hidden state is the anchor only and the L earlier states are
/// the keys (so L + 1 `Down` layers for L interactions); the L1 normalisation is over the keys
/// with ε = 1e-8 added to the sum, and the identity is added after it; confidences come from
/// the product of token means; LayerNorms have PyTorch's ε 1e-5; every layer keeps PyTorch's
/// default init (U(±1/√in) weights and biases, LayerNorm ones and zeros). The head is timm's
/// (trunc-normal 0.02, zero bias).
///
/// Deviations: there is no padding, so no mask, and the means run over all N tokens (prefix
/// tokens included, as BERT's include [CLS]). The official text tower feeds the UniPT output
/// itself to its pooling; here it is a residual on the backbone's final tokens F (as the
/// CLIP4Clip variant adds it to the raw anchor) with `Up` mapping back to D, so the head reads
/// the backbone's own features plus the learned correction. The anchor reads F after the
/// final norm, the ViT counterpart of BERT's last hidden state.
///
/// Tensors: `unipt.downsample_layers.<l>.0.weight/bias` (Linear), `.1.weight/bias`
/// (LayerNorm), l = 0 … L; `unipt.projection_layer.0/.1`; `unipt.upsample_layer.1` (after the
/// ReLU at `.0`); `unipt.gate_layer.weight/bias`; `unipt.head.weight/bias`.
public final class UniPT: TuningMethod {
  /// UniPT's options. Recipe: AdamW lr 5e-4, wd 0.01, cosine, warm-up 1 (VSE∞'s 5e-4; the
  /// official repository's tips put it at 5–20× the fine-tuning lr, here 5× `full`'s 1e-4, and
  /// wd at 1e-4 to 1e-2, the upper end for small backbones).
  public struct Config: MethodConfig {
    /// Width of the parallel network, m = D / reduction.
    public var reduction = 2
    /// MiB of per-layer activations (the interactions) a training step keeps, layer by layer,
    /// before the rest are recomputed in backward (`Tensor.checkpoint(_:parameters:budget:_:)`).
    public var keepMiB = defaultKeepMiB

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int(
        "reduction", \.reduction, in: 1...4096, "width of the parallel network, m = D / reduction"),
      .int(
        "keep_mib", \.keepMiB, in: 0...1_048_576,
        "MiB of per-layer activations a step keeps, layer by layer, before recomputing the rest "
          + "in backward (0: recompute every layer)"),
    ]
    /// AdamW, lr 5e-4, wd 0.01, warm-up 1.
    public static let recipe = Recipe(
      .adamw, lr: 5e-4, weightDecay: 0.01, warmupEpochs: 1, epochs: 10)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "unipt",
    summary: "parallel network over all hidden states (ReLU/L1 interaction, layer softmax)",
    config: Config.self
  ) { backbone, classes, config, generator in
    try UniPT(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// Added to the L1 sum over keys (`l1norm`'s eps in the official code).
  public static let l1Epsilon: Float = 1e-8

  /// The width m of the parallel network.
  public let mappingSize: Int
  /// Bytes of per-layer activations a training step keeps before recomputing (`keep_mib`).
  public let keepBytes: Int
  /// `Down_l` (Linear D → m, LayerNorm m) for l = 0 … L; the last one is the anchor's.
  public let downsampleLayers: ModuleList<Sequential>
  /// Linear m → m, LayerNorm m on the merged features.
  public let projectionLayer: Sequential
  /// ReLU then Linear m → D.
  public let upsampleLayer: Sequential
  /// The confidence Linear m → 1.
  public let gateLayer: Linear

  /// UniPT on `backbone`.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    let d = backbone.width
    let r = config.reduction
    let m = d / r
    guard m >= 1 else { throw ConfigError("method.reduction = \(r) leaves no width (D = \(d))") }
    mappingSize = m
    keepBytes = config.keepMiB << 20
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    var downs: [Sequential] = []
    for _ in 0...backbone.depth {
      downs.append(Sequential([Linear(d, m, generator: &generator), LayerNorm(m)]))
    }
    downsampleLayers = ModuleList(downs)
    projectionLayer = Sequential([Linear(m, m, generator: &generator), LayerNorm(m)])
    upsampleLayer = Sequential([Activation.relu, Linear(m, d, generator: &generator)])
    gateLayer = Linear(m, 1, generator: &generator)
    super.init(
      name: "unipt", prefix: "unipt", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("downsample_layers", downsampleLayers)
    registerModule("projection_layer", projectionLayer)
    registerModule("upsample_layer", upsampleLayer)
    registerModule("gate_layer", gateLayer)
    finishSetUp()
  }

  /// No backbone gradient.
  public override var needsBackboneGradient: Bool { false }
  /// Reads every block's output.
  public override var needsHiddenStates: Bool { true }
  /// The embedding, every block's output and the final tokens.
  public override var backboneReads: BackboneReads? { [.embedded, .hiddenStates, .tokens] }

  /// `final` [B, N, D] plus UniPT's correction computed from the key states `states`
  /// (H₀ … H_{L−1}, each [B, N, D]) with `final` as the anchor's input.
  public func fuse(states: [Tensor], final: Tensor) -> Tensor {
    precondition(
      states.count == downsampleLayers.count - 1,
      "unipt: \(states.count) key states for \(downsampleLayers.count - 1) layers")
    let (b, _) = (final.shape[0], final.shape[1])
    let anchor = downsampleLayers[states.count](final)
    let anchorMean = anchor.mean(axis: 1)
    var merged: [Tensor] = []
    var confidences: [Tensor] = []
    let budget = CheckpointBudget(bytes: keepBytes)
    for (l, state) in states.enumerated() {
      // Kept as recorded while `keep_mib` lasts, then recomputed in backward (activation
      // checkpointing): such a layer keeps the state and the anchor, not its [B, N, N]
      // interaction matrices.
      let down = downsampleLayers[l]
      let pieces = Tensor.checkpoint(
        [state, anchor, anchorMean], parameters: down.parameters() + gateLayer.parameters(),
        budget: budget
      ) { [unowned self] inputs in
        let (anchor, anchorMean) = (inputs[1], inputs[2])
        let t = down(inputs[0])
        let s = anchor.matmul(t, transposeOther: true).relu()
        let w = s / (s.sum(axis: -1, keepDims: true) + Self.l1Epsilon)
        return [w.matmul(t) + t, self.gateLayer(anchorMean * t.mean(axis: 1))]
      }
      merged.append(pieces[0])
      confidences.append(pieces[1])
    }
    let weights = Tensor.concat(confidences, axis: 1).softmax(axis: 1)
    var m: Tensor? = nil
    for (l, ml) in merged.enumerated() {
      let term = ml * weights.narrow(1, start: l, length: 1).reshaped([b, 1, 1])
      m = m.map { $0 + term } ?? term
    }
    let output = anchor + projectionLayer(m!)
    return final + upsampleLayer(output)
  }

  /// The head on the backbone's pooling of the corrected final tokens.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    precondition(
      output.hiddenStates.count == backbone.depth, "unipt needs every block's output")
    let states = [output.embedded] + output.hiddenStates.dropLast()
    let z = fuse(states: states, final: output.tokens)
    return head(backbone.pool(z, prefixTokens: output.prefixTokenCount))
  }
}
