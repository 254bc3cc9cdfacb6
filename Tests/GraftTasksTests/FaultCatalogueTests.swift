import XCTest

@testable import GraftTasks

#if canImport(Glibc)
  import Glibc
#endif

/// Bad input of every kind a user (careless or hostile) can give `graft`, each run through the
/// executable: every one must end with a nonzero exit status and an error message that names
/// the problem, never with a crash, an abort or a hang. The table holds the faults of issue 14
/// and the ones that already gave named errors, so that none regresses.
final class FaultCatalogueTests: XCTestCase {
  /// One bad input: the arguments (`$ROOT` is the fixtures folder) and text the error must hold.
  struct Fault {
    var name: String
    var arguments: [String]
    var expected: [String]
  }

  /// What a run of the executable gave.
  struct Outcome: Sendable {
    var status: Int32
    var signalled: Bool
    var timedOut: Bool
    var err: String
  }

  /// Runs `graft` with `arguments`, killed after `timeout` seconds.
  static func run(_ arguments: [String], timeout: TimeInterval = 20) throws -> Outcome {
    let process = Process()
    process.executableURL = try graftExecutable()
    process.arguments = arguments
    process.currentDirectoryURL = repositoryRoot
    let err = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = err
    try process.run()
    let deadline = DispatchWorkItem { process.terminate() }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: deadline)
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    deadline.cancel()
    let signalled = process.terminationReason == .uncaughtSignal
    return Outcome(
      status: process.terminationStatus, signalled: signalled,
      timedOut: signalled && process.terminationStatus == SIGTERM,
      err: String(decoding: e, as: UTF8.self))
  }

  // MARK: Fixtures

  /// A copy of the tiny timm model with `change` applied to `config.json`.
  func model(_ root: URL, _ name: String, _ change: (inout [String: Any]) -> Void) throws -> String
  {
    let folder = root.appendingPathComponent(name)
    try FileManager.default.copyItem(at: URL(fileURLWithPath: tinyTimmFolder), to: folder)
    let url = folder.appendingPathComponent("config.json")
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    change(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: url)
    return folder.path
  }

  /// `model_args.<key> = value`.
  func arg(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
    { json in
      var args = json["model_args"] as! [String: Any]
      args[key] = value
      json["model_args"] = args
    }
  }

  /// Writes `bytes` at `root/name` (folders created) and returns the path.
  @discardableResult
  func file(_ root: URL, _ name: String, _ bytes: [UInt8]) throws -> String {
    let url = root.appendingPathComponent(name)
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
    return url.path
  }

  func file(_ root: URL, _ name: String, _ text: String) throws -> String {
    try file(root, name, Array(text.utf8))
  }

  /// An image-folder task whose splits have the classes given.
  func imageFolder(_ root: URL, _ name: String, _ splits: [String: [String]]) throws -> String {
    let png = try Data(contentsOf: imageFixture("png_rgb.png"))
    for (split, classes) in splits {
      for c in classes {
        for i in 0..<2 { try file(root, "\(name)/\(split)/\(c)/\(i).png", [UInt8](png)) }
      }
    }
    return root.appendingPathComponent(name).path
  }

  /// A VTAB-1k list folder whose test list has `testLine`.
  func vtab(_ root: URL, _ name: String, testLine: String) throws -> String {
    let png = try Data(contentsOf: imageFixture("png_rgb.png"))
    try file(root, "\(name)/a.png", [UInt8](png))
    _ = try file(root, "\(name)/train800.txt", "a.png 0\na.png 1\n")
    _ = try file(root, "\(name)/val200.txt", "a.png 0\n")
    _ = try file(root, "\(name)/test.txt", testLine + "\n")
    return root.appendingPathComponent(name).path
  }

  func imageFixture(_ name: String) -> URL {
    repositoryRoot.appendingPathComponent("Tests/GraftDataTests/Fixtures/images/\(name)")
  }

  /// A run folder holding only `adapter_config.json` with `change` applied to a valid one.
  func adapterFolder(_ root: URL, _ name: String, _ change: (inout [String: Any]) -> Void) throws
    -> String
  {
    var json: [String: Any] = [
      "method": "linear", "format_version": 1, "graft_version": "0",
      "base_model_name_or_path": tinyTimmFolder, "base_model_architecture": "x",
      "base_model_hash": "fnv1a64:0000000000000000", "num_classes": 2,
      "class_names": ["a", "b"], "hyperparameters": [String: String](), "eval_batch_size": 8,
    ]
    change(&json)
    let data = try JSONSerialization.data(withJSONObject: json)
    return try (file(root, "\(name)/adapter_config.json", [UInt8](data)) as NSString)
      .deletingLastPathComponent
  }

  /// A lock held while the catalogue runs.
  var heldLock: RunFolder.Lock?

  /// The catalogue, its fixtures written under `root`.
  func catalogue(_ root: URL) throws -> [Fault] {
    let r = root.path
    let out = r + "/out.safetensors"
    let tinyHash = try TuneBackbone.load(tinyTimmFolder).weightsHash
    let png = imageFixture("png_rgb.png").path
    let m = tinyTimmFolder
    func embed(_ model: String, _ inputs: [String], output: String = out, _ extra: [String] = [])
      -> [String]
    {
      ["embed", "--model", model, "-o", output, "--quiet"] + extra + inputs
    }
    func tune(_ extra: [String], data: String = "digits") -> [String] {
      ["tune", "--backbone", m, "--method", "lora", "--data", data, "--out", r + "/run", "--quiet"]
        + extra
    }
    // Fixtures.
    let weights = try [UInt8](
      Data(contentsOf: URL(fileURLWithPath: m).appendingPathComponent("model.safetensors")))
    let truncated = try model(root, "m-truncated") { _ in }
    try file(root, "m-truncated/model.safetensors", Array(weights.prefix(200)))
    let hugeHeader = try model(root, "m-huge-header") { _ in }
    try file(root, "m-huge-header/model.safetensors", [UInt8](repeating: 0xFF, count: 8) + weights)
    let emptyWeights = try model(root, "m-empty") { _ in }
    try file(root, "m-empty/model.safetensors", [UInt8]())
    let noWeights = try model(root, "m-none") { _ in }
    try FileManager.default.removeItem(atPath: noWeights + "/model.safetensors")
    let notJSON = try model(root, "m-notjson") { _ in }
    _ = try file(root, "m-notjson/config.json", "{ architecture: vit")
    let npz = try [UInt8](
      Data(
        contentsOf: repositoryRoot.appendingPathComponent(
          "Tests/GraftModelsTests/Fixtures/npz/google_vit.npz")))
    let fifo = r + "/fifo"
    mkfifo(fifo, 0o644)
    let link = r + "/link.safetensors"
    try FileManager.default.createSymbolicLink(
      atPath: link, withDestinationPath: try file(root, "target.safetensors", "kept"))
    var bigPNG = try [UInt8](Data(contentsOf: imageFixture("png_rgb.png")))
    bigPNG.replaceSubrange(16..<24, with: [0, 0, 0x27, 0x10, 0, 0, 0x23, 0x28])  // 10000 × 9000
    let crc = crc32(bigPNG[12..<29])
    bigPNG.replaceSubrange(
      29..<33, with: (0..<4).map { UInt8(truncatingIfNeeded: crc >> (24 - 8 * $0)) })
    let aFile = try file(root, "a-file", "x")
    let notARun = root.appendingPathComponent("not-a-run").path
    try FileManager.default.createDirectory(atPath: notARun, withIntermediateDirectories: true)
    let badSummary = root.appendingPathComponent("bad-summary").path
    // A run folder this process holds, as a `graft tune` still writing it would.
    let locked = root.appendingPathComponent("locked")
    heldLock = try RunFolder.Lock(locked)
    _ = try file(root, "bad-summary/summary.json", "{\"method\": ")

    return [
      // Backbones.
      Fault(
        name: "config.json depth 10⁹",
        arguments: embed(try model(root, "m-depth9", arg("depth", 1_000_000_000)), [png]),
        expected: ["config.json", "depth"]),
      Fault(
        name: "config.json depth 10⁵",
        arguments: embed(try model(root, "m-depth5", arg("depth", 100_000)), [png]),
        expected: ["config.json", "depth"]),
      Fault(
        name: "config.json embed_dim 2³⁰",
        arguments: embed(try model(root, "m-width", arg("embed_dim", 1 << 30)), [png]),
        expected: ["config.json", "embed_dim"]),
      Fault(
        name: "config.json num_classes 2³¹−1",
        arguments: embed(
          try model(root, "m-classes", arg("num_classes", 2_147_483_647)), [png]),
        expected: ["config.json", "num_classes"]),
      Fault(
        name: "config.json unknown architecture",
        arguments: embed(try model(root, "m-arch") { $0["architecture"] = "resnet50" }, [png]),
        expected: ["config.json", "unknown timm architecture"]),
      Fault(
        name: "config.json not JSON", arguments: embed(notJSON, [png]),
        expected: ["config.json", "not valid JSON"]),
      Fault(
        name: "model.safetensors missing", arguments: embed(noWeights, [png]),
        expected: ["model.safetensors", "no such file"]),
      Fault(
        name: "model.safetensors truncated", arguments: embed(truncated, [png]),
        expected: ["model.safetensors"]),
      Fault(
        name: "model.safetensors header length 2⁶⁴−1", arguments: embed(hugeHeader, [png]),
        expected: ["model.safetensors"]),
      Fault(
        name: "model.safetensors empty", arguments: embed(emptyWeights, [png]),
        expected: ["model.safetensors"]),
      Fault(
        name: ".npz that is not a zip",
        arguments: embed(
          try file(root, "x.npz", "hello"), [png], ["--arch", "vit_tiny_patch16_224"]),
        expected: ["x.npz", "not a zip"]),
      Fault(
        name: ".npz without --arch",
        arguments: embed(try file(root, "y.npz", npz), [png]), expected: ["--arch"]),
      Fault(
        name: ".npz cut short (no central directory)",
        arguments: embed(
          try file(root, "short.npz", Array(npz.prefix(npz.count - 60))), [png],
          ["--arch", "vit_small_patch8_224"]),
        expected: ["short.npz"]),
      // Images.
      Fault(
        name: "corrupt PNG", arguments: embed(m, [imageFixture("corrupt.png").path]),
        expected: ["corrupt.png", "corrupt image"]),
      Fault(
        name: "truncated JPEG", arguments: embed(m, [imageFixture("truncated.jpg").path]),
        expected: ["truncated.jpg", "truncated"]),
      Fault(
        name: "GIF", arguments: embed(m, [imageFixture("tiny.gif").path]),
        expected: ["tiny.gif", "GIF"]),
      Fault(
        name: "text file as an image", arguments: embed(m, [imageFixture("not_an_image.txt").path]),
        expected: ["not_an_image.txt", "unknown image format"]),
      Fault(
        name: "empty image file", arguments: embed(m, [try file(root, "empty.png", "")]),
        expected: ["empty.png", "empty"]),
      Fault(
        name: "Netpbm header asking for 65536² pixels",
        arguments: embed(m, [try file(root, "bomb.ppm", Array("P6 65536 65536 255\n".utf8) + [1])]),
        expected: ["bomb.ppm", "pixels"]),
      Fault(
        name: "PNG header of 10000 × 9000 pixels",
        arguments: embed(m, [try file(root, "big.png", bigPNG)]),
        expected: ["big.png", "--max-pixels"]),
      Fault(
        name: "missing image", arguments: embed(m, [r + "/nope.png"]),
        expected: ["nope.png", "no such file"]),
      Fault(
        name: "--max-pixels 0", arguments: embed(m, [png], ["--max-pixels", "0"]),
        expected: ["--max-pixels"]),
      // Outputs.
      Fault(
        name: "-o a FIFO", arguments: embed(m, [png], output: fifo), expected: [fifo, "FIFO"]),
      Fault(
        name: "-o a symbolic link", arguments: embed(m, [png], output: link),
        expected: [link, "symbolic link"]),
      Fault(
        name: "-o a folder", arguments: embed(m, [png], output: notARun),
        expected: [notARun, "folder"]),
      Fault(
        name: "-o in a folder that cannot exist",
        arguments: embed(m, [png], output: "/proc/graft-no/out.safetensors"),
        expected: ["/proc/graft-no/out.safetensors"]),
      Fault(
        name: "tune --out a file",
        arguments: [
          "tune", "--backbone", m, "--method", "linear", "--data", "digits", "--out",
          aFile, "--set", "train.epochs=1", "--quiet",
        ],
        expected: [aFile, "is a file"]),
      Fault(
        name: "tune --out that cannot be created",
        arguments: [
          "tune", "--backbone", m, "--method", "linear", "--data", "digits", "--out",
          "/proc/graft-no/run", "--set", "train.epochs=1", "--quiet",
        ],
        expected: ["/proc/graft-no/run", "cannot create"]),
      Fault(
        name: "tune --out a folder another process writes",
        arguments: [
          "tune", "--backbone", m, "--method", "linear", "--data", "digits", "--out",
          locked.path, "--set", "train.epochs=1", "--quiet",
        ],
        expected: [locked.path, "in use: process \(getpid())"]),
      // Settings.
      Fault(
        name: "unknown method",
        arguments: ["tune", "--backbone", m, "--method", "nope", "--data", "digits"],
        expected: ["unknown method 'nope'"]),
      Fault(
        name: "unknown method key", arguments: tune(["--set", "method.rnk=4"]),
        expected: ["method.rnk"]),
      Fault(
        name: "LoRA rank 10⁸", arguments: tune(["--set", "method.rank=100000000"]),
        expected: ["method.rank"]),
      Fault(
        name: "zero epochs", arguments: tune(["--set", "train.epochs=0"]),
        expected: ["train.epochs"]),
      Fault(
        name: "unknown NaN policy", arguments: tune(["--set", "train.nan_policy=maybe"]),
        expected: ["train.nan_policy"]),
      Fault(name: "lr NaN", arguments: tune(["--set", "optim.lr=nan"]), expected: ["optim.lr"]),
      Fault(
        name: "--set without =", arguments: tune(["--set", "optim.lr"]),
        expected: ["key=value"]),
      Fault(
        name: "YAML key given twice",
        arguments: tune(["--config", try file(root, "dup.yaml", "seed: 1\nseed: 2\n")]),
        expected: ["dup.yaml", "twice"]),
      Fault(
        name: "YAML not valid",
        arguments: tune(["--config", try file(root, "bad.yaml", "optim: [lr: 1\n")]),
        expected: ["bad.yaml", "not valid YAML"]),
      Fault(
        name: "YAML unknown key",
        arguments: tune(["--config", try file(root, "unknown.yaml", "optim: {lrr: 1}\n")]),
        expected: ["unknown.yaml", "optim.lrr"]),
      Fault(
        name: "YAML file missing", arguments: tune(["--config", r + "/none.yaml"]),
        expected: ["none.yaml", "no such file"]),
      // Data.
      Fault(
        name: "image-folder splits with other classes",
        arguments: tune(
          [],
          data: try imageFolder(
            root, "folders", ["train": ["a", "b"], "val": ["a", "b"], "test": ["b", "z"]])),
        expected: ["'z'"]),
      Fault(
        name: "VTAB label 2147483647",
        arguments: tune([], data: try vtab(root, "vtab-huge", testLine: "a.png 2147483647")),
        expected: ["test.txt", "2147483647"]),
      Fault(
        name: "VTAB label 1000000",
        arguments: tune([], data: try vtab(root, "vtab-big", testLine: "a.png 1000000")),
        expected: ["test.txt", "1000000"]),
      Fault(
        name: "VTAB line without a label",
        arguments: tune([], data: try vtab(root, "vtab-nolabel", testLine: "a.png")),
        expected: ["test.txt", "relative/path label"]),
      Fault(
        name: "missing dataset", arguments: tune([], data: r + "/no-data"),
        expected: ["no-data", "no such file"]),
      Fault(
        name: "digits CSV with a bad label",
        arguments: tune(
          [], data: try file(root, "d.csv", (0..<64).map { _ in "0," }.joined() + "-1\n")),
        expected: ["d.csv", "label"]),
      // Run folders.
      Fault(
        name: "--resume a folder that holds no run",
        arguments: ["tune", "--resume", notARun], expected: [notARun, "not a run folder"]),
      Fault(
        name: "eval a folder that holds no run",
        arguments: ["eval", "--adapter", notARun, "--data", "digits"],
        expected: [notARun, "adapter_config.json"]),
      Fault(
        name: "adapter_config.json eval_batch_size 0",
        arguments: [
          "eval", "--adapter",
          try adapterFolder(root, "a-batch") {
            $0["eval_batch_size"] = 0
          }, "--data", "digits",
        ],
        expected: ["adapter_config.json", "eval_batch_size"]),
      Fault(
        name: "adapter_config.json num_classes 2³¹−1",
        arguments: [
          "eval", "--adapter",
          try adapterFolder(root, "a-classes") {
            $0["num_classes"] = 2_147_483_647
          }, "--data", "digits",
        ],
        expected: ["adapter_config.json", "num_classes"]),
      Fault(
        name: "adapter_config.json from a newer Graft",
        arguments: [
          "eval", "--adapter",
          try adapterFolder(root, "a-format") {
            $0["format_version"] = 99
          }, "--data", "digits",
        ],
        expected: ["adapter_config.json", "format_version"]),
      Fault(
        name: "adapter_config.json hyperparameters the method does not take",
        arguments: [
          "eval", "--adapter",
          try adapterFolder(root, "a-options") {
            $0["base_model_hash"] = tinyHash
            $0["hyperparameters"] = ["alpha": "2"]
          }, "--data", "digits",
        ],
        expected: ["adapter_config.json: its hyperparameters", "no option 'alpha'"]),
      Fault(
        name: "adapter_config.json of another backbone",
        arguments: [
          "eval", "--adapter", try adapterFolder(root, "a-hash") { _ in }, "--data",
          "digits",
        ],
        expected: ["refusing a different backbone"]),
      Fault(
        name: "report of a damaged summary.json", arguments: ["report", badSummary],
        expected: ["summary.json"]),
      Fault(
        name: "pretrain --resume a folder that holds no run",
        arguments: ["pretrain", "--out", notARun, "--resume"],
        expected: [notARun, "nothing to resume"]),
      Fault(
        name: "pretrain unknown key",
        arguments: [
          "pretrain", "--out", r + "/p", "--set",
          "train.epoch=3",
        ], expected: ["train.epoch"]),
      // Point clouds.
      Fault(
        name: "PLY with a negative count",
        arguments: [
          "points", "info",
          try file(
            root, "bad.ply", "ply\nformat ascii 1.0\nelement vertex -5\nend_header\n"),
        ],
        expected: ["bad.ply", "count"]),
      Fault(
        name: "PCD promising 10¹² points",
        arguments: [
          "points", "info",
          try file(
            root, "big.pcd",
            "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1000000000000\n"
              + "HEIGHT 1\nPOINTS 1000000000000\nDATA binary\n"),
        ],
        expected: ["big.pcd", "POINTS"]),
      Fault(
        name: "OFF with negative counts",
        arguments: ["points", "info", try file(root, "neg.off", "OFF\n-3 -1 0\n")],
        expected: ["neg.off", "count"]),
    ]
  }

  /// CRC-32 (IEEE, reflected), as PNG chunks use.
  func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  func testEveryBadInputIsANamedErrorAndANonzeroExit() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let faults = try catalogue(root)
    defer { heldLock?.release() }
    XCTAssertGreaterThanOrEqual(faults.count, 40)
    // Two at a time: the processes spend most of their time starting.
    final class Results: @unchecked Sendable {
      let lock = NSLock()
      var outcomes: [Outcome?]
      init(_ n: Int) { outcomes = Array(repeating: nil, count: n) }
    }
    let results = Results(faults.count)
    let arguments = faults.map(\.arguments)
    DispatchQueue.concurrentPerform(iterations: 2) { lane in
      for i in stride(from: lane, to: arguments.count, by: 2) {
        let outcome = try? Self.run(arguments[i])
        results.lock.withLock { results.outcomes[i] = outcome }
      }
    }
    let verbose = ProcessInfo.processInfo.environment["GRAFT_FAULTS_VERBOSE"] != nil
    for (fault, outcome) in zip(faults, results.outcomes) {
      guard let o = outcome else {
        XCTFail("\(fault.name): could not run graft")
        continue
      }
      if verbose {
        print("\(fault.name): \(o.status)\n  \(o.err.split(separator: "\n").first ?? "")")
      }
      XCTAssertFalse(o.timedOut, "\(fault.name): hung")
      XCTAssertFalse(o.signalled, "\(fault.name): killed by signal \(o.status)\n\(o.err)")
      XCTAssertNotEqual(o.status, 0, "\(fault.name): exit status 0")
      XCTAssertFalse(o.err.contains("Fatal error"), "\(fault.name): \(o.err)")
      for text in fault.expected {
        XCTAssertTrue(o.err.contains(text), "\(fault.name): no '\(text)' in: \(o.err)")
      }
    }
    // Refusing left nothing behind where nothing was asked for.
    XCTAssertFalse(
      FileManager.default.fileExists(
        atPath: root.appendingPathComponent("not-a-run/checkpoint").path))
    XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("run").path))
  }
}
