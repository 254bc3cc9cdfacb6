import Foundation

/// `graft export --to onnx`: the tuned model as an ONNX graph (opset 17), written through the
/// ONNX protobuf schema (onnx/onnx.proto's field numbers) with no Python.
///
/// It takes what `TimmExport` folds (linear, full, bitfit, ln-tune, lora: the merged weights),
/// the adapter (AdaptFormer's ReLU bottleneck beside each MLP) and VPT (shallow and deep: the
/// prompts, projected if the run projects them, inserted after the class token as `VPT.swift`
/// does), on a plain timm ViT: class token, learned position embedding over all tokens, no
/// register tokens, LayerScale or pre-norm, exact GELU, class-token pooling, a fixed input size.
/// It also writes Moment Probing (`mp`: the first-order head beside the MHC³ second-order head on
/// the final patch tokens, `MomentProbing.swift`) and `mp+` (PSRP's scale and shift of every MLP
/// branch as well), and the two side networks that read every hidden state: Ladder Side-Tuning
/// (`lst`: the narrow side blocks, ladders and gates of `LadderSideTuning.swift`, the gates'
/// sigmoids evaluated at export) and UniPT (`unipt`: the ReLU/L1 interactions and the layer
/// softmax of `UniPT.swift`), and Hierarchical Side-Tuning (`hst`: meta tokens before every
/// block, the trained block norms, and the four-stage side network of
/// `HierarchicalSideTuning.swift` with its BatchNorms at their running statistics), and IDPT on a
/// ViT (`idpt`: the prompt generator's EdgeConvs on an exact kNN graph, its BatchNorms at their
/// running statistics, and the 256-wide head of `IDPT.swift`), and P2P (`p2p`: the clouds drawn
/// as the image inside the graph, `ExportONNXP2P.swift`). Input `pixels` [batch, 3, H, W]
/// (preprocessed; `points` [batch, N, 3] for P2P), output `logits` [batch, classes]. Runs on the
/// point backbone take every method that runs there (`ExportONNXPointMAE.swift`).
public enum ONNXExport {
  /// Methods whose graphs are written.
  public static let methods: Set<String> = TimmExport.mergeable.union([
    "vpt-shallow", "vpt-deep", "adapter", "mp", "mp+", "lst", "unipt", "hst", "idpt", "p2p",
  ])

  /// What the graph needs of a Moment Probing run besides its tensors (`mp.*` in the state).
  struct MomentProbingShape {
    /// Groups the projection is split into.
    var heads: Int
    /// Width of each group.
    var groupWidth: Int
    /// The group pairs, one covariance channel each.
    var pairs: [(Int, Int)]
    /// Whether each covariance is L2-normalised along its first matrix axis.
    var normalizes: Bool
    /// Whether every block's MLP branch has a PSRP (`mp+`).
    var plus: Bool
  }

  /// What the graph needs of an IDPT run besides its tensors (`idpt.*` in the state).
  struct InstancePromptShape {
    /// The block the prompt is inserted before.
    var layer: Int
    /// Neighbours per token in the generator's graphs.
    var k: Int
    /// What the head reads.
    var head: IDPT.HeadInput
    /// The ε of each BatchNorm, by its name in the state.
    var eps: [String: Float]
  }

  /// What the graph needs of a P2P run besides its tensors (`p2p.enc.*` in the state): how the
  /// clouds become the image the backbone reads (`P2P.render` at the evaluation view).
  struct PointRenderShape {
    /// Points per cloud.
    var points: Int
    /// Neighbours in the geometry encoder's kNN graph.
    var k: Int
    /// The evaluation view's rotation, row-major 3×3 (`P2P.View.matrix`).
    var view: [Float]
    /// Side of the square the object is drawn in, and the canvas.
    var objSize: Int
    var canvas: Size2D
    /// The backbone input's normalisation.
    var mean: [Float]
    var std: [Float]
    /// The encoder's GroupNorm: groups and ε; the BasicBlock's BatchNorms' ε.
    var groups: Int
    var groupEps: Float
    var blockEps: (Float, Float)
  }

  /// A side network beside the backbone, read from every hidden state.
  enum SideNetwork {
    /// LST: the side layers with their gate values μ = sigmoid(α / T), the merge gate's μ,
    /// the side blocks' head count and width, the final side norm's ε.
    case ladder(
      gates: [(layer: Int, mu: Float)], mergeMu: Float, heads: Int, headDim: Int, normEps: Float)
    /// UniPT: the LayerNorms' ε (its Down, projection layers).
    case unipt(normEps: Float)
    /// HST: meta tokens per block; per stage its width, heads and backbone layers; the ε of
    /// the stem's BatchNorm and of the head's.
    case hierarchical(
      metaTokens: Int, stages: [(width: Int, heads: Int, layers: Range<Int>)], stemEps: Float,
      headEps: Float)
  }

