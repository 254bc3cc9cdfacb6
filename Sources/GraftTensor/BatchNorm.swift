// Batch normalisation over axis 1 of [N, C, ...], as PyTorch's `F.batch_norm`: in training mode
// with the batch's statistics (and an in-place update of the running statistics), in evaluation
// mode with the running statistics.

extension Tensor {
  /// Batch normalisation of `[N, C, ...]` over every axis but the channel axis 1:
  /// `(x − mean_c) / sqrt(var_c + eps) · weight_c + bias_c`, as PyTorch's `F.batch_norm`.
  ///
  /// - With `training` (or without running statistics) the statistics are the batch's: the mean
  ///   and the biased variance over the N·S values of each channel (S the product of the axes
  ///   after 1; 1 for `[N, C]`). The gradient flows through them. If `runningMean` and
  ///   `runningVar` ([C]) are given they are updated in place, outside the tape, as
  ///   `running ← (1 − momentum)·running + momentum·batch`, with the unbiased variance for
  ///   `runningVar`. Training needs more than one value per channel (as PyTorch).
  /// - Otherwise (evaluation) `runningMean` and `runningVar` are used as constants: the op is
  ///   a per-channel affine map and its gradient reaches `x`, `weight` and `bias` only.
  ///
  /// `weight` and `bias` ([C]) are optional. Backward keeps the input and the per-channel
  /// statistics ([C, 2]); it is `dx = w·rstd·(g − mean(g) − x̂·mean(g·x̂))` with batch
  /// statistics and `dx = w·rstd·g` with running ones.
  public func batchNorm(
    weight: Tensor? = nil, bias: Tensor? = nil, runningMean: Tensor? = nil,
    runningVar: Tensor? = nil, training: Bool, momentum: Float = 0.1, eps: Float = 1e-5
  ) -> Tensor {
    precondition(rank >= 2, "batchNorm: input \(shape) must be [N, C, ...]")
    let (n, c) = (shape[0], shape[1])
    let s = count / Swift.max(n * c, 1)
    let vectors: [(String, Tensor?)] = [
      ("weight", weight), ("bias", bias), ("running mean", runningMean),
      ("running var", runningVar),
    ]
    for case (let label, let t?) in vectors {
      precondition(t.shape == [c], "batchNorm: \(label) \(t.shape) for \(c) channels")
    }
    precondition(
      (runningMean == nil) == (runningVar == nil),
      "batchNorm: give both running statistics or neither")
    let useBatch = training || runningMean == nil
    let m = n * s
    precondition(
      !useBatch || m > 1,
      "batchNorm: expected more than 1 value per channel when using batch statistics, got \(shape)"
    )
    let stats = Tensor(shape: [c, 2], zeroed: false)  // mean, 1/std per channel
    let (px, ps) = (pointer, stats.pointer)
    if useBatch {
      let rm = runningMean?.pointer
      let rv = runningVar?.pointer
      Parallel.forRange(c, grain: Swift.max(1, 32_768 / Swift.max(m, 1))) { channels in
        for ch in channels {
          var sum = 0.0
          for i in 0..<n { sum += Double(simdSum(px + (i * c + ch) * s, s)) }
          let mean = sum / Double(m)
          var sq = 0.0
          for i in 0..<n {
            sq += Double(simdSumSquaredDeviation(px + (i * c + ch) * s, s, Float(mean)))
          }
          let variance = sq / Double(m)
          ps[2 * ch] = Float(mean)
          ps[2 * ch + 1] = Float(1 / (variance + Double(eps)).squareRoot())
          if let rm, let rv {
            let unbiased = sq / Double(m - 1)
            rm[ch] = (1 - momentum) * rm[ch] + momentum * Float(mean)
            rv[ch] = (1 - momentum) * rv[ch] + momentum * Float(unbiased)
          }
        }
      }
    } else {
      let (rm, rv) = (runningMean!.pointer, runningVar!.pointer)
      for ch in 0..<c {
        ps[2 * ch] = rm[ch]
        ps[2 * ch + 1] = 1 / (rv[ch] + eps).squareRoot()
      }
    }
    let out = Tensor(shape: shape, zeroed: false)
    let po = out.pointer
    let pw = weight?.pointer
    let pb = bias?.pointer
    Parallel.forRange(n * c, grain: Swift.max(1, 32_768 / Swift.max(s, 1))) { planes in
      for plane in planes {
        let ch = plane % c
        let scale = ps[2 * ch + 1] * (pw?[ch] ?? 1)
        let shift = (pb?[ch] ?? 0) - ps[2 * ch] * scale
        let (x, y) = (px + plane * s, po + plane * s)
        for j in 0..<s { y[j] = x[j] * scale + shift }
      }
    }
    let inputs = [self] + [weight, bias].compactMap { $0 }
    return out.recording(
      "batch_norm", inputs, saving: [self, stats] + [weight].compactMap { $0 }
    ) { g in
      let pg = g.pointer
      // Per channel: Σg and Σg·x̂ (what every gradient needs).
      let sums = Tensor(shape: [c, 2])
      let pz = sums.pointer
      Parallel.forRange(c, grain: Swift.max(1, 32_768 / Swift.max(m, 1))) { channels in
        for ch in channels {
          let (mean, rstd) = (ps[2 * ch], ps[2 * ch + 1])
          var sg = 0.0
          var sgx = 0.0
          for i in 0..<n {
            let off = (i * c + ch) * s
            let gs = simdSum(pg + off, s)
            sg += Double(gs)
            sgx += Double((simdDot(pg + off, px + off, s) - mean * gs) * rstd)
          }
          pz[2 * ch] = Float(sg)
          pz[2 * ch + 1] = Float(sgx)
        }
      }
      var grads: [Tensor?] = []
      if self.requiresGrad {
        let gx = Tensor(shape: self.shape, zeroed: false)
        let pd = gx.pointer
        Parallel.forRange(n * c, grain: Swift.max(1, 32_768 / Swift.max(s, 1))) { planes in
          for plane in planes {
            let ch = plane % c
            let (mean, rstd) = (ps[2 * ch], ps[2 * ch + 1])
            let k = rstd * (pw?[ch] ?? 1)
            let (gr, x, dx) = (pg + plane * s, px + plane * s, pd + plane * s)
            if useBatch {
              let mg = pz[2 * ch] / Float(m)
              let mgx = pz[2 * ch + 1] / Float(m)
              for j in 0..<s { dx[j] = k * (gr[j] - mg - (x[j] - mean) * rstd * mgx) }
            } else {
              for j in 0..<s { dx[j] = k * gr[j] }
            }
          }
        }
        grads.append(gx)
      } else {
        grads.append(nil)
      }
      func column(_ k: Int) -> Tensor {
        let t = Tensor(shape: [c], zeroed: false)
        for ch in 0..<c { t.pointer[ch] = pz[2 * ch + k] }
        return t
      }
      if let w = weight { grads.append(w.requiresGrad ? column(1) : nil) }
      if let b = bias { grads.append(b.requiresGrad ? column(0) : nil) }
      return grads
    }
  }
}
