import Foundation

/// What a backbone takes as input, and how samples are brought to it.
public enum BackboneInput: Sendable, Equatable {
  /// Images, preprocessed as timm's eval transform for this model.
  case image(ImagePreprocessConfig)
  /// Point clouds, normalised to the unit sphere and sampled to a fixed number of points.
  case points(PointInput)
}

/// How point clouds are brought to a point backbone (recorded in run folders).
public struct PointInput: Codable, Sendable, Equatable {
  /// Points per cloud the backbone takes (Point-MAE's `npoints`).
  public var points: Int
  /// Whether each point carries its normal after its coordinates ([N, 6] instead of [N, 3]).
  public var normals: Bool

  /// `points` points per cloud, with normals or not.
  public init(points: Int, normals: Bool = false) {
    self.points = points
    self.normals = normals
  }
}

/// A frozen backbone with what a run records about it: the reference it was loaded by, its
/// architecture, the hash of its weights and how samples become its input.
public struct TuneBackbone {
  /// The network.
  public var model: any SequenceBackbone
  /// How to load it again: a folder path (absolute), an `.npz` path or a bundled name.
  public var reference: String
  /// timm architecture (with tag), or `point_mae`.
  public var architecture: String
  /// `fnv1a64:…` of the weights file (or of the tensors, for a model built in memory).
  public var weightsHash: String
  /// What the model takes and how samples are brought to it.
  public var input: BackboneInput
  /// `fnv1a64:…` of what besides the weights defines the model's function: its resolved
  /// architecture and its input settings (`BackboneConfigHash`). Run folders record it beside
  /// `weightsHash`, so an adapter is refused on a backbone whose `config.json` changed.
  public var configHash: String

  /// A backbone from parts (a model built in memory, in tests). `configHash` defaults to the
  /// hash of a Vision Transformer's settings and the input, or for other models of
  /// `architecture` and the input.
  public init(
    model: any SequenceBackbone, reference: String, architecture: String, weightsHash: String,
    input: BackboneInput, configHash: String? = nil
  ) {
    self.model = model
    self.reference = reference
    self.architecture = architecture
    self.weightsHash = weightsHash
    self.input = input
    if let configHash {
      self.configHash = configHash
    } else if let vit = model as? VisionTransformer {
      self.configHash = BackboneConfigHash.of(vit: vit.config, input: input)
    } else {
      self.configHash = BackboneConfigHash.of(architecture: architecture, input: input)
    }
  }

  /// An image backbone from parts (a model built in memory, in tests).
  public init(
    model: any SequenceBackbone, reference: String, architecture: String, weightsHash: String,
    preprocessing: ImagePreprocessConfig
  ) {
    self.init(
      model: model, reference: reference, architecture: architecture, weightsHash: weightsHash,
      input: .image(preprocessing))
  }

  /// The image preprocessing the model expects; nil for a backbone that does not take images.
  public var preprocessing: ImagePreprocessConfig? {
    if case .image(let config) = input { return config }
    return nil
  }

  /// How point clouds are brought to the model; nil for a backbone that does not take them.
  public var pointInput: PointInput? {
    if case .points(let config) = input { return config }
    return nil
  }

  /// A model built in memory, hashed over its tensors; preprocessing fits its input size with
  /// no crop and mean/std 0.5.
  public init(inMemory model: VisionTransformer, name: String) {
    let c = model.config
    self.init(
      model: model, reference: name, architecture: name,
      weightsHash: FNV1a64.tensors(model.namedParameters()),
      preprocessing: ImagePreprocessConfig(
        inputSize: [3, c.imgSize.height, c.imgSize.width], interpolation: .bilinear, cropPct: 1,
        mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]))
  }

  /// `reference` as a run records it: a path absolute, so the checkpoint finds it from any
  /// folder; a bundled name as it is.
  public static func recordedReference(_ reference: String) -> String {
    FileManager.default.fileExists(atPath: reference)
      ? URL(fileURLWithPath: reference).standardizedFileURL.path : reference
  }

  /// Loads `reference` with `ModelLoader` (`arch` for an `.npz`) and hashes its weights file
  /// (`model.safetensors` of a folder, or the `.npz`) and its resolved settings.
  public static func load(_ reference: String, arch: String? = nil) throws -> TuneBackbone {
    let loaded = try ModelLoader.loadBackbone(reference, arch: arch)
    let input: BackboneInput
    switch loaded {
    case .vit(let m):
      guard let preprocessing = m.preprocessing else {
        throw FileError(path: reference, message: "the model does not take RGB images")
      }
      input = .image(preprocessing)
    case .pointMAE(let m):
      input = .points(PointInput(points: m.model.config.npoints))
    }
    return TuneBackbone(
      model: loaded.backbone, reference: recordedReference(reference),
      architecture: loaded.name, weightsHash: try FNV1a64.file(loaded.weightsFile),
      input: input)
  }
}
