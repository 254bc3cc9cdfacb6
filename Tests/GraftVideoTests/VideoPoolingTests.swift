import Foundation
import GraftData
import GraftModels
import GraftTensor
import GraftVideo
import XCTest

/// PLLaVA's pooling and the frame encoder against PyTorch and timm
/// (Fixtures/encoder_pool.safetensors, made by Tools/make_video_fixtures.py).
final class VideoPoolingTests: XCTestCase {
  var fixture: SafetensorsFile {
    get throws {
      try SafetensorsFile(
        contentsOf: VideoFixtures.folder.appendingPathComponent("encoder_pool.safetensors"))
    }
  }

  func assertClose(_ a: Tensor, _ b: Tensor, _ what: String, relative: Float = 1e-4) {
    XCTAssertEqual(a.shape, b.shape, what)
    guard a.shape == b.shape else { return }
    var worst: Float = 0
    var scale: Float = 0
    for i in 0..<a.count {
      worst = max(worst, abs(a.pointer[i] - b.pointer[i]))
      scale = max(scale, abs(b.pointer[i]))
    }
    XCTAssertLessThanOrEqual(worst, relative * scale, "\(what): max difference \(worst)")
  }

  /// PyTorch's bins, worked by hand: 7 → 3 overlaps, 14 → 5 is uneven, 3 → 5 repeats.
  func testBinsAreAdaptiveAvgPoolBins() {
    XCTAssertEqual(AdaptivePooling.bins(input: 7, output: 3), [0..<3, 2..<5, 4..<7])
    XCTAssertEqual(
      AdaptivePooling.bins(input: 14, output: 5), [0..<3, 2..<6, 5..<9, 8..<12, 11..<14])
    XCTAssertEqual(
      AdaptivePooling.bins(input: 3, output: 5), [0..<1, 0..<2, 1..<2, 1..<3, 2..<3])
    XCTAssertEqual(
      AdaptivePooling.bins(input: 24, output: 12).map(\.count), Array(repeating: 2, count: 12))
    // Values 0…6 along h pooled to 3: means of {0,1,2}, {2,3,4}, {4,5,6}.
    let x = Tensor((0..<7).map(Float.init), shape: [1, 1, 7, 1, 1])
    let y = AdaptivePooling.averagePool3D(x, to: (1, 3, 1))
    XCTAssertEqual(Array(UnsafeBufferPointer(start: y.pointer, count: 3)), [1, 3, 5])
  }

  func testPoolingMatchesPyTorch() throws {
    let shapes = [(3, 3, 3), (4, 5, 5), (5, 4, 2)]
    for (i, shape) in shapes.enumerated() {
      let input = try fixture.tensor("pool\(i).input")
      let expected = try fixture.tensor("pool\(i).output")
      assertClose(AdaptivePooling.averagePool3D(input, to: shape), expected, "pool\(i)")
    }
  }

  /// The bundled backbone on 4 frames of a clip: pixels, layer −2 tokens and pooled tokens as
  /// timm and torch compute them from ffmpeg's frames.
  func testFrameEncoderMatchesTimm() throws {
    let loaded = try ModelLoader.load("vit-nano-fmnist")
    let encoder = try FrameEncoder(
      backbone: loaded.model, transform: .init(config: loaded.preprocessing!), layer: -2)
    let clip = try VideoDecoding.sample(VideoFixtures.url("h264.mp4"), count: 4, threads: 1)
    XCTAssertEqual(clip.indices, try fixture.intArray("encoder.indices"))
    let (pixels, tokens, pooled) = encoder.encode([clip], pool: (2, 3, 3))
    assertClose(
      pixels.reshaped([4, 3, 28, 28]), try fixture.tensor("encoder.pixels"), "pixels")
    assertClose(
      tokens.reshaped([4, 7, 7, 128]), try fixture.tensor("encoder.tokens"), "tokens")
    assertClose(pooled, try fixture.tensor("encoder.pooled"), "pooled")
    // The last block's output differs: the layer is honoured.
    let last = try FrameEncoder(
      backbone: loaded.model, transform: .init(config: loaded.preprocessing!), layer: -1)
    let lastTokens = last.tokens(pixels: pixels.reshaped([4, 3, 28, 28]))
    XCTAssertNotEqual(
      Array(UnsafeBufferPointer(start: lastTokens.pointer, count: 16)),
      Array(UnsafeBufferPointer(start: tokens.pointer, count: 16)))
    XCTAssertThrowsError(
      try FrameEncoder(backbone: loaded.model, transform: encoder.transform, layer: 6))
  }

