import Foundation

// The hyperparameters of Point-MAE's fine-tuning model (`PointTransformer` in the official
// `models/Point_MAE.py`, Pang-Yatian/Point-MAE) and the `config.json` of a Point-MAE model folder.

/// A Point-MAE configuration that cannot build a model, or a `config.json` that does not describe
/// one; the message names the setting and says why.
public struct PointMAEConfigError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The problem, in words.
  public var message: String
  /// Wraps `message`.
  public init(_ message: String) { self.message = message }
  /// The message.
  public var description: String { message }
}

/// The settings of Point-MAE's `PointTransformer`, with the official defaults (the ModelNet40
/// fine-tuning config `cfgs/finetune_modelnet.yaml`: 384 wide, 12 blocks, 6 heads, 64 groups of
/// 32 points from 1,024-point clouds).
///
/// What the official code fixes rather than configures is fixed here too: the MLP ratio 4, qkv
/// without bias, LayerNorm ε 1e-5, exact (erf) GELU, BatchNorm ε 1e-5 and momentum 0.1, the
/// mini-PointNet widths 128/256/512, the position MLP's hidden width 128 and the classifier's
/// 256/256 hidden layers.
public struct PointMAEConfig: Hashable, Sendable {
  /// Token width D (`trans_dim`).
  public var transDim = 384
  /// Number of transformer blocks.
  public var depth = 12
  /// Attention heads per block.
  public var numHeads = 6
  /// Points per group S (the k of the kNN).
  public var groupSize = 32
  /// Number of groups G (the FPS centres), one token each.
  public var numGroup = 64
  /// Output width of the mini-PointNet; the official model concatenates its tokens with the
  /// class token, so it must equal `transDim`.
  public var encoderDims = 384
  /// Classes of `cls_head_finetune` (the official `cls_dim`); 0 for no head.
  public var numClasses = 0
  /// Points a cloud is sampled to (by FPS) before grouping: the data pipeline's `npoints`.
  public var npoints = 1024

  /// MLP hidden width over D (timm's `Block` default, which Point-MAE keeps).
  public static let mlpRatio = 4.0
  /// LayerNorm ε (`nn.LayerNorm`'s default).
  public static let normEps: Float = 1e-5
  /// BatchNorm ε and momentum (`nn.BatchNorm1d`'s defaults).
  public static let batchNormEps: Float = 1e-5
  /// BatchNorm momentum (`nn.BatchNorm1d`'s default).
  public static let batchNormMomentum: Float = 0.1
  /// Hidden width of the position MLP `pos_embed` (3 → 128 → D).
  public static let positionHidden = 128
  /// Hidden widths of `cls_head_finetune` (2·D → 256 → 256 → classes).
  public static let headHidden = 256
  /// The mini-PointNet's widths: `first_conv` 3 → 128 → 256, `second_conv` 512 → 512 → C.
  public static let encoderWidths = (first: 128, second: 256, third: 512)

  /// Bounds that catch a corrupt or mistyped config before anything is allocated.
  static let limits = (width: 1 << 16, depth: 4096, groups: 1 << 20, points: 1 << 26)

  /// The official defaults (Point-MAE-small, no head).
  public init() {}

  /// A configuration with the given sizes; `encoderDims` follows `transDim`.
  public init(
    transDim: Int, depth: Int, numHeads: Int, groupSize: Int, numGroup: Int,
    numClasses: Int = 0, npoints: Int = 1024
  ) {
    self.transDim = transDim
    self.depth = depth
    self.numHeads = numHeads
    self.groupSize = groupSize
    self.numGroup = numGroup
    encoderDims = transDim
    self.numClasses = numClasses
    self.npoints = npoints
  }

  /// MLP hidden width, `int(trans_dim * mlp_ratio)`.
  public var mlpHidden: Int { Int(Double(transDim) * Self.mlpRatio) }

  /// The settings of the blocks as timm's ViT `Block` (Point-MAE's `Block` is timm's: pre-norm,
  /// fused qkv without bias, `proj` with bias, MLP `fc1`/`fc2` with exact GELU, no LayerScale),
  /// so `ViTBlock` runs them.
  public var blockConfig: ViTConfig {
    var c = ViTConfig()
    c.embedDim = transDim
    c.depth = depth
    c.numHeads = numHeads
    c.mlpRatio = Self.mlpRatio
    c.qkvBias = false
    c.initValues = nil
    c.activation = .gelu
    c.normEps = Self.normEps
    c.numClasses = 0
    return c
  }

