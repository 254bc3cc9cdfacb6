import Foundation

// LST's side network on any backbone made of `ViTBlock`s (a ViT, Point-MAE): the backbone's own
// block at 1/r of its width, either structured-pruned from the block of the same index (by weight
// magnitude) or freshly initialised as timm does.

extension VisionTransformer {
  /// `ViTBlock`s of width D / `reduction` with the backbone's heads (each head_dim / r wide), MLP
  /// hidden `mlp_hidden / r`, activation, norm epsilon, qkv bias and LayerScale, one per layer;
  /// the final norm pruned from `norm` or `fc_norm`. See `ViTSideBlocks.reduced`.
  public func reducedBlocks(
    _ layers: [Int], reduction r: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks {
    try ViTSideBlocks.reduced(
      blocks: Array(blocks), finalNorm: norm ?? fcNorm, config: config, layers: layers,
      reduction: r, pruned: pruned, generator: &generator)
  }
}

/// LST's side blocks for a backbone whose blocks are `ViTBlock`s.
enum ViTSideBlocks {
  /// `ViTBlock`s of width D / `reduction` with `c`'s heads (each head_dim / r wide), MLP hidden
  /// `mlp_hidden / r`, activation, norm epsilon, qkv bias and LayerScale, one per layer.
  ///
  /// `pruned`: each block is `blocks[i]` at the kept channels (one set E of D / r residual
  /// channels everywhere, per head head_dim / r query/key and value dimensions, mlp_hidden / r
  /// hidden units; see `ViTSidePruning`), and the final norm's scale and shift are `finalNorm`
  /// at E (ones and zeros when there is none). Else timm's init from `generator` (trunc-normal
  /// 0.02 weights, zero biases, LayerNorm ones and zeros, LayerScale at `init_values`).
  /// `reduction` must divide the head width.
  static func reduced(
    blocks: [ViTBlock], finalNorm: LayerNorm?, config c: ViTConfig, layers: [Int],
    reduction r: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks {
    guard r >= 1, c.headDim % r == 0 else {
      throw ConfigError(
        "method.reduction = \(r) must divide the backbone's head width \(c.headDim) (D = "
          + "\(c.embedDim), \(c.numHeads) heads)")
    }
    let hidden = c.mlpHidden / r
    guard hidden >= 1 else {
      throw ConfigError("method.reduction = \(r) leaves no MLP hidden unit (\(c.mlpHidden) / r)")
    }
    if let first = blocks.first, FusedActivation(rawValue: first.mlp.act.kind) == nil {
      throw ConfigError("unsupported activation '\(first.mlp.act.kind)' for side blocks")
    }
    let width = c.embedDim / r
    var out: [Int: any UnaryModule] = [:]
    guard pruned else {
      let source = ParameterSource(generator: generator)
      for i in layers {
        // One scope per block: a scope registers what it handed out on the block built on it.
        out[i] = keepingProbabilities(
          ViTBlock(
            index: i, width: width, hidden: hidden, config: c, source: source.scoped(String(i))))
      }
      generator = source.generator
      return ReducedBlocks(blocks: out, finalNorm: nil, normEps: c.normEps, pruning: nil)
    }
    return withNoGrad {
      let plan = ViTSidePruning(blocks: blocks, width: c.embedDim, reduction: r)
      var kept: [Int: PruningRecord.Block] = [:]
      for i in layers {
        let (weights, indices) = plan.block(i)
        out[i] = keepingProbabilities(
          ViTBlock(
            index: i, width: width, hidden: hidden, config: c,
            source: ParameterSource(weights: weights)))
        kept[i] = indices
      }
      let side = finalNorm.map {
        (weight: plan.vector($0.weight!), bias: plan.vector($0.bias!))
      }
      return ReducedBlocks(
        blocks: out, finalNorm: side, normEps: c.normEps,
        pruning: PruningRecord(channels: plan.channels, blocks: kept))
    }
  }
}

/// `block`, set to keep its attention probabilities for backward. LST runs every side block
/// under activation checkpointing, so what a block keeps lives only while that block's own
/// backward runs (its [B, heads, N, N] probabilities, one block at a time), and rebuilding them
/// instead would run the block's softmax a third time per step (forward, recompute, rebuild).
private func keepingProbabilities(_ block: ViTBlock) -> ViTBlock {
  block.keepsAttentionProbabilities = true
  return block
}

/// Structured magnitude pruning of a list of `ViTBlock`s (a ViT's, Point-MAE's) to 1/r of their
/// channels. Reads the blocks' weights; run under `withNoGrad`.
///
/// LST ranks channels by Fisher information from training batches; a constructor has no data,
/// so this uses weight magnitude instead (L1 norms). A residual channel c scores, summed over all
/// blocks, |norm1.weight[c]|·‖qkv.W[:, c]‖₁ + |norm2.weight[c]|·‖fc1.W[:, c]‖₁ + ‖proj.W[c, :]‖₁ +
/// ‖fc2.W[c, :]‖₁; per block and head, a query/key dimension (shared by q and k) scores
/// ‖q.W[j, E]‖₁ + ‖k.W[j, E]‖₁, a value dimension (shared by v and the proj columns)
/// ‖v.W[j, E]‖₁ + ‖proj.W[E, j]‖₁, and a hidden unit ‖fc1.W[u, E]‖₁ + ‖fc2.W[E, u]‖₁. The top
/// 1/r of each are kept, ties to the lower index, in ascending order.
struct ViTSidePruning {
  let blocks: [ViTBlock]
  /// Residual width D of the blocks.
  let width: Int
  let reduction: Int
  /// Kept residual channels E, ascending.
  let channels: [Int]

  init(blocks: [ViTBlock], width d: Int, reduction r: Int) {
    self.blocks = blocks
    width = d
    reduction = r
    var score = [Double](repeating: 0, count: d)
    for block in blocks {
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
  func vector(_ v: Tensor) -> Tensor { pick(v, channels) }

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

  /// The tensors of the side block pruned from block `index`, named as a `ViTBlock`'s
  /// (`norm1.weight`, `attn.qkv.weight`, …), with the kept indices.
  func block(_ index: Int) -> ([String: Tensor], PruningRecord.Block) {
    let b = blocks[index]
    let d = width
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

    var weights: [String: Tensor] = [:]
    func norm(_ name: String, _ n: LayerNorm) {
      weights[name + ".weight"] = n.weight.map(vector) ?? Tensor.full([e.count], 1)
      weights[name + ".bias"] = n.bias.map(vector) ?? Tensor.zeros([e.count])
    }
    func linear(_ name: String, _ l: Linear, rows: [Int], columns: [Int]) {
      weights[name + ".weight"] = slice(l.weight, rows: rows, columns: columns)
      if let bias = l.bias { weights[name + ".bias"] = pick(bias, rows) }
    }
    norm("norm1", b.norm1)
    linear("attn.qkv", b.attn.qkv, rows: qkvRows, columns: e)
    linear("attn.proj", b.attn.proj, rows: e, columns: v)
    if let ls1 = b.ls1 { weights["ls1.gamma"] = vector(ls1.gamma) }
    norm("norm2", b.norm2)
    linear("mlp.fc1", b.mlp.fc1, rows: hidden, columns: e)
    linear("mlp.fc2", b.mlp.fc2, rows: e, columns: hidden)
    if let ls2 = b.ls2 { weights["ls2.gamma"] = vector(ls2.gamma) }
    return (weights, PruningRecord.Block(qkvRows: qkvRows, projColumns: v, hidden: hidden))
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
