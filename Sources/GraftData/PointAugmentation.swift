import Foundation

// Point-cloud training augmentation: Point-MAE's `PointcloudScaleAndTranslate` and
// `PointcloudRotate`, a uniform random rotation, PointNet++'s jitter and random input dropout,
// and random resampling to a fixed point count. All draw from Graft's seeded RandomGenerator, so
// a run is reproducible from its seed (the streams are not NumPy's).
//
// A cloud is a tensor [N, 3]; unit normals [N, 3], when a cloud has them, turn with the points.
// Every augmentation returns new tensors and records nothing on the tape.

/// A random transformation of one point cloud `[N, 3]` and, when given, its unit normals
/// `[N, 3]`.
public protocol PointAugmentation: Sendable {
  /// The transformed points and normals (nil when `normals` is nil), as new tensors.
  func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  )
}

extension PointAugmentation {
  /// The transformed cloud (no normals).
  public func callAsFunction(_ points: Tensor, generator: inout RandomGenerator) -> Tensor {
    apply(points, normals: nil, generator: &generator).points
  }

  /// The transformed cloud and normals; draws the same random numbers as without normals.
  public func callAsFunction(
    _ points: Tensor, normals: Tensor, generator: inout RandomGenerator
  ) -> (points: Tensor, normals: Tensor) {
    let out = apply(points, normals: normals, generator: &generator)
    return (out.points, out.normals!)
  }
}

/// Checks a cloud and its normals and returns the point count.
private func cloudCount(_ points: Tensor, _ normals: Tensor?, _ op: String) -> Int {
  precondition(
    points.rank == 2 && points.shape[1] == 3, "\(op): points \(points.shape) must be [N, 3]")
  if let normals {
    precondition(
      normals.shape == points.shape,
      "\(op): normals \(normals.shape) must match points \(points.shape)")
  }
  return points.shape[0]
}

/// Uniform in [low, high) with 24 random bits, as NumPy's `uniform(low, high)`.
private func uniform(_ low: Float, _ high: Float, _ generator: inout RandomGenerator) -> Float {
  low + (high - low) * generator.nextFloat()
}

/// Point-MAE's `PointcloudScaleAndTranslate` (its fine-tuning augmentation): every axis scaled by
/// its own factor in U(2/3, 3/2), then shifted by its own offset in U(−0.2, 0.2) (the official
/// defaults in `datasets/data_transforms.py`; three scales are drawn, then three offsets).
///
/// Normals are not moved by the shift; an anisotropic scale turns them as a surface's normals
/// turn (divided by the scale factors, the inverse transpose, then renormalised to unit length).
public struct RandomScaleAndTranslate: PointAugmentation {
  /// Range of each axis's scale factor.
  public var scale: ClosedRange<Float>
  /// Each axis's offset lies in `[−translation, translation)`.
  public var translation: Float

  /// Point-MAE's defaults: scale in [2/3, 3/2), offsets in [−0.2, 0.2).
  public init(scale: ClosedRange<Float> = (2.0 / 3.0)...(3.0 / 2.0), translation: Float = 0.2) {
    precondition(scale.lowerBound > 0, "scale factors must be positive, got \(scale)")
    precondition(translation >= 0, "translation range must be ≥ 0, got \(translation)")
    self.scale = scale
    self.translation = translation
  }

  /// Draws the per-axis factors and offsets, in Point-MAE's order.
  public func sampleParameters(generator: inout RandomGenerator) -> (
    scale: SIMD3<Float>, translation: SIMD3<Float>
  ) {
    var s = SIMD3<Float>()
    var t = SIMD3<Float>()
    for i in 0..<3 { s[i] = uniform(scale.lowerBound, scale.upperBound, &generator) }
    for i in 0..<3 { t[i] = uniform(-translation, translation, &generator) }
    return (s, t)
  }

  /// The scaled and shifted cloud; normals turned by the scale only.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    let n = cloudCount(points, normals, "RandomScaleAndTranslate")
    let (s, t) = sampleParameters(generator: &generator)
    let out = Tensor(shape: points.shape, zeroed: false)
    let (src, dst) = (points.pointer, out.pointer)
    for j in 0..<n {
      for a in 0..<3 { dst[3 * j + a] = src[3 * j + a] * s[a] + t[a] }
    }
    guard let normals else { return (out, nil) }
    let turned = Tensor(shape: normals.shape, zeroed: false)
    let (ns, nd) = (normals.pointer, turned.pointer)
    for j in 0..<n {
      let v = SIMD3(ns[3 * j], ns[3 * j + 1], ns[3 * j + 2]) / s
      let length = (v * v).sum().squareRoot()
      let u = length > 0 ? v / length : v
      (nd[3 * j], nd[3 * j + 1], nd[3 * j + 2]) = (u.x, u.y, u.z)
    }
    return (out, turned)
  }
}

