import Foundation
import GraftData

extension PointTransforms {
  /// One view of Point-MAE's test-time voting (`tools/runner_finetune.py`, `validate_vote`):
  /// the cloud normalised, farthest point sampling of `fpsPool(points:)` points from point 0 (in
  /// file order: the test cloud is not shuffled), `points` of those chosen at random without
  /// replacement (`np.random.choice(point_all, npoints, False)`), then `augmentation`, by default
  /// its `test_transforms`, `PointcloudScaleAndTranslate`. A cloud with fewer than `points`
  /// points is resampled as in training (`RandomResample`). Each call draws a new view from the
  /// generator the data loader hands the sample; averaging the logits of several is the vote.
  public static func voting(
    points: Int = 1024, normals: Bool = false, normalize: Bool = true,
    augmentation: any PointAugmentation = RandomScaleAndTranslate()
  ) -> SampleTransform<PointCloud> {
    precondition(points > 0, "a transform must give at least 1 point, not \(points)")
    return { cloud, generator in
      let input = try PreparedCloud(cloud, normals: normals, normalize: normalize)
      let n = input.count
      let picks: [Int]
      if n < points {
        picks = RandomResample(count: points).sampleIndices(from: n, generator: &generator)
      } else {
        let pool = input.farthest(min(fpsPool(points: points), n))
        picks = generator.permutation(pool.count).prefix(points).map { pool[$0] }
      }
      let selected = input.tensors(picks, normals: normals)
      let moved = augmentation.apply(
        selected.points, normals: selected.normals, generator: &generator)
      return PreparedCloud.join(moved.points, moved.normals)
    }
  }
}
