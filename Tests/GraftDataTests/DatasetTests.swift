import Foundation
import XCTest

@testable import GraftData

/// A fresh temporary folder per test, removed afterwards.
class TemporaryFolderTestCase: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: folder)
  }

  /// Writes `bytes` to `relative` under the folder, creating parent folders.
  @discardableResult
  func write(_ relative: String, _ bytes: [UInt8]) throws -> URL {
    let url = folder.appendingPathComponent(relative)
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
    return url
  }

  @discardableResult
  func write(_ relative: String, text: String) throws -> URL {
    try write(relative, Array(text.utf8))
  }

  /// A binary PGM (P5) whose every pixel is `value`, written by hand.
  func grey(_ value: UInt8, width: Int = 2, height: Int = 1) -> [UInt8] {
    Array("P5 \(width) \(height) 255\n".utf8) + [UInt8](repeating: value, count: width * height)
  }

  /// The fixtures written by `Fixtures/datasets/make_fixtures.py`.
  func fixture(_ name: String) throws -> URL {
    let fixtures = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return fixtures.appendingPathComponent("datasets").appendingPathComponent(name)
  }
}

/// Asserts that `body` throws a `DatasetError` of `kind` whose description contains every one of
/// `fragments` (the path, a line number, …).
func assertDatasetError<T>(
  _ kind: DatasetError.Kind, _ fragments: [String], file: StaticString = #filePath,
  line: UInt = #line, _ body: () throws -> T
) {
  do {
    _ = try body()
    XCTFail("expected a \(kind) error", file: file, line: line)
  } catch let error as DatasetError {
    XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
    for f in fragments {
      XCTAssertTrue(
        error.description.contains(f), "'\(error)' does not mention '\(f)'", file: file,
        line: line)
    }
  } catch {
    XCTFail("expected a DatasetError, got \(error)", file: file, line: line)
  }
}

let pnmDecoder: ImageDecoder = { try PNMCodec.decode(contentsOf: $0) }

