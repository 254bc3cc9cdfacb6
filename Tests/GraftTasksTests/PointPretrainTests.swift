import XCTest

@testable import GraftTasks

/// `graft pretrain --modality points` on a tiny Point-MAE and hand-made meshes.
final class PointPretrainTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-point-pretrain-\(UUID().uuidString)")
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// A unit cube (12 triangles) scaled along x by `stretch`.
  func cube(stretch: Float) -> TriangleMesh {
    var p: [Float] = []
    for i in 0..<8 {
      p += [Float(i & 1) * stretch, Float((i >> 1) & 1), Float((i >> 2) & 1)]
    }
    let faces: [UInt32] = [
      0, 1, 3, 0, 3, 2, 4, 6, 7, 4, 7, 5, 0, 4, 5, 0, 5, 1, 2, 3, 7, 2, 7, 6, 0, 2, 6, 0, 6, 4,
      1, 5, 7, 1, 7, 3,
    ]
    return TriangleMesh(vertices: PointCloud(positions: p), triangles: faces)
  }

  func tinyConfig(epochs: Int) throws -> PointPretrainConfig {
    var c = PointPretrainConfig()
    for (k, v) in [
      ("model.trans_dim", "16"), ("model.depth", "1"), ("model.num_heads", "2"),
      ("model.group_size", "8"), ("model.num_group", "8"), ("model.npoints", "64"),
      ("decoder.depth", "1"), ("decoder.num_heads", "2"), ("data.surface_points", "128"),
      ("train.batch_size", "4"), ("train.epochs", "\(epochs)"), ("train.warmup_epochs", "1"),
      ("train.workers", "0"), ("optim.lr", "0.003"),
    ] {
      try c.set(k, v)
    }
    return c
  }

  func meshes() -> MeshDataset {
    let shapes = (0..<8).map { cube(stretch: 1 + Float($0) / 4) }
    return MeshDataset(meshes: shapes, labels: Array(repeating: 0, count: 8), classNames: ["box"])
  }

  func testTheReconstructionLossFallsAndTheEncoderLoadsAsAModelFolder() throws {
    let pretrainer = try PointPretrainer(config: try tinyConfig(epochs: 12))
    let data = meshes()
    let result = try XCTUnwrap(pretrainer.run(train: data, validation: data, out: folder))
    let lines = try String(
      contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8
    ).split(separator: "\n")
    XCTAssertEqual(lines.count, 12)
    func validation(_ line: Substring) throws -> Double {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      return object["validation_loss"] as! Double
    }
    XCTAssertLessThan(try validation(lines.last!), 0.8 * (try validation(lines.first!)))
    XCTAssertEqual(result.validationLoss, try validation(lines.last!), accuracy: 1e-12)
    // The folder is a Point-MAE encoder every method attaches to, the same weights.
    let loaded = try PointMAE.load(folder: folder)
    XCTAssertEqual(loaded.config.transDim, 16)
    XCTAssertEqual(loaded.config.numClasses, 0)
    for (name, t) in pretrainer.model.encoder.namedParameters() {
      XCTAssertEqual(loaded.parameter(named: name)?.scalars, t.scalars, name)
    }
  }

  func testAnInterruptedRunResumesToTheSameWeights() throws {
    let data = meshes()
    let whole = try PointPretrainer(config: try tinyConfig(epochs: 3))
    try whole.run(train: data, validation: data, out: folder)
    let split = folder.appendingPathComponent("split")
    let first = try PointPretrainer(config: try tinyConfig(epochs: 3))
    XCTAssertNil(try first.run(train: data, validation: data, out: split, stopAfter: 1))
    let second = try PointPretrainer(config: try tinyConfig(epochs: 3))
    try second.run(train: data, validation: data, out: split, resume: true)
    for (name, t) in whole.model.namedParameters() {
      XCTAssertEqual(second.model.parameter(named: name)?.scalars, t.scalars, name)
    }
  }

  func testBadSettingsAreNamed() {
    var c = PointPretrainConfig()
    XCTAssertThrowsError(try c.set("mask.ratio", "1.5")) {
      XCTAssertTrue("\($0)".contains("mask.ratio"), "\($0)")
    }
    XCTAssertThrowsError(try c.set("model.trans_dimm", "8")) {
      XCTAssertTrue("\($0)".contains("unknown key 'model.trans_dimm'"), "\($0)")
    }
    try? c.set("model.num_heads", "5")
    XCTAssertThrowsError(try PointPretrainer(config: c))
    // Sizes have an upper bound (a typo's extra zeros aborted on memory), and the surface
    // sample must hold the model's points.
    XCTAssertThrowsError(try c.set("data.surface_points", "1000000000000")) {
      XCTAssertTrue("\($0)".contains("data.surface_points"), "\($0)")
    }
    var few = try! tinyConfig(epochs: 1)
    try! few.set("data.surface_points", "10")
    XCTAssertThrowsError(try PointPretrainer(config: few)) {
      XCTAssertTrue("\($0)".contains("below model.npoints"), "\($0)")
    }
  }

  /// A learning rate that blows the weights up ends the run with the divergence error at its
  /// step; it used to crash in the Chamfer loss's neighbour search on the NaN clouds.
  func testADivergingRunStopsWithAnErrorNotACrash() throws {
    var c = try tinyConfig(epochs: 3)
    try c.set("optim.lr", "1e30")
    try c.set("train.warmup_epochs", "0")
    XCTAssertThrowsError(
      try PointPretrainer(config: c).run(train: meshes(), validation: meshes(), out: folder)
    ) { XCTAssertTrue("\($0)".contains("step"), "\($0)") }
  }
}
