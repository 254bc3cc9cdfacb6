import XCTest

@testable import GraftDetection

/// A black image with one solid rectangle per box, each in its own colour channel mix.
private let colours: [[UInt8]] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]

private func scene() -> AnnotatedSample {
  let boxes = [
    BoundingBox(x: 10, y: 5, width: 10, height: 10),
    BoundingBox(x: 40, y: 30, width: 20, height: 16),
    BoundingBox(x: 0, y: 20, width: 8, height: 28),
  ]
  let (w, h) = (64, 48)
  var pixels = [UInt8](repeating: 0, count: w * h * 3)
  for (k, b) in boxes.enumerated() {
    for row in Int(b.y)..<Int(b.maxY) {
      for col in Int(b.x)..<Int(b.maxX) {
        for c in 0..<3 { pixels[(row * w + col) * 3 + c] = colours[k][c] }
      }
    }
  }
  return AnnotatedSample(
    image: RGBImage(width: w, height: h, pixels: pixels),
    annotations: boxes.enumerated().map { BoxAnnotation(id: $0 + 1, categoryID: 1, box: $1) })
}

/// The continuous box around the pixels whose channel `channel` is over half-bright.
private func pixelBox(_ image: RGBImage, channel: Int) -> BoundingBox? {
  var (minX, minY, maxX, maxY) = (Int.max, Int.max, -1, -1)
  for row in 0..<image.height {
    for col in 0..<image.width where image.pixels[(row * image.width + col) * 3 + channel] > 127 {
      minX = min(minX, col)
      minY = min(minY, row)
      maxX = max(maxX, col)
      maxY = max(maxY, row)
    }
  }
  guard maxX >= 0 else { return nil }
  return BoundingBox(
    minX: Double(minX), minY: Double(minY), maxX: Double(maxX + 1), maxY: Double(maxY + 1))
}

private func assertBoxesFollowPixels(
  _ s: AnnotatedSample, tolerance: Double, file: StaticString = #filePath, line: UInt = #line
) {
  for a in s.annotations {
    guard let seen = pixelBox(s.image, channel: a.id - 1) else {
      return XCTFail("box \(a.id) kept but its pixels are gone", file: file, line: line)
    }
    XCTAssertEqual(a.box.x, seen.x, accuracy: tolerance, "box \(a.id) x", file: file, line: line)
    XCTAssertEqual(a.box.y, seen.y, accuracy: tolerance, "box \(a.id) y", file: file, line: line)
    XCTAssertEqual(
      a.box.maxX, seen.maxX, accuracy: tolerance, "box \(a.id) maxX", file: file, line: line)
    XCTAssertEqual(
      a.box.maxY, seen.maxY, accuracy: tolerance, "box \(a.id) maxY", file: file, line: line)
    XCTAssertTrue(BoxBounds.isInside(a.box, width: s.image.width, height: s.image.height))
    XCTAssertGreaterThan(a.box.width, 0)
    XCTAssertGreaterThan(a.box.height, 0)
  }
}

final class BoxAugmentationTests: XCTestCase {
  func testSceneBoxesMatchTheirPixels() {
    assertBoxesFollowPixels(scene(), tolerance: 0)
  }

  func testFlipMovesBoxesWithThePixels() {
    let flipped = scene().horizontallyFlipped()
    XCTAssertEqual(flipped.annotations[0].box, BoundingBox(x: 44, y: 5, width: 10, height: 10))
    assertBoxesFollowPixels(flipped, tolerance: 0)
    XCTAssertEqual(flipped.horizontallyFlipped(), scene())
  }

  func testResizeScalesBoxesAndAreas() {
    let big = scene().resized(width: 96, height: 72)
    XCTAssertEqual(big.annotations[1].box, BoundingBox(x: 60, y: 45, width: 30, height: 24))
    XCTAssertEqual(big.annotations[1].area, 320 * 2.25)
    assertBoxesFollowPixels(big, tolerance: 1)
    assertBoxesFollowPixels(scene().resized(width: 40, height: 30), tolerance: 1)
  }

  func testCropClipsKeepsAndDropsBoxes() {
    // Keeps box 1 whole, cuts box 2 to its left 60% (12 of 20 columns), loses box 3.
    let crop = scene().cropped(x: 9, y: 2, width: 43, height: 40)
    XCTAssertEqual(crop.annotations.map(\.id), [1, 2])
    XCTAssertEqual(crop.annotations[0].box, BoundingBox(x: 1, y: 3, width: 10, height: 10))
    XCTAssertEqual(crop.annotations[1].box, BoundingBox(x: 31, y: 28, width: 12, height: 12))
    XCTAssertEqual(crop.annotations[1].area, 320 * (144.0 / 320.0), accuracy: 1e-9)
    assertBoxesFollowPixels(crop, tolerance: 0)
    // Asking for 50% visibility drops the 45%-visible box 2.
    let strict = scene().cropped(x: 9, y: 2, width: 43, height: 40, minVisibleFraction: 0.5)
    XCTAssertEqual(strict.annotations.map(\.id), [1])
  }

  func testRandomAugmentationKeepsBoxesOnTheirPixels() {
    let augment = BoxAugmentation(scaleRange: 0.7...1.4, minCropFraction: 0.5)
    var generator = RandomGenerator(seed: 7)
    var flips = 0
    var drops = 0
    var sizes = Set<Int>()
    for _ in 0..<60 {
      let out = augment(scene(), generator: &generator)
      assertBoxesFollowPixels(out, tolerance: 1.5)
      XCTAssertFalse(out.annotations.isEmpty)
      if out.annotations.count < 3 { drops += 1 }
      if let first = out.annotations.first, first.id == 1,
        let seen = pixelBox(out.image, channel: 0),
        seen.x > Double(out.image.width) / 2
      {
        flips += 1
      }
      sizes.insert(out.image.width)
    }
    // The randomness is exercised: crops drop boxes, sizes vary, some images flip.
    XCTAssertGreaterThan(drops, 0)
    XCTAssertGreaterThan(sizes.count, 10)
    XCTAssertGreaterThan(flips, 0)
  }
}
