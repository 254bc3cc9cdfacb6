import GraftData

// The hyperparameters of timm's `VisionTransformer`, and the timm architecture names that map
// to them (`vit_base_patch16_224`, `deit3_small_patch16_384`, `vit_small_patch14_reg4_dinov2`,
// `vit_base_patch16_clip_quickgelu_224`, …).

/// A height and a width (image sizes, patch sizes, patch grids).
public struct Size2D: Hashable, Sendable, CustomStringConvertible {
  /// Rows.
  public var height: Int
  /// Columns.
  public var width: Int

  /// A `height × width` size.
  public init(_ height: Int, _ width: Int) {
    self.height = height
    self.width = width
  }

  /// A square `side × side` size.
  public init(square side: Int) { self.init(side, side) }

  /// `height · width`.
  public var area: Int { height * width }

  /// `"H×W"`.
  public var description: String { "\(height)×\(width)" }
}

/// How the final tokens become one feature vector (timm's `global_pool`).
public enum GlobalPool: String, Sendable, CaseIterable {
  /// The class token (row 0).
  case token
  /// The mean over the patch tokens (prefix tokens excluded unless `poolIncludePrefix`).
  case avg
  /// Half the mean plus half the maximum over the patch tokens.
  case avgmax
  /// The maximum over the patch tokens.
  case max
  /// No pooling: the features are all tokens (timm's `''`).
  case none = ""
}

/// The MLP activation of a ViT block.
public enum ViTActivation: String, Sendable, CaseIterable {
  /// Exact (erf) GELU, `nn.GELU()`.
  case gelu
  /// CLIP's `x·σ(1.702x)` (timm's `quick_gelu`).
  case quickGELU = "quick_gelu"
  /// Tanh-approximated GELU (timm's `gelu_tanh`).
  case geluTanh = "gelu_tanh"
}

/// A configuration that cannot build a ViT; the message says which setting and why.
public struct ViTConfigError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The problem, in words.
  public var message: String
  /// Wraps `message`.
  public init(_ message: String) { self.message = message }
  /// The message.
  public var description: String { message }
}

/// Every setting of timm's `VisionTransformer` that Graft implements, with timm's defaults.
///
/// Field names follow timm's constructor arguments (`embed_dim` → `embedDim`, …).
public struct ViTConfig: Hashable, Sendable {
  /// Input image size the position embedding is laid out for (timm's `img_size`).
  public var imgSize = Size2D(square: 224)
  /// Patch size (the stride and kernel of the patch embedding).
  public var patchSize = Size2D(square: 16)
  /// Input channels.
  public var inChans = 3
  /// Classes of the head; 0 for no head (the features are the output).
  public var numClasses = 1000
  /// Pooling of the final tokens.
  public var globalPool = GlobalPool.token
  /// Token width D.
  public var embedDim = 768
  /// Number of blocks.
  public var depth = 12
  /// Attention heads per block.
  public var numHeads = 12
  /// MLP hidden width over D; the hidden width is `Int(D · mlpRatio)` as timm's `int(...)`.
  public var mlpRatio = 4.0
  /// Whether the fused q, k, v projection has a bias.
  public var qkvBias = true
  /// LayerScale initial value; nil for no LayerScale (`ls1`/`ls2` are identities).
  public var initValues: Float?
  /// Whether a class token leads the sequence.
  public var classToken = true
  /// Register tokens after the class token (`reg_token` [1, R, D]).
  public var regTokens = 0
  /// When true the position embedding covers the patches only (DeiT-III, DINOv2 with registers);
  /// otherwise it covers the prefix tokens too.
  public var noEmbedClass = false
  /// A LayerNorm (`norm_pre`) after the embedding, as CLIP; also drops the patch embedding bias.
  public var preNorm = false
  /// Whether a final norm exists (as `norm`, or as `fc_norm` after pooling).
  public var finalNorm = true
  /// Norm after pooling instead of before; nil means timm's rule (true for avg/avgmax/max).
  public var fcNorm: Bool?
  /// Whether avg/max pooling includes the prefix tokens.
  public var poolIncludePrefix = false
  /// Accept any input size divisible by the patch, resampling the position embedding.
  public var dynamicImgSize = false
  /// MLP activation.
  public var activation = ViTActivation.gelu
  /// LayerNorm epsilon: 1e-6 for timm's ViTs, 1e-5 for the CLIP towers.
  public var normEps: Float = 1e-6
  /// DeiT distillation: a `dist_token` after the class token and a second head `head_dist`.
  public var distilled = false

  /// timm's defaults (ViT-B/16 at 224).
  public init() {}

