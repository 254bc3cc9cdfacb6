import Foundation

// The protocol every tuning method attaches to, whatever the modality: a transformer encoder
// seen as embed → blocks → final norm → pool. A method never names a concrete model: it asks the
// backbone for its sizes, for the linear layer at a typed site, for the names of its norms, biases
// and classifier, and for what it offers (`BackboneCapabilities`), and it reads every per-pass
// value (the embedded tokens, the input, the token layout, the hidden states) from
// `BackboneOutput`. See the README's architecture section for the attach points.

// MARK: - Sites and roles

/// The role of a linear layer inside a transformer block (PEFT's per-architecture
/// target-module map, typed): methods name layers by role, the backbone maps each role to its
/// own layer and parameter path (`attn.qkv` in a timm ViT, `blocks.blocks.3.attn.qkv` in
/// Point-MAE).
public enum LinearRole: String, CaseIterable, Sendable {
  /// The fused query, key and value projection, D → 3·D (q, k, v in that order of rows).
  case qkv
  /// The attention output projection, D → D.
  case attentionOut
  /// The first MLP layer, D → hidden.
  case mlpIn
  /// The second MLP layer, hidden → D.
  case mlpOut
}

/// One linear layer inside a block: the block's index and the layer's role.
public struct LinearSite: Hashable, Sendable, CustomStringConvertible {
  /// Index of the block.
  public var block: Int
  /// Which of the block's linear layers.
  public var role: LinearRole

  /// The layer of role `role` in block `block`.
  public init(block: Int, role: LinearRole) {
    self.block = block
    self.role = role
  }

  /// `block 3 qkv`.
  public var description: String { "block \(block) \(role.rawValue)" }
}

/// Groups of backbone parameters that methods unfreeze or must leave alone; the backbone names
/// each group as `NamePattern` globs over its own parameter names.
public enum ParameterRole: Sendable {
  /// Every bias (BitFit).
  case biases
  /// Every normalisation layer's scale and shift (LN-tuning).
  case norms
  /// The normalisation layers inside the blocks only (HST).
  case blockNorms
  /// The learned prefix tokens and their own positions (`cls_token`, and Point-MAE's `cls_pos`),
  /// which IDPT trains.
  case prefixTokens
  /// The backbone's own classifier heads, which a method's new head replaces: never trained.
  case classifier
}

// MARK: - What a backbone offers, what hooks use

/// What a backbone offers beyond embed → blocks → norm → pool, as ggml backends declare the ops
/// they support. A method declares the capabilities it requires and `MethodRegistry.make`
/// refuses a backbone that lacks one, with an error naming both.
public struct BackboneCapabilities: OptionSet, Sendable, CustomStringConvertible {
  /// The raw bits.
  public let rawValue: Int
  /// Capabilities from bits.
  public init(rawValue: Int) { self.rawValue = rawValue }

  /// Hooks may insert rows into the sequence before or between blocks and report them with
  /// `ForwardPass.recordInsertion` (VPT's prompts, HST's meta tokens, IDPT's prompts).
  public static let tokenInsertion = BackboneCapabilities(rawValue: 1 << 0)
  /// Blocks call `ForwardPass.linear` for every linear layer and the residual-branch hooks
  /// (LoRA, adapters, MP+'s PSRP).
  public static let blockInternals = BackboneCapabilities(rawValue: 1 << 1)
  /// The input is an image [B, C, H, W] cut into patches on a 2-D grid (`TokenLayout.grid`),
  /// and the backbone conforms to `ImageBackbone` (HST's convolutional stem and stages).
  public static let imageGrid = BackboneCapabilities(rawValue: 1 << 2)
  /// `reducedBlocks` builds the backbone's own block type at a fraction of its width (LST's side
  /// network).
  public static let reducibleBlocks = BackboneCapabilities(rawValue: 1 << 3)

  /// Every capability with its name, in a fixed order.
  public static let named: [(BackboneCapabilities, String)] = [
    (.tokenInsertion, "token insertion"), (.blockInternals, "block internals"),
    (.imageGrid, "image patch grid"), (.reducibleBlocks, "width-reducible blocks"),
  ]

  /// The names of the capabilities in the set, comma-separated (`none` for the empty set).
  public var description: String {
    let names = Self.named.filter { contains($0.0) }.map(\.1)
    return names.isEmpty ? "none" : names.joined(separator: ", ")
  }
}

/// The attach points a set of hooks uses. A backbone runs its blocks on fused ops (which keep
/// less for backward) unless the hooks use a point inside the blocks.
public struct AttachPoints: OptionSet, Sendable, CustomStringConvertible {
  /// The raw bits.
  public let rawValue: Int
  /// Points from bits.
  public init(rawValue: Int) { self.rawValue = rawValue }

