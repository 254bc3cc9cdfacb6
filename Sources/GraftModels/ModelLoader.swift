import Foundation
import GraftData

// One entry point for every form a model can take on disk: a timm model folder (config.json +
// model.safetensors), a Point-MAE model folder (config.json naming "point_mae" +
// model.safetensors), a Google JAX ViT checkpoint (.npz, architecture named by the caller), or
// the name of a bundled model (a folder under a `Models/` directory). Everything the rest of
// Graft needs comes back together: the network, the image preprocessing it expects and where it
// came from.

/// How a loaded model was stored.
public enum ModelFormat: String, Sendable, Equatable {
  /// A timm model folder: `config.json` and `model.safetensors`.
  case timmFolder = "timm-folder"
  /// A Google JAX/Flax ViT checkpoint (`.npz`) mapped to timm's names.
  case googleNPZ = "google-npz"
  /// A Point-MAE model folder: `config.json` (`"architecture": "point_mae"`) and
  /// `model.safetensors` with the official state-dict names.
  case pointMAEFolder = "point-mae-folder"
}

/// A model ready to run, with what is needed to feed it.
public struct LoadedModel {
  /// The network, its weights those of the checkpoint.
  public var model: VisionTransformer
  /// The resolved timm architecture (name, family, tag).
  public var architecture: TimmArchitecture
  /// The eval preprocessing for image files; nil when the model does not take 3-channel images.
  ///
  /// A timm folder's comes from its `pretrained_cfg`; an `.npz`'s from the architecture's
  /// default (see `ModelLoader.defaultPreprocessing(for:)`). A fixed-size model always gets its
  /// own `img_size` as the input size.
  public var preprocessing: ImagePreprocessConfig?
  /// The folder or `.npz` file the weights were read from.
  public var source: URL
  /// How the checkpoint was stored.
  public var format: ModelFormat
  /// The name to record with results: the bundled name when loaded by one, else the
  /// architecture with its tag (`vit_small_patch16_224.augreg_in21k_ft_in1k`).
  public var name: String
  /// Things the loader decided that a user should know (a dropped head, a resampled position
  /// table), one sentence each.
  public var notes: [String]

  /// Whether the model has a classifier head (and so produces logits).
  public var hasHead: Bool { model.head != nil }
}

/// A Point-MAE model ready to run.
public struct LoadedPointModel {
  /// The network, its weights those of the checkpoint.
  public var model: PointMAE
  /// The folder the weights were read from.
  public var source: URL
  /// The name to record with results: the bundled name when loaded by one, else `point_mae`.
  public var name: String

  /// Whether the model has a classifier head (and so produces logits).
  public var hasHead: Bool { model.clsHeadFinetune != nil }
}

/// A loaded backbone of any family, as `ModelLoader.loadBackbone` returns it.
public enum LoadedBackbone {
  /// A Vision Transformer (timm folder or Google `.npz`), with its image preprocessing.
  case vit(LoadedModel)
  /// A Point-MAE encoder over point clouds.
  case pointMAE(LoadedPointModel)

  /// The network, as methods see it.
  public var backbone: any SequenceBackbone {
    switch self {
    case .vit(let m): m.model
    case .pointMAE(let m): m.model
    }
  }

  /// The folder or `.npz` file the weights were read from.
  public var source: URL {
    switch self {
    case .vit(let m): m.source
    case .pointMAE(let m): m.source
    }
  }

  /// How the checkpoint was stored.
  public var format: ModelFormat {
    switch self {
    case .vit(let m): m.format
    case .pointMAE: .pointMAEFolder
    }
  }

  /// The file holding the weights: a folder's `model.safetensors`, or the `.npz` itself.
  public var weightsFile: URL {
    format == .googleNPZ ? source : source.appendingPathComponent("model.safetensors")
  }

