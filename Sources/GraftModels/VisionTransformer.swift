import Foundation

// timm's `VisionTransformer` with its exact parameter names, as a `SequenceBackbone`: the attach
// points of `BackboneHooks` (the token sequence before the blocks, before and after each block,
// each linear layer and residual branch inside a block, the final features). A frozen backbone
// run under `withNoGrad` records nothing.

// MARK: - Layers

/// The patch projection (timm's `patch_embed.proj`, a strided `Conv2d`): `weight`
/// [D, C, ph, pw] and an optional `bias` [D].
public final class PatchProjection: Module {
  /// Kernel, [D, C, ph, pw].
  public let weight: Tensor
  /// Bias, [D], absent in the CLIP towers.
  public let bias: Tensor?

  /// The projection of `c` (PyTorch's Conv2d default init: U(±1/√fan_in) for weight and bias),
  /// its tensors from `source` (scoped at `patch_embed.proj`).
  init(config c: ViTConfig, source: ParameterSource) {
    let bound = 1 / Float(c.inChans * c.patchSize.area).squareRoot()
    weight = source.take(
      "weight", [c.embedDim, c.inChans, c.patchSize.height, c.patchSize.width],
      .uniform(bound: bound))
    bias = c.patchBias ? source.take("bias", [c.embedDim], .uniform(bound: bound)) : nil
    super.init()
    source.registerEntries(into: self)
  }
}

/// timm's `PatchEmbed`: non-overlapping patches projected to D (a strided convolution, run as one
/// GEMM per image over its gathered patches).
public final class PatchEmbed: Module {
  /// The projection (`patch_embed.proj`).
  public let proj: PatchProjection
  /// Patch height and width.
  public let patchSize: Size2D

  /// The patch embedding of `c`, its tensors from `source` (scoped at `patch_embed`).
  init(config c: ViTConfig, source: ParameterSource) {
    patchSize = c.patchSize
    proj = source.child("proj") { PatchProjection(config: c, source: $0) }
    super.init()
    source.registerEntries(into: self)
  }

  /// Patch tokens [B, gh·gw, D] of `pixels` [B, C, H, W] (H and W multiples of the patch), with
  /// patches in row-major grid order and each patch flattened channel-major (c, y, x) as
  /// `Conv2d` reads it.
  public func callAsFunction(_ pixels: Tensor) -> (tokens: Tensor, grid: Size2D) {
    let (b, h, w) = (pixels.shape[0], pixels.shape[2], pixels.shape[3])
    let (ph, pw) = (patchSize.height, patchSize.width)
    let grid = Size2D(h / ph, w / pw)
    let d = proj.weight.shape[0]
    // The convolution's backward keeps the pixels (which the caller holds anyway), not a
    // patch-major copy of them.
    let y = pixels.conv2d(weight: proj.weight, bias: proj.bias, stride: (ph, pw))
    return (y.reshaped([b, d, grid.area]).permuted([0, 2, 1]), grid)
  }
}

/// LayerScale (`ls1`, `ls2`): a learned per-channel scale `gamma` [D].
public final class LayerScale: Module {
  /// The scale, [D].
  public let gamma: Tensor

  /// A scale of `width` channels starting at `initial`, from `source` (scoped at `ls1`/`ls2`).
  init(width: Int, initial: Float, source: ParameterSource) {
    gamma = source.take("gamma", [width], .constant(initial))
    super.init()
    source.registerEntries(into: self)
  }

  /// `x · gamma` over the last axis.
  public func callAsFunction(_ x: Tensor) -> Tensor { x * gamma }
}

/// timm's `Attention`: a fused `qkv` projection, multi-head scaled dot-product attention, and
/// the output projection `proj`.
public final class ViTAttention: Module {
  /// q, k, v projection, D → 3·D.
  public let qkv: Linear
  /// Output projection, D → D.
  public let proj: Linear
  /// Number of heads.
  public let heads: Int

