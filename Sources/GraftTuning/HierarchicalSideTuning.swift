import Foundation

// HST: a small hierarchical (4-stage, strides 4/8/16/32) side network next to the frozen ViT,
// fed by learned meta tokens that ride through every block and by every block's patch features.

/// Hierarchical Side-Tuning (Lin et al., arXiv 2310.05393; AFeng-x/HST, `models/vit_hsn.py`,
/// `models/vit_custom_modules.py`).
///
/// **Backbone side.** One learned meta token set per block ([1, G, D], G = `meta_tokens`) is
/// prepended before the class token as block i's input (`beforeBlock`); after the block
/// (`afterBlock`) its processed rows are kept for the side network and stripped, so the rest of
/// the backbone (later blocks, final norm, pooling) sees its usual sequence and
/// no inserted rows remain. Block i's patch rows (after the backbone's own prefix tokens:
/// class, distillation, registers) are kept as block i's feature map on the patch grid.
///
/// **Side network.** `widths.count` stages (default 4, widths 32/48/64/72, cross-attention heads
/// 2/4/8/12). Stage 1 embeds the raw image: Conv3×3 s2 p1 (no bias) → BatchNorm → ReLU → Conv2×2
/// s2 → LayerNorm (stride 4); stage s > 1 embeds the previous stage's map: Conv3×3 s2 p1 → LN.
/// Each stage takes a consecutive group of backbone layers, one side block per layer. A stage's
/// Transformation Bridge (Linear D → width) maps each of its layers' patch features, bilinearly
/// resized (align_corners=False) to the stage's H×W, and that layer's meta tokens, followed by a
/// per-layer LayerNorm. A side block (pre-norm):
/// `x ← x + CrossAttn(q = LN(x), kv = [meta tokens, mean of the bridged features])`,
/// `x ← x + bridged features`, `x ← x + MLP(LN(x))` (ratio 4, GELU); the attention has separate q,
/// k, v Linears and an output projection. Each stage ends with a LayerNorm; `featureMaps(_:)`
/// returns the four B×C×H×W maps (strides 4/8/16/32), e.g. for a detection neck.
///
/// **Head.** Mean over the last stage's tokens → BatchNorm1d (no affine, eps 1e-6) → Linear.
///
/// **Layer split.** `depths` = `auto` gives stage s the layers ⌊s·L/S⌋ ..< ⌊(s+1)·L/S⌋ (S stages,
/// L blocks): 3/3/3/3 for L = 12 (the reference's `block_indices` 2, 5, 8, 11), 6 each for
/// L = 24, 0/1/0/1 for L = 2. The last stage always gets the last layer. A list of S counts
/// summing to L sets the split by hand. A stage without layers has no blocks and no bridge.
///
/// **Trainable.** Everything above (side network, meta tokens, bridges, per-layer norms, head) and
/// the LayerNorm affines inside the backbone's blocks (`blocks.*.norm*`). The gradient reaches
/// the frozen backbone (meta tokens, block norms), so HST saves parameters but not activation
/// memory. The BatchNorm running statistics are `stateBuffers`: saved in checkpoints, not trained.
///
/// **Init** (as the reference): Linears trunc-normal 0.02 with zero bias (head included); convs
/// N(0, √(2 / (k·k·out))) with zero bias; LayerNorms ones/zeros; BatchNorm weight 1, bias 0,
/// running mean 0, var 1; meta tokens Xavier-uniform over [1, G, D], U(±√(6 / ((G+1)·D))).
/// LayerNorm eps as the reference: 1e-6 in side blocks and stage ends, 1e-5 in the stem, the
/// stage embeddings and the per-layer meta norms.
///
/// **Tensors:** `hst.meta_tokens.<i>` [1, G, D]; `hst.meta_norms.<i>.weight/bias`;
/// `hst.stages.<s>.embed.{conv1.weight, bn.weight, bn.bias, conv2.weight, conv2.bias, norm.*}`
/// (stage 0), `hst.stages.<s>.embed.{proj.weight, proj.bias, norm.*}` (others);
/// `hst.stages.<s>.blocks.<j>.{norm1, attn.q, attn.k, attn.v, attn.proj, norm2, mlp.fc1,
/// mlp.fc2}.*`; `hst.stages.<s>.norm.*`; `hst.stages.<s>.bridge.weight/bias`; `hst.head.*`;
/// `hst.backbone.blocks.<i>.norm1/norm2.weight/bias`. State buffers:
/// `hst.stages.0.embed.bn.running_mean/running_var`, `hst.head_norm.running_mean/running_var`.
///
/// **Deviations from the official code.**
/// - The bridge is applied before the bilinear resize (on the h×w patch grid, then the C-wide map
///   is resized), not after: both are linear per pixel and the bilinear weights sum to 1, so the
///   result is the same up to rounding, at a fraction of the cost (the reference resizes D = 768
///   channels to 56×56 for stage 1).
/// - Any backbone depth (the layer split above); any number of stages (`widths`); the stem takes
///   the backbone's input channels; register and distillation tokens are skipped with the class
///   token when reading patch features.
/// - Graft's optimizer gives no weight decay to names containing "token", so the meta tokens are
///   not decayed (the reference decays them, at 5e-4 on VTAB).
/// - BatchNorm keeps no `num_batches_tracked`, and a training batch of one sample is normalised
///   with the running statistics (PyTorch raises).
/// - The backbone's final norm and pooling still run (the hooks cannot stop the forward pass);
///   their output is not used, so they get no gradient and change nothing.
public final class HierarchicalSideTuning: TuningMethod {
  /// HST's options. Recipe: AdamW lr 1e-3, wd 5e-4, cosine, warm-up 2 (HST's VTAB-1k recipe
  /// but for the rate: 10 warm-up epochs of 100, so 2 of the default 20; wd 5e-4).
  ///
  /// The paper's rate, 1e-2 (at batch 64), was unstable on Graft-1k's small tasks: validation
  /// top-1 fell to 0.30–0.38 around epoch 4 and the training loss rose before recovering, in
  /// FP32 and more often in BF16 (README, "HST and IDPT over three seeds"), and VTAB-1k's
  /// protocol chose rates 2.5–16× lower on all five Graft-1k tasks (MNIST and opencv-digits
  /// 6.4e-4, both at the grid's bottom after two widenings; fmnist-count 1.6e-3; digits and
  /// fmnist-rotation 4e-3). At 1e-3, 10 epochs, three seeds, the five-task test mean is 95.15
  /// (FP32) and 95.11 (BF16 backbone) against 89.41 and 87.41 at 1e-2 (`graft bench graft1k
  /// --methods hst --set optim.lr=… --set seed=S`).
  public struct Config: MethodConfig {
    /// Meta tokens per block (G).
    public var metaTokens = 1
    /// Side network stage widths (one per stage).
    public var widths = [32, 48, 64, 72]
    /// Cross-attention heads per stage.
    public var heads = [2, 4, 8, 12]
    /// Backbone layers per stage.
    public var depths = AutoOr<[Int]>.auto

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int("meta_tokens", \.metaTokens, in: 1...4096, "meta tokens per block (G)"),
      ConfigOption(
        "widths", \.widths, "side network stage widths (one per stage)",
        expectation: "a list of 1 to 16 positive integers ≤ 16384", valid: Config.positive),
      ConfigOption(
        "heads", \.heads, "cross-attention heads per stage",
        expectation: "a list of 1 to 16 positive integers ≤ 16384", valid: Config.positive),
      ConfigOption(
        "depths", \.depths,
        "backbone layers per stage: auto (even split, 3,3,3,3 for 12 blocks) or counts summing "
          + "to the depth"),
    ]
    /// AdamW, lr 1e-3, wd 5e-4, warm-up 2.
    public static let recipe = Recipe(
      .adamw, lr: 1e-3, weightDecay: 5e-4, warmupEpochs: 2, epochs: 20)

