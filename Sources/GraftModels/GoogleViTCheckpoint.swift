import Foundation

// Google's JAX/Flax ViT checkpoints (.npz) mapped to timm's VisionTransformer state-dict names,
// as timm's `_load_weights` (timm/models/vision_transformer.py) does:
//
//   embedding/kernel [kh, kw, C, D] (HWIO)          → patch_embed.proj.weight [D, C, kh, kw]
//   embedding/bias, cls, posembed pos_embedding      → patch_embed.proj.bias, cls_token, pos_embed
//   encoderblock_i/LayerNorm_a|b/scale|bias          → blocks.i.norm1|norm2.weight|bias
//   …/MultiHeadDotProductAttention_k/{query,key,value}/kernel [D, heads, hd]
//                                                    → blocks.i.attn.qkv.weight [3·D, D]
//     (each flattened to [D, heads·hd], transposed, stacked q, k, v; biases [heads, hd] flattened)
//   …/MultiHeadDotProductAttention_k/out/kernel [heads, hd, D] → blocks.i.attn.proj.weight [D, D]
//   …/MlpBlock_m/Dense_0|1/kernel [in, out]          → blocks.i.mlp.fc1|fc2.weight [out, in]
//   Transformer/encoder_norm, head                   → norm, head (Dense kernels transposed)
//
// Two layouts: the original ViT release (LayerNorm_0, MultiHeadDotProductAttention_1,
// LayerNorm_2, MlpBlock_3; `Transformer/posembed_input/pos_embedding`), and big_vision's
// (LayerNorm_0/1, MultiHeadDotProductAttention_0, MlpBlock_0; top-level `pos_embedding`; often a
// `params/` prefix, and blocks scanned into one array per parameter with a leading depth axis at
// `Transformer/encoderblock/`). timm picks the indices from the layout; here they are read off
// the archive's names, which gives the same answer for both layouts.

/// A `.npz` that is not a Google ViT checkpoint Graft can map, or a mapping request it cannot
/// serve; the description names the file.
public struct GoogleViTCheckpointError: Error, CustomStringConvertible, Sendable {
  /// What went wrong.
  public enum Kind: String, Sendable, Equatable {
    /// No `embedding/kernel` under any known prefix: not a ViT checkpoint.
    case notAViTCheckpoint
    /// An array the mapping needs is absent.
    case missingArray
    /// An array has a shape that does not fit the rest of the checkpoint.
    case unexpectedShape
    /// A valid variant that this mapping does not handle (hybrid ResNet stems, NaFlex dense patch
    /// embeddings, patch or input-channel resampling).
    case unsupported
  }

  /// What went wrong.
  public let kind: Kind
  /// The checkpoint file.
  public let path: String
  /// The problem, in words.
  public let message: String

  /// `path: message`.
  public var description: String { "\(path): \(message)" }
}