final class PNMTests: TemporaryFolderTestCase {
  func testBinaryPPMAndGreyPGM() throws {
    let ppm = try PNMCodec.decode(Array("P6\n2 1\n255\n".utf8) + [1, 2, 3, 250, 251, 252])
    XCTAssertEqual(ppm, RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 250, 251, 252]))
    let pgm = try PNMCodec.decode(Array("P5 1 2 255\n".utf8) + [7, 200])
    XCTAssertEqual(pgm, RGBImage(width: 1, height: 2, pixels: [7, 7, 7, 200, 200, 200]))
  }

  func testASCIIFormatsWithCommentsAndScaling() throws {
    // maxval 15: 15 → 255, 7 → 7·255/15 = 119, 8 → 136.
    let pgm = try PNMCodec.decode(Array("P2\n# a comment\n3 1 # size\n15\n15 7\n8\n".utf8))
    XCTAssertEqual(pgm.pixels, [255, 255, 255, 119, 119, 119, 136, 136, 136])
    let ppm = try PNMCodec.decode(Array("P3 1 1 255  10 20 30".utf8))
    XCTAssertEqual(ppm.pixels, [10, 20, 30])
    // PBM: 1 is black; bits may run together.
    let pbm = try PNMCodec.decode(Array("P1 3 1\n1 01".utf8))
    XCTAssertEqual(pbm.pixels, [0, 0, 0, 255, 255, 255, 0, 0, 0])
  }

  func testPackedBitmapAndSixteenBitSamples() throws {
    // Width 10: each row takes two bytes, the last 6 bits padding.
    let pbm = try PNMCodec.decode(Array("P4 10 1\n".utf8) + [0b1000_0001, 0b0100_0000])
    XCTAssertEqual(
      stride(from: 0, to: 30, by: 3).map { pbm.pixels[$0] },
      [0, 255, 255, 255, 255, 255, 255, 0, 255, 0])
    // 0x8000 of 65535 → 32768·255/65535 = 127.50… → 128; 0xFFFF → 255.
    let wide = try PNMCodec.decode(Array("P5 2 1 65535\n".utf8) + [0x80, 0x00, 0xFF, 0xFF])
    XCTAssertEqual(wide.pixels, [128, 128, 128, 255, 255, 255])
  }

  /// A header promising far more samples than the file holds is refused before the raster is
  /// allocated (65536² RGB would be 12.9 GB from a 22-byte file), as is one above the pixel
  /// limit of the PNG and JPEG decoders.
  func testAHeaderPromisingMoreThanTheFileHoldsIsRefusedBeforeAllocating() throws {
    // 9000² is under the pixel limit: only the size check stops it.
    for side in [65536, 9000] {
      for kind in ["P1", "P2", "P3", "P4", "P5", "P6"] {
        let maxval = kind == "P1" || kind == "P4" ? "" : " 255"
        let bytes = Array("\(kind) \(side) \(side)\(maxval)\n".utf8) + [1, 2, 3]
        XCTAssertThrowsError(try PNMCodec.decode(bytes, path: "bomb")) {
          XCTAssertTrue("\($0)".contains("bomb"), "\(kind): \($0)")
        }
      }
    }
    ImageCodec.maxPixels = 4
    defer { ImageCodec.maxPixels = ImageCodec.defaultMaxPixels }
    XCTAssertThrowsError(try PNMCodec.decode(Array("P5 3 2 255\n".utf8) + [1, 2, 3, 4, 5, 6])) {
      XCTAssertTrue("\($0)".contains("--max-pixels"), "\($0)")
    }
  }

  func testMalformedFilesAreErrorsNamingTheFile() throws {
    let truncated = try write("short.ppm", Array("P6 2 2 255\n".utf8) + [1, 2, 3])
    assertDatasetError(.invalidFormat, [truncated.path, "truncated"]) {
      try PNMCodec.decode(contentsOf: truncated)
    }
    let png = try write("x.ppm", [0x89, 0x50, 0x4E, 0x47])
    assertDatasetError(.invalidFormat, [png.path, "Netpbm"]) {
      try PNMCodec.decode(contentsOf: png)
    }
    let overflow = try write("o.pgm", Array("P2 1 1 10 11".utf8))
    assertDatasetError(.invalidFormat, ["exceeds maxval"]) {
      try PNMCodec.decode(contentsOf: overflow)
    }
    assertDatasetError(.notFound, ["missing.ppm"]) {
      try PNMCodec.decode(contentsOf: self.folder.appendingPathComponent("missing.ppm"))
    }
  }

  func testEncodeWritesBinaryPPM() throws {
    let image = RGBImage(width: 1, height: 1, pixels: [9, 8, 7])
    XCTAssertEqual(PNMCodec.encode(image), Array("P6\n1 1\n255\n".utf8) + [9, 8, 7])
  }
}

final class ImageFolderTests: TemporaryFolderTestCase {
  func testImageFolderMatchesTorchvisionOrder() throws {
    // Tree and expected order from Fixtures/datasets/imagefolder_order.py (torchvision 0.29).
    for (i, f) in [
      "cat/B.ppm", "cat/a.ppm", "cat/z.JPG", "cat/sub/c.ppm", "cat/sub-x/d.ppm",
      "cat/sub/deeper/e.ppm", "Dog/y.png", "éclair/w.ppm", "éclair/v.pgm",
    ].enumerated() {
      try write(f, grey(UInt8(i)))
    }
    try write("cat/notes.txt", text: "not an image")
    try write("cat/.hidden.ppm", grey(99))
    try write(".ipynb_checkpoints/x.ppm", grey(99))
    try write("stray.ppm", grey(99))
    let dataset = try ImageFolderDataset(root: folder, decoder: pnmDecoder)
    XCTAssertEqual(dataset.classNames, ["Dog", "cat", "éclair"])
    let relative = dataset.files.map { String($0.path.dropFirst(folder.path.count + 1)) }
    XCTAssertEqual(
      relative,
      [
        "Dog/y.png", "cat/B.ppm", "cat/a.ppm", "cat/z.JPG", "cat/sub/c.ppm", "cat/sub-x/d.ppm",
        "cat/sub/deeper/e.ppm", "éclair/v.pgm", "éclair/w.ppm",
      ])
    XCTAssertEqual(dataset.labels, [0, 1, 1, 1, 1, 1, 1, 2, 2])
    XCTAssertEqual(dataset.count, 9)
    // Sample 1 is cat/B.ppm, written first (grey 0); sample 7 is éclair/v.pgm (grey 8).
    XCTAssertEqual(try dataset.image(at: 1).pixels, [UInt8](repeating: 0, count: 6))
    XCTAssertEqual(try dataset.item(at: 7).sample.pixels, [UInt8](repeating: 8, count: 6))
    XCTAssertEqual(try dataset.item(at: 7).label, 2)
    XCTAssertEqual(dataset.classCounts, [1, 6, 2])
  }

