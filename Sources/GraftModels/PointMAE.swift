import Foundation
import GraftTensor

// Point-MAE's fine-tuning model (`PointTransformer` in the official `models/Point_MAE.py` of
// Pang-Yatian/Point-MAE) with its exact state-dict names, as a `SequenceBackbone`: a cloud is cut
// into groups (FPS centres, kNN neighbourhoods), each group becomes a token through a
// mini-PointNet, a class token leads, and a position MLP of the centres is added before every
// block. The blocks are timm's, so they are `ViTBlock`s and every method attaches to them as to
// a ViT's.

// MARK: - Layers

/// A kernel-size-1 `nn.Conv1d` with PyTorch's names and shapes (`weight` [out, in, 1], `bias`
/// [out]), applied to channels-last rows [..., in] → [..., out] as one GEMM.
public final class PointwiseConv1d: Module {
  /// Kernel, [out, in, 1].
  public let weight: Tensor
  /// Bias, [out].
  public let bias: Tensor

  /// A `inputs → outputs` convolution (trunc-normal 0.02 weight and zero bias when fresh, as
  /// Point-MAE's `_init_weights`), its tensors from `source`.
  init(_ inputs: Int, _ outputs: Int, source: ParameterSource) {
    weight = source.take("weight", [outputs, inputs, 1], .truncatedNormal(std: 0.02))
    bias = source.take("bias", [outputs], .constant(0))
    super.init()
    source.registerEntries(into: self)
  }

  /// `x·Wᵀ + b` over the last axis of `x` [..., in].
  public func callAsFunction(_ x: Tensor) -> Tensor {
    x.linear(weight: weight.reshaped([weight.shape[0], weight.shape[1]]), bias: bias)
  }
}

/// `nn.BatchNorm1d` with PyTorch's whole state dict: `weight`, `bias`, and the buffers
/// `running_mean`, `running_var` and `num_batches_tracked` (which GraftNN's `BatchNorm` does not
/// keep), so checkpoints load and save name for name. Normalises axis 1 of [N, C] (or
/// [N, C, L]).
///
/// In evaluation mode (the mode of a frozen backbone) it is the per-channel affine map of the
/// running statistics. In training mode it uses the batch's statistics, updates the running ones
/// (momentum 0.1, unbiased variance) and counts the batch, as PyTorch; a single value per
/// channel falls back to the running statistics, as GraftNN's `BatchNorm`.
public final class TrackedBatchNorm: Module, UnaryModule {
  /// Scale, [C].
  public let weight: Tensor
  /// Shift, [C].
  public let bias: Tensor
  /// Running mean, [C] (buffer).
  public let runningMean: Tensor
  /// Running unbiased variance, [C] (buffer).
  public let runningVar: Tensor
  /// Batches seen in training mode, a scalar (buffer; PyTorch's int64, kept as a float).
  public let numBatchesTracked: Tensor
  /// Added to the variance.
  public let eps: Float
  /// Weight of the newest batch in the running statistics.
  public let momentum: Float

  /// A layer over `features` channels (ones, zeros, running statistics 0 and 1 when fresh), its
  /// tensors from `source`.
  init(_ features: Int, eps: Float, momentum: Float, source: ParameterSource) {
    weight = source.take("weight", [features], .constant(1))
    bias = source.take("bias", [features], .constant(0))
    runningMean = source.buffer("running_mean", [features], .constant(0))
    runningVar = source.buffer("running_var", [features], .constant(1))
    numBatchesTracked = source.buffer("num_batches_tracked", [], .constant(0))
    self.eps = eps
    self.momentum = momentum
    super.init()
    source.registerEntries(into: self)
  }

  /// Normalises `x` [N, C, …] over every axis but 1.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    let channels = weight.shape[0]
    precondition(
      x.rank >= 2 && x.shape[1] == channels, "BatchNorm1d(\(channels)) applied to \(x.shape)")
    // In a data-parallel step the statistics are the global batch's: every rank branches alike.
    let batchStatistics = isTraining && DataParallel.globalCount(x.count / channels) > 1
    if batchStatistics {
      numBatchesTracked.pointer[0] += 1
    }
    return x.batchNorm(
      weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
      training: batchStatistics, momentum: momentum, eps: eps)
  }
}

