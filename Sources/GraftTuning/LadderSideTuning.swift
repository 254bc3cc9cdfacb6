import Foundation

/// Children named by backbone block index (`side_blocks.3`), for the layers a side network
/// uses.
public final class IndexedModules<Element: Module>: Module {
  /// The children by block index.
  public private(set) var byIndex: [Int: Element] = [:]

  /// Registers `module` under the name `"\(index)"`.
  public func add(_ index: Int, _ module: Element) {
    registerModule(String(index), module)
    byIndex[index] = module
  }

  /// The child of block `index`, if any.
  public subscript(index: Int) -> Element? { byIndex[index] }
}

/// `lst`: Ladder Side-Tuning (Sung, Cho & Bansal, NeurIPS 2022; ylsung/Ladder-Side-Tuning),
/// adapted from T5 to transformer encoders. The backbone runs without recording (no gradient
/// reaches it, so it keeps no activations); a narrow copy of it, the side network, trains on its
/// hidden states through "ladders". Once a training step has kept `keep_mib` of side-block
/// activations, every further side block is recomputed in backward (activation checkpointing),
/// keeping only the side state entering it and the ladder's output (the ladders, which read
/// frozen states, run once). What trains: the side network, ladders, gates, upsample and the
/// new head; nothing of the backbone.
///
/// Forward (r = `reduction`, d = D / r, S = the side layers, all blocks by default):
/// - `h = side_first_downsample(x₀)`: Linear D → d on the embedded token sequence x₀ (the
///   sequence entering block 0, `BackboneOutput.embedded`, prefix tokens included).
/// - for each block i of the backbone, in order, if i ∈ S:
///   `h ← μᵢ·h + (1 − μᵢ)·side_downsamples.i(hᵢ)` with hᵢ the output of backbone block i,
///   `side_downsamples.i` a Linear D → d and `μᵢ = sigmoid(αᵢ / T)` (α = `gate_alpha`,
///   T = `gate_T`), then `h ← side_blocks.i(h)`. Blocks not in S have no side block, ladder or
///   gate (the reference's layer dropping).
/// - `s = side_final_upsample(final_side_layer_norm(h))`: LayerNorm(d) then Linear d → D.
/// - `z = μ·s + (1 − μ)·t` with t the backbone's final tokens (`BackboneOutput.tokens`, after
///   its final norm) and `μ = sigmoid(α_merge / T)` (the reference's
///   `side_gate_params_merge_last`).
/// - logits = `head(pool(z))`, where `pool` is the backbone's own pooling with
///   `BackboneOutput.prefixTokenCount`: the class token, or the mean of the patch rows (then its
///   frozen `fc_norm` when it has one).
///
/// Side blocks: the backbone's own block type at width d, built by the backbone
/// (`SequenceBackbone.reducedBlocks`; it must offer `reducibleBlocks`). On a ViT they are
/// `ViTBlock`s with the backbone's number of heads (each head_dim / r wide, attention scale
/// √(head_dim / r)⁻¹), MLP hidden `mlp_hidden / r`, the backbone's activation, LayerNorm epsilon,
/// qkv bias and LayerScale; `reduction` must divide the head width.
///
/// Initialisation:
/// - `init = prune` (default): each side block is structured-pruned from the backbone block of
///   the same index, keeping 1/r of the channels in each dimension (one set E of d residual
///   channels everywhere, the final side norm from the backbone's final norm at E). The
///   reference ranks channels by Fisher information from training batches; a constructor has
///   no data, so the ViT ranks them by weight magnitude (`ViTSidePruning` documents the scores).
/// - `init = random`: the backbone's fresh init for its blocks (timm's for a ViT: trunc-normal
///   0.02 Linear weights, zero biases, LayerNorm ones and zeros, LayerScale at `init_values`).
/// - Both: the ladders and the upsample keep PyTorch's default Linear init (U(±1/√in) weights
///   and biases); gates start at α = `gate_alpha` = 0, so μ = 0.5; the head is timm's
///   (trunc-normal 0.02, zero bias).
///
/// Deviations from the reference: magnitude instead of Fisher importance (above); the
/// classifier is a new head on the pooled merged tokens instead of T5's frozen LM head; the
/// reference draws every plain Linear (ladders, upsample) from N(0, 0.01²) with zero bias,
/// while here they keep PyTorch's default, whose scale follows the input width (std 0.021 at
/// D = 768, comparable; at small widths the reference's fixed 0.01 makes the ladder outputs
/// tiny and the side LayerNorms ill-conditioned).
///
/// Tensors (i ∈ S): `lst.side_first_downsample.weight/bias`,
/// `lst.side_downsamples.<i>.weight/bias`, `lst.side_gate_params.<i>` [1],
/// `lst.side_blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.weight/bias`
/// (`ls1.gamma`, `ls2.gamma` with LayerScale), `lst.final_side_layer_norm.weight/bias`,
/// `lst.side_final_upsample.weight/bias`, `lst.side_gate_params_merge_last` [1],
/// `lst.head.weight/bias`.
public final class LadderSideTuning: TuningMethod {
  /// How side blocks start.
  public enum SideInit: String, CaseIterable, OptionValue {
    /// Structured-pruned from the backbone's blocks.
    case prune
    /// The backbone's fresh init.
    case random
  }

