import XCTest

@testable import GraftTasks

/// `graft tune --method pllava`: the spelling of `graft caption train`, through the
/// executable.
final class PLLaVACommandLineTests: XCTestCase {
  func testTuneWithPLLaVATrainsACaptionerThatCaptions() throws {
    let root = temporaryFolder()
    addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    let clips = root.appendingPathComponent("clips").path
    let prepare = try runGraft([
      "data", "prepare", "clips", "--clips", "12", "--root", clips, "--quiet",
    ])
    XCTAssertEqual(prepare.status, 0, prepare.err)
    let decoder = repositoryRoot.appendingPathComponent("Tests/GraftTextTests/Fixtures/gpt2-tiny")
    let run = root.appendingPathComponent("run").path
    let tune = try runGraft([
      "tune", "--method", "pllava", "--backbone", "vit-nano-fmnist", "--decoder", decoder.path,
      "--data", clips, "--out", run, "--set", "train.epochs=1", "--set", "train.batch_size=4",
      "--set", "method.mode=projector", "--quiet",
    ])
    XCTAssertEqual(tune.status, 0, tune.err)
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: root.appendingPathComponent("run/\(file)").path),
        file)
    }
    let video = try XCTUnwrap(
      FileManager.default.contentsOfDirectory(atPath: clips + "/videos").sorted().first)
    let caption = try runGraft(["caption", "run", "--adapter", run, clips + "/videos/" + video])
    XCTAssertEqual(caption.status, 0, caption.err)
    XCTAssertFalse(caption.out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    // `graft eval` on a captioning run scores a split as `graft caption eval` does.
    let scored = try runGraft(["eval", "--adapter", run, "--data", clips, "--json"])
    XCTAssertEqual(scored.status, 0, scored.err)
    let same = try runGraft(["caption", "eval", "--adapter", run, "--data", clips, "--json"])
    XCTAssertEqual(same.status, 0, same.err)
    XCTAssertEqual(scored.out, same.out)
    let scores = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(scored.out.utf8)) as? [String: Any])
    for key in ["bleu_4", "rouge_l", "cider", "videos"] { XCTAssertNotNil(scores[key], key) }
    let logits = try runGraft(["eval", "--adapter", run, "--data", clips, "--logits", "x.st"])
    XCTAssertNotEqual(logits.status, 0)
    XCTAssertTrue(logits.err.contains("captioning run"), logits.err)
    let precision = try runGraft(["eval", "--adapter", run, "--data", clips, "--precision", "int8"])
    XCTAssertNotEqual(precision.status, 0)
    XCTAssertTrue(precision.err.contains("--precision"), precision.err)
  }

  func testTuneWithPLLaVARefusesWhatItCannotMap() throws {
    let missing = try runGraft(["tune", "--method", "pllava", "--backbone", "vit-nano-fmnist"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.err.contains("--decoder"), missing.err)
    let unknown = try runGraft([
      "tune", "--method", "pllava", "--backbone", "vit-nano-fmnist", "--decoder", "d",
      "--data", "c", "--out", "o", "--set", "train.label_smoothing=0.1",
    ])
    XCTAssertNotEqual(unknown.status, 0)
    XCTAssertTrue(unknown.err.contains("train.label_smoothing"), unknown.err)
  }
}
