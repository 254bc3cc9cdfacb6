import Foundation

/// One low-rank delta `ΔW = (alpha / rank) · B·A` on an `in → out` map: `lora_A` [rank, in]
/// (PyTorch's Linear default, U(±1/√in)), `lora_B` [out, rank] (zeros, so training starts from
/// the frozen model).
public final class LoRALayer: Module {
  /// Down projection, [rank, in].
  public let loraA: Tensor
  /// Up projection, [out, rank].
  public let loraB: Tensor

  /// A fresh delta for an `inputs → outputs` map.
  public init(inputs: Int, outputs: Int, rank: Int, generator: inout RandomGenerator) {
    let bound = 1 / Float(inputs).squareRoot()
    loraA = Tensor.rand([rank, inputs], low: -bound, high: bound, generator: &generator)
    loraB = Tensor.zeros([outputs, rank])
    super.init()
    registerParameter("lora_A", loraA)
    registerParameter("lora_B", loraB)
  }

  /// `x·Aᵀ·Bᵀ·scale` for `x` [..., in].
  public func delta(_ x: Tensor, scale: Float) -> Tensor {
    x.matmul(loraA, transposeOther: true).matmul(loraB, transposeOther: true) * scale
  }
}

/// The LoRA deltas of one block, children named by target (`q`, `v`, `proj`, `fc1`, …).
public final class LoRABlock: Module {
  /// The deltas by target name.
  public private(set) var layers: [String: LoRALayer] = [:]

  /// Adds `layer` for `target`.
  func add(_ target: String, _ layer: LoRALayer) {
    registerModule(target, layer)
    layers[target] = layer
  }
}

