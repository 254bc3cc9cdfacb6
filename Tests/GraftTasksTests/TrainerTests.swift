import XCTest

@testable import GraftTasks

/// The repository's root (for `Data/` and the model fixtures).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

let digitsCSV = repositoryRoot.appendingPathComponent("Data/digits/digits.csv")

/// A tiny random ViT standing in for a pretrained backbone: 8×8 input (digits' own size),
/// 4×4 patches, D = 32, 2 blocks. timm's trunc-normal 0.02 init makes every block nearly the
/// identity, so the class token barely sees the image; the block weights are redrawn with unit
/// gain (std 1/√fan_in) so that, as in a trained model, the features depend on the input.
func tinyBackbone(seed: UInt64 = 1) -> TuneBackbone {
  let config = ViTConfig(
    imgSize: 8, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 0)
  var rng = RandomGenerator(seed: seed)
  let model = try! VisionTransformer(config: config, generator: &rng)
  for (name, t) in model.namedParameters() where name.hasPrefix("blocks.") && t.rank == 2 {
    t.assign(Tensor.randn(t.shape, std: 1 / Float(t.shape[1]).squareRoot(), generator: &rng))
  }
  return TuneBackbone(inMemory: model, name: "tiny-\(seed)")
}

func temporaryFolder() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "graft-tasks-\(UUID().uuidString)")
  try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// The digits task, read once.
let digits = try! ImageTuneData.digits(csv: digitsCSV)

/// A short run of `method` on digits (500 training samples, 4 epochs, AdamW at 0.01 for every
/// method: the tiny random backbone needs larger steps than the papers' recipes for pretrained
/// ones).
func shortRun(
  _ method: String, extra: [String] = [], folder: URL, backbone: TuneBackbone = tinyBackbone(),
  stopAfter: Int? = nil, resume: Bool = false
) throws -> (Trainer, TuneSummary?) {
  var config = try TuneConfig.preset(for: method)
  let settings = [
    "train.epochs=4", "data.train_samples=500", "train.workers=0", "optim.warmup_epochs=1",
    "optim.name=adamw", "optim.lr=0.01",
  ]
  for s in settings + extra { try config.set(assignment: s) }
  let trainer = try Trainer(backbone: backbone, config: config, classNames: digits.classNames)
  let summary = try trainer.run(
    data: digits, folder: folder, dataReference: "digits", resume: resume, stopAfter: stopAfter)
  return (trainer, summary)
}

final class TrainerTests: XCTestCase {
  /// A short run beats chance (0.1) by a wide margin.
  func beatsChance(_ method: String, extra: [String] = []) throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(shortRun(method, extra: extra, folder: folder).1)
    XCTAssertGreaterThan(summary.test.top1, 0.4, method)
    XCTAssertEqual(summary.test.count, 359)
  }

  /// VPT's own large-lr SGD recipe (its head starts with kaiming-normal weights, far larger
  /// than timm's, which AdamW at 0.01 moves too slowly in 4 epochs).
  let vptRecipe = ["optim.name=sgd", "optim.lr=0.5", "method.prompt_length=4"]

  func testLinearLearnsDigits() throws { try beatsChance("linear") }

  /// A split without a sample is refused before anything is written: scored, it read as 0 %.
  func testAnEmptySplitIsRefused() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let config = try TuneConfig.preset(for: "linear")
    let trainer = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: digits.classNames)
    let data = try TuneData(
      train: digits.train, validation: digits.validation,
      test: Subset(digits.test, indices: []), description: "digits")
    XCTAssertThrowsError(try trainer.run(data: data, folder: folder)) {
      XCTAssertTrue("\($0)".contains("the test split has no sample"), "\($0)")
    }
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: folder.appendingPathComponent("run.json").path))
  }
  func testFullLearnsDigits() throws { try beatsChance("full") }
  func testBitFitLearnsDigits() throws { try beatsChance("bitfit") }
  func testLNTuneLearnsDigits() throws { try beatsChance("ln-tune") }
  func testVPTShallowLearnsDigits() throws {
    try beatsChance("vpt-shallow", extra: vptRecipe)
  }
  func testVPTDeepLearnsDigits() throws {
    try beatsChance("vpt-deep", extra: vptRecipe)
  }
  func testLoRALearnsDigits() throws { try beatsChance("lora") }
  func testAdapterLearnsDigits() throws { try beatsChance("adapter") }
  func testMPLearnsDigits() throws { try beatsChance("mp") }
  func testMPPlusLearnsDigits() throws { try beatsChance("mp+") }
  func testLSTLearnsDigits() throws { try beatsChance("lst", extra: ["method.reduction=4"]) }
  func testUniPTLearnsDigits() throws { try beatsChance("unipt") }
  func testHSTLearnsDigits() throws {
    // Narrow stages: the tiny backbone is 8×8 with 2 blocks.
    try beatsChance("hst", extra: ["method.widths=8,8,16,16", "method.heads=1,2,2,4"])
  }
}
