import Foundation
import GraftDetection

/// HST's side maps (strides 4, 8, 16, 32) as a detection feature source: each level through its
/// own 1×1 convolution (with bias) to the neck width.
public final class HSTSideFeatures: DetectionFeatureSource {
  /// The method whose side network gives the maps.
  public let method: HierarchicalSideTuning
  /// Channels of every map (the neck width).
  public let channels: Int
  /// 4, 8, 16, 32 pixels: one stride per side stage, finest first.
  public var strides: [Int] { [4, 8, 16, 32].prefix(method.widths.count).map { $0 } }
  private var projections: [(weight: Tensor, bias: Tensor)] = []

  /// Projections from each stage's width to `channels`, Kaiming-uniform as PyTorch's `Conv2d`.
  public init(method: HierarchicalSideTuning, channels: Int, generator: inout RandomGenerator) {
    self.method = method
    self.channels = channels
    for width in method.widths {
      let bound = 1 / Float(width).squareRoot()
      let w = Tensor.rand([channels, width, 1, 1], low: -bound, high: bound, generator: &generator)
      let b = Tensor.rand([channels], low: -bound, high: bound, generator: &generator)
      w.requiresGrad = true
      b.requiresGrad = true
      projections.append((w, b))
    }
  }

  /// The side network's map of each stage, projected to `channels`.
  public func features(_ images: Tensor) -> [Tensor] {
    zip(method.featureMaps(images), projections).map { $0.conv2d(weight: $1.weight, bias: $1.bias) }
  }

  /// The projections' tensors, `proj.<stage>.weight` and `.bias` (the side network's are the
  /// method's).
  public var namedParameters: [(String, Tensor)] {
    projections.enumerated().flatMap { i, p in
      [("proj.\(i).weight", p.weight), ("proj.\(i).bias", p.bias)]
    }
  }
}

/// A tuning method turned detector: the method on its frozen backbone gives multi-scale maps
/// (HST its side network's, every other method a ViTDet simple feature pyramid on its last
/// token map), and an FCOS head detects on them.
///
/// **Features.** HST: its four side maps, each through a 1×1 projection to `det.neck`
/// (`HSTSideFeatures`). Others: the method's final token sequence — the backbone's last tokens
/// with the method's hooks (LoRA, adapters, prompts, unfrozen tensors), LST's merged side
/// tokens, UniPT's fused tokens — with prefix rows dropped and reshaped onto the patch grid,
/// then `SimpleFeaturePyramid` at scales 1, 1/2, 1/4 of that map for a patch of 8 or less
/// (strides 4, 8, 16 for the bundled patch-4 backbone) or ViTDet's 4, 2, 1, 1/2 for a patch of
/// 16 (strides 4–32), width `det.neck`. The pyramid is ViTDet's; its finest level is skipped
/// when the patch is already fine, since a stride below 4 only costs.
///
/// **Trainable.** The pyramid or projections, the FCOS head, and of the method's own tensors
/// those the detection features reach: a gradient probe at construction finds them, and the rest
/// (the classifier head, HST's pooled-feature norm, MP+'s moment branch) are frozen and kept out
/// of checkpoints, so they count neither as trainable nor as stored.
public final class DetectionModel {
  /// The method, on its backbone.
  public let method: TuningMethod
  /// The detector on the method's features.
  public let detector: FCOSDetector
  /// Side of the square input images.
  public let imageSize: Int
  /// Why the frozen backbone runs in another precision than `backbone.precision` asks (no
  /// native BF16 here), for the log; nil when it does not.
  public let precisionNote: String?
  /// Per-channel mean the images are normalised by (the backbone's).
  public let mean: [Double]
  /// Per-channel standard deviation the images are normalised by (the backbone's).
  public let std: [Double]

  /// Methods whose trainable part reads only pooled features, or which take point clouds:
  /// refused, with the reason.
  public static let refused: [String: String] = [
    "p2p": "it renders point clouds for a classifier (a classification-only method)",
    "idpt": "it prompts point-cloud backbones (a classification-only method here)",
    "mp": "its trainable part is a classifier on moments of the pooled tokens "
      + "(classification-only; for detection it would be linear)",
  ]

