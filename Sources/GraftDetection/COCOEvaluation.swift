import Foundation

/// The twelve COCO box scores, as pycocotools' `COCOeval.summarize()` prints them; -1 where a
/// score is undefined (no ground truth to measure it on).
public struct COCOBoxScores: Equatable, Sendable {
  /// The twelve numbers in `COCOeval.stats` order: AP, AP50, AP75, APs, APm, APl, AR1, AR10,
  /// AR100, ARs, ARm, ARl.
  public var stats: [Double]

  /// Scores from the twelve numbers in `stats` order (read back from a summary).
  public init(stats: [Double]) {
    precondition(stats.count == 12, "COCOBoxScores: \(stats.count) numbers, not 12")
    self.stats = stats
  }

  /// The names of `stats`, in order.
  public static let names = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
  ]

  /// `(name, value)` pairs in the documented order.
  public var named: [(String, Double)] { Array(zip(Self.names, stats)) }
}

/// COCO's box evaluation, rule for rule as pycocotools' `COCOeval` (iouType `bbox`) does it.
///
/// - Images are all the ground truth's images and categories all its categories, both in
///   ascending id order; ground truth and detections are grouped by (image, category) in file
///   order. Detections get ids 1, 2, … in file order and their box's area, as `loadRes` does.
/// - Per image and category, detections are sorted by score, highest first, ties kept in file
///   order (numpy's stable mergesort), and only the first 100 are kept. IoU is `bbIou` of
///   pycocotools' `maskApi.c`; against a crowd region the union is the detection's own area.
/// - Per IoU threshold (0.50:0.05:0.95), area range (all, small < 32², medium, large > 96², by
///   the annotation's `area`, both ends inclusive) and detection, the best still-free ground
///   truth at or above the threshold is matched; crowd regions may match any number of
///   detections, ground truth that is a crowd or outside the area range is tried last and a
///   detection matched to it is ignored, as is an unmatched detection outside the area range.
///   Matching records the ground truth's `id`, and like pycocotools a match to an annotation
///   with id 0 then counts as no match.
/// - Precision at 101 recall points (0:0.01:1), made monotone from the right, over the
///   detections of all images sorted stably by score within each of maxDets 1, 10, 100 per
///   image; recall is the last recall reached. The twelve numbers are means over the defined
///   entries (those of categories with ground truth outside crowds), summed as numpy sums.
public enum COCOBoxEvaluation {
  /// `np.linspace(.5, 0.95, 10)`.
  public static let iouThresholds = NumpyArithmetic.linspace(0.5, 0.95, 10)
  /// `np.linspace(.0, 1.00, 101)`.
  public static let recallThresholds = NumpyArithmetic.linspace(0, 1, 101)
  /// all, small, medium, large: `[0², 1e5²]`, `[0², 32²]`, `[32², 96²]`, `[96², 1e5²]`.
  public static let areaRanges: [(Double, Double)] = [
    (0, 1e10), (0, 1024), (1024, 9216), (9216, 1e10),
  ]
  /// Detections per image counted for each recall and precision.
  public static let maxDetections = [1, 10, 100]

  /// Precision and recall as `COCOeval.accumulate()` leaves them in `eval`.
  public struct Accumulated: Sendable {
    /// `precision[t][r][k][a][m]`, -1 where undefined.
    public var precision: [[[[[Double]]]]]
    /// `recall[t][k][a][m]`, -1 where undefined.
    public var recall: [[[[Double]]]]
    /// The category ids, ascending (the `k` axis).
    public var categoryIDs: [Int]
  }

  /// The twelve scores of `detections` against `groundTruth`.
  public static func evaluate(groundTruth: DetectionDataset, detections: [Detection])
    -> COCOBoxScores
  {
    summarize(accumulate(groundTruth: groundTruth, detections: detections))
  }

  /// One ground-truth box as the matching sees it.
  private struct Truth {
    var id: Int
    var box: BoundingBox
    var area: Double
    var isCrowd: Bool
  }

  /// One detection as the matching sees it.
  private struct Found {
    var id: Int
    var box: BoundingBox
    var score: Double
  }

  /// `evaluateImg`'s result for one image, category and area range (maxDet 100).
  private struct ImageResult {
    var scores: [Double]
    /// `dtMatches[t][d]`: the matched ground truth's id, 0 when none.
    var matches: [[Int]]
    var ignored: [[Bool]]
    var truthIgnored: [Bool]
  }

  private struct Key: Hashable {
    var image: Int
    var category: Int
  }

