// Corner-form box arithmetic and non-maximum suppression as torchvision.ops defines them.

/// A box in corner form, (x1, y1, x2, y2) in pixels, as torchvision's `boxes` tensors.
public typealias CornerBox = SIMD4<Float>

/// Box areas, IoU, clipping and NMS with torchvision's definitions (no +1 on widths).
public enum BoxOps {
  /// (x2 − x1)·(y2 − y1), as `torchvision.ops.box_area`.
  @inlinable public static func area(_ b: CornerBox) -> Float { (b[2] - b[0]) * (b[3] - b[1]) }

  /// Intersection over union, as `torchvision.ops.box_iou` (0 for disjoint boxes).
  public static func iou(_ a: CornerBox, _ b: CornerBox) -> Float {
    let w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    let h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    let inter = w * h
    return inter / (area(a) + area(b) - inter)
  }

  /// The box clamped to an image of `height` × `width`, as `clip_boxes_to_image`.
  public static func clip(_ b: CornerBox, height: Int, width: Int) -> CornerBox {
    let (w, h) = (Float(width), Float(height))
    return CornerBox(
      min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w), min(max(b[3], 0), h))
  }

  /// Greedy non-maximum suppression, as `torchvision.ops.nms`: boxes visited by descending
  /// score, each kept unless its IoU with an already kept box exceeds `iouThreshold`.
  /// - Returns: indices of the kept boxes, by descending score.
  public static func nms(boxes: [CornerBox], scores: [Float], iouThreshold: Float) -> [Int] {
    batchedNMS(
      boxes: boxes, scores: scores, labels: [Int](repeating: 0, count: boxes.count),
      iouThreshold: iouThreshold)
  }

  /// NMS within each label only, as `torchvision.ops.batched_nms` (boxes of different labels never
  /// suppress each other).
  /// - Returns: indices of the kept boxes over all labels, by descending score (ties by index).
  public static func batchedNMS(
    boxes: [CornerBox], scores: [Float], labels: [Int], iouThreshold: Float
  ) -> [Int] {
    precondition(
      boxes.count == scores.count && boxes.count == labels.count,
      "batchedNMS: \(boxes.count) boxes, \(scores.count) scores, \(labels.count) labels")
    let order = scores.indices.sorted {
      scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1)
    }
    var suppressed = [Bool](repeating: false, count: boxes.count)
    var keep: [Int] = []
    for (rank, i) in order.enumerated() where !suppressed[i] {
      keep.append(i)
      for j in order[(rank + 1)...] where !suppressed[j] && labels[j] == labels[i] {
        if iou(boxes[i], boxes[j]) > iouThreshold { suppressed[j] = true }
      }
    }
    return keep
  }
}
