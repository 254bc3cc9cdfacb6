import Foundation

// Loading a timm model folder as `timm.models._hub.save_for_hf` writes it (and as the Hugging
// Face Hub serves `timm/<name>`): `config.json` (architecture, num_classes, global_pool,
// model_args when the model was built with overrides, pretrained_cfg with the preprocessing)
// and `model.safetensors` (the state dict). The architecture comes from the name, then timm's
// rules fill in the rest: pretrained_cfg supplies num_classes, in_chans and (for fixed-size
// models) img_size, and model_args override everything.

/// A JSON value, as read from a config file.
public enum JSONValue: Sendable, Equatable, Decodable, CustomStringConvertible {
  /// `null`.
  case null
  /// `true` / `false`.
  case bool(Bool)
  /// Any number.
  case number(Double)
  /// A string.
  case string(String)
  /// An array.
  case array([JSONValue])
  /// An object.
  case object([String: JSONValue])

  /// Decodes any JSON value.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let n = try? c.decode(Double.self) {
      self = .number(n)
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      self = .object(try c.decode([String: JSONValue].self))
    }
  }

  /// The string, if this is one.
  public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
  /// The number, if this is one.
  public var doubleValue: Double? { if case .number(let n) = self { n } else { nil } }
  /// The number, if this is a whole one.
  public var intValue: Int? {
    guard case .number(let n) = self, n.rounded() == n, Swift.abs(n) < 1e15 else { return nil }
    return Int(n)
  }
  /// The boolean, if this is one.
  public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
  /// The elements, if this is an array.
  public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
  /// The members, if this is an object.
  public var objectValue: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
  /// True for `null`.
  public var isNull: Bool { self == .null }

  /// Compact JSON-like text, for error messages.
  public var description: String {
    switch self {
    case .null: "null"
    case .bool(let b): String(b)
    case .number(let n): n.rounded() == n && Swift.abs(n) < 1e15 ? String(Int(n)) : String(n)
    case .string(let s): "\"\(s)\""
    case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
    case .object(let o):
      "{"
        + o.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }
        .joined(separator: ", ") + "}"
    }
  }
}

/// The preprocessing and provenance fields of timm's `pretrained_cfg`, with timm's defaults
/// (`resolve_data_config`) for the fields a config leaves out.
public struct TimmPretrainedConfig: Sendable, Equatable {
  /// The pretrained tag (`augreg_in21k_ft_in1k`), if recorded.
  public var tag: String?
  /// (channels, height, width) the weights expect.
  public var inputSize: [Int] = [3, 224, 224]
  /// Resize interpolation (`bicubic`, `bilinear`, …).
  public var interpolation = "bicubic"
  /// Centre-crop fraction of the resized image.
  public var cropPct = 0.875
  /// Crop mode (`center`, `squash`, `border`).
  public var cropMode = "center"
  /// Per-channel normalisation mean.
  public var mean: [Float] = [0.485, 0.456, 0.406]
  /// Per-channel normalisation standard deviation.
  public var std: [Float] = [0.229, 0.224, 0.225]
  /// Classes of the pretrained head, if recorded.
  public var numClasses: Int?
  /// Whether the model only takes `inputSize` (timm's `fixed_input_size`).
  public var fixedInputSize = false
  /// Suggested evaluation size, if any.
  public var testInputSize: [Int]?
  /// Suggested evaluation crop, if any.
  public var testCropPct: Double?
  /// Weight licence, if recorded.
  public var license: String?
  /// Free-text notes (e.g. CLIP's "natively QuickGELU").
  public var notes: [String] = []
  /// Every field as written.
  public var raw: [String: JSONValue] = [:]

  /// timm's defaults.
  public init() {}

  /// Reads the fields of a `pretrained_cfg` object; fields of the wrong type throw a message.
  init(json: [String: JSONValue]) throws {
    raw = json
    func ints(_ key: String) throws -> [Int]? {
      guard let v = json[key], !v.isNull else { return nil }
      guard let a = v.arrayValue, let r = Optional(a.compactMap(\.intValue)), r.count == a.count
      else { throw ViTConfigError("pretrained_cfg.\(key) must be a list of integers, got \(v)") }
      return r
    }
    func floats(_ key: String) throws -> [Float]? {
      guard let v = json[key], !v.isNull else { return nil }
      guard let a = v.arrayValue, let r = Optional(a.compactMap(\.doubleValue)), r.count == a.count
      else { throw ViTConfigError("pretrained_cfg.\(key) must be a list of numbers, got \(v)") }
      return r.map(Float.init)
    }
    tag = json["tag"]?.stringValue
    if let s = try ints("input_size") {
      guard s.count == 3 else {
        throw ViTConfigError("pretrained_cfg.input_size must be [C, H, W], got \(s)")
      }
      inputSize = s
    }
    if let s = json["interpolation"]?.stringValue, !s.isEmpty { interpolation = s }
    if let v = json["crop_pct"]?.doubleValue { cropPct = v }
    if let s = json["crop_mode"]?.stringValue, !s.isEmpty { cropMode = s }
    if let v = try floats("mean") { mean = v }
    if let v = try floats("std") { std = v }
    numClasses = json["num_classes"]?.intValue
    fixedInputSize = json["fixed_input_size"]?.boolValue ?? false
    testInputSize = try ints("test_input_size")
    testCropPct = json["test_crop_pct"]?.doubleValue
    license = json["license"]?.stringValue
    notes = json["notes"]?.arrayValue?.compactMap(\.stringValue) ?? []
  }
}

