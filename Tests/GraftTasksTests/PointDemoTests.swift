import XCTest

@testable import GraftTasks

/// `graft demo points` end to end on the tiny Point-MAE fixture and the tiny timm ViT (for
/// P2P): the table, `summary.json` with overall, per-class and voted accuracy, and a report
/// that shows the clouds and P2P's images.
final class PointDemoTests: XCTestCase {
  /// 10 clouds of 64 points per class: a sphere's surface and a flat disc, as PLY files.
  func writeClouds(in root: URL) throws {
    var g = RandomGenerator(seed: 3)
    for shape in ["disc", "sphere"] {
      let dir = root.appendingPathComponent(shape)
      try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
      for i in 0..<10 {
        var p: [Float] = []
        for _ in 0..<64 {
          var v = (0..<3).map { _ in g.nextNormal() }
          if shape == "sphere" {
            let n = (v.map { $0 * $0 }.reduce(0, +)).squareRoot()
            v = v.map { $0 / n }
          } else {
            v = [v[0] / 2, 0.02 * v[1], v[2] / 2]
          }
          p += v
        }
        try PointFile.write(
          PointCloud(positions: p), to: dir.appendingPathComponent("\(shape)_\(i).ply"))
      }
    }
  }

  func testPointDemoWritesTablesSummaryAndAReportWithClouds() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let data = root.appendingPathComponent("shapes")
    try writeClouds(in: data)
    let out = root.appendingPathComponent("demo")
    let backbone = repositoryRoot.appendingPathComponent(
      "Tests/GraftModelsTests/Fixtures/point_mae/model"
    ).path
    let r = try runGraft([
      "demo", "points", "--backbone", backbone, "--image-backbone", tinyTimmFolder, "--task",
      data.path, "--methods", "linear,p2p", "--set", "train.epochs=1", "--set",
      "eval.votes=2", "--out", out.path, "--quiet",
    ])
    XCTAssertEqual(r.status, 0, r.err)
    XCTAssertTrue(r.out.contains("mAcc") && r.out.contains("p2p"), r.out)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
    let runs = try XCTUnwrap(summary["runs"] as? [[String: Any]])
    XCTAssertEqual(runs.map { $0["method"] as? String }, ["linear", "p2p"])
    for run in runs {
      XCTAssertEqual(run["votes"] as? Int, 2)
      for key in [
        "test_top1", "test_mean_per_class", "test_voted_top1", "test_voted_mean_per_class",
      ] {
        let v = try XCTUnwrap(run[key] as? Double, key)
        XCTAssertTrue((0...1).contains(v), key)
      }
    }
    // P2P ran on the image backbone, with its normalisation.
    let p2pConfig = try String(
      contentsOf: out.appendingPathComponent("p2p/tune_config.yaml"), encoding: .utf8)
    XCTAssertTrue(p2pConfig.contains("method.mean"), p2pConfig)
    // The point backbone's cloud size (the fixture's 128), so P2P sees the same clouds.
    XCTAssertTrue(p2pConfig.contains("method.points: \"128\""), p2pConfig)
    let adapter = try AdapterCheckpoint.readConfig(out.appendingPathComponent("p2p"))
    XCTAssertEqual(adapter.baseModel, tinyTimmFolder)
    // The report: a cloud per test sample, each with the best method's prediction, and
    // P2P's images.
    let testCount = try TuneData<PointCloud>.load(data.path).test.count
    let html = try String(
      contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
    let clouds = html.components(separatedBy: "<figure class=\"cloud ").count - 1
    XCTAssertEqual(clouds, testCount)
    XCTAssertTrue(html.contains("<circle"))
    XCTAssertTrue(html.contains("class=\"p2p-cloud\""))
    XCTAssertTrue(html.contains("data-view=\"3\""))
    XCTAssertTrue(html.contains("mAcc"))
  }
}