  /// The name to record with results (see `LoadedModel.name`, `LoadedPointModel.name`).
  public var name: String {
    switch self {
    case .vit(let m): m.name
    case .pointMAE(let m): m.name
    }
  }

  /// The architecture: the timm name with its tag, or `point_mae`.
  public var architectureName: String {
    switch self {
    case .vit(let m): m.architecture.name + (m.architecture.tag.map { "." + $0 } ?? "")
    case .pointMAE: PointMAEConfig.architecture
    }
  }

  /// The eval preprocessing of image files; nil for a backbone that does not take RGB images.
  public var imagePreprocessing: ImagePreprocessConfig? {
    if case .vit(let m) = self { return m.preprocessing }
    return nil
  }

  /// Whether the model has a classifier head.
  public var hasHead: Bool {
    switch self {
    case .vit(let m): m.hasHead
    case .pointMAE(let m): m.hasHead
    }
  }

  /// The loader's notes about the model.
  public var notes: [String] {
    if case .vit(let m) = self { return m.notes }
    return []
  }
}

/// Loads a model from a folder, an `.npz` or a bundled name (`load(_:arch:searchPaths:)`).
public enum ModelLoader {
  /// Environment variable holding extra folders (separated by `:`) to search for bundled models.
  public static let searchPathVariable = "GRAFT_MODELS"

  /// Loads the Vision Transformer `reference` names:
  ///
  /// - an existing folder: a timm model folder (`config.json` + `model.safetensors`);
  /// - an existing `.npz` file: a Google ViT checkpoint, whose architecture `arch` must name (a
  ///   timm name such as `vit_base_patch16_224.augreg_in21k_ft_in1k`);
  /// - otherwise a bare name (no `/`): the bundled model folder `<dir>/<name>/` in the first of
  ///   `searchPaths` (by default `bundledModelDirectories()`) that has one.
  ///
  /// `arch` given with a folder must agree with its `config.json` (tags aside). Throws
  /// `FileError` for a reference that names nothing (listing every place looked in), an
  /// `.npz` without `arch` or whose shapes do not fit it, and a folder of another family (a
  /// Point-MAE folder: load it with `loadBackbone`); the loaders' own errors (`FileError`
  /// for a timm config, `NumpyArchiveError`, `GoogleViTCheckpointError`, `SafetensorsError`,
  /// `StateDictError`) for malformed files. Every error names the file.
  public static func load(_ reference: String, arch: String? = nil, searchPaths: [URL]? = nil)
    throws -> LoadedModel
  {
    switch try loadBackbone(reference, arch: arch, searchPaths: searchPaths) {
    case .vit(let loaded):
      return loaded
    case .pointMAE(let loaded):
      throw FileError(
        path: loaded.source.appendingPathComponent("config.json").path,
        message: "a Point-MAE model (architecture 'point_mae'), not a Vision Transformer")
    }
  }