/// One of the mini-PointNet's two stages (`first_conv`, `second_conv`): `nn.Sequential(Conv1d,
/// BatchNorm1d, ReLU, Conv1d)`, its layers named `0`, `1` and `3` as in the state dict.
public final class PointNetStage: Module {
  /// The first convolution (`0`).
  public let conv1: PointwiseConv1d
  /// The BatchNorm between (`1`).
  public let norm: TrackedBatchNorm
  /// The second convolution (`3`), after the ReLU (`2`).
  public let conv2: PointwiseConv1d

  /// `inputs → hidden → outputs`, its tensors from `source`.
  init(_ inputs: Int, _ hidden: Int, _ outputs: Int, source: ParameterSource) {
    conv1 = source.child("0") { PointwiseConv1d(inputs, hidden, source: $0) }
    norm = source.child("1") {
      TrackedBatchNorm(
        hidden, eps: PointMAEConfig.batchNormEps, momentum: PointMAEConfig.batchNormMomentum,
        source: $0)
    }
    conv2 = source.child("3") { PointwiseConv1d(hidden, outputs, source: $0) }
    super.init()
    source.registerEntries(into: self)
  }

  /// `conv2(relu(norm(conv1(x))))` on rows `x` [M, in] → [M, out].
  public func callAsFunction(_ x: Tensor) -> Tensor { conv2(norm(conv1(x)).relu()) }
}

/// Point-MAE's `Encoder`: a mini-PointNet that turns each group of S points into one token.
/// `first_conv` (3 → 128 → 256) on every point, the group's maximum concatenated before each
/// point's features (global first, 512 channels), `second_conv` (512 → 512 → C), and the
/// maximum over the group.
public final class PointMAEEncoder: Module {
  /// 3 → 128 → 256 per point.
  public let firstConv: PointNetStage
  /// 512 → 512 → C per point.
  public let secondConv: PointNetStage
  /// Output width C (`encoder_dims`).
  public let outputs: Int

  /// The encoder of `c`, its tensors from `source` (scoped at `encoder`).
  init(config c: PointMAEConfig, source: ParameterSource) {
    let w = PointMAEConfig.encoderWidths
    firstConv = source.child("first_conv") { PointNetStage(3, w.first, w.second, source: $0) }
    secondConv = source.child("second_conv") {
      PointNetStage(2 * w.second, w.third, c.encoderDims, source: $0)
    }
    outputs = c.encoderDims
    super.init()
    source.registerEntries(into: self)
  }

  /// Groups per slice when the encoder runs in slices (see `callAsFunction`): 256 groups of 32
  /// points make the widest activation [8192, 512], 16 MiB, enough rows for full-speed GEMMs.
  public var groupsPerSlice = 256

  /// Tokens [B, G, C] of the neighbourhoods [B, G, S, 3].
  ///
  /// Without a tape and with both BatchNorms on their running statistics (inference), every
  /// group's token depends on that group alone, so the groups run in slices of
  /// `groupsPerSlice`: the [B·G·S, 512] activations of a large batch (128 MiB each at batch 32)
  /// never exist whole, and the tokens are the same.
  public func callAsFunction(_ neighbourhoods: Tensor) -> Tensor {
    let (b, g, s) = (neighbourhoods.shape[0], neighbourhoods.shape[1], neighbourhoods.shape[2])
    let rows = b * g
    let groups = neighbourhoods.reshaped([rows, s, 3])
    let slice = Swift.max(1, groupsPerSlice)
    guard rows > slice, !GradMode.isEnabled, !firstConv.norm.isTraining,
      !secondConv.norm.isTraining
    else { return tokens(groups).reshaped([b, g, outputs]) }
    let parts = stride(from: 0, to: rows, by: slice).map { start in
      tokens(groups.narrow(0, start: start, length: Swift.min(slice, rows - start)))
    }
    return Tensor.concat(parts, axis: 0).reshaped([b, g, outputs])
  }

