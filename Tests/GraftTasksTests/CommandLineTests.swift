import XCTest

@testable import GraftTasks

/// The `graft` executable of this build (`swift build` puts it beside the test bundle).
func graftExecutable() throws -> URL {
  let candidates = [
    Bundle(for: CommandLineTests.self).bundleURL.deletingLastPathComponent()
      .appendingPathComponent("graft"),
    repositoryRoot.appendingPathComponent(".build/debug/graft"),
  ]
  guard let url = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) })
  else {
    throw ConfigError(
      "no graft executable beside the tests or in .build/debug: run `swift build` first")
  }
  return url
}

/// Runs `graft` with `arguments` in the repository root, `environment` added to this process's;
/// returns status, stdout and stderr.
func runGraft(_ arguments: [String], environment: [String: String] = [:]) throws -> (
  status: Int32, out: String, err: String
) {
  let process = Process()
  process.executableURL = try graftExecutable()
  process.arguments = arguments
  if !environment.isEmpty {
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  }
  process.currentDirectoryURL = repositoryRoot
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let o = out.fileHandleForReading.readDataToEndOfFile()
  let e = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (
    process.terminationStatus, String(decoding: o, as: UTF8.self),
    String(decoding: e, as: UTF8.self)
  )
}

/// A tiny timm folder written by timm itself (Tools/make_vit_fixtures.py): ViT-S layout, width 32.
let tinyTimmFolder = repositoryRoot.appendingPathComponent(
  "Tests/GraftModelsTests/Fixtures/vit/vit_augreg"
).path

final class CommandLineTests: XCTestCase {
  /// `OPENBLAS_CORETYPE=SkylakeX` (as the README's benchmark commands set it) on a CPU without
  /// AVX-512: a note, and the command runs on OpenBLAS's own kernel (every product died of an
  /// illegal instruction before).
  func testAnAVX512KernelRequestedOnACPUWithoutItIsDroppedWithANote() throws {
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    try XCTSkipIf(flags.contains("avx512f"), "this CPU runs the SkylakeX kernel")
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let image = repositoryRoot.appendingPathComponent(
      "Tests/GraftDataTests/Fixtures/images/png_rgb.png")
    let r = try runGraft(
      [
        "embed", "--model", "vit-nano-fmnist", "-o",
        out.appendingPathComponent("f.safetensors").path, image.path,
      ], environment: ["OPENBLAS_CORETYPE": "SkylakeX"])
    XCTAssertEqual(r.status, 0, r.err)
    XCTAssertTrue(r.err.contains("OPENBLAS_CORETYPE=SkylakeX needs instructions"), r.err)
  }