  /// Writes the run in `run` as the ONNX model `out`.
  public static func export(run: URL, to out: URL) throws {
    let loaded = try AdapterCheckpoint.load(run, precision: .fp32)
    if let pointMAE = loaded.method.backbone as? PointMAE {
      return try exportPointMAE(loaded, model: pointMAE, run: run, to: out)
    }
    guard methods.contains(loaded.config.method) else {
      throw FileError(
        path: run.path,
        message: "--to onnx does not write \(loaded.config.method) graphs yet (it writes "
          + methods.sorted().joined(separator: ", ") + ")")
    }
    var state: [String: Tensor]
    var prompts: [Tensor] = []
    var adapterScale: Float?
    var moments: MomentProbingShape?
    var side: SideNetwork?
    var instancePrompt: InstancePromptShape?
    var pointRender: PointRenderShape?
    let method = loaded.method
    if method is VisualPromptTuning || method is AdaptFormer || method is MomentProbing
      || method is LadderSideTuning || method is UniPT || method is HierarchicalSideTuning
      || method is IDPT || method is P2P,
      let vit = method.backbone as? VisionTransformer
    {
      // The frozen backbone, the new head, and the method's own tensors.
      state = [:]
      let classifier = vit.parameterPatterns(.classifier)
      for (name, t) in vit.namedParameters()
      where !classifier.contains(where: { NamePattern.matches(name, $0) }) {
        state[name] = t
      }
      state["head.weight"] = method.head.weight
      if let b = method.head.bias { state["head.bias"] = b }
      let extras = tokenMethodExtras(method)
      state.merge(extras.state) { $1 }
      (prompts, adapterScale, instancePrompt) = (
        extras.prompts, extras.adapterScale, extras.instancePrompt
      )
      let sides = sideMethodExtras(method, heads: vit.config.numHeads)
      state.merge(sides.state) { $1 }
      (moments, side) = (sides.moments, sides.side)
      if let p2p = method as? P2P {
        // The encoder and colouring, with the BasicBlock's running statistics; the trained
        // norms and class token are the backbone's own tensors above.
        for (name, t) in p2p.namedParameters(prefix: "p2p") where name.hasPrefix("p2p.enc.") {
          state[name] = t
        }
        let block = p2p.encoder.block
        for (name, bn) in [
          ("p2p.enc.img_block.0.bn1", block.bn1), ("p2p.enc.img_block.0.bn2", block.bn2),
        ] {
          state[name + ".running_mean"] = bn.runningMean
          state[name + ".running_var"] = bn.runningVar
        }
        pointRender = PointRenderShape(
          points: p2p.points, k: p2p.encoder.k, view: p2p.evaluationView.matrix,
          objSize: p2p.objSize, canvas: p2p.canvas, mean: p2p.normalisation.mean,
          std: p2p.normalisation.std, groups: p2p.encoder.graphNorm.groups,
          groupEps: p2p.encoder.graphNorm.eps, blockEps: (block.bn1.eps, block.bn2.eps))
      }
      if let hst = method as? HierarchicalSideTuning {
        // The side network's tensors, and the BatchNorms' running statistics (state buffers);
        // the trained block norms are the backbone's own tensors above.
        for (name, t) in hst.namedParameters(prefix: "hst")
        where !name.hasPrefix("hst.head.") && !name.hasPrefix("hst.backbone.") {
          state[name] = t
        }
        for (name, bn) in [
          ("hst.stages.0.embed.bn", hst.stages[0].embed.bn!), ("hst.head_norm", hst.headNorm),
        ] {
          state[name + ".running_mean"] = bn.runningMean
          state[name + ".running_var"] = bn.runningVar
        }
        side = .hierarchical(
          metaTokens: hst.metaTokenCount,
          stages: hst.stages.enumerated().map { s, stage in
            (stage.width, stage.blocks.first?.attn.heads ?? 1, hst.stageLayers[s])
          }, stemEps: hst.stages[0].embed.bn!.eps, headEps: hst.headNorm.eps)
      }
    } else {
      state = try TimmExport.mergedState(loaded, run: run.path)
    }
    guard let vit = loaded.method.backbone as? VisionTransformer else {
      throw FileError(path: run.path, message: "the run's backbone is not a Vision Transformer")
    }
    let c = vit.config
    var unsupported: [String] = []
    if !c.classToken || c.regTokens > 0 || c.noEmbedClass { unsupported.append("prefix tokens") }
    if c.preNorm || !c.finalNorm || c.fcNorm == true { unsupported.append("norm placement") }
    if c.initValues != nil { unsupported.append("LayerScale") }
    if c.activation != .gelu { unsupported.append("activation \(c.activation.rawValue)") }
    if c.globalPool != .token { unsupported.append("global_pool \(c.globalPool.rawValue)") }
    if c.dynamicImgSize || c.inChans != 3 { unsupported.append("input") }
    guard unsupported.isEmpty else {
      throw FileError(
        path: run.path,
        message:
          "--to onnx does not yet write this ViT variant (\(unsupported.joined(separator: ", "))); "
          + "not written yet")
    }
    let bytes = try vitModel(
      state: state, config: c, classes: loaded.config.numClasses, prompts: prompts,
      adapterScale: adapterScale, moments: moments, side: side, instancePrompt: instancePrompt,
      pointRender: pointRender)
    try AtomicFile.write(Data(bytes), to: out)
  }

  /// The tokens LST or UniPT hand the pooling, from `hidden` (the sequence entering block 0, then
  /// every block's output) and the final normed tokens `normed`; LST's side blocks use LayerNorm
  /// ε `blockEps`. HST is not a token side network: it is refused here.
  static func sideNetworkTokens(
    _ g: ONNXGraph, _ side: SideNetwork, hidden: [String], normed n: String, blockEps: Float
  ) throws -> String {
    /// `μ·a + (1 − μ)·b`.
    func mix(_ a: String, _ b: String, _ mu: Float) -> String {
      g.node("Add", [g.node("Mul", [g.node("Sub", [a, b]), g.floats([mu])]), b])
    }
    switch side {
    case .ladder(let gates, let mergeMu, let sideHeads, let sideHeadDim, let normEps):
      // LadderSideTuning.mergedTokens: ladders from block i's output into side block i.
      var h = try dense(g, hidden[0], "lst.side_first_downsample")
      for (i, mu) in gates {
        h = mix(h, try dense(g, hidden[i + 1], "lst.side_downsamples.\(i)"), mu)
        h = try encoderBlock(
          g, h, "lst.side_blocks.\(i).", heads: sideHeads, headDim: sideHeadDim, eps: blockEps)
      }
      h = try layerNorm(g, h, "lst.final_side_layer_norm", eps: normEps)
      return mix(try dense(g, h, "lst.side_final_upsample"), n, mergeMu)
    case .unipt(let eps):
      return try uniptTokens(
        g, states: Array(hidden.dropLast()), final: n, eps: eps,
        dense: { try dense(g, $0, $1) }, layerNorm: { try layerNorm(g, $0, $1, eps: $2) })
    case .hierarchical:
      throw FileError(path: "hst", message: "HST's side network reads an image patch grid")
    }
  }

  /// What the graph of Moment Probing (its second-order head; PSRP for mp+), LST or UniPT (their
  /// side networks) needs besides the backbone and head; `heads` is the backbone's head count
  /// (LST's side blocks keep it). Empty for other methods.
  static func sideMethodExtras(_ method: TuningMethod, heads: Int) -> (
    state: [String: Tensor], moments: MomentProbingShape?, side: SideNetwork?
  ) {
    var state: [String: Tensor] = [:]
    var moments: MomentProbingShape?
    var side: SideNetwork?
    if let mp = method as? MomentProbing {
      // mp.proj/ln/conv1/conv2/classifier2 and, for mp+, mp.blocks.<i>.psrp.*.
      let own = ["proj", "ln", "conv1", "conv2", "classifier2", "blocks"].map { "mp.\($0)." }
      for (name, t) in mp.namedParameters(prefix: "mp")
      where own.contains(where: { name.hasPrefix($0) }) {
        state[name] = t
      }
      moments = MomentProbingShape(
        heads: mp.heads, groupWidth: mp.projectionWidth / mp.heads, pairs: mp.pairs,
        normalizes: mp.normalizesCovariances, plus: mp.plus)
    }
    if let lst = method as? LadderSideTuning {
      for (name, t) in lst.namedParameters(prefix: "lst") where !name.hasPrefix("lst.head.") {
        state[name] = t
      }
      let mu = { (alpha: Tensor) in withNoGrad { lst.gate(alpha).item } }
      side = .ladder(
        gates: lst.sideLayers.map { ($0, mu(lst.sideGateParams[$0]!)) },
        mergeMu: mu(lst.sideGateParamsMergeLast), heads: heads,
        headDim: lst.sideWidth / heads, normEps: lst.finalSideLayerNorm.eps)
    }
    if let unipt = method as? UniPT {
      for (name, t) in unipt.namedParameters(prefix: "unipt")
      where !name.hasPrefix("unipt.head.") {
        state[name] = t
      }
      side = .unipt(normEps: unipt.projectionLayer.layers.compactMap { $0 as? LayerNorm }[0].eps)
    }
    return (state, moments, side)
  }