  /// Tokens [R, C] of R groups [R, S, 3].
  ///
  /// The official code concatenates each group's maximum before every point's features and runs
  /// `second_conv.0` on the 512 channels. The maximum is the same for all S points of a group,
  /// so its half of that convolution runs once per group instead (the weight's first 256
  /// columns), added to the points' half: a quarter fewer FLOPs in the mini-PointNet, and no
  /// [R·S, 512] concatenation to build or keep for backward. The sum is the same up to the
  /// order of the additions.
  func tokens(_ groups: Tensor) -> Tensor {
    let (rows, s) = (groups.shape[0], groups.shape[1])
    // Channels last: PyTorch's [BG, C, S] convolutions are per-point linear maps over rows.
    let local = firstConv(groups.reshaped([rows * s, 3]))
    let width = local.shape[1]
    let conv = secondConv.conv1
    let hidden = conv.weight.shape[0]
    let weight = conv.weight.reshaped([hidden, 2 * width])
    let globalPart = local.reshaped([rows, s, width]).max(axis: 1)
      .linear(weight: weight.narrow(1, start: 0, length: width), bias: conv.bias)
    let pointPart = local.linear(weight: weight.narrow(1, start: width, length: width))
    let joined = (pointPart.reshaped([rows, s, hidden]) + globalPart.unsqueezed(1))
      .reshaped([rows * s, hidden])
    let features = secondConv.conv2(secondConv.norm(joined).relu()).reshaped([rows, s, outputs])
    return features.max(axis: 1)
  }
}

/// Point-MAE's `pos_embed`: `nn.Sequential(Linear(3, 128), GELU, Linear(128, D))` of the group
/// centres, its layers named `0` and `2`.
public final class PointPositionEmbedding: Module {
  /// 3 → 128 (`0`).
  public let fc1: Linear
  /// 128 → D (`2`), after the exact GELU (`1`).
  public let fc2: Linear

  /// The position MLP of `c`, its tensors from `source` (scoped at `pos_embed`).
  init(config c: PointMAEConfig, source: ParameterSource) {
    fc1 = source.linear("0", 3, PointMAEConfig.positionHidden)
    fc2 = source.linear("2", PointMAEConfig.positionHidden, c.transDim)
    super.init()
    source.registerEntries(into: self)
  }

  /// Positions [..., D] of centres [..., 3]; backward rebuilds the GELU rather than keeping it.
  public func callAsFunction(_ centres: Tensor) -> Tensor {
    fc1(centres).activationLinear(.gelu, weight: fc2.weight, bias: fc2.bias)
  }
}

/// Point-MAE's `TransformerEncoder`: the blocks, under `blocks` (so their tensors read
/// `blocks.blocks.<i>.…`). Positions are added before each block by the model, not here.
public final class PointMAEBlocks: Module {
  /// The blocks (timm's `Block`).
  public let blocks: ModuleList<ViTBlock>

  /// `c.depth` blocks, their tensors from `source` (scoped at the model's `blocks`).
  init(config c: PointMAEConfig, source: ParameterSource) {
    let vit = c.blockConfig
    blocks = source.child("blocks") { scope in
      ModuleList(
        (0..<c.depth).map { i in
          ViTBlock(index: i, config: vit, source: scope.scoped(String(i)))
        })
    }
    super.init()
    source.registerEntries(into: self)
  }
}

