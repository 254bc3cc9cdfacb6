import Foundation
import GraftTensor

/// Hugging Face PEFT's LoRA folder for a timm ViT (`adapter_config.json` with
/// `peft_type: LORA`, `adapter_model.safetensors` named `base_model.model.<module>.lora_A.weight`),
/// to and from Graft's LoRA run folders.
///
/// Graft adapts q and v as row slices of the fused `attn.qkv`; PEFT adapts whole modules. The
/// slices export exactly as one LoRA of rank m·r on `attn.qkv` (m slices): A is the slices' A
/// stacked [m·r, D], B is block-diagonal [3D, m·r] (slice t's B in its rows, in its own columns),
/// so B·A puts each slice's B·A in its rows and zeros in the others. PEFT scales by
/// lora_alpha / r, so lora_alpha is m·alpha for that module to keep the delta.
public enum PEFTLoRA {
  /// Prefix PEFT gives every tensor of an adapter on a plain `nn.Module`.
  public static let keyPrefix = "base_model.model."
  /// The slices of the fused qkv, in row order.
  public static let slices = ["q", "k", "v"]

  /// One LoRA on the fused qkv from slice deltas (`slices` names present, each A [r, D], B
  /// [D, r]): A stacked in q, k, v order, B block-diagonal [3D, m·r].
  public static func fuse(_ parts: [String: (a: Tensor, b: Tensor)], width d: Int) -> (
    a: Tensor, b: Tensor
  ) {
    let present = slices.filter { parts[$0] != nil }
    let ranks = present.map { parts[$0]!.a.shape[0] }
    let total = ranks.reduce(0, +)
    let a = Tensor.concat(present.map { parts[$0]!.a.copy() }, axis: 0)
    let b = Tensor.zeros([3 * d, total])
    var column = 0
    for (j, name) in present.enumerated() {
      let row = slices.firstIndex(of: name)! * d
      let pb = parts[name]!.b
      for i in 0..<d {
        for c in 0..<ranks[j] {
          b.pointer[(row + i) * total + column + c] = pb.pointer[i * ranks[j] + c]
        }
      }
      column += ranks[j]
    }
    return (a, b)
  }

  /// The inverse of `fuse`: slice deltas from a qkv LoRA (A [R, D], B [3D, R]) when B is
  /// block-diagonal over the slices whose rows are not all zero, with equal column groups in
  /// q, k, v order; nil otherwise.
  public static func split(a: Tensor, b: Tensor, width d: Int) -> [String: (a: Tensor, b: Tensor)]?
  {
    let rank = a.shape[0]
    guard b.shape == [3 * d, rank], a.shape.count == 2 else { return nil }
    let present = slices.indices.filter { t in
      (t * d * rank..<(t + 1) * d * rank).contains { b.pointer[$0] != 0 }
    }
    guard !present.isEmpty, rank % present.count == 0 else { return nil }
    let r = rank / present.count
    var out: [String: (a: Tensor, b: Tensor)] = [:]
    for (j, t) in present.enumerated() {
      let pb = Tensor.zeros([d, r])
      for i in 0..<d {
        for c in 0..<rank {
          let v = b.pointer[(t * d + i) * rank + c]
          if c / r == j {
            pb.pointer[i * r + c - j * r] = v
          } else if v != 0 {
            return nil
          }
        }
      }
      out[slices[t]] = (a.narrow(0, start: j * r, length: r).copy(), pb)
    }
    return out
  }

  /// The module path relative to a block (`attn.qkv`) of a backbone path (`blocks.3.attn.qkv`).
  static func blockRelative(_ path: String) -> String {
    let parts = path.split(separator: ".")
    guard parts.count > 2, parts[0] == "blocks" else { return path }
    return parts.dropFirst(2).joined(separator: ".")
  }

  // MARK: Export

  /// Writes the LoRA run in `run` as PEFT's folder in `out`.
  public static func export(run: URL, to out: URL) throws {
    try export(AdapterCheckpoint.load(run, precision: .fp32), run: run, to: out)
  }

