// k-nearest neighbours: squared distances by GEMM (|q|² + |p|² − 2·q·pᵀ on centred coordinates,
// through OpenBLAS), a branch-free per-row partial selection (a threshold no smaller than the
// k-th smallest, and the few points under it), then an exact re-ranking of those candidates. The
// GEMM alone can swap two neighbours whose distances differ by less than its rounding error (the
// formula cancels), so the result would depend on BLAS blocking; the re-ranking makes it exactly
// the brute-force answer.

extension PointOps {
  /// The `k` nearest points of each query point, by ascending squared Euclidean distance, ties
  /// to the lower point index: KNN_CUDA's `KNN(k, transpose_mode=True)(points, query)` as
  /// Point-MAE's `Group` calls it (sorted, stable), with squared rather than plain distances.
  ///
  /// The distance of a query `q` to a point `p` is `Σ_c (q_c − p_c)²`, summed over the channels
  /// in order in Float32 (KNN_CUDA's own loop; its compiler may fuse it into FMAs). Candidates
  /// come from the GEMM form on coordinates centred on the cloud's mean; every point whose GEMM
  /// distance lies within a rounding bound of the k-th smallest is re-scored with the exact sum,
  /// so the indices and distances are those of a brute-force sort whatever BLAS does.
  ///
  /// Shapes: `query` `[B, M, C]` and `points` `[B, N, C]` (any C: xyz, or features as in a
  /// DGCNN's dynamic graph) → indices `[B, M, k]` and squared distances `[B, M, k]` (or
  /// unbatched `[M, C]`, `[N, C]` → `[M, k]`); 1 ≤ k ≤ N. The distances are not recorded on the
  /// tape. Queries run in parallel in blocks, each block one single-threaded GEMM. A cloud
  /// (query or points) with a coordinate that is not finite gets the indices `0..<k` and NaN
  /// distances for every query: still valid indices, so a diverged model's NaN reaches its loss
  /// (and the trainer's check) instead of sending a gather out of bounds.
  public static func knn(query: Tensor, points: Tensor, k: Int) -> (
    indices: IndexTensor, squaredDistances: Tensor
  ) {
    let q = cloudShape(query, "knn")
    let p = cloudShape(points, "knn")
    precondition(
      q.batched == p.batched && q.batch == p.batch && q.channels == p.channels,
      "knn: query \(query.shape) and points \(points.shape) do not match")
    precondition(k >= 1 && k <= p.count, "knn: k = \(k) for clouds of \(p.count) points")
    let (batch, m, n, c) = (q.batch, q.count, p.count, q.channels)
    let outShape = (q.batched ? [batch] : []) + [m, k]
    let distances = Tensor(shape: outShape, zeroed: false)
    guard batch * m > 0 else { return (IndexTensor(shape: outShape, values: []), distances) }

    let finite = (0..<batch).map { b in
      UnsafeBufferPointer(start: query.pointer + b * m * c, count: m * c).allSatisfy(\.isFinite)
        && UnsafeBufferPointer(start: points.pointer + b * n * c, count: n * c).allSatisfy(
          \.isFinite)
    }
    let prep = KNNPrepared(query: query.pointer, points: points.pointer, batch, m, n, c)
    defer { prep.deallocate() }
    let rowsPerBlock = Swift.max(1, Swift.min(m, 65_536 / n))
    let blocks = (m + rowsPerBlock - 1) / rowsPerBlock
    let (qOriginal, pOriginal, dOut) = (query.pointer, points.pointer, distances.pointer)
    // Both factors of the rounding bound (see `knnRow`): one ulp per operation, doubled.
    let marginFactor = Float(8 * c + 32) * Float.ulpOfOne
    let indices = IndexTensor.build(shape: outShape) { iOut in
      let grain = Swift.max(1, 65_536 / (rowsPerBlock * n * Swift.max(c, 1)))
      Parallel.forRange(batch * blocks, grain: grain) { r in
        let dots = UnsafeMutablePointer<Float>.allocate(capacity: rowsPerBlock * n)
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        let minima = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: (k + 7) / 8)
        let candidates = UnsafeMutablePointer<KNNCandidate>.allocate(capacity: n)
        defer {
          dots.deallocate()
          slots.deallocate()
          minima.deallocate()
          candidates.deallocate()
        }
        for task in r {
          let (b, block) = (task / blocks, task % blocks)
          let first = block * rowsPerBlock
          let rows = Swift.min(rowsPerBlock, m - first)
          let qRow0 = b * m + first
          guard finite[b] else {
            for row in qRow0..<(qRow0 + rows) {
              for j in 0..<k {
                iOut[row * k + j] = Int32(j)
                dOut[row * k + j] = .nan
              }
            }
            continue
          }
          sgemm(
            prep.query + qRow0 * c, transA: false, prep.points + b * n * c, transB: true, dots,
            m: rows, n: n, k: c)
          for i in 0..<rows {
            let row = qRow0 + i
            knnRow(
              dots + i * n, n: n, k: k, channels: c, queryNorm: prep.queryNorms[row],
              pointNorms: prep.pointNorms + b * n, largestPointNorm: prep.largestNorm[b],
              marginFactor: marginFactor, query: qOriginal + row * c,
              points: pOriginal + b * n * c, slots: slots, candidates: candidates, minima: minima,
              indices: iOut + row * k, distances: dOut + row * k)
          }
        }
      }
    }
    return (indices, distances)
  }
}