  /// A configuration with the given core sizes and timm's defaults elsewhere.
  public init(
    imgSize: Int, patchSize: Int, embedDim: Int, depth: Int, numHeads: Int,
    numClasses: Int = 1000
  ) {
    self.imgSize = Size2D(square: imgSize)
    self.patchSize = Size2D(square: patchSize)
    self.embedDim = embedDim
    self.depth = depth
    self.numHeads = numHeads
    self.numClasses = numClasses
  }

  // MARK: Derived sizes

  /// Width of one head.
  public var headDim: Int { embedDim / Swift.max(numHeads, 1) }
  /// MLP hidden width, `int(embed_dim * mlp_ratio)`.
  public var mlpHidden: Int { Int(Double(embedDim) * mlpRatio) }
  /// Whether the final norm sits after pooling (`fc_norm`) rather than before (`norm`).
  public var usesFcNorm: Bool { fcNorm ?? [.avg, .avgmax, .max].contains(globalPool) }
  /// Class, distillation and register tokens before the patches.
  public var prefixTokens: Int { (classToken ? 1 : 0) + (distilled ? 1 : 0) + regTokens }
  /// Patch grid at `imgSize`.
  public var gridSize: Size2D {
    Size2D(imgSize.height / patchSize.height, imgSize.width / patchSize.width)
  }
  /// Rows of `pos_embed`.
  public var posEmbedLength: Int { gridSize.area + (noEmbedClass ? 0 : prefixTokens) }
  /// Whether the patch projection has a bias (timm drops it when `pre_norm`).
  public var patchBias: Bool { !preNorm }

  /// Bounds on the sizes `validate` accepts: far beyond every published ViT (ViT-gigantic:
  /// width 1664, depth 48, 16 heads; SAM's 1024-pixel input), so that only a typo or a damaged
  /// file exceeds them, and it gets an error naming the setting instead of an allocation that
  /// cannot succeed.
  public enum Limits {
    /// Blocks.
    public static let depth = 1024
    /// Token width, MLP hidden width, heads.
    public static let width = 65_536
    /// Input side, pixels.
    public static let imageSide = 16_384
    /// Tokens (patches and prefix tokens) of one image.
    public static let tokens = 1 << 20
    /// Classes of the head.
    public static let classes = DatasetLimits.maxClasses
    /// Parameters of the whole model (16 GiB of Float32).
    public static let parameters = 1 << 32
  }

  /// Parameters of a model of this configuration (computed, nothing allocated; saturates rather
  /// than overflows for absurd sizes).
  public var parameterCount: Double {
    let d = Double(embedDim)
    let h = Double(embedDim) * mlpRatio
    let perBlock = 3 * d * d + 3 * d + d * d + d + 2 * d * h + h + d + 4 * d + 2 * d
    let patch = d * Double(inChans * patchSize.height * patchSize.width) + d
    let tokens = Double(max(gridSize.area, 0) + prefixTokens) * d
    let head = Double(numClasses) * (d + 1) * (distilled ? 2 : 1)
    return Double(max(depth, 0)) * perBlock + patch + tokens + head + 4 * d
  }

