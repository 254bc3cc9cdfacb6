import Foundation

/// Netpbm images: PBM (`P1`, `P4`), PGM (`P2`, `P5`) and PPM (`P3`, `P6`), ASCII or binary.
///
/// Decoding follows the Netpbm specifications: a header of whitespace-separated decimal fields
/// (`#` starts a comment that runs to the end of the line), then one whitespace byte, then the
/// raster. Binary samples are one byte when `maxval < 256`, else two bytes big-endian. Samples
/// are scaled to 0–255 (`value × 255 / maxval`, rounded); grey becomes RGB by copying the value
/// to the three channels; in PBM 1 is black and 0 white. Only the first image of a file is read.
public enum PNMCodec {
  /// Decodes the file at `url`; errors name it.
  public static func decode(contentsOf url: URL) throws -> RGBImage {
    try decode(DatasetFile.map(url).withBytes { [UInt8]($0) }, path: url.path)
  }

  /// Decodes Netpbm bytes; `path` names the source in errors.
  public static func decode(_ bytes: [UInt8], path: String = "") throws -> RGBImage {
    var reader = Reader(bytes: bytes, path: path)
    guard bytes.count >= 2, bytes[0] == UInt8(ascii: "P"),
      let kind = Int(String(UnicodeScalar(bytes[1]))), (1...6).contains(kind)
    else {
      throw DatasetError(.invalidFormat, path: path, "not a Netpbm image (no P1…P6 magic)")
    }
    reader.position = 2
    let width = try reader.headerNumber("width")
    let height = try reader.headerNumber("height")
    let isBitmap = kind == 1 || kind == 4
    let maxval = isBitmap ? 1 : try reader.headerNumber("maxval")
    guard width > 0, height > 0, width <= 1 << 16, height <= 1 << 16 else {
      throw DatasetError(.invalidFormat, path: path, "image size \(width)×\(height)")
    }
    guard maxval >= 1, maxval <= 65535 else {
      throw DatasetError(.invalidFormat, path: path, "maxval \(maxval) is outside 1...65535")
    }
    guard width * height <= ImageCodec.maxPixels else {
      throw DatasetError(
        .invalidFormat, path: path,
        "\(width) x \(height) = \(width * height) pixels is more than the limit of "
          + "\(ImageCodec.maxPixels) (ImageCodec.maxPixels; raise it with graft's --max-pixels)")
    }
    let channels = kind == 3 || kind == 6 ? 3 : 1
    let sampleCount = width * height * channels
    // Every sample takes at least one byte of the file (PBM's packed raster an eighth, per
    // row): checked before the raster is allocated, so a header cannot ask for more.
    let leastBytes = kind == 4 ? (width + 7) / 8 * height : sampleCount
    guard bytes.count - reader.position >= leastBytes else { throw reader.truncated() }
    var samples = [UInt8](repeating: 0, count: sampleCount)
    func scaled(_ v: Int) throws -> UInt8 {
      guard v <= maxval else {
        throw DatasetError(.invalidFormat, path: path, "sample \(v) exceeds maxval \(maxval)")
      }
      // Pillow's PPM decoders: round(v / maxval * 255) in doubles, ties to even (76 for 30
      // at maxval 100, where rounding halves up gave 77).
      return UInt8((Double(v) / Double(maxval) * 255).rounded(.toNearestOrEven))
    }
    switch kind {
    case 1:
      // Bits may be written with or without whitespace between them.
      for i in 0..<sampleCount {
        reader.skipSpaceAndComments()
        guard reader.position < bytes.count else { throw reader.truncated() }
        let c = bytes[reader.position]
        guard c == UInt8(ascii: "0") || c == UInt8(ascii: "1") else {
          throw DatasetError(.invalidFormat, path: path, "PBM bit is '\(UnicodeScalar(c))'")
        }
        samples[i] = c == UInt8(ascii: "1") ? 0 : 255
        reader.position += 1
      }
    case 2, 3:
      for i in 0..<sampleCount { samples[i] = try scaled(reader.headerNumber("sample")) }
    case 4:
      try reader.singleWhitespace()
      let rowBytes = (width + 7) / 8
      guard bytes.count - reader.position >= rowBytes * height else { throw reader.truncated() }
      for y in 0..<height {
        for x in 0..<width {
          let byte = bytes[reader.position + y * rowBytes + x / 8]
          samples[y * width + x] = (byte >> (7 - UInt8(x % 8))) & 1 == 1 ? 0 : 255
        }
      }
    default:
      try reader.singleWhitespace()
      let wide = maxval > 255
      guard bytes.count - reader.position >= sampleCount * (wide ? 2 : 1) else {
        throw reader.truncated()
      }
      let p = reader.position
      for i in 0..<sampleCount {
        let v = wide ? Int(bytes[p + 2 * i]) << 8 | Int(bytes[p + 2 * i + 1]) : Int(bytes[p + i])
        samples[i] = try scaled(v)
      }
    }
    if channels == 3 { return RGBImage(width: width, height: height, pixels: samples) }
    return rgbFromGrey(samples[...], width: width, height: height)
  }

  /// Binary PPM (`P6`, maxval 255) bytes of `image`.
  public static func encode(_ image: RGBImage) -> [UInt8] {
    Array("P6\n\(image.width) \(image.height)\n255\n".utf8) + image.pixels
  }

  /// Writes `image` as binary PPM to `url`, atomically (see `AtomicFile`).
  public static func write(_ image: RGBImage, to url: URL) throws {
    try AtomicFile.write(Data(encode(image)), to: url)
  }

  /// A cursor over the header fields.
  private struct Reader {
    let bytes: [UInt8]
    let path: String
    var position = 0

    static func isSpace(_ c: UInt8) -> Bool {
      c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C
    }

    mutating func skipSpaceAndComments() {
      while position < bytes.count {
        if Self.isSpace(bytes[position]) {
          position += 1
        } else if bytes[position] == UInt8(ascii: "#") {
          while position < bytes.count && bytes[position] != 0x0A && bytes[position] != 0x0D {
            position += 1
          }
        } else {
          return
        }
      }
    }

    /// The next decimal number, after whitespace and comments.
    mutating func headerNumber(_ what: String) throws -> Int {
      skipSpaceAndComments()
      var value = 0
      var digits = 0
      while position < bytes.count, bytes[position] >= 0x30, bytes[position] <= 0x39 {
        value = value * 10 + Int(bytes[position] - 0x30)
        digits += 1
        position += 1
        guard digits <= 9 else {
          throw DatasetError(.invalidFormat, path: path, "\(what) has too many digits")
        }
      }
      guard digits > 0 else {
        if position >= bytes.count { throw truncated() }
        throw DatasetError(
          .invalidFormat, path: path,
          "expected a number (\(what)) at byte \(position), found '\(UnicodeScalar(bytes[position]))'"
        )
      }
      return value
    }

    /// The one whitespace byte between a binary header and its raster.
    mutating func singleWhitespace() throws {
      guard position < bytes.count, Self.isSpace(bytes[position]) else {
        throw DatasetError(.invalidFormat, path: path, "no whitespace before the raster")
      }
      position += 1
    }

    func truncated() -> DatasetError {
      DatasetError(.invalidFormat, path: path, "file ends before the image does (truncated)")
    }
  }
}
