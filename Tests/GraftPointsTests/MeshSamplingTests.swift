import Foundation
import XCTest

@testable import GraftPoints

final class MeshSamplingTests: XCTestCase {
  /// Two triangles in the planes z = 0 (area 1, normal +z) and x = 10 (area 3, normal +x), a
  /// degenerate triangle far away, and two vertices no face uses.
  private func mesh() -> TriangleMesh {
    let positions: [Float] = [
      0, 0, 0, 2, 0, 0, 0, 1, 0,  // area 1
      10, 0, 0, 10, 3, 0, 10, 0, 2,  // area 3
      100, 100, 100, 200, 200, 200, 300, 300, 300,  // collinear: area 0
      -50, -50, -50, 50, 50, 50,  // unreferenced
    ]
    return TriangleMesh(
      vertices: PointCloud(positions: positions), triangles: [0, 1, 2, 3, 4, 5, 6, 7, 8])
  }

  /// Barycentric coordinates of `p` in triangle `t`, and its distance from the triangle's plane.
  private func locate(_ p: SIMD3<Float>, in mesh: TriangleMesh, _ t: Int) -> (SIMD3<Double>, Double)
  {
    let (a, b, c) = mesh.corners(t)
    let (pa, pb, pc, pp) = (SIMD3<Double>(a), SIMD3<Double>(b), SIMD3<Double>(c), SIMD3<Double>(p))
    let n = cross(pb - pa, pc - pa)
    let area2 = (n * n).sum()
    let distance = abs(((pp - pa) * n).sum()) / area2.squareRoot()
    let u = (cross(pc - pb, pp - pb) * n).sum() / area2
    let v = (cross(pa - pc, pp - pc) * n).sum() / area2
    return (SIMD3(u, v, 1 - u - v), distance)
  }

  func testSameSeedSameCloudOtherSeedOtherCloud() throws {
    let m = mesh()
    let a = try m.sampleSurface(count: 500, seed: 42)
    XCTAssertEqual(a, try m.sampleSurface(count: 500, seed: 42))
    XCTAssertNotEqual(a.positions, try m.sampleSurface(count: 500, seed: 43).positions)
    XCTAssertEqual(a.count, 500)
  }

  func testPointsLieOnTheFacesWithTheirNormalsAndAreaWeighting() throws {
    let m = mesh()
    let n = 20_000
    let cloud = try m.sampleSurface(count: n, seed: 7)
    var onBig = 0
    var centroid = SIMD3<Double>.zero
    for i in 0..<n {
      let p = cloud.point(i)
      let normal = SIMD3(
        cloud.normals![3 * i], cloud.normals![3 * i + 1], cloud.normals![3 * i + 2])
      let t = p.x > 5 ? 1 : 0
      let (bary, distance) = locate(p, in: m, t)
      XCTAssertLessThan(distance, 1e-5)
      XCTAssertTrue(
        bary.min() > -1e-6 && bary.max() < 1 + 1e-6, "point \(i) is outside triangle \(t)")
      XCTAssertEqual(normal, t == 1 ? SIMD3(1, 0, 0) : SIMD3(0, 0, 1))
      if t == 1 {
        onBig += 1
        centroid += SIMD3<Double>(p)
      }
    }
    // P(big triangle) = 3 / 4; the standard deviation of the fraction is about 0.003.
    XCTAssertEqual(Double(onBig) / Double(n), 0.75, accuracy: 0.015)
    // Uniform within a triangle: the mean is its centroid (10, 1, 2/3).
    centroid /= Double(onBig)
    XCTAssertEqual(centroid.y, 1, accuracy: 0.03)
    XCTAssertEqual(centroid.z, 2.0 / 3, accuracy: 0.02)
  }

  func testUnreferencedVerticesAndDegenerateFacesAreNeverSampled() throws {
    let cloud = try mesh().sampleSurface(count: 5000, seed: 1)
    let bounds = try XCTUnwrap(cloud.bounds)
    XCTAssertTrue(all(bounds.min .>= SIMD3<Float>(repeating: -1e-6)))
    XCTAssertLessThanOrEqual(bounds.max.x, 10)
    XCTAssertLessThanOrEqual(bounds.max.y, 3)
    XCTAssertLessThanOrEqual(bounds.max.z, 2)
    // The real bunny has two vertices that no face uses: samples stay within the used vertices'
    // bounds and never land on an unused vertex.
    let bunny = try XCTUnwrap(try PLY.read(contentsOf: Fixtures.url("real/bunny.ply")).mesh)
    let used = Set(bunny.triangles)
    let unused = (0..<bunny.vertexCount).filter { !used.contains(UInt32($0)) }
    XCTAssertEqual(unused.count, 2)
    let samples = try bunny.sampleSurface(count: 4000, seed: 3)
    var lo = SIMD3<Float>(repeating: .infinity)
    var hi = SIMD3<Float>(repeating: -.infinity)
    for i in used {
      lo = pointwiseMin(lo, bunny.vertices.point(Int(i)))
      hi = pointwiseMax(hi, bunny.vertices.point(Int(i)))
    }
    let sampled = try XCTUnwrap(samples.bounds)
    XCTAssertTrue(all(sampled.min .>= lo - 1e-6) && all(sampled.max .<= hi + 1e-6))
    for v in unused {
      let p = bunny.vertices.point(v)
      XCTAssertFalse((0..<samples.count).contains { samples.point($0) == p })
    }
  }

  func testMeshesWithoutSurfaceThrow() {
    let flat = TriangleMesh(
      vertices: PointCloud(positions: [0, 0, 0, 1, 1, 1, 2, 2, 2]), triangles: [0, 1, 2])
    assertPointError(.noSurface, path: "flat.off", "zero area") {
      try flat.sampleSurface(count: 10, seed: 0, source: "flat.off")
    }
    let broken = TriangleMesh(vertices: PointCloud(positions: [0, 0, 0]), triangles: [0, 0, 1])
    assertPointError(.indexOutOfRange, path: "<mesh>", "vertex 1 of 1") {
      try broken.sampleSurface(count: 1, seed: 0)
    }
    let none = TriangleMesh(vertices: PointCloud(positions: [0, 0, 0]), triangles: [])
    assertPointError(.noSurface, path: "<mesh>", "no triangles") {
      try none.sampleSurface(count: 10, seed: 0)
    }
  }
}
