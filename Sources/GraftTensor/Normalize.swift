// L2 normalisation along an axis as one op (PyTorch's `F.normalize` with p = 2). Composed from
// square, sum, sqrt, clamp and divide it takes five passes forward and more backward, each
// allocating a tensor; Moment Probing normalises every covariance matrix with it.

extension Tensor {
  /// `x / max(‖x‖₂, eps)` along `axis`: PyTorch's `F.normalize(x, p=2, dim=axis, eps=eps)`.
  ///
  /// The gradient is `(g − y·Σ g·y) / ‖x‖` along the axis where `‖x‖ ≥ eps` and `g / eps` where
  /// the norm was clamped (PyTorch's `clamp_min` passes its gradient where the input is at least
  /// the bound).
  public func l2Normalized(axis: Int, eps: Float = 1e-12) -> Tensor {
    let a = self.axis(axis)
    let (outer, n, inner) = splitAround(shape, a)
    let out = Tensor(shape: shape, zeroed: false)
    // The unclamped norm of every line, [outer, inner].
    let norms = Tensor(shape: [outer, inner], zeroed: false)
    let (px, py, pn) = (pointer, out.pointer, norms.pointer)
    let grain = Swift.max(1, 16_384 / Swift.max(n * inner, 1))
    Parallel.forRange(outer, grain: grain) { range in
      for o in range {
        let (x, y, norm) = (px + o * n * inner, py + o * n * inner, pn + o * inner)
        if inner == 1 {
          norm[0] = simdDot(x, x, n).squareRoot()
        } else {
          norm.update(repeating: 0, count: inner)
          for k in 0..<n {
            let row = x + k * inner
            for i in 0..<inner { norm[i] = norm[i].addingProduct(row[i], row[i]) }
          }
          for i in 0..<inner { norm[i] = norm[i].squareRoot() }
        }
        for k in 0..<n {
          let (row, dst) = (x + k * inner, y + k * inner)
          for i in 0..<inner { dst[i] = row[i] / Swift.max(norm[i], eps) }
        }
      }
    }
    // Backward reads the output through a detached alias, so the node does not hold the tensor
    // that holds the node.
    let saved = out.detached()
    return out.recording("l2_normalize", [self], saving: [saved, norms]) { g in
      let gx = Tensor(shape: saved.shape, zeroed: false)
      let (py, pn, pg, pd) = (saved.pointer, norms.pointer, g.pointer, gx.pointer)
      Parallel.forRange(outer, grain: grain) { range in
        let dots = UnsafeMutablePointer<Float>.allocate(capacity: inner)
        defer { dots.deallocate() }
        for o in range {
          let base = o * n * inner
          let norm = pn + o * inner
          dots.update(repeating: 0, count: inner)
          for k in 0..<n {
            let (gr, yr) = (pg + base + k * inner, py + base + k * inner)
            for i in 0..<inner { dots[i] = dots[i].addingProduct(gr[i], yr[i]) }
          }
          for i in 0..<inner where norm[i] < eps { dots[i] = 0 }
          for k in 0..<n {
            let (gr, yr, d) = (pg + base + k * inner, py + base + k * inner, pd + base + k * inner)
            for i in 0..<inner {
              d[i] = (gr[i] - yr[i] * dots[i]) / Swift.max(norm[i], eps)
            }
          }
        }
      }
      return [gx]
    }
  }
}