  /// What the graph of a method that inserts tokens or adapts blocks needs besides the
  /// backbone and head: VPT's prompts (projected when the run projects them; one [1, p, D] per
  /// layer that has its own), the adapter's tensors and scale, IDPT's generator, prompt position
  /// and head with its BatchNorms' running statistics. Empty for other methods.
  static func tokenMethodExtras(_ method: TuningMethod) -> (
    state: [String: Tensor], prompts: [Tensor], adapterScale: Float?,
    instancePrompt: InstancePromptShape?
  ) {
    var state: [String: Tensor] = [:]
    var prompts: [Tensor] = []
    var adapterScale: Float?
    var instancePrompt: InstancePromptShape?
    if let adapter = method as? AdaptFormer {
      // adapter.blocks.<i>.down/up.weight/bias, as in the run folder.
      for (name, t) in adapter.namedParameters(prefix: "adapter") where name.contains(".blocks.") {
        state[name] = t
      }
      adapterScale = adapter.scale
    }
    if let idpt = method as? IDPT {
      // The generator, prompt position and head, with the BatchNorms' running statistics;
      // the trained class token is the backbone's own tensor.
      for (name, t) in idpt.namedParameters(prefix: "idpt")
      where !name.hasPrefix("idpt.head.") && !name.hasPrefix("idpt.backbone.") {
        state[name] = t
      }
      state["idpt.prompt_pos"] = idpt.promptPos
      var norms: [(String, BatchNorm)] = idpt.edgeConvs.enumerated().map {
        ("idpt.generator.conv\($0 + 1).1", $1.norm)
      }
      norms += [
        ("idpt.generator.conv5.1", idpt.fuse.norm), ("idpt.head_bn1", idpt.headBN1),
        ("idpt.head_bn2", idpt.headBN2),
      ]
      var eps: [String: Float] = [:]
      for (name, bn) in norms {
        state[name + ".running_mean"] = bn.runningMean
        state[name + ".running_var"] = bn.runningVar
        eps[name] = bn.eps
      }
      instancePrompt = InstancePromptShape(
        layer: idpt.promptLayer, k: idpt.k, head: idpt.headInput, eps: eps)
    }
    if let vpt = method as? VisualPromptTuning {
      withNoGrad {
        let (p, w) = (vpt.promptLength, vpt.promptEmbeddings.shape[2])
        var raw = [vpt.promptEmbeddings.reshaped([p, w])]
        if let deep = vpt.deepPromptEmbeddings {
          for i in 0..<deep.shape[0] {
            raw.append(deep.narrow(0, start: i, length: 1).reshaped([p, w]))
          }
        }
        prompts = raw.map { r in (vpt.promptProj.map { $0(r) } ?? r).unsqueezed(0) }
      }
    }
    return (state, prompts, adapterScale, instancePrompt)
  }