  /// An attention of width `width` with `c`'s heads and qkv bias, its tensors from `source`
  /// (scoped at `attn`).
  init(width: Int, config c: ViTConfig, source: ParameterSource) {
    qkv = source.linear("qkv", width, 3 * width, bias: c.qkvBias)
    proj = source.linear("proj", width, width)
    heads = c.numHeads
    super.init()
    source.registerEntries(into: self)
  }
}

/// What a block recomputes in backward instead of keeping from the forward pass
/// (`train.recompute`). Gradients are the same either way (the recomputation repeats the forward
/// pass's own ops); what changes is memory against time. Per block of width D at N tokens a
/// training step keeps, without recomputation, the tokens before each norm (2·N·D floats), the
/// fused qkv projection (3·N·D) and the MLP's hidden pre-activation (4·N·D, at timm's MLP ratio
/// 4); `qkv` rebuilds the first in backward (one more N·D·3D GEMM), `mlp` the second (one more
/// N·D·4D GEMM), `all` both, leaving 2·N·D floats a block.
public enum BlockRecompute: String, CaseIterable, Codable, Sendable, OptionValue {
  /// Keep everything backward reads (fastest).
  case none
  /// Rebuild the qkv projection from the block's input.
  case qkv
  /// Rebuild the MLP's hidden pre-activation from the tokens entering the MLP.
  case mlp
  /// Both.
  case all

  /// Whether the qkv projection is rebuilt.
  public var rebuildsQKV: Bool { self == .qkv || self == .all }
  /// Whether the MLP's hidden pre-activation is rebuilt.
  public var rebuildsMLP: Bool { self == .mlp || self == .all }
}

extension Module {
  /// Sets what every ViT block inside this module (itself included) recomputes in backward.
  public func setBlockRecompute(_ recompute: BlockRecompute) {
    for (_, module) in namedModules() { (module as? ViTBlock)?.recompute = recompute }
  }
}

/// A pre-norm transformer block (timm's `Block`):
/// `x + ls1(attn(norm1(x)))`, then `x + ls2(mlp(norm2(x)))`.
public final class ViTBlock: Module, UnaryModule {
  /// Norm before attention.
  public let norm1: LayerNorm
  /// Multi-head self-attention.
  public let attn: ViTAttention
  /// LayerScale of the attention branch, if the model has LayerScale.
  public let ls1: LayerScale?
  /// Norm before the MLP.
  public let norm2: LayerNorm
  /// The MLP (`fc1`, activation, `fc2`).
  public let mlp: ViTMLP
  /// LayerScale of the MLP branch, if the model has LayerScale.
  public let ls2: LayerScale?
  /// Position of the block in the model.
  public let index: Int

  /// Block `index` of `c`, its tensors from `source` (scoped at `blocks.<index>`).
  convenience init(index: Int, config c: ViTConfig, source: ParameterSource) {
    self.init(index: index, width: c.embedDim, hidden: c.mlpHidden, config: c, source: source)
  }

  /// A block of width `width` and MLP hidden width `hidden`, with `c`'s heads, qkv bias,
  /// LayerScale, norm epsilon and activation (LST's side blocks are such blocks at D / r).
  init(index: Int, width: Int, hidden: Int, config c: ViTConfig, source: ParameterSource) {
    self.index = index
    norm1 = source.layerNorm("norm1", width, eps: c.normEps)
    attn = source.child("attn") { ViTAttention(width: width, config: c, source: $0) }
    ls1 = c.initValues.map { v in
      source.child("ls1") { LayerScale(width: width, initial: v, source: $0) }
    }
    norm2 = source.layerNorm("norm2", width, eps: c.normEps)
    let activation: Activation =
      switch c.activation {
      case .gelu: .gelu
      case .quickGELU: .quickGELU
      case .geluTanh: .geluTanh
      }
    mlp = source.child("mlp") {
      ViTMLP(width: width, hidden: hidden, activation: activation, source: $0)
    }
    ls2 = c.initValues.map { v in
      source.child("ls2") { LayerScale(width: width, initial: v, source: $0) }
    }
    super.init()
    source.registerEntries(into: self)
  }

