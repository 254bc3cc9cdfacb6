import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// Point-MAE's evaluation and fine-tuning inputs as `SampleTransform<PointCloud>`.
final class PointCloudTransformsTests: XCTestCase {
  /// `n` points spread over a box away from the origin, with unit normals.
  private func cloud(_ n: Int, seed: UInt64 = 1) -> PointCloud {
    var g = RandomGenerator(seed: seed)
    let positions = (0..<(3 * n)).map { i in 5 + 3 * g.nextFloat() * Float(1 + i % 3) }
    let normals = (0..<n).flatMap { i -> [Float] in [[1, 0, 0], [0, 1, 0], [0, 0, 1]][i % 3] }
    return PointCloud(positions: positions, normals: normals)
  }

  private func rows(_ t: Tensor) -> [[Float]] {
    let c = t.shape[1]
    return (0..<t.shape[0]).map { Array(t.scalars[(c * $0)..<(c * $0 + c)]) }
  }

  func testEvaluationIsNormalisedFarthestPointSampling() throws {
    let input = cloud(300)
    var g = RandomGenerator(seed: 0)
    let out = try PointTransforms.evaluation(points: 64)(input, &g)
    XCTAssertEqual(out.shape, [64, 3])
    let normalised = Tensor(input.positions, shape: [300, 3]).normalizedToUnitSphere()
    let picks = PointOps.farthestPointSample(normalised, count: 64, skipNearOrigin: true)
    XCTAssertEqual(picks.values[0], 0)
    let all = rows(normalised)
    XCTAssertEqual(rows(out), picks.values.map { all[Int($0)] })
    let radius = rows(out).map { ($0[0] * $0[0] + $0[1] * $0[1] + $0[2] * $0[2]).squareRoot() }
    XCTAssertLessThanOrEqual(radius.max()!, 1.0001)

    // The generator does not matter: evaluation is deterministic.
    var other = RandomGenerator(seed: 99)
    XCTAssertEqual(try PointTransforms.evaluation(points: 64)(input, &other).scalars, out.scalars)
  }

  func testEvaluationVariantsNormalsAndPadding() throws {
    var g = RandomGenerator(seed: 0)
    let input = cloud(10)
    let first = try PointTransforms.evaluation(
      points: 4, sampling: .first, normals: true, normalize: false)(input, &g)
    XCTAssertEqual(first.shape, [4, 6])
    XCTAssertEqual(rows(first)[2], Array(input.positions[6..<9]) + Array(input.normals![6..<9]))

    // Fewer points than asked for: all of them in order, then again from the first.
    let padded = try PointTransforms.evaluation(points: 13, normalize: false)(input, &g)
    XCTAssertEqual(rows(padded)[10], Array(input.positions[0..<3]))
    XCTAssertEqual(rows(padded)[12], Array(input.positions[6..<9]))

    let random = try PointTransforms.evaluation(points: 6, sampling: .random, normalize: false)(
      input, &g)
    XCTAssertEqual(Set(rows(random)).count, 6, "a random subset has no repeats")

    // Non-finite points (an organised cloud's missing ones) are dropped before sampling.
    var holes = input
    holes.positions[0] = .nan
    let dense = try PointTransforms.evaluation(points: 9, sampling: .first, normalize: false)(
      holes, &g)
    XCTAssertEqual(rows(dense)[0], Array(input.positions[3..<6]))

    XCTAssertThrowsError(
      try PointTransforms.evaluation(points: 4, normals: true)(
        PointCloud(positions: input.positions), &g)
    ) { XCTAssertEqual(($0 as? DatasetError)?.kind, .invalidArgument) }
    XCTAssertThrowsError(try PointTransforms.evaluation(points: 4)(PointCloud(positions: []), &g)) {
      XCTAssertEqual(($0 as? DatasetError)?.kind, .empty)
    }
  }

