import Foundation

extension PointOps {
  /// Point-MAE's `ChamferDistanceL2` between two batches of point sets `a` [B, N, C] and
  /// `b` [B, M, C]: the mean over all B·N points of `a` of the squared distance to the nearest
  /// point of the same sample in `b`, plus the same from `b` to `a`.
  ///
  /// Differentiable with respect to both: the nearest-neighbour assignment is piecewise
  /// constant, so the gradient is that of `Σ ‖a − b[nn(a)]‖²` and its mirror with the
  /// assignment held fixed (what the CUDA kernel's backward computes), built here from `gather`.
  public static func chamferDistanceL2(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(
      a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0] && a.shape[2] == b.shape[2]
        && a.shape[1] > 0 && b.shape[1] > 0,
      "chamferDistanceL2: \(a.shape) and \(b.shape) are not [B, N, C] and [B, M, C]")
    let (nearestInB, _) = withNoGrad { knn(query: a.detached(), points: b.detached(), k: 1) }
    let (nearestInA, _) = withNoGrad { knn(query: b.detached(), points: a.detached(), k: 1) }
    func meanSquared(_ x: Tensor, _ partner: Tensor, _ indices: IndexTensor) -> Tensor {
      let matched = gather(partner, indices.reshaped([x.shape[0], x.shape[1]]))
      let d = x - matched
      return (d * d).sum(axis: 2).mean()
    }
    return meanSquared(a, b, nearestInB) + meanSquared(b, a, nearestInA)
  }
}