/// A timm `config.json`: the architecture name and what timm needs to rebuild the model.
public struct TimmHubConfig: Sendable, Equatable {
  /// The architecture name (`vit_small_patch16_224`, possibly with a `.tag`).
  public var architecture: String
  /// Classes of the saved head (0: none), when given at the top level.
  public var numClasses: Int?
  /// Feature width, informational.
  public var numFeatures: Int?
  /// Pooling of the saved model, when given at the top level.
  public var globalPool: String?
  /// Constructor overrides the model was built with (`embed_dim`, `img_size`, …).
  public var modelArgs: [String: JSONValue]
  /// Preprocessing and provenance.
  public var pretrainedCfg: TimmPretrainedConfig

  /// Parses the JSON object of a `config.json`, including timm's legacy single-dict form (no
  /// `pretrained_cfg` key: the whole object is the pretrained cfg).
  public init(json: [String: JSONValue]) throws {
    var root = json
    var cfg: [String: JSONValue]
    if let p = json["pretrained_cfg"] {
      guard let o = p.objectValue else {
        throw ViTConfigError("pretrained_cfg must be an object, got \(p)")
      }
      cfg = o
    } else {
      cfg = json
      root = ["architecture": json["architecture"] ?? .null]
      if let n = json["num_features"] { root["num_features"] = n }
    }
    guard let arch = root["architecture"]?.stringValue, !arch.isEmpty else {
      throw ViTConfigError("config has no 'architecture' string")
    }
    architecture = arch
    if let v = root["num_classes"], !v.isNull {
      guard let n = v.intValue, n >= 0 else {
        throw ViTConfigError("num_classes must be a non-negative integer, got \(v)")
      }
      numClasses = n
      cfg["num_classes"] = v  // timm: the top-level value overrides pretrained_cfg's
    }
    numFeatures = root["num_features"]?.intValue
    globalPool = root["global_pool"]?.stringValue
    if let m = root["model_args"], !m.isNull {
      guard let o = m.objectValue else {
        throw ViTConfigError("model_args must be an object, got \(m)")
      }
      modelArgs = o
    } else {
      modelArgs = [:]
    }
    pretrainedCfg = try TimmPretrainedConfig(json: cfg)
  }

  /// The `VisionTransformer` configuration timm would build: the architecture's entrypoint
  /// defaults, then num_classes / global_pool / in_chans / img_size from the config (timm's
  /// `_update_default_model_kwargs`), then `model_args`.
  public func vitConfig() throws -> (TimmArchitecture, ViTConfig) {
    var arch = try TimmArchitecture(architecture)
    if arch.tag == nil { arch.tag = pretrainedCfg.tag }
    var c = arch.config
    let args = modelArgs
    let p = pretrainedCfg
    if let n = p.numClasses, n >= 0 { c.numClasses = n }
    if let pool = p.raw["global_pool"]?.stringValue ?? globalPool {
      c.globalPool = try Self.pool(pool)
    }
    c.inChans = p.inputSize[0]
    // timm repairs old exports of dynamic-size models before using input_size as img_size.
    let dynamic = args["dynamic_img_size"]?.boolValue == true
    if p.fixedInputSize && !dynamic { c.imgSize = Size2D(p.inputSize[1], p.inputSize[2]) }

    for (key, value) in args.sorted(by: { $0.key < $1.key }) {
      func bad(_ expected: String) -> ViTConfigError {
        ViTConfigError("model_args.\(key) = \(value): expected \(expected)")
      }
      func int() throws -> Int {
        guard let v = value.intValue else { throw bad("an integer") }
        return v
      }
      func bool() throws -> Bool {
        guard let v = value.boolValue else { throw bad("true or false") }
        return v
      }
      func size() throws -> Size2D {
        if let v = value.intValue { return Size2D(square: v) }
        if let a = value.arrayValue, a.count == 2, let h = a[0].intValue, let w = a[1].intValue {
          return Size2D(h, w)
        }
        throw bad("an integer or [height, width]")
      }
      /// Arguments Graft does not implement are accepted only at the value that means "off".
      func onlyDefault(_ ok: Bool) throws {
        if !ok { throw ViTConfigError("model_args.\(key) = \(value) is not supported by Graft") }
      }
      switch key {
      case "img_size": c.imgSize = try size()
      case "patch_size": c.patchSize = try size()
      case "in_chans": c.inChans = try int()
      case "num_classes": c.numClasses = try int()
      case "global_pool":
        guard let s = value.stringValue else { throw bad("a string") }
        c.globalPool = try Self.pool(s)
      case "embed_dim": c.embedDim = try int()
      case "depth": c.depth = try int()
      case "num_heads": c.numHeads = try int()
      case "mlp_ratio":
        guard let r = value.doubleValue else { throw bad("a number") }
        c.mlpRatio = r
      case "qkv_bias": c.qkvBias = try bool()
      case "init_values":
        if value.isNull {
          c.initValues = nil
        } else {
          guard let v = value.doubleValue else { throw bad("a number or null") }
          c.initValues = v == 0 ? nil : Float(v)  // timm: LayerScale only `if init_values`
        }
      case "class_token": c.classToken = try bool()
      case "reg_tokens": c.regTokens = try int()
      case "no_embed_class": c.noEmbedClass = try bool()
      case "pre_norm": c.preNorm = try bool()
      case "final_norm": c.finalNorm = try bool()
      case "fc_norm": c.fcNorm = value.isNull ? nil : try bool()
      case "pool_include_prefix": c.poolIncludePrefix = try bool()
      case "dynamic_img_size": c.dynamicImgSize = try bool()
      case "act_layer":
        guard let s = value.stringValue else { throw bad("an activation name") }
        switch s {
        case "gelu": c.activation = .gelu
        case "quick_gelu", "quickgelu": c.activation = .quickGELU
        case "gelu_tanh": c.activation = .geluTanh
        default: throw ViTConfigError("model_args.act_layer '\(s)' is not supported by Graft")
        }
      // Training-time and initialisation settings: no effect on the weights' meaning.
      case "drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate",
        "drop_path_rate", "weight_init", "fix_init":
        continue
      case "qk_norm", "scale_attn_norm", "scale_mlp_norm", "dynamic_img_pad", "use_naflex":
        try onlyDefault(value.boolValue == false || value.isNull)
      case "proj_bias": try onlyDefault(value.boolValue == true)
      case "pos_embed": try onlyDefault(value.stringValue == "learn")
      case "embed_norm_layer", "norm_layer", "attn_layer", "mlp_layer", "block_fn", "embed_layer":
        try onlyDefault(value.isNull)
      default:
        throw ViTConfigError("model_args.\(key) is not an argument Graft knows")
      }
    }
    try c.validate()
    return (arch, c)
  }

