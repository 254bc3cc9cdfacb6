import Foundation
import GraftData

/// How a cloud is brought to a fixed number of points.
public enum PointSampling: String, Sendable, CaseIterable {
  /// Farthest point sampling with pointnet2_ops' convention (from point 0, the first maximum on
  /// ties, points within 1e-3 of the origin in squared norm skipped): Point-MAE's `misc.fps`.
  case farthest
  /// The first points in file order (Point-MAE's ModelNet loader with `uniform = False`).
  case first
  /// A uniformly random subset (`RandomResample`).
  case random
}

/// The sample transforms that turn a `PointCloud` into a model's input, `[npoints, 3]` (or
/// `[npoints, 6]`: positions then normals), as Point-MAE's fine-tuning feeds its encoder.
///
/// Both transforms first drop points with a non-finite coordinate (an organised PCD's missing
/// points) and, with `normalize`, move the cloud to the unit sphere (`pc_normalize`: centroid at
/// the origin, farthest point at distance 1), computed over the whole cloud as read. Point-MAE's
/// ModelNet loader normalises too; its ScanObjectNN loader does not (those files are stored
/// normalised), so pass `normalize: false` to feed ScanObjectNN exactly as it does. A cloud with
/// fewer points than asked for is padded by repeating points (evaluation: all points in order,
/// then again from the first; training: `RandomResample`'s draw).
///
/// Randomness comes only from the generator the data loader hands each sample (seeded by the
/// loader's seed, the epoch and the sample index), so runs are reproducible.
public enum PointTransforms {
  /// Point-MAE's evaluation input (`tools/runner_finetune.py`, `validate`): the cloud
  /// normalised, then `points` points picked by `sampling` (by default farthest point sampling
  /// from point 0, as `misc.fps(points, npoints)`), in the order picked. Deterministic: the
  /// generator is used only by `.random`.
  public static func evaluation(
    points: Int = 1024, sampling: PointSampling = .farthest, normals: Bool = false,
    normalize: Bool = true
  ) -> SampleTransform<PointCloud> {
    precondition(points > 0, "a transform must give at least 1 point, not \(points)")
    return { cloud, generator in
      let input = try PreparedCloud(cloud, normals: normals, normalize: normalize)
      let n = input.count
      let picks: [Int]
      switch sampling {
      case .farthest where n >= points:
        picks = input.farthest(points)
      case .random:
        picks = RandomResample(count: points).sampleIndices(from: n, generator: &generator)
      case .farthest, .first:
        picks = (0..<points).map { $0 % n }
      }
      return input.output(picks, normals: normals)
    }
  }

  /// Point-MAE's fine-tuning input (`tools/runner_finetune.py`, `train`): the cloud normalised
  /// and its points shuffled (the dataset's `np.random.shuffle` of a training sample), then
  ///
  /// - `.farthest`: farthest point sampling of `fpsPool(points:)` points (1,200 for 1,024) from
  ///   the shuffled cloud, and `points` of those chosen at random without replacement (the
  ///   runner's `furthest_point_sample(points, point_all)` then `np.random.choice(point_all,
  ///   npoints, False)`): a fresh, roughly uniform subset every epoch;
  /// - `.first`: the first `points` points in file order, shuffled;
  /// - `.random`: a random subset (`RandomResample`);
  ///
  /// and last `augmentation`, by default Point-MAE's `PointcloudScaleAndTranslate` (each axis
  /// scaled by U(2/3, 3/2) and shifted by U(−0.2, 0.2); normals turned by the scale only). Pass
  /// nil for no augmentation.
  public static func training(
    points: Int = 1024, sampling: PointSampling = .farthest, normals: Bool = false,
    normalize: Bool = true,
    augmentation: (any PointAugmentation)? = RandomScaleAndTranslate()
  ) -> SampleTransform<PointCloud> {
    precondition(points > 0, "a transform must give at least 1 point, not \(points)")
    return { cloud, generator in
      let input = try PreparedCloud(cloud, normals: normals, normalize: normalize)
      let n = input.count
      var picks: [Int]
      if n < points || sampling == .random {
        picks = RandomResample(count: points).sampleIndices(from: n, generator: &generator)
      } else if sampling == .first {
        picks = generator.permutation(points)
      } else {
        let order = generator.permutation(n)
        let pool = min(fpsPool(points: points), n)
        let chosen = input.reordered(order).farthest(pool)
        picks = generator.permutation(pool).prefix(points).map { order[chosen[$0]] }
      }
      guard let augmentation else { return input.output(picks, normals: normals) }
      let selected = input.tensors(picks, normals: normals)
      let moved = augmentation.apply(
        selected.points, normals: selected.normals, generator: &generator)
      return PreparedCloud.join(moved.points, moved.normals)
    }
  }