/// Point-MAE's `cls_head_finetune`: `Linear(2D, 256)`, BatchNorm1d, ReLU, Dropout(0.5),
/// `Linear(256, 256)`, BatchNorm1d, ReLU, Dropout(0.5), `Linear(256, classes)`, its layers with
/// tensors named `0`, `1`, `4`, `5` and `8` as in the state dict.
public final class PointMAEClassifier: Module, UnaryModule {
  /// 2·D → 256 (`0`).
  public let fc1: Linear
  /// BatchNorm (`1`).
  public let norm1: TrackedBatchNorm
  /// 256 → 256 (`4`).
  public let fc2: Linear
  /// BatchNorm (`5`).
  public let norm2: TrackedBatchNorm
  /// 256 → classes (`8`).
  public let fc3: Linear
  /// The dropout stream (training mode only).
  public var generator = RandomGenerator(seed: 0)

  /// The classifier of `c`, its tensors from `source` (scoped at `cls_head_finetune`).
  init(config c: PointMAEConfig, source: ParameterSource) {
    let hidden = PointMAEConfig.headHidden
    func batchNorm(_ name: String) -> TrackedBatchNorm {
      source.child(name) {
        TrackedBatchNorm(
          hidden, eps: PointMAEConfig.batchNormEps, momentum: PointMAEConfig.batchNormMomentum,
          source: $0)
      }
    }
    fc1 = source.linear("0", 2 * c.transDim, hidden)
    norm1 = batchNorm("1")
    fc2 = source.linear("4", hidden, hidden)
    norm2 = batchNorm("5")
    fc3 = source.linear("8", hidden, c.numClasses)
    super.init()
    source.registerEntries(into: self)
  }

  /// Logits [B, classes] of features [B, 2·D]; dropout only in training mode.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    var h = norm1(fc1(x)).relu().sampleDropout(p: 0.5, training: isTraining, generator: &generator)
    h = norm2(fc2(h)).relu().sampleDropout(p: 0.5, training: isTraining, generator: &generator)
    return fc3(h)
  }
}

// MARK: - The model

/// Point-MAE's fine-tuning model (`PointTransformer`), a `SequenceBackbone` over point clouds
/// [B, N, 3].
///
/// Forward, as the official code: `Group` (G centres by farthest point sampling, each with its
/// S nearest points minus the centre; see `PointOps.group`) → `encoder` (one token per group) →
/// `[cls_token; tokens]` with positions `[cls_pos; pos_embed(centres)]` added before every block
/// → `norm` → features `concat[x[:, 0], max over the group tokens]` [B, 2·D] →
/// `cls_head_finetune` when the model has classes.
///
/// The FPS is pointnet2_ops' `furthest_point_sample`, which the official `misc.fps` calls: it
/// starts at point 0 and never picks a later point within 1e-3 of the origin in squared norm;
/// Graft's `PointOps.group` does the same (`skipNearOrigin`). The kNN sorts neighbours by
/// distance (KNN_CUDA's order), ties to the lower index.
///
/// State-dict names are the official ones (`cls_token`, `cls_pos`,
/// `encoder.first_conv.0.weight` [128, 3, 1], `encoder.first_conv.1.running_mean`,
/// `pos_embed.0.weight`, `blocks.blocks.0.attn.qkv.weight`, `norm.weight`,
/// `cls_head_finetune.8.bias`, …), BatchNorm buffers included, so a fine-tuned checkpoint loads
/// as it is once `Tools/convert_point_mae.py` has stripped its `base_model.` prefix.
///
/// The model starts in evaluation mode, as a frozen backbone runs (BatchNorm on its running
/// statistics, no dropout in the classifier), unlike a fresh PyTorch module; `train()` switches
/// it to batch statistics. Tuning methods keep the frozen backbone in evaluation mode.
public final class PointMAE: Module, SequenceBackbone {
  /// The configuration the model was built with.
  public let config: PointMAEConfig
  /// Class token, [1, 1, D].
  public let clsToken: Tensor
  /// Class token position, [1, 1, D].
  public let clsPos: Tensor
  /// The mini-PointNet.
  public let encoder: PointMAEEncoder
  /// The position MLP of the group centres.
  public let posEmbed: PointPositionEmbedding
  /// The transformer blocks (`blocks.blocks.<i>`).
  public let blocks: PointMAEBlocks
  /// Final LayerNorm.
  public let norm: LayerNorm
  /// The classifier, when `config.numClasses > 0`.
  public let clsHeadFinetune: PointMAEClassifier?