  func testTrainingIsSeededSubsetThenScaleAndTranslate() throws {
    let input = cloud(500)
    let plain = PointTransforms.training(points: 32, augmentation: nil)
    let augmented = PointTransforms.training(points: 32)
    var g1 = RandomGenerator(seed: 5)
    var g2 = RandomGenerator(seed: 5)
    var g3 = RandomGenerator(seed: 6)
    let x = try plain(input, &g1)
    let y = try augmented(input, &g2)
    XCTAssertEqual(x.shape, [32, 3])
    XCTAssertNotEqual(try plain(input, &g3).scalars, x.scalars, "another seed, another subset")
    var again = RandomGenerator(seed: 5)
    XCTAssertEqual(try plain(input, &again).scalars, x.scalars, "the same seed, the same subset")

    // Distinct points of the normalised cloud, drawn from its FPS pool.
    let all = rows(Tensor(input.positions, shape: [500, 3]).normalizedToUnitSphere())
    XCTAssertEqual(Set(rows(x)).count, 32)
    XCTAssertTrue(rows(x).allSatisfy { all.contains($0) })
    XCTAssertEqual(PointTransforms.fpsPool(points: 32), 38)

    // The augmented input is the same subset scaled and shifted per axis within Point-MAE's
    // ranges (the generator draws the subset first, then the augmentation).
    let (xr, yr) = (rows(x), rows(y))
    for a in 0..<3 {
      let s = (yr[1][a] - yr[0][a]) / (xr[1][a] - xr[0][a])
      let t = yr[0][a] - s * xr[0][a]
      XCTAssertTrue((2.0 / 3.0 - 1e-4)...(1.5 + 1e-4) ~= s, "scale \(s)")
      XCTAssertLessThanOrEqual(abs(t), 0.2 + 1e-4)
      for i in 0..<32 { XCTAssertEqual(yr[i][a], s * xr[i][a] + t, accuracy: 1e-4) }
    }
  }

  func testTrainingVariantsAndPointMAEPoolTable() throws {
    XCTAssertEqual(
      [1024, 2048, 4096, 8192].map { PointTransforms.fpsPool(points: $0) },
      [1200, 2400, 4800, 8192])
    let input = cloud(40)
    var g = RandomGenerator(seed: 2)
    let first = try PointTransforms.training(
      points: 8, sampling: .first, normalize: false, augmentation: nil)(input, &g)
    XCTAssertEqual(
      Set(rows(first)), Set((0..<8).map { Array(input.positions[(3 * $0)..<(3 * $0 + 3)]) }))
    let withNormals = try PointTransforms.training(points: 50, normals: true)(input, &g)
    XCTAssertEqual(withNormals.shape, [50, 6])
    for row in rows(withNormals) {
      let n = row[3..<6]
      XCTAssertEqual(n.map { $0 * $0 }.reduce(0, +), 1, accuracy: 1e-4, "normals stay unit")
    }
  }

  func testLoaderBatchesDoNotDependOnWorkers() throws {
    let clouds = (0..<6).map { cloud(80, seed: UInt64($0)) }
    let folder = try temporaryFolder(self)
    for (i, c) in clouds.enumerated() {
      try FileManager.default.createDirectory(
        at: folder.appendingPathComponent("c\(i % 2)"), withIntermediateDirectories: true)
      try PointFile.write(c, to: folder.appendingPathComponent("c\(i % 2)/\(i).ply"))
    }
    let data = try PointFolderDataset(root: folder)
    func batches(_ workers: Int) throws -> [[Float]] {
      let loader = DataLoader(
        dataset: data, batchSize: 4, shuffle: true, seed: 3, workers: workers,
        transform: PointTransforms.training(points: 16, normals: true))
      let it = loader.batches(epoch: 1)
      var out: [[Float]] = []
      while let b = try it.next() {
        XCTAssertEqual(Array(b.inputs.shape.dropFirst()), [16, 6])
        out.append(b.inputs.scalars)
      }
      return out
    }
    XCTAssertEqual(try batches(0), try batches(2))
  }
}
