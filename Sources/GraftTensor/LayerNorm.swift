// Fused layer normalisation over the last axis.

extension Tensor {
  /// Layer norm over the last axis: `(x − mean) / sqrt(var + eps) · weight + bias`, with the
  /// biased variance as PyTorch's `nn.LayerNorm`. `weight` and `bias` ([D]) are optional.
  public func layerNorm(weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
    precondition(rank >= 1, "layerNorm needs rank ≥ 1")
    let d = shape[rank - 1]
    if let w = weight {
      precondition(w.shape == [d], "layerNorm weight \(w.shape) for last axis \(d)")
    }
    if let b = bias { precondition(b.shape == [d], "layerNorm bias \(b.shape) for last axis \(d)") }
    let rows = count / Swift.max(d, 1)
    let out = Tensor(shape: shape, zeroed: false)
    let stats = Tensor(shape: [rows, 2], zeroed: false)  // mean, 1/std per row
    let (px, po, ps) = (pointer, out.pointer, stats.pointer)
    let pw = weight?.pointer
    let pb = bias?.pointer
    Parallel.forRange(rows, grain: Swift.max(1, 8192 / Swift.max(d, 1))) { r in
      for row in r {
        let x = px + row * d
        let y = po + row * d
        let mean = simdSum(x, d) / Float(d)
        let sq = simdSumSquaredDeviation(x, d, mean)
        let rstd = 1 / (sq / Float(d) + eps).squareRoot()
        ps[2 * row] = mean
        ps[2 * row + 1] = rstd
        if let pw, let pb {
          for j in 0..<d { y[j] = (x[j] - mean) * rstd * pw[j] + pb[j] }
        } else if let pw {
          for j in 0..<d { y[j] = (x[j] - mean) * rstd * pw[j] }
        } else {
          for j in 0..<d { y[j] = (x[j] - mean) * rstd }
          if let pb { for j in 0..<d { y[j] += pb[j] } }
        }
      }
    }
    let inputs = [self] + [weight, bias].compactMap { $0 }
    return out.recording("layer_norm", inputs, saving: [self, stats] + [weight].compactMap { $0 }) {
      g in
      let pg = g.pointer
      var grads: [Tensor?] = []
      if self.requiresGrad {
        // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)), ĝ = g · weight
        let gx = Tensor(shape: self.shape, zeroed: false)
        let pd = gx.pointer
        Parallel.forRange(rows, grain: Swift.max(1, 8192 / Swift.max(d, 1))) { r in
          for row in r {
            let (mean, rstd) = (ps[2 * row], ps[2 * row + 1])
            let x = px + row * d
            let gr = pg + row * d
            let dx = pd + row * d
            // ĝ goes into dx first, then dx is rewritten in place.
            if let pw {
              for j in 0..<d { dx[j] = gr[j] * pw[j] }
            } else {
              dx.update(from: gr, count: d)
            }
            let mg = simdSum(dx, d) / Float(d)
            let mgx = (simdDot(dx, x, d) - mean * simdSum(dx, d)) * rstd / Float(d)
            for j in 0..<d { dx[j] = rstd * (dx[j] - mg - (x[j] - mean) * rstd * mgx) }
          }
        }
        grads.append(gx)
      } else {
        grads.append(nil)
      }
      // Parameter gradients: each thread owns a slice of columns and walks every row.
      func columnSums(_ scaledByXHat: Bool) -> Tensor {
        let t = Tensor(shape: [d])
        let pt = t.pointer
        Parallel.forRange(d, grain: Swift.max(1, 8192 / Swift.max(rows, 1))) { cols in
          for row in 0..<rows {
            let (mean, rstd) = (ps[2 * row], ps[2 * row + 1])
            let x = px + row * d
            let gr = pg + row * d
            if scaledByXHat {
              for j in cols { pt[j] += gr[j] * (x[j] - mean) * rstd }
            } else {
              for j in cols { pt[j] += gr[j] }
            }
          }
        }
        return t
      }
      if let w = weight { grads.append(w.requiresGrad ? columnSums(true) : nil) }
      if let b = bias { grads.append(b.requiresGrad ? columnSums(false) : nil) }
      return grads
    }
  }
}
