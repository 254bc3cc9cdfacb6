// FCOS's inference-time post-processing, as torchvision's `FCOS.postprocess_detections`.

import Foundation

/// One image's detections: corner boxes in input pixels, scores and 0-based class labels, by
/// descending score.
public struct FCOSDetections: Equatable, Sendable {
  /// Boxes, (x1, y1, x2, y2), clipped to the image.
  public var boxes: [CornerBox]
  /// √(σ(class logit)·σ(centre-ness logit)) of each box.
  public var scores: [Float]
  /// 0-based class of each box.
  public var labels: [Int]

  /// Detections from parallel arrays.
  public init(boxes: [CornerBox], scores: [Float], labels: [Int]) {
    self.boxes = boxes
    self.scores = scores
    self.labels = labels
  }
}

/// Scores, per-level top-k, decoding, clipping and per-class NMS as torchvision's FCOS.
///
/// Per level: score = √(σ(class logit)·σ(centre-ness logit)) for every (location, class); those
/// above `scoreThreshold` kept, at most `topK` of them by score; their boxes decoded and clipped
/// to the image. Over all levels: NMS within each class at `nmsThreshold`, then the best
/// `maxDetections`. Defaults: torchvision's except the score threshold, 0.05 as FCOS's paper and
/// Detectron2 (torchvision's FCOS uses 0.2).
public struct FCOSPostprocessor: Sendable {
  /// Scores at or below this are dropped.
  public var scoreThreshold: Float
  /// Candidates kept per level before NMS.
  public var topK: Int
  /// IoU above which a lower-scored box of the same class is suppressed.
  public var nmsThreshold: Float
  /// Detections kept per image.
  public var maxDetections: Int

  /// A post-processor with FCOS's settings unless told otherwise.
  public init(
    scoreThreshold: Float = 0.05, topK: Int = 1000, nmsThreshold: Float = 0.6,
    maxDetections: Int = 100
  ) {
    self.scoreThreshold = scoreThreshold
    self.topK = topK
    self.nmsThreshold = nmsThreshold
    self.maxDetections = maxDetections
  }

  /// Detections for each image of a batch.
  /// - Parameters:
  ///   - classLogits: `[B, A, K]` over all levels' locations.
  ///   - boxRegression: `[B, A, 4]`, (l, t, r, b) in anchor units.
  ///   - centerness: `[B, A, 1]` logits.
  ///   - levels: the levels the locations come from.
  ///   - imageSizes: (height, width) of each image, for clipping.
  public func detections(
    classLogits: Tensor, boxRegression: Tensor, centerness: Tensor, levels: FCOSLevels,
    imageSizes: [(Int, Int)]
  ) -> [FCOSDetections] {
    let (b, a, k) = (classLogits.shape[0], classLogits.shape[1], classLogits.shape[2])
    precondition(
      boxRegression.shape == [b, a, 4] && centerness.shape == [b, a, 1]
        && levels.counts.reduce(0, +) == a && imageSizes.count == b,
      "FCOSPostprocessor: shapes \(classLogits.shape), \(boxRegression.shape), "
        + "\(centerness.shape) do not fit \(levels.counts.reduce(0, +)) locations, \(b) images")
    let anchors = levels.anchors
    let (cls, reg, ctr) = (classLogits.scalars, boxRegression.scalars, centerness.scalars)
    func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
    var out: [FCOSDetections] = []
    for image in 0..<b {
      var boxes: [CornerBox] = []
      var scores: [Float] = []
      var labels: [Int] = []
      var start = 0
      for count in levels.counts {
        var candidates: [(score: Float, index: Int)] = []
        for loc in start..<(start + count) {
          let c = sigmoid(ctr[image * a + loc])
          for j in 0..<k {
            let s = (sigmoid(cls[(image * a + loc) * k + j]) * c).squareRoot()
            if s > scoreThreshold { candidates.append((s, (loc - start) * k + j)) }
          }
        }
        candidates.sort { $0.score > $1.score || ($0.score == $1.score && $0.index < $1.index) }
        for (s, index) in candidates.prefix(topK) {
          let loc = start + index / k
          let base = (image * a + loc) * 4
          let code = SIMD4(reg[base], reg[base + 1], reg[base + 2], reg[base + 3])
          let box = FCOSBoxCoder.decode(code, anchor: anchors[loc])
          boxes.append(
            BoxOps.clip(box, height: imageSizes[image].0, width: imageSizes[image].1))
          scores.append(s)
          labels.append(index % k)
        }
        start += count
      }
      let keep = BoxOps.batchedNMS(
        boxes: boxes, scores: scores, labels: labels, iouThreshold: nmsThreshold
      ).prefix(maxDetections)
      out.append(
        FCOSDetections(
          boxes: keep.map { boxes[$0] }, scores: keep.map { scores[$0] },
          labels: keep.map { labels[$0] }))
    }
    return out
  }
}