  /// The detector for `numClasses` classes on `backbone` with `config`'s method and options.
  /// Throws for methods that cannot detect (`refused`), non-image backbones and image sizes
  /// that the backbone or the strides cannot take.
  public init(backbone: TuneBackbone, config: TuneConfig, numClasses: Int) throws {
    if let why = Self.refused[config.method] {
      throw ConfigError("method '\(config.method)' cannot be used for detection: \(why)")
    }
    guard let vit = backbone.model as? VisionTransformer, let pre = backbone.preprocessing else {
      throw ConfigError(
        "detection needs a Vision Transformer image backbone; \(backbone.reference) is a "
          + "\(backbone.model.familyName)")
    }
    // The position table is resampled to the detection image size (timm's dynamic_img_size).
    var c = vit.config
    c.dynamicImgSize = true
    var weights: [String: Tensor] = [:]
    for (name, tensor) in vit.namedParameters() { weights[name] = tensor }
    let model = try VisionTransformer(config: c, weights: weights, source: backbone.reference)
    let side = config.detImageSize
    let patch = c.patchSize
    guard patch.height == patch.width, side % patch.height == 0 else {
      throw ConfigError(
        "det.image_size \(side) must be a multiple of the backbone's square patch \(patch)")
    }
    imageSize = side
    mean = pre.mean
    std = pre.std
    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    method = try MethodRegistry.make(
      config.method, backbone: model, classes: numClasses, options: config.methodOptions,
      generator: &generator)
    method.backboneTrainMode = config.backboneTrainMode
    precisionNote = applyPrecision(config.precision, to: model).1.map {
      "backbone.precision=\($0)"
    }
    var sourceGenerator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x6E65_636B))  // "neck"
    let source: any DetectionFeatureSource
    let coarsest: Int
    if let hst = method as? HierarchicalSideTuning {
      source = HSTSideFeatures(method: hst, channels: config.detNeck, generator: &sourceGenerator)
      coarsest = 32
    } else {
      let p = patch.height
      let pyramidStrides = p <= 8 ? [16, 32, 64] : [4, 8, 16, 32]
      guard (pyramidStrides.map { $0 * p } + [16]).allSatisfy({ $0 % 16 == 0 }) else {
        throw ConfigError("the backbone's patch \(p) gives strides that are not whole pixels")
      }
      let method = self.method
      let width = Self.tokenWidth(method, side: side)
      guard width % 4 == 0 else {
        throw ConfigError("the method's token width \(width) is not a multiple of 4")
      }
      let pyramid = SimpleFeaturePyramid(
        inChannels: width, outChannels: config.detNeck, strides: pyramidStrides,
        seed: SeedMix.mix(config.seed, 0x7079_7261))  // "pyra"
      source = ViTPyramidFeatures(pyramid: pyramid, patchStride: p) {
        Self.tokenMap(method, $0)
      }
      coarsest = pyramidStrides.last! * p / 16
    }
    guard side % coarsest == 0 else {
      throw ConfigError(
        "det.image_size \(side) must be a multiple of the coarsest stride \(coarsest)")
    }
    detector = FCOSDetector(
      source: source, numClasses: numClasses, numConvs: config.detConvs,
      seed: SeedMix.mix(config.seed, 0x6863_6F73))  // "fcos"
    freezeUnreached()
  }

  /// The method's final tokens `[B, N, D]` for `images` (see the type's documentation).
  static func tokens(_ method: TuningMethod, _ images: Tensor) -> (Tensor, BackboneOutput) {
    let out = method.backboneOutput(images)
    if let lst = method as? LadderSideTuning {
      return (lst.mergedTokens(embedded: out.embedded, output: out), out)
    }
    if let unipt = method as? UniPT {
      return (
        unipt.fuse(states: [out.embedded] + out.hiddenStates.dropLast(), final: out.tokens), out
      )
    }
    return (out.tokens, out)
  }

  /// The content tokens as a `[B, D, rows, columns]` map on the patch grid.
  static func tokenMap(_ method: TuningMethod, _ images: Tensor) -> Tensor {
    let (tokens, out) = tokens(method, images)
    let (b, n, d) = (tokens.shape[0], tokens.shape[1], tokens.shape[2])
    guard let grid = out.patchGrid, grid.area == n - out.prefixTokenCount else {
      preconditionFailure("detection: the tokens do not fill the patch grid")
    }
    return tokens.narrow(1, start: out.prefixTokenCount, length: n - out.prefixTokenCount)
      .transposed(1, 2).reshaped([b, d, grid.height, grid.width])
  }

  /// Width D of the method's final tokens (one pass on a blank image).
  static func tokenWidth(_ method: TuningMethod, side: Int) -> Int {
    let channels = (method.backbone as? any ImageBackbone)?.inputChannels ?? 3
    return withNoGrad {
      method.setTraining(false)
      return tokens(method, Tensor.zeros([1, channels, side, side])).0.shape[2]
    }
  }

  /// Freezes the method's tensors that the detection loss does not reach (one probe step on a
  /// fixed random image with one box, in evaluation mode so no running statistic moves).
  private func freezeUnreached() {
    method.setTraining(false)
    var g = RandomGenerator(seed: 0x7072_6F62)  // "prob"
    let image = Tensor.randn([1, 3, imageSize, imageSize], generator: &g)
    let s = Float(imageSize)
    let target = FCOSTarget(boxes: [CornerBox(s / 4, s / 4, 3 * s / 4, 3 * s / 4)], labels: [0])
    let all = method.trainableTensors()
    detector.loss(images: image, targets: [target]).total.backward()
    for (_, t) in all {
      if t.grad == nil { t.requiresGrad = false }
      t.grad = nil
    }
    for (_, t) in detector.namedParameters { t.grad = nil }
  }

  /// Every trainable tensor with its checkpoint name: the method's (`lora.…`, `hst.…`), then
  /// the detector's (`det.features.…`, `det.head.…`).
  public var trainableTensors: [(name: String, tensor: Tensor)] {
    method.trainableTensors()
      + detector.namedParameters.map { (name: "det." + $0.0, tensor: $0.1) }
  }

  /// Trainable elements.
  public var trainableCount: Int { trainableTensors.reduce(0) { $0 + $1.tensor.count } }

  /// What a checkpoint holds: the trainable tensors and the method's state buffers.
  public func checkpointTensors() -> [(name: String, tensor: Tensor)] {
    trainableTensors + method.stateBuffers
  }

  /// Copies of the checkpoint tensors by name.
  public func state() -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (name, t) in checkpointTensors() { out[name] = t.copy() }
    return out
  }

  /// Loads checkpoint tensors; every name must be present with its shape and nothing else may
  /// be (`StateDictError` naming `source`), and nothing changes otherwise.
  public func load(_ state: [String: Tensor], source: String) throws {
    let targets = checkpointTensors()
    let known = Set(targets.map(\.name))
    let missing = targets.map(\.name).filter { state[$0] == nil }
    let unexpected = state.keys.filter { !known.contains($0) }.sorted()
    var misshaped: [StateDictError.Mismatch] = []
    for (name, t) in targets {
      if let v = state[name], v.shape != t.shape {
        misshaped.append(.init(name: name, expected: t.shape, got: v.shape))
      }
    }
    guard missing.isEmpty, unexpected.isEmpty, misshaped.isEmpty else {
      throw StateDictError(
        missing: missing, unexpected: unexpected, misshaped: misshaped, source: source)
    }
    withNoGrad {
      for (name, t) in targets { t.assign(state[name]!) }
    }
  }

  /// Images as the detector takes them: `[B, 3, side, side]` pixels from 8-bit images resized
  /// to the side, normalised as the backbone's.
  public func detect(_ images: Tensor) -> [FCOSDetections] {
    method.setTraining(false)
    return detector.detect(images: images)
  }
}

