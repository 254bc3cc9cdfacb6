import Foundation
import GraftTensor

/// `graft export --to timm`: a run folder's method folded into its backbone's weights and written
/// as a timm model folder (`config.json` + `model.safetensors`) with the new head, so
/// `timm.create_model("local-dir:OUT", pretrained=True)` computes the run's logits.
///
/// Only methods whose trained tensors are backbone tensors or linear deltas on them fold exactly:
/// `linear`, `full`, `bitfit`, `ln-tune` (their tensors replace the backbone's) and `lora`
/// (`W + (alpha / r)·B·A`). The rest are refused with the reason (`TimmExport.refusal`).
public enum TimmExport {
  /// Methods that fold exactly into a timm ViT.
  public static let mergeable: Set<String> = ["linear", "full", "bitfit", "ln-tune", "lora"]

  /// Why `method` cannot become a timm ViT, or nil when it can.
  public static func refusal(method: String) -> String? {
    if mergeable.contains(method) { return nil }
    // The text follows what `--to onnx` writes, so it never sends a user to a dead end.
    let onnx =
      ONNXExport.methods.contains(method)
      ? "export the whole tuned model with `--to onnx` instead"
      : "`--to onnx` (the whole tuned model as a graph) does not cover this method either"
    switch method {
    case "adapter":
      // AdaptFormer.swift: mlpBranch adds up(relu(down(x)))·scale, which no weight of the MLP
      // can express.
      return "the adapter (AdaptFormer) adds a ReLU bottleneck beside every MLP, "
        + "up(relu(down(x)))·scale; the ReLU makes it nonlinear, so it does not fold into the "
        + "ViT's linear weights; \(onnx)"
    case "mp", "mp+":
      return "\(method) classifies with Moment Probing's cross-covariance head, which a timm "
        + "ViT's linear head cannot hold (PSRP's scale and shift would fold, the head does not); "
        + onnx
    default:
      return "\(method) adds tokens or side networks (VPT, MP, LST, HST, UniPT, IDPT and P2P do) "
        + "that a timm ViT cannot hold; \(onnx)"
    }
  }

  /// The timm state dict of the tuned model: the backbone's tensors with the method folded in
  /// (LoRA's deltas added, unfrozen tensors as trained) and `head.weight`/`head.bias` the
  /// method's head. Throws for a method that does not fold or a backbone that is not a ViT.
  public static func mergedState(_ loaded: LoadedAdapter, run: String) throws -> [String: Tensor] {
    let method = loaded.method
    guard let vit = method.backbone as? VisionTransformer else {
      throw FileError(
        path: run,
        message: "the run's backbone is \(loaded.config.baseModelArchitecture), not a Vision "
          + "Transformer; timm has no such model, so only image-backbone runs export to timm")
    }
    if let reason = refusal(method: loaded.config.method) {
      throw FileError(path: run, message: "cannot export to timm: \(reason)")
    }
    guard vit.headDist == nil else {
      // timm averages head and head_dist on two tokens; the method's one head replaces both.
      throw FileError(
        path: run,
        message: "the backbone is a distilled DeiT (head_dist), whose timm forward averages two "
          + "heads; the run's single head cannot be written as that model")
    }
    var deltas: [String: Tensor] = [:]
    if let lora = method as? LoRA, !lora.isMerged { deltas = lora.weightDeltas() }
    let classifier = vit.parameterPatterns(.classifier)
    var state: [String: Tensor] = [:]
    withNoGrad {
      for (name, tensor) in vit.namedParameters()
      where !classifier.contains(where: { NamePattern.matches(name, $0) }) {
        state[name] = deltas[name].map { tensor + $0 } ?? tensor.copy()
      }
      state["head.weight"] = method.head.weight.copy()
      if let bias = method.head.bias { state["head.bias"] = bias.copy() }
    }
    for name in deltas.keys where state[name] == nil {
      throw FileError(path: run, message: "LoRA delta for '\(name)', which the backbone lacks")
    }
    return state
  }

  /// The backbone's `config.json` object with the run's head: `num_classes` (top level,
  /// `model_args` when it sets one, `pretrained_cfg`) and `pretrained_cfg.label_names`. For a
  /// backbone loaded from a Google `.npz`, a config is made from its architecture and
  /// preprocessing.
  public static func config(
    _ loaded: LoadedAdapter, backboneFolder: URL?
  ) throws -> [String: Any] {
    let c = loaded.config
    var root: [String: Any]
    if let folder = backboneFolder {
      let url = folder.appendingPathComponent("config.json")
      do {
        guard
          let object = try JSONSerialization.jsonObject(with: MappedFile.contents(of: url))
            as? [String: Any]
        else { throw FileError(path: url.path, message: "not a JSON object") }
        root = object
      } catch let e as FileError {
        throw e
      } catch {
        throw FileError(path: url.path, message: "cannot read the backbone's config: \(error)")
      }
    } else {
      root = ["architecture": c.baseModelArchitecture]
    }
    // timm's legacy single-dict form keeps the pretrained cfg at the top level; move it.
    var cfg = root["pretrained_cfg"] as? [String: Any] ?? [:]
    if root["pretrained_cfg"] == nil && backboneFolder != nil {
      cfg = root.filter { !["architecture", "num_features"].contains($0.key) }
      root = root.filter { ["architecture", "num_features"].contains($0.key) }
    }
    if let p = c.preprocessing, cfg["input_size"] == nil {
      cfg["input_size"] = p.inputSize
      cfg["mean"] = p.mean
      cfg["std"] = p.std
      cfg["crop_pct"] = p.cropPct
      cfg["interpolation"] = p.interpolation.rawValue
    }
    cfg["num_classes"] = c.numClasses
    cfg["label_names"] = c.classNames
    cfg["classifier"] = "head"
    root["pretrained_cfg"] = cfg
    root["num_classes"] = c.numClasses
    if var args = root["model_args"] as? [String: Any], args["num_classes"] != nil {
      args["num_classes"] = c.numClasses
      root["model_args"] = args
    }
    return root
  }

  /// Writes the timm folder of the run in `run` to `out` (created if missing; each file written
  /// atomically), loading the run with `AdapterCheckpoint.load`.
  public static func export(run: URL, to out: URL) throws {
    let loaded = try AdapterCheckpoint.load(run, precision: .fp32)
    let source = try ModelLoader.loadBackbone(loaded.config.baseModel)
    try export(
      loaded, run: run, backboneFolder: source.format == .timmFolder ? source.source : nil, to: out)
  }

  /// Writes `loaded` (read from `run`) as a timm folder in `out`; `backboneFolder` is the timm
  /// folder its backbone came from (nil for an `.npz`).
  public static func export(
    _ loaded: LoadedAdapter, run: URL, backboneFolder: URL?, to out: URL
  ) throws {
    let state = try mergedState(loaded, run: run.path)
    let json = try config(loaded, backboneFolder: backboneFolder)
    try ExportFiles.prepareFolder(out)
    try Safetensors.write(
      state, metadata: ["format": "pt", "graft_method": loaded.config.method],
      to: out.appendingPathComponent("model.safetensors"))
    try AtomicFile.write(
      JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        + Data("\n".utf8), to: out.appendingPathComponent("config.json"))
  }
}

/// Small helpers shared by the exporters.
enum ExportFiles {
  /// Creates `folder` (and its parents) if missing; a file in its place is an error.
  static func prepareFolder(_ folder: URL) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw FileError(path: folder.path, message: "exists and is not a folder")
      }
      return
    }
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    } catch {
      throw FileError(path: folder.path, message: "cannot create the folder: \(error)")
    }
  }
}
