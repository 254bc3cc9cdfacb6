// Group normalisation over axis 1 of [N, C, ...], as PyTorch's `F.group_norm`. The C channels
// are split into G consecutive groups; each sample's group is normalised with its own mean and
// biased variance over its C/G channels and every position, then scaled and shifted per channel.
// In the row-major layout one sample's group is one contiguous run of (C/G)·S values, so each is
// a row of a layer norm with a per-channel affine map.

extension Tensor {
  /// Group normalisation of `[N, C, ...]` in `groups` groups of consecutive channels:
  /// `(x − mean_ng) / sqrt(var_ng + eps) · weight_c + bias_c`, with the mean and the biased
  /// variance of sample n's group g over its C/G channels and every position after axis 1
  /// (PyTorch's `nn.GroupNorm`, which has no running statistics and works the same in training
  /// and evaluation). `weight` and `bias` ([C]) are optional; C must be divisible by `groups`.
  ///
  /// Statistics are summed in double precision. Backward keeps the input and the statistics
  /// ([N·G, 2]): `dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` over each group, with `ĝ = g·weight_c`.
  public func groupNorm(groups: Int, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5)
    -> Tensor
  {
    precondition(rank >= 2, "groupNorm: input \(shape) must be [N, C, ...]")
    let (n, c) = (shape[0], shape[1])
    precondition(
      groups >= 1 && c % groups == 0, "groupNorm: \(c) channels in \(groups) groups")
    for case (let label, let t?) in [("weight", weight), ("bias", bias)] {
      precondition(t.shape == [c], "groupNorm: \(label) \(t.shape) for \(c) channels")
    }
    let s = count / Swift.max(n * c, 1)
    let perGroup = c / groups
    let rowLength = perGroup * s
    let rows = n * groups
    let out = Tensor(shape: shape, zeroed: false)
    let stats = Tensor(shape: [rows, 2], zeroed: false)  // mean, 1/std per (sample, group)
    let (px, po, ps) = (pointer, out.pointer, stats.pointer)
    let pw = weight?.pointer
    let pb = bias?.pointer
    let grain = Swift.max(1, 32_768 / Swift.max(rowLength, 1))
    Parallel.forRange(rows, grain: grain) { r in
      for row in r {
        let x = px + row * rowLength
        var sum = 0.0
        for i in 0..<rowLength { sum += Double(x[i]) }
        let mean = sum / Double(Swift.max(rowLength, 1))
        var sq = 0.0
        for i in 0..<rowLength {
          let d = Double(x[i]) - mean
          sq += d * d
        }
        let rstd = Float(1 / (sq / Double(Swift.max(rowLength, 1)) + Double(eps)).squareRoot())
        let m = Float(mean)
        ps[2 * row] = m
        ps[2 * row + 1] = rstd
        let firstChannel = (row % groups) * perGroup
        for j in 0..<perGroup {
          let ch = firstChannel + j
          let (scale, shift) = (rstd * (pw?[ch] ?? 1), pb?[ch] ?? 0)
          let xs = x + j * s
          let ys = po + row * rowLength + j * s
          for i in 0..<s { ys[i] = (xs[i] - m) * scale + shift }
        }
      }
    }
    let inputs = [self] + [weight, bias].compactMap { $0 }
    return out.recording(
      "group_norm", inputs, saving: [self, stats] + [weight].compactMap { $0 }
    ) { g in
      let pg = g.pointer
      var grads: [Tensor?] = []
      if self.requiresGrad {
        let gx = Tensor(shape: self.shape, zeroed: false)
        let pd = gx.pointer
        Parallel.forRange(rows, grain: grain) { r in
          for row in r {
            let (mean, rstd) = (ps[2 * row], ps[2 * row + 1])
            let firstChannel = (row % groups) * perGroup
            let base = row * rowLength
            // Σ ĝ and Σ ĝ·x̂ over the group, ĝ = g·weight.
            var sumG = 0.0
            var sumGX = 0.0
            for j in 0..<perGroup {
              let w = pw?[firstChannel + j] ?? 1
              for i in 0..<s {
                let k = base + j * s + i
                let gh = Double(pg[k] * w)
                sumG += gh
                sumGX += gh * Double((px[k] - mean) * rstd)
              }
            }
            let mg = Float(sumG / Double(rowLength))
            let mgx = Float(sumGX / Double(rowLength))
            for j in 0..<perGroup {
              let w = pw?[firstChannel + j] ?? 1
              for i in 0..<s {
                let k = base + j * s + i
                pd[k] = rstd * (pg[k] * w - mg - (px[k] - mean) * rstd * mgx)
              }
            }
          }
        }
        grads.append(gx)
      } else {
        grads.append(nil)
      }
      // Per-channel sums over samples and positions: Σ g·x̂ for the weight, Σ g for the bias.
      func channelSums(_ scaledByXHat: Bool) -> Tensor {
        let t = Tensor(shape: [c])
        let pt = t.pointer
        Parallel.forRange(c, grain: Swift.max(1, 32_768 / Swift.max(n * s, 1))) { channels in
          for ch in channels {
            var acc = 0.0
            for sample in 0..<n {
              let row = sample * groups + ch / perGroup
              let (mean, rstd) = (ps[2 * row], ps[2 * row + 1])
              let base = (sample * c + ch) * s
              for i in 0..<s {
                let v = pg[base + i]
                acc += Double(scaledByXHat ? v * (px[base + i] - mean) * rstd : v)
              }
            }
            pt[ch] = Float(acc)
          }
        }
        return t
      }
      if let w = weight { grads.append(w.requiresGrad ? channelSums(true) : nil) }
      if let b = bias { grads.append(b.requiresGrad ? channelSums(false) : nil) }
      return grads
    }
  }
}