  /// Throws when the settings cannot build a model (as timm's constructor asserts would), or
  /// exceed `Limits`.
  public func validate() throws {
    func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
      if !ok { throw ViTConfigError(message()) }
    }
    try check(depth <= Limits.depth, "depth \(depth) is beyond Graft's limit of \(Limits.depth)")
    try check(
      embedDim <= Limits.width && numHeads <= Limits.width,
      "embed_dim \(embedDim) or num_heads \(numHeads) is beyond Graft's limit of \(Limits.width)")
    try check(
      mlpRatio.isFinite && mlpRatio > 0 && Double(embedDim) * mlpRatio <= Double(Limits.width),
      "mlp_ratio \(mlpRatio) gives an MLP width beyond Graft's limit of \(Limits.width)")
    try check(
      max(imgSize.height, imgSize.width) <= Limits.imageSide
        && max(patchSize.height, patchSize.width) <= Limits.imageSide,
      "img_size \(imgSize) or patch_size \(patchSize) is beyond Graft's limit of "
        + "\(Limits.imageSide) pixels")
    try check(
      inChans <= 64 && regTokens <= 1024,
      "in_chans \(inChans) (at most 64) or reg_tokens \(regTokens) (at most 1024)")
    try check(
      numClasses <= Limits.classes,
      "num_classes \(numClasses) is beyond Graft's limit of \(Limits.classes)")
    try check(
      embedDim > 0 && depth >= 0 && numHeads > 0, "embed_dim, depth and num_heads must be positive")
    try check(
      embedDim % numHeads == 0, "embed_dim \(embedDim) is not divisible by num_heads \(numHeads)")
    try check(inChans > 0 && numClasses >= 0 && regTokens >= 0, "in_chans, num_classes, reg_tokens")
    try check(mlpHidden > 0, "mlp_ratio \(mlpRatio) gives no MLP hidden units")
    try check(
      patchSize.height > 0 && patchSize.width > 0 && imgSize.height >= patchSize.height
        && imgSize.width >= patchSize.width,
      "img_size \(imgSize) is smaller than patch_size \(patchSize)")
    try check(
      imgSize.height % patchSize.height == 0 && imgSize.width % patchSize.width == 0,
      "img_size \(imgSize) is not divisible by patch_size \(patchSize)")
    try check(
      gridSize.area + prefixTokens <= Limits.tokens,
      "img_size \(imgSize) in patches of \(patchSize) gives \(gridSize.area) tokens, beyond "
        + "Graft's limit of \(Limits.tokens)")
    try check(
      parameterCount <= Double(Limits.parameters),
      "the model would have \(Int(parameterCount)) parameters, beyond Graft's limit of "
        + "\(Limits.parameters)")
    try check(classToken || globalPool != .token, "global_pool 'token' needs the class token")
    try check(
      !distilled || (classToken && globalPool == .token && !usesFcNorm),
      "a distilled DeiT needs the class token, global_pool 'token' and no fc_norm")
  }

  /// The state-dict names and shapes a model of this configuration has, in timm's order
  /// (recorded from the model's constructor, which names each tensor once).
  public var stateShapes: [(name: String, shape: [Int])] {
    VisionTransformer.recordedShapes(self)
  }
}

// MARK: - timm architecture names

/// The timm model families Graft builds, resolved from architecture names.
public enum ViTFamily: String, Sendable, CaseIterable {
  /// `vit_{tiny,small,base,large,huge,giant,gigantic}_patch{P}_{img}`: the original and augreg
  /// ViTs, and the MAE, DINO and SAM weights, which are tags of the same names.
  case vit
  /// `deit_{tiny,small,base}_patch16_{img}`.
  case deit
  /// `deit_{tiny,small,base}_distilled_patch16_{img}`: class and distillation tokens, two heads.
  case deitDistilled
  /// `deit3_{small,medium,base,large,huge}_patch{P}_{img}`: LayerScale, no class position.
  case deit3
  /// `vit_{small,base,large}_patch14_dinov2` and `..._reg{R}_dinov2` (with register tokens).
  case dinov2
  /// `vit_{xsmall,medium,betwixt,base,large,huge,giant,gigantic}_patch{P}_clip[_quickgelu]_{img}`:
  /// CLIP image towers (pre-norm, LayerNorm eps 1e-5, no patch bias).
  case clip

  /// The name pattern, for error messages.
  public var pattern: String {
    switch self {
    case .vit:
      "vit_{tiny,small,base,large,huge,giant,gigantic}_patch{P}_{img} (augreg, orig, MAE, DINO tags)"
    case .deit: "deit_{tiny,small,base}_patch16_{img}"
    case .deitDistilled: "deit_{tiny,small,base}_distilled_patch16_{img}"
    case .deit3: "deit3_{small,medium,base,large,huge}_patch{P}_{img}"
    case .dinov2: "vit_{small,base,large}_patch14[_reg{R}]_dinov2"
    case .clip:
      "vit_{xsmall,medium,betwixt,base,large,huge,giant,gigantic}_patch{P}_clip[_quickgelu]_{img}"
    }
  }
}

/// A timm architecture name that does not name a model Graft can build.
public struct UnknownArchitectureError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The name as given.
  public var name: String
  /// Why it was refused, when more can be said than "unknown".
  public var reason: String?

  /// The name, the reason and the families Graft knows, one per line.
  public var description: String {
    var lines = ["unknown timm architecture '\(name)'" + (reason.map { ": \($0)" } ?? "")]
    lines.append("known families:")
    for f in ViTFamily.allCases { lines.append("  \(f.rawValue): \(f.pattern)") }
    return lines.joined(separator: "\n")
  }
}

/// A parsed timm architecture name: its family, the pretrained tag if one was given, and the
/// configuration timm's entrypoint function builds.
public struct TimmArchitecture: Sendable, Equatable {
  /// The name without the tag (`vit_small_patch16_224`).
  public var name: String
  /// The pretrained tag after the dot (`augreg_in21k_ft_in1k`), if any.
  public var tag: String?
  /// The model family.
  public var family: ViTFamily
  /// What timm's entrypoint passes to `VisionTransformer`, over timm's defaults. `imgSize` is
  /// the size in the name (518 for DINOv2, whose names carry none); `numClasses` is timm's
  /// default 1000: a model folder's `config.json` supplies the real values.
  public var config: ViTConfig

