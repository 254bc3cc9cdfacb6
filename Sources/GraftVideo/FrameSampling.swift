import GraftTensor

/// Which frames of a video to take, as video models sample them.
public enum FrameSampling: Sendable, Equatable {
  /// PLLaVA's evaluation rule (`get_index` in its eval code, shared with the VideoChat2 family):
  /// `seg = (N − 1) / T`, `index_i = int(seg / 2) + round(seg · i)` with NumPy's
  /// round-half-to-even.
  case pllava
  /// PLLaVA's rule over the part of the video between `start` and `end` seconds (its `bound`,
  /// as for MVBench): `start_idx = max(0, round(start · fps))`,
  /// `end_idx = min(round(end · fps), N − 1)`, `seg = (end_idx − start_idx) / T`,
  /// `index_i = int(start_idx + seg / 2 + round(seg · i))`, rounding half to even.
  case pllavaBound(start: Double, end: Double)
  /// The middle frame of each of T equal segments: `floor((i + 0.5) · N / T)`.
  case middle
  /// One frame drawn uniformly from each of T equal segments `[floor(i·N/T), floor((i+1)·N/T))`
  /// (training-time sampling); the same seed gives the same frames.
  case random(seed: UInt64)

  /// Parses `pllava`, `middle` or `random` (with `seed`).
  public init?(name: String, seed: UInt64 = 0) {
    switch name {
    case "pllava", "uniform": self = .pllava
    case "middle": self = .middle
    case "random": self = .random(seed: seed)
    default: return nil
    }
  }

  /// The rule's name.
  public var name: String {
    switch self {
    case .pllava, .pllavaBound: "pllava"
    case .middle: "middle"
    case .random: "random"
    }
  }

  /// `count` frame indices into a video of `frameCount` frames, in order, each in
  /// `0..<frameCount` (indices repeat when `count > frameCount`); `fps` is used by
  /// `pllavaBound` only.
  public func indices(frameCount n: Int, count t: Int, fps: Double = 0) -> [Int] {
    precondition(n >= 1 && t >= 1, "frame sampling needs frames (\(n)) and a count (\(t)) ≥ 1")
    switch self {
    case .pllava:
      let seg = Double(n - 1) / Double(t)
      let start = Int(seg / 2)
      return (0..<t).map { i in
        min(n - 1, start + Int((seg * Double(i)).rounded(.toNearestOrEven)))
      }
    case .pllavaBound(let start, let end):
      let first = max(0, Int((start * fps).rounded(.toNearestOrEven)))
      let last = max(first, min(Int((end * fps).rounded(.toNearestOrEven)), n - 1))
      let seg = Double(last - first) / Double(t)
      return (0..<t).map { i in
        min(n - 1, Int(Double(first) + seg / 2 + (seg * Double(i)).rounded(.toNearestOrEven)))
      }
    case .middle:
      // floor((i + 0.5)·N / T) in integers, so no rounding can move it.
      return (0..<t).map { i in min(n - 1, (2 * i + 1) * n / (2 * t)) }
    case .random(let seed):
      var generator = RandomGenerator(seed: seed)
      return (0..<t).map { i in
        let start = min(n - 1, i * n / t)
        let end = max(start + 1, min(n, (i + 1) * n / t))
        return Int.random(in: start..<end, using: &generator)
      }
    }
  }
}
