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
    // In a data-parallel step the statistics are the whole global batch's (SyncBatchNorm).
    let ranks = useBatch ? DataParallel.current?.communicator : nil
    let stats = Tensor(shape: [c, 2], zeroed: false)  // mean, 1/std per channel
    let (px, ps) = (pointer, stats.pointer)
    let m =
      ranks.map {
        syncedStatistics(
          px, rows: n, channels: c, inner: s, stats: ps, ranks: $0,
          runningMean: runningMean?.pointer, runningVar: runningVar?.pointer, momentum: momentum,
          eps: eps)
      } ?? n * s
    precondition(
      !useBatch || m > 1,
      "batchNorm: expected more than 1 value per channel when using batch statistics, got \(shape)"
    )
    if ranks != nil {
      // Statistics already computed, over every rank.
    } else if useBatch && s == 1 {
      batchStatisticsByRows(
        px, rows: n, channels: c, stats: ps, runningMean: runningMean?.pointer,
        runningVar: runningVar?.pointer, momentum: momentum, eps: eps)
    } else if useBatch {
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
    if s == 1 {
      // Channels last ([N, C]): a whole row per step, the per-channel constants from one table.
      let table = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
      defer { table.deallocate() }
      for ch in 0..<c {
        let scale = ps[2 * ch + 1] * (pw?[ch] ?? 1)
        table[ch] = scale
        table[c + ch] = (pb?[ch] ?? 0) - ps[2 * ch] * scale
      }
      let (scales, shifts) = (UnsafePointer(table), UnsafePointer(table + c))
      Parallel.forRange(n, grain: Swift.max(1, 32_768 / c)) { rows in
        for i in rows {
          let (x, y) = (px + i * c, po + i * c)
          for ch in 0..<c { y[ch] = x[ch] * scales[ch] + shifts[ch] }
        }
      }
    } else {
      Parallel.forRange(n * c, grain: Swift.max(1, 32_768 / Swift.max(s, 1))) { planes in
        for plane in planes {
          let ch = plane % c
          let scale = ps[2 * ch + 1] * (pw?[ch] ?? 1)
          let shift = (pb?[ch] ?? 0) - ps[2 * ch] * scale
          let (x, y) = (px + plane * s, po + plane * s)
          for j in 0..<s { y[j] = x[j] * scale + shift }
        }
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
      if s == 1 {
        gradientSumsByRows(pg, px, rows: n, channels: c, stats: ps, sums: pz)
      } else {
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
      }
      // Synchronised: the input gradient needs the global batch's sums; the weight and bias
      // gradients stay this rank's (the trainer sums every gradient across ranks).
      var pzx = pz
      let globalSums: Tensor?
      if let ranks, self.requiresGrad {
        let global = Tensor(shape: [c, 2], zeroed: false)
        var reduced = (0..<(2 * c)).map { Double(pz[$0]) }
        reduced.withUnsafeMutableBufferPointer { ranks.allreduceSum($0) }
        for i in 0..<(2 * c) { global.pointer[i] = Float(reduced[i]) }
        pzx = global.pointer
        globalSums = global
      } else {
        globalSums = nil
      }
      var grads: [Tensor?] = []
      if self.requiresGrad {
        let gx = Tensor(shape: self.shape, zeroed: false)
        let pd = gx.pointer
        if s == 1 {
          inputGradientByRows(
            pg, px, pd, rows: n, channels: c, stats: ps, sums: pzx, weight: pw,
            batchStatistics: useBatch, count: m)
        } else {
          Parallel.forRange(n * c, grain: Swift.max(1, 32_768 / Swift.max(s, 1))) { planes in
            for plane in planes {
              let ch = plane % c
              let (mean, rstd) = (ps[2 * ch], ps[2 * ch + 1])
              let k = rstd * (pw?[ch] ?? 1)
              let (gr, x, dx) = (pg + plane * s, px + plane * s, pd + plane * s)
              if useBatch {
                let mg = pzx[2 * ch] / Float(m)
                let mgx = pzx[2 * ch + 1] / Float(m)
                for j in 0..<s { dx[j] = k * (gr[j] - mg - (x[j] - mean) * rstd * mgx) }
              } else {
                for j in 0..<s { dx[j] = k * gr[j] }
              }
            }
          }
        }
        grads.append(gx)
        withExtendedLifetime(globalSums) {}
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

// MARK: Synchronised statistics

/// The global batch's mean and 1/std of each channel of `x` [rows, channels, inner] into `stats`
/// [C, 2] (from Σx and Σx² summed over every rank in Double, as SyncBatchNorm does), and the
/// running statistics' update with the global unbiased variance. Returns the global number of
/// values per channel (when it is 1 or less, `stats` holds no meaning: the caller refuses).
private func syncedStatistics(
  _ x: UnsafePointer<Float>, rows n: Int, channels c: Int, inner s: Int,
  stats: UnsafeMutablePointer<Float>, ranks: any Communicator,
  runningMean: UnsafeMutablePointer<Float>?, runningVar: UnsafeMutablePointer<Float>?,
  momentum: Float, eps: Float
) -> Int {
  // Σx, Σx² per channel, then this rank's count: one allreduce.
  var sums = [Double](repeating: 0, count: 2 * c + 1)
  sums[2 * c] = Double(n * s)
  for i in 0..<n {
    for ch in 0..<c {
      let p = x + (i * c + ch) * s
      var (sx, sxx) = (0.0, 0.0)
      for j in 0..<s {
        let v = Double(p[j])
        sx += v
        sxx += v * v
      }
      sums[2 * ch] += sx
      sums[2 * ch + 1] += sxx
    }
  }
  sums.withUnsafeMutableBufferPointer { ranks.allreduceSum($0) }
  let m = Int(sums[2 * c])
  guard m > 1 else { return m }
  for ch in 0..<c {
    let mean = sums[2 * ch] / Double(m)
    let squares = Swift.max(sums[2 * ch + 1] - mean * sums[2 * ch], 0)
    stats[2 * ch] = Float(mean)
    stats[2 * ch + 1] = Float(1 / (squares / Double(m) + Double(eps)).squareRoot())
    if let runningMean, let runningVar {
      runningMean[ch] = (1 - momentum) * runningMean[ch] + momentum * Float(mean)
      runningVar[ch] = (1 - momentum) * runningVar[ch] + momentum * Float(squares / Double(m - 1))
    }
  }
  return m
}

// MARK: Channels last

// `[N, C]` (S = 1), as Point-MAE's mini-PointNet and classifier run their BatchNorms: the
// per-channel loops above would read one value per row at a stride of C, so these walk whole
// rows instead, each thread over its own rows with its own per-channel accumulators. Every value
// is formed exactly as in the loops above (the per-element terms in Float, accumulated in
// Double); only the order of the Double sums differs.

/// Rows `0..<rows` split into one range per thread (at least 64 rows each).
private func rowChunks(_ rows: Int) -> Int {
  Swift.max(1, Swift.min(Parallel.threadCount, rows / 64))
}

/// Per-channel sums over `rows` rows of `channels` values: `term(row, accumulators)` adds one
/// row's terms into a thread's accumulators, which are then added up into `total`.
private func sumRows(
  rows: Int, channels c: Int, into total: UnsafeMutablePointer<Double>, width: Int,
  _ term: (Int, UnsafeMutablePointer<Double>) -> Void
) {
  let chunks = rowChunks(rows)
  let partial = UnsafeMutablePointer<Double>.allocate(capacity: chunks * width * c)
  defer { partial.deallocate() }
  partial.initialize(repeating: 0, count: chunks * width * c)
  Parallel.forRange(chunks, grain: 1) { range in
    for chunk in range {
      let acc = partial + chunk * width * c
      for i in rows * chunk / chunks..<rows * (chunk + 1) / chunks { term(i, acc) }
    }
  }
  total.initialize(repeating: 0, count: width * c)
  for chunk in 0..<chunks {
    let acc = partial + chunk * width * c
    for j in 0..<width * c { total[j] += acc[j] }
  }
}

/// Batch mean and 1/std of each channel of `x` [rows, channels] into `stats` [C, 2], and the
/// running statistics' update, as the per-channel loop of `batchNorm`.
private func batchStatisticsByRows(
  _ x: UnsafePointer<Float>, rows n: Int, channels c: Int, stats: UnsafeMutablePointer<Float>,
  runningMean: UnsafeMutablePointer<Float>?, runningVar: UnsafeMutablePointer<Float>?,
  momentum: Float, eps: Float
) {
  let sums = UnsafeMutablePointer<Double>.allocate(capacity: c)
  let means = UnsafeMutablePointer<Float>.allocate(capacity: c)
  defer {
    sums.deallocate()
    means.deallocate()
  }
  sumRows(rows: n, channels: c, into: sums, width: 1) { i, acc in
    let row = x + i * c
    for ch in 0..<c { acc[ch] += Double(row[ch]) }
  }
  for ch in 0..<c { means[ch] = Float(sums[ch] / Double(n)) }
  let meanOf = UnsafePointer(means)
  sumRows(rows: n, channels: c, into: sums, width: 1) { i, acc in
    let row = x + i * c
    for ch in 0..<c {
      let d = row[ch] - meanOf[ch]
      acc[ch] += Double(d * d)
    }
  }
  for ch in 0..<c {
    let sq = sums[ch]
    let variance = sq / Double(n)
    stats[2 * ch] = means[ch]
    stats[2 * ch + 1] = Float(1 / (variance + Double(eps)).squareRoot())
    if let runningMean, let runningVar {
      let unbiased = sq / Double(n - 1)
      runningMean[ch] = (1 - momentum) * runningMean[ch] + momentum * means[ch]
      runningVar[ch] = (1 - momentum) * runningVar[ch] + momentum * Float(unbiased)
    }
  }
}

/// Σg and Σg·x̂ of each channel into `sums` [C, 2], as the per-channel loop of the backward.
private func gradientSumsByRows(
  _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows n: Int, channels c: Int,
  stats: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>
) {
  let totals = UnsafeMutablePointer<Double>.allocate(capacity: 2 * c)
  defer { totals.deallocate() }
  sumRows(rows: n, channels: c, into: totals, width: 2) { i, acc in
    let (gr, xr) = (g + i * c, x + i * c)
    for ch in 0..<c {
      let gs = gr[ch]
      acc[ch] += Double(gs)
      acc[c + ch] += Double((gs * xr[ch] - stats[2 * ch] * gs) * stats[2 * ch + 1])
    }
  }
  for ch in 0..<c {
    sums[2 * ch] = Float(totals[ch])
    sums[2 * ch + 1] = Float(totals[c + ch])
  }
}

/// The input gradient, row by row, with the per-channel formula of the backward.
private func inputGradientByRows(
  _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
  rows n: Int, channels c: Int, stats: UnsafePointer<Float>, sums: UnsafePointer<Float>,
  weight: UnsafePointer<Float>?, batchStatistics: Bool, count: Int
) {
  // Per channel: k = rstd·w, mean, rstd, mean(g), mean(g·x̂).
  let table = UnsafeMutablePointer<Float>.allocate(capacity: 5 * c)
  defer { table.deallocate() }
  for ch in 0..<c {
    table[ch] = stats[2 * ch + 1] * (weight?[ch] ?? 1)
    table[c + ch] = stats[2 * ch]
    table[2 * c + ch] = stats[2 * ch + 1]
    table[3 * c + ch] = sums[2 * ch] / Float(count)
    table[4 * c + ch] = sums[2 * ch + 1] / Float(count)
  }
  let (k, mean, rstd) = (
    UnsafePointer(table), UnsafePointer(table + c), UnsafePointer(table + 2 * c)
  )
  let (mg, mgx) = (UnsafePointer(table + 3 * c), UnsafePointer(table + 4 * c))
  Parallel.forRange(n, grain: Swift.max(1, 32_768 / c)) { rows in
    for i in rows {
      let (gr, xr, d) = (g + i * c, x + i * c, dx + i * c)
      if batchStatistics {
        for ch in 0..<c {
          d[ch] = k[ch] * (gr[ch] - mg[ch] - (xr[ch] - mean[ch]) * rstd[ch] * mgx[ch])
        }
      } else {
        for ch in 0..<c { d[ch] = k[ch] * gr[ch] }
      }
    }
  }
}
