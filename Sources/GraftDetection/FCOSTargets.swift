// FCOS's locations, box coding and target assignment, as torchvision's FCOS implements them
// (torchvision/models/detection/fcos.py, `FCOS.compute_loss`, and `BoxLinearCoder`).

/// The feature levels a FCOS head sees: each level's stride and map size.
///
/// Each map cell is one location, and as torchvision (an `AnchorGenerator` with one size per level
/// equal to the stride, aspect ratio 1) it stands for a square "anchor" of side `stride` centred
/// at `(x·stride, y·stride)` — torchvision's grid has no half-stride offset, unlike the FCOS paper's
/// `⌊s/2⌋ + x·s`; Graft keeps torchvision's so that its numbers match.
public struct FCOSLevels: Equatable, Sendable {
  /// Stride of each level in input pixels, finest first.
  public var strides: [Int]
  /// (height, width) of each level's map.
  public var sizes: [(Int, Int)]

  /// Levels with the given strides and map sizes (finest first).
  public init(strides: [Int], sizes: [(Int, Int)]) {
    precondition(
      strides.count == sizes.count && !strides.isEmpty,
      "FCOSLevels: \(strides.count) strides for \(sizes.count) map sizes")
    self.strides = strides
    self.sizes = sizes
  }

  /// Same strides and map sizes.
  public static func == (a: FCOSLevels, b: FCOSLevels) -> Bool {
    a.strides == b.strides && a.sizes.elementsEqual(b.sizes) { $0 == $1 }
  }

  /// Locations per level, H·W.
  public var counts: [Int] { sizes.map { $0.0 * $0.1 } }

  /// All locations' anchor boxes, level by level, each level row-major (the order of a
  /// `[B, C, H, W]` map flattened over H, W).
  public var anchors: [CornerBox] {
    var out: [CornerBox] = []
    out.reserveCapacity(counts.reduce(0, +))
    for (s, (h, w)) in zip(strides, sizes) {
      // torchvision's base anchor: [−s/2, −s/2, s/2, s/2] rounded half to even.
      let half = (Float(s) / 2).rounded(.toNearestOrEven)
      for y in 0..<h {
        for x in 0..<w {
          let (cx, cy) = (Float(x * s), Float(y * s))
          out.append(CornerBox(cx - half, cy - half, cx + half, cy + half))
        }
      }
    }
    return out
  }
}

/// torchvision's `BoxLinearCoder(normalize_by_size=True)`: a box relative to a location as its
/// distances (l, t, r, b) from the anchor's centre to the box's sides, divided by the anchor's side.
public enum FCOSBoxCoder {
  /// (l, t, r, b) of `box` from `anchor`'s centre, in units of the anchor's width/height.
  public static func encode(_ box: CornerBox, anchor: CornerBox) -> SIMD4<Float> {
    let (cx, cy) = (0.5 * (anchor[0] + anchor[2]), 0.5 * (anchor[1] + anchor[3]))
    let (w, h) = (anchor[2] - anchor[0], anchor[3] - anchor[1])
    return SIMD4(
      (cx - box[0]) / w, (cy - box[1]) / h, (box[2] - cx) / w, (box[3] - cy) / h)
  }

  /// The box that `code` (l, t, r, b in anchor units) describes around `anchor`'s centre.
  public static func decode(_ code: SIMD4<Float>, anchor: CornerBox) -> CornerBox {
    let (cx, cy) = (0.5 * (anchor[0] + anchor[2]), 0.5 * (anchor[1] + anchor[3]))
    let (w, h) = (anchor[2] - anchor[0], anchor[3] - anchor[1])
    return CornerBox(cx - code[0] * w, cy - code[1] * h, cx + code[2] * w, cy + code[3] * h)
  }

