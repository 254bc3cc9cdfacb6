import GraftTensor

extension TriangleMesh {
  /// `count` points drawn uniformly over the surface, with the normal of the face each lies on.
  ///
  /// A triangle is chosen with probability proportional to its area (degenerate triangles have
  /// zero weight and are never chosen; vertices no triangle uses are never sampled), then a point
  /// uniformly inside it from two uniforms r1, r2: `(1 − √r1)·A + √r1(1 − r2)·B + √r1·r2·C`
  /// (Osada et al., 2002). The normal is `(B − A) × (C − A)` normalised, so it follows the
  /// winding. The same seed gives the same cloud on every machine. `source` names the mesh in
  /// errors.
  public func sampleSurface(count: Int, seed: UInt64, source: String = "<mesh>") throws
    -> PointCloud
  {
    guard count >= 0 else {
      throw PointFileError(.invalidWrite, path: source, "cannot sample \(count) points")
    }
    if let bad = triangles.first(where: { Int($0) >= vertexCount }) {
      throw PointFileError(
        .indexOutOfRange, path: source, "a triangle uses vertex \(bad) of \(vertexCount)")
    }
    let t = triangleCount
    guard t > 0 else {
      throw PointFileError(.noSurface, path: source, "the mesh has no triangles to sample")
    }
    var cumulative = [Double](repeating: 0, count: t)
    var total = 0.0
    var lastPositive = -1
    for i in 0..<t {
      let a = area(i)
      if a > 0, a.isFinite {
        total += a
        lastPositive = i
      }
      cumulative[i] = total
    }
    guard total > 0 else {
      throw PointFileError(.noSurface, path: source, "all \(t) triangles have zero area")
    }
    var rng = RandomGenerator(seed: seed)
    func uniform() -> Double { Double(rng.next() >> 11) * 0x1p-53 }
    var positions = [Float]()
    var normals = [Float]()
    positions.reserveCapacity(3 * count)
    normals.reserveCapacity(3 * count)
    for _ in 0..<count {
      // The first triangle whose cumulative area exceeds u: zero-area ones never are.
      let u = uniform() * total
      var lo = 0
      var hi = t
      while lo < hi {
        let mid = (lo + hi) / 2
        if cumulative[mid] > u { hi = mid } else { lo = mid + 1 }
      }
      let chosen = lo < t ? lo : lastPositive
      let (a, b, c) = corners(chosen)
      let (pa, pb, pc) = (SIMD3<Double>(a), SIMD3<Double>(b), SIMD3<Double>(c))
      let s = uniform().squareRoot()
      let r2 = uniform()
      let p = (1 - s) * pa + s * (1 - r2) * pb + s * r2 * pc
      let n = cross(pb - pa, pc - pa)
      let unit = n / (n * n).sum().squareRoot()
      positions += [Float(p.x), Float(p.y), Float(p.z)]
      normals += [Float(unit.x), Float(unit.y), Float(unit.z)]
    }
    return PointCloud(positions: positions, normals: normals)
  }
}
