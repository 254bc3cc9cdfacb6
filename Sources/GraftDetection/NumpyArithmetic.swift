/// The few numpy operations whose exact rounding the COCO and VOC scores depend on, written out
/// so the scores come out bit for bit as the Python tools print them.
enum NumpyArithmetic {
  /// `np.linspace(start, stop, count)` (endpoint included): `i * step + start`, the last value
  /// set to `stop`, as numpy computes it.
  static func linspace(_ start: Double, _ stop: Double, _ count: Int) -> [Double] {
    let step = (stop - start) / Double(count - 1)
    var values = (0..<count).map { Double($0) * step + start }
    values[count - 1] = stop
    return values
  }

  /// `np.sum` of a contiguous float64 array: numpy's pairwise summation (eight accumulators in
  /// blocks of up to 128 values, halving above that).
  static func sum(_ values: [Double]) -> Double {
    values.withUnsafeBufferPointer { pairwise($0, 0, values.count) }
  }

  /// `np.mean`: the pairwise sum divided by the count.
  static func mean(_ values: [Double]) -> Double { sum(values) / Double(values.count) }

  private static func pairwise(_ a: UnsafeBufferPointer<Double>, _ from: Int, _ n: Int) -> Double {
    if n < 8 {
      var res = 0.0
      for i in 0..<n { res += a[from + i] }
      return res
    } else if n <= 128 {
      var r = (0..<8).map { a[from + $0] }
      var i = 8
      while i < n - n % 8 {
        for j in 0..<8 { r[j] += a[from + i + j] }
        i += 8
      }
      var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
      while i < n {
        res += a[from + i]
        i += 1
      }
      return res
    } else {
      var half = n / 2
      half -= half % 8
      return pairwise(a, from, half) + pairwise(a, from + half, n - half)
    }
  }

  /// The order `np.argsort(-scores, kind="mergesort")` gives: highest score first, ties in their
  /// original order.
  static func stableDescendingOrder(_ scores: [Double]) -> [Int] {
    Array(scores.indices).sorted {
      scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1)
    }
  }
}
