import Foundation

/// A 3×3, stride-2, unpadded convolution without bias, `K → K` channels: one of the two
/// down-sampling layers of the MP head. `weight` [K, K, 3, 3] starts from PyTorch's `Conv2d`
/// default, U(±1/√(9K)), which the reference keeps (timm's ViT init touches only Linears).
public final class MomentProbingConv: Module {
  /// The kernel, [K, K, 3, 3].
  public let weight: Tensor

  /// A fresh `channels → channels` convolution.
  public init(channels: Int, generator: inout RandomGenerator) {
    let bound = 1 / Float(channels * 9).squareRoot()
    weight = Tensor.rand(
      [channels, channels, 3, 3], low: -bound, high: bound, generator: &generator)
    super.init()
    registerParameter("weight", weight)
  }

  /// The convolution of `x` [B, K, H, W] → [B, K, (H − 3) / 2 + 1, (W − 3) / 2 + 1].
  public func callAsFunction(_ x: Tensor) -> Tensor { x.conv2d(weight: weight, stride: (2, 2)) }
}

/// MP+'s partially shared recalibrating parameters (PSRP) of one block: from the residual stream
/// `x` [B, N, D] after attention, `s = relu(down(x))` (D → r, no bias, shared), then a per-token
/// scale `w = up_weight(s)` and shift `b = up_bias(s)` (r → D, no bias each).
public final class PSRP: Module {
  /// D → r, shared by both outputs.
  public let down: Linear
  /// r → D, the scale `w`.
  public let upWeight: Linear
  /// r → D, the shift `b`.
  public let upBias: Linear

  /// Fresh layers: trunc-normal(0.02) everywhere as the reference (`zeroUp`: the two up layers
  /// start at zero instead, so the block's output is unchanged at step 0).
  public init(width: Int, rank: Int, zeroUp: Bool, generator: inout RandomGenerator) {
    func draw(_ shape: [Int]) -> Tensor {
      Tensor.truncatedNormal(shape, std: 0.02, generator: &generator)
    }
    down = Linear(weight: draw([rank, width]), bias: nil)
    upWeight = Linear(
      weight: zeroUp ? Tensor.zeros([width, rank]) : draw([width, rank]), bias: nil)
    upBias = Linear(weight: zeroUp ? Tensor.zeros([width, rank]) : draw([width, rank]), bias: nil)
    super.init()
    registerModule("down", down)
    registerModule("up_weight", upWeight)
    registerModule("up_bias", upBias)
  }

  /// `(w, b)` for the residual stream `x` [..., D], both [..., D].
  public func callAsFunction(_ x: Tensor) -> (scale: Tensor, shift: Tensor) {
    let s = down(x).relu()
    return (upWeight(s), upBias(s))
  }
}

/// Holds one block's `PSRP` under the name `psrp` (so its tensors read `blocks.<i>.psrp.*`, as
/// in the reference's state dict).
public final class PSRPSlot: Module {
  /// The block's PSRP.
  public let psrp: PSRP

  /// Wraps `psrp`.
  public init(_ psrp: PSRP) {
    self.psrp = psrp
    super.init()
    registerModule("psrp", psrp)
  }
}

