// Point-cloud geometry: the shared index type, gather (differentiable, scatter-add backward),
// ball query, Point-MAE's grouping and the unit-sphere normalisation. Farthest point sampling is
// in FarthestPointSampling.swift and k-nearest neighbours in NearestNeighbours.swift.
//
// Clouds are Float32 tensors [B, N, 3] (or [N, 3] for one cloud), row-major: point `j` of cloud
// `b` is at offset (b·N + j)·3. Index results are Int32, as pointnet2_ops returns them.

/// Integer indices with a shape, row-major: what the point ops return (pointnet2_ops' int32 index
/// tensors). Indices of batched ops count within their own cloud (0..<N), not across the batch.
public struct IndexTensor: Equatable, Sendable, CustomStringConvertible {
  /// Extent of each axis.
  public let shape: [Int]
  /// The indices, row-major.
  public var values: [Int32]

  /// Wraps `values`, which must fill `shape`.
  public init(shape: [Int], values: [Int32]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in index shape \(shape)")
    precondition(
      values.count == shape.reduce(1, *),
      "\(values.count) indices do not fill shape \(shape)")
    self.shape = shape
    self.values = values
  }

  /// Number of axes.
  public var rank: Int { shape.count }
  /// Number of indices.
  public var count: Int { values.count }

  /// The index at a full position.
  public subscript(position: Int...) -> Int32 {
    precondition(position.count == rank, "position \(position) for index shape \(shape)")
    var flat = 0
    for (p, n) in zip(position, shape) {
      precondition(p >= 0 && p < n, "position \(position) out of range for shape \(shape)")
      flat = flat * n + p
    }
    return values[flat]
  }

  /// The same indices under a new shape with as many elements.
  public func reshaped(_ newShape: [Int]) -> IndexTensor {
    IndexTensor(shape: newShape, values: values)
  }

  /// The indices as Float32 (exact below 2²⁴), for writing next to tensors.
  public func asTensor() -> Tensor { Tensor(values.map { Float($0) }, shape: shape) }

  /// The shape and the first eight indices, for logs and test failures.
  public var description: String {
    let head = values.prefix(8).map(String.init).joined(separator: ", ")
    return "IndexTensor(shape: \(shape), [\(head)\(count > 8 ? ", …" : "")])"
  }

  /// `count` indices written by `body` into uninitialised storage (which it must fill).
  static func build(
    shape: [Int], _ body: (UnsafeMutablePointer<Int32>) -> Void
  ) -> IndexTensor {
    let count = shape.reduce(1, *)
    let values = [Int32](unsafeUninitializedCapacity: count) { buffer, initialized in
      if count > 0 { body(buffer.baseAddress!) }
      initialized = count
    }
    return IndexTensor(shape: shape, values: values)
  }
}

/// Geometry ops on point clouds: farthest point sampling, k-nearest neighbours, ball query,
/// gather, and Point-MAE's `Group` (FPS centres, kNN neighbourhoods minus their centre).
///
/// Every op takes a batch `[B, N, C]` or one cloud `[N, C]` (then its results drop the batch
/// axis). FPS and ball query read `C = 3`; kNN takes any `C`. The index ops record nothing on
/// the tape; `gather` is differentiable with respect to the gathered tensor.
public enum PointOps {
  /// The batch size, point count and channels of `points` (`[B, N, C]`, or `[N, C]` as B = 1).
  static func cloudShape(_ points: Tensor, _ op: String, channels: Int? = nil) -> (
    batch: Int, count: Int, channels: Int, batched: Bool
  ) {
    precondition(
      points.rank == 2 || points.rank == 3,
      "\(op): points \(points.shape) must be [B, N, C] or [N, C]")
    let batched = points.rank == 3
    let c = points.shape[points.rank - 1]
    if let channels {
      precondition(c == channels, "\(op): points \(points.shape) must have \(channels) channels")
    }
    return (batched ? points.shape[0] : 1, points.shape[points.rank - 2], c, batched)
  }

  // MARK: Gather