  /// Whether attention keeps its probabilities for backward instead of recomputing them (see
  /// `Tensor.attention(qkv:heads:scale:keepProbabilities:)`): faster backward, more memory.
  public var keepsAttentionProbabilities = false

  /// What backward recomputes instead of keeping, in a half of the block that runs fused (hooks
  /// on a half's linear layers run it unfused, keeping every intermediate they see).
  public var recompute = BlockRecompute.none

  /// Whether the block's attention products run in BF16: its `qkv` matrix runs in BF16
  /// (`storeInBF16`, set for a frozen backbone with `backbone.precision=bf16`), as under
  /// PyTorch's autocast, or in INT8 (inference) on a CPU that also has native BF16.
  public var runsInBF16: Bool {
    let qkv = attn.qkv.weight
    return qkv.productsRunInBF16 || (qkv.productsRunInInt8 && BF16Support.isAvailable)
  }

  /// The block on `x` [B, N, D], calling the pass's inner hooks.
  ///
  /// Each half of the block (attention, MLP) runs on fused ops unless the pass's hooks change
  /// one of its linear layers. The fused ops keep less for backward: each norm with the linear
  /// layer after it (the normalised tokens are rebuilt in backward), attention with its output
  /// projection (the attention result is rebuilt), the MLP's activation with `fc2` (the hidden
  /// activation is rebuilt from `fc1`'s output), and whatever `recompute` names. The
  /// residual-branch hooks see the same tensors either way. In a half whose linear layers are
  /// hooked every intermediate the hooks see is a tensor of its own, as the hooks may keep or
  /// change it.
  public func callAsFunction(_ x: Tensor, pass: ForwardPass?) -> Tensor {
    let fusedActivation = FusedActivation(rawValue: mlp.act.kind)
    func hooked(_ roles: LinearRole...) -> Bool {
      guard let pass else { return false }
      return roles.contains { pass.hooks(LinearSite(block: index, role: $0)) }
    }
    func linear(_ layer: Linear, _ role: LinearRole, _ input: Tensor) -> Tensor {
      let y = layer(input)
      return pass?.linear(LinearSite(block: index, role: role), input: input, output: y) ?? y
    }
    // Attention branch.
    var a: Tensor
    if hooked(.qkv, .attentionOut) {
      let qkv = linear(attn.qkv, .qkv, norm1(x))
      let mixed = Tensor.attention(
        qkv: qkv, heads: attn.heads, keepProbabilities: keepsAttentionProbabilities,
        productsInBF16: runsInBF16)
      a = linear(attn.proj, .attentionOut, mixed)
    } else {
      let deltas = pass?.lowRankDeltas(LinearSite(block: index, role: .qkv)) ?? []
      a = Tensor.attentionProjection(
        qkv: normedProduct(x, norm1, attn.qkv, deltas: deltas), heads: attn.heads,
        weight: attn.proj.weight, bias: attn.proj.bias,
        keepProbabilities: keepsAttentionProbabilities, productsInBF16: runsInBF16,
        rebuildQKV: recompute.rebuildsQKV ? rebuild(x, norm1, attn.qkv, deltas: deltas) : nil)
    }
    if let ls1 { a = ls1(a) }
    if let pass { a = pass.attentionBranch(index, input: x, output: a) }
    let x1 = x + a
    // MLP branch.
    var m: Tensor
    if let fusedActivation, !hooked(.mlpIn, .mlpOut) {
      m = normedProduct(x1, norm2, mlp.fc1).activationLinear(
        fusedActivation, weight: mlp.fc2.weight, bias: mlp.fc2.bias,
        rebuild: recompute.rebuildsMLP ? rebuild(x1, norm2, mlp.fc1) : nil)
    } else {
      let hidden = mlp.act(linear(mlp.fc1, .mlpIn, norm2(x1)))
      m = linear(mlp.fc2, .mlpOut, hidden)
    }
    if let ls2 { m = ls2(m) }
    if let pass { m = pass.mlpBranch(index, input: x1, output: m) }
    return x1 + m
  }

