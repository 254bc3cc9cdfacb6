import XCTest

@testable import GraftTasks

/// A digit image that, when `poisoned`, becomes an input of NaNs: a stand-in for the overflow
/// that makes a training step's loss non-finite.
struct PoisonedImage: TuneSample, Sendable {
  var image: RGBImage
  var poisoned: Bool

  static func transforms(for input: BackboneInput) throws -> SampleTransforms<PoisonedImage> {
    let images = try RGBImage.transforms(for: input).eval
    let transform: SampleTransform<PoisonedImage> = { sample, generator in
      let x = try images(sample.image, &generator)
      return sample.poisoned ? x * Float.nan : x
    }
    return SampleTransforms(train: transform, eval: transform)
  }

  static func preview(_ sample: PoisonedImage) -> RGBImage? { sample.image }
}

/// `base`'s images, sample `poisoned` (if any) poisoned.
struct PoisonedDataset: Dataset {
  let base: any Dataset<RGBImage>
  let poisoned: Int?
  var count: Int { base.count }
  var classNames: [String] { base.classNames }
  var labels: [Int] { base.labels }
  func sample(at index: Int) throws -> PoisonedImage {
    PoisonedImage(image: try base.sample(at: index), poisoned: index == poisoned)
  }
}

final class DivergenceTests: XCTestCase {
  /// `smallDigits` with training sample 5 poisoned.
  let data = try! TuneData(
    train: PoisonedDataset(base: smallDigits.train, poisoned: 5),
    validation: PoisonedDataset(base: smallDigits.validation, poisoned: nil),
    test: PoisonedDataset(base: smallDigits.test, poisoned: nil), description: "poisoned")

  func run(_ folder: URL, _ extra: [String] = [], epochs: Int = 2, resume: Bool = false) throws
    -> TuneSummary?
  {
    var config = try TuneConfig.preset(for: "linear")
    for s in ["train.epochs=\(epochs)", "train.workers=0", "train.batch_size=16"] + extra {
      try config.set(assignment: s)
    }
    let trainer = try Trainer(
      backbone: tinyBackbone(), config: config, classNames: data.classNames)
    return try trainer.run(data: data, folder: folder, resume: resume)
  }

  /// Every JSON file of `folder` parses and every tensor file holds finite values only.
  func assertNothingNonFinite(_ folder: URL, file: StaticString = #filePath, line: UInt = #line) {
    for name in listing(folder) {
      let url = folder.appendingPathComponent(name)
      if name.hasSuffix(".json") || name.hasSuffix(".jsonl") {
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        XCTAssertFalse(
          text.lowercased().contains("nan") || text.contains("inf"), name, file: file, line: line)
      } else if name.hasSuffix(".safetensors") {
        let tensors = (try? SafetensorsFile(contentsOf: url).tensors()) ?? [:]
        for (t, v) in tensors {
          XCTAssertTrue(v.scalars.allSatisfy(\.isFinite), "\(name): \(t)", file: file, line: line)
        }
      }
    }
  }

  /// The default policy stops at the step whose loss is not finite, names it and the last good
  /// checkpoint, and leaves the folder as that checkpoint left it.
  func testANonFiniteLossStopsTheRunAtItsStep() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    XCTAssertThrowsError(try run(folder)) {
      XCTAssertTrue($0 is DivergenceError, "\($0)")
      let text = "\($0)"
      XCTAssertTrue(text.contains("epoch 1, step "), text)
      XCTAssertTrue(text.contains("not finite") && text.contains("train.nan_policy"), text)
      XCTAssertTrue(text.contains("no completed epoch"), text)
    }
    assertNothingNonFinite(folder)
    XCTAssertFalse(Trainer.holdsRun(folder))
  }

  /// With `skip-step` the poisoned batch's step is skipped (no update), the run finishes, each
  /// epoch's metrics count the skipped step, and nothing written is non-finite.
  func testSkipStepSkipsTheBatchAndFinishes() throws {
    let folder = memoryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let summary = try XCTUnwrap(run(folder, ["train.nan_policy=skip-step"]))
    XCTAssertTrue(summary.test.loss.isFinite)
    let lines = try String(
      contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8
    ).split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    for line in lines {
      let o = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      XCTAssertEqual(o["skipped_steps"] as? Int, 1, String(line))
    }
    assertNothingNonFinite(folder)
  }

  /// Steps whose loss and gradients are finite can still leave weights whose outputs are not
  /// (a huge learning rate): a non-finite validation loss stops the run under either policy,
  /// before the epoch is selected, checkpointed or scored (NaN logits all "predicted" class 0
  /// and the run reported a top-1).
  func testANonFiniteValidationLossStopsTheRun() throws {
    let clean = try TuneData(
      train: PoisonedDataset(base: smallDigits.train, poisoned: nil),
      validation: PoisonedDataset(base: smallDigits.validation, poisoned: 3),
      test: PoisonedDataset(base: smallDigits.test, poisoned: nil), description: "poisoned val")
    for policy in ["stop", "skip-step"] {
      let folder = memoryFolder()
      defer { try? FileManager.default.removeItem(at: folder) }
      var config = try TuneConfig.preset(for: "linear")
      for s in ["train.epochs=2", "train.workers=0", "train.nan_policy=\(policy)"] {
        try config.set(assignment: s)
      }
      let trainer = try Trainer(
        backbone: tinyBackbone(), config: config, classNames: clean.classNames)
      XCTAssertThrowsError(try trainer.run(data: clean, folder: folder)) {
        XCTAssertTrue($0 is DivergenceError, "\($0)")
        XCTAssertTrue(
          "\($0)".contains("epoch 1, step ") && "\($0)".contains("validation loss is"), "\($0)")
      }
      assertNothingNonFinite(folder)
      XCTAssertFalse(Trainer.holdsRun(folder), policy)
    }
  }
}