  /// Rows of `values` picked by `indices`, per cloud: `out[b, i…, :] = values[b, indices[b, i…], :]`
  /// (pointnet2_ops' `gather_operation` / `grouping_operation`, channels last).
  ///
  /// Shapes: `values` `[B, N, C…]` (rank ≥ 2) with `indices` `[B, …]` gives `[B, …, C…]`; the
  /// index ops' results fit as they are (`[B, G]` from FPS, `[B, M, k]` from kNN). Always batched:
  /// for one cloud, pass `values.unsqueezed(0)` and indices of shape `[1, …]` (or use
  /// `Tensor.indexSelect`). Indices may repeat. Differentiable with respect to `values`: backward
  /// scatter-adds the gradient of every picked row into the row it came from (repeated picks add
  /// up), one cloud per thread.
  public static func gather(_ values: Tensor, _ indices: IndexTensor) -> Tensor {
    precondition(
      values.rank >= 2 && indices.rank >= 1 && values.shape[0] == indices.shape[0],
      "gather: values \(values.shape) must be [B, N, …] and indices \(indices.shape) [B, …]")
    let batch = values.shape[0]
    let n = values.shape[1]
    let row = values.shape[2...].reduce(1, *)
    let picks = batch == 0 ? 0 : indices.count / batch
    let outShape = indices.shape + Array(values.shape[2...])
    for i in indices.values {
      precondition(i >= 0 && Int(i) < n, "gather: index \(i) out of range 0..<\(n)")
    }
    let out = Tensor(shape: outShape, zeroed: false)
    let (src, dst) = (values.pointer, out.pointer)
    indices.values.withUnsafeBufferPointer { idx in
      guard let ip = idx.baseAddress else { return }
      Parallel.forRange(batch * picks, grain: Swift.max(1, 16_384 / Swift.max(row, 1))) { r in
        for t in r {
          let b = t / picks
          (dst + t * row).update(from: src + (b * n + Int(ip[t])) * row, count: row)
        }
      }
    }
    let inShape = values.shape
    let captured = indices.values
    return out.recording("gather_points", [values]) { g in
      let gi = Tensor(shape: inShape)
      let (gs, gd) = (g.pointer, gi.pointer)
      captured.withUnsafeBufferPointer { idx in
        guard let ip = idx.baseAddress else { return }
        // Clouds never share gradient rows, so each runs on one thread without atomics.
        Parallel.forRange(batch, grain: Swift.max(1, 16_384 / Swift.max(picks * row, 1))) { r in
          for b in r {
            for p in 0..<picks {
              let t = b * picks + p
              let s = gs + t * row
              let d = gd + (b * n + Int(ip[t])) * row
              for c in 0..<row { d[c] += s[c] }
            }
          }
        }
      }
      return [gi]
    }
  }

  // MARK: Ball query

  /// For each centre, the first `nsample` points (in index order) closer than `radius`, as
  /// pointnet2_ops' `ball_query`: a point is inside when `(cx−x)² + (cy−y)² + (cz−z)²`, summed in
  /// that order in Float32, is strictly below `radius²`. Slots left over after the last point
  /// found repeat the first point found; a centre with no point inside gets index 0 throughout
  /// (pointnet2_ops' zero-filled output).
  ///
  /// Shapes: `points` `[B, N, 3]`, `centres` `[B, M, 3]` → `[B, M, nsample]` (or unbatched
  /// `[N, 3]`, `[M, 3]` → `[M, nsample]`). Centres run in parallel.
  public static func ballQuery(
    radius: Float, nsample: Int, points: Tensor, centres: Tensor
  ) -> IndexTensor {
    let p = cloudShape(points, "ballQuery", channels: 3)
    let q = cloudShape(centres, "ballQuery", channels: 3)
    precondition(
      p.batched == q.batched && p.batch == q.batch,
      "ballQuery: points \(points.shape) and centres \(centres.shape) differ in batch")
    precondition(nsample >= 1, "ballQuery: nsample must be ≥ 1, got \(nsample)")
    precondition(radius >= 0, "ballQuery: negative radius \(radius)")
    let (n, m) = (p.count, q.count)
    let radius2 = radius * radius
    let (xyz, centre) = (points.pointer, centres.pointer)
    let shape = (p.batched ? [p.batch] : []) + [m, nsample]
    return IndexTensor.build(shape: shape) { out in
      Parallel.forRange(p.batch * m, grain: Swift.max(1, 32_768 / Swift.max(n, 1))) { r in
        for t in r {
          let b = t / m
          let c = centre + t * 3
          let (cx, cy, cz) = (c[0], c[1], c[2])
          let cloud = xyz + b * n * 3
          let o = out + t * nsample
          var found = 0
          var k = 0
          while k < n && found < nsample {
            let dx = cx - cloud[3 * k]
            let dy = cy - cloud[3 * k + 1]
            let dz = cz - cloud[3 * k + 2]
            if dx * dx + dy * dy + dz * dz < radius2 {
              if found == 0 { o.update(repeating: Int32(k), count: nsample) }
              o[found] = Int32(k)
              found += 1
            }
            k += 1
          }
          if found == 0 { o.update(repeating: 0, count: nsample) }
        }
      }
    }
  }

  // MARK: Group