  /// The block's linear layer of `role`.
  public func linear(_ role: LinearRole) -> Linear {
    switch role {
    case .qkv: attn.qkv
    case .attentionOut: attn.proj
    case .mlpIn: mlp.fc1
    case .mlpOut: mlp.fc2
    }
  }

  /// The path of the layer of `role` inside a block (`attn.qkv`, `attn.proj`, `mlp.fc1`,
  /// `mlp.fc2`), as timm and Point-MAE name it.
  public static func path(of role: LinearRole) -> String {
    switch role {
    case .qkv: "attn.qkv"
    case .attentionOut: "attn.proj"
    case .mlpIn: "mlp.fc1"
    case .mlpOut: "mlp.fc2"
    }
  }

  /// The block on `x` without hooks (fused when it can be).
  public func callAsFunction(_ x: Tensor) -> Tensor { self(x, pass: nil) }

  /// `layer(norm(x))` as one fused op.
  private func normedProduct(
    _ x: Tensor, _ norm: LayerNorm, _ layer: Linear, deltas: [LowRankDelta] = []
  ) -> Tensor {
    x.layerNormLinear(
      normWeight: norm.weight, normBias: norm.bias, eps: norm.eps, weight: layer.weight,
      bias: layer.bias, deltas: deltas)
  }

  /// What rebuilds `layer(norm(x))` in backward: the same op on the same tensors. It reads
  /// the tensors themselves, not the modules, so it rebuilds what the forward pass computed.
  private func rebuild(
    _ x: Tensor, _ norm: LayerNorm, _ layer: Linear, deltas: [LowRankDelta] = []
  ) -> InputRebuild {
    let (eps, gamma, beta, weight, bias) = (
      norm.eps, norm.weight, norm.bias, layer.weight, layer.bias
    )
    return InputRebuild(sources: [x]) {
      x.layerNormLinear(
        normWeight: gamma, normBias: beta, eps: eps, weight: weight, bias: bias, deltas: deltas)
    }
  }
}

/// timm's `Mlp` over given layers: `fc1`, the activation, `fc2`.
public final class ViTMLP: Module, UnaryModule {
  /// First layer, D → hidden.
  public let fc1: Linear
  /// The activation (no parameters).
  public let act: Activation
  /// Second layer, hidden → D.
  public let fc2: Linear

  /// An MLP `width → hidden → width` with `activation`, its tensors from `source` (scoped at
  /// `mlp`).
  init(width: Int, hidden: Int, activation: Activation, source: ParameterSource) {
    fc1 = source.linear("fc1", width, hidden)
    act = source.child("act") { _ in activation }
    fc2 = source.linear("fc2", hidden, width)
    super.init()
    source.registerEntries(into: self)
  }

  /// `fc2(act(fc1(x)))`; backward rebuilds the activation rather than keeping it.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    guard let activation = FusedActivation(rawValue: act.kind) else { return fc2(act(fc1(x))) }
    return fc1(x).activationLinear(activation, weight: fc2.weight, bias: fc2.bias)
  }
}

// MARK: - The model