  /// A model with fresh parameters initialised as the official `_init_weights` (training from
  /// scratch): trunc-normal 0.02 linear and convolution weights and the two tokens, zero biases,
  /// LayerNorm and BatchNorm ones and zeros, running statistics 0 and 1. Throws
  /// `PointMAEConfigError` for an impossible configuration.
  public convenience init(config: PointMAEConfig, generator: inout RandomGenerator) throws {
    try config.validate()
    let source = ParameterSource(generator: generator)
    self.init(checked: config, source: source)
    generator = source.generator
  }

  /// A model whose parameters and buffers are `weights`' tensors themselves (no copy; LayerNorm
  /// vectors excepted), named as the official state dict. Every name and shape is checked:
  /// anything missing, unexpected or of the wrong shape throws `StateDictError` (with `source`
  /// as its origin); an impossible configuration throws `PointMAEConfigError`.
  public convenience init(
    config: PointMAEConfig, weights: [String: Tensor], source: String? = nil
  ) throws {
    try config.validate()
    let parameters = ParameterSource(weights: weights)
    self.init(checked: config, source: parameters)
    if let error = parameters.stateDictError(source: source) { throw error }
  }

  /// The state-dict names and shapes of a model of `config`: recorded while building it on a
  /// source that holds no values.
  static func recordedShapes(_ config: PointMAEConfig) -> [(name: String, shape: [Int])] {
    let recorder = ParameterSource.recording()
    _ = PointMAE(checked: config, source: recorder)
    return recorder.requested
  }

  private init(checked c: PointMAEConfig, source: ParameterSource) {
    config = c
    let d = c.transDim
    clsToken = source.take("cls_token", [1, 1, d], .truncatedNormal(std: 0.02))
    clsPos = source.take("cls_pos", [1, 1, d], .truncatedNormal(std: 0.02))
    encoder = source.child("encoder") { PointMAEEncoder(config: c, source: $0) }
    posEmbed = source.child("pos_embed") { PointPositionEmbedding(config: c, source: $0) }
    blocks = source.child("blocks") { PointMAEBlocks(config: c, source: $0) }
    norm = source.layerNorm("norm", d, eps: PointMAEConfig.normEps)
    clsHeadFinetune =
      c.numClasses > 0
      ? source.child("cls_head_finetune") { PointMAEClassifier(config: c, source: $0) } : nil
    super.init()
    source.registerEntries(into: self)
    eval()
  }

  // MARK: SequenceBackbone

  /// Token width D.
  public var width: Int { config.transDim }
  /// 2·D: the class token and the maximum over the group tokens, concatenated.
  public var featureWidth: Int { 2 * config.transDim }
  /// Number of blocks.
  public var depth: Int { config.depth }
  /// The class token.
  public var prefixTokens: Int { 1 }
  /// 3·S: the coordinates one group token is embedded from.
  public var embeddingFanIn: Int { 3 * config.groupSize }
  /// Rows may be inserted, blocks call their inner hooks, and side blocks can be pruned from
  /// the blocks; the input is not an image.
  public var capabilities: BackboneCapabilities {
    [.tokenInsertion, .blockInternals, .reducibleBlocks]
  }
  /// `Point-MAE`.
  public var familyName: String { "Point-MAE" }

  /// The groups of `points` [B, N, 3] (N ≥ `numGroup` and ≥ `groupSize`): neighbourhoods, FPS
  /// centres and their indices, as the official `Group`.
  public func group(_ points: Tensor) -> PointGroups {
    let c = config
    precondition(
      points.rank == 3 && points.shape[2] == 3,
      "Point-MAE: input \(points.shape) must be points [B, N, 3]")
    precondition(
      points.shape[1] >= Swift.max(c.numGroup, c.groupSize),
      "Point-MAE: clouds of \(points.shape[1]) points are too small for \(c.numGroup) groups of "
        + "\(c.groupSize)")
    return PointOps.group(points, groups: c.numGroup, size: c.groupSize, skipNearOrigin: true)
  }

