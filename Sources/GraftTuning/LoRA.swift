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
/// Targets, by the role of the layer they adapt (`LinearRole`, which the backbone maps to its own
/// layers): `q`, `k`, `v` (row slices of the fused qkv, `attn.qkv` in a ViT), `qkv` (all of it),
/// `proj` (the attention output, `attn.proj`), `fc1`, `fc2` (the MLP, `mlp.*`). Default `q,v` as
/// the paper. A target whose layer the backbone lacks is an error. `merge()` folds the deltas
/// into the backbone's weights for inference.
///
/// Tensors: `lora.blocks.<i>.<target>.lora_A` / `lora_B`, `lora.head.weight/bias`.
public final class LoRA: TuningMethod {
  /// LoRA's options. Recipe: AdamW lr 5e-3, wd 0.01, cosine, warm-up 1 (PEFT's ViT
  /// image-classification example; 1e-3 underfits small data in a short run: 63% against 78%
  /// test on Graft-1k mnist in 10 epochs).
  public struct Config: MethodConfig {
    /// Rank r of each delta.
    public var rank = 8
    /// Scaling: the delta is multiplied by alpha / rank.
    public var alpha: Float = 8
    /// Dropout on the delta's input while training.
    public var dropout: Float = 0
    /// Layers to adapt.
    public var targets = ["q", "v"]

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int("rank", \.rank, in: 1...4096, "rank r of each delta"),
      ConfigOption("alpha", \.alpha, "scaling: the delta is multiplied by alpha / rank"),
      .float("dropout", \.dropout, in: 0...0.99, "dropout on the delta's input while training"),
      ConfigOption(
        "targets", \.targets,
        "layers to adapt: q, k, v (slices of the fused qkv), qkv, proj, fc1, fc2"),
    ]
    /// AdamW, lr 5e-3, wd 0.01, warm-up 1.
    public static let recipe = Recipe(
      .adamw, lr: 5e-3, weightDecay: 0.01, warmupEpochs: 1, epochs: 10)

