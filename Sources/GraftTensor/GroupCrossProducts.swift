// Cross-products of column groups, `scale·X_iᵀ·X_j` for chosen pairs of groups, as one op:
// Moment Probing's cross-covariances (MHC³). Composed, they took a permute copy of the tokens,
// two gathers of the paired groups, a batched matmul and a scaling pass, each with its backward;
// here every product reads its groups in place through BLAS leading dimensions and the scale is
// the GEMM's alpha.

extension Tensor {
  /// `[B, K, h, h]`: for each sample b and pair k = (i, j), `scale · X_iᵀ · X_j`, where `X_g` is
  /// the `[N, h]` block of columns `g·h ..< (g + 1)·h` of this `[B, N, groups·h]` tensor.
  ///
  /// Equal to `x.reshaped([B, N, groups, h]).permuted([0, 2, 1, 3])`, gathered by pair and
  /// multiplied (`left.matmul(right, transposeSelf: true) * scale`), to float reordering.
  public func groupCrossProducts(groups: Int, pairs: [(Int, Int)], scale: Float = 1) -> Tensor {
    precondition(rank == 3, "groupCrossProducts: input \(shape) must be [B, N, groups·h]")
    let (batch, n, width) = (shape[0], shape[1], shape[2])
    precondition(
      groups >= 1 && width % groups == 0,
      "groupCrossProducts: width \(width) is not a multiple of \(groups) groups")
    let h = width / groups
    precondition(
      pairs.allSatisfy { (0..<groups).contains($0.0) && (0..<groups).contains($0.1) },
      "groupCrossProducts: a pair names a group outside 0..<\(groups)")
    let k = pairs.count
    let out = Tensor(shape: [batch, k, h, h], zeroed: false)
    _ = blasSingleThreaded
    let (px, po) = (pointer, out.pointer)
    let grain = Swift.max(1, 262_144 / Swift.max(1, 2 * k * h * h * n))
    Parallel.forRange(batch, grain: grain) { samples in
      for b in samples {
        let x = px + b * n * width
        for (p, (i, j)) in pairs.enumerated() {
          sgemmBlock(
            x + i * h, true, width, x + j * h, false, width, po + (b * k + p) * h * h, h,
            m: h, n: h, k: n, alpha: scale, beta: 0)
        }
      }
    }
    let input = self
    return out.recording("group_cross_products", [self], saving: [input]) { g in
      // d X_i += scale · X_j · dCᵀ and d X_j += scale · X_i · dC, pair by pair in order.
      let gx = Tensor(shape: [batch, n, width])
      let (px, pg, pd) = (input.pointer, g.pointer, gx.pointer)
      Parallel.forRange(batch, grain: grain) { samples in
        for b in samples {
          let (x, d) = (px + b * n * width, pd + b * n * width)
          for (p, (i, j)) in pairs.enumerated() {
            let dc = pg + (b * k + p) * h * h
            sgemmBlock(
              x + j * h, false, width, dc, true, h, d + i * h, width, m: n, n: h, k: h,
              alpha: scale, beta: 1)
            sgemmBlock(
              x + i * h, false, width, dc, false, h, d + j * h, width, m: n, n: h, k: h,
              alpha: scale, beta: 1)
          }
        }
      }
      return [gx]
    }
  }
}