/// `mp` and `mp+`: Moment Probing (Gao et al., ICCV 2023; mingzeG/Moment-Probing,
/// `models/representation/MP.py` and `PSRP.py`).
///
/// **MP** trains a head on the frozen backbone's final tokens and gives no gradient to the
/// backbone (it runs with recording off and keeps no activations). The logits are
/// `(head(f) + classifier2(m)) / 2`:
/// - first order: `head` (the reference's `classifier1`) on the pooled features `f` the backbone
///   gives (`BackboneOutput.features`: the class token, or the `fc_norm`'d patch mean for
///   average-pool models);
/// - second order, MHC³ on the patch tokens (the rows after `prefixTokenCount`), N of them:
///   1. `proj` (Linear D → P, P = `proj_dim`), split into `heads` groups of h = P / heads;
///   2. one shared LayerNorm(h) (eps 1e-5) on every group;
///   3. from each normed group, one scalar removed per sample: its mean over all N tokens and h
///      channels (the reference's `adaptive_avg_pool2d` on a 3-D tensor; not per-channel means);
///   4. for each pair (i, j) of groups, the cross-covariance `(1/N)·X_iᵀ·X_j` [h, h], pairs by
///      `cross`: `near` (i, i+1), `n/2` (i, i + heads/2), `cn2` (all i < j);
///   5. each matrix L2-normalised along its first matrix axis (every column a unit vector,
///      `F.normalize(dim=2)` of [B, 1, h, h], divisor at least 1e-12); as in the reference,
///      `cn2` is not normalised;
///   6. the K matrices stacked as channels [B, K, h, h], then `conv1` (3×3, stride 2, no pad, no
///      bias, K → K), exact GELU, `conv2` (same), flattened to K·s² with
///      s = ⌊(⌊(h − 3)/2⌋ + 1 − 3)/2⌋ + 1 (`featureLength`; P = 512, 4 heads, `near`: 3·31² = 2883);
///   7. `classifier2` (Linear K·s² → classes).
///
/// **MP+** adds PSRP to every block (needs the backbone gradient): from the residual stream `x`
/// after attention (the input of the `mlpBranch` hook), `(w, b) = PSRP(x)` and the MLP branch
/// `m` becomes `b + (1 + w) ⊙ m`.
///
/// Options: `proj_dim`, `heads` (4), `cross` (`near`); MP+ also `psrp_rank` (16) and
/// `psrp_init` (`timm` or `zero`). `proj_dim` = `auto` (the default) is the reference's 512 for
/// every real ViT (D ≥ 128, whatever D is: the reference does not scale it) and 4·D below, so a
/// tiny backbone (D = 16: P = 64, h = 16, 27 features) does not carry a 16 → 512 projection and
/// a 2.9k-wide classifier; it is rounded down to a multiple of `heads` and raised to at least
/// 7·heads. An explicit value must be a multiple of `heads` with h ≥ 7: the two unpadded
/// stride-2 convolutions take h → ⌊(h − 3)/2⌋ + 1 → …, and 7 is the least side that leaves one
/// output (7 → 3 → 1).
///
/// Init as the reference (timm's `init_weights` runs over the whole model before the backbone
/// weights are loaded): every Linear trunc-normal(0.02) with zero bias, including `head`,
/// `proj`, `classifier2` and all PSRP layers; the LayerNorm ones/zeros; the convolutions keep
/// PyTorch's Conv2d default U(±1/√(9K)). So with `psrp_init` = `timm` (the default, as the
/// reference) w and b are small but not zero at step 0 and MP+ starts near, not at, the frozen
/// backbone; `zero` starts both up layers at zero, which leaves the backbone exactly unchanged
/// at step 0.
///
/// Tensors: `mp.head.weight/bias` (`classifier1`), `mp.proj.weight/bias`, `mp.ln.weight/bias`,
/// `mp.conv1.weight`, `mp.conv2.weight` (the reference's `head.downblocks.0.0` and `.0.2`),
/// `mp.classifier2.weight/bias`; MP+ also `mp.blocks.<i>.psrp.down.weight`,
/// `mp.blocks.<i>.psrp.up_weight.weight`, `mp.blocks.<i>.psrp.up_bias.weight`.
///
/// Parameters: D·C + C + D·P + P + 2h + 18K² + K·s²·C + C, plus 3·L·D·r for MP+ (ViT-B/16,
/// C = 1000: 4.05M, of which the README counts only the two classifiers, 3.65M).
///
/// Deviations from the reference, and why:
/// - The reference hard-codes 3 → 3 convolutions and a 2883-wide `classifier2`, so only `near`
///   with 4 heads and P = 512 runs there; here the convolutions are K → K and the width follows
///   from P, `heads` and `cross`, so every option and width works.
/// - The first-order branch reads the backbone's pooled features; the reference always takes
///   the class token (through `fc_norm`), even for average-pool models. Patch rows skip every
///   prefix token (registers, distillation), where the reference drops only row 0.
/// - On backbones with LayerScale the shift is added after `ls2` (the hook sees the branch after
///   it): `γ·(1 + w)·m + b` where the reference has `γ·(b + (1 + w)·m)`; `b` is learned, so this
///   only rescales its rows. Without LayerScale (the paper's ViTs) they agree.
public final class MomentProbing: TuningMethod {
  /// Pairs of groups whose cross-covariances MHC³ takes.
  public enum Cross: String, CaseIterable, OptionValue {
    /// (i, i + 1).
    case near
    /// (i, i + heads / 2).
    case half = "n/2"
    /// Every i < j.
    case cn2
  }