/// timm's `VisionTransformer` (and DeiT's distilled variant): patch embedding, class/register
/// tokens, absolute position embedding, pre-norm blocks, final norm, pooling and head.
///
/// State-dict names and order are timm's (`cls_token`, `reg_token`, `pos_embed`,
/// `patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, …, `head.bias`), so
/// `loadStateDict(timm_model.state_dict())` works as is and name patterns such as
/// `blocks.*.norm*.*` select what they select in timm.
public final class VisionTransformer: Module, ImageBackbone {
  /// The configuration the model was built with.
  public let config: ViTConfig
  /// Class token, [1, 1, D].
  public let clsToken: Tensor?
  /// Register tokens, [1, R, D].
  public let regToken: Tensor?
  /// Absolute position embedding, [1, L, D] laid out for `config.gridSize`.
  public let posEmbed: Tensor
  /// DeiT's distillation token, [1, 1, D].
  public let distToken: Tensor?
  /// Patch embedding.
  public let patchEmbed: PatchEmbed
  /// CLIP's norm after the embedding.
  public let normPre: LayerNorm?
  /// The transformer blocks.
  public let blocks: ModuleList<ViTBlock>
  /// Final norm before pooling.
  public let norm: LayerNorm?
  /// Final norm after pooling (average-pooled models).
  public let fcNorm: LayerNorm?
  /// Classifier, D → classes.
  public let head: Linear?
  /// DeiT's distillation classifier.
  public let headDist: Linear?

  /// A model with fresh parameters initialised as timm does (trunc-normal 0.02 linear weights
  /// and position embedding, zero biases, class and register tokens N(0, 1e-6), LayerScale at
  /// `initValues`, PyTorch's Conv2d default for the patch projection).
  public convenience init(config: ViTConfig, generator: inout RandomGenerator) throws {
    try config.validate()
    let source = ParameterSource(generator: generator)
    self.init(checked: config, source: source)
    generator = source.generator
  }

  /// A model whose parameters are `weights`' tensors themselves (no copy; LayerNorm vectors
  /// excepted), named as timm's state dict. Every name and shape is checked: anything missing,
  /// unexpected or of the wrong shape throws `StateDictError` (with `source` as its origin), and
  /// an impossible configuration throws `ViTConfigError`.
  public convenience init(config: ViTConfig, weights: [String: Tensor], source: String? = nil)
    throws
  {
    try config.validate()
    try Self.checkSizes(config, against: weights)
    let parameters = ParameterSource(weights: weights)
    self.init(checked: config, source: parameters)
    if let error = parameters.stateDictError(source: source) { throw error }
  }

  /// Compares the size `config` describes with the checkpoint's before anything is built. A
  /// missing or mis-shaped tensor stands in as zeros while the loader collects every mismatch
  /// for its report, so settings far larger than the weights (a depth of 10⁹ in `config.json`)
  /// would otherwise allocate the difference; up to 2²⁸ parameters (1 GiB) beyond the file are
  /// allowed, so moderate mismatches still get the full list of names and shapes.
  static func checkSizes(_ config: ViTConfig, against weights: [String: Tensor]) throws {
    let elements = weights.values.reduce(0.0) { $0 + Double($1.count) }
    guard config.parameterCount <= 2 * elements + Double(1 << 28) else {
      throw ViTConfigError(
        "the settings (depth \(config.depth), embed_dim \(config.embedDim), num_classes "
          + "\(config.numClasses)) describe \(Int(config.parameterCount)) parameters, but the "
          + "weights hold \(Int(elements)): the sizes do not match the checkpoint")
    }
  }

  /// The state-dict names and shapes of a model of `config`, in timm's order: recorded while
  /// building it on a source that holds no values.
  static func recordedShapes(_ config: ViTConfig) -> [(name: String, shape: [Int])] {
    let recorder = ParameterSource.recording()
    _ = VisionTransformer(checked: config, source: recorder)
    return recorder.requested
  }

