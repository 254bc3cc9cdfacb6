import Foundation

/// Classification results over a split.
public struct EvaluationResult: Sendable, Equatable {
  /// Mean cross-entropy.
  public var loss: Double
  /// Top-1 accuracy in [0, 1].
  public var top1: Double
  /// Top-5 accuracy (top-C when there are fewer than 5 classes).
  public var top5: Double
  /// Accuracy of each class (NaN-free: 0 for a class with no samples).
  public var perClass: [Double]
  /// `confusion[true][predicted]` counts.
  public var confusion: [[Int]]
  /// Samples evaluated.
  public var count: Int

  /// Mean per-class accuracy (ScanObjectNN's and ModelNet's "mAcc"): the mean of `perClass`
  /// over the classes that have samples in the split (from `confusion`); `top1` when there is
  /// no confusion matrix.
  public var meanPerClass: Double {
    let present = confusion.enumerated().compactMap { i, row -> Double? in
      let total = row.reduce(0, +)
      return total == 0 ? nil : Double(row[i]) / Double(total)
    }
    return present.isEmpty ? top1 : present.reduce(0, +) / Double(present.count)
  }

  /// Accumulates results from logits.
  public struct Accumulator {
    var lossSum = 0.0
    var correct1 = 0
    var correct5 = 0
    var confusion: [[Int]]
    var count = 0

    /// An empty accumulator for `classes` classes.
    public init(classes: Int) {
      confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    /// Adds a batch: `logits` [B, C] and the true labels.
    public mutating func add(logits: Tensor, labels: [Int]) {
      let c = logits.shape[1]
      let loss = withNoGrad { logits.crossEntropy(targets: labels) }.item
      lossSum += Double(loss) * Double(labels.count)
      for (i, label) in labels.enumerated() {
        let row = (0..<c).map { logits.pointer[i * c + $0] }
        // Ties go to the lower index, as argmax does.
        let order = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
        if order[0] == label { correct1 += 1 }
        if order.prefix(5).contains(label) { correct5 += 1 }
        confusion[label][order[0]] += 1
      }
      count += labels.count
    }

    /// The results so far.
    public var result: EvaluationResult {
      let perClass = confusion.enumerated().map { i, row in
        let total = row.reduce(0, +)
        return total == 0 ? 0 : Double(row[i]) / Double(total)
      }
      let n = Double(max(count, 1))
      return EvaluationResult(
        loss: lossSum / n, top1: Double(correct1) / n, top5: Double(correct5) / n,
        perClass: perClass, confusion: confusion, count: count)
    }
  }

  /// As a JSON object (`loss`, `top1`, `top5`, `per_class`, `mean_per_class`, `count`, and
  /// `confusion` when asked).
  public func json(confusion withConfusion: Bool = true) -> [String: Any] {
    var out: [String: Any] = [
      "loss": loss, "top1": top1, "top5": top5, "per_class": perClass,
      "mean_per_class": meanPerClass, "count": count,
    ]
    if withConfusion { out["confusion"] = confusion }
    return out
  }
}

/// The logits of `method` over `dataset`, in dataset order, with the metrics; run in eval mode
/// without recording.
public func evaluate<Sample>(
  _ method: TuningMethod, on dataset: any Dataset<Sample>,
  transform: @escaping SampleTransform<Sample>,
  batchSize: Int, workers: Int = 1
) throws -> (result: EvaluationResult, logits: Tensor) {
  method.setTraining(false)
  let loader = DataLoader(
    dataset: dataset, batchSize: batchSize, shuffle: false, workers: workers,
    transform: transform)
  var acc = EvaluationResult.Accumulator(classes: method.classes)
  var all: [Tensor] = []
  let batches = loader.batches(epoch: 0)
  defer { batches.close() }
  while let batch = try batches.next() {
    let logits = withNoGrad { method(batch.inputs) }
    acc.add(logits: logits, labels: batch.labels)
    all.append(logits)
  }
  let logits = all.isEmpty ? Tensor.zeros([0, method.classes]) : Tensor.concat(all, axis: 0)
  return (acc.result, logits)
}

/// Peak resident set size of this process, in bytes.
public func peakResidentBytes() -> Int {
  var usage = rusage()
  #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
  #else
    getrusage(RUSAGE_SELF, &usage)
  #endif
  return Int(usage.ru_maxrss) * 1024
}

/// User plus system CPU time of this process so far, seconds (over all threads).
public func processCPUSeconds() -> Double {
  var usage = rusage()
  #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
  #else
    getrusage(RUSAGE_SELF, &usage)
  #endif
  func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
  return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
