import XCTest

@testable import GraftTasks

/// `graft tune`, `eval` and `predict` on video clips, through the executable.
final class VideoCommandLineTests: XCTestCase {
  /// A class-per-folder tree of the video decoding fixtures: `a/` and `b/`, five clips each.
  func clipTree() throws -> URL {
    let clips = repositoryRoot.appendingPathComponent("Tests/GraftVideoTests/Fixtures/clips")
    let root = temporaryFolder()
    addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    let classes = [
      ("a", ["h264.mp4", "vfr.mkv", "mpeg4.mp4", "anim.gif", "mjpeg.avi"]),
      ("b", ["rotated.mp4", "vp8.webm", "vp9_odd.webm", "rotated_270.mp4", "h264_444_odd.mkv"]),
    ]
    for (name, files) in classes {
      let folder = root.appendingPathComponent("clips/\(name)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      for file in files {
        try FileManager.default.copyItem(
          at: clips.appendingPathComponent(file), to: folder.appendingPathComponent(file))
      }
    }
    return root
  }

  /// `graft embed --frames` as the README writes it, `--layer -2` (a negative value, which the
  /// parser once read as another flag), and a block the backbone lacks named as `layer`.
  func testEmbedFramesTakesANegativeLayer() throws {
    let clip = repositoryRoot.appendingPathComponent(
      "Tests/GraftVideoTests/Fixtures/clips/h264.mp4")
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let out = root.appendingPathComponent("out.safetensors").path
    let embed = ["embed", "--model", "vit-nano-fmnist", "--frames", "2", "--quiet", "-o", out]
    let ok = try runGraft(embed + ["--layer", "-2", clip.path])
    XCTAssertEqual(ok.status, 0, ok.err)
    XCTAssertTrue(FileManager.default.fileExists(atPath: out))
    let bad = try runGraft(embed + ["--layer", "99", clip.path])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.err.contains("layer: 99 is not a block of a 6-block backbone"), bad.err)
  }

  func testTuneEvalAndPredictOnAVideoFolder() throws {
    let root = try clipTree()
    let data = root.appendingPathComponent("clips").path
    let run = root.appendingPathComponent("run").path
    let tune = try runGraft([
      "tune", "--backbone", "vit-nano-fmnist", "--data", data, "--method", "linear", "--out", run,
      "--set", "train.epochs=2", "--set", "data.frames=2", "--set", "train.batch_size=4",
      "--json", "--quiet",
    ])
    XCTAssertEqual(tune.status, 0, tune.err)
    let summary = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(tune.out.utf8)) as? [String: Any])
    let test = try XCTUnwrap(summary["test"] as? [String: Any])
    XCTAssertEqual(test["count"] as? Int, 2)  // 20 % of 10 clips
    let adapter = try AdapterCheckpoint.readConfig(URL(fileURLWithPath: run))
    XCTAssertEqual(
      adapter.videoInput, VideoInput(frames: 2, sampling: .pllava, trainSampling: .random))
    XCTAssertEqual(adapter.classNames, ["a", "b"])

    // graft eval reads the clips as the run did: the run's test accuracy.
    let eval = try runGraft(["eval", "--adapter", run, "--data", data, "--split", "test", "--json"])
    XCTAssertEqual(eval.status, 0, eval.err)
    let result = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as? [String: Any])
    XCTAssertEqual(result["top1"] as? Double, test["top1"] as? Double)
    XCTAssertEqual(result["count"] as? Int, 2)

    // graft predict takes video files for a run on clips.
    let clip = root.appendingPathComponent("clips/a/h264.mp4").path
    let predict = try runGraft(["predict", "--adapter", run, "--top-k", "2", "--json", clip])
    XCTAssertEqual(predict.status, 0, predict.err)
    let rows = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(predict.out.utf8)) as? [[String: Any]])
    let top = try XCTUnwrap(rows.first?["top"] as? [[String: Any]])
    XCTAssertEqual(Set(top.compactMap { $0["class"] as? String }), ["a", "b"])
    let total = top.compactMap { $0["probability"] as? Double }.reduce(0, +)
    XCTAssertEqual(total, 1, accuracy: 1e-5)

    // A method that takes point clouds is refused, by name, before anything is written.
    let p2p = try runGraft([
      "tune", "--backbone", "vit-nano-fmnist", "--data", data, "--method", "p2p", "--out",
      root.appendingPathComponent("p2p").path,
    ])
    XCTAssertNotEqual(p2p.status, 0)
    XCTAssertTrue(p2p.err.contains("holds video clips"), p2p.err)
    XCTAssertFalse(p2p.err.contains("Fatal error"), p2p.err)
  }
}