    /// A list of 1 to 16 positive integers, none beyond 16384 (sizes of stages: bounded so that
    /// a typo is an error, not an allocation that cannot succeed).
    static func positive(_ list: [Int]) -> Bool {
      (1...16).contains(list.count) && list.allSatisfy { (1...16384).contains($0) }
    }

    /// One head count per stage, each dividing its width.
    public func validate() throws {
      guard heads.count == widths.count else {
        throw ConfigError(
          "method.heads has \(heads.count) entries but method.widths has \(widths.count) stages")
      }
      for (w, h) in zip(widths, heads) where w % h != 0 {
        throw ConfigError("method.widths: width \(w) is not divisible by its \(h) heads")
      }
    }
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "hst",
    summary: "hierarchical side network on meta tokens and every block's features, block norms",
    config: Config.self, requires: [.tokenInsertion, .imageGrid]
  ) { backbone, classes, config, generator in
    try HierarchicalSideTuning(
      backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// Meta tokens per block, G.
  public let metaTokenCount: Int
  /// Width of each stage.
  public let widths: [Int]
  /// The backbone layers each stage consumes, one side block per layer.
  public let stageLayers: [Range<Int>]
  /// Each block's meta tokens, [1, G, D], named `0`…`L−1`.
  public let metaTokens: HSTParameterList
  /// Per-layer LayerNorm after the bridge on the meta tokens (width of the layer's stage).
  public let metaNorms: ModuleList<LayerNorm>
  /// The side network's stages.
  public let stages: ModuleList<HSTStage>
  /// BatchNorm1d on the pooled last-stage features (no affine, eps 1e-6).
  public let headNorm: BatchNorm

  /// Stage of each backbone layer.
  private let stageOfLayer: [Int]

  /// HST on `backbone`, which must be an image backbone (`ImageBackbone`).
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    guard let image = backbone as? any ImageBackbone else {
      throw ConfigError("hst needs an image backbone; \(backbone.familyName) is not one")
    }
    try config.validate()
    let g = config.metaTokens
    let widths = config.widths
    let heads = config.heads
    let depth = backbone.depth
    let stageCount = widths.count
    let counts: [Int]
    switch config.depths {
    case .auto:
      counts = (0..<stageCount).map { s in
        (s + 1) * depth / stageCount - s * depth / stageCount
      }
    case .value(let values):
      guard values.count == stageCount, values.allSatisfy({ $0 >= 0 }),
        values.reduce(0, +) == depth
      else {
        throw ConfigError(
          "method.depths = '\(values.optionText)' must be 'auto' or \(stageCount) "
            + "counts ≥ 0 summing to the backbone's \(depth) blocks")
      }
      counts = values
    }
    var ranges: [Range<Int>] = []
    var start = 0
    for n in counts {
      ranges.append(start..<(start + n))
      start += n
    }
    var stageOf: [Int] = []
    for (s, r) in ranges.enumerated() { stageOf += Array(repeating: s, count: r.count) }

    let d = backbone.width
    let bound = (6 / Float((g + 1) * d)).squareRoot()
    metaTokens = HSTParameterList(
      (0..<depth).map { _ in
        Tensor.rand([1, g, d], low: -bound, high: bound, generator: &generator)
      })
    metaNorms = ModuleList((0..<depth).map { LayerNorm(widths[stageOf[$0]], eps: 1e-5) })
    var stageList: [HSTStage] = []
    for s in 0..<stageCount {
      stageList.append(
        HSTStage(
          inChannels: s == 0 ? image.inputChannels : widths[s - 1], width: widths[s],
          heads: heads[s], blocks: ranges[s].count, backboneWidth: d, isFirst: s == 0,
          generator: &generator))
    }
    stages = ModuleList(stageList)
    headNorm = BatchNorm(widths[stageCount - 1], eps: 1e-6, affine: false)
    let head = TuningMethod.timmHead(widths[stageCount - 1], classes, generator: &generator)
    metaTokenCount = g
    self.widths = widths
    stageLayers = ranges
    stageOfLayer = stageOf
    super.init(
      name: "hst", prefix: "hst", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("meta_tokens", metaTokens)
    registerModule("meta_norms", metaNorms)
    registerModule("stages", stages)
    registerModule("head_norm", headNorm)
    finishSetUp()
  }

  /// The sequence before and after every block (blocks run fused).
  public override var attachPoints: AttachPoints { [.beforeBlock, .afterBlock] }

  /// The norms inside the backbone's blocks (a ViT's `norm1`, `norm2`).
  public override var unfrozenPatterns: [String] { backbone.parameterPatterns(.blockNorms) }

  // MARK: Hooks

  /// Prepends block `index`'s meta tokens before the class token.
  public override func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    let meta = metaTokens.tensors[index].broadcast(to: [x.shape[0], metaTokenCount, x.shape[2]])
    pass.recordInsertion(metaTokenCount, at: 0)
    return Tensor.concat([meta, x], axis: 1)
  }

  /// Keeps block `index`'s meta rows (bridged and normed) and patch features (bridged, on the
  /// patch grid) in the pass's taps, and strips the meta rows.
  public override func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    let (b, total) = (x.shape[0], x.shape[1])
    let g = metaTokenCount
    let skip = g + backbone.prefixTokens
    let stage = stages[stageOfLayer[index]]
    let bridge = stage.bridge!
    let meta = metaNorms[index](bridge(x.narrow(1, start: 0, length: g)))
    guard let grid = pass.embedded.layout.patchGrid, grid.area == total - skip else {
      preconditionFailure("HST: \(total - skip) patch rows do not fill the pass's patch grid")
    }
    let features = bridge(x.narrow(1, start: skip, length: total - skip))
    pass.taps[index] = [
      meta, features.transposed(1, 2).reshaped([b, stage.width, grid.height, grid.width]),
    ]
    pass.recordRemoval(g, at: 0)
    return x.narrow(1, start: g, length: total - g)
  }

  // MARK: Forward

  /// The head on the side network's last stage: mean over its tokens → BatchNorm1d → Linear.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    let last = sideNetwork(output).last!.tokens
    return head(headNorm(last.mean(axis: 1)))
  }

  /// The side network's stage outputs for `pixels` [B, C, H, W], each [B, width_s, H_s, W_s]
  /// (strides 4, 8, 16, 32 with four stages: 56, 28, 14, 7 for a 224 input), after the stage's
  /// final LayerNorm. Runs the backbone with the hooks; differentiable.
  public func featureMaps(_ pixels: Tensor) -> [Tensor] {
    sideNetwork(backboneOutput(pixels)).map { stage in
      let (b, c) = (stage.tokens.shape[0], stage.tokens.shape[2])
      return stage.tokens.transposed(1, 2).reshaped([b, c, stage.h, stage.w])
    }
  }

  /// Runs every stage on the pass's image and the taps its hooks kept; each stage's tokens
  /// [B, H·W, C] and H, W.
  private func sideNetwork(_ output: BackboneOutput) -> [(tokens: Tensor, h: Int, w: Int)] {
    let pixels = output.input
    var outputs: [(tokens: Tensor, h: Int, w: Int)] = []
    var previous: Tensor?
    for (s, stage) in stages.enumerated() {
      var (x, h, w) = stage.embed(previous ?? pixels)
      for (j, layer) in stageLayers[s].enumerated() {
        guard let taps = output.pass.taps[layer], taps.count == 2 else {
          preconditionFailure("HST: block \(layer) was not run with the method's hooks")
        }
        let meta = taps[0]
        var features = taps[1]
        if features.shape[2] != h || features.shape[3] != w {
          features = features.resized(to: (h, w), mode: .bilinear)
        }
        let tokens = features.reshaped([features.shape[0], stage.width, h * w]).transposed(1, 2)
        let kv = Tensor.concat([meta, tokens.mean(axis: 1, keepDims: true)], axis: 1)
        x = stage.blocks[j](x, kv: kv, features: tokens)
      }
      x = stage.norm(x)
      outputs.append((x, h, w))
      previous = x.transposed(1, 2).reshaped([x.shape[0], stage.width, h, w])
    }
    return outputs
  }
}