  /// The ONNX model bytes of a plain ViT with the timm state dict `state`; `prompts` (VPT)
  /// are inserted after the class token before block 0 and, when there is one per block,
  /// replace the previous block's prompts before each later block. `moments`: the logits are
  /// Moment Probing's (and `mp+` recalibrates every MLP branch).
  static func vitModel(
    state: [String: Tensor], config c: ViTConfig, classes: Int, prompts: [Tensor] = [],
    adapterScale: Float? = nil, moments: MomentProbingShape? = nil, side: SideNetwork? = nil,
    instancePrompt: InstancePromptShape? = nil, pointRender: PointRenderShape? = nil
  ) throws -> [UInt8] {
    let g = ONNXGraph(state: state)
    // The graph's input: the preprocessed image, or for P2P the clouds it draws the image of.
    let pixels = try pointRender.map { try p2pPixels(g, $0) } ?? "pixels"
    let modelInput =
      pointRender.map { ("points", ["batch", "\($0.points)", "3"]) }
      ?? ("pixels", ["batch", "3", "\(c.imgSize.height)", "\(c.imgSize.width)"])
    let d = c.embedDim
    let heads = c.numHeads
    let hd = d / heads
    // Patches: Conv with stride = kernel, then [B, D, h, w] → [B, h·w, D].
    var x = g.node(
      "Conv",
      [pixels, try g.weight("patch_embed.proj.weight"), try g.weight("patch_embed.proj.bias")],
      [
        .ints("kernel_shape", [c.patchSize.height, c.patchSize.width]),
        .ints("strides", [c.patchSize.height, c.patchSize.width]),
      ])
    x = g.node("Reshape", [x, g.ints([0, d, -1])])
    x = g.node("Transpose", [x], [.ints("perm", [0, 2, 1])])
    // The class token broadcast to the batch: Expand to [B, 1, D] with B from the input.
    let batch = g.node(
      "Slice", [g.node("Shape", [pixels]), g.ints([0]), g.ints([1])])
    let shape = g.node("Concat", [batch, g.ints([1, d])], [.int("axis", 0)])
    let cls = g.node("Expand", [try g.weight("cls_token"), shape])
    x = g.node("Concat", [cls, x], [.int("axis", 1)])
    x = g.node("Add", [x, try g.weight("pos_embed")])
    /// `x` with rows 1..<1+drop replaced by prompt layer `layer`, broadcast to the batch.
    func insertPrompts(_ x: String, layer: Int, drop: Int) -> String {
      ONNXExport.insertPrompts(g, x, prompts, layer: layer, drop: drop, batch: batch, width: d)
    }
    if !prompts.isEmpty { x = insertPrompts(x, layer: 0, drop: 0) }
    func dense(_ input: String, _ full: String) throws -> String {
      try ONNXExport.dense(g, input, full)
    }
    func layerNorm(_ input: String, _ full: String, eps: Float) throws -> String {
      try ONNXExport.layerNorm(g, input, full, eps: eps)
    }
    func block(
      _ x: String, _ p: String, heads: Int, headDim: Int,
      mlpBranch: (_ branch: String, _ input: String) throws -> String = { b, _ in b }
    ) throws -> String {
      try encoderBlock(
        g, x, p, heads: heads, headDim: headDim, eps: c.normEps, mlpBranch: mlpBranch)
    }
    // What the side networks read: the sequence entering block 0, then every block's output.
    var hidden = [x]
    var taps: [(meta: String, features: String)] = []
    for i in 0..<c.depth {
      if i > 0 && prompts.count > i {
        x = insertPrompts(x, layer: i, drop: prompts[i - 1].shape[1])
      }
      if let instancePrompt, instancePrompt.layer == i {
        x = try insertInstancePrompt(g, x, tokens: c.gridSize.area, instancePrompt)
      }
      if case .hierarchical(let metaCount, _, _, _) = side {
        // HST's beforeBlock: block i's meta tokens before the class token.
        let rows = g.node("Concat", [batch, g.ints([metaCount, d])], [.int("axis", 0)])
        x = g.node(
          "Concat", [g.node("Expand", [try g.weight("hst.meta_tokens.\(i)"), rows]), x],
          [.int("axis", 1)])
      }
      x = try block(x, "blocks.\(i).", heads: heads, headDim: hd) { branch, input in
        try mlpBranch(
          g, branch, input: input, block: i, adapterScale: adapterScale,
          psrp: moments?.plus == true)
      }
      if case .hierarchical(let metaCount, let stages, _, _) = side {
        // HST's afterBlock: the bridged, normed meta rows and the bridged patch rows as a map;
        // the meta rows are stripped.
        let stage = stages.firstIndex { $0.layers.contains(i) }!
        let bridge = "hst.stages.\(stage).bridge"
        let metaRows = g.node("Slice", [x, g.ints([0]), g.ints([metaCount]), g.ints([1])])
        let meta = try layerNorm(
          try dense(metaRows, bridge), "hst.meta_norms.\(i)", eps: 1e-5)
        let patchRows = g.node(
          "Slice", [x, g.ints([metaCount + 1]), g.ints([Int(Int32.max)]), g.ints([1])])
        let features = g.node(
          "Reshape",
          [
            g.node("Transpose", [try dense(patchRows, bridge)], [.ints("perm", [0, 2, 1])]),
            g.ints([0, stages[stage].width, c.gridSize.height, c.gridSize.width]),
          ])
        taps.append((meta, features))
        x = g.node("Slice", [x, g.ints([metaCount]), g.ints([Int(Int32.max)]), g.ints([1])])
      }
      hidden.append(x)
    }
    let n = g.node(
      "LayerNormalization", [x, try g.weight("norm.weight"), try g.weight("norm.bias")],
      [.int("axis", -1), .float("epsilon", c.normEps)])
    var tokens = n
    switch side {
    case .ladder, .unipt:
      tokens = try sideNetworkTokens(g, side!, hidden: hidden, normed: n, blockEps: c.normEps)
    case .hierarchical(_, let stages, let stemEps, let headEps):
      let features = try hstFeatures(
        g, stages: stages, taps: taps, stemEps: stemEps, dense: dense, layerNorm: layerNorm)
      // Mean over the last stage's tokens → BatchNorm1d (running statistics, no affine) → head.
      let bn = "hst.head_norm"
      let scale = try g.tensor(bn + ".running_var").scalars.map { 1 / ($0 + headEps).squareRoot() }
      let normed = g.node(
        "Mul", [g.node("Sub", [features, try g.weight(bn + ".running_mean")]), g.floats(scale)])
      let wt = g.transposed(try g.tensor("head.weight"), name: "head.weight_t")
      _ = g.node(
        "Add", [g.node("MatMul", [normed, wt]), try g.weight("head.bias")], output: "logits")
      return g.model(
        input: modelInput, output: ("logits", ["batch", "\(classes)"]))
    case nil:
      break
    }
    if let instancePrompt {
      try idptHead(g, normed: n, instancePrompt)
      return g.model(input: modelInput, output: ("logits", ["batch", "\(classes)"]))
    }
    let pooled = g.node("Gather", [tokens, g.ints([0], scalar: true)], [.int("axis", 1)])
    let wt = g.transposed(try g.tensor("head.weight"), name: "head.weight_t")
    let first = g.node("Add", [g.node("MatMul", [pooled, wt]), try g.weight("head.bias")])
    if let moments {
      let patches = g.node(
        "Slice", [n, g.ints([1]), g.ints([Int(Int32.max)]), g.ints([1])])
      let second = try momentProbingHead(g, patches: patches, tokens: c.gridSize.area, moments)
      _ = g.node(
        "Mul", [g.node("Add", [first, second]), g.floats([0.5])], output: "logits")
    } else {
      _ = g.node("Identity", [first], output: "logits")
    }
    return g.model(
      input: modelInput, output: ("logits", ["batch", "\(classes)"]))
  }
}

extension ONNXExport {
  /// `full`.weight (transposed) and, when the state has one, `full`.bias: a Linear on `input`.
  static func dense(_ g: ONNXGraph, _ input: String, _ full: String) throws -> String {
    let wt = g.transposed(try g.tensor(full + ".weight"), name: full + ".weight_t")
    var y = g.node("MatMul", [input, wt])
    if g.state[full + ".bias"] != nil {
      y = g.node("Add", [y, try g.weight(full + ".bias")])
    }
    return y
  }

  /// The LayerNorm `full` (weight and bias) over the last axis of `input`.
  static func layerNorm(_ g: ONNXGraph, _ input: String, _ full: String, eps: Float) throws
    -> String
  {
    g.node(
      "LayerNormalization",
      [input, try g.weight(full + ".weight"), try g.weight(full + ".bias")],
      [.int("axis", -1), .float("epsilon", eps)])
  }

  /// timm's pre-norm transformer block named `p` (`blocks.3.`, `blocks.blocks.3.`, or a side
  /// block) on `x`, `heads` heads `headDim` wide, LayerNorm ε `eps`; `mlpBranch` may change the
  /// MLP branch given the branch's input.
  static func encoderBlock(
    _ g: ONNXGraph, _ x: String, _ p: String, heads: Int, headDim: Int, eps: Float,
    mlpBranch: (_ branch: String, _ input: String) throws -> String = { b, _ in b }
  ) throws -> String {
    let width = heads * headDim
    // Attention: qkv [B, N, 3D] → [3, B, H, N, hd].
    var qkv = try dense(g, try layerNorm(g, x, p + "norm1", eps: eps), p + "attn.qkv")
    qkv = g.node("Reshape", [qkv, g.ints([0, 0, 3, heads, headDim])])
    qkv = g.node("Transpose", [qkv], [.ints("perm", [2, 0, 3, 1, 4])])
    let q = g.node("Gather", [qkv, g.ints([0], scalar: true)], [.int("axis", 0)])
    let k = g.node("Gather", [qkv, g.ints([1], scalar: true)], [.int("axis", 0)])
    let v = g.node("Gather", [qkv, g.ints([2], scalar: true)], [.int("axis", 0)])
    let kt = g.node("Transpose", [k], [.ints("perm", [0, 1, 3, 2])])
    let scale = g.floats([1 / Float(headDim).squareRoot()])
    let logits = g.node("MatMul", [g.node("Mul", [q, scale]), kt])
    var a = g.node("MatMul", [g.node("Softmax", [logits], [.int("axis", -1)]), v])
    a = g.node("Transpose", [a], [.ints("perm", [0, 2, 1, 3])])
    a = g.node("Reshape", [a, g.ints([0, 0, width])])
    let y = g.node("Add", [x, try dense(g, a, p + "attn.proj")])
    let h = try dense(g, try layerNorm(g, y, p + "norm2", eps: eps), p + "mlp.fc1")
    return g.node("Add", [y, try mlpBranch(try dense(g, gelu(g, h), p + "mlp.fc2"), y)])
  }

