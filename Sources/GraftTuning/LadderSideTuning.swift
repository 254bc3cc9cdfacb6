import Foundation

// MARK: - Side network pieces

/// A per-channel scale `gamma` [d] (timm's `LayerScale`) inside a side block.
public final class SideLayerScale: Module {
  /// The scale, [d].
  public let gamma: Tensor

  /// A scale over `gamma`.
  public init(gamma: Tensor) {
    self.gamma = gamma
    super.init()
    registerParameter("gamma", gamma)
  }
}

/// The attention of a side block: a fused `qkv` Linear d → 3·d and the output `proj` d → d,
/// with as many heads as the backbone (so each head is d / heads wide).
public final class SideAttention: Module {
  /// q, k, v projection, d → 3·d.
  public let qkv: Linear
  /// Output projection, d → d.
  public let proj: Linear
  /// Number of heads.
  public let heads: Int

  /// An attention over the given layers.
  public init(qkv: Linear, proj: Linear, heads: Int) {
    self.qkv = qkv
    self.proj = proj
    self.heads = heads
    super.init()
    registerModule("qkv", qkv)
    registerModule("proj", proj)
  }
}

/// The MLP of a side block: `fc2(act(fc1(x)))`.
public final class SideMLP: Module {
  /// d → hidden.
  public let fc1: Linear
  /// hidden → d.
  public let fc2: Linear

  /// An MLP over the given layers.
  public init(fc1: Linear, fc2: Linear) {
    self.fc1 = fc1
    self.fc2 = fc2
    super.init()
    registerModule("fc1", fc1)
    registerModule("fc2", fc2)
  }
}

/// One block of a side network: a timm-style pre-norm transformer block of width d,
/// `x + ls1(proj(attn(qkv(norm1(x)))))`, then `x + ls2(fc2(act(fc1(norm2(x)))))`, with the
/// tensor names of timm's `Block` (`norm1`, `attn.qkv`, `attn.proj`, `ls1.gamma`, `norm2`,
/// `mlp.fc1`, `mlp.fc2`, `ls2.gamma`). It runs on the same fused ops as the backbone's blocks
/// (norm + linear, attention + projection, activation + linear), so backward keeps as little.
public final class SideBlock: Module {
  /// Norm before attention, [d].
  public let norm1: LayerNorm
  /// Multi-head self-attention.
  public let attn: SideAttention
  /// LayerScale of the attention branch (only when the backbone has LayerScale).
  public let ls1: SideLayerScale?
  /// Norm before the MLP, [d].
  public let norm2: LayerNorm
  /// The MLP.
  public let mlp: SideMLP
  /// LayerScale of the MLP branch (only when the backbone has LayerScale).
  public let ls2: SideLayerScale?
  /// The MLP activation (the backbone's).
  public let activation: FusedActivation

  /// A block over the given parts.
  public init(
    norm1: LayerNorm, attn: SideAttention, ls1: SideLayerScale?, norm2: LayerNorm, mlp: SideMLP,
    ls2: SideLayerScale?, activation: FusedActivation
  ) {
    self.norm1 = norm1
    self.attn = attn
    self.ls1 = ls1
    self.norm2 = norm2
    self.mlp = mlp
    self.ls2 = ls2
    self.activation = activation
    super.init()
    registerModule("norm1", norm1)
    registerModule("attn", attn)
    if let ls1 { registerModule("ls1", ls1) }
    registerModule("norm2", norm2)
    registerModule("mlp", mlp)
    if let ls2 { registerModule("ls2", ls2) }
  }

  /// The block on `x` [B, N, d].
  public func callAsFunction(_ x: Tensor) -> Tensor {
    let qkv = x.layerNormLinear(
      normWeight: norm1.weight, normBias: norm1.bias, eps: norm1.eps, weight: attn.qkv.weight,
      bias: attn.qkv.bias)
    var a = Tensor.attentionProjection(
      qkv: qkv, heads: attn.heads, weight: attn.proj.weight, bias: attn.proj.bias)
    if let ls1 { a = a * ls1.gamma }
    let x1 = x + a
    let hidden = x1.layerNormLinear(
      normWeight: norm2.weight, normBias: norm2.bias, eps: norm2.eps, weight: mlp.fc1.weight,
      bias: mlp.fc1.bias)
    var m = hidden.activationLinear(activation, weight: mlp.fc2.weight, bias: mlp.fc2.bias)
    if let ls2 { m = m * ls2.gamma }
    return x1 + m
  }
}

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