  /// A backbone with 4 registers and a dynamic input size (the ViT loader's tiny DINOv2 fixture):
  /// all 5 prefix tokens are dropped, at block −2 and −1, as timm computes them.
  func testFrameEncoderDropsRegistersAsTimm() throws {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent(
        "GraftModelsTests/Fixtures/vit/dinov2_reg")
    let loaded = try ModelLoader.load(folder.path)
    XCTAssertEqual(loaded.model.prefixTokens, 5)
    let transform = EvalTransform(
      config: ImagePreprocessConfig(inputSize: [3, 42, 42], interpolation: .bicubic, cropPct: 1))
    let clip = try VideoDecoding.sample(VideoFixtures.url("h264.mp4"), count: 4, threads: 1)
    for (layer, name) in [(-2, "second_last"), (-1, "last")] {
      let encoder = try FrameEncoder(backbone: loaded.model, transform: transform, layer: layer)
      let (_, tokens, pooled) = encoder.encode([clip], pool: (3, 2, 2))
      assertClose(
        tokens.reshaped([4, 3, 3, 32]), try fixture.tensor("registers.\(name).tokens"), name)
      assertClose(pooled, try fixture.tensor("registers.\(name).pooled"), name)
    }
  }

  /// `graft embed --frames`' library side, in batches of 2 (the second decoded while the first
  /// is encoded): the file holds what timm computes for each clip.
  func testVideoEmbeddingFileMatchesTimmPerClip() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let output = folder.appendingPathComponent("out.safetensors")
    let clips = ["h264.mp4", "vfr.mkv", "h264.mp4"].map(VideoFixtures.url)
    let summary = try VideoEmbedding.run(
      model: "vit-nano-fmnist", videos: clips, frames: 4, pool: (2, 3, 3), batchSize: 2,
      output: output)
    XCTAssertEqual(summary.pooledShape, [3, 2, 3, 3, 128])
    let file = try SafetensorsFile(contentsOf: output)
    XCTAssertEqual(try file.info("indices").dtype, .i64)
    XCTAssertEqual(try file.intArray("indices"), [1, 4, 7, 9, 1, 4, 7, 9, 1, 4, 7, 9])
    XCTAssertEqual(file.metadata["layer"], "-2")
    XCTAssertEqual(try file.info("frames").shape, [3, 4, 3, 28, 28])
    let pooled = try file.tensor("pooled")
    let expected = try fixture.tensor("encoder.pooled")
    for clip in [0, 2] {
      assertClose(pooled.narrow(0, start: clip, length: 1), expected, "clip \(clip)")
    }
  }

  /// `graft video frames`' file: U8 frames and I64 indices as the Python package reads them.
  func testRawSafetensorsRoundTrip() throws {
    let folder = try VideoFixtures.temporaryFolder(self)
    let url = folder.appendingPathComponent("frames.safetensors")
    let bytes: [UInt8] = [0, 1, 127, 128, 254, 255]
    try Safetensors.write(
      raw: [
        "frames": .init(u8: bytes, shape: [1, 1, 2, 3]),
        "indices": .init(i64: [5, -1, 1 << 40], shape: [3]),
      ], to: url)
    let file = try SafetensorsFile(contentsOf: url)
    XCTAssertEqual(try file.info("frames").dtype, .u8)
    XCTAssertEqual(try file.intArray("frames"), bytes.map(Int.init))
    XCTAssertEqual(try file.intArray("indices"), [5, -1, 1 << 40])
    XCTAssertThrowsError(
      try Safetensors.write(raw: ["x": .init(u8: [1, 2], shape: [3])], to: url))
  }
}