  /// Exact GELU: 0.5·h·(1 + erf(h / √2)).
  static func gelu(_ g: ONNXGraph, _ h: String) -> String {
    let erf = g.node("Erf", [g.node("Div", [h, g.floats([Float(2).squareRoot()])])])
    return g.node(
      "Mul", [g.node("Mul", [h, g.node("Add", [erf, g.floats([1])])]), g.floats([0.5])])
  }

  /// `x` with rows 1..<1+drop replaced by `prompts[layer]` ([1, p, width], VPT's prompts of that
  /// layer) broadcast to the batch.
  static func insertPrompts(
    _ g: ONNXGraph, _ x: String, _ prompts: [Tensor], layer: Int, drop: Int, batch: String,
    width: Int
  ) -> String {
    let p = prompts[layer].shape[1]
    let rows = g.node("Concat", [batch, g.ints([p, width])], [.int("axis", 0)])
    let mid = g.node("Expand", [g.initializer("vpt_prompts_\(layer)", prompts[layer]), rows])
    let head = g.node("Slice", [x, g.ints([0]), g.ints([1]), g.ints([1])])
    let tail = g.node("Slice", [x, g.ints([1 + drop]), g.ints([Int(Int32.max)]), g.ints([1])])
    return g.node("Concat", [head, mid, tail], [.int("axis", 1)])
  }

  /// Block `block`'s MLP branch `branch` (its input `input`) with the adapter's bottleneck added
  /// (`adapterScale`: AdaptFormer.swift, up(relu(down(x)))·scale) and PSRP's recalibration when
  /// `psrp` (MomentProbing.swift: s = relu(down(x)); b + (1 + w)·branch).
  static func mlpBranch(
    _ g: ONNXGraph, _ branch: String, input: String, block i: Int, adapterScale: Float?,
    psrp: Bool
  ) throws -> String {
    var branch = branch
    if let adapterScale {
      let a = "adapter.blocks.\(i)."
      let down = g.node("Relu", [try dense(g, input, a + "down")])
      let up = g.node("Mul", [try dense(g, down, a + "up"), g.floats([adapterScale])])
      branch = g.node("Add", [branch, up])
    }
    if psrp {
      let r = "mp.blocks.\(i).psrp."
      let s = g.node("Relu", [try dense(g, input, r + "down")])
      let w = g.node("Add", [try dense(g, s, r + "up_weight"), g.floats([1])])
      branch = g.node("Add", [try dense(g, s, r + "up_bias"), g.node("Mul", [w, branch])])
    }
    return branch
  }

  /// IDPT's beforeBlock on `x` (class token, then `tokens` content rows): the prompt made from
  /// the content rows plus its position, inserted after the class token.
  static func insertInstancePrompt(
    _ g: ONNXGraph, _ x: String, tokens: Int, _ shape: InstancePromptShape
  ) throws -> String {
    let content = g.node("Slice", [x, g.ints([1]), g.ints([Int(Int32.max)]), g.ints([1])])
    let prompt = g.node(
      "Add",
      [
        try idptPrompt(g, content: content, tokens: tokens, shape, dense: { try dense(g, $0, $1) }),
        try g.weight("idpt.prompt_pos"),
      ])
    let cls = g.node("Slice", [x, g.ints([0]), g.ints([1]), g.ints([1])])
    return g.node("Concat", [cls, prompt, content], [.int("axis", 1)])
  }

  /// IDPT's head (`IDPT.logits`) on the final normed tokens `normed` (class token, prompt, then
  /// the content rows), as `head` says: [class token, prompt, max over the content rows] →
  /// two Linear-BatchNorm-ReLU layers → the new head; writes `logits`.
  static func idptHead(_ g: ONNXGraph, normed n: String, _ shape: InstancePromptShape) throws {
    func row(_ r: Int) -> String {
      g.node("Gather", [n, g.ints([r], scalar: true)], [.int("axis", 1)])
    }
    let content = g.node(
      "ReduceMax",
      [g.node("Slice", [n, g.ints([2]), g.ints([Int(Int32.max)]), g.ints([1])])],
      [.ints("axes", [1]), .int("keepdims", 0)])
    let parts: [String]
    switch shape.head {
    case .all: parts = [row(0), row(1), content]
    case .promptonly: parts = [row(1)]
    case .promptcls: parts = [row(0), row(1)]
    case .pointcls: parts = [row(0), content]
    }
    var h = parts.count == 1 ? parts[0] : g.node("Concat", parts, [.int("axis", 1)])
    for (fc, bn) in [("idpt.head_fc1", "idpt.head_bn1"), ("idpt.head_fc2", "idpt.head_bn2")] {
      h = g.node("Relu", [try batchNorm(g, try dense(g, h, fc), bn, eps: shape.eps[bn]!)])
    }
    let wt = g.transposed(try g.tensor("head.weight"), name: "head.weight_t")
    _ = g.node("Add", [g.node("MatMul", [h, wt]), try g.weight("head.bias")], output: "logits")
  }

  /// A BatchNorm at its running statistics over the last axis of `x`: `x·scale + shift`, both
  /// computed at export from `name`.weight/bias/running_mean/running_var.
  static func batchNorm(_ g: ONNXGraph, _ x: String, _ name: String, eps: Float) throws -> String {
    let (w, b) = (try g.tensor(name + ".weight").scalars, try g.tensor(name + ".bias").scalars)
    let mean = try g.tensor(name + ".running_mean").scalars
    let variance = try g.tensor(name + ".running_var").scalars
    let scale = (0..<w.count).map { w[$0] / (variance[$0] + eps).squareRoot() }
    let shift = (0..<w.count).map { b[$0] - mean[$0] * scale[$0] }
    return g.node("Add", [g.node("Mul", [x, g.floats(scale)]), g.floats(shift)])
  }

