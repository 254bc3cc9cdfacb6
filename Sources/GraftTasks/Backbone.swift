import Foundation

/// A frozen backbone with what a run records about it: the reference it was loaded by, its
/// architecture, the hash of its weights and, for an image backbone, its eval preprocessing.
public struct TuneBackbone {
  /// The network.
  public var model: any SequenceBackbone
  /// How to load it again: a folder path (absolute), an `.npz` path or a bundled name.
  public var reference: String
  /// timm architecture (with tag), or `point_mae`.
  public var architecture: String
  /// `fnv1a64:…` of the weights file (or of the tensors, for a model built in memory).
  public var weightsHash: String
  /// The image preprocessing the model expects; nil for a backbone that does not take images
  /// (Point-MAE).
  public var preprocessing: ImagePreprocessConfig?

  /// A backbone from parts (a model built in memory, in tests).
  public init(
    model: any SequenceBackbone, reference: String, architecture: String, weightsHash: String,
    preprocessing: ImagePreprocessConfig?
  ) {
    self.model = model
    self.reference = reference
    self.architecture = architecture
    self.weightsHash = weightsHash
    self.preprocessing = preprocessing
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

  /// Loads `reference` with `ModelLoader.loadBackbone` (`arch` for an `.npz`) and hashes its
  /// weights file (`model.safetensors` of a folder, or the `.npz`). An image backbone must take
  /// RGB images; a point backbone (Point-MAE) has no image preprocessing.
  public static func load(_ reference: String, arch: String? = nil) throws -> TuneBackbone {
    let loaded = try ModelLoader.loadBackbone(reference, arch: arch)
    if case .vit = loaded, loaded.imagePreprocessing == nil {
      throw FileError(path: reference, message: "the model does not take RGB images")
    }
    // A path is recorded absolute, so the checkpoint finds it from any folder.
    let isPath = FileManager.default.fileExists(atPath: reference)
    return TuneBackbone(
      model: loaded.backbone,
      reference: isPath ? URL(fileURLWithPath: reference).standardizedFileURL.path : reference,
      architecture: loaded.name, weightsHash: try FNV1a64.file(loaded.weightsFile),
      preprocessing: loaded.imagePreprocessing)
  }

  /// The eval transform as a loader transform. Only for image backbones (those with
  /// `preprocessing`): training and evaluating a point backbone need point-cloud data, which
  /// `graft tune` refuses before anything reaches here.
  public var transform: ImageTransform {
    guard let preprocessing else {
      preconditionFailure(
        "\(architecture) takes no images: it has no image preprocessing to transform with")
    }
    let t = EvalTransform(config: preprocessing)
    return { image, _ in t(image) }
  }
}
