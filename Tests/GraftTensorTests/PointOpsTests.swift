import Foundation
import XCTest

@testable import GraftTensor

/// Farthest point sampling, kNN, ball query, gather, grouping and normalisation, against
/// brute-force references written here and against PyTorch (Tools/make_point_ops_fixture.py).
final class PointOpsTests: XCTestCase {
  // MARK: References

  /// The distance every op uses: (a−b)² summed over the channels in order, in Float32.
  private func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: Int) -> Float {
    var d: Float = 0
    for i in 0..<c {
      let diff = a[i] - b[i]
      d += diff * diff
    }
    return d
  }

  /// Scalar FPS over one cloud: running minimum distances, first maximum, optional origin skip.
  private func referenceFPS(_ cloud: [Float], count: Int, skip: Bool) -> [Int32] {
    let n = cloud.count / 3
    var dist = [Float](repeating: .infinity, count: n)
    var candidate = [Bool](repeating: true, count: n)
    if skip {
      for j in 0..<n {
        let (x, y, z) = (cloud[3 * j], cloud[3 * j + 1], cloud[3 * j + 2])
        candidate[j] = !(Double(x * x + y * y + z * z) <= 1e-3)
      }
    }
    var out: [Int32] = count > 0 ? [0] : []
    var last = 0
    while out.count < count {
      var best: Float = -1
      var bestIndex = 0
      cloud.withUnsafeBufferPointer { p in
        for j in 0..<n where candidate[j] {
          dist[j] = min(dist[j], distance(p.baseAddress! + 3 * j, p.baseAddress! + 3 * last, 3))
          if dist[j] > best { (best, bestIndex) = (dist[j], j) }
        }
      }
      last = bestIndex
      out.append(Int32(bestIndex))
    }
    return out
  }

  /// Brute-force kNN of one query row: every distance, stable sort, first k.
  private func referenceKNN(
    _ query: UnsafePointer<Float>, _ cloud: UnsafePointer<Float>, n: Int, c: Int, k: Int
  ) -> (indices: [Int32], distances: [Float]) {
    let all = (0..<n).map { (distance(query, cloud + $0 * c, c), Int32($0)) }
    let sorted = all.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.prefix(k)
    return (sorted.map(\.1), sorted.map(\.0))
  }

  private func assertKNNMatchesBruteForce(
    _ query: Tensor, _ points: Tensor, k: Int, file: StaticString = #filePath, line: UInt = #line
  ) {
    let (indices, distances) = PointOps.knn(query: query, points: points, k: k)
    let batched = query.rank == 3
    let (b, m, c) = (batched ? query.shape[0] : 1, query.shape[query.rank - 2], query.shape.last!)
    let n = points.shape[points.rank - 2]
    XCTAssertEqual(indices.shape, (batched ? [b] : []) + [m, k], file: file, line: line)
    XCTAssertEqual(distances.shape, indices.shape, file: file, line: line)
    for row in 0..<(b * m) {
      let expected = referenceKNN(
        query.pointer + row * c, points.pointer + (row / m) * n * c, n: n, c: c, k: k)
      XCTAssertEqual(
        Array(indices.values[(row * k)..<((row + 1) * k)]), expected.indices, "row \(row)",
        file: file, line: line)
      XCTAssertEqual(
        Array(distances.scalars[(row * k)..<((row + 1) * k)]), expected.distances, "row \(row)",
        file: file, line: line)
    }
  }

  private func fixture() throws -> SafetensorsFile {
    let dir = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return try SafetensorsFile(contentsOf: dir.appendingPathComponent("point_ops.safetensors"))
  }

  private func int32s(_ file: SafetensorsFile, _ name: String) throws -> [Int32] {
    try file.intArray(name).map { Int32($0) }
  }

  /// A cloud with exact ties everywhere: points of a 4×4×4 integer grid, some repeated.
  private func gridCloud(batch: Int) -> Tensor {
    var values: [Float] = []
    for b in 0..<batch {
      for i in 0..<80 {
        let j = (i * 37 + b * 11) % 64  // 64 grid points, 16 of them twice
        values += [Float(j % 4), Float(j / 4 % 4), Float(j / 16)]
      }
    }
    return Tensor(values, shape: [batch, 80, 3])
  }

  // MARK: Farthest point sampling

  func testFPSMatchesBruteForceWithAndWithoutOriginSkip() {
    let random = randomTensor([3, 203, 3], seed: 1)
    // Move a few points next to the origin, where the skip rule applies.
    for b in 0..<3 {
      for j in [7, 50, 120] { for a in 0..<3 { random[b, j, a] *= 0.01 } }
    }
    for cloud in [random, gridCloud(batch: 2)] {
      for skip in [false, true] {
        let n = cloud.shape[1]
        let count = min(n, 64)
        let got = PointOps.farthestPointSample(cloud, count: count, skipNearOrigin: skip)
        XCTAssertEqual(got.shape, [cloud.shape[0], count])
        for b in 0..<cloud.shape[0] {
          let points = Array(cloud.scalars[(b * n * 3)..<((b + 1) * n * 3)])
          XCTAssertEqual(
            Array(got.values[(b * count)..<((b + 1) * count)]),
            referenceFPS(points, count: count, skip: skip), "cloud \(b), skip \(skip)")
        }
      }
    }
  }

  func testFPSTiesGoToTheFirstMaximumAndRepeatPointZeroWhenExhausted() {
    // Four corners of a square, each twice: after the four distinct points every distance is 0,
    // and the first maximum is index 0.
    let square: [Float] = [0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1]
    let cloud = Tensor(square + square, shape: [8, 3])
    let got = PointOps.farthestPointSample(cloud, count: 8)
    XCTAssertEqual(got.shape, [8])
    // From corner 0 the opposite corner (index 2) is farthest; then 1 and 3 tie at distance 1,
    // and the first maximum is index 1.
    XCTAssertEqual(got.values, [0, 2, 1, 3, 0, 0, 0, 0])
    XCTAssertEqual(got.values, referenceFPS(square + square, count: 8, skip: false))
    // Every point near the origin: pointnet2_ops returns index 0 throughout.
    let tiny = Tensor([0.01, 0, 0, 0, 0.02, 0, 0, 0, -0.03], shape: [1, 3, 3])
    XCTAssertEqual(
      PointOps.farthestPointSample(tiny, count: 3, skipNearOrigin: true).values, [0, 0, 0])
    XCTAssertEqual(PointOps.farthestPointSample(tiny, count: 3).values, [0, 2, 1])
    XCTAssertEqual(PointOps.farthestPointSample(tiny, count: 0).shape, [1, 0])
  }

  func testFPSOnALargeCloudSplitAcrossThreadsMatchesTheReference() {
    // 20,000 points in one cloud: with several threads the first 16 passes are split across
    // them and the next 16 are not (the probe that picks the faster way), so 24 picks check
    // both; a batch of such clouds runs one cloud per thread instead.
    let n = 20_000
    let one = randomTensor([1, n, 3], seed: 5)
    let got = PointOps.farthestPointSample(one, count: 24)
    XCTAssertEqual(got.values, referenceFPS(one.scalars, count: 24, skip: false))
    let batch = Tensor.concat([one, one, one], axis: 0)
    let batched = PointOps.farthestPointSample(batch, count: 24)
    XCTAssertEqual(batched.values, got.values + got.values + got.values)
  }

  func testFPSMatchesPyTorchReference() throws {
    let file = try fixture()
    for name in ["sphere", "chair"] {
      let points =
        name == "sphere"
        ? try file.tensor("sphere.points") : try file.tensor("chair.normalized").unsqueezed(0)
      for (key, skip) in [("fps", false), ("fps_skip", true)] {
        let got = PointOps.farthestPointSample(points, count: 64, skipNearOrigin: skip)
        XCTAssertEqual(got.values, try int32s(file, "\(name).\(key)"), "\(name) \(key)")
      }
    }
    // The fixture's sphere has points inside the skip radius that plain FPS picks, and one whose
    // Float32 squared norm equals Float32(1e-3), above the double 1e-3, which both keep.
    XCTAssertNotEqual(try int32s(file, "sphere.fps"), try int32s(file, "sphere.fps_skip"))
    XCTAssertTrue(try int32s(file, "sphere.fps_skip").contains(100))
  }

  // MARK: k-nearest neighbours

  func testKNNMatchesBruteForce() {
    // Random clouds, k small and k = N.
    let query = randomTensor([2, 37, 3], seed: 2)
    let points = randomTensor([2, 101, 3], seed: 3)
    assertKNNMatchesBruteForce(query, points, k: 9)
    assertKNNMatchesBruteForce(query, points, k: 101)
    // Unbatched, and in a 16-channel feature space.
    assertKNNMatchesBruteForce(
      randomTensor([5, 3], seed: 4), randomTensor([30, 3], seed: 5), k: 4)
    assertKNNMatchesBruteForce(
      randomTensor([2, 12, 16], seed: 6), randomTensor([2, 50, 16], seed: 7), k: 20)
    // Points listed in spatial order (sorted by x), as scans and meshes list them.
    let scattered = randomTensor([300, 3], seed: 14)
    let order = (0..<300).sorted { scattered[$0, 0] < scattered[$1, 0] }
    let sorted = Tensor(order.flatMap { j in (0..<3).map { scattered[j, $0] } }, shape: [300, 3])
    assertKNNMatchesBruteForce(sorted.narrow(0, start: 100, length: 30), sorted, k: 24)
    // Far from the origin, where |q|² + |p|² − 2q·p cancels badly without centring.
    let far = randomTensor([1, 200, 3], seed: 8, low: 1000, high: 1000.5)
    assertKNNMatchesBruteForce(far.narrow(1, start: 0, length: 40), far, k: 16)
  }

  func testKNNBreaksExactTiesByLowerIndex() {
    // Grid points queried from grid points: many neighbours at exactly equal distances, and
    // every repeated point at distance 0 twice.
    let cloud = gridCloud(batch: 2)
    let query = cloud.narrow(1, start: 0, length: 20)
    assertKNNMatchesBruteForce(query, cloud, k: 12)
    assertKNNMatchesBruteForce(query, cloud, k: 80)
    let (indices, distances) = PointOps.knn(query: query, points: cloud, k: 12)
    var ties = 0
    for row in 0..<40 {
      for i in 1..<12 where distances.scalars[row * 12 + i] == distances.scalars[row * 12 + i - 1] {
        XCTAssertLessThan(indices.values[row * 12 + i - 1], indices.values[row * 12 + i])
        ties += 1
      }
    }
    XCTAssertGreaterThan(ties, 100)
  }

  /// A cloud holding a NaN (a diverged model's output) gets valid indices 0..<k and NaN
  /// distances, the other clouds of the batch their true neighbours; the Chamfer loss over it is
  /// NaN, not a read out of bounds (it crashed point pretraining at a huge learning rate).
  func testKNNOfACloudWithNaNGivesValidIndicesAndNaN() {
    let cloud = gridCloud(batch: 2)
    var values = cloud.scalars
    values[cloud.count / 2 + 7] = .nan  // the second cloud
    let broken = Tensor(values, shape: cloud.shape)
    let query = broken.narrow(1, start: 0, length: 20)
    let (indices, distances) = PointOps.knn(query: query, points: broken, k: 5)
    let (truth, _) = PointOps.knn(
      query: cloud.narrow(1, start: 0, length: 20), points: cloud, k: 5)
    XCTAssertEqual(Array(indices.values[..<100]), Array(truth.values[..<100]))
    XCTAssertEqual(
      Array(indices.values[100...]), Array(repeating: [0, 1, 2, 3, 4], count: 20).flatMap { $0 })
    XCTAssertTrue(distances.scalars[100...].allSatisfy(\.isNaN))
    XCTAssertTrue(PointOps.chamferDistanceL2(broken, cloud).item.isNaN)
  }

  // MARK: Ball query

  func testBallQueryMatchesPointnet2Convention() throws {
    let points = randomTensor([2, 90, 3], seed: 9)
    let centres = Tensor.concat(
      [points.narrow(1, start: 0, length: 6), Tensor.full([2, 1, 3], 5)], axis: 1)
    let (radius, nsample) = (Float(0.45), 8)
    let got = PointOps.ballQuery(radius: radius, nsample: nsample, points: points, centres: centres)
    XCTAssertEqual(got.shape, [2, 7, 8])
    var padded = 0
    for b in 0..<2 {
      for m in 0..<7 {
        var inside: [Int32] = []
        for j in 0..<90
        where distance(centres.pointer + (b * 7 + m) * 3, points.pointer + (b * 90 + j) * 3, 3)
          < radius * radius
        {
          inside.append(Int32(j))
        }
        var expected = Array(inside.prefix(nsample))
        if expected.count < nsample {
          padded += 1
          expected += Array(repeating: expected.first ?? 0, count: nsample - expected.count)
        }
        XCTAssertEqual(Array(got.values[((b * 7 + m) * 8)..<((b * 7 + m + 1) * 8)]), expected)
      }
    }
    XCTAssertGreaterThan(padded, 2)  // the far centre and some sparse ones
    XCTAssertEqual(got[1, 6, 0], 0)  // nothing within reach of (5, 5, 5): zeros
    // The PyTorch reference on the chair's group centres.
    let file = try fixture()
    let chair = try file.tensor("chair.normalized").unsqueezed(0)
    let fixtureCentres = try file.tensor("chair.centres")
    XCTAssertEqual(
      PointOps.ballQuery(radius: 0.2, nsample: 16, points: chair, centres: fixtureCentres).values,
      try int32s(file, "chair.ball_idx"))
  }

  // MARK: Gather

  func testGatherForwardAndScatterAddGradient() {
    let values = randomTensor([2, 6, 3], seed: 10)
    let indices = IndexTensor(
      shape: [2, 4, 2], values: [0, 5, 5, 5, 2, 0, 1, 3, 4, 4, 0, 1, 2, 3, 5, 4])
    let out = PointOps.gather(values, indices)
    XCTAssertEqual(out.shape, [2, 4, 2, 3])
    for t in 0..<16 {
      let b = t / 8
      let j = Int(indices.values[t])
      XCTAssertEqual(
        Array(out.scalars[(t * 3)..<(t * 3 + 3)]),
        Array(values.scalars[((b * 6 + j) * 3)..<((b * 6 + j) * 3 + 3)]))
    }
    // Repeated picks (5 three times in cloud 0) must add up in backward.
    assertGradients([values]) { x in PointOps.gather(x[0], indices) }
    let probe = randomTensor([2, 6, 3], seed: 11).requiringGrad()
    PointOps.gather(probe, indices).sum().backward()
    XCTAssertEqual(probe.grad![0, 5, 1], 3)
    XCTAssertEqual(probe.grad![0, 4, 0], 0)
    XCTAssertEqual(probe.grad![1, 4, 2], 3)
  }

  // MARK: Group

  func testGroupMatchesPointMAEReference() throws {
    let file = try fixture()
    for (name, groups, size) in [("sphere", 32, 16), ("chair", 64, 32)] {
      let points =
        name == "sphere"
        ? try file.tensor("sphere.points") : try file.tensor("chair.normalized").unsqueezed(0)
      let g = PointOps.group(points, groups: groups, size: size)
      let batch = points.shape[0]
      XCTAssertEqual(g.centres.shape, [batch, groups, 3])
      XCTAssertEqual(g.neighbourhoods.shape, [batch, groups, size, 3])
      XCTAssertEqual(g.neighbourIndices.values, try int32s(file, "\(name).knn_idx"), name)
      XCTAssertEqual(g.centres.scalars, try file.tensor("\(name).centres").scalars, name)
      XCTAssertEqual(
        g.neighbourhoods.scalars, try file.tensor("\(name).neighbourhoods").scalars, name)
      let (_, distances) = PointOps.knn(query: g.centres, points: points, k: size)
      XCTAssertEqual(distances.scalars, try file.tensor("\(name).knn_dist").scalars, name)
    }
  }

  func testGroupShapesValuesAndGradient() {
    let points = randomTensor([2, 150, 3], seed: 12).requiringGrad()
    let g = PointOps.group(points, groups: 10, size: 6)
    XCTAssertEqual(g.centreIndices.shape, [2, 10])
    XCTAssertEqual(g.neighbourIndices.shape, [2, 10, 6])
    for b in 0..<2 {
      for c in 0..<10 {
        let centre = Int(g.centreIndices[b, c])
        // Each group starts with its own centre point, at offset 0.
        XCTAssertEqual(Int(g.neighbourIndices[b, c, 0]), centre)
        for s in 0..<6 {
          let j = Int(g.neighbourIndices[b, c, s])
          for a in 0..<3 {
            XCTAssertEqual(g.centres[b, c, a], points[b, centre, a])
            XCTAssertEqual(g.neighbourhoods[b, c, s, a], points[b, j, a] - points[b, centre, a])
          }
        }
      }
    }
    // d(Σ neighbourhoods)/d(point) = (times picked as a neighbour) − size·(times a centre).
    g.neighbourhoods.sum().backward()
    var expected = [Float](repeating: 0, count: 2 * 150)
    for t in 0..<g.neighbourIndices.count {
      expected[(t / 60) * 150 + Int(g.neighbourIndices.values[t])] += 1
    }
    for t in 0..<g.centreIndices.count {
      expected[(t / 10) * 150 + Int(g.centreIndices.values[t])] -= 6
    }
    let grad = points.grad!
    for p in 0..<300 {
      for a in 0..<3 { XCTAssertEqual(grad.scalars[p * 3 + a], expected[p]) }
    }
    // One cloud without a batch axis gives the same groups.
    let single = PointOps.group(
      points.detached().narrow(0, start: 1, length: 1).squeezed(0), groups: 10, size: 6)
    XCTAssertEqual(single.neighbourhoods.shape, [10, 6, 3])
    XCTAssertEqual(single.neighbourIndices.values, Array(g.neighbourIndices.values[60...]))
    XCTAssertEqual(single.centres.scalars, Array(g.centres.scalars[30...]))
  }

  // MARK: Normalisation

  func testNormalizedToUnitSphere() throws {
    let file = try fixture()
    let raw = try file.tensor("chair.raw")
    assertClose(
      raw.normalizedToUnitSphere().scalars, try file.tensor("chair.normalized").scalars,
      tolerance: 1e-6)
    let batch = Tensor.concat(
      [randomTensor([1, 50, 3], seed: 13, low: 3, high: 9), Tensor.full([1, 50, 3], 2)], axis: 0)
    let out = batch.normalizedToUnitSphere()
    var centroid = [Double](repeating: 0, count: 3)
    var largest: Float = 0
    for j in 0..<50 {
      for a in 0..<3 { centroid[a] += Double(out[0, j, a]) / 50 }
      largest = max(
        largest, (0..<3).map { out[0, j, $0] * out[0, j, $0] }.reduce(0, +).squareRoot())
    }
    for a in 0..<3 { XCTAssertEqual(centroid[a], 0, accuracy: 1e-6) }
    XCTAssertEqual(largest, 1, accuracy: 1e-6)
    // A cloud of one repeated point is only centred.
    XCTAssertEqual(Array(out.scalars[150...]), [Float](repeating: 0, count: 150))
  }
}