/// Reads Google's JAX ViT checkpoints (original ViT release, AugReg, big_vision/SigLIP-style) into
/// timm's state-dict names and layouts.
public enum GoogleViTCheckpoint {
  /// A height and a width (of a patch, or of the grid of patch positions).
  public struct Size: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Rows.
    public var height: Int
    /// Columns.
    public var width: Int
    /// `height × width`.
    public init(height: Int, width: Int) {
      self.height = height
      self.width = width
    }
    /// A square `side × side`.
    public init(_ side: Int) { self.init(height: side, width: side) }
    /// `"H×W"`.
    public var description: String { "\(height)×\(width)" }
  }

  /// Which naming scheme a checkpoint uses.
  public enum Layout: String, Sendable {
    /// The original ViT/AugReg release: `Transformer/encoderblock_N/MlpBlock_3/…`.
    case original
    /// big_vision: `MultiHeadDotProductAttention_0`, `MlpBlock_0`, top-level `pos_embedding`.
    case bigVision
  }

  /// What a checkpoint holds, read from its array names and shapes.
  public struct Architecture: Equatable, Sendable {
    /// The naming scheme.
    public var layout: Layout
    /// The prefix in front of every name: `""`, `"params/"`, `"params/img/"` or `"opt/target/"`.
    public var prefix: String
    /// True when each block parameter is one array with a leading depth axis.
    public var scannedBlocks: Bool
    /// Number of transformer blocks.
    public var depth: Int
    /// Token width D.
    public var width: Int
    /// Attention heads, from the query kernel's shape [D, heads, head_dim]; nil when the kernel
    /// is stored flat.
    public var heads: Int?
    /// The MLP's hidden width.
    public var mlpDim: Int
    /// Patch size (the patch-embedding kernel's spatial extent).
    public var patchSize: Size
    /// Input channels of the patch embedding.
    public var inChannels: Int
    /// True when there is a class token (`cls`).
    public var hasClassToken: Bool
    /// The grid of patch positions the position table was trained for.
    public var positionGrid: Size
    /// Classifier outputs; 0 when there is no `head`.
    public var numClasses: Int
    /// Width of the `pre_logits` layer of some in21k checkpoints, if present. timm (and this
    /// mapping) leaves it out.
    public var representationSize: Int?
    /// True when the checkpoint has a MAP (attention-pooling) head, `MAPHead_0`.
    public var hasMAPHead: Bool

    /// The image size the position table fits: grid × patch.
    public var imageSize: Size {
      Size(
        height: positionGrid.height * patchSize.height,
        width: positionGrid.width * patchSize.width)
    }

    /// timm's `global_pool` for this checkpoint: `"map"` with a MAP head, `"token"` with a class
    /// token, else `"avg"`.
    public var globalPool: String { hasMAPHead ? "map" : hasClassToken ? "token" : "avg" }

    /// Tokens in front of the patch tokens in the position table (the class token).
    public var prefixTokens: Int { hasClassToken ? 1 : 0 }
  }

  /// The model the weights are for, where it differs from the checkpoint.
  public struct Target: Sendable, Equatable {
    /// The model's patch grid; the position table is resampled to it when it differs (bilinear,
    /// no antialiasing, class token kept, as timm's loader does). nil keeps the checkpoint's.
    public var gridSize: Size?
    /// The model's classifier size. As in timm, the checkpoint's `head` is mapped only when it
    /// has exactly this many outputs (0: no head); otherwise it is left out, for the model to
    /// keep its own. nil maps whatever head the checkpoint has.
    public var numClasses: Int?

    /// A target; the defaults take everything as the checkpoint has it.
    public init(gridSize: Size? = nil, numClasses: Int? = nil) {
      self.gridSize = gridSize
      self.numClasses = numClasses
    }
  }

  /// Reads the architecture off the archive's names and shapes (no element data is read).
  public static func inferredArchitecture(_ archive: NumpyArchive) throws -> Architecture {
    try Names(archive).architecture
  }

  /// The checkpoint's weights under timm's VisionTransformer names (`cls_token`, `pos_embed`,
  /// `patch_embed.proj.weight`, `blocks.{i}.attn.qkv.weight`, …, `norm.weight`, `head.weight`;
  /// `attn_pool.*` for a MAP head) in PyTorch layouts, ready for `Module.loadStateDict`.
  ///
  /// `pre_logits` is left out, as timm does; so is `head` when `target.numClasses` differs from
  /// the checkpoint's. The patch size and input channels must be the model's (timm can resample
  /// those; this mapping cannot, and `loadStateDict` reports the mismatch).
  public static func timmStateDict(from archive: NumpyArchive, target: Target = Target())
    throws -> [String: Tensor]
  {
    let names = try Names(archive)
    let arch = names.architecture
    var out: [String: Tensor] = [:]
    func put(_ key: String, _ tensor: Tensor) {
      tensor.name = key
      out[key] = tensor
    }
    let p = arch.prefix

    // Patch embedding: HWIO → OIHW.
    put("patch_embed.proj.weight", try names.array(p + "embedding/kernel").permuted([3, 2, 0, 1]))
    put("patch_embed.proj.bias", try names.array(p + "embedding/bias"))
    if arch.hasClassToken { put("cls_token", try names.array(p + "cls")) }
    put("pos_embed", try positionTable(names, arch: arch, target: target))

    let d = arch.width
    for (sub, key) in [(names.norm1, "norm1"), (names.norm2, "norm2")] {
      let weights = try names.perBlock(sub + "/scale")
      let biases = try names.perBlock(sub + "/bias")
      for i in 0..<arch.depth {
        put("blocks.\(i).\(key).weight", weights[i])
        put("blocks.\(i).\(key).bias", biases[i])
      }
    }
    let mha = names.attention + "/"
    let qkv = try ["query", "key", "value"].map { try names.perBlock(mha + $0 + "/kernel") }
    let qkvBias = try ["query", "key", "value"].map { try names.perBlock(mha + $0 + "/bias") }
    let outKernel = try names.perBlock(mha + "out/kernel")
    let outBias = try names.perBlock(mha + "out/bias")
    for i in 0..<arch.depth {
      put("blocks.\(i).attn.qkv.weight", Tensor.concat(qkv.map { inputKernel($0[i], d) }, axis: 0))
      put("blocks.\(i).attn.qkv.bias", Tensor.concat(qkvBias.map { $0[i].reshaped([-1]) }, axis: 0))
      put("blocks.\(i).attn.proj.weight", outputKernel(outKernel[i]))
      put("blocks.\(i).attn.proj.bias", outBias[i])
    }
    for r in 0..<2 {
      let kernels = try names.perBlock(names.mlp + "/Dense_\(r)/kernel")
      let biases = try names.perBlock(names.mlp + "/Dense_\(r)/bias")
      for i in 0..<arch.depth {
        put("blocks.\(i).mlp.fc\(r + 1).weight", kernels[i].transposed())
        put("blocks.\(i).mlp.fc\(r + 1).bias", biases[i])
      }
    }

    put("norm.weight", try names.array(p + "Transformer/encoder_norm/scale"))
    put("norm.bias", try names.array(p + "Transformer/encoder_norm/bias"))
    if arch.numClasses > 0 && (target.numClasses == nil || target.numClasses == arch.numClasses) {
      put("head.weight", try names.array(p + "head/kernel").transposed())
      put("head.bias", try names.array(p + "head/bias"))
    }

    if arch.hasMAPHead {
      // timm's AttentionPoolLatent: latent probe, q, fused kv, proj, norm, mlp.
      let m = p + "MAPHead_0/"
      let a = m + "MultiHeadDotProductAttention_0/"
      put("attn_pool.latent", try names.array(m + "probe"))
      put("attn_pool.q.weight", inputKernel(try names.array(a + "query/kernel"), d))
      put("attn_pool.q.bias", try names.array(a + "query/bias").reshaped([-1]))
      put(
        "attn_pool.kv.weight",
        Tensor.concat(
          try ["key", "value"].map { inputKernel(try names.array(a + $0 + "/kernel"), d) },
          axis: 0))
      put(
        "attn_pool.kv.bias",
        Tensor.concat(
          try ["key", "value"].map { try names.array(a + $0 + "/bias").reshaped([-1]) }, axis: 0)
      )
      put("attn_pool.proj.weight", outputKernel(try names.array(a + "out/kernel")))
      put("attn_pool.proj.bias", try names.array(a + "out/bias"))
      put("attn_pool.norm.weight", try names.array(m + "LayerNorm_0/scale"))
      put("attn_pool.norm.bias", try names.array(m + "LayerNorm_0/bias"))
      for r in 0..<2 {
        put(
          "attn_pool.mlp.fc\(r + 1).weight",
          try names.array(m + "MlpBlock_0/Dense_\(r)/kernel").transposed())
        put("attn_pool.mlp.fc\(r + 1).bias", try names.array(m + "MlpBlock_0/Dense_\(r)/bias"))
      }
    }
    return out
  }

  /// A query/key/value kernel [D, heads, hd] (or [D, heads·hd]) as a Linear weight [heads·hd, D].
  private static func inputKernel(_ kernel: Tensor, _ d: Int) -> Tensor {
    kernel.reshaped([d, -1]).transposed()
  }

  /// An attention output kernel [heads, hd, D] (or [heads·hd, D]) as a Linear weight
  /// [D, heads·hd].
  private static func outputKernel(_ kernel: Tensor) -> Tensor {
    kernel.reshaped([-1, kernel.shape.last!]).transposed()
  }

  /// The position table [1, prefix + H·W, D], resampled to `target.gridSize` when it differs.
  private static func positionTable(_ names: Names, arch: Architecture, target: Target) throws
    -> Tensor
  {
    let table = try names.array(names.positionName)
    guard let grid = target.gridSize, grid != arch.positionGrid else { return table }
    guard grid.height >= 1 && grid.width >= 1 else {
      throw GoogleViTCheckpointError(
        kind: .unsupported, path: names.path, message: "target patch grid \(grid) is empty")
    }
    let d = arch.width
    let prefix = arch.prefixTokens
    let tokens = arch.positionGrid.height * arch.positionGrid.width
    let patches = table.narrow(1, start: prefix, length: tokens)
      .reshaped([1, arch.positionGrid.height, arch.positionGrid.width, d])
      .permuted([0, 3, 1, 2])
      .resized(to: (grid.height, grid.width), mode: .bilinear)
      .permuted([0, 2, 3, 1])
      .reshaped([1, grid.height * grid.width, d])
    guard prefix > 0 else { return patches }
    return Tensor.concat([table.narrow(1, start: 0, length: prefix), patches], axis: 1)
  }

  /// The archive's names resolved to one layout, and the architecture they imply.
  private struct Names {
    let archive: NumpyArchive
    let path: String
    let architecture: Architecture
    /// Where the position table is.
    let positionName: String
    /// Within a block: the two LayerNorms, the attention and the MLP (`LayerNorm_0`, …).
    let norm1: String
    let norm2: String
    let attention: String
    let mlp: String

    func fail(_ kind: GoogleViTCheckpointError.Kind, _ message: String)
      -> GoogleViTCheckpointError
    {
      GoogleViTCheckpointError(kind: kind, path: path, message: message)
    }

    init(_ archive: NumpyArchive) throws {
      self.archive = archive
      let path = archive.url.path
      self.path = path
      func fail(_ kind: GoogleViTCheckpointError.Kind, _ message: String)
        -> GoogleViTCheckpointError
      {
        GoogleViTCheckpointError(kind: kind, path: path, message: message)
      }
      func shape(_ name: String) throws -> [Int] {
        guard archive.contains(name) else {
          throw fail(.missingArray, "the checkpoint has no array '\(name)'")
        }
        return try archive.info(name).shape
      }

      // The prefix, in the order timm tries them.
      guard
        let prefix = ["opt/target/", "params/", "params/img/", ""].first(where: {
          archive.contains($0 + "embedding/kernel")
        })
      else {
        throw fail(
          .notAViTCheckpoint,
          "no 'embedding/kernel' (nor under 'params/', 'params/img/', 'opt/target/'): "
            + "not a Google ViT checkpoint")
      }
      if archive.contains(prefix + "conv_root/kernel") {
        throw fail(.unsupported, "hybrid ResNet-ViT checkpoints are not supported")
      }
      let scanned = archive.contains(prefix + "Transformer/encoderblock/LayerNorm_0/scale")
      let bigVision =
        prefix.hasPrefix("params/") || archive.contains(prefix + "pos_embedding") || scanned
      positionName =
        prefix + (bigVision ? "pos_embedding" : "Transformer/posembed_input/pos_embedding")

      // Blocks: `encoderblock_0`, `encoderblock_1`, … or one scanned `encoderblock`.
      let blocksRoot = prefix + "Transformer/"
      var blockIndices = Set<Int>()
      var firstBlockParts = Set<String>()
      let firstBlock = scanned ? blocksRoot + "encoderblock/" : blocksRoot + "encoderblock_0/"
      for name in archive.names where name.hasPrefix(blocksRoot) {
        let rest = name.dropFirst(blocksRoot.count)
        if rest.hasPrefix("encoderblock_"), let slash = rest.firstIndex(of: "/"),
          let index = Int(rest[rest.index(rest.startIndex, offsetBy: 13)..<slash])
        {
          blockIndices.insert(index)
        }
        if name.hasPrefix(firstBlock),
          let part = name.dropFirst(firstBlock.count).split(
            separator: "/"
          ).first
        {
          firstBlockParts.insert(String(part))
        }
      }
      if !scanned {
        guard !blockIndices.isEmpty, blockIndices == Set(0..<blockIndices.count) else {
          throw fail(
            .missingArray,
            "encoder blocks \(blockIndices.sorted()) are not numbered 0..<\(blockIndices.count)")
        }
      }
      func numbered(_ kind: String) -> [String] {
        firstBlockParts.filter {
          $0.hasPrefix(kind + "_") && Int($0.dropFirst(kind.count + 1)) != nil
        }.sorted { Int($0.dropFirst(kind.count + 1))! < Int($1.dropFirst(kind.count + 1))! }
      }
      let norms = numbered("LayerNorm")
      let attentions = numbered("MultiHeadDotProductAttention")
      let mlps = numbered("MlpBlock")
      guard norms.count == 2, attentions.count == 1, mlps.count == 1 else {
        throw fail(
          .missingArray,
          "block '\(firstBlock)' should hold two LayerNorm_*, one MultiHeadDotProductAttention_* "
            + "and one MlpBlock_*; it holds \(firstBlockParts.sorted())")
      }
      norm1 = norms[0]
      norm2 = norms[1]
      attention = attentions[0]
      mlp = mlps[0]

      let embedding = try shape(prefix + "embedding/kernel")
      guard embedding.count == 4 else {
        throw fail(
          .unsupported,
          "'\(prefix)embedding/kernel' has shape \(embedding); only convolutional (HWIO) patch "
            + "embeddings are supported, not NaFlex dense ones")
      }
      let width = embedding[3]

      let depth: Int
      let normScale = try shape(firstBlock + norm1 + "/scale")
      if scanned {
        guard normScale.count == 2, normScale[1] == width else {
          throw fail(
            .unexpectedShape,
            "'\(firstBlock)\(norm1)/scale' has shape \(normScale), expected [depth, \(width)]")
        }
        depth = normScale[0]
      } else {
        depth = blockIndices.count
      }
      let lead = scanned ? 1 : 0  // the depth axis of scanned arrays
      let query = try shape(firstBlock + attention + "/query/kernel")
      guard query.count >= lead + 2, query[lead] == width else {
        throw fail(
          .unexpectedShape, "'\(firstBlock)\(attention)/query/kernel' has shape \(query)")
      }
      let heads = query.count == lead + 3 ? query[lead + 1] : nil
      let fc1 = try shape(firstBlock + mlp + "/Dense_0/kernel")
      guard fc1.count == lead + 2, fc1[lead] == width else {
        throw fail(.unexpectedShape, "'\(firstBlock)\(mlp)/Dense_0/kernel' has shape \(fc1)")
      }

      let hasClassToken = archive.contains(prefix + "cls")
      let table = try shape(positionName)
      let prefixTokens = hasClassToken ? 1 : 0
      guard table.count == 3, table[0] == 1, table[2] == width, table[1] >= prefixTokens else {
        throw fail(
          .unexpectedShape,
          "'\(positionName)' has shape \(table), expected [1, tokens, \(width)]")
      }
      let side = Int(Double(table[1] - prefixTokens).squareRoot().rounded())
      guard side * side == table[1] - prefixTokens else {
        throw fail(
          .unexpectedShape,
          "'\(positionName)' has \(table[1]) positions, not \(prefixTokens) + a square grid")
      }

      var numClasses = 0
      if archive.contains(prefix + "head/kernel") {
        numClasses = try shape(prefix + "head/bias").last ?? 0
      }
      var representationSize: Int? = nil
      if archive.contains(prefix + "pre_logits/bias") {
        representationSize = try shape(prefix + "pre_logits/bias").last
      }
      architecture = Architecture(
        layout: bigVision ? .bigVision : .original, prefix: prefix, scannedBlocks: scanned,
        depth: depth, width: width, heads: heads, mlpDim: fc1[lead + 1],
        patchSize: Size(height: embedding[0], width: embedding[1]), inChannels: embedding[2],
        hasClassToken: hasClassToken, positionGrid: Size(side), numClasses: numClasses,
        representationSize: representationSize,
        hasMAPHead: archive.contains(prefix + "MAPHead_0/probe"))
    }

    /// Array `name` as a tensor; a clear error when absent.
    func array(_ name: String) throws -> Tensor {
      guard archive.contains(name) else {
        throw fail(.missingArray, "the checkpoint has no array '\(name)'")
      }
      return try archive.array(name)
    }

    /// Block parameter `name` (relative to a block, e.g. `LayerNorm_0/scale`) for every block.
    func perBlock(_ name: String) throws -> [Tensor] {
      let root = architecture.prefix + "Transformer/"
      let depth = architecture.depth
      guard architecture.scannedBlocks else {
        return try (0..<depth).map { try array(root + "encoderblock_\($0)/" + name) }
      }
      let full = root + "encoderblock/" + name
      let stacked = try array(full)
      guard stacked.rank >= 1, stacked.shape[0] == depth else {
        throw fail(
          .unexpectedShape, "'\(full)' has shape \(stacked.shape), expected \(depth) blocks first")
      }
      return (0..<depth).map { stacked.narrow(0, start: $0, length: 1).squeezed(0) }
    }
  }
}