  /// Differentiable decoding of `[B, A, 4]` codes against `A` anchors: `code·(−w, −h, w, h) +
  /// (cx, cy, cx, cy)`, `[B, A, 4]`.
  public static func decode(_ codes: Tensor, anchors: [CornerBox]) -> Tensor {
    precondition(
      codes.rank == 3 && codes.shape[1] == anchors.count && codes.shape[2] == 4,
      "FCOSBoxCoder.decode: codes \(codes.shape) for \(anchors.count) anchors")
    var scale = [Float]()
    var shift = [Float]()
    scale.reserveCapacity(anchors.count * 4)
    shift.reserveCapacity(anchors.count * 4)
    for a in anchors {
      let (cx, cy) = (0.5 * (a[0] + a[2]), 0.5 * (a[1] + a[3]))
      let (w, h) = (a[2] - a[0], a[3] - a[1])
      scale += [-w, -h, w, h]
      shift += [cx, cy, cx, cy]
    }
    let shape = [1, anchors.count, 4]
    return codes * Tensor(scale, shape: shape) + Tensor(shift, shape: shape)
  }

  /// FCOS's centre-ness target `√(min(l, r)/max(l, r) · min(t, b)/max(t, b))` of a code.
  public static func centerness(_ code: SIMD4<Float>) -> Float {
    ((min(code[0], code[2]) / max(code[0], code[2]))
      * (min(code[1], code[3]) / max(code[1], code[3]))).squareRoot()
  }
}

/// FCOS's target assignment as torchvision's `FCOS.compute_loss` does it.
///
/// A location is a candidate for a ground-truth box when (1) its centre lies within
/// `centerSamplingRadius`·stride of the box's centre on both axes (centre sampling), (2) it lies
/// strictly inside the box, and (3) the largest of its distances (l, t, r, b) to the box's sides is
/// in its level's range (4·stride, 8·stride), open at both ends, the finest level starting at 0 and
/// the coarsest unbounded above. Of several candidate boxes the one with the smallest area wins;
/// as torchvision the comparison is of `1e8 − area` in single precision, so areas within its
/// rounding (8 px² at 1e8) tie and the first box wins.
public struct FCOSAssigner: Sendable {
  /// Centre-sampling radius in strides (FCOS's 1.5).
  public var centerSamplingRadius: Float

  /// An assigner with FCOS's radius unless told otherwise.
  public init(centerSamplingRadius: Float = 1.5) {
    self.centerSamplingRadius = centerSamplingRadius
  }

  /// The index of the box each location is assigned to, −1 for background.
  /// - Parameters:
  ///   - anchors: the locations' anchors, level by level (`FCOSLevels.anchors`).
  ///   - counts: locations per level (`FCOSLevels.counts`).
  ///   - boxes: one image's ground-truth boxes.
  public func assign(anchors: [CornerBox], counts: [Int], boxes: [CornerBox]) -> [Int] {
    precondition(counts.reduce(0, +) == anchors.count, "FCOSAssigner: counts do not sum to anchors")
    var matched = [Int](repeating: -1, count: anchors.count)
    if boxes.isEmpty { return matched }
    let centers = boxes.map { SIMD2((($0[0] + $0[2]) / 2), ($0[1] + $0[3]) / 2) }
    let keys = boxes.map { Float(1e8) - BoxOps.area($0) }
    let firstEnd = counts[0]
    let lastStart = anchors.count - counts[counts.count - 1]
    for (i, a) in anchors.enumerated() {
      let (cx, cy) = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
      let size = a[2] - a[0]
      let lower: Float = i < firstEnd ? 0 : size * 4
      let upper: Float = i >= lastStart ? .infinity : size * 8
      var best: Float = 0
      var bestIndex = -1
      for (j, b) in boxes.enumerated() {
        guard max(abs(cx - centers[j].x), abs(cy - centers[j].y)) < centerSamplingRadius * size
        else { continue }
        let d = SIMD4(cx - b[0], cy - b[1], b[2] - cx, b[3] - cy)
        guard d.min() > 0 else { continue }
        let reach = d.max()
        guard reach > lower && reach < upper else { continue }
        if keys[j] > best {
          best = keys[j]
          bestIndex = j
        }
      }
      if best >= 1e-5 { matched[i] = bestIndex }
    }
    return matched
  }
}