  static func pool(_ s: String) throws -> GlobalPool {
    guard let p = GlobalPool(rawValue: s) else {
      throw ViTConfigError(
        "global_pool '\(s)' is not supported (Graft has token, avg, avgmax, max and '')")
    }
    return p
  }
}

/// A loaded timm model: the network, its parsed config and resolved architecture.
public struct TimmModel {
  /// The model, with the checkpoint's F32 tensors as its parameters (memory-mapped, not copied).
  public var model: VisionTransformer
  /// The parsed `config.json`.
  public var config: TimmHubConfig
  /// The resolved architecture name, family and tag.
  public var architecture: TimmArchitecture
  /// Preprocessing (input size, interpolation, crop, mean, std).
  public var pretrainedCfg: TimmPretrainedConfig { config.pretrainedCfg }
}

/// Loads timm model folders (`config.json` + `model.safetensors`).
public enum TimmModelFolder {
  /// Reads `folder/config.json` and `folder/model.safetensors` and builds the model.
  ///
  /// Throws `FileError` naming the file for a missing or malformed config, an unknown or
  /// unsupported architecture or argument, and a missing weights file; `SafetensorsError` for a
  /// malformed weights file; `StateDictError` (its `source` the weights file) listing every
  /// missing, unexpected and mis-shaped tensor with both shapes.
  public static func load(_ folder: URL) throws -> TimmModel {
    let configURL = folder.appendingPathComponent("config.json")
    let config = try readConfig(configURL)
    let arch: TimmArchitecture
    let vit: ViTConfig
    do {
      (arch, vit) = try config.vitConfig()
    } catch let e as UnknownArchitectureError {
      throw FileError(path: configURL.path, message: e.description)
    } catch let e as ViTConfigError {
      throw FileError(
        path: configURL.path, message: "architecture '\(config.architecture)': \(e.message)")
    }
    let weightsURL = folder.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      let hasPickle = FileManager.default.fileExists(
        atPath: folder.appendingPathComponent("pytorch_model.bin").path)
      throw FileError(
        path: weightsURL.path,
        message: "no such file"
          + (hasPickle ? " (pytorch_model.bin is not read: save with safe_serialization)" : ""))
    }
    let file = try SafetensorsFile(contentsOf: weightsURL)
    let model: VisionTransformer
    do {
      model = try VisionTransformer(
        config: vit, weights: try file.tensors(), source: weightsURL.path)
    } catch let e as ViTConfigError {
      // The settings do not fit the weights (checked before anything is built).
      throw FileError(
        path: configURL.path,
        message: "architecture '\(config.architecture)': \(e.message) (in model.safetensors)")
    }
    return TimmModel(model: model, config: config, architecture: arch)
  }

  /// Parses a timm `config.json`; throws `FileError` naming the file.
  public static func readConfig(_ url: URL) throws -> TimmHubConfig {
    let object = try JSONFile.readObject(url, missing: "a timm model folder has one")
    do {
      return try TimmHubConfig(json: object)
    } catch let e as ViTConfigError {
      throw FileError(path: url.path, message: e.message)
    }
  }
}