/// A finished (or interrupted) detection run loaded for inference (`graft detect`): the
/// detector rebuilt from the folder's `tune_config.yaml` on the recorded backbone (refused when
/// its weights' or settings' hash differs), with the best epoch's tensors.
public struct DetectionAdapter {
  /// The detector with its trained tensors.
  public var model: DetectionModel
  /// The folder's `adapter_config.json`.
  public var config: AdapterConfig
  /// The categories, label order.
  public var categories: [DetectionCategory]

  /// Loads the run in `folder` (`backbone` if given, else the recorded reference).
  public static func load(_ folder: URL, backbone given: TuneBackbone? = nil) throws
    -> DetectionAdapter
  {
    let config = try AdapterCheckpoint.readConfig(folder)
    guard config.task == "detection", let ids = config.categoryIDs,
      ids.count == config.classNames.count
    else {
      throw ConfigError(
        "\(folder.path): not a detection run (graft tune --task detection writes one; use "
          + "graft predict for a classifier)")
    }
    let backbone = try given ?? TuneBackbone.load(config.baseModel)
    guard backbone.weightsHash == config.baseModelHash,
      config.baseModelConfigHash.map({ $0 == backbone.configHash }) ?? true
    else {
      throw ConfigError(
        "\(folder.path): the run was trained on backbone '\(config.baseModel)' "
          + "(\(config.baseModelHash)); the backbone given differs (\(backbone.weightsHash))")
    }
    let tune = try RunConfigFile.read(folder, method: config.method)
    let model = try DetectionModel(
      backbone: backbone, config: tune, numClasses: config.classNames.count)
    let url = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw ConfigError("\(url.path): missing (the run has no finished epoch)")
    }
    try model.load(SafetensorsFile(contentsOf: url).tensors(), source: url.path)
    let categories = zip(ids, config.classNames).map { DetectionCategory(id: $0, name: $1) }
    return DetectionAdapter(model: model, config: config, categories: categories)
  }

  /// Detections of each image in its own pixels, COCO's result format with image ids
  /// `firstID`, `firstID + 1`, …
  public func detect(_ images: [RGBImage], firstID: Int = 1) -> [[Detection]] {
    let side = model.imageSize
    var out: [[Detection]] = []
    for (k, image) in images.enumerated() {
      let scale = (x: Double(side) / Double(image.width), y: Double(side) / Double(image.height))
      let input = image.resized(width: side, height: side, interpolation: .bilinear)
        .tensor(mean: model.mean, std: model.std).reshaped([1, 3, side, side])
      let found = model.detect(input)[0]
      out.append(found.cocoDetections(imageID: firstID + k, categories: categories, scale: scale))
    }
    return out
  }
}