  /// Groups, tokens and positions of `points` [B, N, 3]: `[cls_token; encoder(groups)]` with
  /// layout `.points(centres:)` and positions `[cls_pos; pos_embed(centres)]`, which `block`
  /// adds before every block.
  public func embed(_ points: Tensor) -> EmbeddedTokens {
    let groups = group(points)
    let b = points.shape[0]
    let d = config.transDim
    let tokens = encoder(groups.neighbourhoods)
    let x = Tensor.concat([clsToken.broadcast(to: [b, 1, d]), tokens], axis: 1)
    let positions = Tensor.concat(
      [clsPos.broadcast(to: [b, 1, d]), posEmbed(groups.centres)], axis: 1)
    return EmbeddedTokens(
      tokens: x, layout: .points(centres: groups.centres), positions: positions)
  }

  /// Block `index` of `x + positions` (the official `block(x + pos)`): the pass lays the
  /// positions out for the current rows, with zeros where hooks inserted rows.
  public func block(_ index: Int, _ x: Tensor, pass: ForwardPass?) -> Tensor {
    var x = x
    if let positions = pass?.positions(for: x) { x = x + positions }
    return blocks.blocks[index](x, pass: pass)
  }

  /// The final LayerNorm.
  public func finalNorm(_ x: Tensor) -> Tensor { norm(x) }

  /// `concat[row 0, max over the rows after the first prefixTokens]`, [B, 2·D]: the class
  /// token and the maximum over the group tokens (prompts that hooks inserted before them are
  /// left out of the maximum).
  public func pool(_ tokens: Tensor, prefixTokens: Int) -> Tensor {
    let cls = tokens.narrow(1, start: 0, length: 1).squeezed(1)
    let rest = tokens.narrow(1, start: prefixTokens, length: tokens.shape[1] - prefixTokens)
    return Tensor.concat([cls, rest.max(axis: 1)], axis: 1)
  }

  /// The layer at `site`: `attn.qkv`, `attn.proj`, `mlp.fc1` or `mlp.fc2` of the block.
  public func linearLayer(at site: LinearSite) -> Linear? {
    guard blocks.blocks.indices.contains(site.block) else { return nil }
    return blocks.blocks[site.block].linear(site.role)
  }

  /// `blocks.blocks.<i>.attn.qkv`, `….attn.proj`, `….mlp.fc1`, `….mlp.fc2`.
  public func linearPath(at site: LinearSite) -> String? {
    guard blocks.blocks.indices.contains(site.block) else { return nil }
    return "blocks.blocks.\(site.block).\(ViTBlock.path(of: site.role))"
  }

  /// The official names: every `*.bias` (convolutions, BatchNorm shifts, position MLP, blocks);
  /// the LayerNorms `blocks.blocks.*.norm1/2` and `norm` (LN-tuning tunes LayerNorms; the
  /// mini-PointNet's BatchNorms are not among them); the class token with its own position
  /// (`cls_token`, `cls_pos`); the classifier `cls_head_finetune`.
  public func parameterPatterns(_ role: ParameterRole) -> [String] {
    switch role {
    case .biases: ["*.bias"]
    case .norms: ["blocks.blocks.*.norm1.*", "blocks.blocks.*.norm2.*", "norm.*"]
    case .blockNorms: ["blocks.blocks.*.norm*"]
    case .prefixTokens: ["cls_token", "cls_pos"]
    case .classifier: ["cls_head_finetune.*"]
    }
  }