  /// Writes `loaded` (a LoRA run read from `run`) as PEFT's folder in `out`: every block's
  /// deltas under their timm module names, the head as `modules_to_save`.
  public static func export(_ loaded: LoadedAdapter, run: URL, to out: URL) throws {
    guard let lora = loaded.method as? LoRA else {
      throw FileError(
        path: run.path,
        message: "--to peft exports lora runs (PEFT's LoRA format); this run is "
          + "'\(loaded.config.method)': use --to timm for full, linear, bitfit and ln-tune")
    }
    guard lora.backbone is VisionTransformer else {
      throw FileError(
        path: run.path,
        message: "the run's backbone is \(loaded.config.baseModelArchitecture), not a timm "
          + "Vision Transformer; PEFT's folder would name modules no timm model has")
    }
    guard !lora.isMerged else {
      throw FileError(path: run.path, message: "the LoRA deltas are already merged")
    }
    let backbone = lora.backbone
    var tensors: [String: Tensor] = [:]
    var ranks: [String: Int] = [:]  // block-relative module → PEFT rank
    for i in 0..<backbone.depth {
      let layers = lora.blocks[i].layers
      for role in LinearRole.allCases {
        guard let path = backbone.linearPath(at: LinearSite(block: i, role: role)) else { continue }
        var pair: (a: Tensor, b: Tensor)?
        switch role {
        case .qkv:
          if let l = layers["qkv"] {
            pair = (l.loraA.copy(), l.loraB.copy())
          } else {
            var parts: [String: (a: Tensor, b: Tensor)] = [:]
            for s in slices { if let l = layers[s] { parts[s] = (l.loraA, l.loraB) } }
            if !parts.isEmpty { pair = fuse(parts, width: backbone.width) }
          }
        case .attentionOut: pair = layers["proj"].map { ($0.loraA.copy(), $0.loraB.copy()) }
        case .mlpIn: pair = layers["fc1"].map { ($0.loraA.copy(), $0.loraB.copy()) }
        case .mlpOut: pair = layers["fc2"].map { ($0.loraA.copy(), $0.loraB.copy()) }
        }
        guard let pair else { continue }
        tensors[keyPrefix + path + ".lora_A.weight"] = pair.a
        tensors[keyPrefix + path + ".lora_B.weight"] = pair.b
        ranks[blockRelative(path)] = pair.a.shape[0]
      }
    }
    tensors[keyPrefix + "head.weight"] = lora.head.weight.copy()
    if let bias = lora.head.bias { tensors[keyPrefix + "head.bias"] = bias.copy() }
    // One scaling alpha / r for every module: a module of rank m·r gets lora_alpha m·alpha.
    let alpha = Double(lora.scale) * Double(lora.rank)
    let modules = ranks.keys.sorted()
    let distinct = Set(ranks.values)
    var config: [String: Any] = [
      "peft_type": "LORA", "task_type": NSNull(), "target_modules": modules,
      "modules_to_save": ["head"], "lora_dropout": Double(lora.dropout), "bias": "none",
      "fan_in_fan_out": false, "init_lora_weights": true, "inference_mode": true,
      "use_rslora": false, "use_dora": false, "layers_to_transform": NSNull(),
      "layers_pattern": NSNull(), "revision": NSNull(),
      "base_model_name_or_path": loaded.config.baseModel,
    ]
    if distinct.count == 1, let r = distinct.first {
      config["r"] = r
      config["lora_alpha"] = lora.scale == 0 ? 0 : Double(lora.scale) * Double(r)
      config["rank_pattern"] = [String: Int]()
      config["alpha_pattern"] = [String: Double]()
    } else {
      config["r"] = lora.rank
      config["lora_alpha"] = alpha
      config["rank_pattern"] = ranks.filter { $0.value != lora.rank }
      config["alpha_pattern"] = ranks.filter { $0.value != lora.rank }.mapValues {
        Double(lora.scale) * Double($0)
      }
    }
    try ExportFiles.prepareFolder(out)
    try Safetensors.write(
      tensors, metadata: ["format": "pt"],
      to: out.appendingPathComponent(AdapterCheckpoint.weightsFile))
    try AtomicFile.write(
      JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        + Data("\n".utf8), to: out.appendingPathComponent(AdapterCheckpoint.configFile))
  }

  // MARK: Import