  /// (embed_dim, depth, num_heads, mlp_ratio) of the named sizes timm uses.
  static let sizes: [String: (Int, Int, Int, Double)] = [
    "tiny": (192, 12, 3, 4), "xsmall": (256, 10, 4, 4), "small": (384, 12, 6, 4),
    "medium": (512, 12, 8, 4), "betwixt": (640, 12, 10, 4), "base": (768, 12, 12, 4),
    "large": (1024, 24, 16, 4), "huge": (1280, 32, 16, 4), "giant": (1408, 40, 16, 48.0 / 11),
    "gigantic": (1664, 48, 16, 64.0 / 13),
  ]

  /// Parses `name` (with or without a `.tag`); throws `UnknownArchitectureError` for names
  /// outside the supported families.
  public init(_ fullName: String) throws {
    let pieces = fullName.split(separator: ".", maxSplits: 1).map(String.init)
    let name = pieces.first ?? ""
    tag = pieces.count > 1 ? pieces[1] : nil
    self.name = name
    func unknown(_ reason: String? = nil) -> UnknownArchitectureError {
      UnknownArchitectureError(name: fullName, reason: reason)
    }
    func number(_ token: Substring, after prefix: String) -> Int? {
      guard token.hasPrefix(prefix) else { return nil }
      let digits = token.dropFirst(prefix.count)
      guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
        let n = Int(digits), n > 0
      else { return nil }
      return n
    }
    func sized(_ size: Substring, allowed: [String], patch: Int, img: Int) throws -> ViTConfig {
      guard allowed.contains(String(size)), let s = Self.sizes[String(size)] else {
        throw unknown("size '\(size)' is not one of \(allowed.joined(separator: ", ")) here")
      }
      var c = ViTConfig()
      (c.embedDim, c.depth, c.numHeads, c.mlpRatio) = s
      c.patchSize = Size2D(square: patch)
      c.imgSize = Size2D(square: img)
      return c
    }

    let t = name.split(separator: "_", omittingEmptySubsequences: false)
    switch t.first {
    case "deit" where t.count == 4 || t.count == 5:
      let distilled = t.count == 5
      guard !distilled || t[2] == "distilled", let patch = number(t[t.count - 2], after: "patch"),
        patch == 16, let img = number(t[t.count - 1], after: "")
      else { throw unknown() }
      config = try sized(t[1], allowed: ["tiny", "small", "base"], patch: patch, img: img)
      config.distilled = distilled
      family = distilled ? .deitDistilled : .deit
    case "deit3" where t.count == 4:
      guard let patch = number(t[2], after: "patch"), let img = number(t[3], after: "") else {
        throw unknown()
      }
      config = try sized(
        t[1], allowed: ["small", "medium", "base", "large", "huge"], patch: patch, img: img)
      config.noEmbedClass = true
      config.initValues = 1e-6
      family = .deit3
    case "vit" where t.count >= 4:
      guard let patch = number(t[2], after: "patch") else { throw unknown() }
      let rest = t[3...].map(String.init)
      if rest.last == "dinov2" {
        var regs = 0
        if rest.count == 2, let r = number(Substring(rest[0]), after: "reg") {
          regs = r
        } else if rest.count != 1 {
          throw unknown()
        }
        if t[1] == "giant" {
          throw unknown("DINOv2 giant uses a SwiGLU MLP, which Graft does not implement")
        }
        config = try sized(t[1], allowed: ["small", "base", "large"], patch: patch, img: 518)
        config.initValues = 1e-5
        if regs > 0 {
          config.regTokens = regs
          config.noEmbedClass = true
        }
        family = .dinov2
      } else if rest.first == "clip"
        && (rest.count == 2 || (rest.count == 3 && rest[1] == "quickgelu"))
      {
        guard let img = number(Substring(rest[rest.count - 1]), after: "") else { throw unknown() }
        config = try sized(
          t[1],
          allowed: ["xsmall", "medium", "betwixt", "base", "large", "huge", "giant", "gigantic"],
          patch: patch, img: img)
        config.preNorm = true
        config.normEps = 1e-5
        if rest.count == 3 { config.activation = .quickGELU }
        family = .clip
      } else if rest.count == 1, let img = number(Substring(rest[0]), after: "") {
        config = try sized(
          t[1], allowed: ["tiny", "small", "base", "large", "huge", "giant", "gigantic"],
          patch: patch, img: img)
        family = .vit
      } else {
        throw unknown()
      }
    default:
      throw unknown()
    }
  }
}
