import CImageCodecs
import Foundation

/// A file that could not be read, decoded or encoded; the description names the file.
public struct ImageError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What went wrong, broadly.
  public enum Kind: String, Sendable, Equatable {
    /// No file at the path.
    case missingFile
    /// The file exists but reading it failed (permissions, I/O).
    case unreadable
    /// Neither PNG nor JPEG by its first bytes.
    case unknownFormat
    /// A known but unsupported format (GIF, WebP, …) or variant (12-bit JPEG, too many pixels).
    case unsupported
    /// The data breaks the format's rules.
    case corrupt
    /// The data ends before the image does.
    case truncated
    /// Memory for the image could not be allocated.
    case outOfMemory
    /// Bad input to an encoder (empty image, quality out of range).
    case invalidArgument
    /// Writing the encoded file failed.
    case writeFailed
  }

  /// The path, or the name given to `decode(data:name:)`.
  public let file: String
  /// The kind of failure.
  public let kind: Kind
  /// The codec's or the system's explanation.
  public let detail: String

  /// Creates an error about `file`.
  public init(file: String, kind: Kind, detail: String) {
    self.file = file
    self.kind = kind
    self.detail = detail
  }

  /// `"<file>: <kind>: <detail>"`.
  public var description: String {
    let what: String
    switch kind {
    case .missingFile: what = "no such file"
    case .unreadable: what = "cannot read file"
    case .unknownFormat: what = "unknown image format"
    case .unsupported: what = "unsupported image"
    case .corrupt: what = "corrupt image"
    case .truncated: what = "truncated image"
    case .outOfMemory: what = "out of memory"
    case .invalidArgument: what = "cannot encode image"
    case .writeFailed: what = "cannot write image"
    }
    return detail.isEmpty ? "\(file): \(what)" : "\(file): \(what): \(detail)"
  }
}

/// The file formats Graft reads and writes.
public enum ImageFormat: String, Sendable, CaseIterable {
  /// Portable Network Graphics.
  case png
  /// JPEG (JFIF/Exif/Adobe).
  case jpeg

  /// The format whose signature starts `data`, or nil.
  public init?(detecting data: Data) {
    let head = [UInt8](data.prefix(4))
    if head == [0x89, 0x50, 0x4E, 0x47] {
      self = .png
    } else if head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF {
      self = .jpeg
    } else {
      return nil
    }
  }

  /// The format a file name's extension asks for (`png`, `jpg`, `jpeg`; any case), or nil.
  public init?(pathExtension: String) {
    switch pathExtension.lowercased() {
    case "png": self = .png
    case "jpg", "jpeg", "jpe": self = .jpeg
    default: return nil
    }
  }
}

/// Reads PNG and JPEG files into `RGBImage` exactly as Pillow's `Image.open(f).convert("RGB")`
/// does (the loader timm uses), and writes PNG and JPEG.
///
/// Conversions to RGB: alpha and transparency are dropped, not composited (Pillow's
/// `convert("RGB")`); grey is replicated; palettes are expanded; 16-bit PNG samples keep their
/// high byte (Pillow's behaviour for colour PNGs; for 16-bit grey Pillow instead clips to 255,
/// which Graft does not copy); Adobe CMYK JPEGs are converted with Pillow's formula. Gamma, ICC
/// profiles and EXIF orientation are ignored, as in Pillow. Corrupt or truncated files throw
/// `ImageError`; libjpeg's errors never abort the process and nothing is printed.
public enum ImageCodec {
  /// Pillow's `Image.MAX_IMAGE_PIXELS`: 89,478,485, computed as Pillow does
  /// (`1024 * 1024 * 1024 // 4 // 3`).
  public static let defaultMaxPixels = 1024 * 1024 * 1024 / 4 / 3

  /// Images whose header promises more pixels than this are refused before decoding (a 164 KB
  /// PNG can promise 13,000 × 13,000 pixels, half a gigabyte decoded). Pillow only warns at
  /// this size and refuses at twice it; Graft refuses at once, with the limit in the message,
  /// and `graft`'s `--max-pixels` raises it. Set it before decoding starts (it is read by the
  /// loader's threads).
  nonisolated(unsafe) public static var maxPixels = defaultMaxPixels

  /// Reads and decodes the file at `url`; the format comes from its first bytes, not its name.
  public static func decode(contentsOf url: URL) throws -> RGBImage {
    let path = url.path
    let file: MappedFile
    do {
      file = try MappedFile(path: path, allowingEmpty: true)
    } catch {
      if error.kind == .notFound { throw ImageError(file: path, kind: .missingFile, detail: "") }
      throw ImageError(file: path, kind: .unreadable, detail: error.message)
    }
    return try decode(data: file.data, name: path)
  }