// MARK: - Side network modules

/// Parameters named `0`, `1`, … (PyTorch's `nn.ParameterList`).
public final class HSTParameterList: Module {
  /// The tensors, in order.
  public let tensors: [Tensor]

  /// A list registering each of `tensors` under its index.
  public init(_ tensors: [Tensor]) {
    self.tensors = tensors
    super.init()
    for (i, t) in tensors.enumerated() { registerParameter(String(i), t) }
  }
}

/// A square-kernel 2-D convolution, `weight` [out, in, k, k] and optional `bias` [out], with the
/// reference's init: N(0, √(2 / (k·k·out))) weights (fan-out), zero bias.
public final class HSTConv: Module, UnaryModule {
  /// Kernel, [out, in, k, k].
  public let weight: Tensor
  /// Bias, [out], if any.
  public let bias: Tensor?
  /// Step between windows (both axes).
  public let stride: Int
  /// Zero padding on each side (both axes).
  public let padding: Int

  /// A fresh convolution `inChannels → outChannels`.
  public init(
    _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int, padding: Int, bias: Bool,
    generator: inout RandomGenerator
  ) {
    let std = (2 / Float(kernel * kernel * outChannels)).squareRoot()
    weight = Tensor.randn(
      [outChannels, inChannels, kernel, kernel], std: std, generator: &generator)
    self.bias = bias ? Tensor.zeros([outChannels]) : nil
    self.stride = stride
    self.padding = padding
    super.init()
    registerParameter("weight", weight)
    if let b = self.bias { registerParameter("bias", b) }
  }