/// LoRA (Hu et al., ICLR 2022): trainable low-rank deltas on chosen linear layers of every
/// block, `y = W·x + b + (alpha / rank)·B·A·dropout(x)`, and a new head.
///
/// Targets: `q`, `k`, `v` (row slices of the fused `attn.qkv`), `qkv` (all of it), `proj`
/// (`attn.proj`), `fc1`, `fc2` (`mlp.*`). Default `q,v` as the paper. `merge()` folds the deltas
/// into the backbone's weights for inference.
///
/// Tensors: `lora.blocks.<i>.<target>.lora_A` / `lora_B`, `lora.head.weight/bias`.
public final class LoRA: TuningMethod {
  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "lora", summary: "low-rank deltas on chosen linears of every block and a new head",
    options: [
      MethodOption("rank", "8", "rank r of each delta"),
      MethodOption("alpha", "8", "scaling: the delta is multiplied by alpha / rank"),
      MethodOption("dropout", "0.0", "dropout on the delta's input while training"),
      MethodOption(
        "targets", "q,v", "layers to adapt: q, k, v (slices of attn.qkv), qkv, proj, fc1, fc2"),
    ]
  ) { backbone, classes, options, generator in
    try LoRA(backbone: backbone, classes: classes, options: options, generator: &generator)
  }

  /// Every target name LoRA accepts.
  public static let knownTargets = ["q", "k", "v", "qkv", "proj", "fc1", "fc2"]

  /// Rank of the deltas.
  public let rank: Int
  /// `alpha / rank`.
  public let scale: Float
  /// Dropout on the delta input.
  public let dropout: Float
  /// Target names, in the order given.
  public let targets: [String]
  /// One set of deltas per block.
  public let blocks: ModuleList<LoRABlock>
  /// True once `merge()` has folded the deltas into the weights (the hook then adds nothing).
  public private(set) var isMerged = false

  /// LoRA on `backbone`.
  public init(
    backbone: VisionTransformer, classes: Int, options: MethodOptions,
    generator: inout RandomGenerator
  ) throws {
    rank = try options.int("rank", atLeast: 1)
    let alpha = try options.float("alpha")
    dropout = try options.float("dropout", in: 0...0.99)
    scale = alpha / Float(rank)
    var targets: [String] = []
    for t in options.list("targets") where !targets.contains(t) {
      guard Self.knownTargets.contains(t) else {
        throw TuningError(
          "method.targets: unknown target '\(t)' (known: \(Self.knownTargets.joined(separator: ", ")))"
        )
      }
      targets.append(t)
    }
    guard !targets.isEmpty else { throw TuningError("method.targets is empty") }
    if targets.contains("qkv") && targets.contains(where: { ["q", "k", "v"].contains($0) }) {
      throw TuningError("method.targets: 'qkv' overlaps 'q', 'k' and 'v'; give one or the other")
    }
    self.targets = targets
    let head = TuningMethod.timmHead(backbone.width, classes, generator: &generator)
    var blockList: [LoRABlock] = []
    for block in backbone.blocks {
      let b = LoRABlock()
      for t in targets {
        let (inputs, outputs) = Self.shape(of: t, in: block)
        b.add(t, LoRALayer(inputs: inputs, outputs: outputs, rank: rank, generator: &generator))
      }
      blockList.append(b)
    }
    blocks = ModuleList(blockList)
    super.init(
      name: "lora", prefix: "lora", backbone: backbone, classes: classes, head: head,
      options: options, generator: generator)
    registerModule("blocks", blocks)
    finishSetUp()
  }

  /// (in, out) of target `t` in `block`.
  private static func shape(of t: String, in block: ViTBlock) -> (Int, Int) {
    let d = block.attn.qkv.inFeatures
    switch t {
    case "q", "k", "v": return (d, d)
    case "qkv": return (d, block.attn.qkv.outFeatures)
    case "proj": return (block.attn.proj.inFeatures, block.attn.proj.outFeatures)
    case "fc1": return (block.mlp.fc1.inFeatures, block.mlp.fc1.outFeatures)
    default: return (block.mlp.fc2.inFeatures, block.mlp.fc2.outFeatures)
    }
  }

  /// Adds the deltas of the layer at `site`.
  public override func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    guard !isMerged else { return output }
    let layers = blocks[site.block].layers
    let x =
      dropout > 0 ? input.dropout(p: dropout, training: isTraining, generator: &generator) : input
    switch site.name {
    case "attn.qkv":
      if let l = layers["qkv"] { return output + l.delta(x, scale: scale) }
      let parts = ["q", "k", "v"].map { layers[$0] }
      guard parts.contains(where: { $0 != nil }) else { return output }
      // One [..., 3D] delta with zeros where a slice has no LoRA.
      let d = output.shape[output.rank - 1] / 3
      let lead = Array(output.shape.dropLast())
      let slices = parts.map { l in l?.delta(x, scale: scale) ?? Tensor.zeros(lead + [d]) }
      return output + Tensor.concat(slices, axis: output.rank - 1)
    case "attn.proj": return layers["proj"].map { output + $0.delta(x, scale: scale) } ?? output
    case "mlp.fc1": return layers["fc1"].map { output + $0.delta(x, scale: scale) } ?? output
    case "mlp.fc2": return layers["fc2"].map { output + $0.delta(x, scale: scale) } ?? output
    default: return output
    }
  }

  /// The weight deltas `scale·B·A` by backbone weight name (q, k, v slices placed in a full
  /// [3D, D] delta of `attn.qkv.weight`).
  public func weightDeltas() -> [String: Tensor] {
    withNoGrad {
      var out: [String: Tensor] = [:]
      for (i, block) in backbone.blocks.enumerated() {
        let layers = blocks[i].layers
        let p = "blocks.\(i)."
        func delta(_ l: LoRALayer) -> Tensor { l.loraB.matmul(l.loraA) * scale }
        if let l = layers["qkv"] { out[p + "attn.qkv.weight"] = delta(l) }
        let slices = ["q", "k", "v"].map { layers[$0] }
        if slices.contains(where: { $0 != nil }) {
          let d = block.attn.qkv.inFeatures
          out[p + "attn.qkv.weight"] = Tensor.concat(
            slices.map { $0.map(delta) ?? Tensor.zeros([d, d]) }, axis: 0)
        }
        if let l = layers["proj"] { out[p + "attn.proj.weight"] = delta(l) }
        if let l = layers["fc1"] { out[p + "mlp.fc1.weight"] = delta(l) }
        if let l = layers["fc2"] { out[p + "mlp.fc2.weight"] = delta(l) }
      }
      return out
    }
  }

  /// Folds the deltas into the backbone's weights in place (for inference: the forward pass
  /// then costs what the frozen model costs). The backbone's weights change; call once.
  public func merge() {
    precondition(!isMerged, "LoRA deltas are already merged")
    let deltas = weightDeltas()
    withNoGrad {
      for (name, delta) in deltas {
        guard let w = backbone.parameter(named: name) else { continue }
        w.assign(w + delta)
      }
    }
    isMerged = true
  }
}