  /// IDPT's prompt [B, 1, D] from the content rows `content` [B, N, D] (`IDPT.prompt`): three
  /// EdgeConvs, each on an exact kNN graph of its input (TopK of the negated squared distances;
  /// ties to the lower index, as ONNX's TopK and `PointOps.knn` both break them), their
  /// concatenation through `conv5`, LeakyReLU, and the max over the rows.
  static func idptPrompt(
    _ g: ONNXGraph, content: String, tokens: Int, _ shape: InstancePromptShape,
    dense: (String, String) throws -> String
  ) throws -> String {
    let k = min(shape.k, tokens)
    var x = content
    var outputs: [String] = []
    for i in 1...3 {
      let p = "idpt.generator.conv\(i)."
      // Squared distances [B, N, N] by explicit differences, then the k smallest.
      let diff = g.node(
        "Sub",
        [
          g.node("Unsqueeze", [x, g.ints([2])]), g.node("Unsqueeze", [x, g.ints([1])]),
        ])
      let distances = g.node(
        "ReduceSum", [g.node("Mul", [diff, diff]), g.ints([-1])], [.int("keepdims", 0)])
      let topK = g.node(
        "TopK", [g.node("Neg", [distances]), g.ints([k])],
        [.int("axis", -1), .int("largest", 1), .int("sorted", 1)], outputs: 2)
      let neighbours = g.node("Unsqueeze", [topK[1], g.ints([-1])])
      // W·[x_j − x_i; x_i] = W₁·x_j + (W₂ − W₁)·x_i, as IDPTEdgeConv computes it.
      let w = try g.tensor(p + "0.weight")
      let d = w.shape[0]
      let (neighbourT, centreT) = withNoGrad {
        let w1 = w.narrow(1, start: 0, length: d)
        return (w1.transposed(), (w.narrow(1, start: d, length: d) - w1).transposed())
      }
      let fromNeighbour = g.node(
        "GatherND",
        [g.node("MatMul", [x, g.initializer(p + "neighbour_t", neighbourT)]), neighbours],
        [.int("batch_dims", 1)])
      let fromCentre = g.node(
        "Unsqueeze",
        [g.node("MatMul", [x, g.initializer(p + "centre_t", centreT)]), g.ints([2])])
      let edges = try batchNorm(
        g, g.node("Add", [fromNeighbour, fromCentre]), p + "1", eps: shape.eps[p + "1"]!)
      x = g.node(
        "ReduceMax", [g.node("LeakyRelu", [edges], [.float("alpha", 0.2)])],
        [.ints("axes", [2]), .int("keepdims", 0)])
      outputs.append(x)
    }
    let fused = try batchNorm(
      g,
      try dense(g.node("Concat", outputs, [.int("axis", 2)]), "idpt.generator.conv5.0"),
      "idpt.generator.conv5.1", eps: shape.eps["idpt.generator.conv5.1"]!)
    return g.node(
      "ReduceMax", [g.node("LeakyRelu", [fused], [.float("alpha", 0.2)])],
      [.ints("axes", [1]), .int("keepdims", 1)])
  }

  /// HST's side network (`HierarchicalSideTuning.sideNetwork`) on the input `pixels` and the
  /// blocks' `taps`: the mean of the last stage's tokens, [B, width].
  static func hstFeatures(
    _ g: ONNXGraph, stages: [(width: Int, heads: Int, layers: Range<Int>)],
    taps: [(meta: String, features: String)], stemEps: Float,
    dense: (String, String) throws -> String,
    layerNorm: (String, String, Float) throws -> String
  ) throws -> String {
    func conv(_ x: String, _ name: String, kernel: Int, stride: Int, pad: Int) throws -> String {
      var inputs = [x, try g.weight(name + ".weight")]
      if g.state[name + ".bias"] != nil { inputs.append(try g.weight(name + ".bias")) }
      return g.node(
        "Conv", inputs,
        [
          .ints("kernel_shape", [kernel, kernel]), .ints("strides", [stride, stride]),
          .ints("pads", [pad, pad, pad, pad]),
        ])
    }
    func gelu(_ h: String) -> String {
      let erf = g.node("Erf", [g.node("Div", [h, g.floats([Float(2).squareRoot()])])])
      return g.node(
        "Mul", [g.node("Mul", [h, g.node("Add", [erf, g.floats([1])])]), g.floats([0.5])])
    }
    var map = "pixels"
    var tokens = ""
    for (s, stage) in stages.enumerated() {
      let p = "hst.stages.\(s)."
      let c = stage.width
      // The stage's embedding, as a map [B, C, h, w]; its sides are static (fixed input size).
      if s == 0 {
        let bn = p + "embed.bn"
        var y = try conv(map, p + "embed.conv1", kernel: 3, stride: 2, pad: 1)
        y = g.node(
          "BatchNormalization",
          [
            y, try g.weight(bn + ".weight"), try g.weight(bn + ".bias"),
            try g.weight(bn + ".running_mean"), try g.weight(bn + ".running_var"),
          ], [.float("epsilon", stemEps)])
        map = try conv(g.node("Relu", [y]), p + "embed.conv2", kernel: 2, stride: 2, pad: 0)
      } else {
        map = try conv(map, p + "embed.proj", kernel: 3, stride: 2, pad: 1)
      }
      let sizes = g.node("Shape", [map])
      var x = try layerNorm(
        g.node(
          "Transpose", [g.node("Reshape", [map, g.ints([0, c, -1])])], [.ints("perm", [0, 2, 1])]),
        p + "embed.norm", 1e-5)
      for (j, layer) in stage.layers.enumerated() {
        // The layer's features resized to the stage's map (bilinear, half-pixel: PyTorch's
        // align_corners=False), as tokens; the context is its meta rows and their mean.
        let resized = g.node(
          "Resize", [taps[layer].features, "", "", sizes],
          [.string("mode", "linear"), .string("coordinate_transformation_mode", "half_pixel")])
        let features = g.node(
          "Transpose", [g.node("Reshape", [resized, g.ints([0, c, -1])])],
          [.ints("perm", [0, 2, 1])])
        let mean = g.node("ReduceMean", [features], [.ints("axes", [1]), .int("keepdims", 1)])
        let kv = g.node("Concat", [taps[layer].meta, mean], [.int("axis", 1)])
        let b = p + "blocks.\(j)."
        let dh = c / stage.heads
        func heads(_ t: String) -> String {
          g.node(
            "Transpose", [g.node("Reshape", [t, g.ints([0, 0, stage.heads, dh])])],
            [.ints("perm", [0, 2, 1, 3])])
        }
        let xn = try layerNorm(x, b + "norm1", 1e-6)
        let q = heads(try dense(xn, b + "attn.q"))
        let k = heads(try dense(kv, b + "attn.k"))
        let v = heads(try dense(kv, b + "attn.v"))
        let logits = g.node(
          "MatMul",
          [
            g.node("Mul", [q, g.floats([1 / Float(dh).squareRoot()])]),
            g.node("Transpose", [k], [.ints("perm", [0, 1, 3, 2])]),
          ])
        var a = g.node("MatMul", [g.node("Softmax", [logits], [.int("axis", -1)]), v])
        a = g.node(
          "Reshape",
          [g.node("Transpose", [a], [.ints("perm", [0, 2, 1, 3])]), g.ints([0, 0, c])])
        let y = g.node("Add", [g.node("Add", [x, try dense(a, b + "attn.proj")]), features])
        let h = gelu(try dense(try layerNorm(y, b + "norm2", 1e-6), b + "mlp.fc1"))
        x = g.node("Add", [y, try dense(h, b + "mlp.fc2")])
      }
      x = try layerNorm(x, p + "norm", 1e-6)
      tokens = x
      // The next stage embeds this one's tokens as a map of the same sides.
      map = g.node("Reshape", [g.node("Transpose", [x], [.ints("perm", [0, 2, 1])]), sizes])
    }
    return g.node("ReduceMean", [tokens], [.ints("axes", [1]), .int("keepdims", 0)])
  }

