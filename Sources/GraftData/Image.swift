/// An 8-bit RGB image, row-major, channels interleaved (HWC), as decoded from a file.
public struct RGBImage: Sendable, Equatable {
  /// Columns.
  public let width: Int
  /// Rows.
  public let height: Int
  /// `height × width × 3` bytes, R G B per pixel.
  public var pixels: [UInt8]

  /// Wraps `pixels`, which must hold `width × height × 3` bytes.
  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(
      width >= 0 && height >= 0 && pixels.count == width * height * 3,
      "RGBImage \(width)×\(height) needs \(width * height * 3) bytes, got \(pixels.count)")
    self.width = width
    self.height = height
    self.pixels = pixels
  }
}