  /// The embedded sequence entering block 0.
  public static let tokens = AttachPoints(rawValue: 1 << 0)
  /// The sequence entering each block.
  public static let beforeBlock = AttachPoints(rawValue: 1 << 1)
  /// The output of each block.
  public static let afterBlock = AttachPoints(rawValue: 1 << 2)
  /// The output of each linear layer inside a block.
  public static let linear = AttachPoints(rawValue: 1 << 3)
  /// The attention and MLP residual branches inside a block.
  public static let residualBranches = AttachPoints(rawValue: 1 << 4)
  /// The points inside the blocks.
  public static let insideBlocks: AttachPoints = [.linear, .residualBranches]
  /// Every point.
  public static let all: AttachPoints = [
    .tokens, .beforeBlock, .afterBlock, .linear, .residualBranches,
  ]

  /// The names of the points in the set.
  public var description: String {
    let names: [(AttachPoints, String)] = [
      (.tokens, "tokens"), (.beforeBlock, "beforeBlock"), (.afterBlock, "afterBlock"),
      (.linear, "linear"), (.residualBranches, "residual branches"),
    ]
    let present = names.filter { contains($0.0) }.map(\.1)
    return present.isEmpty ? "none" : present.joined(separator: ", ")
  }
}

// MARK: - Tokens and outputs

/// How the tokens after the backbone's prefix rows relate to its input.
public enum TokenLayout {
  /// Patches of `frames` frames, each a `rows` × `columns` grid in row-major order (one frame
  /// for an image).
  case grid(frames: Int, rows: Int, columns: Int)
  /// One token per local group of points, with the groups' centres [B, G, 3].
  case points(centres: Tensor)
  /// A plain sequence with no geometry.
  case sequence

  /// The patch grid (rows, columns) of a single-frame grid; nil otherwise.
  public var patchGrid: Size2D? {
    if case .grid(1, let rows, let columns) = self { return Size2D(rows, columns) }
    return nil
  }
}

/// An embedded input: the sequence entering block 0, its layout, and the per-token positional
/// embedding that the backbone adds before every block (Point-MAE), if any.
public struct EmbeddedTokens {
  /// The sequence entering block 0, [B, N, D].
  public var tokens: Tensor
  /// What the tokens after the prefix rows are.
  public var layout: TokenLayout
  /// Added to the sequence before every block, [B or 1, N, D]; nil when the position is added
  /// once in the embedding (a ViT). Rows that hooks insert get no position.
  public var positions: Tensor?

  /// Wraps the parts.
  public init(tokens: Tensor, layout: TokenLayout, positions: Tensor? = nil) {
    self.tokens = tokens
    self.layout = layout
    self.positions = positions
  }
}

/// What a backbone's forward pass produces: the final tokens and features, and every per-pass
/// value a method's head may need (as timm's `forward_intermediates` and Hugging Face's
/// `hidden_states`), so no method keeps state between its hooks and its head.
public struct BackboneOutput {
  /// Every token after the final norm, [B, N, D] (before pooling; with `fc_norm` models the norm
  /// comes after pooling, so these are the last block's tokens).
  public var tokens: Tensor
  /// Pooled features, [B, featureWidth] (timm's pre-logits), or all tokens when the pool is
  /// `none`.
  public var features: Tensor
  /// The output of each block (what `afterBlock` received); empty when not asked for.
  public var hiddenStates: [Tensor]
  /// Leading rows that are not content tokens: the model's prefix tokens plus rows hooks
  /// inserted before the content.
  public var prefixTokenCount: Int
  /// The pass: the input, the embedded tokens, the layout and what hooks kept in `taps`.
  public var pass: ForwardPass

  /// Wraps the parts (a backbone's `forward`, or a feature cache giving back what it stored).
  public init(
    tokens: Tensor, features: Tensor, hiddenStates: [Tensor], prefixTokenCount: Int,
    pass: ForwardPass
  ) {
    self.tokens = tokens
    self.features = features
    self.hiddenStates = hiddenStates
    self.prefixTokenCount = prefixTokenCount
    self.pass = pass
  }

  /// The input of the pass (pixels [B, C, H, W] for an image backbone).
  public var input: Tensor { pass.input }
  /// The sequence entering block 0 as the embedding made it, before any hook.
  public var embedded: Tensor { pass.embedded.tokens }
  /// What the content tokens are.
  public var layout: TokenLayout { pass.embedded.layout }
  /// The patch grid (rows, columns) of a single-frame image input.
  public var patchGrid: Size2D? { layout.patchGrid }

  /// The content tokens alone (patches, point groups), [B, N − prefixTokenCount, D].
  public var patchTokens: Tensor {
    tokens.narrow(1, start: prefixTokenCount, length: tokens.shape[1] - prefixTokenCount)
  }
}

// MARK: - Hooks