  private init(checked c: ViTConfig, source: ParameterSource) {
    config = c
    let d = c.embedDim
    clsToken = c.classToken ? source.take("cls_token", [1, 1, d], .normal(std: 1e-6)) : nil
    regToken =
      c.regTokens > 0 ? source.take("reg_token", [1, c.regTokens, d], .normal(std: 1e-6)) : nil
    posEmbed = source.take("pos_embed", [1, c.posEmbedLength, d], .truncatedNormal(std: 0.02))
    distToken =
      c.distilled ? source.take("dist_token", [1, 1, d], .truncatedNormal(std: 0.02)) : nil
    patchEmbed = source.child("patch_embed") { PatchEmbed(config: c, source: $0) }
    normPre = c.preNorm ? source.layerNorm("norm_pre", d, eps: c.normEps) : nil
    blocks = source.child("blocks") { scope in
      ModuleList(
        (0..<c.depth).map { i in
          ViTBlock(index: i, config: c, source: scope.scoped(String(i)))
        })
    }
    norm = c.finalNorm && !c.usesFcNorm ? source.layerNorm("norm", d, eps: c.normEps) : nil
    fcNorm = c.finalNorm && c.usesFcNorm ? source.layerNorm("fc_norm", d, eps: c.normEps) : nil
    head = c.numClasses > 0 ? source.linear("head", d, c.numClasses) : nil
    headDist = c.numClasses > 0 && c.distilled ? source.linear("head_dist", d, c.numClasses) : nil
    super.init()
    // The constructor asked in timm's state-dict order: own parameters first, then children.
    source.registerEntries(into: self)
  }

  // MARK: SequenceBackbone

  /// Token width D.
  public var width: Int { config.embedDim }
  /// D: the pooled features are one token wide.
  public var featureWidth: Int { config.embedDim }
  /// Number of blocks.
  public var depth: Int { config.depth }
  /// Class, distillation and register tokens.
  public var prefixTokens: Int { config.prefixTokens }
  /// C·ph·pw: the values one patch is embedded from.
  public var embeddingFanIn: Int { config.inChans * config.patchSize.area }
  /// Everything: rows may be inserted, blocks call their inner hooks, the input is an image on a
  /// patch grid, and side blocks can be pruned from the blocks (`reducedBlocks`).
  public var capabilities: BackboneCapabilities {
    [.tokenInsertion, .blockInternals, .imageGrid, .reducibleBlocks]
  }
  /// `ViT`.
  public var familyName: String { "ViT" }
  /// Input channels C.
  public var inputChannels: Int { config.inChans }
  /// Patch height and width.
  public var patchSize: Size2D { config.patchSize }
  /// `config.imgSize`.
  public var imageSize: Size2D { config.imgSize }

  /// Patch embedding, prefix tokens, position embedding and `norm_pre`, as timm's
  /// `patch_embed` → `_pos_embed` → `norm_pre`. The input must be `config.imgSize`, or with
  /// `dynamicImgSize` any size divisible by the patch (the position embedding is then resampled
  /// bicubically with antialiasing, as timm).
  public func embed(_ pixels: Tensor) -> EmbeddedTokens {
    let c = config
    precondition(
      pixels.rank == 4 && pixels.shape[1] == c.inChans,
      "VisionTransformer: input \(pixels.shape) must be [B, \(c.inChans), H, W]")
    let size = Size2D(pixels.shape[2], pixels.shape[3])
    if c.dynamicImgSize {
      precondition(
        size.height % c.patchSize.height == 0 && size.width % c.patchSize.width == 0
          && size.height > 0 && size.width > 0,
        "VisionTransformer: input \(size) is not a multiple of the patch \(c.patchSize)")
    } else {
      precondition(
        size == c.imgSize,
        "VisionTransformer: input \(size) differs from img_size \(c.imgSize) "
          + "(dynamic_img_size is off)")
    }
    let b = pixels.shape[0]
    let (patches, grid) = patchEmbed(pixels)
    let pos = positionEmbedding(for: grid)
    var prefix: [Tensor] = []
    if let clsToken { prefix.append(clsToken.broadcast(to: [b, 1, c.embedDim])) }
    if let distToken { prefix.append(distToken.broadcast(to: [b, 1, c.embedDim])) }
    if let regToken { prefix.append(regToken.broadcast(to: [b, c.regTokens, c.embedDim])) }
    var x: Tensor
    if c.noEmbedClass {
      x = patches + pos
      if !prefix.isEmpty { x = Tensor.concat(prefix + [x], axis: 1) }
    } else {
      x = prefix.isEmpty ? patches : Tensor.concat(prefix + [patches], axis: 1)
      x = x + pos
    }
    if let normPre { x = normPre(x) }
    return EmbeddedTokens(
      tokens: x, layout: .grid(frames: 1, rows: grid.height, columns: grid.width))
  }

