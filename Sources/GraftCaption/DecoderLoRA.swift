import Foundation

/// Which linear layers of each decoder block carry a LoRA delta.
public enum DecoderLoRATargets: String, CaseIterable, Codable, Sendable, OptionValue {
  /// q and v of `c_attn`, as PLLaVA puts LoRA on `q_proj` and `v_proj`.
  case qv
  /// Every linear layer of every block (`c_attn` whole, the attention's `c_proj`, the MLP's
  /// `c_fc` and `c_proj`), as PEFT's `target_modules="all-linear"`: the deltas reach the MLPs,
  /// which decide much of which word comes next.
  case all
}

/// LoRA on a GPT-2-layout decoder: on q and v of every `c_attn` (`targets: .qv`, as PLLaVA puts
/// it on `q_proj` and `v_proj`: `q += s·B_q·A_q·dropout(x)`, `v += s·B_v·A_v·dropout(x)`), or on
/// every linear layer (`.all`), with `s = alpha / rank`, applied through the decoder's
/// `BackboneHooks.linear` (the decoder's own weights never change). `alpha` can be changed after
/// training (PLLaVA's down-weighting).
///
/// Tensors: `blocks.<i>.q.lora_A` [r, D], `blocks.<i>.q.lora_B` [D, r], and the same for `v`;
/// with `.all`, `blocks.<i>.<layer>.lora_A`/`lora_B` for `c_attn` [r, D]/[3D, r], `attn_c_proj`,
/// `mlp_c_fc` and `mlp_c_proj`.
public final class DecoderLoRA: Module, BackboneHooks {
  /// Rank r.
  public let rank: Int
  /// Current scaling numerator: the delta is multiplied by `alpha / rank`.
  public var alpha: Float
  /// Dropout on the delta input while training.
  public let dropout: Float
  /// Which layers carry deltas.
  public let targets: DecoderLoRATargets
  /// The deltas of each block.
  public let blocks: ModuleList<DecoderLoRABlock>
  /// Where dropout masks come from.
  private var generator: RandomGenerator

  /// Fresh deltas (B zero, so training starts from the frozen decoder) for every block of
  /// `decoder`.
  public init(
    decoder: GPT2, rank: Int, alpha: Float, dropout: Float, targets: DecoderLoRATargets = .qv,
    generator: inout RandomGenerator
  ) {
    self.rank = rank
    self.alpha = alpha
    self.dropout = dropout
    self.targets = targets
    let d = decoder.width
    blocks = ModuleList(
      decoder.transformer.h.map { block in
        func delta(_ layer: Linear) -> LoRALayer {
          // Linear weights are [out, in].
          LoRALayer(
            inputs: layer.weight.shape[1], outputs: layer.weight.shape[0], rank: rank,
            generator: &generator)
        }
        switch targets {
        case .qv:
          return DecoderLoRABlock([
            (.qkv, "q", LoRALayer(inputs: d, outputs: d, rank: rank, generator: &generator)),
            (.qkv, "v", LoRALayer(inputs: d, outputs: d, rank: rank, generator: &generator)),
          ])
        case .all:
          return DecoderLoRABlock([
            (.qkv, "c_attn", delta(block.attn.cAttn)),
            (.attentionOut, "attn_c_proj", delta(block.attn.cProj)),
            (.mlpIn, "mlp_c_fc", delta(block.mlp.cFc)),
            (.mlpOut, "mlp_c_proj", delta(block.mlp.cProj)),
          ])
        }
      })
    self.generator = RandomGenerator(seed: generator.next())
    super.init()
    registerModule("blocks", blocks)
  }

  /// Only the linear layers.
  public var attachPoints: AttachPoints { .linear }

  /// Adds the deltas of `site`'s layer to its output; layers without one pass through.
  public func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    guard site.block < blocks.count else { return output }
    let block = blocks[site.block]
    let deltas = block.deltas(site.role)
    guard !deltas.isEmpty else { return output }
    let x =
      dropout > 0 && isTraining
      ? input.dropout(p: dropout, training: true, generator: &generator) : input
    let scale = alpha / Float(rank)
    switch targets {
    case .qv:
      // One delta each on the q and v rows of `c_attn`'s output (rows q, k, v).
      let d = output.shape[output.rank - 1] / 3
      let zeros = Tensor.zeros(Array(output.shape.dropLast()) + [d])
      return output
        + Tensor.concat(
          [deltas[0].delta(x, scale: scale), zeros, deltas[1].delta(x, scale: scale)],
          axis: output.rank - 1)
    case .all:
      return output + deltas[0].delta(x, scale: scale)
    }
  }
}

/// The deltas of one decoder block, each named (`q`, `v`, `c_attn`, …) and tied to the role of
/// the linear layer it adds to.
public final class DecoderLoRABlock: Module {
  /// The deltas in order, with the layer role each belongs to and its name.
  public let layers: [(role: LinearRole, name: String, layer: LoRALayer)]

  init(_ layers: [(role: LinearRole, name: String, layer: LoRALayer)]) {
    self.layers = layers
    super.init()
    for entry in layers { registerModule(entry.name, entry.layer) }
  }

  /// The deltas on the layer of `role`, in order.
  func deltas(_ role: LinearRole) -> [LoRALayer] {
    layers.filter { $0.role == role }.map(\.layer)
  }

  /// The delta named `name`, if any.
  public func layer(_ name: String) -> LoRALayer? {
    layers.first { $0.name == name }?.layer
  }
}
