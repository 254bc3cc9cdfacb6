import XCTest

@testable import GraftTasks

/// `graft bench captions` through the executable: both arms in their own processes, the summary
/// with the difference, the report, and the named errors.
final class BenchCaptionsCommandLineTests: XCTestCase {
  func testBenchCaptionsRunsBothArms() throws {
    let root = temporaryFolder()
    addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    let clips = root.appendingPathComponent("clips").path
    let prepare = try runGraft([
      "data", "prepare", "clips", "--clips", "10", "--root", clips, "--quiet",
    ])
    XCTAssertEqual(prepare.status, 0, prepare.err)
    let decoder = repositoryRoot.appendingPathComponent("Tests/GraftTextTests/Fixtures/gpt2-tiny")
    let out = root.appendingPathComponent("bench")
    let args = [
      "bench", "captions", "--decoder", decoder.path, "--data", clips, "--epochs", "1",
      "--max-clips", "2", "--set", "method.max_new_tokens=4", "--out", out.path,
    ]
    let run = try runGraft(args + ["--json"])
    XCTAssertEqual(run.status, 0, run.err)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json")))
        as? [String: Any])
    let arms = try XCTUnwrap(summary["arms"] as? [[String: Any]])
    XCTAssertEqual(arms.map { $0["arm"] as? String }, ["lora", "lora-no-video"])
    XCTAssertEqual(arms.map { $0["video"] as? Bool }, [true, false])
    // Without video every test clip gets the same caption.
    XCTAssertEqual(arms[1]["distinct_captions"] as? Int, 1)
    XCTAssertNotNil(arms[0]["peak_rss_mib"] as? Double)
    XCTAssertEqual((summary["differences"] as? [[String: Any]])?.count, 1)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: out.appendingPathComponent("report.html").path))
    // A second call reuses both arms.
    let again = try runGraft(args)
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertEqual(again.err.components(separatedBy: "reusing").count - 1, 2, again.err)
    XCTAssertTrue(again.out.contains("video − none (lora)"), again.out)
    // Clips prepared again in the same folder (another seed): both arms train again.
    let reprepared = try runGraft([
      "data", "prepare", "clips", "--clips", "10", "--seed", "1", "--root", clips, "--quiet",
    ])
    XCTAssertEqual(reprepared.status, 0, reprepared.err)
    let third = try runGraft(args)
    XCTAssertEqual(third.status, 0, third.err)
    XCTAssertEqual(third.err.components(separatedBy: "reusing").count - 1, 0, third.err)
    XCTAssertEqual(
      third.err.components(separatedBy: "ran with other settings").count - 1, 2, third.err)

    let missing = try runGraft([
      "bench", "captions", "--decoder", "no-such-decoder", "--data", clips,
    ])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.err.contains("no-such-decoder"), missing.err)
    let arm = try runGraft(
      ["bench", "captions", "--decoder", decoder.path, "--data", clips, "--arms", "lora-audio"])
    XCTAssertNotEqual(arm.status, 0)
    XCTAssertTrue(arm.err.contains("lora-audio"), arm.err)
  }
}
