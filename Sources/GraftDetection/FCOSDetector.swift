// A FCOS detector: a multi-scale feature source, FCOS's head, its losses and post-processing.

/// FCOS on any `DetectionFeatureSource` (torchvision's `FCOS` without its image transform: images
/// arrive normalised, at a size that is a multiple of the coarsest stride).
public final class FCOSDetector {
  /// The multi-scale features (a ViT with a simple feature pyramid, HST's side maps, …).
  public let source: any DetectionFeatureSource
  /// The head shared by all levels.
  public let head: FCOSHead
  /// Target assignment for training.
  public var assigner: FCOSAssigner
  /// Score threshold, top-k, NMS and the cap on detections for inference.
  public var postprocessor: FCOSPostprocessor

  /// A detector for `numClasses` classes with a fresh head on `source`'s maps.
  public init(
    source: any DetectionFeatureSource, numClasses: Int, numConvs: Int = 4,
    boxActivation: FCOSHead.BoxActivation = .relu, assigner: FCOSAssigner = FCOSAssigner(),
    postprocessor: FCOSPostprocessor = FCOSPostprocessor(), seed: UInt64 = 0
  ) {
    self.source = source
    head = FCOSHead(
      channels: source.channels, numClasses: numClasses, numLevels: source.strides.count,
      numConvs: numConvs, boxActivation: boxActivation, seed: seed)
    self.assigner = assigner
    self.postprocessor = postprocessor
  }

  /// The source's and the head's trainable tensors, with dotted names.
  public var namedParameters: [(String, Tensor)] {
    source.namedParameters.map { ("features.\($0.0)", $0.1) }
      + head.namedParameters.map { ("head.\($0.0)", $0.1) }
  }

  /// The head's outputs and the levels they cover, for `[B, 3, H, W]` images.
  public func forward(_ images: Tensor) -> (FCOSHeadOutputs, FCOSLevels) {
    let maps = source.features(images)
    precondition(
      maps.count == source.strides.count,
      "FCOSDetector: the source gave \(maps.count) maps for strides \(source.strides)")
    let levels = FCOSLevels(strides: source.strides, sizes: maps.map { ($0.shape[2], $0.shape[3]) })
    return (head(maps), levels)
  }

  /// FCOS's three losses for a batch and its ground truth (one target per image).
  public func loss(images: Tensor, targets: [FCOSTarget]) -> FCOSLosses {
    precondition(
      targets.count == images.shape[0], "FCOSDetector: \(targets.count) targets for \(images.shape)"
    )
    let (outputs, levels) = forward(images)
    return FCOSHead.loss(outputs, levels: levels, targets: targets, assigner: assigner)
  }

  /// Detections for each image of a batch, boxes clipped to the image (no gradients recorded).
  public func detect(images: Tensor) -> [FCOSDetections] {
    withNoGrad {
      let (outputs, levels) = forward(images)
      let size = (images.shape[2], images.shape[3])
      return postprocessor.detections(
        classLogits: outputs.classLogits, boxRegression: outputs.boxRegression,
        centerness: outputs.centerness, levels: levels,
        imageSizes: [(Int, Int)](repeating: size, count: images.shape[0]))
    }
  }
}
