import CKernels
import Foundation

// Softmax and log-softmax along an axis, fused with hand-written backward passes.

extension Tensor {
  /// Softmax along `axis` (max-subtracted, so large logits do not overflow).
  public func softmax(axis: Int = -1) -> Tensor {
    let a = self.axis(axis)
    let out = softmaxForward(a, log: false)
    let (outer, n, inner) = splitAround(shape, a)
    // Backward reads the output: through a detached alias, so the node does not hold the tensor
    // that holds the node.
    let y = out.detached()
    return out.recording("softmax", [self], saving: [y]) { g in
      // dx = y · (g − Σ g·y)
      let gi = Tensor(shape: y.shape, zeroed: false)
      let (py, pg, pd) = (y.pointer, g.pointer, gi.pointer)
      if inner == 1 {
        Parallel.forRange(outer, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
          for row in r {
            let (y, gr, d) = (py + row * n, pg + row * n, pd + row * n)
            let dot = simdDot(gr, y, n)
            for k in 0..<n { d[k] = y[k] * (gr[k] - dot) }
          }
        }
        return [gi]
      }
      Parallel.forRange(outer * inner, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
        for line in r {
          let base = (line / inner) * n * inner + line % inner
          var dot: Float = 0
          for k in 0..<n { dot += pg[base + k * inner] * py[base + k * inner] }
          for k in 0..<n {
            let i = base + k * inner
            pd[i] = py[i] * (pg[i] - dot)
          }
        }
      }
      return [gi]
    }
  }

  /// log(softmax(x)) along `axis`, computed stably.
  public func logSoftmax(axis: Int = -1) -> Tensor {
    let a = self.axis(axis)
    let out = softmaxForward(a, log: true)
    let (outer, n, inner) = splitAround(shape, a)
    // Backward reads the output: through a detached alias, so the node does not hold the tensor
    // that holds the node.
    let y = out.detached()
    return out.recording("log_softmax", [self], saving: [y]) { g in
      // dx = g − softmax · Σ g
      let gi = Tensor(shape: y.shape, zeroed: false)
      let (py, pg, pd) = (y.pointer, g.pointer, gi.pointer)
      if inner == 1 {
        Parallel.forRange(outer, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
          for row in r {
            let (y, gr, d) = (py + row * n, pg + row * n, pd + row * n)
            let total = simdSum(gr, n)
            for k in 0..<n { d[k] = gr[k] - fastExp(y[k]) * total }
          }
        }
        return [gi]
      }
      Parallel.forRange(outer * inner, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
        for line in r {
          let base = (line / inner) * n * inner + line % inner
          var total: Float = 0
          for k in 0..<n { total += pg[base + k * inner] }
          for k in 0..<n {
            let i = base + k * inner
            pd[i] = pg[i] - fastExp(py[i]) * total
          }
        }
      }
      return [gi]
    }
  }

  /// Softmax (or log-softmax) of every line along axis `a`, without recording.
  private func softmaxForward(_ a: Int, log: Bool) -> Tensor {
    let (outer, n, inner) = splitAround(shape, a)
    let out = Tensor(shape: shape, zeroed: false)
    let (px, po) = (pointer, out.pointer)
    if inner == 1 {
      // Contiguous rows (the attention and classifier case): the C row kernel, which fuses the
      // exponential with the sum and runs AVX-512 where the CPU has it.
      Parallel.forRange(outer, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
        let o = r.lowerBound * n
        graft_softmax_rows(px + o, po + o, r.count, n, log ? 1 : 0)
      }
      return out
    }
    Parallel.forRange(outer * inner, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
      for line in r {
        let base = (line / inner) * n * inner + line % inner
        var m = -Float.infinity
        for k in 0..<n { m = Swift.max(m, px[base + k * inner]) }
        if m == -.infinity { m = 0 }  // a fully masked line gives NaN/-inf as PyTorch, not a crash
        var total: Float = 0
        for k in 0..<n {
          let e = fastExpNonPositive(px[base + k * inner] - m)
          po[base + k * inner] = e
          total += e
        }
        if log {
          let lse = m + Foundation.log(total)
          for k in 0..<n { po[base + k * inner] = px[base + k * inner] - lse }
        } else {
          let inv = 1 / total
          for k in 0..<n { po[base + k * inner] *= inv }
        }
      }
    }
    return out
  }
}
