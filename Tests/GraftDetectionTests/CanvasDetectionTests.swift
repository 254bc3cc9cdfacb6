import Foundation
import XCTest

@testable import GraftDetection

/// Synthetic 28 × 28 items (the real ones need Debian's Fashion-MNIST): a bright rectangle whose
/// place and size vary with `k`, on black.
private func items(_ count: Int, category: Int) -> [CanvasDetection.Item] {
  (0..<count).map { k in
    var pixels = [UInt8](repeating: 0, count: 28 * 28)
    let (x0, y0) = (2 + k % 5, 3 + k % 4)
    let (x1, y1) = (18 + k % 9, 20 + k % 7)
    for r in y0..<y1 { for c in x0..<x1 { pixels[r * 28 + c] = UInt8(120 + (r * 7 + c) % 130) } }
    return CanvasDetection.Item(pixels: pixels, categoryID: category + k % 3)
  }
}

private func grey(_ image: RGBImage, _ x: Int, _ y: Int) -> UInt8 {
  image.pixels[(y * image.width + x) * 3]
}

final class CanvasDetectionTests: XCTestCase {
  private let pool = items(40, category: 1) + items(40, category: 11)

  func testBoxesAreTightAroundTheItemsPixels() {
    var options = CanvasDetection.Options()
    options.seed = 3
    var overlapping = 0
    for index in 0..<40 {
      let c = CanvasDetection.canvas(index: index, split: 0, items: pool, options: options)
      XCTAssertTrue((1...6).contains(c.annotations.count))
      let size = c.image.width
      // Every lit pixel is inside some box.
      for y in 0..<size {
        for x in 0..<size where grey(c.image, x, y) > 0 {
          let inside = c.annotations.contains {
            Double(x) >= $0.box.x && Double(x) < $0.box.maxX && Double(y) >= $0.box.y
              && Double(y) < $0.box.maxY
          }
          XCTAssertTrue(inside, "canvas \(index): lit pixel (\(x), \(y)) in no box")
        }
      }
      // Every box edge touches a lit pixel: the box is no larger than its ink.
      for a in c.annotations {
        let (x0, y0) = (Int(a.box.x), Int(a.box.y))
        let (x1, y1) = (Int(a.box.maxX) - 1, Int(a.box.maxY) - 1)
        XCTAssertTrue((x0...x1).contains { grey(c.image, $0, y0) > 0 }, "top edge of \(a.id)")
        XCTAssertTrue((x0...x1).contains { grey(c.image, $0, y1) > 0 }, "bottom edge of \(a.id)")
        XCTAssertTrue((y0...y1).contains { grey(c.image, x0, $0) > 0 }, "left edge of \(a.id)")
        XCTAssertTrue((y0...y1).contains { grey(c.image, x1, $0) > 0 }, "right edge of \(a.id)")
        XCTAssertTrue(BoxBounds.isInside(a.box, width: size, height: size))
      }
      for (i, a) in c.annotations.enumerated() {
        for b in c.annotations[(i + 1)...] {
          let iou = COCOBoxEvaluation.iou(a.box, b.box, crowd: false)
          XCTAssertLessThanOrEqual(iou, options.maxOverlap)
          if iou > 0 { overlapping += 1 }
        }
      }
    }
    XCTAssertGreaterThan(overlapping, 0, "no two items overlap in 40 canvases")
  }

  func testSameSeedSameCanvasOtherSeedOther() {
    var options = CanvasDetection.Options()
    let a = CanvasDetection.canvas(index: 5, split: 2, items: pool, options: options)
    XCTAssertEqual(a, CanvasDetection.canvas(index: 5, split: 2, items: pool, options: options))
    XCTAssertNotEqual(a, CanvasDetection.canvas(index: 5, split: 1, items: pool, options: options))
    options.seed = 1
    XCTAssertNotEqual(a, CanvasDetection.canvas(index: 5, split: 2, items: pool, options: options))
  }

  func testItemPoolsSplitDisjointly() {
    let options = CanvasDetection.Options()
    let parts = CanvasDetection.splitPools(
      [items(40, category: 1), items(30, category: 11)], options: options)
    XCTAssertEqual(parts.map(\.count), [28 + 21, 4 + 3, 8 + 6])
    // The items differ pairwise (their rectangles or categories), so disjointness is checkable.
    let all = items(40, category: 1) + items(30, category: 11)
    XCTAssertEqual(parts.flatMap { $0 }.count, all.count)
    for (i, a) in parts.enumerated() {
      for b in parts[(i + 1)...] {
        XCTAssertFalse(a.contains { item in b.contains(item) }, "an item in two splits")
      }
    }
  }

  func testPrepareWritesCOCOThatReadsBack() throws {
    let root = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-canvas-det-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: root) }
    var options = CanvasDetection.Options()
    options.images = 20
    options.size = 64
    options.itemSide = 8...60
    let written = try CanvasDetection.prepare(
      root: root, pools: [items(40, category: 1), items(40, category: 11)], options: options)
    XCTAssertEqual(written.map(\.images.count), [14, 2, 4])
    for (split, dataset) in zip(CanvasDetection.splits, written) {
      let read = try COCOAnnotations.load(
        path: root.appendingPathComponent("annotations/\(split).json").path,
        imagesDirectory: root.appendingPathComponent("images").path)
      XCTAssertEqual(read, dataset)
      XCTAssertEqual(read.categories.count, 20)
      XCTAssertEqual(read.categories[10].name, "digit 0")
      let first = try ImageCodec.decode(
        contentsOf: root.appendingPathComponent("images/\(read.images[0].fileName)"))
      XCTAssertEqual(first.width, 64)
      XCTAssertEqual(
        first,
        CanvasDetection.canvas(
          index: 0, split: CanvasDetection.splits.firstIndex(of: split)!,
          items: CanvasDetection.splitPools(
            [items(40, category: 1), items(40, category: 11)], options: options)[
              CanvasDetection.splits.firstIndex(of: split)!], options: options
        ).image)
    }
  }
}