  /// `graft demo` end to end on a tiny backbone: two methods in their own processes, the table,
  /// `summary.json` in the shape and `report.html`; a second call reuses the runs.
  func testDemoWritesSummaryAndReport() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let args = [
      "demo", "--backbone", tinyTimmFolder, "--task", "digits", "--methods", "linear,lst",
      "--protocol", "default", "--set", "train.epochs=1", "--set", "data.train_samples=100",
      "--out", out.path, "--quiet",
    ]
    // method.reduction is an LST option: linear refuses it, so the sweep fails clearly.
    let bad = try runGraft(args + ["--set", "method.reduction=2", "--fresh"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.err.contains("method 'linear'"), bad.err)

    let ok = try runGraft(args + ["--fresh"])
    XCTAssertEqual(ok.status, 0, ok.err)
    XCTAssertTrue(ok.out.contains("linear") && ok.out.contains("lst"), ok.out)
    let summary = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
    XCTAssertEqual(summary["backbone"] as? String, tinyTimmFolder)
    XCTAssertEqual(summary["task"] as? String, "digits")
    let methods = try XCTUnwrap(summary["methods"] as? [[String: Any]])
    XCTAssertEqual(methods.map { $0["method"] as? String }, ["linear", "lst"])
    for m in methods {
      for key in ["test_top1", "trainable_parameters", "train_seconds", "peak_rss_mib"] {
        XCTAssertNotNil(m[key], key)
      }
      let top1 = try XCTUnwrap(m["test_top1"] as? Double)
      XCTAssertTrue((0...1).contains(top1))
    }
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: out.appendingPathComponent("report.html").path))
    XCTAssertTrue(
      FileManager.default.fileExists(
        atPath: out.appendingPathComponent("lst/adapter_model.safetensors").path))
    // The second call reuses the finished runs: their files are not rewritten.
    let runSummary = out.appendingPathComponent("lst/summary.json")
    let written =
      try FileManager.default.attributesOfItem(atPath: runSummary.path)[
        .modificationDate] as? Date
    let again = try runGraft(args)
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertEqual(
      try FileManager.default.attributesOfItem(atPath: runSummary.path)[.modificationDate]
        as? Date, written)
  }

  /// `graft demo --protocol vtab` (the default) replays the protocol's choices on MNIST:
  /// each method's recorded lr and weight decay, trained on train + validation for its
  /// recipe's (converged) epochs, not the default protocol's 10; another task or a method
  /// without a recorded choice is a clear error.
  func testDemoReplaysTheProtocolsChoices() throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let small = ["--set", "data.train_samples=64", "--quiet"]
    let run = try runGraft(
      ["demo", "--backbone", tinyTimmFolder, "--methods", "linear", "--out", out.path] + small)
    XCTAssertEqual(run.status, 0, run.err)
    let yaml = try String(
      contentsOf: out.appendingPathComponent("linear/tune_config.yaml"), encoding: .utf8)
    var stored = TuneConfig(method: "linear")
    try stored.apply(yaml: yaml, source: "tune_config.yaml")
    XCTAssertEqual(stored.trainOn, .trainAndValidation)
    let recipeEpochs = try MethodRegistry.descriptor("linear").recipe.epochs
    XCTAssertEqual(stored.epochs, recipeEpochs)
    XCTAssertNotEqual(recipeEpochs, 10)
    // The report says that the validation curves show fit (the runs trained on validation).
    let page = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertTrue(page.contains("curves show fit, not generalisation"))
    // Each recorded choice is what the run used: setting it again changes nothing.
    for setting in try XCTUnwrap(DemoChoices.mnist["linear"]) {
      var again = stored
      try again.set(assignment: setting)
      XCTAssertEqual(try again.yaml(), try stored.yaml(), setting)
    }
    for (extra, message) in [
      (["--task", "digits"], "replays the choices made on graft1k/mnist"),
      (["--methods", "bitfit"], "no recorded choice for 'bitfit'"),
      (["--protocol", "nope"], "expected vtab, search or default"),
    ] {
      let r = try runGraft(["demo", "--backbone", tinyTimmFolder, "--out", out.path] + extra)
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.err.contains(message), r.err)
    }
  }

  /// Bad input on the command line: each a clear message and a failing status, no crash.
  /// `graft tune --dry-run --json` takes a Point-MAE folder as it takes a timm one: every
  /// method builds on it (HST refuses it by name), and a run that would train is refused until
  /// `graft tune` reads point-cloud data.
  func testTuneDryRunOnAPointBackbone() throws {
    let folder = repositoryRoot.appendingPathComponent(
      "Tests/GraftModelsTests/Fixtures/point_mae/model")
    let backbone = try TuneBackbone.load(folder.path)
    XCTAssertNil(backbone.preprocessing)
    XCTAssertEqual(backbone.architecture, "point_mae")
    XCTAssertEqual(
      backbone.weightsHash, try FNV1a64.file(folder.appendingPathComponent("model.safetensors")))
    let backboneParameters = backbone.model.namedParameters()
      .filter { !$0.name.hasPrefix("cls_head_finetune.") }.reduce(0) { $0 + $1.tensor.count }
    // Every method but those that need an image grid (HST; P2P draws its input as images).
    for method in MethodRegistry.all.filter({ !$0.requirements.contains(.imageGrid) }).map(\.name) {
      let r = try runGraft([
        "tune", "--backbone", folder.path, "--method", method, "--classes", "3", "--dry-run",
        "--json", "--quiet",
      ])
      XCTAssertEqual(r.status, 0, "\(method): \(r.err)")
      let report = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
      let trainable = report?["trainable_parameters"] as? Int ?? 0
      XCTAssertGreaterThan(trainable, 0, method)
      XCTAssertEqual(report?["backbone_parameters"] as? Int, backboneParameters, method)
      // The new head reads the 2·D = 64 pooled features.
      if method == "linear" { XCTAssertEqual(trainable, 64 * 3 + 3) }
    }
    let hst = try runGraft([
      "tune", "--backbone", folder.path, "--method", "hst", "--classes", "3", "--dry-run",
    ])
    XCTAssertNotEqual(hst.status, 0)
    XCTAssertTrue(hst.err.contains("image patch grid"), hst.err)
    let train = try runGraft([
      "tune", "--backbone", folder.path, "--method", "linear", "--data", "digits", "--out",
      temporaryFolder().path,
    ])
    XCTAssertNotEqual(train.status, 0)
    XCTAssertTrue(train.err.contains("point clouds"), train.err)
    XCTAssertFalse(train.err.contains("Fatal error"), train.err)
  }

  func testBadInputIsAClearError() throws {
    let cases: [([String], String)] = [
      (
        ["tune", "--backbone", tinyTimmFolder, "--method", "nope", "--data", "digits"],
        "unknown method 'nope'"
      ),
      (
        [
          "tune", "--backbone", tinyTimmFolder, "--method", "lora", "--data", "digits", "--out",
          "/tmp/x", "--set", "method.rnk=4",
        ],
        "method.rnk"
      ),
      (
        [
          "tune", "--backbone", "/nonexistent/model", "--method", "linear", "--classes", "3",
          "--dry-run",
        ], "/nonexistent/model"
      ),
      (["data", "prepare", "graft1k", "--task", "cifar"], "cifar"),
      (["pretrain", "--out", "/tmp/x", "--set", "train.epoch=3"], "train.epoch"),
      (["report", "/nonexistent/run"], "/nonexistent/run"),
      (
        ["demo", "--methods", "linear,bogus", "--out", "/nonexistent/demo"],
        "unknown method 'bogus'"
      ),
    ]
    for (args, expected) in cases {
      let r = try runGraft(args)
      XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
      XCTAssertTrue(r.err.contains(expected), "\(args): \(r.err)")
      XCTAssertFalse(r.err.contains("Fatal error"), r.err)
    }
  }

  /// `graft eval` of a run on data whose classes have other names says so (the scores compare
  /// classes by index), and says nothing on the run's own data.
  func testEvalNotesClassNamesThatAreNotTheRuns() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let png = try Data(
      contentsOf: repositoryRoot.appendingPathComponent(
        "Tests/GraftDataTests/Fixtures/images/png_rgb.png"))
    for (folder, classes) in [("ab", ["a", "b"]), ("xy", ["x", "y"])] {
      for split in ["train", "val", "test"] {
        for c in classes {
          let dir = root.appendingPathComponent("\(folder)/\(split)/\(c)")
          try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
          for i in 0..<2 { try png.write(to: dir.appendingPathComponent("\(i).png")) }
        }
      }
    }
    let run = root.appendingPathComponent("run").path
    let tune = try runGraft([
      "tune", "--backbone", tinyTimmFolder, "--method", "linear", "--data",
      root.appendingPathComponent("ab").path, "--set", "train.epochs=1", "--out", run, "--quiet",
    ])
    XCTAssertEqual(tune.status, 0, tune.err)
    let same = try runGraft(["eval", "--adapter", run, "--data", root.path + "/ab"])
    XCTAssertEqual(same.status, 0, same.err)
    XCTAssertFalse(same.err.contains("by name and order"), same.err)
    let other = try runGraft(["eval", "--adapter", run, "--data", root.path + "/xy"])
    XCTAssertEqual(other.status, 0, other.err)
    XCTAssertTrue(
      other.err.contains("the run's classes (a, b) are not this data's (x, y) by name and order"),
      other.err)
  }

  /// An empty path (`--out ""`, `--out=`: an unset shell variable), a numeric environment
  /// variable that is no number, and a `--resume` run with another `--out` are refused before
  /// anything is written (an empty --out used to put the run into the current folder).
  func testEmptyPathsBadEnvironmentAndAStrayOutAreRefused() throws {
    let scratch = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: scratch) }
    let before = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.path)
    let tune = ["tune", "--backbone", tinyTimmFolder, "--method", "linear", "--data", "digits"]
    let cases: [([String], [String: String], String)] = [
      (tune + ["--out", ""], [:], "--out was given an empty path"),
      (tune + ["--out="], [:], "--out was given an empty path"),
      (["import", "--peft", "", "--backbone", "vit-nano-fmnist", "--out", "x"], [:], "--peft"),
      (
        tune + ["--out", scratch.path], ["GRAFT_MEMORY_LIMIT_MIB": "abc"],
        "GRAFT_MEMORY_LIMIT_MIB=abc is not a whole number"
      ),
      (
        tune + ["--out", scratch.path], ["GRAFT_MEMORY_LIMIT_MIB": "0"], "GRAFT_MEMORY_LIMIT_MIB=0"
      ),
      (tune + ["--out", scratch.path], ["GRAFT_NUM_THREADS": "-2"], "GRAFT_NUM_THREADS=-2"),
      (
        ["tune", "--resume", scratch.path, "--out", scratch.appendingPathComponent("b").path],
        [:], "conflicts with --resume"
      ),
    ]
    for (arguments, environment, message) in cases {
      let r = try runGraft(arguments, environment: environment)
      XCTAssertNotEqual(r.status, 0, arguments.joined(separator: " "))
      XCTAssertTrue(r.err.contains(message), "\(arguments): \(r.err)")
    }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), [])
    XCTAssertEqual(
      Set(try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.path)), Set(before))
  }
}

