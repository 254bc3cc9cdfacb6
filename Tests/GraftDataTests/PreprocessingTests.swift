import Foundation
import XCTest

@testable import GraftData

final class PreprocessingTests: XCTestCase {
  private var preprocess: [String: Any] { ImageFixtures.manifest["preprocess"] as! [String: Any] }

  private func source() throws -> RGBImage {
    try ImageFixtures.image(preprocess["source"] as! String)
  }

  /// Rows and columns swapped, as Pillow's `Transpose.TRANSPOSE`.
  private func transposed(_ image: RGBImage) -> RGBImage {
    var out = [UInt8](repeating: 0, count: image.pixels.count)
    for y in 0..<image.height {
      for x in 0..<image.width {
        for c in 0..<3 {
          out[(x * image.height + y) * 3 + c] = image.pixels[(y * image.width + x) * 3 + c]
        }
      }
    }
    return RGBImage(width: image.height, height: image.width, pixels: out)
  }

  private func floats(_ name: String) throws -> [Float] {
    let data = try Data(contentsOf: ImageFixtures.url(name))
    return data.withUnsafeBytes { raw in
      (0..<(data.count / 4)).map {
        Float(
          bitPattern: UInt32(
            littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
      }
    }
  }

  func testResizeMatchesPillowExactly() throws {
    let src = try source()
    let cases = preprocess["resize"] as! [[String: Any]]
    XCTAssertEqual(cases.count, 8)
    for entry in cases {
      var image = src
      if let box = entry["crop"] as? [Int] {  // Pillow's (left, top, right, bottom)
        image = src.cropped(x: box[0], y: box[1], width: box[2] - box[0], height: box[3] - box[1])
      }
      let mode = ImageInterpolation(rawValue: entry["interpolation"] as! String)!
      let out = image.resized(
        width: entry["width"] as! Int, height: entry["height"] as! Int, interpolation: mode)
      let expected = try ImageFixtures.bytes(entry["expected"] as! String)
      let (worst, count) = ImageFixtures.compare(out.pixels, expected)
      XCTAssertEqual(out.pixels.count, expected.count)
      XCTAssertEqual(count, 0, "\(entry["expected"]!): \(count) bytes differ, by up to \(worst)")
    }
  }

  func testResizedCropMatchesTorchvision() throws {
    let src = try source()
    for entry in preprocess["resized_crop"] as! [[String: Any]] {
      let crop = RandomResizedCrop(
        size: entry["size"] as! Int,
        interpolation: ImageInterpolation(rawValue: entry["interpolation"] as! String)!)
      let region = RandomResizedCrop.Region(
        top: entry["top"] as! Int, left: entry["left"] as! Int, height: entry["height"] as! Int,
        width: entry["width"] as! Int)
      let out = crop.apply(region, to: src)
      let expected = try ImageFixtures.bytes(entry["expected"] as! String)
      XCTAssertEqual(out.pixels, expected, "\(entry["expected"]!)")
    }
  }

  /// timm's `create_transform(is_training=False)` output, to the bit, for centre (square and
  /// non-square), squash and border crops, landscape and portrait sources.
  func testEvalTransformMatchesTimm() throws {
    let landscape = try source()
    let portrait = transposed(landscape)
    let cases = preprocess["eval"] as! [[String: Any]]
    XCTAssertEqual(cases.count, 6)
    for entry in cases {
      let cfg = entry["pretrained_cfg"] as! [String: Any]
      let config = try ImagePreprocessConfig(pretrainedCfg: cfg)
      let image = entry["source"] as! String == "portrait" ? portrait : landscape
      let out = EvalTransform(config: config)(image)
      XCTAssertEqual(out.shape, entry["shape"] as! [Int])
      let expected = try floats(entry["expected"] as! String)
      let worst = zip(out.scalars, expected).map { abs($0 - $1) }.max() ?? .infinity
      XCTAssertEqual(worst, 0, "\(entry["expected"]!) (\(config.cropMode)) max |Δ| = \(worst)")
    }
  }

  /// A real model config (ViT-B/16, bicubic, crop 0.9, 224) on a 320×240 JPEG: sampled values
  /// and per-channel sums of timm's output.
  func testFullSizeViTPreprocessingMatchesTimm() throws {
    let full = preprocess["full_size"] as! [String: Any]
    let image = try ImageFixtures.image(full["source"] as! String)
    let vit = (preprocess["configs"] as! [[String: Any]]).first {
      $0["model"] as? String == full["model"] as? String
    }!
    let config = try ImagePreprocessConfig(pretrainedCfg: vit["pretrained_cfg"] as! [String: Any])
    let out = EvalTransform(config: config)(image)
    XCTAssertEqual(out.shape, full["shape"] as! [Int])
    let values = out.scalars
    for (index, expected) in zip(full["indices"] as! [Int], full["values"] as! [Double]) {
      XCTAssertEqual(values[index], Float(expected), "element \(index)")
    }
    let plane = 224 * 224
    for (c, expected) in (full["channel_sums"] as! [Double]).enumerated() {
      let sum = values[(c * plane)..<((c + 1) * plane)].reduce(0.0) { $0 + Double($1) }
      XCTAssertEqual(sum, expected, accuracy: 1e-6 * abs(expected) + 1e-3)
    }
  }

  func testConfigsResolveLikeTimm() throws {
    for entry in preprocess["configs"] as! [[String: Any]] {
      let cfg = entry["pretrained_cfg"] as! [String: Any]
      for (useTestSize, key) in [(false, "resolved"), (true, "resolved_test_size")] {
        let config = try ImagePreprocessConfig(pretrainedCfg: cfg, useTestSize: useTestSize)
        let resolved = entry[key] as! [String: Any]
        let model = "\(entry["model"]!) \(key)"
        XCTAssertEqual(config.inputSize, resolved["input_size"] as! [Int], model)
        XCTAssertEqual(config.interpolation.rawValue, resolved["interpolation"] as! String, model)
        XCTAssertEqual(config.cropPct, resolved["crop_pct"] as! Double, model)
        XCTAssertEqual(config.cropMode.rawValue, resolved["crop_mode"] as! String, model)
        XCTAssertEqual(config.mean, resolved["mean"] as! [Double], model)
        XCTAssertEqual(config.std, resolved["std"] as! [Double], model)
      }
    }
  }

  func testConfigFromJSONAndErrors() throws {
    let hubConfig = Data(
      """
      {"architecture": "vit_small_patch16_224", "num_classes": 1000,
       "pretrained_cfg": {"input_size": [3, 384, 384], "interpolation": "bilinear",
                          "crop_pct": 1.0, "crop_mode": "squash", "mean": [0.5, 0.5, 0.5],
                          "std": [0.5, 0.5, 0.5], "test_input_size": [3, 448, 448]}}
      """.utf8)
    let config = try ImagePreprocessConfig(pretrainedCfgJSON: hubConfig)
    XCTAssertEqual(config.inputSize, [3, 384, 384])
    XCTAssertEqual(config.interpolation, .bilinear)
    XCTAssertEqual(config.cropMode, .squash)
    XCTAssertEqual(config.scaleSize.height, 384)
    XCTAssertEqual(
      try ImagePreprocessConfig(pretrainedCfgJSON: hubConfig, useTestSize: true).height, 448)

    // timm's defaults for missing, null, empty and zero entries.
    let defaults = try ImagePreprocessConfig(
      pretrainedCfgJSON: Data(
        #"{"crop_pct": 0, "mean": [], "interpolation": "", "input_size": null}"#.utf8))
    XCTAssertEqual(defaults, ImagePreprocessConfig())
    XCTAssertEqual(defaults.scaleSize.width, 256)  // floor(224 / 0.875)

    // Codable uses timm's key names and fills defaults the same way.
    let decoded = try JSONDecoder().decode(
      ImagePreprocessConfig.self,
      from: Data(#"{"input_size": [3, 160, 192], "crop_pct": 0.95}"#.utf8))
    XCTAssertEqual(decoded.inputSize, [3, 160, 192])
    XCTAssertEqual(decoded.cropPct, 0.95)
    XCTAssertEqual(decoded.interpolation, .bicubic)
    let reencoded = try JSONDecoder().decode(
      ImagePreprocessConfig.self, from: try JSONEncoder().encode(config))
    XCTAssertEqual(reencoded, config)

    for bad in [
      #"{"interpolation": "nearest"}"#, #"{"input_size": [1, 224, 224]}"#,
      #"{"crop_mode": "random"}"#, #"{"mean": [0.5]}"#, #"{"std": [1, 0, 1]}"#, "[1, 2]",
    ] {
      XCTAssertThrowsError(try ImagePreprocessConfig(pretrainedCfgJSON: Data(bad.utf8)), bad) {
        XCTAssertTrue("\($0)".hasPrefix("image preprocessing config: "), "\($0)")
      }
    }
  }

  /// torchvision's sizes: the longer side is truncated; crop offsets round half to even.
  func testShorterSideResizeAndCentreCropGeometry() {
    let landscape = RGBImage(
      width: 500, height: 375, pixels: [UInt8](repeating: 9, count: 500 * 375 * 3))
    let resized = landscape.resizedShorterSide(to: 256, interpolation: .bilinear)
    XCTAssertEqual([resized.width, resized.height], [341, 256])  // int(256 * 500 / 375) = 341
    XCTAssertEqual(Set(resized.pixels), [9], "a flat image stays flat")
    let portrait = RGBImage(width: 3, height: 7, pixels: [UInt8](repeating: 1, count: 63))
    let p = portrait.resizedShorterSide(to: 2, interpolation: .bicubic)
    XCTAssertEqual([p.width, p.height], [2, 4])  // int(2 * 7 / 3) = 4

    // 5×3 image with pixel value = 10·row + column in every channel.
    var values: [UInt8] = []
    for i in 0..<15 {
      let v = UInt8(10 * (i / 5) + i % 5)
      values += [v, v, v]
    }
    let grid = RGBImage(width: 5, height: 3, pixels: values)
    let crop = grid.centerCropped(width: 2, height: 2)
    // top = round(0.5) = 0, left = round(1.5) = 2
    XCTAssertEqual(stride(from: 0, to: 12, by: 3).map { crop.pixels[$0] }, [2, 3, 12, 13])
    let padded = grid.centerCropped(width: 4, height: 6, fill: [7, 8, 9])
    // height 3 → 6: 1 row on top, 2 below; width 5 → 4: left offset round(0.5) = 0.
    XCTAssertEqual(Array(padded.pixels[0..<3]), [7, 8, 9])
    XCTAssertEqual(padded.pixels[(1 * 4 + 0) * 3], 0)
    XCTAssertEqual(padded.pixels[(3 * 4 + 3) * 3], 23)
    let below = (4 * 4 + 1) * 3  // row 4, column 1
    XCTAssertEqual(Array(padded.pixels[below..<(below + 3)]), [7, 8, 9])
  }

  func testTensorConversionAndBatch() throws {
    let image = RGBImage(width: 2, height: 1, pixels: [0, 51, 255, 255, 102, 0])
    let t = image.tensor(mean: [0.5, 0.2, 0], std: [0.5, 0.2, 1])
    XCTAssertEqual(t.shape, [3, 1, 2])
    for (value, expected) in zip(t.scalars, [-1, 1, 0, 1, 1, 0] as [Float]) {
      XCTAssertEqual(value, expected, accuracy: 1e-6)
    }

    let config = ImagePreprocessConfig(inputSize: [3, 16, 20], cropPct: 0.9)
    let transform = EvalTransform(config: config)
    let a = try source()
    let b = try ImageFixtures.image("png_rgb.png")
    let batch = transform.batch([a, b])
    XCTAssertEqual(batch.shape, [2, 3, 16, 20])
    let single = transform(a).scalars + transform(b).scalars
    XCTAssertEqual(batch.scalars, single)
  }

  func testFlipAndIdentityResize() throws {
    let image = RGBImage(width: 3, height: 1, pixels: [1, 2, 3, 4, 5, 6, 7, 8, 9])
    XCTAssertEqual(image.horizontallyFlipped().pixels, [7, 8, 9, 4, 5, 6, 1, 2, 3])
    let src = try source()
    XCTAssertEqual(src.resized(width: src.width, height: src.height, interpolation: .bicubic), src)
  }
}