  /// The position embedding for a `grid` of patches, [1, L, D]: `posEmbed` itself at the
  /// configured grid, resampled otherwise.
  public func positionEmbedding(for grid: Size2D) -> Tensor {
    if grid == config.gridSize { return posEmbed }
    return Self.resamplePositionEmbedding(
      posEmbed, from: config.gridSize, to: grid,
      prefixTokens: config.noEmbedClass ? 0 : config.prefixTokens)
  }

  /// Block `index`.
  public func block(_ index: Int, _ x: Tensor, pass: ForwardPass?) -> Tensor {
    blocks[index](x, pass: pass)
  }

  /// timm's layer at `site`: `attn.qkv`, `attn.proj`, `mlp.fc1` or `mlp.fc2` of the block.
  public func linearLayer(at site: LinearSite) -> Linear? {
    guard blocks.indices.contains(site.block) else { return nil }
    return blocks[site.block].linear(site.role)
  }

  /// `blocks.<i>.attn.qkv`, `blocks.<i>.attn.proj`, `blocks.<i>.mlp.fc1`, `blocks.<i>.mlp.fc2`.
  public func linearPath(at site: LinearSite) -> String? {
    guard blocks.indices.contains(site.block) else { return nil }
    return "blocks.\(site.block).\(ViTBlock.path(of: site.role))"
  }

  /// timm's names: every `*.bias`; the LayerNorms `norm_pre`, `blocks.*.norm1/2`, `norm`,
  /// `fc_norm`; the classifiers `head` and `head_dist`.
  public func parameterPatterns(_ role: ParameterRole) -> [String] {
    switch role {
    case .biases: ["*.bias"]
    case .norms: ["norm_pre.*", "blocks.*.norm1.*", "blocks.*.norm2.*", "norm.*", "fc_norm.*"]
    case .blockNorms: ["blocks.*.norm*"]
    case .prefixTokens: ["cls_token", "reg_token", "dist_token"]
    case .classifier: ["head.*", "head_dist.*"]
    }
  }

  /// `norm`, or identity for models that norm after pooling.
  public func finalNorm(_ x: Tensor) -> Tensor { norm.map { $0(x) } ?? x }

  /// timm's `pool` then `fc_norm`: the class token, or the mean/max over the tokens after the
  /// first `prefixTokens` (all of them with `poolIncludePrefix`); DeiT's distilled model averages
  /// the class and distillation tokens.
  public func pool(_ tokens: Tensor, prefixTokens: Int) -> Tensor {
    func row(_ i: Int) -> Tensor { tokens.narrow(1, start: i, length: 1).squeezed(1) }
    var x: Tensor
    if config.distilled {
      x = (row(0) + row(1)) * 0.5
    } else {
      switch config.globalPool {
      case .token:
        x = row(0)
      case .none:
        x = tokens
      case .avg, .avgmax, .max:
        let skip = config.poolIncludePrefix ? 0 : prefixTokens
        let rest = tokens.narrow(1, start: skip, length: tokens.shape[1] - skip)
        switch config.globalPool {
        case .avg: x = rest.mean(axis: 1)
        case .max: x = rest.max(axis: 1)
        default: x = (rest.max(axis: 1) + rest.mean(axis: 1)) * 0.5
        }
      }
    }
    if let fcNorm { x = fcNorm(x) }
    return x
  }

  // MARK: Convenience forwards

  /// Pre-logits features [B, D] of `pixels` [B, C, H, W] (timm's
  /// `forward_head(forward_features(x), pre_logits=True)`).
  public func features(_ pixels: Tensor) -> Tensor {
    forward(pixels, hiddenStates: false).features
  }

  /// All tokens after the final norm, [B, N, D] (timm's `forward_features`).
  public func forwardTokens(_ pixels: Tensor) -> Tensor {
    forward(pixels, hiddenStates: false).tokens
  }