  /// `computeIoU` and `evaluate()`, then `accumulate()`.
  public static func accumulate(groundTruth: DetectionDataset, detections: [Detection])
    -> Accumulated
  {
    let imageIDs = Array(Set(groundTruth.images.map(\.id))).sorted()
    let categoryIDs = Array(Set(groundTruth.categories.map(\.id))).sorted()
    let maxDet = maxDetections.last!

    var truths: [Key: [Truth]] = [:]
    for image in groundTruth.images {
      for a in image.annotations {
        truths[Key(image: image.id, category: a.categoryID), default: []].append(
          Truth(id: a.id, box: a.box, area: a.area, isCrowd: a.isCrowd))
      }
    }
    var founds: [Key: [Found]] = [:]
    for (i, d) in detections.enumerated() {
      founds[Key(image: d.imageID, category: d.categoryID), default: []].append(
        Found(id: i + 1, box: d.box, score: d.score))
    }
    // Sorted by score (stable) and cut to maxDet once: computeIoU and evaluateImg sort alike.
    for (key, list) in founds {
      let order = NumpyArithmetic.stableDescendingOrder(list.map(\.score)).prefix(maxDet)
      founds[key] = order.map { list[$0] }
    }

    let T = iouThresholds.count
    let R = recallThresholds.count
    let K = categoryIDs.count
    let A = areaRanges.count
    let M = maxDetections.count
    var precision = Array(
      repeating: Array(
        repeating: Array(
          repeating: Array(repeating: Array(repeating: -1.0, count: M), count: A),
          count: K), count: R), count: T)
    var recall = Array(
      repeating: Array(
        repeating: Array(repeating: Array(repeating: -1.0, count: M), count: A),
        count: K), count: T)

    for (k, category) in categoryIDs.enumerated() {
      // IoUs per image, [detection][truth] in the truths' file order.
      var ious: [Int: [[Double]]] = [:]
      for image in imageIDs {
        let key = Key(image: image, category: category)
        let g = truths[key] ?? []
        let d = founds[key] ?? []
        ious[image] = d.map { dt in g.map { iou(dt.box, $0.box, crowd: $0.isCrowd) } }
      }
      for (a, range) in areaRanges.enumerated() {
        var results: [ImageResult] = []
        for image in imageIDs {
          let key = Key(image: image, category: category)
          if let r = evaluateImage(
            truths[key] ?? [], founds[key] ?? [], ious: ious[image]!, range: range)
          {
            results.append(r)
          }
        }
        if results.isEmpty { continue }
        let truthIgnored = results.flatMap(\.truthIgnored)
        let positives = truthIgnored.filter { !$0 }.count
        if positives == 0 { continue }
        for (m, limit) in maxDetections.enumerated() {
          let scores = results.flatMap { $0.scores.prefix(limit) }
          let order = NumpyArithmetic.stableDescendingOrder(scores)
          for t in 0..<T {
            let matched = results.flatMap { $0.matches[t].prefix(limit) }
            let ignored = results.flatMap { $0.ignored[t].prefix(limit) }
            var tp = 0.0
            var fp = 0.0
            var rc: [Double] = []
            var pr: [Double] = []
            rc.reserveCapacity(order.count)
            pr.reserveCapacity(order.count)
            for i in order {
              if ignored[i] {
                // Neither count changes; the cumulative sums repeat.
              } else if matched[i] != 0 {
                tp += 1
              } else {
                fp += 1
              }
              rc.append(tp / Double(positives))
              pr.append(tp / (fp + tp + Double.ulpOfOne))
            }
            recall[t][k][a][m] = rc.last ?? 0
            if pr.count > 1 {
              for i in stride(from: pr.count - 1, to: 0, by: -1) where pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i]
              }
            }
            for r in 0..<R {
              let index = searchSortedLeft(rc, recallThresholds[r])
              precision[t][r][k][a][m] = index < pr.count ? pr[index] : 0
            }
          }
        }
      }
    }
    return Accumulated(precision: precision, recall: recall, categoryIDs: categoryIDs)
  }

  /// `COCOeval.summarize()`'s twelve numbers from accumulated precision and recall.
  public static func summarize(_ e: Accumulated) -> COCOBoxScores {
    func precisionMean(iou: Double?, area: Int, maxDet: Int) -> Double {
      let m = maxDetections.firstIndex(of: maxDet)!
      var values: [Double] = []
      // numpy's order over [t, r, k] after indexing.
      for t in iouThresholds.indices where iou == nil || iouThresholds[t] == iou {
        for r in recallThresholds.indices {
          for k in e.categoryIDs.indices where e.precision[t][r][k][area][m] > -1 {
            values.append(e.precision[t][r][k][area][m])
          }
        }
      }
      return values.isEmpty ? -1 : NumpyArithmetic.mean(values)
    }
    func recallMean(area: Int, maxDet: Int) -> Double {
      let m = maxDetections.firstIndex(of: maxDet)!
      var values: [Double] = []
      for t in iouThresholds.indices {
        for k in e.categoryIDs.indices where e.recall[t][k][area][m] > -1 {
          values.append(e.recall[t][k][area][m])
        }
      }
      return values.isEmpty ? -1 : NumpyArithmetic.mean(values)
    }
    return COCOBoxScores(stats: [
      precisionMean(iou: nil, area: 0, maxDet: 100),
      precisionMean(iou: 0.5, area: 0, maxDet: 100),
      precisionMean(iou: 0.75, area: 0, maxDet: 100),
      precisionMean(iou: nil, area: 1, maxDet: 100),
      precisionMean(iou: nil, area: 2, maxDet: 100),
      precisionMean(iou: nil, area: 3, maxDet: 100),
      recallMean(area: 0, maxDet: 1),
      recallMean(area: 0, maxDet: 10),
      recallMean(area: 0, maxDet: 100),
      recallMean(area: 1, maxDet: 100),
      recallMean(area: 2, maxDet: 100),
      recallMean(area: 3, maxDet: 100),
    ])
  }

  /// pycocotools' `bbIou` for one pair: intersection over union, or over the detection's area
  /// when the ground truth is a crowd region.
  static func iou(_ d: BoundingBox, _ g: BoundingBox, crowd: Bool) -> Double {
    let w = min(d.width + d.x, g.width + g.x) - max(d.x, g.x)
    if w <= 0 { return 0 }
    let h = min(d.height + d.y, g.height + g.y) - max(d.y, g.y)
    if h <= 0 { return 0 }
    let i = w * h
    let da = d.width * d.height
    let u = crowd ? da : da + g.width * g.height - i
    return i / u
  }

  /// `evaluateImg` for one image and category (detections already sorted and cut to maxDet).
  private static func evaluateImage(
    _ gt: [Truth], _ dt: [Found], ious: [[Double]], range: (Double, Double)
  ) -> ImageResult? {
    if gt.isEmpty && dt.isEmpty { return nil }
    let outside = gt.map { $0.isCrowd || $0.area < range.0 || $0.area > range.1 }
    // Ignored ground truth last, otherwise file order (a stable sort on the flag).
    let gtOrder = gt.indices.filter { !outside[$0] } + gt.indices.filter { outside[$0] }
    let g = gtOrder.map { gt[$0] }
    let gIgnored = gtOrder.map { outside[$0] }
    let T = iouThresholds.count
    var truthMatched = Array(repeating: Array(repeating: false, count: g.count), count: T)
    var matches = Array(repeating: Array(repeating: 0, count: dt.count), count: T)
    var ignored = Array(repeating: Array(repeating: false, count: dt.count), count: T)
    if !g.isEmpty && !dt.isEmpty {
      for (t, threshold) in iouThresholds.enumerated() {
        for d in dt.indices {
          var best = min(threshold, 1 - 1e-10)
          var m = -1
          for j in g.indices {
            if truthMatched[t][j] && !g[j].isCrowd { continue }
            // Matched to a regular box already: the ignored ones that follow cannot replace it.
            if m > -1 && !gIgnored[m] && gIgnored[j] { break }
            let value = ious[d][gtOrder[j]]
            if value < best { continue }
            best = value
            m = j
          }
          if m == -1 { continue }
          ignored[t][d] = gIgnored[m]
          matches[t][d] = g[m].id
          truthMatched[t][m] = true
        }
      }
    }
    for d in dt.indices {
      let area = dt[d].box.area
      if area < range.0 || area > range.1 {
        for t in 0..<T where matches[t][d] == 0 { ignored[t][d] = true }
      }
    }
    return ImageResult(
      scores: dt.map(\.score), matches: matches, ignored: ignored, truthIgnored: gIgnored)
  }

  /// `np.searchsorted(values, x, side="left")` on non-decreasing values.
  private static func searchSortedLeft(_ values: [Double], _ x: Double) -> Int {
    var low = 0
    var high = values.count
    while low < high {
      let mid = (low + high) / 2
      if values[mid] < x { low = mid + 1 } else { high = mid }
    }
    return low
  }
}