  /// How MP+ initialises PSRP's up layers.
  public enum PSRPInit: String, CaseIterable, OptionValue {
    /// Trunc-normal(0.02) as the reference.
    case timm
    /// Zeros: the backbone is unchanged at step 0.
    case zero
  }

  /// MP's options (the MHC³ head). Recipe: AdamW lr 5e-4, wd 0.05, cosine, warm-up 2 (Moment
  /// Probing: lr 1e-4 for 30 ImageNet epochs at batch 256 or 100 FGVC epochs at batch 64; small
  /// data gives far fewer steps to a head trained from scratch, so 5× that, below the 1e-3 of
  /// the adapters here).
  public struct Config: MethodConfig {
    /// Width P of the projection.
    public var projDim = AutoOr<Int>.auto
    /// Groups the projection is split into.
    public var heads = 4
    /// Pairs of groups.
    public var cross = Cross.near

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      ConfigOption(
        "proj_dim", \.projDim,
        "width P of the MHC³ projection (auto: 512, or 4·D below D = 128); a multiple of heads"
          + " with P / heads ≥ 7"),
      .int("heads", \.heads, in: 2...4096, "groups the projection is split into"),
      ConfigOption(
        "cross", \.cross, "pairs of groups: near (i, i+1), n/2 (i, i+heads/2), cn2 (all)"),
    ]
    /// AdamW, lr 5e-4, wd 0.05, warm-up 2.
    public static let recipe = Recipe(
      .adamw, lr: 5e-4, weightDecay: 0.05, warmupEpochs: 2, epochs: 20)