  /// The convolution of `x` [B, in, H, W].
  public func callAsFunction(_ x: Tensor) -> Tensor {
    x.conv2d(weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding))
  }
}

/// A stage's embedding: HST's stem on the image (`conv1` 3×3 s2 p1 without bias → `bn` → ReLU →
/// `conv2` 2×2 s2 → `norm`, stride 4) for the first stage, an overlapping patch embedding
/// (`proj` 3×3 s2 p1 → `norm`, stride 2) for the others. LayerNorm eps 1e-5.
public final class HSTEmbed: Module {
  /// Stem: first convolution (no bias).
  public let conv1: HSTConv?
  /// Stem: BatchNorm2d after `conv1`.
  public let bn: BatchNorm?
  /// Stem: second convolution, 2×2 stride 2.
  public let conv2: HSTConv?
  /// Later stages: the 3×3 stride-2 convolution.
  public let proj: HSTConv?
  /// LayerNorm over the channels of every position.
  public let norm: LayerNorm

  /// The stem (`stem`) or an overlapping patch embedding, `inChannels → width`.
  public init(stem: Bool, inChannels: Int, width: Int, generator: inout RandomGenerator) {
    if stem {
      conv1 = HSTConv(
        inChannels, width, kernel: 3, stride: 2, padding: 1, bias: false, generator: &generator)
      bn = BatchNorm(width)
      conv2 = HSTConv(
        width, width, kernel: 2, stride: 2, padding: 0, bias: true, generator: &generator)
      proj = nil
    } else {
      (conv1, bn, conv2) = (nil, nil, nil)
      proj = HSTConv(
        inChannels, width, kernel: 3, stride: 2, padding: 1, bias: true, generator: &generator)
    }
    norm = LayerNorm(width, eps: 1e-5)
    super.init()
    if let conv1, let bn, let conv2 {
      registerModule("conv1", conv1)
      registerModule("bn", bn)
      registerModule("conv2", conv2)
    }
    if let proj { registerModule("proj", proj) }
    registerModule("norm", norm)
  }