  /// Reads PEFT's LoRA folder `peft` for the timm ViT `backbone` and writes a Graft run folder
  /// in `out` (`adapter_config.json`, `adapter_model.safetensors`) that `graft eval` and
  /// `graft predict` load. `classNames` name the head's classes (default `0`, `1`, …).
  /// Returns the number of classes.
  @discardableResult
  public static func importAdapter(
    peft: URL, backbone reference: String, classNames given: [String]? = nil, to out: URL,
    evalBatchSize: Int = 64
  ) throws -> Int {
    let configURL = peft.appendingPathComponent(AdapterCheckpoint.configFile)
    let weightsURL = peft.appendingPathComponent(AdapterCheckpoint.weightsFile)
    func bad(_ url: URL, _ message: String) -> FileError {
      FileError(path: url.path, message: message)
    }
    guard FileManager.default.fileExists(atPath: configURL.path) else {
      throw bad(configURL, "no such file (not a PEFT adapter folder)")
    }
    // Checked first, so that a finished run or an earlier import is never mixed with this one.
    guard !out.path.isEmpty else { throw FileError(path: out.path, message: "give a folder") }
    let held = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
    guard held.isEmpty else {
      throw FileError(
        path: out.path,
        message:
          "holds \(held.count) files or folders already (\(held.sorted().prefix(3).joined(separator: ", ")), …); "
          + "import into a new or empty folder")
    }
    if let twice = given?.firstRepeated {
      throw FileError(path: peft.path, message: "class names given twice: \(twice)")
    }
    let object: [String: Any]
    do {
      guard
        let o = try JSONSerialization.jsonObject(with: MappedFile.contents(of: configURL))
          as? [String: Any]
      else { throw bad(configURL, "not a JSON object") }
      object = o
    } catch let e as FileError {
      throw e
    } catch {
      throw bad(configURL, "cannot read: \(error)")
    }
    guard (object["peft_type"] as? String)?.uppercased() == "LORA" else {
      throw bad(
        configURL, "peft_type is \(object["peft_type"] ?? "missing"), Graft imports LORA only")
    }
    for key in ["use_dora", "fan_in_fan_out"] where (object[key] as? Bool) == true {
      throw bad(configURL, "\(key) is true; Graft's LoRA has no such variant")
    }
    if let b = object["bias"] as? String, b != "none" {
      throw bad(configURL, "bias '\(b)': Graft imports LoRA adapters with bias 'none'")
    }
    let rslora = (object["use_rslora"] as? Bool) ?? false
    guard let r = (object["r"] as? NSNumber)?.intValue, r > 0,
      let loraAlpha = (object["lora_alpha"] as? NSNumber)?.doubleValue
    else { throw bad(configURL, "needs a positive integer r and a number lora_alpha") }
    let rankPattern = (object["rank_pattern"] as? [String: Any]) ?? [:]
    let alphaPattern = (object["alpha_pattern"] as? [String: Any]) ?? [:]
    /// PEFT's pattern lookup: the first key the module name ends with (at a dot).
    func lookup(_ pattern: [String: Any], _ module: String) -> Double? {
      for (k, v) in pattern.sorted(by: { $0.key < $1.key })
      where module == k || module.hasSuffix("." + k) {
        return (v as? NSNumber)?.doubleValue
      }
      return nil
    }
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      throw bad(
        weightsURL, "no such file (adapter_model.bin is not read: save with safetensors)")
    }
    let state = try SafetensorsFile(contentsOf: weightsURL).tensors()

    let tuneBackbone = try TuneBackbone.load(reference)
    guard let vit = tuneBackbone.model as? VisionTransformer else {
      throw FileError(
        path: reference, message: "not a timm Vision Transformer; PEFT import needs one")
    }
    var sites: [String: LinearSite] = [:]
    for i in 0..<vit.depth {
      for role in LinearRole.allCases {
        let site = LinearSite(block: i, role: role)
        if let p = vit.linearPath(at: site) { sites[p] = site }
      }
    }
    // Every module's delta as (A, scaled B), by site.
    var deltas: [LinearSite: (a: Tensor, b: Tensor, scale: Double)] = [:]
    var headWeight: Tensor?
    var headBias: Tensor?
    for (key, tensor) in state {
      guard key.hasPrefix(keyPrefix) else {
        throw bad(weightsURL, "tensor '\(key)' does not start with '\(keyPrefix)'")
      }
      let name = String(key.dropFirst(keyPrefix.count))
      if name == "head.weight" {
        headWeight = tensor
        continue
      }
      if name == "head.bias" {
        headBias = tensor
        continue
      }
      guard name.hasSuffix(".lora_A.weight") else {
        if name.hasSuffix(".lora_B.weight") { continue }
        throw bad(
          weightsURL, "tensor '\(key)' is neither a lora_A/lora_B weight nor the head")
      }
      let module = String(name.dropLast(".lora_A.weight".count))
      guard let site = sites[module] else {
        throw bad(
          weightsURL, "'\(key)' adapts '\(module)', which is not a block linear of \(reference)")
      }
      guard let b = state[keyPrefix + module + ".lora_B.weight"] else {
        throw bad(weightsURL, "'\(key)' has no lora_B")
      }
      let layer = vit.linearLayer(at: site)!
      let rank = tensor.shape.first ?? 0
      guard tensor.shape == [rank, layer.inFeatures], b.shape == [layer.outFeatures, rank] else {
        throw bad(
          weightsURL,
          "'\(module)': lora_A \(tensor.shape), lora_B \(b.shape) do not fit a "
            + "\(layer.inFeatures) → \(layer.outFeatures) layer")
      }
      let moduleRank = lookup(rankPattern, module).map { Int($0) } ?? r
      let alpha = lookup(alphaPattern, module) ?? loraAlpha
      guard moduleRank == rank else {
        throw bad(weightsURL, "'\(module)' has rank \(rank), the config says \(moduleRank)")
      }
      let scale = rslora ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
      deltas[site] = (tensor, b, scale)
    }
    for key in state.keys
    where key.hasSuffix(".lora_B.weight")
      && state[key.replacingOccurrences(of: "lora_B", with: "lora_A")] == nil
    {
      throw bad(weightsURL, "'\(key)' has no lora_A")
    }
    guard !deltas.isEmpty else { throw bad(weightsURL, "holds no LoRA tensors") }
    // The head: the adapter's (modules_to_save), else the backbone's own.
    if headWeight == nil, let h = vit.head {
      headWeight = h.weight
      headBias = h.bias
    }
    guard let headWeight, headWeight.shape.count == 2, headWeight.shape[1] == vit.featureWidth
    else {
      throw bad(
        weightsURL,
        "no head [classes, \(vit.featureWidth)] (save it with modules_to_save=[\"head\"]), and "
          + "the backbone has none")
    }
    let classes = headWeight.shape[0]
    let classNames = given ?? (0..<classes).map(String.init)
    guard classNames.count == classes else {
      throw FileError(
        path: peft.path,
        message: "\(classNames.count) class names given for a head of \(classes) classes")
    }

