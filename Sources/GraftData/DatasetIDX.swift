import Foundation

/// Images and labels in LeCun's IDX format (MNIST, Fashion-MNIST, KMNIST, EMNIST), plain or
/// gzip-compressed (detected from the bytes, not the name).
///
/// The images file holds magic `00 00 08 03` (unsigned bytes, 3 dimensions), then big-endian
/// 32-bit `count`, `rows`, `columns`, then the pixels row by row; the labels file holds magic
/// `00 00 08 01`, a count, then one byte per label. Both are read into memory. Images are grey
/// and come out as RGB with the grey value in all three channels. EMNIST's files store images
/// transposed; they are returned as stored.
public struct IDXDataset: Dataset {
  /// Fashion-MNIST's class names, in label order (as torchvision names them).
  public static let fashionMNISTClassNames = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
  ]

  /// Image height in pixels.
  public let rows: Int
  /// Image width in pixels.
  public let columns: Int
  /// Class names (`"0"`, `"1"`, … unless given).
  public let classNames: [String]
  /// The label of every sample.
  public let labels: [Int]
  /// Every image's grey pixels, one after another.
  private let pixels: [UInt8]

  /// Reads an images file and its labels file; throws, naming the file, on a bad magic number,
  /// a size that disagrees with the header, or counts that differ between the two files.
  /// `classNames`, when given, must cover every label.
  public init(images: URL, labels: URL, classNames: [String]? = nil) throws {
    let imageBytes = try DatasetFile.readBytes(images)
    let imageDims = try Self.header(imageBytes, dimensions: 3, path: images.path)
    let labelBytes = try DatasetFile.readBytes(labels)
    let labelDims = try Self.header(labelBytes, dimensions: 1, path: labels.path)
    let (count, rows, columns) = (imageDims[0], imageDims[1], imageDims[2])
    let (pixelOffset, labelOffset) = (16, 8)
    guard rows > 0, columns > 0 else {
      throw DatasetError(.invalidFormat, path: images.path, "header says \(rows)×\(columns) images")
    }
    let (plane, overflow1) = rows.multipliedReportingOverflow(by: columns)
    let (imageSize, overflow2) = count.multipliedReportingOverflow(by: plane)
    guard !overflow1, !overflow2, imageBytes.count - pixelOffset == imageSize else {
      throw DatasetError(
        .invalidFormat, path: images.path,
        "header says \(count) images of \(rows)×\(columns) (\(imageSize) bytes), "
          + "the file has \(imageBytes.count - pixelOffset) bytes of pixels")
    }
    guard labelBytes.count - labelOffset == labelDims[0] else {
      throw DatasetError(
        .invalidFormat, path: labels.path,
        "header says \(labelDims[0]) labels, the file has \(labelBytes.count - labelOffset)")
    }
    guard labelDims[0] == count else {
      throw DatasetError(
        .mismatch, path: labels.path,
        "\(labelDims[0]) labels, but \(images.path) has \(count) images")
    }
    let labelValues = labelBytes[labelOffset...].map { Int($0) }
    let names = classNames ?? numericClassNames(labelValues)
    if let bad = labelValues.firstIndex(where: { $0 >= names.count }) {
      throw DatasetError(
        .invalidFormat, path: labels.path,
        "label \(labelValues[bad]) of sample \(bad) is outside the \(names.count) class names")
    }
    self.rows = rows
    self.columns = columns
    self.pixels = Array(imageBytes[pixelOffset...])
    self.labels = labelValues
    self.classNames = names
  }

  /// The standard file pair in `directory`: `train-images-idx3-ubyte[.gz]` and
  /// `train-labels-idx1-ubyte[.gz]`, or the `t10k-` pair when `train` is false (the layout of
  /// MNIST's and Fashion-MNIST's downloads, and of Debian's `dataset-fashion-mnist` in
  /// `/usr/share/datasets/fashion-mnist`).
  public init(directory: URL, train: Bool, classNames: [String]? = nil) throws {
    let prefix = train ? "train" : "t10k"
    func find(_ stem: String) throws -> URL {
      for name in [stem, stem + ".gz"] {
        let url = directory.appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: url.path) { return url }
      }
      throw DatasetError(.notFound, path: directory.path, "no \(stem) or \(stem).gz in this folder")
    }
    try self.init(
      images: find("\(prefix)-images-idx3-ubyte"), labels: find("\(prefix)-labels-idx1-ubyte"),
      classNames: classNames)
  }

  /// Number of samples.
  public var count: Int { labels.count }

  /// Image `index`, its grey value copied to R, G and B.
  public func sample(at index: Int) throws -> RGBImage {
    let size = rows * columns
    return rgbFromGrey(pixels[(index * size)..<((index + 1) * size)], width: columns, height: rows)
  }

  /// The big-endian dimensions after a magic `00 00 08 <dimensions>`.
  private static func header(_ bytes: [UInt8], dimensions: Int, path: String) throws -> [Int] {
    let kind = dimensions == 3 ? "images (idx3)" : "labels (idx1)"
    guard bytes.count >= 4 else {
      throw DatasetError(.invalidFormat, path: path, "not an IDX file (\(bytes.count) bytes)")
    }
    let magic = bytes[0..<4].map { String(format: "%02x", $0) }.joined(separator: " ")
    guard bytes[0] == 0, bytes[1] == 0 else {
      throw DatasetError(.invalidFormat, path: path, "not an IDX file (magic \(magic))")
    }
    guard bytes[2] == 0x08 else {
      throw DatasetError(
        .invalidFormat, path: path,
        "IDX element type 0x\(String(format: "%02x", bytes[2])) is not supported "
          + "(only unsigned bytes, 0x08; magic \(magic))")
    }
    guard Int(bytes[3]) == dimensions else {
      throw DatasetError(
        .invalidFormat, path: path,
        "IDX file has \(bytes[3]) dimensions, expected \(kind) with \(dimensions) "
          + "(magic \(magic), expected 00 00 08 0\(dimensions))")
    }
    guard bytes.count >= 4 + 4 * dimensions else {
      throw DatasetError(
        .invalidFormat, path: path, "too short for an IDX \(kind) header (\(bytes.count) bytes)")
    }
    return (0..<dimensions).map { d in
      let o = 4 + 4 * d
      return bytes[o..<(o + 4)].reduce(0) { $0 << 8 | Int($1) }
    }
  }
}
