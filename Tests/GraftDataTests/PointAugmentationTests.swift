import Foundation
import XCTest

@testable import GraftData

/// Each point augmentation's defining property, its handling of normals, and seeded determinism.
final class PointAugmentationTests: XCTestCase {
  private func cloud(_ n: Int, seed: UInt64) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    return Tensor.rand([n, 3], low: -1, high: 1, generator: &generator)
  }

  private func unitNormals(_ n: Int, seed: UInt64) -> Tensor {
    let raw = cloud(n, seed: seed)
    let out = Tensor(shape: [n, 3])
    for j in 0..<n {
      let v = SIMD3(raw[j, 0], raw[j, 1], raw[j, 2])
      let u = v / (v * v).sum().squareRoot()
      (out[j, 0], out[j, 1], out[j, 2]) = (u.x, u.y, u.z)
    }
    return out
  }

  private func row(_ t: Tensor, _ j: Int) -> SIMD3<Float> { SIMD3(t[j, 0], t[j, 1], t[j, 2]) }

  private func norm(_ v: SIMD3<Float>) -> Float { (v * v).sum().squareRoot() }

  /// RᵀR = I and det R = 1.
  private func assertRotation(
    _ r: PointTransform, file: StaticString = #filePath, line: UInt = #line
  ) {
    for i in 0..<3 {
      for j in 0..<3 {
        let dot = (0..<3).map { r.m[3 * i + $0] * r.m[3 * j + $0] }.reduce(0, +)
        XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-6, file: file, line: line)
      }
    }
    XCTAssertEqual(r.determinant, 1, accuracy: 1e-6, file: file, line: line)
  }

  /// Every augmentation, with a fixed seed, gives the same output twice and a different one
  /// for another seed.
  func testSeededDeterminism() {
    let points = cloud(64, seed: 1)
    let normals = unitNormals(64, seed: 2)
    let all: [any PointAugmentation] = [
      RandomScaleAndTranslate(), RandomUpAxisRotation(), RandomRotation(), RandomJitter(),
      RandomPointDropout(), RandomResample(count: 48),
      PointAugmentations([RandomRotation(), RandomJitter(), RandomResample(count: 80)]),
    ]
    for augmentation in all {
      func run(_ seed: UInt64) -> (Tensor, Tensor?) {
        var generator = RandomGenerator(seed: seed)
        return augmentation.apply(points, normals: normals, generator: &generator)
      }
      let (a, b, c) = (run(7), run(7), run(8))
      XCTAssertEqual(a.0.scalars, b.0.scalars, "\(augmentation)")
      XCTAssertEqual(a.1?.scalars, b.1?.scalars, "\(augmentation)")
      XCTAssertNotEqual(a.0.scalars, c.0.scalars, "\(augmentation)")
      // Without normals, the same draws give the same points.
      var generator = RandomGenerator(seed: 7)
      XCTAssertEqual(augmentation(points, generator: &generator).scalars, a.0.scalars)
    }
  }

  func testScaleAndTranslate() {
    let points = cloud(200, seed: 3)
    let normals = unitNormals(200, seed: 4)
    let augmentation = RandomScaleAndTranslate()
    var generator = RandomGenerator(seed: 5)
    var probe = generator
    let (s, t) = augmentation.sampleParameters(generator: &probe)
    let out = augmentation(points, normals: normals, generator: &generator)
    for a in 0..<3 {
      XCTAssertTrue((2.0 / 3.0...1.5).contains(s[a]), "scale \(s)")
      XCTAssertTrue((-0.2...0.2).contains(t[a]), "translation \(t)")
    }
    XCTAssertNotEqual(s.x, s.y)
    for j in 0..<200 {
      XCTAssertEqual(row(out.points, j), row(points, j) * s + t)
      // Normals: the inverse transpose of the scale, renormalised; still perpendicular to a
      // scaled tangent (any vector perpendicular to the normal, scaled like the points).
      let n = row(out.normals, j)
      XCTAssertEqual(norm(n), 1, accuracy: 1e-5)
      let original = row(normals, j)
      let tangent = SIMD3(original.y, -original.x, 0) * s
      XCTAssertEqual((n * tangent).sum(), 0, accuracy: 1e-5)
    }
    // Ranges across many draws span the documented defaults.
    var lowest = SIMD3<Float>(repeating: 9)
    var highest = SIMD3<Float>(repeating: -9)
    for _ in 0..<2000 {
      let (s, _) = augmentation.sampleParameters(generator: &generator)
      lowest = pointwiseMin(lowest, s)
      highest = pointwiseMax(highest, s)
    }
    XCTAssertLessThan(lowest.max(), 0.68)
    XCTAssertGreaterThan(highest.min(), 1.48)
  }

  func testUpAxisRotationKeepsTheUpCoordinateAndNorms() {
    let points = cloud(100, seed: 6)
    let normals = unitNormals(100, seed: 7)
    var generator = RandomGenerator(seed: 8)
    for axis in [PointAxis.y, .x, .z] {
      let rotation = RandomUpAxisRotation(axis: axis)
      var probe = generator
      let r = rotation.sampleMatrix(generator: &probe)
      assertRotation(r)
      let out = rotation(points, normals: normals, generator: &generator)
      for j in 0..<100 {
        let (p, q) = (row(points, j), row(out.points, j))
        XCTAssertEqual(q[axis.rawValue], p[axis.rawValue])
        XCTAssertEqual(norm(q), norm(p), accuracy: 1e-5)
        XCTAssertEqual(norm(row(out.normals, j)), 1, accuracy: 1e-5)
        // Angles between a point and its normal are kept.
        XCTAssertEqual(
          (q * row(out.normals, j)).sum(), (p * row(normals, j)).sum(), accuracy: 1e-5)
      }
    }
    // Point-MAE's matrix about y for a quarter turn: (x, y, z) · R = (−z, y, x).
    let quarter = RandomUpAxisRotation().matrix(angle: .pi / 2)
    let turned = quarter.applied(to: Tensor([1, 2, 3], shape: [1, 3]))
    for (got, want) in zip(turned.scalars, [Float(-3), 2, 1]) {
      XCTAssertEqual(got, want, accuracy: 1e-6)
    }
  }

  func testRandomRotationIsOrthonormalAndUniform() {
    let rotation = RandomRotation()
    var generator = RandomGenerator(seed: 9)
    let points = cloud(50, seed: 10)
    let out = rotation(points, generator: &generator)
    for j in 0..<50 { XCTAssertEqual(norm(row(out, j)), norm(row(points, j)), accuracy: 1e-5) }
    // Under the Haar measure the rotation angle θ has P(θ ≤ x) = (x − sin x) / π, and
    // trace R = 1 + 2 cos θ has mean 0 and mean square 1; a uniform-Euler-angle sampler fails
    // these. 4,000 draws: the tolerances are about 4 standard errors.
    let draws = 4_000
    var (traceSum, traceSquares, belowHalfPi) = (0.0, 0.0, 0)
    var firstColumn = SIMD3<Double>()
    for _ in 0..<draws {
      let r = rotation.sampleMatrix(generator: &generator)
      assertRotation(r)
      let trace = Double(r.m[0] + r.m[4] + r.m[8])
      traceSum += trace
      traceSquares += trace * trace
      if acos(max(-1, min(1, (trace - 1) / 2))) <= .pi / 2 { belowHalfPi += 1 }
      firstColumn += SIMD3(Double(r.m[0]), Double(r.m[3]), Double(r.m[6]))
    }
    XCTAssertEqual(traceSum / Double(draws), 0, accuracy: 0.065)
    XCTAssertEqual(traceSquares / Double(draws), 1, accuracy: 0.09)
    XCTAssertEqual(Double(belowHalfPi) / Double(draws), (Double.pi / 2 - 1) / .pi, accuracy: 0.025)
    for a in 0..<3 { XCTAssertEqual(firstColumn[a] / Double(draws), 0, accuracy: 0.04) }
  }

  func testJitterIsBoundedByTheClip() {
    let points = cloud(2000, seed: 11)
    let normals = unitNormals(2000, seed: 12)
    var generator = RandomGenerator(seed: 13)
    let out = RandomJitter()(points, normals: normals, generator: &generator)
    var (sum, squares, clipped) = (0.0, 0.0, 0)
    for i in 0..<6000 {
      let d = out.points.scalars[i] - points.scalars[i]
      XCTAssertLessThanOrEqual(abs(d), 0.05 + 1e-6)
      if abs(d) > 0.0499 { clipped += 1 }
      sum += Double(d)
      squares += Double(d * d)
    }
    XCTAssertEqual(sum / 6000, 0, accuracy: 0.0006)
    XCTAssertEqual((squares / 6000).squareRoot(), 0.01, accuracy: 0.0005)
    XCTAssertEqual(out.normals.scalars, normals.scalars)
    // A wide sigma hits the clip.
    let wide = RandomJitter(sigma: 0.1, clip: 0.05)(points, generator: &generator)
    for i in 0..<6000 {
      let d = abs(wide.scalars[i] - points.scalars[i])
      XCTAssertLessThanOrEqual(d, 0.05 + 1e-6)
      if d > 0.0499 { clipped += 1 }
    }
    XCTAssertGreaterThan(clipped, 1000)
  }

  func testPointDropoutReplacesDroppedPointsByTheFirst() {
    let points = cloud(500, seed: 14)
    let normals = unitNormals(500, seed: 15)
    let dropout = RandomPointDropout()
    var generator = RandomGenerator(seed: 16)
    var ratios: [Double] = []
    for _ in 0..<20 {
      var probe = generator
      let mask = dropout.sampleMask(count: 500, generator: &probe)
      let out = dropout(points, normals: normals, generator: &generator)
      XCTAssertEqual(out.points.shape, [500, 3])
      for j in 0..<500 {
        let dropped = mask[j] && j > 0
        XCTAssertEqual(row(out.points, j), row(points, dropped ? 0 : j))
        XCTAssertEqual(row(out.normals, j), row(normals, dropped ? 0 : j))
      }
      ratios.append(Double(mask.filter { $0 }.count) / 500)
    }
    // Ratios spread over [0, 0.875]: the mean is near 0.4375 and none is above the maximum.
    XCTAssertTrue(ratios.allSatisfy { $0 <= 0.875 + 0.06 })
    XCTAssertEqual(ratios.reduce(0, +) / 20, 0.4375, accuracy: 0.15)
    XCTAssertGreaterThan(ratios.max()! - ratios.min()!, 0.3)
  }

  func testResampleWithoutReplacementWhenPossible() {
    let points = cloud(100, seed: 17)
    let normals = unitNormals(100, seed: 18)
    var generator = RandomGenerator(seed: 19)
    var probe = generator
    let down = RandomResample(count: 60)
    let picks = down.sampleIndices(from: 100, generator: &probe)
    XCTAssertEqual(Set(picks).count, 60)
    let out = down(points, normals: normals, generator: &generator)
    XCTAssertEqual(out.points.shape, [60, 3])
    for (i, j) in picks.enumerated() {
      XCTAssertEqual(row(out.points, i), row(points, j))
      XCTAssertEqual(row(out.normals, i), row(normals, j))
    }
    // Up: every source point at least once, the rest repeated, in a random order.
    let upPicks = RandomResample(count: 250).sampleIndices(from: 100, generator: &generator)
    XCTAssertEqual(upPicks.count, 250)
    XCTAssertEqual(Set(upPicks), Set(0..<100))
    // The repeats are mixed in, not appended after one copy of every point.
    XCTAssertLessThan(Set(upPicks.prefix(100)).count, 100)
    // Same size: a permutation.
    XCTAssertEqual(
      Set(RandomResample(count: 100).sampleIndices(from: 100, generator: &generator)),
      Set(0..<100))
  }
}