    // Graft's form: qkv deltas split into q/k/v slices when every one is block-diagonal with
    // the same slices; one rank (the largest, others padded with zeros) and one scale (the
    // common one, else each module's scale folded into its B).
    var perTarget: [Int: [String: (a: Tensor, b: Tensor, scale: Double)]] = [:]
    let qkvSites = deltas.keys.filter { $0.role == .qkv }
    var splits: [Int: [String: (a: Tensor, b: Tensor)]] = [:]
    for s in qkvSites {
      let d = deltas[s]!
      if let parts = split(a: d.a, b: d.b, width: vit.width) { splits[s.block] = parts }
    }
    let sliceSets = Set(splits.values.map { Set($0.keys) })
    let useSlices = splits.count == qkvSites.count && sliceSets.count == 1
    for (site, d) in deltas {
      var targets: [String: (a: Tensor, b: Tensor, scale: Double)] = [:]
      switch site.role {
      case .qkv:
        if useSlices {
          for (t, p) in splits[site.block]! { targets[t] = (p.a, p.b, d.scale) }
        } else {
          targets["qkv"] = d
        }
      case .attentionOut: targets["proj"] = d
      case .mlpIn: targets["fc1"] = d
      case .mlpOut: targets["fc2"] = d
      }
      perTarget[site.block, default: [:]].merge(targets) { a, _ in a }
    }
    let all = perTarget.values.flatMap { $0.values }
    let rank = all.map { $0.a.shape[0] }.max()!
    let scales = Set(all.map(\.scale))
    let common = scales.count == 1 ? scales.first! : 1.0
    let targetNames = Set(perTarget.values.flatMap { $0.keys })
    let order = LoRA.knownTargets.filter { targetNames.contains($0) }

    var generator = RandomGenerator(seed: 0)
    let method = try MethodRegistry.make(
      "lora", backbone: vit, classes: classes,
      options: [
        "rank": String(rank), "alpha": String(Float(common * Double(rank))),
        "targets": order.joined(separator: ","),
        "dropout": String(Float((object["lora_dropout"] as? NSNumber)?.doubleValue ?? 0)),
      ], generator: &generator)
    var graft: [String: Tensor] = [:]
    for i in 0..<vit.depth {
      for t in order {
        let layer = (method as! LoRA).blocks[i].layers[t]!
        let (rows, cols) = (layer.loraA.shape[1], layer.loraB.shape[0])
        let a = Tensor.zeros([rank, rows])
        let b = Tensor.zeros([cols, rank])
        if let d = perTarget[i]?[t] {
          let k = d.a.shape[0]
          let factor = Float(d.scale / common)
          for j in 0..<(k * rows) { a.pointer[j] = d.a.pointer[j] }
          for o in 0..<cols {
            for c in 0..<k { b.pointer[o * rank + c] = d.b.pointer[o * k + c] * factor }
          }
        }
        graft["lora.blocks.\(i).\(t).lora_A"] = a
        graft["lora.blocks.\(i).\(t).lora_B"] = b
      }
    }
    graft["lora.head.weight"] = headWeight
    graft["lora.head.bias"] = headBias ?? Tensor.zeros([classes])
    try method.loadTrainableState(graft, source: weightsURL.path)

    let config = AdapterConfig(
      method: "lora", formatVersion: AdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: tuneBackbone.reference,
      baseModelArchitecture: tuneBackbone.architecture, baseModelHash: tuneBackbone.weightsHash,
      baseModelConfigHash: tuneBackbone.configHash, numClasses: classes, classNames: classNames,
      hyperparameters: method.options, preprocessing: tuneBackbone.preprocessing, pointInput: nil,
      evalBatchSize: evalBatchSize)
    try ExportFiles.prepareFolder(out)
    try AdapterCheckpoint.writeWeights(method, to: out)
    try AdapterCheckpoint.writeConfig(config, to: out)
    return classes
  }
}
