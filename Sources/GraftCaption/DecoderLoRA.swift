import Foundation

/// LoRA on q and v of every `c_attn` of a GPT-2-layout decoder, as PLLaVA puts it on
/// `q_proj` and `v_proj`: `q += s·B_q·A_q·dropout(x)`, `v += s·B_v·A_v·dropout(x)` with
/// `s = alpha / rank`, applied through the decoder's `BackboneHooks.linear` (the decoder's own
/// weights never change). `alpha` can be changed after training (PLLaVA's down-weighting).
///
/// Tensors: `blocks.<i>.q.lora_A` [r, D], `blocks.<i>.q.lora_B` [D, r], and the same for `v`.
public final class DecoderLoRA: Module, BackboneHooks {
  /// Rank r.
  public let rank: Int
  /// Current scaling numerator: the delta is multiplied by `alpha / rank`.
  public var alpha: Float
  /// Dropout on the delta input while training.
  public let dropout: Float
  /// The q and v deltas of each block.
  public let blocks: ModuleList<DecoderLoRABlock>
  /// Where dropout masks come from.
  private var generator: RandomGenerator

  /// Fresh deltas (B zero, so training starts from the frozen decoder) for every block of
  /// `decoder`.
  public init(
    decoder: GPT2, rank: Int, alpha: Float, dropout: Float, generator: inout RandomGenerator
  ) {
    self.rank = rank
    self.alpha = alpha
    self.dropout = dropout
    let d = decoder.width
    blocks = ModuleList(
      (0..<decoder.depth).map { _ in
        DecoderLoRABlock(
          q: LoRALayer(inputs: d, outputs: d, rank: rank, generator: &generator),
          v: LoRALayer(inputs: d, outputs: d, rank: rank, generator: &generator))
      })
    self.generator = RandomGenerator(seed: generator.next())
    super.init()
    registerModule("blocks", blocks)
  }

  /// Only the linear layers.
  public var attachPoints: AttachPoints { .linear }

  /// Adds the q and v deltas to `c_attn`'s output (rows q, k, v); other layers pass through.
  public func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    guard site.role == .qkv, site.block < blocks.count else { return output }
    let block = blocks[site.block]
    let x =
      dropout > 0 && isTraining
      ? input.dropout(p: dropout, training: true, generator: &generator) : input
    let scale = alpha / Float(rank)
    let d = output.shape[output.rank - 1] / 3
    let zeros = Tensor.zeros(Array(output.shape.dropLast()) + [d])
    return output
      + Tensor.concat(
        [block.q.delta(x, scale: scale), zeros, block.v.delta(x, scale: scale)],
        axis: output.rank - 1)
  }
}

/// The q and v deltas of one decoder block.
public final class DecoderLoRABlock: Module {
  /// The delta on the query rows of `c_attn`.
  public let q: LoRALayer
  /// The delta on the value rows of `c_attn`.
  public let v: LoRALayer

  init(q: LoRALayer, v: LoRALayer) {
    self.q = q
    self.v = v
    super.init()
    registerModule("q", q)
    registerModule("v", v)
  }
}