// MARK: - LST

/// `lst`: Ladder Side-Tuning (Sung, Cho & Bansal, NeurIPS 2022; ylsung/Ladder-Side-Tuning),
/// adapted from T5 to a ViT. The backbone runs without recording (no gradient reaches it, so it
/// keeps no activations); a narrow copy of it, the side network, trains on its hidden states
/// through "ladders". Each ladder and side block is recomputed in backward (activation
/// checkpointing), so a training step keeps, per layer, only the side state entering it and the
/// backbone's hidden state. What trains: the side network, ladders, gates, upsample and the new
/// head; nothing of the backbone.
///
/// Forward (r = `reduction`, d = D / r, S = the side layers, all blocks by default):
/// - `h = side_first_downsample(x₀)`: Linear D → d on the embedded token sequence x₀ (the
///   sequence entering block 0, captured through the `tokens` hook, prefix tokens included).
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
/// Side blocks: timm pre-norm blocks (`SideBlock`) of width d, with the backbone's number of
/// heads (each head_dim / r wide, attention scale √(head_dim / r)⁻¹), MLP hidden
/// `mlp_hidden / r`, the backbone's activation, LayerNorm epsilon, qkv bias and LayerScale.
/// `reduction` must divide the backbone's head width.
///
/// Initialisation:
/// - `init = prune` (default): each side block is structured-pruned from the backbone block of
///   the same index, keeping 1/r of the channels in each dimension. One set E of d residual
///   channels serves everywhere (norms, qkv columns, proj and fc2 rows, LayerScale, the final
///   side norm, which comes from the backbone's `norm` or `fc_norm`, ones and zeros without
///   one). Per block and head,
///   head_dim / r query/key dimensions (shared by q and k) and head_dim / r value dimensions
///   (shared by v and the proj columns) are kept, and mlp_hidden / r hidden units (fc1 rows,
///   fc2 columns). Kept indices are in ascending order.
///   Importance: the reference ranks channels by Fisher information from training batches; the
///   constructor has no data, so this uses weight magnitude instead (L1 norms). A residual
///   channel c scores Σ over all blocks of |norm1.weight[c]|·‖qkv.W[:, c]‖₁ +
///   |norm2.weight[c]|·‖fc1.W[:, c]‖₁ + ‖proj.W[c, :]‖₁ + ‖fc2.W[c, :]‖₁; a q/k dimension
///   ‖q.W[j, E]‖₁ + ‖k.W[j, E]‖₁; a value dimension ‖v.W[j, E]‖₁ + ‖proj.W[E, j]‖₁; a hidden
///   unit ‖fc1.W[u, E]‖₁ + ‖fc2.W[E, u]‖₁. Ties go to the lower index.
/// - `init = random`: timm's init for the side blocks (trunc-normal 0.02 Linear weights, zero
///   biases, LayerNorm ones and zeros, LayerScale at the backbone's `init_values`).
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
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "lst",
    summary: "ladder side network (D/r wide) on the backbone's hidden states; no backbone grad",
    options: [
      MethodOption("reduction", "8", "side width D / r; r must divide the head width"),
      MethodOption("layers", "all", "backbone blocks with a side block: all, or indices 0,2,…"),
      MethodOption("init", "prune", "side blocks: prune (from the backbone) or random"),
      MethodOption("gate_alpha", "0", "initial gate parameter α (μ = sigmoid(α / T))"),
      MethodOption("gate_T", "0.1", "gate temperature T"),
    ]
  ) { backbone, classes, options, generator in
    try LadderSideTuning(
      backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// The reduction factor r.
  public let reduction: Int
  /// Backbone blocks with a side block, ascending.
  public let sideLayers: [Int]
  /// Side width d = D / r.
  public let sideWidth: Int
  /// Gate temperature T.
  public let gateT: Float
  /// Whether the side blocks were pruned from the backbone (else random).
  public let pruned: Bool
  /// The residual channels E kept by pruning (ascending; nil for random init).
  public let keptChannels: [Int]?
  /// Per side layer, the kept rows of the backbone's `attn.qkv` (q, k, v parts) and columns of
  /// `attn.proj`, and the kept MLP hidden units (pruned init only).
  public let keptBlockIndices: [Int: (qkvRows: [Int], projColumns: [Int], hidden: [Int])]
  /// Linear D → d on the embedded tokens.
  public let sideFirstDownsample: Linear
  /// Linear D → d per side layer.
  public let sideDownsamples: IndexedModules<Linear>
  /// Gate parameters α per side layer, each [1].
  public let sideGateParams: [Int: Tensor]
  /// The side blocks.
  public let sideBlocks: IndexedModules<SideBlock>
  /// LayerNorm(d) after the last side block.
  public let finalSideLayerNorm: LayerNorm
  /// Linear d → D.
  public let sideFinalUpsample: Linear
  /// Gate parameter of the final merge with the backbone's tokens, [1].
  public let sideGateParamsMergeLast: Tensor
  /// The embedded tokens of the current forward pass (set by `tokens`, used by `logits`).
  private var embedded: Tensor?

  /// LST on `backbone`.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) throws {
    let c = backbone.config
    let d = backbone.width
    let r = try options.int("reduction", atLeast: 1)
    let headDim = c.headDim
    guard headDim % r == 0 else {
      throw TuningError(
        "method.reduction = \(r) must divide the backbone's head width \(headDim) (D = \(d), "
          + "\(c.numHeads) heads)")
    }
    let sideHidden = c.mlpHidden / r
    guard sideHidden >= 1 else {
      throw TuningError("method.reduction = \(r) leaves no MLP hidden unit (\(c.mlpHidden) / r)")
    }
    let layers = try Self.parseLayers(options, depth: backbone.depth)
    let alpha = try options.float("gate_alpha")
    let t = try options.float("gate_T")
    guard t > 0 else { throw TuningError("method.gate_T = \(t) must be > 0") }
    let mode = options.list("init").first ?? ""
    guard ["prune", "random"].contains(mode) else {
      throw TuningError("method.init = '\(mode)' is not prune or random")
    }
    guard let activation = FusedActivation(rawValue: backbone.blocks[0].mlp.act.kind) else {
      throw TuningError("lst: unsupported activation '\(backbone.blocks[0].mlp.act.kind)'")
    }
    let w = d / r
    reduction = r
    sideLayers = layers
    sideWidth = w
    gateT = t
    let isPruned = mode == "prune"
    pruned = isPruned

    func timmLinear(_ inputs: Int, _ outputs: Int, bias: Bool = true) -> Linear {
      Linear(
        weight: Tensor.truncatedNormal([outputs, inputs], std: 0.02, generator: &generator),
        bias: bias ? Tensor.zeros([outputs]) : nil)
    }
    let head = TuningMethod.timmHead(d, classes, generator: &generator)
    sideFirstDownsample = Linear(d, w, generator: &generator)
    let downs = IndexedModules<Linear>()
    var gates: [Int: Tensor] = [:]
    for i in layers {
      downs.add(i, Linear(d, w, generator: &generator))
      gates[i] = Tensor.full([1], alpha)
    }
    sideDownsamples = downs
    sideGateParams = gates
    let blocks = IndexedModules<SideBlock>()
    let finalNorm = LayerNorm(w, eps: c.normEps)
    var kept: [Int: (qkvRows: [Int], projColumns: [Int], hidden: [Int])] = [:]
    if isPruned {
      let plan = withNoGrad { SidePruning(backbone: backbone, reduction: r) }
      keptChannels = plan.channels
      for i in layers {
        let (block, indices) = withNoGrad { plan.block(i, activation: activation) }
        blocks.add(i, block)
        kept[i] = indices
      }
      if let source = backbone.norm ?? backbone.fcNorm {
        withNoGrad {
          finalNorm.weight!.assign(plan.vector(source.weight!))
          finalNorm.bias!.assign(plan.vector(source.bias!))
        }
      }
    } else {
      keptChannels = nil
      let heads = c.numHeads
      for i in layers {
        let ls: () -> SideLayerScale? = {
          c.initValues.map { SideLayerScale(gamma: Tensor.full([w], $0)) }
        }
        let block = SideBlock(
          norm1: LayerNorm(w, eps: c.normEps),
          attn: SideAttention(
            qkv: timmLinear(w, 3 * w, bias: c.qkvBias), proj: timmLinear(w, w), heads: heads),
          ls1: ls(), norm2: LayerNorm(w, eps: c.normEps),
          mlp: SideMLP(fc1: timmLinear(w, sideHidden), fc2: timmLinear(sideHidden, w)),
          ls2: ls(), activation: activation)
        blocks.add(i, block)
      }
    }
    sideBlocks = blocks
    finalSideLayerNorm = finalNorm
    keptBlockIndices = kept
    sideFinalUpsample = Linear(w, d, generator: &generator)
    sideGateParamsMergeLast = Tensor.full([1], alpha)
    super.init(
      name: "lst", prefix: "lst", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
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

  /// The side layers of option `layers`: `all`, or distinct block indices (sorted).
  static func parseLayers(_ options: MethodOptions, depth: Int) throws -> [Int] {
    let items = options.list("layers")
    if items == ["all"] { return Array(0..<depth) }
    var out: [Int] = []
    for item in items {
      guard let i = Int(item), (0..<depth).contains(i) else {
        throw TuningError(
          "method.layers: '\(item)' is not a block index in 0...\(depth - 1) (or give 'all')")
      }
      guard !out.contains(i) else { throw TuningError("method.layers: block \(i) given twice") }
      out.append(i)
    }
    guard !out.isEmpty else { throw TuningError("method.layers is empty") }
    return out.sorted()
  }

  /// Nothing inside the blocks: they run fused.
  public override var usesBlockInternals: Bool { false }

  /// No backbone gradient.
  public override var needsBackboneGradient: Bool { false }
  /// The ladders read every block's output.
  public override var needsHiddenStates: Bool { true }

  /// Keeps the embedded sequence for `side_first_downsample`.
  public override func tokens(_ x: Tensor) -> Tensor {
    embedded = x
    return x
  }

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
    for i in sideLayers {
      // Ladder, gate and side block are recomputed in backward (activation checkpointing):
      // the step keeps only h and the backbone state, not the block's [B, N, ·] activations.
      let (ladder, alpha, block) = (sideDownsamples[i]!, sideGateParams[i]!, sideBlocks[i]!)
      h =
        Tensor.checkpoint(
          [h, output.hiddenStates[i]],
          parameters: ladder.parameters() + [alpha] + block.parameters()
        ) { [unowned self] inputs in
          [block(self.mix(inputs[0], ladder(inputs[1]), self.gate(alpha)))]
        }[0]
    }
    let s = sideFinalUpsample(finalSideLayerNorm(h))
    return mix(s, output.tokens, gate(sideGateParamsMergeLast))
  }

  /// The head on the backbone's pooling of the merged tokens.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    guard let x0 = embedded else { preconditionFailure("lst: the tokens hook did not run") }
    embedded = nil
    let merged = mergedTokens(embedded: x0, output: output)
    return head(backbone.pool(merged, prefixTokens: output.prefixTokenCount))
  }
}

