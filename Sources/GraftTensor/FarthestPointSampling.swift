import Foundation

// Farthest point sampling. Each step updates every point's distance to the chosen set and takes
// the farthest point, so a cloud of N points sampled to M costs M passes over N points. The pass
// runs over a structure-of-arrays copy of the cloud (x, y, z and the running distance, padded to
// 8 lanes) in SIMD8 vectors; a batch runs one cloud per thread, and a large cloud with fewer
// clouds than threads splits each pass across the threads instead.

extension PointOps {
  /// Indices of `count` points picked by farthest point sampling with pointnet2_ops' convention:
  /// the first is point 0; each next one is the point whose squared distance to the chosen set is
  /// largest, the lowest index on ties (the first maximum, as `torch.argmax`).
  ///
  /// A point's distance to the set is the minimum over chosen points of
  /// `(x−x₁)² + (y−y₁)² + (z−z₁)²`, summed in that order in Float32. With `skipNearOrigin`, points
  /// with `x² + y² + z² ≤ 1e-3` (the squared norm in Float32, compared with the double 1e-3) are
  /// never picked after point 0, exactly as pointnet2_ops' CUDA kernel
  /// `furthest_point_sampling_kernel`, which Point-MAE's `Group` (`misc.fps`) uses; if every
  /// point is skipped, every pick is point 0, as there. Without it every point is a candidate
  /// (the plain-torch FPS of most ports). Known differences from the CUDA kernel: it breaks exact
  /// ties by its thread layout (the lowest index modulo its block size first) rather than by
  /// index, its compiler may fuse the distance into FMAs (last-bit differences), and its running
  /// distances start at 1e10 rather than infinity, which only matters when two points are more
  /// than 10⁵ apart.
  ///
  /// Shapes: `points` `[B, N, 3]` → `[B, count]`, or `[N, 3]` → `[count]`; `count` ≤ N. Clouds
  /// run in parallel; a cloud of 16,384 points or more, with fewer clouds than threads, splits
  /// each pass across the threads while that is measured to be faster. Points must be finite.
  public static func farthestPointSample(
    _ points: Tensor, count: Int, skipNearOrigin: Bool = false
  ) -> IndexTensor {
    let p = cloudShape(points, "farthestPointSample", channels: 3)
    precondition(
      count >= 0 && count <= p.count,
      "farthestPointSample: cannot pick \(count) points from clouds of \(p.count)")
    let (batch, n) = (p.batch, p.count)
    let src = points.pointer
    let shape = (p.batched ? [batch] : []) + [count]
    let threads = Parallel.threadCount
    let split = threads > 1 && batch < threads && n >= 16_384
    return IndexTensor.build(shape: shape) { out in
      if split {
        for b in 0..<batch {
          let cloud = FPSCloud(src + b * n * 3, count: n, skipNearOrigin: skipNearOrigin)
          cloud.sample(count, into: out + b * count, slices: threads)
        }
      } else {
        Parallel.forRange(batch, grain: Swift.max(1, 262_144 / Swift.max(n * count, 1))) { r in
          for b in r {
            let cloud = FPSCloud(src + b * n * 3, count: n, skipNearOrigin: skipNearOrigin)
            cloud.sample(count, into: out + b * count, slices: 1)
          }
        }
      }
    }
  }
}

/// One cloud's FPS state: coordinates and running distances as SIMD8 vectors (structure of
/// arrays), padded to whole vectors with points that can never be chosen.
private final class FPSCloud {
  let n: Int
  let vectors: Int
  let source: UnsafePointer<Float>
  let x: UnsafeMutablePointer<SIMD8<Float>>
  let y: UnsafeMutablePointer<SIMD8<Float>>
  let z: UnsafeMutablePointer<SIMD8<Float>>
  /// Squared distance to the chosen set; −1 marks a point that is never a candidate (skipped
  /// near the origin, or padding), since the search starts from a best of −1 and needs `>`.
  let distance: UnsafeMutablePointer<SIMD8<Float>>