  /// Two subfolders whose names differ only in Unicode normalisation (`é` as one code point
  /// and as `e` + U+0301) are two folders: both images count (the second was silently dropped,
  /// the paths comparing equal as Swift strings), and a link back up still ends the walk.
  func testSubfoldersDifferingInNormalisationAreBothRead() throws {
    try write("cat/sub\u{E9}/a.ppm", grey(1))
    try write("cat/sube\u{301}/b.ppm", grey(2))
    try write("dog/c.ppm", grey(3))
    try FileManager.default.createSymbolicLink(
      atPath: folder.appendingPathComponent("cat/up").path, withDestinationPath: "..")
    let dataset = try ImageFolderDataset(root: folder, decoder: pnmDecoder)
    XCTAssertEqual(dataset.classNames, ["cat", "dog"])
    let names = dataset.files.map(\.lastPathComponent)
    XCTAssertEqual(names.filter { $0 == "a.ppm" || $0 == "b.ppm" }.count, 2, "\(names)")
  }

  func testImageFolderErrorsNameThePath() throws {
    let missing = folder.appendingPathComponent("nowhere")
    assertDatasetError(.notFound, [missing.path]) {
      try ImageFolderDataset(root: missing, decoder: pnmDecoder)
    }
    try write("flat/a.ppm", grey(1))
    let flat = folder.appendingPathComponent("flat")
    assertDatasetError(.empty, [flat.path, "no class folders"]) {
      try ImageFolderDataset(root: flat, decoder: pnmDecoder)
    }
    try write("tree/cat/a.ppm", grey(1))
    try write("tree/dog/readme.txt", text: "no images here")
    assertDatasetError(.empty, [folder.appendingPathComponent("tree/dog").path]) {
      try ImageFolderDataset(root: self.folder.appendingPathComponent("tree"), decoder: pnmDecoder)
    }
    assertDatasetError(.invalidArgument, ["is a file"]) {
      try ImageFolderDataset(
        root: self.folder.appendingPathComponent("flat/a.ppm"), decoder: pnmDecoder)
    }
  }

  func testDecoderFailureNamesTheFile() throws {
    try write("root/cat/good.ppm", grey(3))
    let bad = try write("root/cat/bad.png", [0x89, 0x50, 0x4E, 0x47])
    let dataset = try ImageFolderDataset(
      root: folder.appendingPathComponent("root"), decoder: pnmDecoder)
    XCTAssertEqual(dataset.files.map(\.lastPathComponent), ["bad.png", "good.ppm"])
    assertDatasetError(.invalidFormat, [bad.path]) { try dataset.image(at: 0) }
    // A decoder's own (non-Dataset) error is wrapped with the path.
    struct Opaque: Error {}
    let failing = try ImageFolderDataset(
      root: folder.appendingPathComponent("root"), decoder: { _ in throw Opaque() })
    assertDatasetError(.decodeFailed, [bad.path, "Opaque"]) { try failing.image(at: 0) }
  }
}