/// A coordinate axis.
public enum PointAxis: Int, Sendable {
  /// x.
  case x = 0
  /// y: the up axis of ModelNet40, ShapeNet and ScanObjectNN as Point-MAE and PointNet++ load them.
  case y = 1
  /// z.
  case z = 2
}

/// A 3×3 matrix acting on row vectors, `p′ = p · R`, as Point-MAE's `torch.matmul(pc, R)`.
public struct PointTransform: Equatable, Sendable {
  /// Row-major entries: `m[3 * i + j]` is row i, column j.
  public var m: [Float]

  /// A matrix from its row-major entries.
  public init(rowMajor m: [Float]) {
    precondition(m.count == 9, "a 3×3 matrix needs 9 entries, got \(m.count)")
    self.m = m
  }

  /// The determinant.
  public var determinant: Float {
    m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
      + m[2] * (m[3] * m[7] - m[4] * m[6])
  }

  /// `rows · R` for a tensor `[N, 3]`.
  public func applied(to rows: Tensor) -> Tensor {
    precondition(rows.rank == 2 && rows.shape[1] == 3, "rows \(rows.shape) must be [N, 3]")
    let out = Tensor(shape: rows.shape, zeroed: false)
    let (src, dst) = (rows.pointer, out.pointer)
    for j in 0..<rows.shape[0] {
      let (x, y, z) = (src[3 * j], src[3 * j + 1], src[3 * j + 2])
      for c in 0..<3 { dst[3 * j + c] = x * m[c] + y * m[3 + c] + z * m[6 + c] }
    }
    return out
  }
}

/// A rotation about one axis by an angle drawn uniformly from `angles`: Point-MAE's
/// `PointcloudRotate` (and PointNet++'s `rotate_point_cloud`) with the defaults, about ModelNet's
/// up axis y by U(0, 2π): `p′ = p · R`, R = [[cos θ, 0, sin θ], [0, 1, 0], [−sin θ, 0, cos θ]].
/// Normals turn with the points.
public struct RandomUpAxisRotation: PointAugmentation {
  /// The axis turned about.
  public var axis: PointAxis
  /// Range of the angle, in radians.
  public var angles: ClosedRange<Float>

  /// A rotation about `axis` (default y, ModelNet's up axis) by an angle in `angles`.
  public init(axis: PointAxis = .y, angles: ClosedRange<Float> = 0...(2 * Float.pi)) {
    self.axis = axis
    self.angles = angles
  }

  /// The matrix for angle `theta`: a right-handed turn of the other two axes, in the order
  /// (y, z) about x, (z, x) about y, (x, y) about z, applied as `p · R`.
  public func matrix(angle theta: Float) -> PointTransform {
    let (c, s) = (Float(cos(Double(theta))), Float(sin(Double(theta))))
    switch axis {
    case .x: return PointTransform(rowMajor: [1, 0, 0, 0, c, s, 0, -s, c])
    case .y: return PointTransform(rowMajor: [c, 0, s, 0, 1, 0, -s, 0, c])
    case .z: return PointTransform(rowMajor: [c, s, 0, -s, c, 0, 0, 0, 1])
    }
  }

  /// Draws a matrix.
  public func sampleMatrix(generator: inout RandomGenerator) -> PointTransform {
    matrix(angle: uniform(angles.lowerBound, angles.upperBound, &generator))
  }

  /// The rotated cloud and normals.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    _ = cloudCount(points, normals, "RandomUpAxisRotation")
    let r = sampleMatrix(generator: &generator)
    return (r.applied(to: points), normals.map { r.applied(to: $0) })
  }
}

/// A rotation drawn uniformly from SO(3) (the Haar measure): a uniform random unit quaternion by
/// Shoemake's method (three uniforms), turned into a matrix. Normals turn with the points.
public struct RandomRotation: PointAugmentation {
  /// A uniform random rotation.
  public init() {}

  /// Draws a matrix (computed in double precision, rounded once).
  public func sampleMatrix(generator: inout RandomGenerator) -> PointTransform {
    func u() -> Double { Double(generator.next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
    let (u1, u2, u3) = (u(), u(), u())
    let (a, b) = ((1 - u1).squareRoot(), u1.squareRoot())
    let w = a * sin(2 * Double.pi * u2)
    let x = a * cos(2 * Double.pi * u2)
    let y = b * sin(2 * Double.pi * u3)
    let z = b * cos(2 * Double.pi * u3)
    // The rotation matrix of unit quaternion (w, x, y, z), transposed for p · R.
    let r: [Double] = [
      1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y),
      2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x),
      2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y),
    ]
    return PointTransform(rowMajor: r.map { Float($0) })
  }

  /// The rotated cloud and normals.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    _ = cloudCount(points, normals, "RandomRotation")
    let r = sampleMatrix(generator: &generator)
    return (r.applied(to: points), normals.map { r.applied(to: $0) })
  }
}