  /// Loads the model `reference` names, of any family: as `load(_:arch:searchPaths:)`, and a
  /// folder whose `config.json` says `"architecture": "point_mae"` loads as a `PointMAE`
  /// (`PointMAE.load(folder:)`; `arch` given with it throws `FileError`).
  public static func loadBackbone(
    _ reference: String, arch: String? = nil, searchPaths: [URL]? = nil
  ) throws -> LoadedBackbone {
    guard !reference.isEmpty else {
      throw FileError(
        path: "<model>", message: "empty model reference (give a folder, an .npz or a name)")
    }
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: reference, isDirectory: &isDirectory) {
      let url = URL(fileURLWithPath: reference)
      return try loadExisting(url, isDirectory: isDirectory.boolValue, arch: arch)
    }
    let pathLike =
      reference.contains("/") || reference.hasPrefix(".") || reference.hasPrefix("~")
      || ["npz", "safetensors", "json", "npy"].contains(
        (reference as NSString).pathExtension.lowercased())
    if pathLike {
      throw FileError(
        path: URL(fileURLWithPath: reference).path, message: "no such file or folder")
    }
    let directories = searchPaths ?? bundledModelDirectories()
    for directory in directories {
      let candidate = directory.appendingPathComponent(reference)
      var isDir: ObjCBool = false
      guard fm.fileExists(atPath: candidate.path, isDirectory: &isDir), isDir.boolValue else {
        continue
      }
      switch try loadExisting(candidate, isDirectory: true, arch: arch) {
      case .vit(var loaded):
        loaded.name = reference
        return .vit(loaded)
      case .pointMAE(var loaded):
        loaded.name = reference
        return .pointMAE(loaded)
      }
    }
    var lines = [
      "not a file or folder (no \(URL(fileURLWithPath: reference).path)) nor a bundled model; "
        + "looked in:"
    ]
    if directories.isEmpty {
      lines.append("  (no model directories: set \(searchPathVariable) to a folder of models)")
    } else {
      lines += directories.map { "  \($0.appendingPathComponent(reference).path)/" }
      lines.append("(add folders with \(searchPathVariable)=dir1:dir2)")
    }
    throw FileError(path: reference, message: lines.joined(separator: "\n"))
  }

  /// Where bundled models are looked for, in order: each folder of `GRAFT_MODELS`
  /// (`:`-separated), then `Models/` in the repository holding the executable (the nearest
  /// folder above it with a `Package.swift`).
  public static func bundledModelDirectories(
    environment: [String: String] = ProcessInfo.processInfo.environment,
    executable: URL? = Bundle.main.executableURL
  ) -> [URL] {
    var out: [URL] = []
    if let list = environment[searchPathVariable] {
      for entry in list.split(separator: ":") where !entry.isEmpty {
        out.append(URL(fileURLWithPath: String(entry), isDirectory: true).standardizedFileURL)
      }
    }
    if let executable {
      var dir = executable.resolvingSymlinksInPath().deletingLastPathComponent()
      while true {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path)
        {
          let models = dir.appendingPathComponent("Models", isDirectory: true).standardizedFileURL
          // GRAFT_MODELS may name the same folder; each is looked in (and listed) once.
          if !out.contains(where: { $0.path == models.path }) { out.append(models) }
          break
        }
        let parent = dir.deletingLastPathComponent()
        if parent.path == dir.path || dir.path == "/" { break }
        dir = parent
      }
    }
    return out
  }

  // MARK: timm folders

  /// Loads a timm model folder; the preprocessing is its `pretrained_cfg`'s.
  public static func loadFolder(_ folder: URL) throws -> LoadedModel {
    let timm = try TimmModelFolder.load(folder)
    let configURL = folder.appendingPathComponent("config.json")
    var preprocessing: ImagePreprocessConfig? = nil
    var notes: [String] = []
    let c = timm.model.config
    if c.inChans == 3 {
      do {
        var p = try ImagePreprocessConfig(pretrainedCfg: timm.pretrainedCfg.raw.mapValues(plain))
        let size = [3, c.imgSize.height, c.imgSize.width]
        if !c.dynamicImgSize && p.inputSize != size {
          notes.append(
            "pretrained_cfg.input_size \(p.inputSize) differs from the model's fixed img_size "
              + "\(c.imgSize); images are prepared at \(c.imgSize)")
          p.inputSize = size
        }
        preprocessing = p
      } catch let e as ImagePreprocessConfigError {
        throw FileError(path: configURL.path, message: "pretrained_cfg: \(e.message)")
      }
    }
    var name = timm.architecture.name
    if let tag = timm.architecture.tag { name += "." + tag }
    return LoadedModel(
      model: timm.model, architecture: timm.architecture, preprocessing: preprocessing,
      source: folder, format: .timmFolder, name: name, notes: notes)
  }

  // MARK: Google .npz checkpoints

  /// Loads a Google ViT checkpoint as the timm architecture named `arch` (see
  /// `loadNumpy(_:architecture:)`).
  public static func loadNumpy(_ url: URL, arch: String) throws -> LoadedModel {
    let architecture: TimmArchitecture
    do {
      architecture = try TimmArchitecture(arch)
    } catch let e as UnknownArchitectureError {
      throw FileError(path: url.path, message: "--arch: \(e.description)")
    }
    return try loadNumpy(url, architecture: architecture)
  }

  /// Loads a Google ViT checkpoint into `architecture.config` (which a caller may have adjusted).
  ///
  /// The checkpoint decides what a name cannot: the classifier size (its `head`, or none). The
  /// architecture decides the input size: a position table laid out for another patch grid is
  /// resampled to it (bilinear, as timm's `_load_weights`). Width, depth, heads, MLP width,
  /// patch size, channels and class token must agree, else `FileError` names both sides.
  /// A checkpoint with a `pre_logits` layer (Google's in21k releases) loads without its head:
  /// that head reads the missing layer's output (timm loads it anyway and its logits are
  /// meaningless). Only the ViT and DeiT families fit these checkpoints; MAP (attention-pool)
  /// heads are not supported. Preprocessing: `defaultPreprocessing(for:)`.
  public static func loadNumpy(_ url: URL, architecture: TimmArchitecture) throws -> LoadedModel {
    let path = url.path
    func fail(_ message: String) -> FileError { FileError(path: path, message: message) }
    let fullName = architecture.name + (architecture.tag.map { "." + $0 } ?? "")
    guard architecture.family == .vit || architecture.family == .deit else {
      throw fail(
        "architecture '\(fullName)' (\(architecture.family.rawValue)) does not fit a Google ViT "
          + "checkpoint; use a vit_* (or deit_*) name")
    }
    let archive = try NumpyArchive(contentsOf: url)
    let found = try GoogleViTCheckpoint.inferredArchitecture(archive)
    if found.hasMAPHead {
      throw fail(
        "the checkpoint pools with a MAP (attention-pool) head, which Graft's VisionTransformer "
          + "does not implement")
    }
    var c = architecture.config
    try checkFits(found, c, fullName, fail)

    var notes: [String] = []
    c.numClasses = found.numClasses
    if let width = found.representationSize, found.numClasses > 0 {
      c.numClasses = 0
      notes.append(
        "the checkpoint's \(found.numClasses)-class head follows a pre_logits layer (width "
          + "\(width)) that timm's ViT does not have; it is left out (features only)")
    }
    let grid = GoogleViTCheckpoint.Size(height: c.gridSize.height, width: c.gridSize.width)
    if grid != found.positionGrid {
      notes.append(
        "position table resampled from a \(found.positionGrid) to a \(grid) patch grid "
          + "(img_size \(c.imgSize))")
    }
    let weights = try GoogleViTCheckpoint.timmStateDict(
      from: archive, target: .init(gridSize: grid, numClasses: c.numClasses))
    let model = try VisionTransformer(config: c, weights: weights, source: path)
    return LoadedModel(
      model: model, architecture: architecture,
      preprocessing: c.inChans == 3 ? defaultPreprocessing(for: architecture) : nil,
      source: url, format: .googleNPZ, name: fullName, notes: notes)
  }

  /// The eval preprocessing timm's default `pretrained_cfg` gives an architecture, for
  /// checkpoints that carry none: input size the architecture's `img_size`, bicubic, centre
  /// crop, crop_pct 0.9 up to 224 pixels and 1.0 above (as timm's 384-pixel configs), mean and
  /// std 0.5 (Inception) for the ViT family and ImageNet's for the others.
  public static func defaultPreprocessing(for architecture: TimmArchitecture)
    -> ImagePreprocessConfig
  {
    let size = architecture.config.imgSize
    let inception = architecture.family == .vit
    return ImagePreprocessConfig(
      inputSize: [3, size.height, size.width], interpolation: .bicubic,
      cropPct: Swift.max(size.height, size.width) > 224 ? 1.0 : 0.9, cropMode: .center,
      mean: inception ? [0.5, 0.5, 0.5] : ImagePreprocessConfig.imagenetMean,
      std: inception ? [0.5, 0.5, 0.5] : ImagePreprocessConfig.imagenetStd)
  }

  // MARK: Helpers

  private static func loadExisting(_ url: URL, isDirectory: Bool, arch: String?) throws
    -> LoadedBackbone
  {
    if isDirectory {
      if ModelFolderConfig.isPointMAE(url) {
        if let arch {
          throw FileError(
            path: url.appendingPathComponent("config.json").path,
            message:
              "the folder holds a Point-MAE model, not --arch '\(arch)' (--arch is for .npz "
              + "checkpoints, which have no config)")
        }
        let model = try PointMAE.load(folder: url)
        return .pointMAE(
          LoadedPointModel(model: model, source: url, name: PointMAEConfig.architecture))
      }
      let loaded = try loadFolder(url)
      if let arch {
        guard let wanted = try? TimmArchitecture(arch) else {
          throw FileError(
            path: url.path, message: "--arch '\(arch)' is not a timm name Graft knows")
        }
        guard wanted.name == loaded.architecture.name else {
          throw FileError(
            path: url.appendingPathComponent("config.json").path,
            message:
              "the folder's architecture is '\(loaded.architecture.name)', not --arch "
              + "'\(arch)' (--arch is for .npz checkpoints, which have no config)")
        }
      }
      return .vit(loaded)
    }
    switch url.pathExtension.lowercased() {
    case "npz":
      guard let arch else {
        throw FileError(
          path: url.path,
          message:
            "an .npz checkpoint has no config: name its timm architecture with --arch "
            + "(for example --arch vit_base_patch16_224.augreg_in21k_ft_in1k)")
      }
      return .vit(try loadNumpy(url, arch: arch))
    case "safetensors":
      throw FileError(
        path: url.path,
        message:
          "a bare .safetensors has no config; give the timm model folder that holds it and "
          + "its config.json")
    default:
      throw FileError(
        path: url.path,
        message:
          "not a model: expected a timm or Point-MAE model folder (config.json + "
          + "model.safetensors) or a Google ViT .npz checkpoint")
    }
  }

  /// Throws unless the checkpoint's shapes are those of `c`.
  private static func checkFits(
    _ found: GoogleViTCheckpoint.Architecture, _ c: ViTConfig, _ name: String,
    _ fail: (String) -> FileError
  ) throws {
    var problems: [String] = []
    func compare(_ what: String, _ checkpoint: String, _ arch: String) {
      if checkpoint != arch { problems.append("\(what) \(checkpoint) vs \(arch)") }
    }
    compare("width", "\(found.width)", "\(c.embedDim)")
    compare("depth", "\(found.depth)", "\(c.depth)")
    if let heads = found.heads { compare("heads", "\(heads)", "\(c.numHeads)") }
    compare("MLP width", "\(found.mlpDim)", "\(c.mlpHidden)")
    compare("patch", "\(found.patchSize)", "\(c.patchSize)")
    compare("input channels", "\(found.inChannels)", "\(c.inChans)")
    compare("class token", found.hasClassToken ? "yes" : "no", c.classToken ? "yes" : "no")
    guard problems.isEmpty else {
      throw fail(
        "the checkpoint does not fit --arch '\(name)' (checkpoint vs architecture): "
          + problems.joined(separator: ", "))
    }
  }

  /// A JSON value as `JSONSerialization` would return it.
  private static func plain(_ v: JSONValue) -> Any {
    switch v {
    case .null: NSNull()
    case .bool(let b): b
    case .number(let n): n
    case .string(let s): s
    case .array(let a): a.map(plain)
    case .object(let o): o.mapValues(plain)
    }
  }
}