final class VTABListTests: TemporaryFolderTestCase {
  func testReadsSplitListsRelativeToRoot() throws {
    try write("images/a.ppm", grey(10))
    try write("images/b c.ppm", grey(20))
    try write("train800.txt", text: "images/a.ppm 0\nimages/b c.ppm 2\r\n\n/abs/path.jpg 1\n")
    let dataset = try VTABListDataset(root: folder, split: .train800, decoder: pnmDecoder)
    XCTAssertEqual(dataset.count, 3)
    XCTAssertEqual(dataset.labels, [0, 2, 1])
    XCTAssertEqual(dataset.classNames, ["0", "1", "2"])
    XCTAssertEqual(dataset.files[1].path, folder.appendingPathComponent("images/b c.ppm").path)
    XCTAssertEqual(dataset.files[2].path, "/abs/path.jpg")
    XCTAssertEqual(try dataset.image(at: 1).pixels.first, 20)
    assertDatasetError(.notFound, ["/abs/path.jpg"]) { try dataset.image(at: 2) }

    let wide = try VTABListDataset(
      root: folder, split: .train800, classCount: 5, decoder: pnmDecoder)
    XCTAssertEqual(wide.classNames.count, 5)
    XCTAssertEqual(
      VTABSplit.allCases.map(\.fileName),
      [
        "train800.txt", "val200.txt", "train800val200.txt", "test.txt",
      ])
  }

  /// A list written on Windows ("\r\n" after every line) reads as the same list, and an error
  /// still names the right line.
  func testListsWithWindowsLineEnds() throws {
    try write("images/a.ppm", grey(10))
    try write("train800.txt", text: "images/a.ppm 0\r\nimages/a.ppm 2\r\n")
    let dataset = try VTABListDataset(root: folder, split: .train800, decoder: pnmDecoder)
    XCTAssertEqual(dataset.labels, [0, 2])
    let image = folder.appendingPathComponent("images/a.ppm").path
    XCTAssertEqual(dataset.files.map(\.path), [image, image])
    let list = try write("val200.txt", text: "a.ppm 0\r\n\r\nb.ppm one\r\n")
    assertDatasetError(.invalidFormat, ["\(list.path):3:", "'one'"]) {
      try VTABListDataset(root: self.folder, split: .val200, decoder: pnmDecoder)
    }
  }

  func testMalformedListsNameFileAndLine() throws {
    let list = try write("val200.txt", text: "a.ppm 0\nb.ppm 1\nc.ppm\n")
    assertDatasetError(.invalidFormat, ["\(list.path):3:", "path label"]) {
      try VTABListDataset(root: self.folder, split: .val200, decoder: pnmDecoder)
    }
    try write("val200.txt", text: "a.ppm 0\n\nb.ppm one\n")
    assertDatasetError(.invalidFormat, ["\(list.path):3:", "'one'"]) {
      try VTABListDataset(root: self.folder, split: .val200, decoder: pnmDecoder)
    }
    try write("val200.txt", text: "a.ppm -1\n")
    assertDatasetError(.invalidFormat, ["\(list.path):1:"]) {
      try VTABListDataset(root: self.folder, split: .val200, decoder: pnmDecoder)
    }
    try write("val200.txt", text: "a.ppm 0\nb.ppm 7\n")
    assertDatasetError(.invalidFormat, ["\(list.path):2:", "0..<5"]) {
      try VTABListDataset(root: self.folder, split: .val200, classCount: 5, decoder: pnmDecoder)
    }
    try write("val200.txt", text: "\n  \n")
    assertDatasetError(.empty, [list.path]) {
      try VTABListDataset(root: self.folder, split: .val200, decoder: pnmDecoder)
    }
    assertDatasetError(.notFound, [folder.appendingPathComponent("test.txt").path]) {
      try VTABListDataset(root: self.folder, split: .test, decoder: pnmDecoder)
    }
  }
}