  /// `ViTBlock`s of width D / `reduction` for LST, with the blocks' heads, MLP ratio, qkv
  /// without bias and LayerNorm ε 1e-5; pruned from the blocks and the final `norm`, or fresh.
  /// See `ViTSideBlocks.reduced`. The side network gets no positions: they are D wide.
  public func reducedBlocks(
    _ layers: [Int], reduction: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks {
    try ViTSideBlocks.reduced(
      blocks: Array(blocks.blocks), finalNorm: norm, config: config.blockConfig, layers: layers,
      reduction: reduction, pruned: pruned, generator: &generator)
  }

  // MARK: Convenience forwards

  /// Pooled features [B, 2·D] of `points` [B, N, 3].
  public func features(_ points: Tensor) -> Tensor {
    forward(points, hiddenStates: false).features
  }

  /// Logits [B, classes] of a forward pass's output (`cls_head_finetune` on the features); the
  /// features themselves when the model has no head.
  public func logits(_ output: BackboneOutput) -> Tensor {
    clsHeadFinetune.map { $0(output.features) } ?? output.features
  }

  /// Logits [B, classes] of `points` [B, N, 3] (the official `forward`), or the features
  /// without a head.
  public func callAsFunction(_ points: Tensor) -> Tensor {
    logits(forward(points, hiddenStates: false))
  }

  // MARK: Model folders

  /// Loads a Point-MAE model folder (`config.json` naming `"architecture": "point_mae"`, and
  /// `model.safetensors` with the official state-dict names). Throws `FileError` naming the file
  /// for a missing or malformed config (the `PointMAEConfigError` message inside) or a missing
  /// weights file, `SafetensorsError` for a malformed weights file, and `StateDictError` (its
  /// source the weights file) listing every missing, unexpected and mis-shaped tensor.
  public static func load(folder: URL) throws -> PointMAE {
    let configURL = folder.appendingPathComponent("config.json")
    let config: PointMAEConfig
    do {
      config = try PointMAEConfig(json: try ModelFolderConfig.read(configURL))
    } catch let e as PointMAEConfigError {
      throw FileError(path: configURL.path, message: e.message)
    }
    let weightsURL = folder.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      throw FileError(
        path: weightsURL.path,
        message: "no such file (a Point-MAE model folder has config.json and model.safetensors; "
          + "Tools/convert_point_mae.py makes one from an official .pth)")
    }
    let file = try SafetensorsFile(contentsOf: weightsURL)
    return try PointMAE(config: config, weights: try file.tensors(), source: weightsURL.path)
  }

  /// Writes the model as a folder `load(folder:)` reads: `config.json` and `model.safetensors`
  /// (every parameter and buffer, Float32), atomically each; creates the folder if needed.
  public func save(folder: URL) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try AtomicFile.write(
      Data(config.configJSON.utf8), to: folder.appendingPathComponent("config.json"))
    try Safetensors.write(
      stateDict(), metadata: ["format": "pt"],
      to: folder.appendingPathComponent("model.safetensors"))
  }
}

/// Reading the `config.json` of a model folder as plain JSON, to tell model families apart.
enum ModelFolderConfig {
  /// The top-level object of the JSON file at `url`; throws `FileError` naming it.
  static func read(_ url: URL) throws -> [String: JSONValue] {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw FileError(path: url.path, message: "no such file (a model folder has one)")
    }
    let data: Data
    do {
      data = try MappedFile.contents(of: url)
    } catch {
      throw FileError(path: url.path, message: "cannot read: \(error.message)")
    }
    guard let json = try? JSONDecoder().decode(JSONValue.self, from: data) else {
      throw FileError(path: url.path, message: "not valid JSON")
    }
    guard let object = json.objectValue else {
      throw FileError(path: url.path, message: "the top level is not a JSON object")
    }
    return object
  }

  /// True when the folder's `config.json` names Point-MAE (false when it is missing or
  /// unreadable: the timm reader then reports the problem).
  static func isPointMAE(_ folder: URL) -> Bool {
    guard let json = try? read(folder.appendingPathComponent("config.json")) else { return false }
    return PointMAEConfig.describesPointMAE(json)
  }
}
