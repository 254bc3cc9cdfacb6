import XCTest

@testable import GraftTasks

/// What the command line refuses before it runs anything: outputs that would replace what the
/// command reads, and sizes or rates that are typos (a negative count crashed, a huge one
/// aborted on memory, a negative learning rate trained). Every case ends with a nonzero status
/// and a message naming the flag, and leaves the inputs as they were.
final class CommandLineGuardTests: XCTestCase {
  let clip = repositoryRoot.appendingPathComponent("Tests/GraftVideoTests/Fixtures/clips/h264.mp4")

  func check(_ cases: [([String], String)], file: StaticString = #filePath, line: UInt = #line)
    throws
  {
    for (arguments, message) in cases {
      let r = try runGraft(arguments)
      XCTAssertNotEqual(r.status, 0, arguments.joined(separator: " "), file: file, line: line)
      XCTAssertTrue(r.err.contains(message), "\(arguments): \(r.err)", file: file, line: line)
      XCTAssertFalse(r.err.contains("Fatal error"), r.err, file: file, line: line)
    }
  }

  func testOutputsThatWouldReplaceWhatTheCommandReadsAreRefused() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let run = root.appendingPathComponent("run")
    let data = root.appendingPathComponent("clips")
    let sweep = root.appendingPathComponent("sweep")
    for folder in [run, data, sweep] {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }
    let image = root.appendingPathComponent("a.png")
    try Data(
      contentsOf: repositoryRoot.appendingPathComponent(
        "Tests/GraftDataTests/Fixtures/images/png_rgb.png")
    ).write(to: image)
    try Data("{}".utf8).write(to: run.appendingPathComponent("adapter_model.safetensors"))
    try Data("{}".utf8).write(to: data.appendingPathComponent("annotations.json"))
    let video = root.appendingPathComponent("v.mp4")
    try FileManager.default.copyItem(at: clip, to: video)
    let before = try [image, video].map { try Data(contentsOf: $0) }
    try check([
      (["predict", "--adapter", run.path, image.path, "--output", image.path], "is the input"),
      (
        [
          "predict", "--adapter", run.path, image.path, "--output",
          run.path + "/adapter_model.safetensors",
        ], "would replace a file of"
      ),
      (["predict", "--adapter", run.path, image.path, "--output", "o.json"], ".safetensors"),
      (["video", "frames", video.path, "-o", video.path], "is the input"),
      (
        [
          "caption", "eval", "--adapter", run.path, "--data", data.path, "--hyps-out",
          data.path + "/annotations.json",
        ], "--hyps-out"
      ),
      (["report", sweep.path, root.path + "/other", "--out", sweep.path], "--out"),
    ])
    XCTAssertEqual(try [image, video].map { try Data(contentsOf: $0) }, before)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sweep.path), [])
    // A caption run is never written over another run's files.
    try Data("{}".utf8).write(to: run.appendingPathComponent("adapter_config.json"))
    try check([
      (
        [
          "caption", "train", "--backbone", "vit-nano-fmnist", "--decoder", "gpt2-wordnet",
          "--data", data.path, "--out", run.path,
        ], "already holds files"
      )
    ])
  }

  func testSizesAndRatesThatAreTyposAreRefused() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let out = root.appendingPathComponent("out").path
    let caption = [
      "caption", "train", "--backbone", "vit-nano-fmnist", "--decoder", "gpt2-wordnet", "--data",
      root.path, "--out", out,
    ]
    try check([
      (["data", "prepare", "clips", "--clips=-1", "--root", out], "--clips"),
      (["data", "prepare", "canvas-det", "--canvas", "1000000", "--root", out], "--canvas"),
      (["points", "convert", clip.path, out + ".ply", "--points", "100000000000"], "--points"),
      (["video", "frames", clip.path, "--frames", "100000000", "-o", out], "--frames"),
      (["bench", "vit", "--batch", "0", "--no-reference"], "--batch"),
      (["bench", "video", "--batch", "0", "--no-reference"], "--batch"),
      (caption + ["--lr=-1"], "--lr"),
      (caption + ["--lr", "nan"], "--lr"),
      (
        ["sweep", "--method", "linear", "--method", "linear", "--data", "digits", "--out", out],
        "twice"
      ),
      (["models", "reinit", "gpt2-wordnet", "--out", out], "text decoder"),
      (["models", "reinit", "Models/gpt2-wordnet", "--out", out], "text decoder"),
      (["caption", "run", "--adapter", out, "--beam", "100000", clip.path], "--beam"),
    ])
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
  }

  /// A child's own error reaches the user: `bench video` on a file that is no video says so
  /// (it used to print only the child's exit status).
  func testABenchChildsErrorIsShown() throws {
    let notVideo = temporaryFolder().appendingPathComponent("notes.mp4")
    defer { try? FileManager.default.removeItem(at: notVideo.deletingLastPathComponent()) }
    try FileManager.default.createDirectory(
      at: notVideo.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data("not a video".utf8).write(to: notVideo)
    let r = try runGraft([
      "bench", "video", "--video", notVideo.path, "--frames", "2", "--batch", "1",
      "--iterations", "1", "--no-reference",
    ])
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.err.contains(notVideo.path + ":"), r.err)
  }

  /// `graft models` lists the bundled text decoder as one, not as an unreadable backbone.
  func testModelsListsTheTextDecoder() throws {
    let r = try runGraft(["models"])
    XCTAssertEqual(r.status, 0, r.err)
    let line = try XCTUnwrap(r.out.split(separator: "\n").first { $0.hasPrefix("gpt2-wordnet") })
    XCTAssertTrue(line.contains("gpt2 decoder"), String(line))
    XCTAssertFalse(r.out.contains("unreadable"), r.out)
  }
}