  /// Point-MAE's `Group(num_group, group_size)`: `groups` centres by farthest point sampling,
  /// the `size` nearest points of each centre by kNN, and each neighbourhood minus its centre.
  ///
  /// As the official `models/Point_MAE.py`: centres are `misc.fps`, i.e. pointnet2_ops'
  /// `furthest_point_sample` (which skips points within 1e-3 of the origin in squared norm: hence
  /// `skipNearOrigin` defaults to true here, see `farthestPointSample`) then a gather; the
  /// neighbours are KNN_CUDA's `KNN(k: group_size, transpose_mode: True)(xyz, center)`, which
  /// sorts them by ascending distance, so the first neighbour of every group is its centre point
  /// itself (distance 0) and the returned neighbourhood keeps that order; ties go to the lower
  /// point index (see `knn`). Neighbourhoods are `xyz[idx] − center` in Float32.
  ///
  /// Shapes: `points` `[B, N, 3]` → `neighbourhoods` `[B, G, S, 3]`, `centres` `[B, G, 3]` (or
  /// unbatched). Differentiable with respect to `points` through both terms (Point-MAE's input
  /// needs none; the gradient is there for anything upstream that trains).
  public static func group(
    _ points: Tensor, groups: Int, size: Int, skipNearOrigin: Bool = true
  ) -> PointGroups {
    let p = cloudShape(points, "group", channels: 3)
    precondition(
      groups >= 1 && groups <= p.count && size >= 1 && size <= p.count,
      "group: \(groups) groups of \(size) points from clouds of \(p.count)")
    guard p.batched else {
      let g = group(
        points.unsqueezed(0), groups: groups, size: size, skipNearOrigin: skipNearOrigin)
      return PointGroups(
        neighbourhoods: g.neighbourhoods.squeezed(0), centres: g.centres.squeezed(0),
        centreIndices: g.centreIndices.reshaped([groups]),
        neighbourIndices: g.neighbourIndices.reshaped([groups, size]))
    }
    let centreIndices = farthestPointSample(points, count: groups, skipNearOrigin: skipNearOrigin)
    let centres = gather(points, centreIndices)
    let neighbours = knn(query: centres.detached(), points: points.detached(), k: size)
    let grouped = gather(points, neighbours.indices)
    let neighbourhoods = grouped - centres.unsqueezed(-2)
    return PointGroups(
      neighbourhoods: neighbourhoods, centres: centres, centreIndices: centreIndices,
      neighbourIndices: neighbours.indices)
  }
}

/// What `PointOps.group` returns: Point-MAE's `(neighborhood, center)` and the indices behind
/// them.
public struct PointGroups {
  /// `[B, G, S, 3]`: each group's points minus its centre, nearest first.
  public let neighbourhoods: Tensor
  /// `[B, G, 3]`: the FPS centres.
  public let centres: Tensor
  /// `[B, G]`: the centres' point indices (FPS order).
  public let centreIndices: IndexTensor
  /// `[B, G, S]`: each group's point indices, by ascending distance from its centre.
  public let neighbourIndices: IndexTensor
}

// MARK: Normalisation

extension Tensor {
  /// Each cloud moved so its centroid is at the origin and scaled so its farthest point is at
  /// distance 1: Point-MAE's and PointNet++'s ModelNet `pc_normalize` (centroid = mean, then
  /// divide by the largest Euclidean norm).
  ///
  /// Takes `[N, 3]` or `[B, N, 3]` (each cloud on its own); the centroid and the norms are
  /// computed in double precision and the result rounded once to Float32. A cloud whose points
  /// all coincide is only centred (`pc_normalize` would divide by zero). Not recorded on the
  /// tape: this is preprocessing.
  public func normalizedToUnitSphere() -> Tensor {
    let p = PointOps.cloudShape(self, "normalizedToUnitSphere", channels: 3)
    let n = p.count
    let out = Tensor(shape: shape, zeroed: false)
    let (src, dst) = (pointer, out.pointer)
    Parallel.forRange(p.batch, grain: Swift.max(1, 65_536 / Swift.max(n, 1))) { r in
      for b in r {
        let s = src + b * n * 3
        let d = dst + b * n * 3
        var (mx, my, mz) = (0.0, 0.0, 0.0)
        for j in 0..<n {
          mx += Double(s[3 * j])
          my += Double(s[3 * j + 1])
          mz += Double(s[3 * j + 2])
        }
        let inv = 1 / Double(Swift.max(n, 1))
        (mx, my, mz) = (mx * inv, my * inv, mz * inv)
        var largest = 0.0
        for j in 0..<n {
          let x = Double(s[3 * j]) - mx
          let y = Double(s[3 * j + 1]) - my
          let z = Double(s[3 * j + 2]) - mz
          largest = Swift.max(largest, x * x + y * y + z * z)
        }
        let scale = largest > 0 ? 1 / largest.squareRoot() : 1
        for j in 0..<n {
          d[3 * j] = Float((Double(s[3 * j]) - mx) * scale)
          d[3 * j + 1] = Float((Double(s[3 * j + 1]) - my) * scale)
          d[3 * j + 2] = Float((Double(s[3 * j + 2]) - mz) * scale)
        }
      }
    }
    return out
  }
}
