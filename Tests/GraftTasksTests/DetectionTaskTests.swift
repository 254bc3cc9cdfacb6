import GraftDetection
import XCTest

@testable import GraftTasks

/// Writes a detection folder as `graft data prepare canvas-det` lays it out (`images/<split>/`,
/// `annotations/<split>.json`): 32 × 32 dark images, each with one or two bright squares of side
/// 8–19 (category 1, "square"), `counts` images per split.
func writeSquares(_ root: URL, counts: [Int] = [24, 8, 8], seed: UInt64 = 5) throws {
  var g = RandomGenerator(seed: seed)
  let n = 32
  for (split, count) in zip(["train", "val", "test"], counts) {
    let folder = root.appendingPathComponent("images/\(split)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    var images: [AnnotatedImage] = []
    var nextID = 1
    for i in 0..<count {
      var pixels = [UInt8](repeating: 20, count: n * n * 3)
      var annotations: [BoxAnnotation] = []
      for _ in 0..<(1 + g.nextInt(below: 2)) {
        let side = 8 + g.nextInt(below: 12)
        let (x0, y0) = (g.nextInt(below: n - side + 1), g.nextInt(below: n - side + 1))
        for y in y0..<(y0 + side) {
          for x in x0..<(x0 + side) {
            for c in 0..<3 { pixels[(y * n + x) * 3 + c] = 230 }
          }
        }
        annotations.append(
          BoxAnnotation(
            id: nextID, categoryID: 1,
            box: BoundingBox(
              x: Double(x0), y: Double(y0), width: Double(side), height: Double(side))
          ))
        nextID += 1
      }
      let name = String(format: "%03d.png", i)
      try ImageCodec.write(
        RGBImage(width: n, height: n, pixels: pixels), to: folder.appendingPathComponent(name))
      images.append(
        AnnotatedImage(
          id: i + 1, fileName: "\(split)/\(name)", width: n, height: n, annotations: annotations))
    }
    let annotations = root.appendingPathComponent("annotations")
    try FileManager.default.createDirectory(at: annotations, withIntermediateDirectories: true)
    try COCOWriter.write(
      DetectionDataset(categories: [DetectionCategory(id: 1, name: "square")], images: images),
      to: annotations.appendingPathComponent("\(split).json"))
  }
}

/// A tiny random ViT for 32 × 32 detection images: 4 × 4 patches, D = 32, one block (blocks
/// redrawn at unit gain as `tinyBackbone`).
func tinyDetectionBackbone(seed: UInt64 = 3) -> TuneBackbone {
  let config = ViTConfig(
    imgSize: 32, patchSize: 4, embedDim: 32, depth: 1, numHeads: 2, numClasses: 0)
  var rng = RandomGenerator(seed: seed)
  let model = try! VisionTransformer(config: config, generator: &rng)
  for (name, t) in model.namedParameters() where name.hasPrefix("blocks.") && t.rank == 2 {
    t.assign(Tensor.randn(t.shape, std: 1 / Float(t.shape[1]).squareRoot(), generator: &rng))
  }
  return TuneBackbone(inMemory: model, name: "tiny-det-\(seed)")
}

/// Settings of the short detection runs: 32-pixel images, a narrow neck and one tower layer.
func detectionConfig(_ method: String, epochs: Int = 8, extra: [String] = []) throws -> TuneConfig {
  var config = try TuneConfig.preset(for: method)
  let settings = [
    "train.epochs=\(epochs)", "train.batch_size=8", "optim.name=adamw", "optim.lr=0.003",
    "optim.warmup_epochs=1", "det.image_size=32", "det.neck=16", "det.convs=1",
    "train.eval_batch_size=16",
  ]
  for s in settings + extra { try config.set(assignment: s) }
  return config
}

final class DetectionTaskTests: XCTestCase {
  /// The frozen backbone with a trained pyramid and head finds the squares: test AP50 well above
  /// the same detector's before training; the run folder holds the adapter (no backbone tensor),
  /// one metrics line per epoch and the twelve COCO numbers.
  func testLinearPyramidLearnsToLocalise() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    try writeSquares(root.appendingPathComponent("data"))
    let data = try DetectionTuneData.load(root.appendingPathComponent("data").path)
    XCTAssertEqual(data.train.dataset.images.count, 24)
    let config = try detectionConfig("linear", epochs: 8)
    let untrained = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: config, categories: data.categories)
    let before = try untrained.evaluate(
      DetectionImages(data.test, categories: data.categories, side: 32), split: data.test
    ).scores
    let trainer = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: config, categories: data.categories)
    let folder = root.appendingPathComponent("run")
    let summary = try XCTUnwrap(trainer.run(data: data, folder: folder, dataReference: "squares"))
    XCTAssertGreaterThan(
      summary.test.stats[1], before.stats[1] + 0.3,
      "AP50 \(before.stats[1]) untrained, \(summary.test.stats[1]) trained")
    XCTAssertGreaterThan(summary.test.stats[1], 0.4)
    // The adapter: only the pyramid and the head (the linear probe's classifier is not reached).
    let names = try SafetensorsFile(
      contentsOf: folder.appendingPathComponent("adapter_model.safetensors")
    ).tensors().keys
    XCTAssertTrue(names.allSatisfy { $0.hasPrefix("det.") }, "\(names.sorted())")
    XCTAssertTrue(names.contains { $0.hasPrefix("det.features.pyramid.") })
    XCTAssertTrue(names.contains { $0.hasPrefix("det.head.") })
    let lines = try String(
      contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8
    )
    .split(separator: "\n")
    XCTAssertEqual(lines.count, 8)
    XCTAssertTrue(lines[0].contains("\"val_ap50\""))
    let read = try DetectionSummary.read(from: folder.appendingPathComponent("summary.json"))
    for (x, y) in zip(read.test.stats, summary.test.stats) { XCTAssertEqual(x, y, accuracy: 1e-9) }
    XCTAssertEqual(read.test.stats.count, 12)
    let adapter = try AdapterCheckpoint.readConfig(folder)
    XCTAssertEqual(adapter.task, "detection")
    XCTAssertEqual(adapter.categoryIDs, [1])
    // A classification loader refuses the folder by name.
    XCTAssertThrowsError(try AdapterCheckpoint.load(folder, backbone: tinyDetectionBackbone())) {
      XCTAssertTrue("\($0)".contains("detection run"), "\($0)")
    }
    // The test results are COCO's format, readable against the test ground truth.
    let results = try COCOResults.load(
      path: folder.appendingPathComponent("test_detections.json").path,
      groundTruth: data.test.dataset)
    // (Foundation writes JSON numbers to 15 significant digits: equal up to rounding.)
    let rescored = COCOBoxEvaluation.evaluate(groundTruth: data.test.dataset, detections: results)
    for (x, y) in zip(rescored.stats, summary.test.stats) { XCTAssertEqual(x, y, accuracy: 1e-9) }
  }

  /// Interrupted after one epoch and resumed: the same adapter and numbers as one uninterrupted
  /// run (LoRA, whose tensors live inside the backbone's blocks).
  func testResumeEqualsUninterrupted() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    try writeSquares(root.appendingPathComponent("data"), counts: [12, 4, 4])
    let data = try DetectionTuneData.load(root.appendingPathComponent("data").path)
    let config = try detectionConfig("lora", epochs: 3)
    let whole = root.appendingPathComponent("whole")
    let a = try XCTUnwrap(
      DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: config, categories: data.categories
      ).run(data: data, folder: whole))
    let parted = root.appendingPathComponent("parted")
    XCTAssertNil(
      try DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: config, categories: data.categories
      ).run(data: data, folder: parted, stopAfter: 1))
    let b = try XCTUnwrap(
      DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: config, categories: data.categories
      ).run(data: data, folder: parted, resume: true))
    XCTAssertEqual(a.test, b.test)
    XCTAssertEqual(a.bestEpoch, b.bestEpoch)
    let ta = try SafetensorsFile(
      contentsOf: whole.appendingPathComponent("adapter_model.safetensors")
    )
    .tensors()
    let tb = try SafetensorsFile(
      contentsOf: parted.appendingPathComponent("adapter_model.safetensors")
    ).tensors()
    XCTAssertEqual(Set(ta.keys), Set(tb.keys))
    XCTAssertTrue(ta.keys.contains { $0.hasPrefix("lora.") })
    for (k, v) in ta { XCTAssertEqual(v.scalars, tb[k]?.scalars, k) }
    XCTAssertEqual(
      try String(contentsOf: whole.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        .split(separator: "\n").count, 3)
    // A new run in a folder that holds one is refused; so is a resume with other settings.
    XCTAssertThrowsError(
      try DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: config, categories: data.categories
      ).run(data: data, folder: whole))
    XCTAssertThrowsError(
      try DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: detectionConfig("lora", epochs: 4),
        categories: data.categories
      ).run(data: data, folder: parted, resume: true)
    ) { XCTAssertTrue("\($0)".contains("train.epochs"), "\($0)") }
  }

  /// `--init-from`: a classification run gives the detector its method tensors (not its
  /// classification head), a detection run gives every tensor; another method, backbone or set
  /// of categories is refused naming the folder.
  func testInitFromAClassifierOrADetectionRun() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    try writeSquares(root.appendingPathComponent("data"), counts: [8, 4, 4])
    let data = try DetectionTuneData.load(root.appendingPathComponent("data").path)
    let config = try detectionConfig("lora", epochs: 1)
    // A LoRA classifier on the same backbone, its tensors away from their start.
    let backbone = tinyDetectionBackbone()
    var g = RandomGenerator(seed: 21)
    let classifier = try MethodRegistry.make(
      "lora", backbone: backbone.model, classes: 3, options: config.methodOptions, generator: &g)
    withNoGrad {
      for (_, t) in classifier.trainableTensors() {
        t.assign(t + Tensor.randn(t.shape, std: 0.1, generator: &g))
      }
    }
    let run = root.appendingPathComponent("classifier")
    try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
    try AdapterCheckpoint.writeConfig(
      AdapterConfig(
        method: "lora", formatVersion: AdapterConfig.currentFormat,
        graftVersion: GraftVersion.string, baseModel: backbone.reference,
        baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
        baseModelConfigHash: backbone.configHash, numClasses: 3, classNames: ["a", "b", "c"],
        hyperparameters: classifier.options, preprocessing: backbone.preprocessing,
        pointInput: nil, evalBatchSize: 4), to: run)
    try AdapterCheckpoint.writeWeights(classifier, to: run)
    let saved = try SafetensorsFile(
      contentsOf: run.appendingPathComponent(AdapterCheckpoint.weightsFile)
    ).tensors()

    let detector = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: config, categories: data.categories)
    let note = try detector.initialise(from: run)
    XCTAssertTrue(note.contains("left out"), note)
    let loraTensors = detector.model.method.trainableTensors().filter { $0.name.hasPrefix("lora.") }
    XCTAssertFalse(loraTensors.isEmpty)
    for (name, t) in loraTensors { XCTAssertEqual(t.scalars, saved[name]?.scalars, name) }

    // A detection run, continued in a new run: every tensor.
    let first = root.appendingPathComponent("first")
    _ = try detector.run(data: data, folder: first)
    let next = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: config, categories: data.categories)
    try next.initialise(from: first)
    let best = try SafetensorsFile(
      contentsOf: first.appendingPathComponent(AdapterCheckpoint.weightsFile)
    ).tensors()
    let state = next.model.state()
    XCTAssertEqual(Set(state.keys), Set(best.keys))
    for (name, t) in state { XCTAssertEqual(t.scalars, best[name]?.scalars, name) }

    // Refusals: another method, other categories, another backbone.
    let bitfit = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: detectionConfig("bitfit", epochs: 1),
      categories: data.categories)
    XCTAssertThrowsError(try bitfit.initialise(from: run)) {
      XCTAssertTrue("\($0)".contains("holds method 'lora'"), "\($0)")
    }
    let circles = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: config,
      categories: [DetectionCategory(id: 7, name: "circle")])
    XCTAssertThrowsError(try circles.initialise(from: first)) {
      XCTAssertTrue("\($0)".contains("categories"), "\($0)")
    }
    let other = try DetectionTrainer(
      backbone: tinyDetectionBackbone(seed: 4), config: config, categories: data.categories)
    XCTAssertThrowsError(try other.initialise(from: run)) {
      XCTAssertTrue("\($0)".contains("backbone weights"), "\($0)")
    }
  }

  /// HST detects on its own side maps through 1×1 projections; its classifier and pooled norm
  /// are not trainable for detection. Every other ViT method builds a pyramid.
  func testFeatureSourcesPerMethod() throws {
    let cats = [DetectionCategory(id: 7, name: "thing")]
    let hst = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: detectionConfig("hst"), categories: cats)
    let names = hst.model.trainableTensors.map(\.name)
    XCTAssertTrue(names.contains("det.features.proj.0.weight"), "\(names)")
    XCTAssertTrue(names.contains { $0.hasPrefix("hst.stages.") })
    XCTAssertFalse(names.contains { $0.hasPrefix("hst.head.") })
    XCTAssertEqual(hst.model.detector.source.strides, [4, 8, 16, 32])
    // det.lr sets the pyramid's and head's rate; the method's tensors keep optim.lr.
    let split = try DetectionTrainer(
      backbone: tinyDetectionBackbone(), config: detectionConfig("hst", extra: ["det.lr=0.05"]),
      categories: cats
    ).makeOptimizer()
    for group in split.groups {
      let detector = group.parameters.allSatisfy { $0.name.hasPrefix("det.") }
      XCTAssertTrue(detector || group.parameters.allSatisfy { $0.name.hasPrefix("hst.") })
      XCTAssertEqual(group.lr, detector ? 0.05 : 0.003, group.name)
    }
    for method in ["full", "bitfit", "ln-tune", "vpt-deep", "adapter", "lst", "unipt", "mp+"] {
      let t = try DetectionTrainer(
        backbone: tinyDetectionBackbone(), config: detectionConfig(method), categories: cats)
      XCTAssertEqual(t.model.detector.source.strides, [4, 8, 16], method)
      let own = t.model.trainableTensors.filter { !$0.name.hasPrefix("det.") }
      XCTAssertFalse(own.isEmpty, "\(method): none of its tensors reaches the detector")
      XCTAssertFalse(own.contains { $0.name.contains(".head.") }, "\(method): \(own.map(\.name))")
      XCTAssertEqual(t.model.detect(Tensor.zeros([1, 3, 32, 32])).count, 1)
    }
  }

  /// Named errors: data that is not there or not a detection set, and methods that cannot
  /// detect.
  func testNamedErrors() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    XCTAssertThrowsError(try DetectionTuneData.load(root.appendingPathComponent("nope").path)) {
      XCTAssertTrue("\($0)".contains("nope: no such file or folder"), "\($0)")
    }
    XCTAssertThrowsError(try DetectionTuneData.load(root.path)) {
      XCTAssertTrue("\($0)".contains("no annotations/train.json"), "\($0)")
    }
    try writeSquares(root.appendingPathComponent("data"), counts: [2, 1, 1])
    try FileManager.default.removeItem(
      at: root.appendingPathComponent("data/images/val/000.png"))
    XCTAssertThrowsError(try DetectionTuneData.load(root.appendingPathComponent("data").path)) {
      XCTAssertTrue("\($0)".contains("val/000.png"), "\($0)")
    }
    let cats = [DetectionCategory(id: 1, name: "square")]
    for method in ["p2p", "mp"] {
      XCTAssertThrowsError(
        try DetectionTrainer(
          backbone: tinyDetectionBackbone(), config: detectionConfig(method), categories: cats)
      ) { XCTAssertTrue("\($0)".contains("classification-only"), "\(method): \($0)") }
    }
    XCTAssertThrowsError(
      try DetectionTrainer(
        backbone: tinyDetectionBackbone(),
        config: detectionConfig("linear", extra: ["det.image_size=36"]), categories: cats)
    ) { XCTAssertTrue("\($0)".contains("det.image_size 36"), "\($0)") }
  }

  /// The command line names bad tasks, missing data and methods that cannot detect.
  func testCommandLineErrors() throws {
    let task = try runGraft([
      "tune", "--task", "segmentation", "--backbone", tinyTimmFolder, "--method", "lora",
    ])
    XCTAssertNotEqual(task.status, 0)
    XCTAssertTrue(task.err.contains("known tasks are classification and detection"), task.err)
    let data = try runGraft([
      "tune", "--task", "detection", "--backbone", tinyTimmFolder, "--method", "lora", "--data",
      "/nonexistent/dets", "--out", "/nonexistent/run",
    ])
    XCTAssertNotEqual(data.status, 0)
    XCTAssertTrue(data.err.contains("/nonexistent/dets: no such file or folder"), data.err)
  }

  /// `graft tune --task detection` then `graft detect` on the test images: the same detections
  /// as the run's own test results (ids 1… in argument order), and with --draw one enlarged PNG
  /// per image with boxes in the class colour; `--resume` of the finished run keeps its summary.
  func testDetectCommandMatchesTheRunAndDraws() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let dataFolder = root.appendingPathComponent("data")
    try writeSquares(dataFolder, counts: [8, 3, 3])
    let run = root.appendingPathComponent("run").path
    let tune = try runGraft([
      "tune", "--task", "detection", "--backbone", tinyTimmFolder, "--method", "linear",
      "--data", dataFolder.path, "--out", run, "--quiet", "--set", "train.epochs=2",
      "--set", "det.image_size=32", "--set", "det.neck=16", "--set", "det.convs=1",
      "--set", "train.batch_size=4",
    ])
    XCTAssertEqual(tune.status, 0, tune.err)
    XCTAssertTrue(tune.out.contains("linear: test AP"), tune.out)
    let resumed = try runGraft(["tune", "--resume", run, "--quiet"])
    XCTAssertEqual(resumed.status, 0, resumed.err)
    XCTAssertTrue(resumed.out.contains("linear: test AP"), resumed.out)
    let images = (0..<3).map { dataFolder.appendingPathComponent("images/test/00\($0).png").path }
    let dets = root.appendingPathComponent("dets.json").path
    let drawn = root.appendingPathComponent("drawn")
    let detect = try runGraft(
      ["detect", "--adapter", run, "-o", dets, "--draw", drawn.path, "--draw-threshold", "0"]
        + images)
    XCTAssertEqual(detect.status, 0, detect.err)
    let test = try DetectionTuneData.load(dataFolder.path).test.dataset
    let ours = try COCOResults.load(path: dets, groundTruth: test)
    let theirs = try COCOResults.load(
      path: URL(fileURLWithPath: run).appendingPathComponent("test_detections.json").path,
      groundTruth: test)
    XCTAssertEqual(ours.count, theirs.count)
    XCTAssertFalse(ours.isEmpty)
    for (a, b) in zip(ours, theirs) {
      XCTAssertEqual(a.imageID, b.imageID)
      XCTAssertEqual(a.categoryID, b.categoryID)
      XCTAssertEqual(a.score, b.score, accuracy: 1e-4)
      XCTAssertEqual(a.box.x, b.box.x, accuracy: 1e-3)
      XCTAssertEqual(a.box.width, b.box.width, accuracy: 1e-3)
    }
    for k in 0..<3 {
      let image = try ImageCodec.decode(contentsOf: drawn.appendingPathComponent("00\(k).png"))
      XCTAssertEqual(image.width, 256)
      let blue = stride(from: 0, to: image.pixels.count, by: 3).contains {
        image.pixels[$0] == 31 && image.pixels[$0 + 1] == 119 && image.pixels[$0 + 2] == 180
      }
      XCTAssertTrue(blue, "image \(k) has no box drawn")
    }
    // A classification folder or a missing folder is refused by name.
    let bad = try runGraft(["detect", "--adapter", root.path, "-o", dets] + images)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.err.contains("adapter_config.json"), bad.err)
  }

  /// `graft detect` refuses, before it loads anything, a --draw folder that would replace an input
  /// image, two images that would share a drawing, a results file that is an input image and a
  /// threshold that is no score; every input image is left as it was.
  func testDetectRefusesOutputsThatWouldReplaceInputsOrEachOther() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let dataFolder = root.appendingPathComponent("data")
    try writeSquares(dataFolder, counts: [2, 1, 1])
    let train = dataFolder.appendingPathComponent("images/train")
    let image = train.appendingPathComponent("000.png").path
    let twin = dataFolder.appendingPathComponent("images/test/000.png").path
    let before = try Data(contentsOf: URL(fileURLWithPath: image))
    let dets = root.appendingPathComponent("dets.json").path
    let cases: [([String], String)] = [
      (["-o", dets, "--draw", train.path, image], "would replace the input image"),
      (["-o", dets, "--draw", train.path + "/../train", image], "would replace the input image"),
      (["-o", dets, "--draw", root.path, image, twin], "would both be drawn to"),
      (["-o", image, image], "is one of the input images"),
      (["-o", dets, "--draw-threshold", "nan", image], "--draw-threshold"),
      (["-o", dets, "--draw-threshold", "5", image], "--draw-threshold"),
    ]
    for (arguments, message) in cases {
      let run = try runGraft(["detect", "--adapter", root.path] + arguments)
      XCTAssertNotEqual(run.status, 0, arguments.joined(separator: " "))
      XCTAssertTrue(run.err.contains(message), run.err)
      XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: image)), before)
      XCTAssertFalse(FileManager.default.fileExists(atPath: dets))
    }
  }

  /// `graft bench det` on two methods and two seeds: a run folder each, summary.json with every
  /// run and a row per method (mean and std over the seeds, the comparison with the linear
  /// floor, det.lr by the recipe's optimizer), and a report with the scatter's points and the
  /// test-image grid (true boxes on every shown image).
  func testBenchDetWritesSummaryAndReport() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let dataFolder = root.appendingPathComponent("data")
    try writeSquares(dataFolder, counts: [6, 2, 3])
    let out = root.appendingPathComponent("bench")
    let arguments = [
      "bench", "det", "--backbone", tinyTimmFolder, "--data", dataFolder.path, "--out", out.path,
      "--methods", "linear,hst", "--seeds", "0,1", "--quiet", "--set", "train.epochs=1", "--set",
      "det.image_size=32", "--set", "det.neck=16", "--set", "det.convs=1", "--set",
      "train.batch_size=6",
    ]
    let bench = try runGraft(arguments)
    XCTAssertEqual(bench.status, 0, bench.err)
    XCTAssertTrue(bench.out.contains("hst"), bench.out)
    let object = try XCTUnwrap(
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
    let runs = try XCTUnwrap(object["runs"] as? [[String: Any]])
    XCTAssertEqual(runs.map { $0["method"] as? String }, ["linear", "linear", "hst", "hst"])
    XCTAssertEqual(runs.map { $0["seed"] as? Int }, [0, 1, 0, 1])
    for run in runs {
      XCTAssertEqual((run["test"] as? [String: Any])?.count, 12)
      XCTAssertNotNil(run["trainable_share"])
      let folder = try XCTUnwrap(run["folder"] as? String)
      let seed = try XCTUnwrap(run["seed"] as? Int)
      XCTAssertTrue(folder.hasSuffix("seed-\(seed)"), folder)
      // Each seed trained with its own seed, and the pyramid and head at the rate of the
      // method's optimizer (linear: SGD; HST: AdamW).
      let config = try String(
        contentsOf: URL(fileURLWithPath: folder).appendingPathComponent("tune_config.yaml"),
        encoding: .utf8)
      XCTAssertTrue(config.contains("seed: \"\(seed)\""), config)
      let rate = run["method"] as? String == "linear" ? "0.01" : "0.001"
      XCTAssertTrue(config.contains("det.lr: \"\(rate)\""), config)
    }
    let methods = try XCTUnwrap(object["methods"] as? [[String: Any]])
    XCTAssertEqual(methods.map { $0["method"] as? String }, ["linear", "hst"])
    XCTAssertEqual(methods.map { $0["vs_floor"] as? String }.first, "floor")
    XCTAssertTrue(["above", "below", "tied"].contains(methods[1]["vs_floor"] as? String ?? ""))
    for (m, method) in methods.enumerated() {
      let aps = runs[(2 * m)..<(2 * m + 2)].compactMap {
        ($0["test"] as? [String: Any])?["AP"] as? Double
      }
      let mean = try XCTUnwrap((method["test_mean"] as? [String: Any])?["AP"] as? Double)
      XCTAssertEqual(mean, aps.reduce(0, +) / 2, accuracy: 1e-12)
      let std = try XCTUnwrap((method["test_std"] as? [String: Any])?["AP"] as? Double)
      XCTAssertEqual(std, abs(aps[0] - aps[1]) / 2.squareRoot(), accuracy: 1e-12)
    }
    let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertEqual(html.components(separatedBy: "<g data-method=").count - 1, 2)
    // The scatter names each method in a legend, in its own colour, with its mean ± std
    // (labels beside the dots piled up when the methods' points were close).
    XCTAssertEqual(html.components(separatedBy: "<circle class=\"legend\"").count - 1, 2)
    for method in ["linear", "hst"] {
      XCTAssertNotNil(
        html.range(
          of: ">\(method) [0-9]+\\.[0-9] ± [0-9]+\\.[0-9]</text>", options: .regularExpression),
        method)
    }
    XCTAssertTrue(html.contains("fill=\"#1f77b4\"") && html.contains("fill=\"#ff7f0e\""))
    // Two methods × three test images, each with its true boxes.
    XCTAssertEqual(html.components(separatedBy: "<figure data-method=").count - 1, 6)
    XCTAssertFalse(html.contains("data-true=\"0\""))
    XCTAssertTrue(html.contains("data:image/png;base64,"))
    // Finished runs are reused: a second call trains nothing and writes the same table.
    let again = try runGraft(arguments)
    XCTAssertEqual(again.status, 0, again.err)
    XCTAssertEqual(again.out, bench.out)
    // Other settings: every run is redone with them, none reported under them as it was.
    let changed = try runGraft(arguments + ["--set", "det.neck=8"])
    XCTAssertEqual(changed.status, 0, changed.err)
    for method in ["linear", "hst"] {
      for seed in 0...1 {
        let config = try String(
          contentsOf: out.appendingPathComponent("\(method)/seed-\(seed)/tune_config.yaml"),
          encoding: .utf8)
        XCTAssertTrue(config.contains("det.neck: \"8\""), "\(method) seed \(seed)")
      }
    }
    // The seed belongs to --seeds.
    let seedSet = try runGraft(arguments + ["--set", "seed=3"])
    XCTAssertNotEqual(seedSet.status, 0)
    XCTAssertTrue(seedSet.err.contains("--seeds"), seedSet.err)
  }

  /// A bench row against the linear floor: tied when each mean lies inside the other's 95 %
  /// interval, above or below otherwise, "–" without an interval (one seed); undefined numbers
  /// (-1) are left out of a statistic.
  func testBenchRowsCompareWithTheFloorByTheirIntervals() {
    func row(_ method: String, _ aps: [Double], apl: Double = -1) -> DetectionReport.Row {
      let summaries = aps.map { ap in
        DetectionSummary(
          method: method, bestEpoch: 1,
          validation: COCOBoxScores(stats: Array(repeating: ap, count: 12)),
          test: COCOBoxScores(stats: [ap, ap, ap, ap, ap, apl] + Array(repeating: ap, count: 6)),
          trainableParameters: 10, backboneParameters: 100, trainSeconds: 1, wallSeconds: 1,
          imagesPerSecond: 1, peakRSSBytes: 1)
      }
      return DetectionReport.Row(
        method: method, summaries: summaries, seeds: aps.indices.map { UInt64($0) },
        detections: [])
    }
    let floor = row("linear", [0.080, 0.083, 0.086])
    XCTAssertEqual(floor.comparison(with: floor), "floor")
    XCTAssertEqual(row("hst", [0.110, 0.115, 0.120]).comparison(with: floor), "above")
    XCTAssertEqual(row("full", [0.050, 0.055, 0.060]).comparison(with: floor), "below")
    // 0.084 lies inside the floor's interval (0.083 ± 4.3 · 0.003 / √3), and 0.083 inside its.
    XCTAssertEqual(row("lora", [0.070, 0.084, 0.098]).comparison(with: floor), "tied")
    XCTAssertEqual(row("lst", [0.2]).comparison(with: floor), "–")
    XCTAssertEqual(row("lst", [0.2]).comparison(with: nil), "–")
    let r = row("hst", [0.1, 0.2], apl: -1)
    XCTAssertEqual(r.test(0).mean, 0.15, accuracy: 1e-12)
    XCTAssertEqual(r.test(5).count, 0)
    XCTAssertEqual(DetectionReport.pct(r.test(5)), "–")
    XCTAssertEqual(DetectionReport.pct(r.test(0)), "15.0 ± 7.1")
    XCTAssertEqual(DetectionReport.pct(row("x", [0.1234]).test(0)), "12.3")
  }
}
