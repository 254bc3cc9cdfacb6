import Foundation
import XCTest

@testable import GraftData

#if canImport(Glibc)
  import Glibc
#endif

/// The image fixtures written by Tools/make_image_fixtures.py and their manifest.
enum ImageFixtures {
  static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    .appendingPathComponent("images")

  static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }

  static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }

  static func image(_ name: String) throws -> RGBImage {
    try ImageCodec.decode(contentsOf: url(name))
  }

  /// The whole manifest as parsed JSON.
  nonisolated(unsafe) static let manifest: [String: Any] = {
    let data = try! Data(contentsOf: url("manifest.json"))
    return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
  }()

  static func entries(_ key: String) -> [[String: Any]] { manifest[key] as! [[String: Any]] }

  /// Largest absolute difference and how many bytes differ.
  static func compare(_ a: [UInt8], _ b: [UInt8]) -> (maxDiff: Int, differing: Int) {
    var worst = 0
    var count = 0
    for (x, y) in zip(a, b) where x != y {
      worst = max(worst, abs(Int(x) - Int(y)))
      count += 1
    }
    return (worst, count)
  }
}

final class ImageCodecTests: XCTestCase {
  func testDecodesEveryFormatExactlyLikePillow() throws {
    let entries = ImageFixtures.entries("decoded")
    XCTAssertGreaterThanOrEqual(entries.count, 15)
    for entry in entries {
      let file = entry["file"] as! String
      let image = try ImageFixtures.image(file)
      XCTAssertEqual(image.width, entry["width"] as? Int, file)
      XCTAssertEqual(image.height, entry["height"] as? Int, file)
      let expected = try ImageFixtures.bytes(entry["expected"] as! String)
      XCTAssertEqual(image.pixels.count, expected.count, file)
      let (worst, count) = ImageFixtures.compare(image.pixels, expected)
      XCTAssertEqual(count, 0, "\(file): \(count) bytes differ, by up to \(worst)")
    }
  }

  func testBrokenFilesThrowErrorsNamingTheFile() throws {
    let entries = ImageFixtures.entries("errors")
    XCTAssertGreaterThanOrEqual(entries.count, 6)
    for entry in entries {
      let file = entry["file"] as! String
      let url = ImageFixtures.url(file)
      XCTAssertThrowsError(try ImageCodec.decode(contentsOf: url), file) { error in
        guard let error = error as? ImageError else {
          return XCTFail("\(file): \(error) is not an ImageError")
        }
        XCTAssertEqual(error.kind.rawValue, entry["kind"] as? String, "\(file): \(error)")
        XCTAssertEqual(error.file, url.path)
        XCTAssertTrue(error.description.hasPrefix(url.path + ": "), error.description)
      }
    }
  }

  func testMissingFileAndEmptyData() {
    let url = ImageFixtures.url("does_not_exist.png")
    XCTAssertThrowsError(try ImageCodec.decode(contentsOf: url)) { error in
      XCTAssertEqual((error as? ImageError)?.kind, .missingFile)
      XCTAssertEqual("\(error)", "\(url.path): no such file")
    }
    XCTAssertThrowsError(try ImageCodec.decode(data: Data(), name: "empty.jpg")) { error in
      XCTAssertEqual((error as? ImageError)?.kind, .unknownFormat)
      XCTAssertTrue("\(error)".hasPrefix("empty.jpg: "))
    }
  }

  func testFormatComesFromMagicBytesNotTheName() throws {
    let png = Data(try ImageFixtures.bytes("png_rgb.png"))
    let fromPNG = try ImageCodec.decode(data: png, name: "misnamed.jpg")
    XCTAssertEqual(fromPNG, try ImageFixtures.image("png_rgb.png"))
    XCTAssertEqual(ImageFormat(detecting: png), .png)
    XCTAssertEqual(ImageFormat(detecting: Data([0xFF, 0xD8, 0xFF, 0xE0])), .jpeg)
    XCTAssertNil(ImageFormat(detecting: Data("GIF89a".utf8)))
  }

  /// The ISO media box starts HEIF images and MP4 videos alike: its brand tells them apart, so
  /// a video given as an image is called a video (it was called HEIF).
  func testAVideoGivenAsAnImageIsCalledAVideo() {
    func box(_ brand: String) -> Data {
      Data([0, 0, 0, 0x18] + Array("ftyp\(brand)".utf8) + [0, 0])
    }
    for (brand, words) in [("isom", "MP4/QuickTime video"), ("heic", "HEIF/AVIF")] {
      XCTAssertThrowsError(try ImageCodec.decode(data: box(brand), name: "x.png")) {
        XCTAssertEqual(($0 as? ImageError)?.kind, .unsupported)
        XCTAssertTrue("\($0)".contains(words), "\($0)")
      }
    }
  }