  /// Logits [B, classes] of a forward pass's output: the head on the features (for DeiT's
  /// distilled model, the mean of `head` on the class token and `head_dist` on the distillation
  /// token); the features themselves when the model has no head.
  public func logits(_ output: BackboneOutput) -> Tensor {
    guard let head else { return output.features }
    if let headDist {
      let t = output.tokens
      let cls = t.narrow(1, start: 0, length: 1).squeezed(1)
      let dist = t.narrow(1, start: 1, length: 1).squeezed(1)
      return (head(cls) + headDist(dist)) * 0.5
    }
    return head(output.features)
  }

  /// Logits [B, classes] of `pixels` (timm's `model(x)`), or the features without a head.
  public func callAsFunction(_ pixels: Tensor) -> Tensor {
    logits(forward(pixels, hiddenStates: false))
  }

  // MARK: Position embedding resampling

  /// timm's `resample_abs_pos_embed`: the grid part of `posEmbed` [1, prefix + old.area, D]
  /// resampled from `old` to `new` with antialiased bicubic interpolation (PyTorch's
  /// `F.interpolate(mode='bicubic', antialias=True, align_corners=False)`), the leading
  /// `prefixTokens` rows kept as they are. Differentiable with respect to `posEmbed`.
  public static func resamplePositionEmbedding(
    _ posEmbed: Tensor, from old: Size2D, to new: Size2D, prefixTokens: Int
  ) -> Tensor {
    precondition(
      posEmbed.rank == 3 && posEmbed.shape[0] == 1
        && posEmbed.shape[1] == prefixTokens + old.area,
      "resamplePositionEmbedding: \(posEmbed.shape) is not [1, \(prefixTokens) + \(old), D]")
    let d = posEmbed.shape[2]
    let grid = posEmbed.narrow(1, start: prefixTokens, length: old.area)
    let rows = antialiasedBicubicWeights(input: old.height, output: new.height)
    let cols = antialiasedBicubicWeights(input: old.width, output: new.width)
    // out[i, j] = Σ_a Σ_b rows[i, a] · cols[j, b] · grid[a, b]: rows first over [oh, ow·D], then
    // columns per output row as one batched product.
    let byRows = rows.matmul(grid.reshaped([old.height, old.width * d]))
      .reshaped([new.height, old.width, d])
    let resampled = cols.matmul(byRows).reshaped([1, new.area, d])
    guard prefixTokens > 0 else { return resampled }
    return Tensor.concat([posEmbed.narrow(1, start: 0, length: prefixTokens), resampled], axis: 1)
  }

  /// The [output, input] matrix of PyTorch's antialiased bicubic resampling of one axis
  /// (`_upsample_bicubic2d_aa`, align_corners false): Keys' cubic with a = −0.5, stretched by
  /// the scale when shrinking, over the taps inside the input, normalised to sum to 1.
  static func antialiasedBicubicWeights(input: Int, output: Int) -> Tensor {
    let m = Tensor(shape: [output, input])
    let scale = Double(input) / Double(output)
    let support = scale >= 1 ? 2 * scale : 2
    let invScale = scale >= 1 ? 1 / scale : 1
    func filter(_ x: Double) -> Double {
      let a = -0.5
      let x = Swift.abs(x)
      if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
      if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
      return 0
    }
    for i in 0..<output {
      let center = scale * (Double(i) + 0.5)
      let lo = Swift.max(Int(center - support + 0.5), 0)
      let hi = Swift.min(Int(center + support + 0.5), input)
      var w: [Double] = []
      for j in lo..<Swift.max(lo, hi) { w.append(filter((Double(j) - center + 0.5) * invScale)) }
      let total = w.reduce(0, +)
      for (k, v) in w.enumerated() {
        m.pointer[i * input + lo + k] = Float(total != 0 ? v / total : v)
      }
    }
    return m
  }
}