/// A point and its exact squared distance as one integer ordered by distance, then index: the
/// distance's bit pattern above the index. A sum of squares is +0 or positive (never −0 or
/// NaN for finite inputs), and such floats order as their bit patterns do, so selection and
/// sorting are single integer comparisons.
private typealias KNNCandidate = UInt64

extension KNNCandidate {
  init(distance: Float, index: Int32) {
    self = UInt64(distance.bitPattern) << 32 | UInt64(UInt32(bitPattern: index))
  }
  var distance: Float { Float(bitPattern: UInt32(truncatingIfNeeded: self >> 32)) }
  var index: Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: self)) }
}

/// Centred copies of the inputs and their squared norms, for the GEMM.
private struct KNNPrepared {
  let query: UnsafeMutablePointer<Float>
  let points: UnsafeMutablePointer<Float>
  let queryNorms: UnsafeMutablePointer<Float>
  let pointNorms: UnsafeMutablePointer<Float>
  /// Per cloud, the largest of `pointNorms`.
  let largestNorm: UnsafeMutablePointer<Float>

  /// Centres each cloud and its queries on the cloud's mean (in double precision): the GEMM's
  /// rounding error scales with the squared norms, so smaller norms mean fewer re-scored
  /// candidates, and a cloud far from the origin costs no more than one at it.
  init(
    query: UnsafePointer<Float>, points: UnsafePointer<Float>, _ batch: Int, _ m: Int, _ n: Int,
    _ c: Int
  ) {
    let (qp, pp) = (
      UnsafeMutablePointer<Float>.allocate(capacity: batch * m * c),
      UnsafeMutablePointer<Float>.allocate(capacity: batch * n * c)
    )
    let (qn, pn, largest) = (
      UnsafeMutablePointer<Float>.allocate(capacity: batch * m),
      UnsafeMutablePointer<Float>.allocate(capacity: batch * n),
      UnsafeMutablePointer<Float>.allocate(capacity: batch)
    )
    Parallel.forRange(batch, grain: Swift.max(1, 65_536 / Swift.max((n + m) * c, 1))) { r in
      let mean = UnsafeMutablePointer<Double>.allocate(capacity: c)
      defer { mean.deallocate() }
      for b in r {
        mean.update(repeating: 0, count: c)
        let cloud = points + b * n * c
        for j in 0..<n {
          for ch in 0..<c { mean[ch] += Double(cloud[j * c + ch]) }
        }
        for ch in 0..<c { mean[ch] /= Double(n) }
        func centre(
          _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
          _ norms: UnsafeMutablePointer<Float>, _ rows: Int
        ) -> Float {
          var most: Float = 0
          for j in 0..<rows {
            var s: Float = 0
            for ch in 0..<c {
              let v = Float(Double(src[j * c + ch]) - mean[ch])
              dst[j * c + ch] = v
              s += v * v
            }
            norms[j] = s
            most = Swift.max(most, s)
          }
          return most
        }
        largest[b] = centre(cloud, pp + b * n * c, pn + b * n, n)
        _ = centre(query + b * m * c, qp + b * m * c, qn + b * m, m)
      }
    }
    (self.query, self.points, queryNorms, pointNorms, largestNorm) = (qp, pp, qn, pn, largest)
  }

  func deallocate() {
    query.deallocate()
    points.deallocate()
    queryNorms.deallocate()
    pointNorms.deallocate()
    largestNorm.deallocate()
  }
}

