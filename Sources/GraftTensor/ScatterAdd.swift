// Scatter-add of rows into a fixed number of slots per cloud (torch_scatter's
// `scatter(..., reduce="sum")` along the point axis): the reverse of `PointOps.gather`. P2P
// splats each point's feature onto the pixels around it with it; pixels that several points reach
// get the sum.

extension PointOps {
  /// Rows of `values` added into `count` slots per cloud: `out[b, indices[b, m, s], :] +=
  /// values[b, m, :]` for every target `s` of every row `m` (slots no row reaches stay zero).
  ///
  /// Shapes: `values` `[B, M, C…]` (rank ≥ 2) and `indices` `[B, M]` (one target per row) or
  /// `[B, M, S]` (each row added at S targets, as P2P's 3×3 splat with S = 9) → `[B, count,
  /// C…]`. Indices count within their own cloud and must lie in `0..<count`; they may repeat
  /// (the rows add up, in row order, then target order).
  ///
  /// Differentiable with respect to `values`: the gradient of row m is the sum of the output
  /// gradient at its targets (a gather). Each cloud runs on one thread, so no two threads write
  /// one slot.
  public static func scatterAdd(_ values: Tensor, _ indices: IndexTensor, count: Int) -> Tensor {
    precondition(
      values.rank >= 2 && (indices.rank == 2 || indices.rank == 3)
        && indices.shape[0] == values.shape[0] && indices.shape[1] == values.shape[1],
      "scatterAdd: values \(values.shape) must be [B, M, …] and indices \(indices.shape) "
        + "[B, M] or [B, M, S]")
    precondition(count >= 0, "scatterAdd: negative slot count \(count)")
    let (batch, m) = (values.shape[0], values.shape[1])
    let row = values.shape[2...].reduce(1, *)
    let targets = indices.rank == 3 ? indices.shape[2] : 1
    for i in indices.values {
      precondition(i >= 0 && Int(i) < count, "scatterAdd: index \(i) outside 0..<\(count)")
    }
    let out = Tensor(shape: [batch, count] + Array(values.shape[2...]))
    let (src, dst) = (values.pointer, out.pointer)
    let perCloud = m * targets
    indices.values.withUnsafeBufferPointer { idx in
      guard let ip = idx.baseAddress else { return }
      Parallel.forRange(batch, grain: Swift.max(1, 16_384 / Swift.max(perCloud * row, 1))) { r in
        for b in r {
          for j in 0..<m {
            let s = src + (b * m + j) * row
            for t in 0..<targets {
              let d = dst + (b * count + Int(ip[(b * m + j) * targets + t])) * row
              for c in 0..<row { d[c] += s[c] }
            }
          }
        }
      }
    }
    let inShape = values.shape
    let captured = indices.values
    return out.recording("scatter_add", [values]) { g in
      let gi = Tensor(shape: inShape)
      let (gs, gd) = (g.pointer, gi.pointer)
      captured.withUnsafeBufferPointer { idx in
        guard let ip = idx.baseAddress else { return }
        Parallel.forRange(batch * m, grain: Swift.max(1, 16_384 / Swift.max(targets * row, 1))) {
          r in
          for p in r {
            let b = p / m
            let d = gd + p * row
            for t in 0..<targets {
              let s = gs + (b * count + Int(ip[p * targets + t])) * row
              for c in 0..<row { d[c] += s[c] }
            }
          }
        }
      }
      return [gi]
    }
  }
}