  /// Decodes PNG or JPEG bytes; `name` identifies them in errors.
  public static func decode(data: Data, name: String) throws -> RGBImage {
    guard !data.isEmpty else {
      throw ImageError(file: name, kind: .unknownFormat, detail: "empty file")
    }
    guard let format = ImageFormat(detecting: data) else {
      if let other = recognisedUnsupportedFormat(data) {
        throw ImageError(
          file: name, kind: .unsupported, detail: "\(other) files are not supported (PNG, JPEG)")
      }
      throw ImageError(file: name, kind: .unknownFormat, detail: "neither PNG nor JPEG")
    }
    var image = gic_image()
    var message = [CChar](repeating: 0, count: Int(GIC_MESSAGE_CAPACITY))
    let limit = UInt64(max(maxPixels, 1))
    let status = data.withUnsafeBytes { raw -> gic_status in
      let bytes = raw.bindMemory(to: UInt8.self).baseAddress!
      switch format {
      case .png: return gic_decode_png(bytes, raw.count, limit, &image, &message)
      case .jpeg: return gic_decode_jpeg(bytes, raw.count, limit, &image, &message)
      }
    }
    guard status == GIC_OK else {
      throw ImageError(file: name, status: status, message: message, format: format)
    }
    defer { gic_free(image.pixels) }
    let width = Int(image.width)
    let height = Int(image.height)
    let count = width * height * 3
    let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
      buffer.baseAddress!.update(from: image.pixels, count: count)
      initialized = count
    }
    return RGBImage(width: width, height: height, pixels: pixels)
  }

  /// Lossless PNG (8-bit RGB, default zlib compression).
  public static func encodePNG(_ image: RGBImage) throws -> Data {
    try encode(image, format: .png, quality: 90, name: "<PNG encoder>")
  }

  /// Baseline JPEG, 4:2:0 chroma subsampling, at `quality` 1...100 (libjpeg's scale).
  public static func encodeJPEG(_ image: RGBImage, quality: Int = 90) throws -> Data {
    try encode(image, format: .jpeg, quality: quality, name: "<JPEG encoder>")
  }

  /// Encodes in `format` (`quality` applies to JPEG only).
  public static func encode(_ image: RGBImage, format: ImageFormat, quality: Int = 90) throws
    -> Data
  {
    try encode(image, format: format, quality: quality, name: "<\(format.rawValue) encoder>")
  }

  /// Encodes by the file extension (`.png`, `.jpg`, `.jpeg`) and writes atomically: readers see
  /// the old file or the complete new one.
  public static func write(_ image: RGBImage, to url: URL, quality: Int = 90) throws {
    guard let format = ImageFormat(pathExtension: url.pathExtension) else {
      throw ImageError(
        file: url.path, kind: .unsupported,
        detail: "cannot tell the format from extension '\(url.pathExtension)' (png, jpg, jpeg)")
    }
    let data = try encode(image, format: format, quality: quality, name: url.path)
    do {
      try AtomicFile.write(data, to: url)
    } catch {
      throw ImageError(file: url.path, kind: .writeFailed, detail: "\(error)")
    }
  }

  private static func encode(_ image: RGBImage, format: ImageFormat, quality: Int, name: String)
    throws -> Data
  {
    guard image.width > 0, image.height > 0 else {
      throw ImageError(
        file: name, kind: .invalidArgument, detail: "image is \(image.width)×\(image.height)")
    }
    guard image.width <= Int(Int32.max) / 3, image.height <= Int(Int32.max) else {
      throw ImageError(file: name, kind: .invalidArgument, detail: "image is too large")
    }
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: Int(GIC_MESSAGE_CAPACITY))
    let width = Int32(image.width)
    let height = Int32(image.height)
    let status = image.pixels.withUnsafeBufferPointer { rgb -> gic_status in
      switch format {
      case .png:
        return gic_encode_png(rgb.baseAddress, width, height, &out, &size, &message)
      case .jpeg:
        let q = Int32(clamping: quality)
        return gic_encode_jpeg(rgb.baseAddress, width, height, q, &out, &size, &message)
      }
    }
    guard status == GIC_OK, let bytes = out else {
      throw ImageError(file: name, status: status, message: message, format: format)
    }
    defer { gic_free(bytes) }
    return Data(bytes: bytes, count: size)
  }

  /// Names common image formats that are not PNG or JPEG, for a clearer error.
  private static func recognisedUnsupportedFormat(_ data: Data) -> String? {
    let b = [UInt8](data.prefix(12))
    func starts(_ s: [UInt8]) -> Bool { b.starts(with: s) }
    if starts(Array("GIF8".utf8)) { return "GIF" }
    if starts(Array("BM".utf8)) { return "BMP" }
    if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
    if b.count == 12 && starts(Array("RIFF".utf8)) && Array(b[8..<12]) == Array("WEBP".utf8) {
      return "WebP"
    }
    if b.count >= 12 && Array(b[4..<8]) == Array("ftyp".utf8) {
      // The ISO base media box is shared: its major brand tells a still image from a video.
      let brand = String(decoding: b[8..<12], as: UTF8.self)
      let still: Set<String> = ["heic", "heix", "heim", "heis", "mif1", "msf1", "avif", "avis"]
      return still.contains(brand) ? "HEIF/AVIF" : "MP4/QuickTime video ('\(brand)')"
    }
    if starts([0xFF, 0x0A]) || starts([0, 0, 0, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) {
      return "JPEG XL"
    }
    return nil
  }
}

extension ImageError {
  /// Wraps a status and message from the C codecs.
  fileprivate init(file: String, status: gic_status, message: [CChar], format: ImageFormat) {
    let kind: Kind
    switch status {
    case GIC_TRUNCATED: kind = .truncated
    case GIC_UNSUPPORTED, GIC_TOO_MANY_PIXELS: kind = .unsupported
    case GIC_OUT_OF_MEMORY: kind = .outOfMemory
    case GIC_INVALID_ARGUMENT: kind = .invalidArgument
    default: kind = .corrupt
    }
    var text = String(
      decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    if status == GIC_TOO_MANY_PIXELS {
      text +=
        " (ImageCodec.maxPixels, Pillow's MAX_IMAGE_PIXELS by default; raise it with "
        + "graft's --max-pixels to read the image)"
    }
    self.init(file: file, kind: kind, detail: "\(format == .png ? "PNG" : "JPEG"): \(text)")
  }
}