/// Running out of memory ends `graft` with a message and exit status 1, not a trap: here a
/// memory limit (`GRAFT_MEMORY_LIMIT_MIB`) the first large tensor passes. Two decoding workers
/// keep other threads busy when it happens, and it happens several times: one run under a
/// loaded machine once ended with SIGSEGV after the message (the teardown of `exit` under
/// running threads).
final class OutOfMemoryTests: XCTestCase {
  func testOutOfMemoryIsAMessageNotACrash() throws {
    for attempt in 0..<4 {
      try outOfMemoryEndsWithAMessage(attempt)
    }
  }

  func outOfMemoryEndsWithAMessage(_ attempt: Int) throws {
    let out = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: out) }
    let process = Process()
    process.executableURL = try graftExecutable()
    process.arguments = [
      "tune", "--backbone", "vit-nano-fmnist", "--method", "full", "--data", "digits", "--set",
      "train.epochs=1", "--set", "train.batch_size=64", "--set", "train.workers=2", "--out",
      out.appendingPathComponent("run-\(attempt)").path, "--quiet",
    ]
    var environment = ProcessInfo.processInfo.environment
    environment["GRAFT_MEMORY_LIMIT_MIB"] = "1"
    process.environment = environment
    process.currentDirectoryURL = repositoryRoot
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationReason, .exit, text)
    XCTAssertEqual(process.terminationStatus, 1, text)
    XCTAssertTrue(text.contains("out of memory"), text)
    XCTAssertTrue(text.contains("GRAFT_MEMORY_LIMIT_MIB=1"), text)
    XCTAssertTrue(text.contains("train.batch_size"), text)
  }
}