/// Where a tuning method acts on a backbone's forward pass. Every requirement has a default that
/// changes nothing, so a method implements only the points it uses; `attachPoints` declares them.
///
/// The points, in the order a forward pass meets them:
/// - `tokens`: the embedded sequence [B, N, D] fed to block 0. VPT-shallow inserts prompt rows.
/// - `beforeBlock`: the input of block i. VPT-deep replaces its prompt rows; HST inserts meta
///   tokens; IDPT inserts prompts.
/// - inside block i: `linear` sees each linear layer's input and output and returns the output to
///   use (LoRA adds its low-rank term); `attentionBranch` and `mlpBranch` see a residual branch's
///   input (the residual stream before its norm) and output (after LayerScale, before the add)
///   and return the output to add (MP+'s PSRP, AdaptFormer's parallel adapter).
/// - `afterBlock`: the output of block i (HST keeps taps in `pass.taps` and removes its rows).
///
/// A hook that inserts or removes rows reports it on the pass (`recordInsertion`,
/// `recordRemoval`), so positions and pooling stay right; the pass checks the row count after
/// every hook.
public protocol BackboneHooks: AnyObject {
  /// The points these hooks use. Blocks run fused unless it contains `.linear` (and then only
  /// the halves with a site in `hookedLinearSites` run unfused).
  var attachPoints: AttachPoints { get }
  /// The sequence entering block 0.
  func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor
  /// The sequence entering block `index`.
  func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor
  /// The output of block `index`; what is returned feeds the next block.
  func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor
  /// The attention residual branch of block `index`: `input` is the residual stream, `output`
  /// the branch (after LayerScale) about to be added to it.
  func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor
  /// The MLP residual branch of block `index`, as `attentionBranch`.
  func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor
  /// A linear layer inside a block: `input` [..., in] and the layer's `output` [..., out].
  func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor
  /// The linear sites `linear(_:input:output:)` changes, or nil for any (the default). A block
  /// runs the half (attention or MLP) whose layers no hook changes on its fused ops.
  var hookedLinearSites: Set<LinearSite>? { get }
  /// Low-rank deltas the fused block adds to the layer at `site` itself (LoRA without dropout):
  /// a site with deltas need not be in `hookedLinearSites`, so its half stays fused.
  func lowRankDeltas(_ site: LinearSite) -> [LowRankDelta]
}

extension BackboneHooks {
  /// Every point: always correct (blocks run unfused); conformers declare what they use.
  public var attachPoints: AttachPoints { .all }
  /// Unchanged.
  public func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// Unchanged.
  public func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// Unchanged.
  public func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// Unchanged.
  public func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// Unchanged.
  public func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// Unchanged.
  public func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor { output }
  /// Any site may change.
  public var hookedLinearSites: Set<LinearSite>? { nil }
  /// None.
  public func lowRankDeltas(_ site: LinearSite) -> [LowRankDelta] { [] }
}

// MARK: - The protocol

/// A transformer encoder seen as embed → blocks → final norm → pool, whatever its input (images,
/// point clouds, video frames). `forward(_:hooks:hiddenStates:)` runs it with the attach points
/// of `BackboneHooks` the same way for every backbone. Backbones are modules, so methods freeze,
/// unfreeze and count their parameters by name.
public protocol SequenceBackbone: Module {
  /// Token width D.
  var width: Int { get }
  /// Width of the pooled features a head reads (D for a ViT, 2·D for Point-MAE's
  /// class-token-and-max concatenation).
  var featureWidth: Int { get }
  /// Number of blocks.
  var depth: Int { get }
  /// Leading non-content tokens the embedding produces (class, distillation, registers).
  var prefixTokens: Int { get }
  /// Input values one token is embedded from (C·ph·pw for an image patch, 3·group size for a
  /// point group): the fan-in of VPT's prompt initialisation.
  var embeddingFanIn: Int { get }
  /// What the backbone offers to methods.
  var capabilities: BackboneCapabilities { get }
  /// A short name of the model family for messages (`ViT`, `Point-MAE`).
  var familyName: String { get }

  /// The input as a token sequence for block 0, with its layout.
  func embed(_ input: Tensor) -> EmbeddedTokens
  /// Block `index` applied to `x` [B, N, D]. Inside the block, every linear layer's output goes
  /// through `pass.linear` and each residual branch through `pass.attentionBranch` /
  /// `pass.mlpBranch` (for backbones that offer `blockInternals`); a backbone with
  /// `EmbeddedTokens.positions` adds `pass.positions(for: x)` first.
  func block(_ index: Int, _ x: Tensor, pass: ForwardPass?) -> Tensor
  /// The norm after the last block (identity when the model norms after pooling).
  func finalNorm(_ x: Tensor) -> Tensor
  /// Pooled features of the final tokens; the first `prefixTokens` rows are not content.
  func pool(_ tokens: Tensor, prefixTokens: Int) -> Tensor

