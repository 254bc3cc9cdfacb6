import Foundation

/// VOC's average precision per category and its mean, as the VOC devkit's Python port
/// (`voc_eval.py`, used by Detectron2's VOC evaluator) computes it.
public struct VOCScores: Equatable, Sendable {
  /// AP per category id, area under the monotone precision–recall curve (VOC 2010 on); -1 for
  /// a category with no ground truth that counts.
  public var averagePrecision: [Int: Double]
  /// AP per category id with VOC 2007's 11-point interpolation; -1 as above.
  public var averagePrecision11: [Int: Double]
  /// The mean of the defined `averagePrecision`s, or -1 when none is.
  public var meanAP: Double
  /// The mean of the defined `averagePrecision11`s, or -1 when none is.
  public var meanAP11: Double
}

/// VOC's detection AP at one IoU threshold.
///
/// Per category, detections of all images are taken highest score first (ties in file order)
/// and each is matched to the ground-truth box it overlaps most; above the threshold (strictly)
/// that is a true positive if the box is still free, a false positive if it was taken, and
/// neither if the box is `difficult`. Below it, a false positive. Crowd regions from COCO files
/// count as difficult. Recall is over the boxes that are not difficult.
public enum VOCEvaluation {
  /// Scores `detections` against `groundTruth` at IoU `threshold` (VOC: 0.5).
  ///
  /// `pixelOffset` 1 reproduces the devkit's integer-pixel convention (widths `x2 - x1 + 1`),
  /// right for boxes in VOC's inclusive pixel indices; 0 (the default) treats boxes as
  /// continuous, as COCO-format boxes are.
  public static func evaluate(
    groundTruth: DetectionDataset, detections: [Detection], threshold: Double = 0.5,
    pixelOffset: Double = 0
  ) -> VOCScores {
    let categoryIDs = Array(Set(groundTruth.categories.map(\.id))).sorted()
    var ap: [Int: Double] = [:]
    var ap11: [Int: Double] = [:]
    for category in categoryIDs {
      var boxes: [Int: [BoundingBox]] = [:]
      var difficult: [Int: [Bool]] = [:]
      var positives = 0
      for image in groundTruth.images {
        for a in image.annotations where a.categoryID == category {
          boxes[image.id, default: []].append(a.box)
          let hard = a.isDifficult || a.isCrowd
          difficult[image.id, default: []].append(hard)
          if !hard { positives += 1 }
        }
      }
      if positives == 0 {
        ap[category] = -1
        ap11[category] = -1
        continue
      }
      let found = detections.filter { $0.categoryID == category }
      var taken = difficult.mapValues { Array(repeating: false, count: $0.count) }
      var tp: [Double] = []
      var fp: [Double] = []
      var truePositives = 0.0
      var falsePositives = 0.0
      for i in NumpyArithmetic.stableDescendingOrder(found.map(\.score)) {
        let d = found[i]
        var best = -Double.infinity
        var bestIndex = -1
        for (j, g) in (boxes[d.imageID] ?? []).enumerated() {
          let o = overlap(d.box, g, offset: pixelOffset)
          if o > best {
            best = o
            bestIndex = j
          }
        }
        if best > threshold {
          if !difficult[d.imageID]![bestIndex] {
            if !taken[d.imageID]![bestIndex] {
              truePositives += 1
              taken[d.imageID]![bestIndex] = true
            } else {
              falsePositives += 1
            }
          }
        } else {
          falsePositives += 1
        }
        tp.append(truePositives)
        fp.append(falsePositives)
      }
      let recall = tp.map { $0 / Double(positives) }
      let precision = zip(tp, fp).map { $0 / max($0 + $1, Double.ulpOfOne) }
      ap[category] = areaAP(recall, precision)
      ap11[category] = elevenPointAP(recall, precision)
    }
    func mean(_ values: [Int: Double]) -> Double {
      let defined = categoryIDs.compactMap { values[$0] }.filter { $0 > -1 }
      return defined.isEmpty ? -1 : NumpyArithmetic.mean(defined)
    }
    return VOCScores(
      averagePrecision: ap, averagePrecision11: ap11, meanAP: mean(ap), meanAP11: mean(ap11))
  }

  /// The devkit's overlap of two boxes given as corners, with its `+ offset` on every extent.
  static func overlap(_ d: BoundingBox, _ g: BoundingBox, offset: Double) -> Double {
    let (dx2, dy2, gx2, gy2) = (d.maxX, d.maxY, g.maxX, g.maxY)
    let iw = max(min(gx2, dx2) - max(g.x, d.x) + offset, 0)
    let ih = max(min(gy2, dy2) - max(g.y, d.y) + offset, 0)
    let inter = iw * ih
    let union =
      (dx2 - d.x + offset) * (dy2 - d.y + offset) + (gx2 - g.x + offset) * (gy2 - g.y + offset)
      - inter
    return inter / union
  }

  /// `voc_ap(use_07_metric=False)`: the area under the precision envelope, summed where recall
  /// changes.
  static func areaAP(_ recall: [Double], _ precision: [Double]) -> Double {
    let mrec = [0] + recall + [1]
    var mpre = [0] + precision + [0]
    for i in stride(from: mpre.count - 1, to: 0, by: -1) { mpre[i - 1] = max(mpre[i - 1], mpre[i]) }
    var terms: [Double] = []
    for i in 0..<(mrec.count - 1) where mrec[i + 1] != mrec[i] {
      terms.append((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    }
    return NumpyArithmetic.sum(terms)
  }

  /// `voc_ap(use_07_metric=True)`: the mean of the best precision at recall ≥ 0, 0.1, …, 1.
  static func elevenPointAP(_ recall: [Double], _ precision: [Double]) -> Double {
    var ap = 0.0
    for i in 0...10 {
      // np.arange(0., 1.1, 0.1) computes i * 0.1.
      let t = Double(i) * 0.1
      var p = 0.0
      var any = false
      for (r, q) in zip(recall, precision) where r >= t {
        p = any ? max(p, q) : q
        any = true
      }
      ap = ap + p / 11
    }
    return ap
  }
}
