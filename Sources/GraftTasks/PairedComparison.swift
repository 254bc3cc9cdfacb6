import Foundation

/// Two runs' predictions on the same test images compared image by image (McNemar's test):
/// what tells a method that ends a few images below the linear probe from one that is worse.
public struct PairedComparison: Sendable, Equatable {
  /// Test images only the first run classifies correctly.
  public var onlyFirst: Int
  /// Test images only the second run classifies correctly.
  public var onlySecond: Int

  /// The discordant counts themselves.
  public init(onlyFirst: Int, onlySecond: Int) {
    self.onlyFirst = onlyFirst
    self.onlySecond = onlySecond
  }

  /// Counts the images each run alone gets right; nil unless both cover every label.
  public init?(first: [Int], second: [Int], labels: [Int]) {
    guard !labels.isEmpty, first.count == labels.count, second.count == labels.count else {
      return nil
    }
    var (a, b) = (0, 0)
    for i in labels.indices {
      let (x, y) = (first[i] == labels[i], second[i] == labels[i])
      if x && !y { a += 1 }
      if y && !x { b += 1 }
    }
    self.init(onlyFirst: a, onlySecond: b)
  }

  /// Two-sided exact p-value of McNemar's test: if the two runs were equally accurate, each
  /// image only one of them gets right would be a fair coin's toss between them.
  public var pValue: Double {
    let n = onlyFirst + onlySecond
    guard n > 0 else { return 1 }
    let k = min(onlyFirst, onlySecond)
    let logHalfToN = -Double(n) * log(2.0)
    var tail = 0.0
    for i in 0...k {
      tail += exp(
        lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1)) + logHalfToN)
    }
    return min(1, 2 * tail)
  }
}

extension ReportWriter {
  /// One sentence for each run that ends below the linear probe of its task (`linear` in the
  /// same sweep), saying by how many test images and whether that is more than chance
  /// (`PairedComparison` on the runs' predictions, with `testLabels` of the task); empty where
  /// the sweep has no probe or no method is below it.
  public static func belowProbe(_ summary: SweepSummary, testLabels: [String: [Int]]) -> [String] {
    var lines: [String] = []
    for task in summary.tasks {
      let here = summary.runs.filter { $0.task == task }
      guard let probe = here.first(where: { $0.method == "linear" }) else { continue }
      for run in here where run.method != "linear" && run.testTop1 < probe.testTop1 {
        let count = run.testPredictions.count
        var line = String(
          format: "%@ on %@: %.2f%% against the linear probe's %.2f%%", run.method, task,
          100 * run.testTop1, 100 * probe.testTop1)
        if let labels = testLabels[task],
          let paired = PairedComparison(
            first: run.testPredictions, second: probe.testPredictions, labels: labels)
        {
          let p = paired.pValue
          line += String(
            format:
              ", %d fewer of %d test images; where the two differ, %@ alone is right on %d and "
              + "the probe alone on %d (McNemar's exact test p = %.2g): ",
            paired.onlySecond - paired.onlyFirst, count, run.method, paired.onlyFirst,
            paired.onlySecond, p)
          line +=
            p < 0.05
            ? "below the probe beyond chance: on this task this run's recipe transfers worse "
              + "than a linear head on the frozen features"
            : "level with the probe on this test set; the difference is within chance"
        }
        lines.append(line + ".")
      }
    }
    return lines
  }
}