  /// Tokens [B, H·W, width] of the map `x` [B, in, H, W], with the output's H and W.
  public func callAsFunction(_ x: Tensor) -> (tokens: Tensor, h: Int, w: Int) {
    let map: Tensor
    if let conv1, let bn, let conv2 {
      map = conv2(bn(conv1(x)).relu())
    } else {
      map = proj!(x)
    }
    let (b, c, h, w) = (map.shape[0], map.shape[1], map.shape[2], map.shape[3])
    return (norm(map.reshaped([b, c, h * w]).transposed(1, 2)), h, w)
  }
}

/// Multi-head cross-attention of HST's side blocks: queries from the side tokens, keys and values
/// from a few context tokens (the layer's meta tokens and its global token), through separate
/// `q`, `k`, `v` Linears (with bias) and an output `proj`.
public final class HSTCrossAttention: Module {
  /// Query projection.
  public let q: Linear
  /// Key projection.
  public let k: Linear
  /// Value projection.
  public let v: Linear
  /// Output projection.
  public let proj: Linear
  /// Heads.
  public let heads: Int

  /// Attention of width `width` with `heads` heads, timm-initialised Linears.
  public init(width: Int, heads: Int, generator: inout RandomGenerator) {
    q = hstLinear(width, width, generator: &generator)
    k = hstLinear(width, width, generator: &generator)
    v = hstLinear(width, width, generator: &generator)
    proj = hstLinear(width, width, generator: &generator)
    self.heads = heads
    super.init()
    registerModule("q", q)
    registerModule("k", k)
    registerModule("v", v)
    registerModule("proj", proj)
  }

  /// `x` [B, N, C] attending to `context` [B, M, C] → [B, N, C].
  public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
    attend(queries: q(x), context: context)
  }

  /// The attention from queries already projected by `q` ([B, N, C]) to `context` [B, M, C].
  func attend(queries: Tensor, context: Tensor) -> Tensor {
    let (b, n, c) = (queries.shape[0], queries.shape[1], queries.shape[2])
    let m = context.shape[1]
    let dh = c / heads
    func split(_ t: Tensor, _ rows: Int) -> Tensor {
      t.reshaped([b, rows, heads, dh]).permuted([0, 2, 1, 3])
    }
    let out = Tensor.attention(
      q: split(queries, n), k: split(k(context), m), v: split(v(context), m))
    return proj(out.permuted([0, 2, 1, 3]).reshaped([b, n, c]))
  }
}