  /// Every prefix of a JPEG, and every prefix of a PNG that cuts into the image data, is refused
  /// with an error, never a crash or a silently grey-padded image. As in Pillow, a PNG may lack
  /// its 12-byte IEND chunk, a JPEG not even its EOI marker.
  func testEveryTruncationThrows() throws {
    for name in ["jpeg_baseline.jpg", "jpeg_progressive.jpg", "png_rgb.png"] {
      let full = try ImageFixtures.bytes(name)
      let trailer = name.hasSuffix(".png") ? 12 : 0
      if trailer > 0 {
        XCTAssertNoThrow(try ImageCodec.decode(data: Data(full.dropLast(trailer)), name: name))
      }
      for length in Array(stride(from: 0, to: full.count - trailer, by: 7)) + [full.count - 1] {
        if length >= full.count - trailer { continue }
        XCTAssertThrowsError(
          try ImageCodec.decode(data: Data(full[..<length]), name: name), "\(name)[..<\(length)]")
      }
    }
  }

  /// Damaged entropy-coded data makes libjpeg warn and carry on; that must neither abort nor
  /// print. Header damage must throw. stderr is captured to check that nothing is written.
  func testCorruptJPEGDataNeverAbortsOrPrints() throws {
    let original = try ImageFixtures.bytes("jpeg_baseline.jpg")
    var generator = RandomGenerator(seed: 11)
    var decoded = 0
    var refused = 0
    let printed = try capturingStandardError {
      for trial in 0..<150 {
        var damaged = original
        for _ in 0..<(1 + trial % 4) {
          let at = 2 + generator.nextInt(below: damaged.count - 2)
          damaged[at] = UInt8(truncatingIfNeeded: generator.next())
        }
        if let image = try? ImageCodec.decode(data: Data(damaged), name: "damaged.jpg") {
          XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
          decoded += 1
        } else {
          refused += 1
        }
      }
      _ = try? ImageCodec.decode(contentsOf: ImageFixtures.url("corrupt.jpg"))
      _ = try? ImageCodec.decode(contentsOf: ImageFixtures.url("corrupt.png"))
    }
    XCTAssertEqual(printed, "", "the codecs wrote to stderr")
    XCTAssertGreaterThan(decoded, 10, "damage in the entropy-coded data only warns")
    XCTAssertGreaterThan(refused, 10, "damage in the headers is an error")
  }

