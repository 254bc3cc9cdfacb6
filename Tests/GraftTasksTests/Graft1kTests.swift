import XCTest

@testable import GraftTasks

final class Graft1kTests: XCTestCase {
  /// A 3×2 image with distinct pixels turned as `numpy.rot90` turns it.
  func testQuarterTurnsMatchNumpyRot90() {
    // Grey values 1…6, row-major: [[1, 2, 3], [4, 5, 6]].
    let image = RGBImage(
      width: 3, height: 2, pixels: (1...6).flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    func grey(_ i: RGBImage) -> [UInt8] {
      stride(from: 0, to: i.pixels.count, by: 3).map { i.pixels[$0] }
    }
    // np.rot90(a, 1) = [[3, 6], [2, 5], [1, 4]]; k = 2: [[6, 5, 4], [3, 2, 1]];
    // k = 3: [[4, 1], [5, 2], [6, 3]].
    let one = image.rotatedQuarterTurns(1)
    XCTAssertEqual([one.width, one.height], [2, 3])
    XCTAssertEqual(grey(one), [3, 6, 2, 5, 1, 4])
    XCTAssertEqual(grey(image.rotatedQuarterTurns(2)), [6, 5, 4, 3, 2, 1])
    XCTAssertEqual(grey(image.rotatedQuarterTurns(3)), [4, 1, 5, 2, 6, 3])
    XCTAssertEqual(image.rotatedQuarterTurns(4), image)
  }

  /// Items land in their quadrants; the others stay black.
  func testCountingCanvasPlacesItemsInTheirCells() {
    let white = RGBImage(width: 28, height: 28, pixels: [UInt8](repeating: 200, count: 28 * 28 * 3))
    let canvas = Graft1k.countingCanvas(items: [white, white], cells: [1, 2])
    func lit(_ cell: Int) -> Bool {
      let (top, left) = ((cell / 2) * 28, (cell % 2) * 28)
      return canvas.pixels[((top + 5) * 56 + left + 5) * 3] > 0
    }
    XCTAssertEqual([0, 1, 2, 3].map(lit), [false, true, true, false])
  }

  /// The protocol on a real task: 800/200 disjoint, test disjoint from both, the union list,
  /// class names, reproducible draws, and loading through `TuneData`.
  func testDigitsTaskFollowsTheProtocol() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    XCTAssertFalse(Graft1k.isPrepared("digits", root: root))
    let data = try Graft1k.load("digits", root: root)
    XCTAssertTrue(Graft1k.isPrepared("digits", root: root))
    XCTAssertEqual(data.train.count, 800)
    XCTAssertEqual(data.validation.count, 200)
    XCTAssertEqual(data.test.count, 1797 - 1000)
    XCTAssertEqual(data.classNames, (0...9).map(String.init))
    let folder = root.appendingPathComponent("digits")
    func paths(_ name: String) throws -> [String] {
      try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
        .split(separator: "\n").map { String($0.split(separator: " ")[0]) }
    }
    let train = try paths("train800.txt")
    let val = try paths("val200.txt")
    let test = try paths("test.txt")
    XCTAssertEqual(Set(train + val + test).count, train.count + val.count + test.count)
    XCTAssertEqual(try paths("train800val200.txt"), train + val)
    // Every class is present in training.
    XCTAssertEqual(Set(data.train.labels).count, 10)
    // The same draw on a second preparation.
    let again = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: again) }
    try Graft1k.prepare("digits", root: again)
    XCTAssertEqual(
      try String(contentsOf: again.appendingPathComponent("digits/train800.txt"), encoding: .utf8),
      try String(contentsOf: folder.appendingPathComponent("train800.txt"), encoding: .utf8))
    // A decoded image is the digit at its own size.
    let image = try data.train.image(at: 0)
    XCTAssertEqual([image.width, image.height], [8, 8])
  }

  /// The counting task: labels are the number of lit quadrants minus one.
  func testCountingTaskLabelsCountTheItems() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let data = try Graft1k.load("fmnist-count", root: root)
    XCTAssertEqual(data.classNames, ["1", "2", "3", "4"])
    XCTAssertEqual(data.test.count, Graft1k.structuredTestCount)
    for i in 0..<20 {
      let image = try data.train.image(at: i)
      var lit = 0
      for cell in 0..<4 {
        let (top, left) = ((cell / 2) * 28, (cell % 2) * 28)
        var any = false
        for y in top..<(top + 28) {
          for x in left..<(left + 28) where image.pixels[(y * 56 + x) * 3] > 0 { any = true }
        }
        if any { lit += 1 }
      }
      XCTAssertEqual(lit - 1, data.train.label(at: i), "sample \(i)")
    }
  }

  func testUnknownTaskIsAClearError() {
    XCTAssertThrowsError(try Graft1k.task("cifar")) {
      XCTAssertTrue("\($0)".contains("fmnist-rotation"), "\($0)")
    }
    XCTAssertThrowsError(try ImageTuneData.load("graft1k/cifar"))
  }
}