  /// `UniPT.fuse`: the final tokens `final` [B, N, D] plus UniPT's correction from the key
  /// states `states` (the sequence entering block 0 and the outputs of blocks 0 … L−2).
  static func uniptTokens(
    _ g: ONNXGraph, states: [String], final: String, eps: Float,
    dense: (String, String) throws -> String,
    layerNorm: (String, String, Float) throws -> String
  ) throws -> String {
    func down(_ x: String, _ l: Int) throws -> String {
      let p = "unipt.downsample_layers.\(l)."
      return try layerNorm(try dense(x, p + "0"), p + "1", eps)
    }
    let anchor = try down(final, states.count)
    let anchorMean = g.node("ReduceMean", [anchor], [.ints("axes", [1]), .int("keepdims", 0)])
    var merged: [String] = []
    var confidences: [String] = []
    for (l, state) in states.enumerated() {
      let t = try down(state, l)
      let scores = g.node(
        "Relu", [g.node("MatMul", [anchor, g.node("Transpose", [t], [.ints("perm", [0, 2, 1])])])])
      let sum = g.node("ReduceSum", [scores, g.ints([-1])], [.int("keepdims", 1)])
      let weights = g.node(
        "Div", [scores, g.node("Add", [sum, g.floats([UniPT.l1Epsilon])])])
      merged.append(g.node("Add", [g.node("MatMul", [weights, t]), t]))
      let tokenMean = g.node("ReduceMean", [t], [.ints("axes", [1]), .int("keepdims", 0)])
      confidences.append(try dense(g.node("Mul", [anchorMean, tokenMean]), "unipt.gate_layer"))
    }
    // Softmax over the layers, then their weighted sum.
    let layerWeights = g.node(
      "Softmax", [g.node("Concat", confidences, [.int("axis", 1)])], [.int("axis", 1)])
    var m: String?
    for (l, ml) in merged.enumerated() {
      let w = g.node(
        "Reshape",
        [
          g.node("Slice", [layerWeights, g.ints([l]), g.ints([l + 1]), g.ints([1])]),
          g.ints([-1, 1, 1]),
        ])
      let term = g.node("Mul", [ml, w])
      m = m.map { g.node("Add", [$0, term]) } ?? term
    }
    let projected = try layerNorm(
      try dense(m!, "unipt.projection_layer.0"), "unipt.projection_layer.1", eps)
    let output = g.node("Add", [anchor, projected])
    return g.node(
      "Add", [final, try dense(g.node("Relu", [output]), "unipt.upsample_layer.1")])
  }

  /// MHC³'s logits from the final patch tokens `patches` [B, N, D], N = `tokens`, as
  /// `MomentProbing.secondOrderFeature` and `classifier2` compute them.
  static func momentProbingHead(
    _ g: ONNXGraph, patches: String, tokens: Int, _ m: MomentProbingShape
  ) throws -> String {
    let wt = g.transposed(try g.tensor("mp.proj.weight"), name: "mp.proj.weight_t")
    var y = g.node("Add", [g.node("MatMul", [patches, wt]), try g.weight("mp.proj.bias")])
    y = g.node("Reshape", [y, g.ints([0, 0, m.heads, m.groupWidth])])
    y = g.node(
      "LayerNormalization", [y, try g.weight("mp.ln.weight"), try g.weight("mp.ln.bias")],
      [.int("axis", -1), .float("epsilon", 1e-5)])
    // One scalar per sample and group: the mean over its tokens and channels.
    let mean = g.node("ReduceMean", [y], [.ints("axes", [1, 3]), .int("keepdims", 1)])
    let byGroup = g.node("Transpose", [g.node("Sub", [y, mean])], [.ints("perm", [0, 2, 1, 3])])
    let left = g.node("Gather", [byGroup, g.ints(m.pairs.map(\.0))], [.int("axis", 1)])
    let right = g.node("Gather", [byGroup, g.ints(m.pairs.map(\.1))], [.int("axis", 1)])
    let leftT = g.node("Transpose", [left], [.ints("perm", [0, 1, 3, 2])])
    var covariance = g.node(
      "Mul", [g.node("MatMul", [leftT, right]), g.floats([1 / Float(tokens)])])
    if m.normalizes {
      let norm = g.node("ReduceL2", [covariance], [.ints("axes", [2]), .int("keepdims", 1)])
      covariance = g.node("Div", [covariance, g.node("Max", [norm, g.floats([1e-12])])])
    }
    func conv(_ input: String, _ name: String) throws -> String {
      g.node(
        "Conv", [input, try g.weight(name)],
        [.ints("kernel_shape", [3, 3]), .ints("strides", [2, 2])])
    }
    let h = try conv(covariance, "mp.conv1.weight")
    let erf = g.node("Erf", [g.node("Div", [h, g.floats([Float(2).squareRoot()])])])
    let gelu = g.node(
      "Mul", [g.node("Mul", [h, g.node("Add", [erf, g.floats([1])])]), g.floats([0.5])])
    let feature = g.node("Flatten", [try conv(gelu, "mp.conv2.weight")], [.int("axis", 1)])
    let ct = g.transposed(try g.tensor("mp.classifier2.weight"), name: "mp.classifier2.weight_t")
    return g.node(
      "Add", [g.node("MatMul", [feature, ct]), try g.weight("mp.classifier2.bias")])
  }
}

/// A protobuf message being written (wire types 0, 2 and 5: what ONNX's messages need).
struct ProtoWriter {
  var bytes: [UInt8] = []

  mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7f) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }
  mutating func key(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }
  mutating func int(_ field: Int, _ value: Int) {
    key(field, 0)
    varint(UInt64(bitPattern: Int64(value)))
  }
  mutating func data(_ field: Int, _ data: [UInt8]) {
    key(field, 2)
    varint(UInt64(data.count))
    bytes += data
  }
  mutating func string(_ field: Int, _ s: String) { data(field, Array(s.utf8)) }
  mutating func message(_ field: Int, _ m: ProtoWriter) { data(field, m.bytes) }
  mutating func float(_ field: Int, _ value: Float) {
    key(field, 5)
    withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
  }
}