/// PointNet++'s `jitter_point_cloud` (and Point-MAE's `PointcloudJitter`): every coordinate plus
/// Gaussian noise of std `sigma`, clipped to [−clip, clip]. Normals are unchanged.
public struct RandomJitter: PointAugmentation {
  /// Standard deviation of the noise.
  public var sigma: Float
  /// Bound on each coordinate's offset.
  public var clip: Float

  /// PointNet++'s defaults: sigma 0.01, clip 0.05.
  public init(sigma: Float = 0.01, clip: Float = 0.05) {
    precondition(sigma >= 0 && clip >= 0, "jitter sigma \(sigma) and clip \(clip) must be ≥ 0")
    self.sigma = sigma
    self.clip = clip
  }

  /// The jittered cloud (one normal sample per coordinate, x, y, z of point 0 first).
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    let n = cloudCount(points, normals, "RandomJitter")
    let out = Tensor(shape: points.shape, zeroed: false)
    let (src, dst) = (points.pointer, out.pointer)
    for i in 0..<(3 * n) {
      dst[i] = src[i] + Swift.min(Swift.max(sigma * generator.nextNormal(), -clip), clip)
    }
    return (out, normals?.copy())
  }
}

/// PointNet++'s `random_point_dropout` (Point-MAE's `PointcloudRandomInputDropout`): a ratio r
/// drawn in U(0, `maxRatio`), then every point whose own uniform draw is ≤ r is replaced by the
/// first point (and its normal by the first normal), so the count stays N.
public struct RandomPointDropout: PointAugmentation {
  /// Largest dropout ratio.
  public var maxRatio: Float

  /// PointNet++'s default 0.875 (Point-MAE's class defaults to 0.5).
  public init(maxRatio: Float = 0.875) {
    precondition(maxRatio >= 0 && maxRatio < 1, "maxRatio must be in [0, 1), got \(maxRatio)")
    self.maxRatio = maxRatio
  }

  /// Which points are dropped (the ratio first, then one draw per point).
  public func sampleMask(count n: Int, generator: inout RandomGenerator) -> [Bool] {
    let ratio = generator.nextFloat() * maxRatio
    return (0..<n).map { _ in generator.nextFloat() <= ratio }
  }

  /// The cloud with the dropped points (and normals) replaced by the first one.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    let n = cloudCount(points, normals, "RandomPointDropout")
    let dropped = sampleMask(count: n, generator: &generator)
    func replace(_ t: Tensor) -> Tensor {
      let out = t.copy()
      let p = out.pointer
      for j in 1..<Swift.max(n, 1) where dropped[j] { (p + 3 * j).update(from: p, count: 3) }
      return out
    }
    return (replace(points), normals.map(replace))
  }
}

/// Random resampling to exactly `count` points: a random subset without replacement when the
/// cloud has at least `count` points; otherwise every point once plus `count − N` drawn with
/// replacement. The order is random either way; normals follow their points.
public struct RandomResample: PointAugmentation {
  /// Points in the result.
  public var count: Int

  /// Resampling to `count` points.
  public init(count: Int) {
    precondition(count >= 0, "cannot resample to \(count) points")
    self.count = count
  }

  /// The source index of each output point.
  public func sampleIndices(from n: Int, generator: inout RandomGenerator) -> [Int] {
    precondition(n > 0 || count == 0, "cannot resample an empty cloud to \(count) points")
    var picks = generator.permutation(n)
    if count <= n { return Array(picks.prefix(count)) }
    for _ in n..<count { picks.append(generator.nextInt(below: n)) }
    // Shuffle again so the repeated points are not all at the end.
    let order = generator.permutation(count)
    return order.map { picks[$0] }
  }

  /// The resampled cloud and normals, `[count, 3]`.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    let n = cloudCount(points, normals, "RandomResample")
    let picks = sampleIndices(from: n, generator: &generator)
    func pick(_ t: Tensor) -> Tensor {
      let out = Tensor(shape: [count, 3], zeroed: false)
      for (i, j) in picks.enumerated() {
        (out.pointer + 3 * i).update(from: t.pointer + 3 * j, count: 3)
      }
      return out
    }
    return (pick(points), normals.map(pick))
  }
}

/// Augmentations applied in order, as torchvision's `Compose`.
public struct PointAugmentations: PointAugmentation {
  /// The steps, first applied first.
  public var steps: [any PointAugmentation]

  /// A pipeline of `steps`.
  public init(_ steps: [any PointAugmentation]) { self.steps = steps }

  /// Every step in turn.
  public func apply(_ points: Tensor, normals: Tensor?, generator: inout RandomGenerator) -> (
    points: Tensor, normals: Tensor?
  ) {
    var current = (points: points, normals: normals)
    for step in steps {
      current = step.apply(current.points, normals: current.normals, generator: &generator)
    }
    return current
  }
}
