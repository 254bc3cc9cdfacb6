import Foundation
import XCTest

@testable import GraftModels

final class GoogleViTCheckpointTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-googlevit-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  /// Every tensor of `mapped` equals the one of the same name in the timm reference, bit for bit,
  /// and the two have the same names.
  private func assertMatchesReference(
    _ mapped: [String: Tensor], _ referenceName: String, file: StaticString = #filePath,
    line: UInt = #line
  ) throws {
    let reference = try SafetensorsFile(contentsOf: npzFixture(referenceName))
    XCTAssertEqual(mapped.keys.sorted(), reference.names.sorted(), file: file, line: line)
    for name in reference.names {
      guard let tensor = mapped[name] else { continue }
      let expected = try reference.tensor(name)
      XCTAssertEqual(tensor.shape, expected.shape, name, file: file, line: line)
      XCTAssertEqual(
        tensor.scalars.map(\.bitPattern), expected.scalars.map(\.bitPattern), name, file: file,
        line: line)
      XCTAssertEqual(tensor.name, name, file: file, line: line)
    }
  }

  // MARK: Checkpoints checked against timm

  func testOriginalLayoutMapsToTimmStateDict() throws {
    let archive = try NumpyArchive(contentsOf: npzFixture("google_vit.npz"))
    let mapped = try GoogleViTCheckpoint.timmStateDict(from: archive)
    try assertMatchesReference(mapped, "google_vit_reference.safetensors")
    XCTAssertNil(mapped["pre_logits.fc.weight"], "timm ignores pre_logits")
  }

  func testBigVisionScannedLayoutWithMAPHeadMapsToTimmStateDict() throws {
    let archive = try NumpyArchive(contentsOf: npzFixture("bigvision_vit.npz"))
    let mapped = try GoogleViTCheckpoint.timmStateDict(from: archive)
    try assertMatchesReference(mapped, "bigvision_vit_reference.safetensors")
  }

  func testInfersArchitecture() throws {
    let google = try GoogleViTCheckpoint.inferredArchitecture(
      NumpyArchive(contentsOf: npzFixture("google_vit.npz")))
    XCTAssertEqual(
      google,
      .init(
        layout: .original, prefix: "", scannedBlocks: false, depth: 2, width: 32, heads: 2,
        mlpDim: 128, patchSize: .init(8), inChannels: 3, hasClassToken: true,
        positionGrid: .init(4), numClasses: 5, representationSize: 32, hasMAPHead: false))
    XCTAssertEqual(google.imageSize, .init(32))
    XCTAssertEqual(google.globalPool, "token")

    let bigVision = try GoogleViTCheckpoint.inferredArchitecture(
      NumpyArchive(contentsOf: npzFixture("bigvision_vit.npz")))
    XCTAssertEqual(
      bigVision,
      .init(
        layout: .bigVision, prefix: "params/", scannedBlocks: true, depth: 3, width: 16, heads: 2,
        mlpDim: 64, patchSize: .init(8), inChannels: 3, hasClassToken: false,
        positionGrid: .init(4), numClasses: 0, representationSize: nil, hasMAPHead: true))
    XCTAssertEqual(bigVision.globalPool, "map")
    XCTAssertEqual(bigVision.prefixTokens, 0)
  }

  func testResamplesPositionTableAsTimmDoes() throws {
    // timm's loader read google_vit.npz into a model for 24×48 images (a 3×6 grid).
    let archive = try NumpyArchive(contentsOf: npzFixture("google_vit.npz"))
    let mapped = try GoogleViTCheckpoint.timmStateDict(
      from: archive, target: .init(gridSize: .init(height: 3, width: 6)))
    let expected = try SafetensorsFile(
      contentsOf: npzFixture("google_vit_grid3x6_reference.safetensors")
    ).tensor("pos_embed")
    let got = try XCTUnwrap(mapped["pos_embed"])
    XCTAssertEqual(got.shape, [1, 19, 32])
    let (g, e) = (got.scalars, expected.scalars)
    XCTAssertEqual(Array(g[..<32]), Array(e[..<32]), "the class token's row is kept")
    for i in 0..<e.count {
      XCTAssertEqual(g[i], e[i], accuracy: 1e-6 * max(1, abs(e[i])), "element \(i)")
    }
    // The same grid leaves the table as it is.
    let same = try GoogleViTCheckpoint.timmStateDict(
      from: archive, target: .init(gridSize: .init(4)))
    XCTAssertEqual(
      same["pos_embed"]?.scalars,
      try archive.array(
        "Transformer/posembed_input/pos_embedding"
      ).scalars)
  }

  func testHeadIsMappedOnlyForAMatchingClassCount() throws {
    let archive = try NumpyArchive(contentsOf: npzFixture("google_vit.npz"))
    for (classes, expectHead) in [(nil, true), (5, true), (3, false), (0, false)] as [(Int?, Bool)]
    {
      let mapped = try GoogleViTCheckpoint.timmStateDict(
        from: archive, target: .init(numClasses: classes))
      XCTAssertEqual(
        mapped["head.weight"] != nil, expectHead, "numClasses \(String(describing: classes))")
      XCTAssertEqual(mapped["head.bias"] != nil, expectHead)
      XCTAssertNotNil(mapped["norm.weight"])
    }
  }

  // MARK: Hand-made checkpoints

  /// A minimal original-layout checkpoint (width 4, 2 heads, MLP 8, 2×2 patches, 2×2 grid,
  /// 3 classes, one block) with arbitrary values; `drop` leaves members out, `replace` swaps in
  /// other `.npy` bytes.
  private func minimalCheckpoint(
    drop: Set<String> = [], replace: [String: [UInt8]] = [:], rename: [String: String] = [:]
  ) throws -> NumpyArchive {
    let shapes: [(String, [Int])] = [
      ("embedding/kernel", [2, 2, 3, 4]), ("embedding/bias", [4]), ("cls", [1, 1, 4]),
      ("Transformer/posembed_input/pos_embedding", [1, 5, 4]),
      ("Transformer/encoderblock_0/LayerNorm_0/scale", [4]),
      ("Transformer/encoderblock_0/LayerNorm_0/bias", [4]),
      ("Transformer/encoderblock_0/LayerNorm_2/scale", [4]),
      ("Transformer/encoderblock_0/LayerNorm_2/bias", [4]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel", [4, 2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/bias", [2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/kernel", [4, 2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/bias", [2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/value/kernel", [4, 2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/value/bias", [2, 2]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel", [2, 2, 4]),
      ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/bias", [4]),
      ("Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel", [4, 8]),
      ("Transformer/encoderblock_0/MlpBlock_3/Dense_0/bias", [8]),
      ("Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel", [8, 4]),
      ("Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias", [4]),
      ("Transformer/encoder_norm/scale", [4]), ("Transformer/encoder_norm/bias", [4]),
      ("head/kernel", [4, 3]), ("head/bias", [3]),
    ]
    var members: [TestArchive.Member] = []
    for (name, shape) in shapes where !drop.contains(name) {
      let count = shape.reduce(1, *)
      let bytes =
        replace[name]
        ?? TestArchive.npy(
          descr: "<f4", shape: shape,
          data: TestArchive.floats((0..<count).map { Float($0) * 0.25 - 1 }))
      members.append(.init(name: (rename[name] ?? name) + ".npy", data: bytes))
    }
    let url = directory.appendingPathComponent("ckpt-\(UUID().uuidString).npz")
    try Data(TestArchive.zip(members)).write(to: url)
    return try NumpyArchive(contentsOf: url)
  }

  private func assertFails(
    _ kind: GoogleViTCheckpointError.Kind, mentioning mentions: [String] = [],
    _ archive: NumpyArchive, file: StaticString = #filePath, line: UInt = #line
  ) {
    do {
      _ = try GoogleViTCheckpoint.timmStateDict(from: archive)
      XCTFail("expected a \(kind) error", file: file, line: line)
    } catch let error as GoogleViTCheckpointError {
      XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
      XCTAssertTrue(
        error.description.hasPrefix(archive.url.path), "\(error)", file: file, line: line)
      for text in mentions {
        XCTAssertTrue(
          error.description.contains(text), "'\(error)' does not mention '\(text)'", file: file,
          line: line)
      }
    } catch {
      XCTFail("unexpected error \(error)", file: file, line: line)
    }
  }

  func testMinimalCheckpointMapsWithHandCheckedLayouts() throws {
    let archive = try minimalCheckpoint()
    let mapped = try GoogleViTCheckpoint.timmStateDict(from: archive)
    XCTAssertEqual(mapped.count, 4 + 12 + 2 + 2)
    // Every value is index·0.25 − 1 in its source array; v(i) inverts that.
    func source(_ value: Float) -> Int { Int((value + 1) * 4) }
    // patch_embed.proj.weight[o, c, y, x] = kernel[y, x, c, o] at index ((y·2 + x)·3 + c)·4 + o.
    let w = try XCTUnwrap(mapped["patch_embed.proj.weight"])
    XCTAssertEqual(w.shape, [4, 3, 2, 2])
    XCTAssertEqual(source(w[1, 2, 0, 1]), ((0 * 2 + 1) * 3 + 2) * 4 + 1)
    // qkv.weight[j, i]: rows 0..<4 are the query, q_kernel[i, h, e] with j = h·2 + e, at
    // index (i·2 + h)·2 + e; rows 8..<12 the value kernel.
    let qkv = try XCTUnwrap(mapped["blocks.0.attn.qkv.weight"])
    XCTAssertEqual(qkv.shape, [12, 4])
    XCTAssertEqual(source(qkv[3, 2]), (2 * 2 + 1) * 2 + 1)
    XCTAssertEqual(source(qkv[8 + 2, 1]), (1 * 2 + 1) * 2 + 0)
    XCTAssertEqual(try XCTUnwrap(mapped["blocks.0.attn.qkv.bias"]).shape, [12])
    // proj.weight[o, h·2 + e] = out_kernel[h, e, o] at index (h·2 + e)·4 + o.
    let proj = try XCTUnwrap(mapped["blocks.0.attn.proj.weight"])
    XCTAssertEqual(source(proj[3, 2]), (1 * 2 + 0) * 4 + 3)
    // fc1.weight[o, i] = Dense_0 kernel[i, o] at index i·8 + o.
    let fc1 = try XCTUnwrap(mapped["blocks.0.mlp.fc1.weight"])
    XCTAssertEqual(fc1.shape, [8, 4])
    XCTAssertEqual(source(fc1[5, 3]), 3 * 8 + 5)
    XCTAssertEqual(try XCTUnwrap(mapped["head.weight"]).shape, [3, 4])
    XCTAssertEqual(try XCTUnwrap(mapped["blocks.0.norm2.weight"]).shape, [4])
    XCTAssertEqual(try XCTUnwrap(mapped["cls_token"]).shape, [1, 1, 4])
  }

  func testNamesMissingArrays() throws {
    let mlp = "Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias"
    assertFails(.missingArray, mentioning: [mlp], try minimalCheckpoint(drop: [mlp]))
    let norm = "Transformer/encoder_norm/scale"
    assertFails(.missingArray, mentioning: [norm], try minimalCheckpoint(drop: [norm]))
    let pos = "Transformer/posembed_input/pos_embedding"
    assertFails(.missingArray, mentioning: [pos], try minimalCheckpoint(drop: [pos]))
    // A block numbered 2 with no block 1.
    let renamed = try minimalCheckpoint(rename: [
      "Transformer/encoderblock_0/LayerNorm_0/scale": "Transformer/encoderblock_2/LayerNorm_0/scale"
    ])
    assertFails(.missingArray, mentioning: ["0..<2"], renamed)
  }

  func testRejectsWhatItCannotMap() throws {
    assertFails(
      .notAViTCheckpoint, mentioning: ["embedding/kernel"],
      try NumpyArchive(contentsOf: npzFixture("dtypes_zip64.npz")))
    let dense = TestArchive.npy(
      descr: "<f4", shape: [12, 4], data: TestArchive.floats(Array(repeating: 0, count: 48)))
    assertFails(
      .unsupported, mentioning: ["NaFlex"],
      try minimalCheckpoint(replace: ["embedding/kernel": dense]))
    let oddTable = TestArchive.npy(
      descr: "<f4", shape: [1, 4, 4], data: TestArchive.floats(Array(repeating: 0, count: 16)))
    assertFails(
      .unexpectedShape, mentioning: ["square"],
      try minimalCheckpoint(replace: ["Transformer/posembed_input/pos_embedding": oddTable]))
  }
}