/// An ONNX graph under construction: nodes, initializers (from a state dict or constants).
final class ONNXGraph {
  /// A node attribute.
  enum Attribute {
    case int(String, Int)
    case ints(String, [Int])
    case float(String, Float)
    case string(String, String)
    /// A subgraph (a Loop's body), as `ONNXGraph.subgraph` writes it.
    case graph(String, ProtoWriter)
  }

  let state: [String: Tensor]
  private var nodes: [ProtoWriter] = []
  private var initializers: [ProtoWriter] = []
  private var names: Set<String> = []
  private var counter = 0
  /// Put before every name this graph makes (a subgraph's must not shadow its parent's).
  private let prefix: String

  init(state: [String: Tensor], prefix: String = "") {
    self.state = state
    self.prefix = prefix
  }

  /// The state-dict tensor `name`; a missing one is an error.
  func tensor(_ name: String) throws -> Tensor {
    guard let t = state[name] else {
      throw FileError(path: name, message: "the merged state dict has no tensor '\(name)'")
    }
    return t
  }

  /// The state-dict tensor `name` as an initializer of that name.
  func weight(_ name: String) throws -> String { initializer(name, try tensor(name)) }

  /// `t` [out, in] transposed to [in, out] as an initializer (MatMul's right operand).
  func transposed(_ t: Tensor, name: String) -> String {
    initializer(name, withNoGrad { t.transposed() })
  }

  /// A float initializer.
  func initializer(_ name: String, _ t: Tensor) -> String {
    if names.contains(name) { return name }
    names.insert(name)
    var p = ProtoWriter()
    for dim in t.shape { p.int(1, dim) }
    p.int(2, 1)  // FLOAT
    p.string(8, name)
    var raw = [UInt8]()
    raw.reserveCapacity(t.count * 4)
    for i in 0..<t.count { withUnsafeBytes(of: t.pointer[i].bitPattern.littleEndian) { raw += $0 } }
    p.data(9, raw)
    initializers.append(p)
    return name
  }

  /// A float constant.
  func floats(_ values: [Float]) -> String {
    initializer("\(prefix)const_f\(fresh())", Tensor(values, shape: [values.count]))
  }

  /// An int64 constant (a scalar when `scalar`).
  func ints(_ values: [Int], scalar: Bool = false) -> String {
    let name = "\(prefix)const_i\(fresh())"
    var p = ProtoWriter()
    if !scalar { p.int(1, values.count) }
    p.int(2, 7)  // INT64
    p.string(8, name)
    var raw = [UInt8]()
    for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { raw += $0 } }
    p.data(9, raw)
    initializers.append(p)
    names.insert(name)
    return name
  }

  private func fresh() -> Int {
    counter += 1
    return counter
  }

  /// Adds an `op` node and returns its output's name.
  @discardableResult
  func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], output: String? = nil)
    -> String
  {
    let out = output ?? "\(prefix)\(op.lowercased())_\(fresh())"
    addNode(op, inputs, attributes, outputs: [out])
    return out
  }

  /// Adds an `op` node with `outputs` outputs (TopK's values and indices) and returns their names.
  func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs: Int)
    -> [String]
  {
    let base = "\(prefix)\(op.lowercased())_\(fresh())"
    let names = (0..<outputs).map { "\(base)_\($0)" }
    addNode(op, inputs, attributes, outputs: names)
    return names
  }

  private func addNode(
    _ op: String, _ inputs: [String], _ attributes: [Attribute], outputs: [String]
  ) {
    var p = ProtoWriter()
    for i in inputs { p.string(1, i) }
    for o in outputs { p.string(2, o) }
    p.string(3, outputs[0])
    p.string(4, op)
    for a in attributes {
      var w = ProtoWriter()
      switch a {
      case .int(let name, let v):
        w.string(1, name)
        w.int(3, v)
        w.int(20, 2)  // INT
      case .ints(let name, let vs):
        w.string(1, name)
        for v in vs { w.int(8, v) }
        w.int(20, 7)  // INTS
      case .float(let name, let v):
        w.string(1, name)
        w.float(2, v)
        w.int(20, 1)  // FLOAT
      case .string(let name, let v):
        w.string(1, name)
        w.string(4, v)
        w.int(20, 3)  // STRING
      case .graph(let name, let body):
        w.string(1, name)
        w.message(6, body)
        w.int(20, 5)  // GRAPH
      }
      p.message(5, w)
    }
    nodes.append(p)
  }

  /// This graph's nodes and initializers as a subgraph named `name` (a Loop's body): its
  /// formal inputs and outputs are `(name, element type)` pairs (ONNX's: 1 float, 7 int64,
  /// 9 bool) of unstated shape. Names of the enclosing graph are read as they are.
  /// `scalars` names the inputs and outputs that are scalars (a Loop's iteration count and
  /// condition), whose shape is stated as such.
  func subgraph(
    _ name: String, inputs: [(String, Int)], outputs: [(String, Int)], scalars: Set<String>
  ) -> ProtoWriter {
    var graph = ProtoWriter()
    for n in nodes { graph.message(1, n) }
    graph.string(2, name)
    for i in initializers { graph.message(5, i) }
    for (n, type) in inputs {
      graph.message(11, valueInfo(n, scalars.contains(n) ? [] : nil, elementType: type))
    }
    for (n, type) in outputs {
      graph.message(12, valueInfo(n, scalars.contains(n) ? [] : nil, elementType: type))
    }
    return graph
  }

  /// A tensor's value info with named (symbolic) or numeric dimensions (no shape for nil), of
  /// element type `elementType` (float by default).
  private func valueInfo(_ name: String, _ dims: [String]?, elementType: Int = 1) -> ProtoWriter {
    var tensorType = ProtoWriter()
    tensorType.int(1, elementType)
    if let dims {
      var shape = ProtoWriter()
      for d in dims {
        var dim = ProtoWriter()
        if let n = Int(d) { dim.int(1, n) } else { dim.string(2, d) }
        shape.message(1, dim)
      }
      tensorType.message(2, shape)
    }
    var type = ProtoWriter()
    type.message(1, tensorType)
    var info = ProtoWriter()
    info.string(1, name)
    info.message(2, type)
    return info
  }

  /// The serialized ModelProto (IR version 8, opset 17).
  func model(input: (String, [String]), output: (String, [String])) -> [UInt8] {
    var graph = ProtoWriter()
    for n in nodes { graph.message(1, n) }
    graph.string(2, "graft")
    for i in initializers { graph.message(5, i) }
    graph.message(11, valueInfo(input.0, input.1))
    graph.message(12, valueInfo(output.0, output.1))
    var opset = ProtoWriter()
    opset.string(1, "")
    opset.int(2, 17)
    var model = ProtoWriter()
    model.int(1, 8)
    model.string(2, "graft")
    model.string(3, GraftVersion.string)
    model.message(7, graph)
    model.message(8, opset)
    return model.bytes
  }
}