  /// Which backbone blocks get a side block.
  public enum LayerSelection: OptionValue {
    /// Every block.
    case all
    /// These block indices.
    case blocks([Int])

    /// `all`, or comma-separated block indices.
    public init?(optionText text: String) {
      if text == "all" {
        self = .all
      } else if let list = [Int](optionText: text) {
        self = .blocks(list)
      } else {
        return nil
      }
    }
    /// `all` or the indices.
    public var optionText: String {
      switch self {
      case .all: "all"
      case .blocks(let list): list.optionText
      }
    }
    /// "all or …".
    public static var expectation: String { "all or \([Int].expectation)" }
  }

  /// LST's options. Recipe: AdamW lr 3e-3 (the paper's), wd 0.01, cosine, warm-up 1 (the paper
  /// warms up 500 steps / 10% on GLUE / VL; its VL script's wd 0.03 is for a 20-epoch multitask
  /// run, 0.01 suits small data and a new side network; gates and norms are not decayed).
  public struct Config: MethodConfig {
    /// The reduction factor r.
    public var reduction = 8
    /// Backbone blocks with a side block.
    public var layers = LayerSelection.all
    /// How side blocks start.
    public var initialization = SideInit.prune
    /// Initial gate parameter α.
    public var gateAlpha: Float = 0
    /// Gate temperature T.
    public var gateT: Float = 0.1
    /// MiB of side-block activations a training step keeps, block by block, before the rest
    /// are recomputed in backward (`Tensor.checkpoint(_:parameters:budget:_:)`).
    public var keepMiB = defaultKeepMiB

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int(
        "reduction", \.reduction, in: 1...4096, "side width D / r; r must divide the head width"),
      ConfigOption(
        "layers", \.layers, "backbone blocks with a side block: all, or indices 0,2,…"),
      ConfigOption(
        "init", \.initialization, "side blocks: prune (from the backbone) or random"),
      ConfigOption("gate_alpha", \.gateAlpha, "initial gate parameter α (μ = sigmoid(α / T))"),
      ConfigOption(
        "gate_T", \.gateT, "gate temperature T", expectation: "a number in 0.0001...10000",
        valid: { (1e-4...1e4).contains($0) }),
      .int(
        "keep_mib", \.keepMiB, in: 0...1_048_576,
        "MiB of side activations a step keeps, block by block, before recomputing the rest in "
          + "backward (0: recompute every block)"),
    ]
    /// AdamW, lr 3e-3, wd 0.01, warm-up 1, 20 epochs (`TuneConfig.epochs` gives the evidence).
    public static let recipe = Recipe(
      .adamw, lr: 3e-3, weightDecay: 0.01, warmupEpochs: 1, epochs: 20)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "lst",
    summary: "ladder side network (D/r wide) on the backbone's hidden states; no backbone grad",
    config: Config.self, requires: .reducibleBlocks
  ) { backbone, classes, config, generator in
    try LadderSideTuning(
      backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// The reduction factor r.
  public let reduction: Int
  /// Backbone blocks with a side block, ascending.
  public let sideLayers: [Int]
  /// Side width d = D / r.
  public let sideWidth: Int
  /// Gate temperature T.
  public let gateT: Float
  /// Bytes of side-block activations a training step keeps before recomputing (`keep_mib`).
  public let keepBytes: Int
  /// Whether the side blocks were pruned from the backbone (else random).
  public let pruned: Bool
  /// What pruning kept (nil for random init).
  public let pruning: PruningRecord?
  /// Linear D → d on the embedded tokens.
  public let sideFirstDownsample: Linear
  /// Linear D → d per side layer.
  public let sideDownsamples: IndexedModules<Linear>
  /// Gate parameters α per side layer, each [1].
  public let sideGateParams: [Int: Tensor]
  /// The side blocks (the backbone's block type at width d), by backbone block index.
  public let sideBlocks: IndexedModules<Module>
  /// LayerNorm(d) after the last side block.
  public let finalSideLayerNorm: LayerNorm
  /// Linear d → D.
  public let sideFinalUpsample: Linear
  /// Gate parameter of the final merge with the backbone's tokens, [1].
  public let sideGateParamsMergeLast: Tensor
  /// The side blocks as maps [B, N, d] → [B, N, d].
  private let blockFunctions: [Int: any UnaryModule]

  /// The residual channels pruning kept (nil for random init).
  public var keptChannels: [Int]? { pruning?.channels }
  /// Per side layer, the kept rows of the backbone's qkv, columns of its attention output and
  /// MLP hidden units (pruned init only).
  public var keptBlockIndices: [Int: PruningRecord.Block] { pruning?.blocks ?? [:] }

  /// LST on `backbone`.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    let d = backbone.width
    let r = config.reduction
    let layers = try Self.sideLayers(config.layers, depth: backbone.depth)
    let w = d / r
    reduction = r
    sideLayers = layers
    sideWidth = w
    gateT = config.gateT
    keepBytes = config.keepMiB << 20
    pruned = config.initialization == .prune

    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    sideFirstDownsample = Linear(d, w, generator: &generator)
    let downs = IndexedModules<Linear>()
    var gates: [Int: Tensor] = [:]
    for i in layers {
      downs.add(i, Linear(d, w, generator: &generator))
      gates[i] = Tensor.full([1], config.gateAlpha)
    }
    sideDownsamples = downs
    sideGateParams = gates
    let reduced = try backbone.reducedBlocks(
      layers, reduction: r, pruned: pruned, generator: &generator)
    let blocks = IndexedModules<Module>()
    for i in layers { blocks.add(i, reduced.blocks[i]!) }
    sideBlocks = blocks
    blockFunctions = reduced.blocks
    pruning = reduced.pruning
    let finalNorm = LayerNorm(w, eps: reduced.normEps)
    if let (weight, bias) = reduced.finalNorm {
      withNoGrad {
        finalNorm.weight!.assign(weight)
        finalNorm.bias!.assign(bias)
      }
    }
    finalSideLayerNorm = finalNorm
    sideFinalUpsample = Linear(w, d, generator: &generator)
    sideGateParamsMergeLast = Tensor.full([1], config.gateAlpha)
    super.init(
      name: "lst", prefix: "lst", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("side_first_downsample", sideFirstDownsample)
    registerModule("side_downsamples", sideDownsamples)
    let gateModule = Module()
    for i in layers { gateModule.registerParameter(String(i), gates[i]!) }
    registerModule("side_gate_params", gateModule)
    registerModule("side_blocks", sideBlocks)
    registerModule("final_side_layer_norm", finalSideLayerNorm)
    registerModule("side_final_upsample", sideFinalUpsample)
    registerParameter("side_gate_params_merge_last", sideGateParamsMergeLast)
    finishSetUp()
  }

  /// The side layers of `selection`: every block, or distinct block indices (sorted).
  static func sideLayers(_ selection: LayerSelection, depth: Int) throws -> [Int] {
    guard case .blocks(let items) = selection else { return Array(0..<depth) }
    var out: [Int] = []
    for i in items {
      guard (0..<depth).contains(i) else {
        throw ConfigError(
          "method.layers: '\(i)' is not a block index in 0...\(depth - 1) (or give 'all')")
      }
      guard !out.contains(i) else { throw ConfigError("method.layers: block \(i) given twice") }
      out.append(i)
    }
    guard !out.isEmpty else { throw ConfigError("method.layers is empty") }
    return out.sorted()
  }

  /// The side block of backbone block `index` (one of `sideLayers`).
  public func sideBlock(_ index: Int) -> any UnaryModule { blockFunctions[index]! }

  /// No backbone gradient.
  public override var needsBackboneGradient: Bool { false }
  /// The ladders read every block's output.
  public override var needsHiddenStates: Bool { true }
  /// The embedding, every block's output and the final tokens.
  public override var backboneReads: BackboneReads? { [.embedded, .hiddenStates, .tokens] }

  /// `sigmoid(alpha / T)`, the gate value of a gate parameter.
  public func gate(_ alpha: Tensor) -> Tensor { (alpha * (1 / gateT)).sigmoid() }

  /// `μ·a + (1 − μ)·b` for the gate value `mu` [1].
  private func mix(_ a: Tensor, _ b: Tensor, _ mu: Tensor) -> Tensor { (a - b) * mu + b }

  /// The side network's output merged with the backbone's final tokens, [B, N, D]: what is
  /// pooled for the head. `embedded` is the sequence entering block 0.
  public func mergedTokens(embedded x0: Tensor, output: BackboneOutput) -> Tensor {
    precondition(
      output.hiddenStates.count == backbone.depth, "lst needs every block's output")
    var h = sideFirstDownsample(x0)
    let budget = CheckpointBudget(bytes: keepBytes)
    for i in sideLayers {
      let (ladder, alpha, block) = (sideDownsamples[i]!, sideGateParams[i]!, sideBlock(i))
      // The ladder reads a frozen backbone state, so it runs once, outside the checkpoint: it
      // keeps only its d-wide output (its input is the state, alive anyway), and backward does
      // not redo the side network's widest product (D → d).
      let down = ladder(output.hiddenStates[i])
      // Gate and side block are kept as recorded while `keep_mib` lasts, then recomputed in
      // backward (activation checkpointing): such a step keeps only h and the ladder's output,
      // not the block's [B, N, ·] activations.
      h =
        Tensor.checkpoint([h, down], parameters: [alpha] + block.parameters(), budget: budget) {
          [unowned self] inputs in
          [block.callAsFunction(self.mix(inputs[0], inputs[1], self.gate(alpha)))]
        }[0]
    }
    let s = sideFinalUpsample(finalSideLayerNorm(h))
    return mix(s, output.tokens, gate(sideGateParamsMergeLast))
  }

  /// The head on the backbone's pooling of the merged tokens.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    let merged = mergedTokens(embedded: output.embedded, output: output)
    return head(backbone.pool(merged, prefixTokens: output.prefixTokenCount))
  }
}