    /// Known, non-empty, non-overlapping targets.
    public func validate() throws {
      for t in targets where !LoRA.knownTargets.contains(t) {
        throw ConfigError(
          "method.targets: unknown target '\(t)' (known: \(LoRA.knownTargets.joined(separator: ", ")))"
        )
      }
      guard !targets.isEmpty else { throw ConfigError("method.targets is empty") }
      if let twice = targets.firstRepeated {
        throw ConfigError("method.targets: '\(twice)' is given twice")
      }
      if targets.contains("qkv") && targets.contains(where: { ["q", "k", "v"].contains($0) }) {
        throw ConfigError("method.targets: 'qkv' overlaps 'q', 'k' and 'v'; give one or the other")
      }
    }
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "lora", summary: "low-rank deltas on chosen linears of every block and a new head",
    config: Config.self, requires: .blockInternals
  ) { backbone, classes, config, generator in
    try LoRA(backbone: backbone, classes: classes, config: config, generator: &generator)
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

  /// LoRA on `backbone`; a target whose layer the backbone does not have throws.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    try config.validate()
    rank = config.rank
    dropout = config.dropout
    scale = config.alpha / Float(rank)
    targets = config.targets
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    var blockList: [LoRABlock] = []
    for index in 0..<backbone.depth {
      let b = LoRABlock()
      for t in targets {
        let site = LinearSite(block: index, role: Self.role(of: t))
        guard let layer = backbone.linearLayer(at: site) else {
          throw ConfigError(
            "lora: the \(backbone.familyName) backbone has no \(site.role.rawValue) layer in "
              + "block \(index) for target '\(t)'")
        }
        var (inputs, outputs) = (layer.inFeatures, layer.outFeatures)
        if ["q", "k", "v"].contains(t) {
          guard outputs == 3 * inputs else {
            throw ConfigError(
              "lora: target '\(t)' needs a fused qkv layer D → 3·D, block \(index) has "
                + "\(inputs) → \(outputs)")
          }
          outputs = inputs
        }
        b.add(t, LoRALayer(inputs: inputs, outputs: outputs, rank: rank, generator: &generator))
      }
      blockList.append(b)
    }
    blocks = ModuleList(blockList)
    super.init(
      name: "lora", prefix: "lora", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("blocks", blocks)
    finishSetUp()
  }

  /// The role of the layer target `t` adapts.
  static func role(of t: String) -> LinearRole {
    switch t {
    case "q", "k", "v", "qkv": .qkv
    case "proj": .attentionOut
    case "fc1": .mlpIn
    default: .mlpOut
    }
  }

  /// The linear layers of every block.
  public override var attachPoints: AttachPoints { .linear }

  /// Every block's adapted layers.
  public override var linearSites: [LinearSite] {
    let roles = Set(targets.map(Self.role(of:)))
    return (0..<backbone.depth).flatMap { i in
      LinearRole.allCases.filter(roles.contains).map { LinearSite(block: i, role: $0) }
    }
  }

  /// Whether the deltas on the fused qkv layer go into the block's fused op (no dropout to
  /// draw, not merged) instead of through `linear`.
  private var fusesQKV: Bool { dropout == 0 && !isMerged }

  /// The sites `linear` changes: every target's but the fused qkv's (see `lowRankDeltas`).
  public override var hookedLinearSites: Set<LinearSite>? {
    Set(linearSites.filter { !(fusesQKV && $0.role == .qkv) })
  }

  /// The q, k, v (or whole qkv) deltas of block `site.block`, for the block's fused norm+qkv op:
  /// the same function as `linear` with no dropout, computed on the normalised rows the op
  /// builds anyway, so the attention half keeps its fused path (and `train.recompute`).
  public override func lowRankDeltas(_ site: LinearSite) -> [LowRankDelta] {
    guard site.role == .qkv, fusesQKV else { return [] }
    let layers = blocks[site.block].layers
    let width = backbone.width
    if let l = layers["qkv"] {
      return [LowRankDelta(down: l.loraA, up: l.loraB, scale: scale, columnOffset: 0)]
    }
    return ["q", "k", "v"].enumerated().compactMap { part, name in
      layers[name].map {
        LowRankDelta(down: $0.loraA, up: $0.loraB, scale: scale, columnOffset: part * width)
      }
    }
  }

  /// Adds the deltas of the layer at `site`.
  public override func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    guard !isMerged else { return output }
    let layers = blocks[site.block].layers
    let x =
      dropout > 0
      ? input.sampleDropout(p: dropout, training: isTraining, generator: &generator) : input
    switch site.role {
    case .qkv:
      if let l = layers["qkv"] { return output + l.delta(x, scale: scale) }
      let parts = ["q", "k", "v"].map { layers[$0] }
      guard parts.contains(where: { $0 != nil }) else { return output }
      // One [..., 3D] delta with zeros where a slice has no LoRA.
      let d = output.shape[output.rank - 1] / 3
      let lead = Array(output.shape.dropLast())
      let slices = parts.map { l in l?.delta(x, scale: scale) ?? Tensor.zeros(lead + [d]) }
      return output + Tensor.concat(slices, axis: output.rank - 1)
    case .attentionOut:
      return layers["proj"].map { output + $0.delta(x, scale: scale) } ?? output
    case .mlpIn: return layers["fc1"].map { output + $0.delta(x, scale: scale) } ?? output
    case .mlpOut: return layers["fc2"].map { output + $0.delta(x, scale: scale) } ?? output
    }
  }

  /// The weight deltas `scale·B·A` by backbone weight name (`blocks.3.attn.qkv.weight` in a
  /// ViT; the q, k, v slices placed in one full [3D, D] delta of the fused qkv weight).
  public func weightDeltas() -> [String: Tensor] {
    withNoGrad {
      var out: [String: Tensor] = [:]
      for i in 0..<backbone.depth {
        let layers = blocks[i].layers
        func delta(_ l: LoRALayer) -> Tensor { l.loraB.matmul(l.loraA) * scale }
        func path(_ role: LinearRole) -> String {
          backbone.linearPath(at: LinearSite(block: i, role: role))! + ".weight"
        }
        if let l = layers["qkv"] { out[path(.qkv)] = delta(l) }
        let slices = ["q", "k", "v"].map { layers[$0] }
        if let d = slices.compactMap({ $0?.loraA.shape[1] }).first {
          out[path(.qkv)] = Tensor.concat(
            slices.map { $0.map(delta) ?? Tensor.zeros([d, d]) }, axis: 0)
        }
        if let l = layers["proj"] { out[path(.attentionOut)] = delta(l) }
        if let l = layers["fc1"] { out[path(.mlpIn)] = delta(l) }
        if let l = layers["fc2"] { out[path(.mlpOut)] = delta(l) }
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
