import XCTest

@testable import GraftTasks

/// `graft tune` on point clouds: a class-per-folder tree of PLY files through `TuneData`, the
/// trainer and the run folder, on a tiny Point-MAE.
final class PointTuneTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-point-tune-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// 20 clouds of 160 points per shape: a sphere's surface, a cube's surface, a flat disc.
  func writeShapes() throws -> URL {
    let root = folder.appendingPathComponent("shapes")
    var g = RandomGenerator(seed: 11)
    for shape in ["cube", "disc", "sphere"] {
      let dir = root.appendingPathComponent(shape)
      try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
      for i in 0..<20 {
        var p: [Float] = []
        for _ in 0..<160 {
          var v = (0..<3).map { _ in Tensor.randn([1], generator: &g).item }
          switch shape {
          case "sphere":
            let n = (v.map { $0 * $0 }.reduce(0, +)).squareRoot()
            v = v.map { $0 / n }
          case "cube":
            let axis = g.nextInt(below: 3)
            v = v.map { max(-1, min(1, $0 / 2)) }
            v[axis] = v[axis] < 0 ? -1 : 1
          default:
            v = [v[0] / 2, v[1] / 2, 0.02 * v[2]]
          }
          p += v
        }
        try PointFile.write(
          PointCloud(positions: p), to: dir.appendingPathComponent("\(shape)_\(i).ply"))
      }
    }
    return root
  }

  func tinyPointBackbone() throws -> TuneBackbone {
    let config = PointMAEConfig(
      transDim: 16, depth: 2, numHeads: 2, groupSize: 8, numGroup: 8, numClasses: 0,
      npoints: 64)
    var rng = RandomGenerator(seed: 1)
    let model = try PointMAE(config: config, generator: &rng)
    // Weights at a trained model's scale (std 1/√fan-in): at the official 0.02 init a model
    // this small passes almost nothing of its input through.
    for (_, t) in model.namedParameters() where t.rank >= 2 {
      let fanIn = t.count / t.shape[0]
      t.assign(Tensor.randn(t.shape, std: 1 / Float(fanIn).squareRoot(), generator: &rng))
    }
    return TuneBackbone(
      model: model, reference: "tiny-point-mae", architecture: "point_mae",
      weightsHash: FNV1a64.tensors(model.namedParameters()),
      input: .points(PointInput(points: 64)))
  }

  func testALinearProbeOnPointCloudsBeatsChanceAndWritesTheRunFolder() throws {
    let data = try TuneData<PointCloud>.load(try writeShapes().path)
    XCTAssertEqual(data.classNames, ["cube", "disc", "sphere"])
    XCTAssertEqual(data.train.count + data.validation.count + data.test.count, 60)
    var config = try TuneConfig.preset(for: "linear")
    try config.set("train.epochs", "6")
    try config.set("train.batch_size", "8")
    try config.set("train.workers", "0")
    let trainer = try Trainer(
      backbone: try tinyPointBackbone(), config: config, classNames: data.classNames)
    let run = folder.appendingPathComponent("run")
    let summary = try XCTUnwrap(
      trainer.run(data: AnyTuneData.points(data), folder: run, dataReference: "shapes"))
    // Three well-separated shapes: far above chance (1/3) even from random weights.
    XCTAssertGreaterThan(summary.test.top1, 0.6)
    // The run records its point input, and the adapter evaluates the same way.
    let adapter = try AdapterCheckpoint.readConfig(run)
    XCTAssertEqual(adapter.pointInput, PointInput(points: 64))
    XCTAssertNil(adapter.preprocessing)
    let loaded = try AdapterCheckpoint.load(run, backbone: try tinyPointBackbone())
    let (again, logits) = try loaded.evaluate(data.test)
    XCTAssertEqual(again.top1, summary.test.top1)
    // `graft predict` on cloud files: the same logits, and the clouds as the model saw them.
    let clouds = try (0..<data.test.count).map { try data.test.sample(at: $0) }
    let predicted = try loaded.predict(clouds: clouds)
    XCTAssertEqual(predicted.inputs.shape, [clouds.count, 64, 3])
    XCTAssertEqual(predicted.logits.shape, logits.shape)
    for (a, b) in zip(predicted.logits.scalars, logits.scalars) {
      XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)))
    }
    // A cloud the transform cannot use is named by its file, or by its place without one.
    let empty = PointCloud(positions: [Float](repeating: .nan, count: 6))
    XCTAssertThrowsError(
      try loaded.predict(clouds: [clouds[0], empty], sources: ["a.pcd", "b.pcd"])
    ) { XCTAssertTrue("\($0)".hasPrefix("b.pcd: "), "\($0)") }
    XCTAssertThrowsError(try loaded.predict(clouds: [empty])) {
      XCTAssertTrue("\($0)".hasPrefix("cloud 1 of 1: "), "\($0)")
    }
    // The report shows the test clouds as pictures.
    let report = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertTrue(report.contains("<svg") || report.contains("data:image/png"))
  }

  /// `train/` and `test/` without `val/` cut validation from train (a missing `val/` once read
  /// the split folders as classes and failed); `train/` alone cuts both, as image folders do.
  /// A file without one finite point is an error naming it.
  func testSplitFoldersWithoutValidationAndCloudsWithoutAFinitePoint() throws {
    let shapes = try writeShapes()
    let root = folder.appendingPathComponent("splits")
    for split in ["train", "test"] {
      for shape in ["cube", "disc", "sphere"] {
        let dir = root.appendingPathComponent("\(split)/\(shape)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for i in (split == "train" ? 0..<14 : 14..<20) {
          try FileManager.default.copyItem(
            at: shapes.appendingPathComponent("\(shape)/\(shape)_\(i).ply"),
            to: dir.appendingPathComponent("\(shape)_\(i).ply"))
        }
      }
    }
    let both = try TuneData<PointCloud>.load(root.path)
    XCTAssertEqual(both.classNames, ["cube", "disc", "sphere"])
    XCTAssertEqual(both.test.count, 18)
    XCTAssertEqual(both.train.count + both.validation.count, 42)
    XCTAssertGreaterThan(both.validation.count, 0)
    try FileManager.default.removeItem(at: root.appendingPathComponent("test"))
    let trainOnly = try TuneData<PointCloud>.load(root.path)
    XCTAssertEqual(trainOnly.classNames, ["cube", "disc", "sphere"])
    XCTAssertEqual(trainOnly.train.count + trainOnly.validation.count + trainOnly.test.count, 42)
    // A cloud of NaN points names its file when it is read.
    let bad = root.appendingPathComponent("train/cube/nan.pcd")
    try Data(
      ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
        + "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\nnan nan nan\nnan 1 2\n").utf8
    ).write(to: bad)
    let data = try PointFolderDataset(root: root.appendingPathComponent("train"))
    let index = try XCTUnwrap(data.files.firstIndex { $0.lastPathComponent == "nan.pcd" })
    XCTAssertThrowsError(try data.sample(at: index)) {
      XCTAssertTrue("\($0)".contains(bad.path) && "\($0)".contains("finite"), "\($0)")
    }
  }

  func testImagesForAPointBackboneAreRefused() throws {
    let backbone = try tinyPointBackbone()
    let classes = ["a", "b"]
    var config = TuneConfig(method: "linear")
    try config.set("train.epochs", "1")
    let trainer = try Trainer(backbone: backbone, config: config, classNames: classes)
    let images = try InMemoryDataset(
      images: [RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 0, count: 12))],
      labels: [0], classNames: classes)
    let data = try TuneData(
      train: images, validation: images, test: images, description: "images")
    XCTAssertThrowsError(try trainer.run(data: data, folder: folder)) {
      XCTAssertTrue("\($0)".contains("the backbone does not take images"), "\($0)")
    }
  }
}
