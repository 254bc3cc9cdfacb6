import XCTest

@testable import GraftData

final class ImageTests: XCTestCase {
  func testImageHoldsInterleavedRGB() {
    let image = RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6])
    XCTAssertEqual(image.pixels[3], 4)
  }
}