// MARK: - Magnitude pruning

/// Structured magnitude pruning of a ViT's blocks to 1/r of their channels (see
/// `LadderSideTuning`). Reads the backbone's weights; run under `withNoGrad`.
struct SidePruning {
  let backbone: VisionTransformer
  let reduction: Int
  /// Kept residual channels E, ascending.
  let channels: [Int]

  init(backbone: VisionTransformer, reduction r: Int) {
    self.backbone = backbone
    reduction = r
    let d = backbone.width
    var score = [Double](repeating: 0, count: d)
    for block in backbone.blocks {
      let qkv = Matrix(block.attn.qkv.weight)
      let fc1 = Matrix(block.mlp.fc1.weight)
      let proj = Matrix(block.attn.proj.weight)
      let fc2 = Matrix(block.mlp.fc2.weight)
      let g1 = block.norm1.weight.map { $0.scalars } ?? [Float](repeating: 1, count: d)
      let g2 = block.norm2.weight.map { $0.scalars } ?? [Float](repeating: 1, count: d)
      for ch in 0..<d {
        score[ch] += Double(abs(g1[ch])) * qkv.columnL1(ch, rows: 0..<qkv.rows)
        score[ch] += Double(abs(g2[ch])) * fc1.columnL1(ch, rows: 0..<fc1.rows)
        score[ch] += proj.rowL1(ch, columns: 0..<proj.columns)
        score[ch] += fc2.rowL1(ch, columns: 0..<fc2.columns)
      }
    }
    channels = Self.top(score, d / r)
  }