/// HST's side block (`M_Block`), pre-norm: cross-attention to the layer's context tokens, the
/// layer's bridged features added, then an MLP (ratio 4, GELU). LayerNorm eps 1e-6.
public final class HSTSideBlock: Module {
  /// Norm before the attention.
  public let norm1: LayerNorm
  /// Cross-attention to the context tokens.
  public let attn: HSTCrossAttention
  /// Norm before the MLP.
  public let norm2: LayerNorm
  /// First MLP layer, C → 4C.
  public let fc1: Linear
  /// Second MLP layer, 4C → C.
  public let fc2: Linear

  /// A block of width `width`.
  public init(width: Int, heads: Int, generator: inout RandomGenerator) {
    norm1 = LayerNorm(width, eps: 1e-6)
    attn = HSTCrossAttention(width: width, heads: heads, generator: &generator)
    norm2 = LayerNorm(width, eps: 1e-6)
    fc1 = hstLinear(width, 4 * width, generator: &generator)
    fc2 = hstLinear(4 * width, width, generator: &generator)
    super.init()
    registerModule("norm1", norm1)
    registerModule("attn", attn)
    registerModule("norm2", norm2)
    let mlp = Module()
    mlp.registerModule("fc1", fc1)
    mlp.registerModule("fc2", fc2)
    registerModule("mlp", mlp)
  }

  /// `x` [B, N, C] with the layer's `kv` context [B, M, C] and bridged `features` [B, N, C].
  ///
  /// On the fused ops (each norm with the linear layer after it, GELU with `fc2`), which keep
  /// the block's input and the MLP's pre-activation for backward rather than the normalised
  /// tokens and the GELU output: at stage 1 (stride 4) these are the largest tensors of a step.
  public func callAsFunction(_ x: Tensor, kv: Tensor, features: Tensor) -> Tensor {
    let queries = x.layerNormLinear(
      normWeight: norm1.weight, normBias: norm1.bias, eps: norm1.eps, weight: attn.q.weight,
      bias: attn.q.bias)
    let y = x + attn.attend(queries: queries, context: kv) + features
    let hidden = y.layerNormLinear(
      normWeight: norm2.weight, normBias: norm2.bias, eps: norm2.eps, weight: fc1.weight,
      bias: fc1.bias)
    return y + hidden.activationLinear(.gelu, weight: fc2.weight, bias: fc2.bias)
  }
}

/// One stage of HST's side network: its embedding, one side block per backbone layer it
/// consumes, a final LayerNorm (eps 1e-6) and its Transformation Bridge (D → width, absent when
/// the stage consumes no layer).
public final class HSTStage: Module {
  /// Stem or overlapping patch embedding.
  public let embed: HSTEmbed
  /// One block per consumed backbone layer.
  public let blocks: ModuleList<HSTSideBlock>
  /// LayerNorm at the stage's end.
  public let norm: LayerNorm
  /// The Transformation Bridge, D → width.
  public let bridge: Linear?
  /// Channels of the stage.
  public let width: Int

  /// A stage of `blocks` side blocks.
  public init(
    inChannels: Int, width: Int, heads: Int, blocks count: Int, backboneWidth: Int,
    isFirst: Bool, generator: inout RandomGenerator
  ) {
    self.width = width
    embed = HSTEmbed(
      stem: isFirst, inChannels: inChannels, width: width, generator: &generator)
    blocks = ModuleList(
      (0..<count).map { _ in HSTSideBlock(width: width, heads: heads, generator: &generator) })
    norm = LayerNorm(width, eps: 1e-6)
    bridge = count > 0 ? hstLinear(backboneWidth, width, generator: &generator) : nil
    super.init()
    registerModule("embed", embed)
    registerModule("blocks", blocks)
    registerModule("norm", norm)
    if let bridge { registerModule("bridge", bridge) }
  }
}

/// A Linear `inputs → outputs` with timm's init: trunc-normal 0.02 weight, zero bias.
func hstLinear(_ inputs: Int, _ outputs: Int, generator: inout RandomGenerator) -> Linear {
  Linear(
    weight: Tensor.truncatedNormal([outputs, inputs], std: 0.02, generator: &generator),
    bias: Tensor.zeros([outputs]))
}