  /// How many points Point-MAE's training step takes by farthest point sampling before choosing
  /// `points` of them at random: its table (1,024 → 1,200, 2,048 → 2,400, 4,096 → 4,800,
  /// 8,192 → 8,192), and the same ratio, 75/64 rounded up, for other counts (the official code
  /// refuses them).
  public static func fpsPool(points: Int) -> Int {
    switch points {
    case 8192: return 8192
    default: return (points * 75 + 63) / 64
    }
  }
}

/// A cloud's finite points as flat arrays, normalised when asked, for picking rows.
struct PreparedCloud {
  var positions: [Float]
  var normals: [Float]?

  init(_ cloud: PointCloud, normals wantNormals: Bool, normalize: Bool) throws {
    if wantNormals && cloud.normals == nil {
      throw DatasetError(
        .invalidArgument, path: "",
        "the transform gives positions and normals [N, 6], but the cloud has no normals")
    }
    let dense = cloud.dense().cloud
    guard dense.count > 0 else {
      throw DatasetError(.empty, path: "", "the cloud has no finite point to sample")
    }
    positions = dense.positions
    normals = wantNormals ? dense.normals : nil
    if normalize {
      let t = Tensor(positions, shape: [dense.count, 3]).normalizedToUnitSphere()
      positions = t.scalars
    }
  }

  private init(positions: [Float], normals: [Float]?) {
    self.positions = positions
    self.normals = normals
  }

  var count: Int { positions.count / 3 }

  /// The indices of `k` points by farthest point sampling (pointnet2_ops' convention).
  func farthest(_ k: Int) -> [Int] {
    let t = Tensor(positions, shape: [count, 3])
    return PointOps.farthestPointSample(t, count: k, skipNearOrigin: true).values.map { Int($0) }
  }

  /// The cloud with its points in `order`.
  func reordered(_ order: [Int]) -> PreparedCloud {
    PreparedCloud(
      positions: Self.rows(positions, order), normals: normals.map { Self.rows($0, order) })
  }

  /// The rows at `picks` of positions and, when asked, normals, as `[k, 3]` tensors.
  func tensors(_ picks: [Int], normals wantNormals: Bool) -> (points: Tensor, normals: Tensor?) {
    let k = picks.count
    return (
      Tensor(Self.rows(positions, picks), shape: [k, 3]),
      wantNormals ? normals.map { Tensor(Self.rows($0, picks), shape: [k, 3]) } : nil
    )
  }

  /// The picked points as the transform's output: `[k, 3]`, or `[k, 6]` with normals.
  func output(_ picks: [Int], normals wantNormals: Bool) -> Tensor {
    let t = tensors(picks, normals: wantNormals)
    return Self.join(t.points, t.normals)
  }

  /// `[k, 3]` points, or `[k, 6]` with the normals beside them.
  static func join(_ points: Tensor, _ normals: Tensor?) -> Tensor {
    guard let normals else { return points }
    let k = points.shape[0]
    let out = Tensor(shape: [k, 6], zeroed: false)
    let (p, n, o) = (points.pointer, normals.pointer, out.pointer)
    for i in 0..<k {
      (o + 6 * i).update(from: p + 3 * i, count: 3)
      (o + 6 * i + 3).update(from: n + 3 * i, count: 3)
    }
    return out
  }

  private static func rows(_ values: [Float], _ picks: [Int]) -> [Float] {
    var out = [Float]()
    out.reserveCapacity(3 * picks.count)
    for i in picks { out.append(contentsOf: values[(3 * i)..<(3 * i + 3)]) }
    return out
  }
}