final class IDXTests: TemporaryFolderTestCase {
  /// An IDX file written byte by byte: magic, big-endian dims, data.
  func idx(_ magic: UInt8, _ dims: [Int], _ data: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, 0x08, magic]
    for d in dims {
      bytes += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)]
    }
    return bytes + data
  }

  func testPlainIDXGreyBecomesRGB() throws {
    let images = try write("img", idx(3, [2, 1, 2], [1, 2, 3, 4]))
    let labels = try write("lbl", idx(1, [2], [4, 0]))
    let dataset = try IDXDataset(images: images, labels: labels)
    XCTAssertEqual(dataset.count, 2)
    XCTAssertEqual(dataset.rows, 1)
    XCTAssertEqual(dataset.columns, 2)
    XCTAssertEqual(dataset.labels, [4, 0])
    XCTAssertEqual(dataset.classNames, ["0", "1", "2", "3", "4"])
    XCTAssertEqual(
      try dataset.image(at: 1), RGBImage(width: 2, height: 1, pixels: [3, 3, 3, 4, 4, 4]))
  }

  func testGzipFixturesFromPython() throws {
    let dataset = try IDXDataset(
      images: fixture("tiny-images-idx3-ubyte.gz"), labels: fixture("tiny-labels-idx1-ubyte.gz"),
      classNames: ["a", "b", "c"])
    XCTAssertEqual(dataset.count, 3)
    XCTAssertEqual(dataset.rows, 2)
    XCTAssertEqual(dataset.columns, 3)
    XCTAssertEqual(dataset.labels, [2, 0, 1])
    // Pixel p of image k is 10k + p.
    let image = try dataset.image(at: 2)
    XCTAssertEqual(image.width, 3)
    XCTAssertEqual(image.height, 2)
    XCTAssertEqual(
      stride(from: 0, to: 18, by: 3).map { image.pixels[$0] }, [20, 21, 22, 23, 24, 25])
    // Two concatenated gzip members read as their concatenation.
    let twoMembers = try IDXDataset(
      images: fixture("tiny-images-idx3-ubyte.gz"),
      labels: fixture("two-member-labels-idx1-ubyte.gz"))
    XCTAssertEqual(twoMembers.labels, [2, 0, 1])
  }

  func testStandardFileNamesInAFolder() throws {
    let gz = try Data(contentsOf: fixture("tiny-images-idx3-ubyte.gz"))
    try write("mnist/t10k-images-idx3-ubyte.gz", [UInt8](gz))
    try write("mnist/t10k-labels-idx1-ubyte", idx(1, [3], [1, 1, 0]))
    let mnist = folder.appendingPathComponent("mnist")
    let test = try IDXDataset(directory: mnist, train: false)
    XCTAssertEqual(test.labels, [1, 1, 0])
    assertDatasetError(.notFound, [mnist.path, "train-images-idx3-ubyte"]) {
      try IDXDataset(directory: mnist, train: true)
    }
  }

  func testMalformedIDXErrorsNameTheFile() throws {
    let images = try write("img", idx(3, [2, 1, 2], [1, 2, 3, 4]))
    let labels = try write("lbl", idx(1, [2], [4, 0]))
    // Swapped files: wrong magic for each role.
    assertDatasetError(.invalidFormat, [labels.path, "00 00 08 01"]) {
      try IDXDataset(images: labels, labels: images)
    }
    let notIDX = try write("text", Array("hello, world, this is text".utf8))
    assertDatasetError(.invalidFormat, [notIDX.path, "not an IDX file"]) {
      try IDXDataset(images: notIDX, labels: labels)
    }
    let floats = try write(
      "floats", [0, 0, 0x0D, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    assertDatasetError(.invalidFormat, [floats.path, "0x0d"]) {
      try IDXDataset(images: floats, labels: labels)
    }
    let short = try write("short", idx(3, [2, 1, 2], [1, 2, 3]))
    assertDatasetError(.invalidFormat, [short.path, "4 bytes", "has 3"]) {
      try IDXDataset(images: short, labels: labels)
    }
    let three = try write("three", idx(1, [3], [0, 1, 2]))
    assertDatasetError(.mismatch, [three.path, "3 labels", "2 images"]) {
      try IDXDataset(images: images, labels: three)
    }
    let lying = try write("lying", idx(1, [3], [0, 1]))
    assertDatasetError(.invalidFormat, [lying.path, "3 labels"]) {
      try IDXDataset(images: images, labels: lying)
    }
    assertDatasetError(.invalidFormat, [labels.path, "outside"]) {
      try IDXDataset(images: images, labels: labels, classNames: ["only", "two"])
    }
  }

  func testBrokenGzipIsAnError() throws {
    let good = [UInt8](try Data(contentsOf: fixture("tiny-images-idx3-ubyte.gz")))
    let labels = try fixture("tiny-labels-idx1-ubyte.gz")
    let cut = try write("cut.gz", Array(good.prefix(good.count - 12)))
    assertDatasetError(.invalidFormat, [cut.path, "truncated"]) {
      try IDXDataset(images: cut, labels: labels)
    }
    // Changing the stored CRC-32 (the trailer's first 4 bytes) must be caught.
    var crc = good
    crc[crc.count - 8] ^= 0xFF
    let badCRC = try write("crc.gz", crc)
    assertDatasetError(.invalidFormat, [badCRC.path, "corrupt"]) {
      try IDXDataset(images: badCRC, labels: labels)
    }
    let trailing = try write("trailing.gz", good + Array("junk".utf8))
    assertDatasetError(.invalidFormat, [trailing.path, "after the end"]) {
      try IDXDataset(images: trailing, labels: labels)
    }
    // Zero padding after the stream (tape blocks) is allowed, as gzip allows it.
    let padded = try write("padded.gz", good + [0, 0, 0, 0])
    XCTAssertEqual(try IDXDataset(images: padded, labels: labels).count, 3)
  }

  /// Real data when present: Debian's `dataset-fashion-mnist` (installed by the CI setup), or a
  /// folder named by `GRAFT_FASHION_MNIST_DIR`.
  func testFashionMNISTTestSetWhenInstalled() throws {
    let path =
      ProcessInfo.processInfo.environment["GRAFT_FASHION_MNIST_DIR"]
      ?? "/usr/share/datasets/fashion-mnist"
    guard FileManager.default.fileExists(atPath: path + "/t10k-images-idx3-ubyte.gz") else {
      throw XCTSkip("Fashion-MNIST not installed at \(path)")
    }
    let test = try IDXDataset(
      directory: URL(fileURLWithPath: path), train: false,
      classNames: IDXDataset.fashionMNISTClassNames)
    XCTAssertEqual(test.count, 10_000)
    XCTAssertEqual(test.rows, 28)
    XCTAssertEqual(test.columns, 28)
    // The published test set holds exactly 1,000 images of each of the 10 classes.
    XCTAssertEqual(test.classCounts, [Int](repeating: 1000, count: 10))
    let image = try test.image(at: 0)
    XCTAssertEqual(image.pixels.count, 28 * 28 * 3)
    XCTAssertGreaterThan(image.pixels.max() ?? 0, 0)
  }
}

final class PixelCSVTests: TemporaryFolderTestCase {
  func testLabelLastScaledByMaxValue() throws {
    // maxValue 4: 1 → 63.75 → 64, 2 → 127.5 → 128, 3 → 191.25 → 191, 4 → 255.
    let csv = try write("d.csv", text: "0,1,2,4,3\n 4, 3 ,0,0,1\r\n\n")
    let dataset = try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    XCTAssertEqual(dataset.count, 2)
    XCTAssertEqual(dataset.labels, [3, 1])
    XCTAssertEqual(dataset.classNames, ["0", "1", "2", "3"])
    XCTAssertEqual(
      try dataset.image(at: 0),
      RGBImage(
        width: 2, height: 2, pixels: [0, 0, 0, 64, 64, 64, 128, 128, 128, 255, 255, 255]))
    XCTAssertEqual(
      stride(from: 0, to: 12, by: 3).map { try! dataset.image(at: 1).pixels[$0] }, [255, 191, 0, 0])
  }

  func testLabelFirstWithHeaderAndDecimals() throws {
    let csv = try write("k.csv", text: "label,p0,p1\n7,0.5,1.0\n2,1e-1,0\n")
    let dataset = try PixelCSVDataset(
      url: csv, width: 2, height: 1, labelColumn: .first, maxValue: 1, hasHeader: true)
    XCTAssertEqual(dataset.labels, [7, 2])
    // 0.5·255 = 127.5 → 128; 0.1·255 = 25.5 → 26.
    XCTAssertEqual(try dataset.image(at: 0).pixels, [128, 128, 128, 255, 255, 255])
    XCTAssertEqual(try dataset.image(at: 1).pixels, [26, 26, 26, 0, 0, 0])
  }

  func testGzipFixture() throws {
    let dataset = try PixelCSVDataset(
      url: fixture("pixels.csv.gz"), width: 2, height: 2, maxValue: 4)
    XCTAssertEqual(dataset.labels, [3, 1])
    // Second row: 4,4,0,0 → 255,255,0,0.
    XCTAssertEqual(
      stride(from: 0, to: 12, by: 3).map { try! dataset.image(at: 1).pixels[$0] }, [255, 255, 0, 0])
  }

  /// Real data when present: the repository's `Data/digits/digits.csv` (scikit-learn's copy of
  /// the UCI digits, 8×8, values 0–16, label last).
  func testSklearnDigitsWhenPresent() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    let csv = root.appendingPathComponent("Data/digits/digits.csv")
    guard FileManager.default.fileExists(atPath: csv.path) else {
      throw XCTSkip("\(csv.path) is not in this checkout")
    }
    let digits = try PixelCSVDataset(url: csv, width: 8, height: 8, maxValue: 16)
    XCTAssertEqual(digits.count, 1797)
    // Class sizes counted with Python's csv reading of the same file.
    XCTAssertEqual(digits.classCounts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    // First row starts 0,0,5,13,9,1,0,0 (label 0): 5 → 79.69 → 80, 13 → 207.19 → 207.
    XCTAssertEqual(digits.labels[0], 0)
    let first = try digits.image(at: 0)
    XCTAssertEqual(
      stride(from: 0, to: 24, by: 3).map { first.pixels[$0] }, [0, 0, 80, 207, 143, 16, 0, 0])
  }

  func testMalformedRowsNameFileAndLine() throws {
    let csv = try write("bad.csv", text: "0,1,2,3,1\n0,1,2,1\n")
    assertDatasetError(.mismatch, ["\(csv.path):2:", "expected 5 values", "found 4"]) {
      try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    }
    try write("bad.csv", text: "0,1,2,3,1\n\n0,x,2,3,1\n")
    assertDatasetError(.invalidFormat, ["\(csv.path):3:", "'x'", "column 2"]) {
      try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    }
    try write("bad.csv", text: "0,1,2,5,1\n")
    assertDatasetError(.invalidFormat, ["\(csv.path):1:", "outside"]) {
      try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    }
    try write("bad.csv", text: "0,1,2,3,1.5\n")
    assertDatasetError(.invalidFormat, ["\(csv.path):1:", "label"]) {
      try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    }
    try write("bad.csv", text: "\n\n")
    assertDatasetError(.empty, [csv.path]) {
      try PixelCSVDataset(url: csv, width: 2, height: 2, maxValue: 4)
    }
    assertDatasetError(.notFound, ["nope.csv"]) {
      try PixelCSVDataset(
        url: self.folder.appendingPathComponent("nope.csv"), width: 2, height: 2)
    }
  }
}

final class SamplingTests: XCTestCase {
  /// 5 classes × 20 samples, labels interleaved; image `i` is grey `i`.
  func makeDataset(perClass: Int = 20, classes: Int = 5) throws -> InMemoryDataset {
    let n = perClass * classes
    return try InMemoryDataset(
      images: (0..<n).map { RGBImage(width: 1, height: 1, pixels: [UInt8($0), 0, 0]) },
      labels: (0..<n).map { ($0 * 7) % classes })
  }

  func testSubsetMapsIndices() throws {
    let base = try makeDataset()
    let subset = try Subset(base, indices: [9, 3, 9])
    XCTAssertEqual(subset.count, 3)
    XCTAssertEqual(subset.labels, [(9 * 7) % 5, (3 * 7) % 5, (9 * 7) % 5])
    XCTAssertEqual(try subset.image(at: 1).pixels[0], 3)
    XCTAssertEqual(subset.classNames, base.classNames)
    assertDatasetError(.invalidArgument, ["100"]) { try Subset(base, indices: [0, 100]) }
  }

  func testFewShotTakesKPerClassDeterministically() throws {
    let dataset = try makeDataset()
    let a = try FewShot.sample(dataset, perClass: 3, seed: 42)
    XCTAssertEqual(a, try FewShot.sample(dataset, perClass: 3, seed: 42))
    XCTAssertNotEqual(a, try FewShot.sample(dataset, perClass: 3, seed: 43))
    XCTAssertEqual(a, a.sorted())
    XCTAssertEqual(Set(a).count, 15)
    var perClass = [Int](repeating: 0, count: 5)
    for i in a { perClass[dataset.labels[i]] += 1 }
    XCTAssertEqual(perClass, [3, 3, 3, 3, 3])
    let subset = try FewShot.subset(dataset, perClass: 3, seed: 42)
    XCTAssertEqual(subset.indices, a)
    XCTAssertEqual(subset.classCounts, [3, 3, 3, 3, 3])
  }

  func testFewShotIsUniformWithinAClass() throws {
    // One class of 4 samples, k = 1: over 4,000 seeds each sample should come up about 1,000
    // times (binomial sd ≈ 27; allow 5 sd).
    let dataset = try InMemoryDataset(
      images: [RGBImage](repeating: RGBImage(width: 1, height: 1, pixels: [0, 0, 0]), count: 4),
      labels: [0, 0, 0, 0])
    var hits = [0, 0, 0, 0]
    for seed in 0..<4000 {
      hits[try FewShot.sample(dataset, perClass: 1, seed: UInt64(seed))[0]] += 1
    }
    for h in hits { XCTAssertEqual(Double(h), 1000, accuracy: 137) }
  }

  func testFewShotErrorsWhenAClassIsShort() throws {
    let dataset = try InMemoryDataset(
      images: [RGBImage](repeating: RGBImage(width: 1, height: 1, pixels: [0, 0, 0]), count: 5),
      labels: [0, 0, 0, 1, 1], classNames: ["many", "few"])
    XCTAssertEqual(try FewShot.sample(dataset, perClass: 2, seed: 1).count, 4)
    assertDatasetError(.tooFewSamples, ["'few'", "2 samples", "3"]) {
      try FewShot.sample(dataset, perClass: 3, seed: 1)
    }
    // A class without any sample is short too.
    let absent = try InMemoryDataset(
      images: dataset.images, labels: dataset.labels, classNames: ["many", "few", "none"])
    assertDatasetError(.tooFewSamples, ["'none'", "0 samples"]) {
      try FewShot.sample(absent, perClass: 1, seed: 1)
    }
    assertDatasetError(.invalidArgument, ["positive"]) {
      try FewShot.sample(dataset, perClass: 0, seed: 1)
    }
  }

  func testSeededSplits() throws {
    let dataset = try makeDataset()
    let (train, validation) = try DatasetSplit.random(dataset, validationCount: 30, seed: 5)
    XCTAssertEqual(validation.count, 30)
    XCTAssertEqual(train.count, 70)
    XCTAssertEqual(Set(train + validation), Set(0..<100))
    XCTAssertEqual(train, train.sorted())
    XCTAssertEqual(
      try DatasetSplit.random(dataset, validationCount: 30, seed: 5).validation, validation)
    XCTAssertNotEqual(
      try DatasetSplit.random(dataset, validationCount: 30, seed: 6).validation, validation)
    assertDatasetError(.invalidArgument, ["101"]) {
      try DatasetSplit.random(dataset, validationCount: 101, seed: 0)
    }

    let strat = try DatasetSplit.stratified(dataset, validationPerClass: 4, seed: 9)
    XCTAssertEqual(strat.validation.count, 20)
    XCTAssertEqual(Set(strat.train + strat.validation), Set(0..<100))
    XCTAssertTrue(Set(strat.train).isDisjoint(with: strat.validation))
    XCTAssertEqual(try Subset(dataset, indices: strat.validation).classCounts, [4, 4, 4, 4, 4])
  }

  func testInMemoryDatasetChecksLabels() throws {
    let image = RGBImage(width: 1, height: 1, pixels: [0, 0, 0])
    assertDatasetError(.mismatch, ["1 images but 2 labels"]) {
      try InMemoryDataset(images: [image], labels: [0, 1])
    }
    assertDatasetError(.invalidArgument, ["label 2"]) {
      try InMemoryDataset(images: [image], labels: [2], classNames: ["a", "b"])
    }
  }
}