  /// Throws `PointMAEConfigError` when the settings cannot build a model or exceed sane bounds.
  public func validate() throws {
    func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
      if !ok { throw PointMAEConfigError(message()) }
    }
    let l = Self.limits
    try check(
      (1...l.width).contains(transDim), "trans_dim \(transDim) must lie in 1...\(l.width)")
    try check((0...l.depth).contains(depth), "depth \(depth) must lie in 0...\(l.depth)")
    try check(
      numHeads >= 1 && numHeads <= transDim, "num_heads \(numHeads) must lie in 1...\(transDim)")
    try check(
      transDim % numHeads == 0, "trans_dim \(transDim) is not divisible by num_heads \(numHeads)")
    try check(
      encoderDims == transDim,
      "encoder_dims \(encoderDims) must equal trans_dim \(transDim) (the official model "
        + "concatenates the group tokens with the class token)")
    try check((1...l.points).contains(npoints), "npoints \(npoints) must lie in 1...\(l.points)")
    try check(
      (1...l.groups).contains(numGroup), "num_group \(numGroup) must lie in 1...\(l.groups)")
    try check(
      (1...l.groups).contains(groupSize), "group_size \(groupSize) must lie in 1...\(l.groups)")
    try check(
      numGroup <= npoints, "num_group \(numGroup) is more than npoints \(npoints) (FPS centres)")
    try check(
      groupSize <= npoints, "group_size \(groupSize) is more than npoints \(npoints) (kNN)")
    try check(
      (0...(1 << 20)).contains(numClasses), "num_classes \(numClasses) must lie in 0...\(1 << 20)")
  }

  /// The state-dict names and shapes of a model of this configuration, in construction order
  /// (recorded from the model's constructor, which names each tensor once): parameters and the
  /// BatchNorm buffers (`running_mean`, `running_var`, `num_batches_tracked`).
  public var stateShapes: [(name: String, shape: [Int])] { PointMAE.recordedShapes(self) }

  // MARK: config.json

  /// The `architecture` a Point-MAE model folder's `config.json` names.
  public static let architecture = "point_mae"

  /// Reads a Point-MAE `config.json` object:
  /// `{"architecture": "point_mae", "num_classes": C, "model_args": {"trans_dim": 384,
  /// "depth": 12, "num_heads": 6, "group_size": 32, "num_group": 64, "encoder_dims": 384,
  /// "npoints": 1024}}`. Missing sizes take the official defaults; `cls_dim` (the official
  /// name) is accepted for `num_classes`, in `model_args` or at the top level; training-only
  /// settings (`drop_path_rate`) are ignored; anything else, and values of the wrong type or
  /// outside `validate()`'s bounds, throw `PointMAEConfigError`.
  public init(json: [String: JSONValue]) throws {
    guard let arch = json["architecture"]?.stringValue else {
      throw PointMAEConfigError("config has no 'architecture' string")
    }
    guard arch == Self.architecture else {
      throw PointMAEConfigError(
        "architecture '\(arch)' is not '\(Self.architecture)'")
    }
    self.init()
    var args: [String: JSONValue] = [:]
    if let m = json["model_args"], !m.isNull {
      guard let o = m.objectValue else {
        throw PointMAEConfigError("model_args must be an object, got \(m)")
      }
      args = o
    }
    func int(_ key: String, _ value: JSONValue) throws -> Int {
      guard let v = value.intValue else {
        throw PointMAEConfigError("\(key) = \(value): expected an integer")
      }
      return v
    }
    var classes: [(String, Int)] = []
    for key in ["num_classes", "cls_dim"] {
      if let v = json[key], !v.isNull { classes.append((key, try int(key, v))) }
    }
    for key in ["npoints"] {
      if let v = json[key], !v.isNull { npoints = try int(key, v) }
    }
    for (key, value) in args.sorted(by: { $0.key < $1.key }) {
      let name = "model_args.\(key)"
      switch key {
      case "trans_dim": transDim = try int(name, value)
      case "depth": depth = try int(name, value)
      case "num_heads": numHeads = try int(name, value)
      case "group_size": groupSize = try int(name, value)
      case "num_group": numGroup = try int(name, value)
      case "encoder_dims": encoderDims = try int(name, value)
      case "npoints": npoints = try int(name, value)
      case "num_classes", "cls_dim": classes.append((name, try int(name, value)))
      case "drop_path_rate", "drop_rate", "attn_drop_rate":
        continue  // training-time regularisation: no effect on the weights' meaning
      case "mlp_ratio":
        guard value.doubleValue == Self.mlpRatio else {
          throw PointMAEConfigError("\(name) = \(value): Point-MAE's blocks have mlp_ratio 4")
        }
      case "qkv_bias":
        guard value.boolValue == false else {
          throw PointMAEConfigError("\(name) = \(value): Point-MAE's qkv has no bias")
        }
      default:
        throw PointMAEConfigError("\(name) is not a Point-MAE setting Graft knows")
      }
    }
    if let (first, n) = classes.first {
      if let other = classes.first(where: { $0.1 != n }) {
        throw PointMAEConfigError("\(first) = \(n) but \(other.0) = \(other.1)")
      }
      numClasses = n
    }
    if args["encoder_dims"] == nil { encoderDims = transDim }
    try validate()
  }

  /// The text of a model folder's `config.json` for this configuration (what `init(json:)`
  /// reads back), keys sorted.
  public var configJSON: String {
    let object: [String: Any] = [
      "architecture": Self.architecture, "num_classes": numClasses,
      "model_args": [
        "trans_dim": transDim, "depth": depth, "num_heads": numHeads, "group_size": groupSize,
        "num_group": numGroup, "encoder_dims": encoderDims, "npoints": npoints,
      ],
    ]
    let data = try! JSONSerialization.data(
      withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
  }

  /// True when `json` (a model folder's `config.json` object) names the Point-MAE architecture.
  public static func describesPointMAE(_ json: [String: JSONValue]) -> Bool {
    json["architecture"]?.stringValue == architecture
  }
}