  /// The linear layer at `site`, or nil when the block has no layer of that role.
  func linearLayer(at site: LinearSite) -> Linear?
  /// The parameter path of the layer at `site` (its tensors are the path plus `.weight` and
  /// `.bias`), or nil when there is no such layer.
  func linearPath(at site: LinearSite) -> String?
  /// `NamePattern` globs selecting the parameters of `role`.
  func parameterPatterns(_ role: ParameterRole) -> [String]
  /// Side blocks of width D / `reduction` built from the backbone's own block type, one for each
  /// of `layers`, for LST (`reducibleBlocks`). `pruned`: structured-pruned from the block of the
  /// same index; else freshly initialised from `generator`. Throws `ConfigError` when the
  /// reduction does not fit the blocks.
  func reducedBlocks(
    _ layers: [Int], reduction: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks
}

extension SequenceBackbone {
  /// No side blocks, unless the backbone offers `reducibleBlocks`.
  public func reducedBlocks(
    _ layers: [Int], reduction: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks {
    throw ConfigError("\(familyName) cannot build reduced-width blocks")
  }

  /// The full forward pass with the attach points of `hooks`; `hiddenStates` asks for the output
  /// of every block. Under `withNoGrad` (a frozen backbone) nothing is kept for backward.
  public func forward(
    _ input: Tensor, hooks: (any BackboneHooks)? = nil, hiddenStates: Bool = true
  ) -> BackboneOutput {
    let embedded = embed(input)
    let pass = ForwardPass(
      input: input, embedded: embedded, prefixTokens: prefixTokens, hooks: hooks)
    var x = pass.enterBlocks(embedded.tokens)
    var states: [Tensor] = []
    for i in 0..<depth {
      x = pass.enterBlock(i, x)
      x = block(i, x, pass: pass)
      if hiddenStates { states.append(x) }
      x = pass.leaveBlock(i, x)
    }
    let tokens = finalNorm(x)
    let leading = pass.leadingRows
    return BackboneOutput(
      tokens: tokens, features: pool(tokens, prefixTokens: leading), hiddenStates: states,
      prefixTokenCount: leading, pass: pass)
  }
}

/// An image backbone: pixels [B, C, H, W] cut into patches. Backbones offering
/// `BackboneCapabilities.imageGrid` conform.
public protocol ImageBackbone: SequenceBackbone {
  /// Input channels C.
  var inputChannels: Int { get }
  /// Patch height and width.
  var patchSize: Size2D { get }
  /// Height and width of the images the model was built for (its position table's grid times
  /// the patch): what a method that draws its own input renders (P2P's canvas).
  var imageSize: Size2D { get }
}

// MARK: - Side blocks

/// Blocks that map [B, N, d] to [B, N, d], built by a backbone at a reduced width for LST.
public struct ReducedBlocks {
  /// The side block for each requested layer.
  public var blocks: [Int: any UnaryModule]
  /// Scale and shift for the side network's final LayerNorm (pruned from the backbone's final
  /// norm), or nil for ones and zeros.
  public var finalNorm: (weight: Tensor, bias: Tensor)?
  /// LayerNorm epsilon of the blocks.
  public var normEps: Float
  /// What pruning kept, when the blocks were pruned.
  public var pruning: PruningRecord?

  /// Wraps the parts.
  public init(
    blocks: [Int: any UnaryModule], finalNorm: (weight: Tensor, bias: Tensor)?, normEps: Float,
    pruning: PruningRecord?
  ) {
    self.blocks = blocks
    self.finalNorm = finalNorm
    self.normEps = normEps
    self.pruning = pruning
  }
}

/// The channels structured pruning kept, in ascending order.
public struct PruningRecord: Sendable {
  /// Per pruned block: the kept rows of the fused qkv (q, k, v parts), columns of the attention
  /// output projection, and MLP hidden units.
  public struct Block: Sendable, Equatable {
    /// Kept rows of the qkv weight.
    public var qkvRows: [Int]
    /// Kept columns of the attention output projection.
    public var projColumns: [Int]
    /// Kept hidden units (fc1 rows, fc2 columns).
    public var hidden: [Int]

    /// Wraps the kept indices.
    public init(qkvRows: [Int], projColumns: [Int], hidden: [Int]) {
      self.qkvRows = qkvRows
      self.projColumns = projColumns
      self.hidden = hidden
    }
  }

  /// The residual channels kept everywhere.
  public var channels: [Int]
  /// Each pruned block's kept indices, by block index.
  public var blocks: [Int: Block]

  /// Wraps the kept indices.
  public init(channels: [Int], blocks: [Int: Block]) {
    self.channels = channels
    self.blocks = blocks
  }
}