/// One query row: `dots` holds the GEMM's centred dot products with every point.
///
/// With S = |q|² + max |p|² (centred), the GEMM distance `a_j` and the exact sum `d_j` differ by
/// at most about (4C + 14)·ε·S (ε = 2⁻²⁴: the dot product's and the norms' rounding, the
/// centring, and the exact sum's own). Let T be any value at least the k-th smallest `a_j` (here
/// from `blockThreshold`). The k-th smallest exact distance is at most T + bound, so every
/// true neighbour has `a_j ≤ T + 2·bound`; `marginFactor`·S is twice that again. Those
/// candidates (about 4k for a random cloud) are re-scored exactly, the k smallest by
/// (distance, index) selected and sorted.
@inline(__always)
private func knnRow(
  _ dots: UnsafeMutablePointer<Float>, n: Int, k: Int, channels c: Int, queryNorm: Float,
  pointNorms: UnsafePointer<Float>, largestPointNorm: Float, marginFactor: Float,
  query: UnsafePointer<Float>, points: UnsafePointer<Float>,
  slots: UnsafeMutablePointer<Int32>, candidates: UnsafeMutablePointer<KNNCandidate>,
  minima: UnsafeMutablePointer<SIMD8<Float>>, indices: UnsafeMutablePointer<Int32>,
  distances: UnsafeMutablePointer<Float>
) {
  for j in 0..<n { dots[j] = queryNorm + pointNorms[j] - 2 * dots[j] }
  let limit =
    blockThreshold(dots, n: n, k: k, minima: minima) + marginFactor * (queryNorm + largestPointNorm)
    + 16 * Float.leastNormalMagnitude
  // Branch-free compaction: every index is written, the count advances by the comparison's
  // 0 or 1 (taken from a vector compare, which the compiler cannot turn back into a branch).
  var found = 0
  let bound = SIMD8(repeating: limit)
  let one = SIMD8<Int32>(repeating: 1)
  var j = 0
  while j + 8 <= n {
    let v = UnsafeRawPointer(dots + j).loadUnaligned(as: SIMD8<Float>.self)
    let hits = SIMD8<Int32>().replacing(with: one, where: v .<= bound)
    for lane in 0..<8 {
      slots[found] = Int32(j + lane)
      found &+= Int(hits[lane])
    }
    j += 8
  }
  while j < n {
    slots[found] = Int32(j)
    found &+= dots[j] <= limit ? 1 : 0
    j += 1
  }
  for i in 0..<found {
    let point = points + Int(slots[i]) * c
    var d: Float = 0
    for ch in 0..<c {
      let diff = query[ch] - point[ch]
      d += diff * diff
    }
    candidates[i] = KNNCandidate(distance: d, index: slots[i])
  }
  let list = UnsafeMutableBufferPointer(start: candidates, count: found)
  if found > k { partialSelect(list, k) }
  var head = UnsafeMutableBufferPointer(rebasing: list[0..<k])
  if k <= 64 {
    // Insertion sort: no buffer to allocate, and k is small.
    for i in 1..<Swift.max(k, 1) {
      let item = head[i]
      var p = i
      while p > 0 && head[p - 1] > item {
        head[p] = head[p - 1]
        p -= 1
      }
      head[p] = item
    }
  } else {
    head.sort()
  }
  for i in 0..<k {
    indices[i] = head[i].index
    distances[i] = head[i].distance
  }
}

/// A value at least the k-th smallest of `values[0..<n]`: the largest of 8·⌈k/8⌉ ≥ k block
/// minima (each block's minimum is an element, so that many elements are at most it).
///
/// Block (g, lane) holds the elements `j` with `(j / 8) % G == g` and `j % 8 == lane`, over the
/// whole 8-element chunks, G = ⌈k/8⌉: each block samples the row evenly whatever the order of
/// the points (scans and meshes list neighbouring points together, which would make contiguous
/// blocks' minima very unequal and the threshold loose). One SIMD8 running minimum per g. With
/// fewer than 8G points in whole chunks a block would be empty: the threshold is then infinite
/// and every point a candidate.
@inline(__always)
private func blockThreshold(
  _ values: UnsafePointer<Float>, n: Int, k: Int, minima: UnsafeMutablePointer<SIMD8<Float>>
) -> Float {
  let groups = (k + 7) / 8
  let chunks = n / 8
  guard chunks >= groups else { return .infinity }
  for g in 0..<groups { minima[g] = SIMD8(repeating: .infinity) }
  var chunk = 0
  while chunk < chunks {
    for g in 0..<Swift.min(groups, chunks - chunk) {
      let v = UnsafeRawPointer(values + 8 * (chunk + g)).loadUnaligned(as: SIMD8<Float>.self)
      minima[g] = minima[g].replacing(with: v, where: v .< minima[g])
    }
    chunk += groups
  }
  var largest = minima[0]
  for g in 1..<groups { largest = largest.replacing(with: minima[g], where: minima[g] .> largest) }
  var threshold = largest[0]
  for lane in 1..<8 { threshold = largest[lane] > threshold ? largest[lane] : threshold }
  return threshold
}

/// Moves the `k` smallest candidates, by (distance, index), to the front (quickselect).
private func partialSelect(_ list: UnsafeMutableBufferPointer<KNNCandidate>, _ k: Int) {
  var (low, high) = (0, list.count - 1)
  while low < high {
    let pivot = list[low + (high - low) / 2]
    var (i, j) = (low, high)
    while i <= j {
      while list[i] < pivot { i += 1 }
      while pivot < list[j] { j -= 1 }
      if i <= j {
        list.swapAt(i, j)
        i += 1
        j -= 1
      }
    }
    if k - 1 <= j {
      high = j
    } else if k - 1 >= i {
      low = i
    } else {
      return
    }
  }
}