  /// Headers promising more pixels than Pillow's decompression-bomb limit (178,956,970) are
  /// refused before any allocation.
  func testTooManyPixelsIsUnsupported() throws {
    var jpeg = try ImageFixtures.bytes("jpeg_baseline.jpg")
    let sof = (0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }!
    jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: [0xEA, 0x60, 0xEA, 0x60])  // 60000²
    var png = try ImageFixtures.bytes("png_rgb.png")
    png.replaceSubrange(16..<24, with: [0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20])  // 20000²
    let crc = crc32(png[12..<29])
    png.replaceSubrange(
      29..<33, with: (0..<4).map { UInt8(truncatingIfNeeded: crc >> (24 - 8 * $0)) })
    for (name, bytes) in [("huge.jpg", jpeg), ("huge.png", png)] {
      XCTAssertThrowsError(try ImageCodec.decode(data: Data(bytes), name: name)) { error in
        XCTAssertEqual((error as? ImageError)?.kind, .unsupported, "\(error)")
      }
    }
  }

  /// Images above `ImageCodec.maxPixels` (by default Pillow's `MAX_IMAGE_PIXELS`, 89,478,485)
  /// are refused from their header, with the limit and how to raise it in the message.
  func testImagesAboveTheMaxPixelsLimitAreRefused() throws {
    XCTAssertEqual(ImageCodec.defaultMaxPixels, 89_478_485)
    XCTAssertEqual(ImageCodec.maxPixels, ImageCodec.defaultMaxPixels)
    var png = try ImageFixtures.bytes("png_rgb.png")
    png.replaceSubrange(16..<24, with: [0, 0, 0x27, 0x10, 0, 0, 0x23, 0x28])  // 10000 × 9000
    let crc = crc32(png[12..<29])
    png.replaceSubrange(
      29..<33, with: (0..<4).map { UInt8(truncatingIfNeeded: crc >> (24 - 8 * $0)) })
    XCTAssertThrowsError(try ImageCodec.decode(data: Data(png), name: "big.png")) {
      let text = "\($0)"
      XCTAssertEqual(($0 as? ImageError)?.kind, .unsupported, text)
      XCTAssertTrue(text.contains("90000000") && text.contains("--max-pixels"), text)
    }
    // A lower limit refuses a small image; the default reads it.
    let small = try ImageFixtures.bytes("png_rgb.png")
    let image = try ImageCodec.decode(data: Data(small), name: "small.png")
    ImageCodec.maxPixels = image.width * image.height - 1
    defer { ImageCodec.maxPixels = ImageCodec.defaultMaxPixels }
    XCTAssertThrowsError(try ImageCodec.decode(data: Data(small), name: "small.png")) {
      XCTAssertTrue("\($0)".contains("--max-pixels"), "\($0)")
    }
  }

  /// CRC-32 (IEEE, reflected), as PNG chunks use.
  private func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  func testPNGRoundTripIsLossless() throws {
    var generator = RandomGenerator(seed: 5)
    let pixels = (0..<(13 * 7 * 3)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let image = RGBImage(width: 13, height: 7, pixels: pixels)
    let data = try ImageCodec.encodePNG(image)
    XCTAssertEqual([UInt8](data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    XCTAssertEqual(try ImageCodec.decode(data: data, name: "roundtrip.png"), image)
  }

  func testJPEGRoundTripIsClose() throws {
    let photo = try ImageFixtures.image("resize_src.png")
    let high = try ImageCodec.encodeJPEG(photo, quality: 95)
    let low = try ImageCodec.encodeJPEG(photo, quality: 30)
    XCTAssertEqual([UInt8](high.prefix(3)), [0xFF, 0xD8, 0xFF])
    XCTAssertLessThan(low.count, high.count)
    let decoded = try ImageCodec.decode(data: high, name: "roundtrip.jpg")
    XCTAssertEqual(decoded.width, photo.width)
    XCTAssertEqual(decoded.height, photo.height)
    let meanError =
      zip(decoded.pixels, photo.pixels).reduce(0) { $0 + abs(Int($1.0) - Int($1.1)) }
      / photo.pixels.count
    XCTAssertLessThanOrEqual(meanError, 3)
    XCTAssertThrowsError(try ImageCodec.encodeJPEG(photo, quality: 0)) { error in
      XCTAssertEqual((error as? ImageError)?.kind, .invalidArgument)
    }
    let empty = RGBImage(width: 0, height: 0, pixels: [])
    XCTAssertThrowsError(try ImageCodec.encodePNG(empty))
  }

  func testWriteChoosesFormatByExtension() throws {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-image-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let image = try ImageFixtures.image("png_rgb.png")

    let png = folder.appendingPathComponent("out.PNG")
    try ImageCodec.write(image, to: png)
    XCTAssertEqual(ImageFormat(detecting: try Data(contentsOf: png)), .png)
    XCTAssertEqual(try ImageCodec.decode(contentsOf: png), image)

    let jpeg = folder.appendingPathComponent("out.jpeg")
    try ImageCodec.write(image, to: jpeg, quality: 80)
    XCTAssertEqual(ImageFormat(detecting: try Data(contentsOf: jpeg)), .jpeg)

    let bmp = folder.appendingPathComponent("out.bmp")
    XCTAssertThrowsError(try ImageCodec.write(image, to: bmp)) { error in
      XCTAssertEqual((error as? ImageError)?.kind, .unsupported)
      XCTAssertTrue("\(error)".hasPrefix(bmp.path))
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: bmp.path))
    let contents = try FileManager.default.contentsOfDirectory(atPath: folder.path)
    XCTAssertEqual(contents.sorted(), ["out.PNG", "out.jpeg"], "no temporary files left")
  }

  /// Runs `body` with file descriptor 2 redirected to a temporary file; returns what was written.
  private func capturingStandardError(_ body: () throws -> Void) throws -> String {
    let path = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-stderr-\(UInt64.random(in: 0...UInt64.max))").path
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    XCTAssertGreaterThanOrEqual(fd, 0)
    fflush(nil)  // every C stream
    let saved = dup(2)
    dup2(fd, 2)
    defer {
      fflush(nil)  // every C stream
      dup2(saved, 2)
      close(saved)
      close(fd)
    }
    try body()
    fflush(nil)  // every C stream
    let text = try String(contentsOfFile: path, encoding: .utf8)
    try? FileManager.default.removeItem(atPath: path)
    return text
  }
}

/// Files at the edges of the formats, written by Tools/make_codec_edge_fixtures.py, against
/// Pillow's `Image.open(f).convert("RGB")`.
final class ImageCodecEdgeTests: XCTestCase {
  private func url(_ name: String) -> URL { ImageFixtures.url("edges/" + name) }

  /// A side over libpng's default limit of 1,000,000 pixels (Pillow opens it; Graft said
  /// "Invalid IHDR data"): the whole pattern decodes.
  func testPNGSidesOverAMillionPixelsDecode() throws {
    let wide = try ImageCodec.decode(contentsOf: url("png_wide_1000001.png"))
    XCTAssertEqual([wide.width, wide.height], [1_000_001, 1])
    let tall = try ImageCodec.decode(contentsOf: url("png_tall_1000001.png"))
    XCTAssertEqual([tall.width, tall.height], [1, 1_000_001])
    var wrong = (wide: 0, tall: 0)
    for x in 0..<1_000_001 {
      let pixel = wide.pixels[(3 * x)..<(3 * x + 3)]
      if Array(pixel) != [UInt8(x % 251), UInt8(7 * x % 253), UInt8(13 * x % 255)] {
        wrong.wide += 1
      }
      if tall.pixels[(3 * x)..<(3 * x + 3)] != [UInt8(x % 256), UInt8(x % 256), UInt8(x % 256)] {
        wrong.tall += 1
      }
    }
    XCTAssertEqual(wrong.wide, 0)
    XCTAssertEqual(wrong.tall, 0)
  }

  /// Netpbm samples below or above 8 bits scale as Pillow's decoders do, round(v / maxval · 255)
  /// with ties to even: 30 at maxval 100 is 76 (rounding halves up gave 77), in binary and
  /// plain files, and two-byte samples at maxval 1000.
  func testNetpbmScalesSamplesAsPillowDoes() throws {
    for name in ["pgm_maxval100", "pgm_plain_maxval100", "ppm_maxval1000"] {
      let file = name.hasPrefix("ppm") ? name + ".ppm" : name + ".pgm"
      let image = try PNMCodec.decode(contentsOf: url(file))
      let expected = [UInt8](try Data(contentsOf: url(name + ".rgb")))
      XCTAssertEqual(image.pixels.count, expected.count, file)
      let (worst, count) = ImageFixtures.compare(image.pixels, expected)
      XCTAssertEqual(count, 0, "\(file): \(count) bytes differ, by up to \(worst)")
    }
  }

  /// A FIFO named like an image is refused as not a regular file; reading its first bytes to
  /// tell Netpbm from PNG waited for a writer for ever before.
  func testAFIFONamedLikeAnImageIsRefusedNotWaitedOn() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-fifo-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let fifo = folder.appendingPathComponent("frame.pgm")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var outcome = ""
    Thread.detachNewThread {
      do {
        _ = try ImageCodec.decodeAnyFormat(contentsOf: fifo)
        outcome = "decoded"
      } catch {
        outcome = "\(error)"
      }
      done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else {
      return XCTFail("decoding a FIFO still waits after 10 s")
    }
    XCTAssertTrue(outcome.contains("frame.pgm") && outcome.contains("regular file"), outcome)
  }

  /// A lossless JPEG (SOF3) is a valid file this libjpeg cannot decode: unsupported, with a
  /// hint, not "corrupt".
  func testALosslessJPEGIsUnsupportedNotCorrupt() throws {
    // SOI, then SOF3: precision 8, 8 × 8, one component (id 1, sampling 1×1, table 0).
    let bytes: [UInt8] = [
      0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00,
    ]
    var thrown: Error? = nil
    XCTAssertThrowsError(try ImageCodec.decode(data: Data(bytes), name: "lossless.jpg")) {
      thrown = $0
    }
    // libjpeg-turbo 3 decodes lossless JPEG; this header alone then ends as a truncated file.
    if !"\(thrown.map { "\($0)" } ?? "")".contains("SOF type") {
      throw XCTSkip("this libjpeg reads lossless JPEG (\(thrown.map { "\($0)" } ?? "no error"))")
    }
    XCTAssertEqual((thrown as? ImageError)?.kind, .unsupported, "\(thrown!)")
    XCTAssertTrue("\(thrown!)".contains("lossless"), "\(thrown!)")
  }
}