  init(_ source: UnsafePointer<Float>, count n: Int, skipNearOrigin: Bool) {
    self.n = n
    self.source = source
    vectors = (n + 7) / 8
    x = .allocate(capacity: Swift.max(vectors, 1))
    y = .allocate(capacity: Swift.max(vectors, 1))
    z = .allocate(capacity: Swift.max(vectors, 1))
    distance = .allocate(capacity: Swift.max(vectors, 1))
    for v in 0..<vectors {
      var (vx, vy, vz) = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
      var vd = SIMD8<Float>(repeating: -1)
      for lane in 0..<8 {
        let j = v * 8 + lane
        guard j < n else { continue }
        let (px, py, pz) = (source[3 * j], source[3 * j + 1], source[3 * j + 2])
        (vx[lane], vy[lane], vz[lane]) = (px, py, pz)
        // pointnet2_ops: `float mag = x*x + y*y + z*z; if (mag <= 1e-3) continue;` — a float
        // promoted to double against the double literal.
        let skipped = skipNearOrigin && Double(px * px + py * py + pz * pz) <= 1e-3
        vd[lane] = skipped ? -1 : .infinity
      }
      (x[v], y[v], z[v], distance[v]) = (vx, vy, vz, vd)
    }
  }

  deinit {
    x.deallocate()
    y.deallocate()
    z.deallocate()
    distance.deallocate()
  }

  /// Writes `count` indices into `out`, splitting each pass into `slices` parallel ranges of
  /// vectors.
  ///
  /// A split pass ends with every thread waiting for the others, 2,047 times for 2,048 picks;
  /// when other work holds some of the cores, that wait costs more than the split saves. So
  /// with several slices it times `probeLength` passes each way every `probeEvery` passes and
  /// keeps the faster. Both ways pick the same points.
  func sample(_ count: Int, into out: UnsafeMutablePointer<Int32>, slices: Int) {
    guard count > 0 else { return }
    out[0] = 0
    let slices = Swift.max(1, Swift.min(slices, vectors))
    let results = UnsafeMutablePointer<(Float, Int32)>.allocate(capacity: slices)
    defer { results.deallocate() }
    var last = 0
    var j = 1
    func step(split: Bool) {
      let (x1, y1, z1) = (source[3 * last], source[3 * last + 1], source[3 * last + 2])
      var best: (Float, Int32)
      if split {
        Parallel.forRange(slices, grain: 1) { r in
          for s in r {
            results[s] = update(vectors * s / slices..<vectors * (s + 1) / slices, x1, y1, z1)
          }
        }
        // Slices in index order, strictly greater: the first maximum overall.
        best = results[0]
        for s in 1..<slices where results[s].0 > best.0 { best = results[s] }
      } else {
        best = update(0..<vectors, x1, y1, z1)
      }
      last = Int(best.1)
      out[j] = best.1
      j += 1
    }
    var split = slices > 1
    while j < count {
      if slices > 1 && (j - 1) % FPSCloud.probeEvery == 0 {
        var elapsed: [UInt64] = [0, 0]
        for (trial, way) in [true, false].enumerated() {
          let start = DispatchTime.now().uptimeNanoseconds
          for _ in 0..<FPSCloud.probeLength where j < count { step(split: way) }
          elapsed[trial] = DispatchTime.now().uptimeNanoseconds - start
        }
        split = elapsed[0] <= elapsed[1]
      } else {
        step(split: split)
      }
    }
  }

  /// Passes timed each way when choosing whether to split.
  static let probeLength = 16
  /// Passes between two choices (the probes included).
  static let probeEvery = 256

  /// Lowers the distances of `range` (vectors) to include the point (x1, y1, z1) and returns the
  /// largest distance there with its lowest index, or (−1, 0) when no point is a candidate.
  @inline(__always)
  private func update(_ range: Range<Int>, _ x1: Float, _ y1: Float, _ z1: Float) -> (
    Float, Int32
  ) {
    let (cx, cy, cz) = (SIMD8(repeating: x1), SIMD8(repeating: y1), SIMD8(repeating: z1))
    var best = SIMD8<Float>(repeating: -1)
    var bestIndex = SIMD8<Int32>(repeating: 0)
    var index = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &+ Int32(range.lowerBound * 8)
    let step = SIMD8<Int32>(repeating: 8)
    for v in range {
      let dx = x[v] - cx
      let dy = y[v] - cy
      let dz = z[v] - cz
      let d = dx * dx + dy * dy + dz * dz
      let old = distance[v]
      // `replacing` rather than `pointwiseMin` and `replace(with:where:)`: it compiles to
      // vminps/vblendvps, where the others are three times slower per pass.
      let m = d.replacing(with: old, where: old .< d)
      distance[v] = m
      // Strictly greater: within a lane the earliest index of a maximum stays.
      let greater = m .> best
      best = best.replacing(with: m, where: greater)
      bestIndex = bestIndex.replacing(with: index, where: greater)
      index &+= step
    }
    let top = best.max()
    var first = Int32.max
    for lane in 0..<8 where best[lane] == top { first = Swift.min(first, bestIndex[lane]) }
    return (top, first)
  }
}