    /// An explicit projection splits into groups of at least 7; `n/2` needs even heads.
    public func validate() throws {
      _ = try MomentProbing.pairs(cross: cross.rawValue, heads: heads)
      if case .value(let projection) = projDim {
        guard (1...65536).contains(projection) else {
          throw ConfigError("method.proj_dim = '\(projection)' is not an integer in 1...65536")
        }
        guard projection % heads == 0, projection / heads >= 7 else {
          throw ConfigError(
            "method.proj_dim = \(projection) must be a multiple of heads (\(heads)) with"
              + " proj_dim / heads ≥ 7 (the two 3×3 stride-2 convolutions need it)")
        }
      }
    }
  }

  /// MP+'s options: MP's and PSRP's.
  public struct PlusConfig: MethodConfig {
    /// The head's options.
    public var head = Config()
    /// Hidden width r of each block's PSRP.
    public var psrpRank = 16
    /// PSRP's up-layer initialisation.
    public var psrpInit = PSRPInit.timm

    /// The defaults.
    public init() {}
    /// MP's keys, then PSRP's.
    public static let options: [ConfigOption<PlusConfig>] =
      Config.options.map { $0.lifted(\PlusConfig.head) } + [
        .int("psrp_rank", \.psrpRank, in: 1...4096, "hidden width r of each block's PSRP"),
        ConfigOption(
          "psrp_init", \.psrpInit,
          "timm: all PSRP layers trunc-normal(0.02) as the reference; zero: up layers at zero"),
      ]
    /// MP's recipe.
    public static var recipe: Recipe { Config.recipe }
    /// The head's checks.
    public func validate() throws { try head.validate() }
  }

  /// The registry entry of `mp`.
  public static let descriptor = MethodDescriptor(
    name: "mp",
    summary: "Moment Probing: first- and second-order (MHC³) head; backbone run without recording",
    config: Config.self
  ) { backbone, classes, config, generator in
    try MomentProbing(
      head: config, psrp: nil, backbone: backbone, classes: classes, generator: &generator)
  }

  /// The registry entry of `mp+`.
  public static let plusDescriptor = MethodDescriptor(
    name: "mp+", summary: "Moment Probing head plus PSRP scale/shift of every block's MLP branch",
    config: PlusConfig.self, requires: .blockInternals
  ) { backbone, classes, config, generator in
    try MomentProbing(
      head: config.head, psrp: config, backbone: backbone, classes: classes,
      generator: &generator)
  }

  /// The largest `auto` projection width (the reference's `hidden_dim`).
  public static let referenceProjection = 512

  /// Whether PSRP recalibrates every block (`mp+`).
  public let plus: Bool
  /// Width P of the projection.
  public let projectionWidth: Int
  /// Number of groups the projection is split into.
  public let heads: Int
  /// `near`, `n/2` or `cn2`.
  public let cross: String
  /// The group pairs, one covariance channel each.
  public let pairs: [(Int, Int)]
  /// Whether each covariance is L2-normalised (all but `cn2`, as the reference).
  public let normalizesCovariances: Bool
  /// Length of the flattened second-order feature, K·s².
  public let featureLength: Int
  /// D → P.
  public let proj: Linear
  /// LayerNorm(P / heads), shared by the groups.
  public let ln: LayerNorm
  /// First down-sampling convolution.
  public let conv1: MomentProbingConv
  /// Second down-sampling convolution.
  public let conv2: MomentProbingConv
  /// K·s² → classes.
  public let classifier2: Linear
  /// One PSRP per block (`mp+` only).
  public let blocks: ModuleList<PSRPSlot>?

  /// The pairs of groups `cross` takes for `heads` groups, or a `ConfigError`.
  public static func pairs(cross: String, heads: Int) throws -> [(Int, Int)] {
    switch cross {
    case "near":
      return (0..<(heads - 1)).map { ($0, $0 + 1) }
    case "n/2":
      guard heads % 2 == 0 else {
        throw ConfigError("method.cross = 'n/2' needs an even number of heads, got \(heads)")
      }
      return (0..<(heads / 2)).map { ($0, $0 + heads / 2) }
    case "cn2":
      return (0..<heads).flatMap { i in ((i + 1)..<heads).map { (i, $0) } }
    default:
      throw ConfigError("method.cross = '\(cross)' is not one of near, n/2, cn2")
    }
  }

  /// Side s of each channel after the two convolutions, for covariances of side `h` (≥ 7).
  public static func convolvedSide(_ h: Int) -> Int {
    let once = (h - 3) / 2 + 1
    return (once - 3) / 2 + 1
  }

  /// Length K·s² of the flattened MHC³ feature for projection width `projection` split into
  /// `heads` groups, `pairs` (K) covariance channels.
  public static func featureLength(projection: Int, heads: Int, pairs: Int) -> Int {
    let s = convolvedSide(projection / heads)
    return pairs * s * s
  }

  /// The `auto` projection width for token width `width` and `heads` groups.
  public static func autoProjection(width: Int, heads: Int) -> Int {
    let p = width >= 128 ? referenceProjection : 4 * width
    return Swift.max(p / heads * heads, 7 * heads)
  }

  /// MP (`psrp` nil) or MP+ on `backbone`.
  public init(
    head config: Config, psrp: PlusConfig?, backbone: any SequenceBackbone, classes: Int,
    generator: inout RandomGenerator
  ) throws {
    try config.validate()
    let heads = config.heads
    let cross = config.cross.rawValue
    let pairs = try Self.pairs(cross: cross, heads: heads)
    let plus = psrp != nil
    let d = backbone.width
    let projection: Int
    switch config.projDim {
    case .auto: projection = Self.autoProjection(width: d, heads: heads)
    case .value(let p): projection = p
    }
    let h = projection / heads
    let k = pairs.count
    let length = Self.featureLength(projection: projection, heads: heads, pairs: k)

    func trunc(_ shape: [Int]) -> Tensor {
      Tensor.truncatedNormal(shape, std: 0.02, generator: &generator)
    }
    let head = TuningMethod.timmHead(backbone.featureWidth, classes, generator: &generator)
    proj = Linear(weight: trunc([projection, d]), bias: Tensor.zeros([projection]))
    ln = LayerNorm(h, eps: 1e-5)
    conv1 = MomentProbingConv(channels: k, generator: &generator)
    conv2 = MomentProbingConv(channels: k, generator: &generator)
    classifier2 = Linear(weight: trunc([classes, length]), bias: Tensor.zeros([classes]))
    if let psrp {
      var slots: [PSRPSlot] = []
      for _ in 0..<backbone.depth {
        slots.append(
          PSRPSlot(
            PSRP(
              width: d, rank: psrp.psrpRank, zeroUp: psrp.psrpInit == .zero,
              generator: &generator)))
      }
      blocks = ModuleList(slots)
    } else {
      blocks = nil
    }
    self.plus = plus
    projectionWidth = projection
    self.heads = heads
    self.cross = cross
    self.pairs = pairs
    normalizesCovariances = cross != "cn2"
    featureLength = length
    super.init(
      name: plus ? "mp+" : "mp", prefix: "mp", backbone: backbone, classes: classes, head: head,
      options: psrp?.resolved ?? config.resolved, generator: generator)
    registerModule("proj", proj)
    registerModule("ln", ln)
    registerModule("conv1", conv1)
    registerModule("conv2", conv2)
    registerModule("classifier2", classifier2)
    if let blocks { registerModule("blocks", blocks) }
    finishSetUp()
  }

  /// Both classifiers (the pooled features' head and the moments' `classifier2`).
  public override var classifierModules: [String] { ["head", "classifier2"] }

  /// MP alone needs no backbone gradient; MP+ trains PSRP inside every block.
  public override var needsBackboneGradient: Bool { plus }
  /// MP reads the pooled features and the patch tokens; MP+ changes the blocks (none fixed).
  public override var backboneReads: BackboneReads? { plus ? nil : [.features, .tokens] }

  /// MP+ recalibrates every MLP branch; MP leaves the blocks alone (they run fused).
  public override var attachPoints: AttachPoints { plus ? .residualBranches : [] }

  /// MP+: `b + (1 + w) ⊙ output`, with `(w, b)` from the residual stream `input`.
  public override func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    guard let blocks else { return output }
    let (w, b) = blocks[index].psrp(input)
    return b + (w + 1) * output
  }

  /// The stacked cross-covariances [B, K, h, h] of the patch tokens [B, N, D] (steps 1–5).
  public func crossCovariances(_ patches: Tensor) -> Tensor {
    let (batch, n) = (patches.shape[0], patches.shape[1])
    let h = projectionWidth / heads
    let grouped = ln(proj(patches).reshaped([batch, n, heads, h]))
    // One scalar per sample and group: the mean over its tokens and channels.
    let centred = grouped - grouped.mean(axes: [1, 3], keepDims: true)
    // (1/N)·X_iᵀ·X_j per pair, each group read in place from the [B, N, heads·h] tokens.
    let covariance = centred.reshaped([batch, n, projectionWidth]).groupCrossProducts(
      groups: heads, pairs: pairs, scale: 1 / Float(n))
    guard normalizesCovariances else { return covariance }
    return covariance.l2Normalized(axis: 2)
  }

  /// The flattened MHC³ feature [B, K·s²] of the patch tokens [B, N, D].
  public func secondOrderFeature(_ patches: Tensor) -> Tensor {
    let stacked = crossCovariances(patches)
    return conv2(conv1(stacked).gelu()).reshaped([patches.shape[0], featureLength])
  }

  /// `(head(features) + classifier2(MHC³(patch tokens))) / 2`.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    (head(output.features) + classifier2(secondOrderFeature(output.patchTokens))) * 0.5
  }
}