  /// Indices of the `k` largest scores (ties to the lower index), ascending.
  static func top(_ score: [Double], _ k: Int) -> [Int] {
    let order = score.indices.sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
    return Array(order.prefix(k)).sorted()
  }

  /// `v` [D] at the kept channels.
  func vector(_ v: Tensor) -> Tensor {
    let s = v.scalars
    return Tensor(channels.map { s[$0] }, shape: [channels.count])
  }

  /// Rows `rows` and columns `columns` of `w`.
  func slice(_ w: Tensor, rows: [Int], columns: [Int]) -> Tensor {
    let m = Matrix(w)
    var out: [Float] = []
    out.reserveCapacity(rows.count * columns.count)
    for i in rows { for j in columns { out.append(m.values[i * m.columns + j]) } }
    return Tensor(out, shape: [rows.count, columns.count])
  }

  /// Entries `rows` of `v`.
  func pick(_ v: Tensor, _ rows: [Int]) -> Tensor {
    let s = v.scalars
    return Tensor(rows.map { s[$0] }, shape: [rows.count])
  }

  /// Side block pruned from backbone block `index`, with the kept qkv rows, proj columns and
  /// hidden units.
  func block(_ index: Int, activation: FusedActivation)
    -> (SideBlock, (qkvRows: [Int], projColumns: [Int], hidden: [Int]))
  {
    let b = backbone.blocks[index]
    let d = backbone.width
    let heads = b.attn.heads
    let headDim = d / heads
    let keepHead = headDim / reduction
    let e = channels
    let qkv = Matrix(b.attn.qkv.weight)
    let proj = Matrix(b.attn.proj.weight)
    var qk: [Int] = []
    var v: [Int] = []
    for h in 0..<heads {
      let dims = Array(h * headDim..<(h + 1) * headDim)
      let qkScore = dims.map { j in qkv.rowL1(j, columns: e) + qkv.rowL1(d + j, columns: e) }
      let vScore = dims.map { j in qkv.rowL1(2 * d + j, columns: e) + proj.columnL1(j, rows: e) }
      qk += Self.top(qkScore, keepHead).map { dims[$0] }
      v += Self.top(vScore, keepHead).map { dims[$0] }
    }
    let qkvRows = qk + qk.map { d + $0 } + v.map { 2 * d + $0 }
    let fc1 = Matrix(b.mlp.fc1.weight)
    let fc2 = Matrix(b.mlp.fc2.weight)
    let hiddenScore = (0..<fc1.rows).map { u in fc1.rowL1(u, columns: e) + fc2.columnL1(u, rows: e)
    }
    let hidden = Self.top(hiddenScore, fc1.rows / reduction)

    func norm(_ n: LayerNorm) -> LayerNorm {
      let out = LayerNorm(e.count, eps: n.eps)
      if let weight = n.weight { out.weight!.assign(vector(weight)) }
      if let bias = n.bias { out.bias!.assign(vector(bias)) }
      return out
    }
    func linear(_ l: Linear, rows: [Int], columns: [Int]) -> Linear {
      Linear(
        weight: slice(l.weight, rows: rows, columns: columns),
        bias: l.bias.map { pick($0, rows) })
    }
    let block = SideBlock(
      norm1: norm(b.norm1),
      attn: SideAttention(
        qkv: linear(b.attn.qkv, rows: qkvRows, columns: e),
        proj: linear(b.attn.proj, rows: e, columns: v), heads: heads),
      ls1: b.ls1.map { SideLayerScale(gamma: vector($0.gamma)) },
      norm2: norm(b.norm2),
      mlp: SideMLP(
        fc1: linear(b.mlp.fc1, rows: hidden, columns: e),
        fc2: linear(b.mlp.fc2, rows: e, columns: hidden)),
      ls2: b.ls2.map { SideLayerScale(gamma: vector($0.gamma)) },
      activation: activation)
    return (block, (qkvRows, v, hidden))
  }
}

/// A row-major copy of a 2-D tensor with L1 norms of (parts of) its rows and columns.
private struct Matrix {
  let values: [Float]
  let rows: Int
  let columns: Int

  init(_ t: Tensor) {
    precondition(t.rank == 2, "Matrix of \(t.shape)")
    values = t.scalars
    rows = t.shape[0]
    columns = t.shape[1]
  }

  func rowL1<C: Sequence<Int>>(_ i: Int, columns cs: C) -> Double {
    cs.reduce(0) { $0 + Double(abs(values[i * columns + $1])) }
  }

  func columnL1<C: Sequence<Int>>(_ j: Int, rows rs: C) -> Double {
    rs.reduce(0) { $0 + Double(abs(values[$1 * columns + j])) }
  }
}
