import Foundation

// Image resizing exactly as Pillow's `Image.resize` does it, and timm's eval transform on top.
//
// Pillow resamples with a separable convolution: a horizontal pass, rounding to uint8, then a
// vertical pass. The filter's support widens with the downscale factor (that is its antialias),
// the weights of each output sample are normalised to sum to one and then turned into 22-bit
// fixed point, and sums are rounded by adding half a unit and shifting. Reproducing those steps
// (not just the maths) gives bit-identical pixels.

/// A resampling filter, named as timm's `pretrained_cfg["interpolation"]` names it.
public enum ImageInterpolation: String, Codable, Sendable, CaseIterable {
  /// Box (area average when shrinking).
  case box
  /// Triangle filter, support 1.
  case bilinear
  /// Hamming-windowed sinc, support 1.
  case hamming
  /// Cubic convolution with a = −0.5 (Keys), support 2.
  case bicubic
  /// Lanczos-3 windowed sinc, support 3.
  case lanczos

  /// Half-width of the filter at scale 1, in input pixels.
  var support: Double {
    switch self {
    case .box: return 0.5
    case .bilinear, .hamming: return 1
    case .bicubic: return 2
    case .lanczos: return 3
    }
  }

  /// The filter's value at `x` (Pillow's definitions, including its comparisons at the edges).
  func weight(_ x: Double) -> Double {
    switch self {
    case .box:
      return x > -0.5 && x <= 0.5 ? 1 : 0
    case .bilinear:
      let t = abs(x)
      return t < 1 ? 1 - t : 0
    case .hamming:
      let t = abs(x)
      if t == 0 { return 1 }
      if t >= 1 { return 0 }
      let p = t * Double.pi
      // Pillow writes these constants as C floats (0.54f, 0.46f).
      return sin(p) / p * (Double(Float(0.54)) + Double(Float(0.46)) * cos(p))
    case .bicubic:
      let a = -0.5
      let t = abs(x)
      if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
      if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
      return 0
    case .lanczos:
      guard x >= -3 && x < 3 else { return 0 }
      return Self.sinc(x) * Self.sinc(x / 3)
    }
  }

  private static func sinc(_ x: Double) -> Double {
    if x == 0 { return 1 }
    let p = x * Double.pi
    return sin(p) / p
  }
}

/// Per-output-sample taps of one resampling pass, in Pillow's fixed point.
private struct ResampleTaps {
  /// Room for each output sample's weights.
  let stride: Int
  /// First input index each output sample reads.
  var first: [Int]
  /// Number of input samples each output sample reads.
  var count: [Int]
  /// `stride` weights per output sample, scaled by 2^22 and rounded away from zero.
  var weights: [Int32]

  static let precisionBits = 22

  /// Taps for resampling input range `start..<end` (of `inSize` samples) to `outSize` samples.
  init(inSize: Int, start: Double, end: Double, outSize: Int, filter: ImageInterpolation) {
    let scale = (end - start) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = filter.support * filterScale
    stride = Int(support.rounded(.up)) * 2 + 1
    first = [Int](repeating: 0, count: outSize)
    count = [Int](repeating: 0, count: outSize)
    weights = [Int32](repeating: 0, count: outSize * stride)
    var k = [Double](repeating: 0, count: stride)
    let unit = Double(1 << Self.precisionBits)
    for xx in 0..<outSize {
      let center = start + (Double(xx) + 0.5) * scale
      let inverse = 1 / filterScale
      // Pillow rounds the window ends by truncating `+ 0.5` (C int conversion).
      let lo = max(Int(center - support + 0.5), 0)
      let n = min(Int(center + support + 0.5), inSize) - lo
      var total = 0.0
      for x in 0..<stride {
        k[x] = 0
        if x < n {
          k[x] = filter.weight((Double(x + lo) - center + 0.5) * inverse)
          total += k[x]
        }
      }
      for x in 0..<stride {
        if x < n && total != 0 { k[x] /= total }
        let w = k[x] * unit
        weights[xx * stride + x] = Int32(w < 0 ? -0.5 + w : 0.5 + w)
      }
      first[xx] = lo
      count[xx] = max(n, 0)
    }
  }
}

/// Fixed-point sum back to a byte: Pillow adds half a unit up front and shifts (floor) here.
@inline(__always) private func clip8(_ sum: Int) -> UInt8 {
  UInt8(clamping: sum >> ResampleTaps.precisionBits)
}

private let roundingHalf = 1 << (ResampleTaps.precisionBits - 1)

extension RGBImage {
  /// This image resized to `width × height` as Pillow's `Image.resize(size, filter)` does it,
  /// pixel for pixel: antialiased when shrinking (the filter widens with the scale factor),
  /// horizontal pass first, 8-bit rounding between the passes.
  public func resized(width newWidth: Int, height newHeight: Int, interpolation: ImageInterpolation)
    -> RGBImage
  {
    precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)×\(newHeight)")
    precondition(width > 0 && height > 0, "resize of an empty image")
    if newWidth == width && newHeight == height { return self }
    let vertical = ResampleTaps(
      inSize: height, start: 0, end: Double(height), outSize: newHeight, filter: interpolation)
    var source = self
    var rowOffset = 0
    if newWidth != width {
      // Only the rows the vertical pass will read.
      let firstRow = vertical.first[0]
      let lastRow = vertical.first[newHeight - 1] + vertical.count[newHeight - 1]
      let horizontal = ResampleTaps(
        inSize: width, start: 0, end: Double(width), outSize: newWidth, filter: interpolation)
      source = resampleRows(horizontal, rows: firstRow..<lastRow)
      rowOffset = firstRow
    }
    if newHeight == height { return source }
    return source.resampleColumns(vertical, rowOffset: rowOffset)
  }

  private func resampleRows(_ taps: ResampleTaps, rows: Range<Int>) -> RGBImage {
    let outWidth = taps.first.count
    var out = [UInt8](repeating: 0, count: rows.count * outWidth * 3)
    pixels.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        taps.weights.withUnsafeBufferPointer { weights in
          for (r, y) in rows.enumerated() {
            let srcRow = src.baseAddress! + y * width * 3
            let dstRow = dst.baseAddress! + r * outWidth * 3
            for xx in 0..<outWidth {
              let k = weights.baseAddress! + xx * taps.stride
              let p = srcRow + taps.first[xx] * 3
              var s0 = roundingHalf
              var s1 = roundingHalf
              var s2 = roundingHalf
              for x in 0..<taps.count[xx] {
                let w = Int(k[x])
                s0 += Int(p[x * 3]) * w
                s1 += Int(p[x * 3 + 1]) * w
                s2 += Int(p[x * 3 + 2]) * w
              }
              dstRow[xx * 3] = clip8(s0)
              dstRow[xx * 3 + 1] = clip8(s1)
              dstRow[xx * 3 + 2] = clip8(s2)
            }
          }
        }
      }
    }
    return RGBImage(width: outWidth, height: rows.count, pixels: out)
  }

  private func resampleColumns(_ taps: ResampleTaps, rowOffset: Int) -> RGBImage {
    let outHeight = taps.first.count
    let rowLength = width * 3
    var out = [UInt8](repeating: 0, count: outHeight * rowLength)
    // Row by row with a wide accumulator: the same integer sums as Pillow's column loops.
    var acc = [Int](repeating: 0, count: rowLength)
    pixels.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        acc.withUnsafeMutableBufferPointer { acc in
          taps.weights.withUnsafeBufferPointer { weights in
            for yy in 0..<outHeight {
              for i in 0..<rowLength { acc[i] = roundingHalf }
              let k = weights.baseAddress! + yy * taps.stride
              for y in 0..<taps.count[yy] {
                let w = Int(k[y])
                let row = src.baseAddress! + (taps.first[yy] - rowOffset + y) * rowLength
                for i in 0..<rowLength { acc[i] += Int(row[i]) * w }
              }
              let dstRow = dst.baseAddress! + yy * rowLength
              for i in 0..<rowLength { dstRow[i] = clip8(acc[i]) }
            }
          }
        }
      }
    }
    return RGBImage(width: width, height: outHeight, pixels: out)
  }

  /// The `width × height` region whose top-left corner is (`x`, `y`), as Pillow's `crop`:
  /// parts outside the image are filled with `fill` (black by default).
  public func cropped(
    x: Int, y: Int, width newWidth: Int, height newHeight: Int, fill: [UInt8] = [0, 0, 0]
  ) -> RGBImage {
    precondition(newWidth >= 0 && newHeight >= 0, "crop to \(newWidth)×\(newHeight)")
    precondition(fill.count == 3, "fill needs 3 channel values")
    if x == 0 && y == 0 && newWidth == width && newHeight == height { return self }
    var out = [UInt8](repeating: 0, count: newWidth * newHeight * 3)
    for i in 0..<(newWidth * newHeight) {
      out[i * 3] = fill[0]
      out[i * 3 + 1] = fill[1]
      out[i * 3 + 2] = fill[2]
    }
    let x0 = max(x, 0)
    let x1 = min(x + newWidth, width)
    if x1 > x0 {
      for row in max(y, 0)..<max(min(y + newHeight, height), max(y, 0)) {
        let from = (row * width + x0) * 3
        let to = ((row - y) * newWidth + (x0 - x)) * 3
        out.replaceSubrange(to..<(to + (x1 - x0) * 3), with: pixels[from..<(from + (x1 - x0) * 3)])
      }
    }
    return RGBImage(width: newWidth, height: newHeight, pixels: out)
  }

  /// torchvision's `CenterCrop((height, width))` (and timm's `CenterCropOrPad`): pads with `fill`
  /// where the image is smaller (left/top get the smaller half), then crops at offsets
  /// `round((size − crop) / 2)`, rounding halves to even as Python does.
  public func centerCropped(
    width cropWidth: Int, height cropHeight: Int, fill: [UInt8] = [0, 0, 0]
  )
    -> RGBImage
  {
    var image = self
    if cropWidth > width || cropHeight > height {
      let left = cropWidth > width ? (cropWidth - width) / 2 : 0
      let top = cropHeight > height ? (cropHeight - height) / 2 : 0
      let right = cropWidth > width ? (cropWidth - width + 1) / 2 : 0
      let bottom = cropHeight > height ? (cropHeight - height + 1) / 2 : 0
      image = cropped(
        x: -left, y: -top, width: width + left + right, height: height + top + bottom, fill: fill)
      if image.width == cropWidth && image.height == cropHeight { return image }
    }
    let top = Int((Double(image.height - cropHeight) / 2).rounded(.toNearestOrEven))
    let left = Int((Double(image.width - cropWidth) / 2).rounded(.toNearestOrEven))
    return image.cropped(x: left, y: top, width: cropWidth, height: cropHeight)
  }

  /// torchvision's `Resize(size)` with an integer size: the shorter side becomes `size`, the
  /// longer one `Int(size × long / short)` (truncated), resampled as Pillow does.
  public func resizedShorterSide(to size: Int, interpolation: ImageInterpolation) -> RGBImage {
    let (short, long) = width <= height ? (width, height) : (height, width)
    let newLong = Int(Double(size * long) / Double(short))
    let (newWidth, newHeight) = width <= height ? (size, newLong) : (newLong, size)
    return resized(width: newWidth, height: newHeight, interpolation: interpolation)
  }

  /// Mirrored left to right.
  public func horizontallyFlipped() -> RGBImage {
    var out = pixels
    for y in 0..<height {
      let row = y * width * 3
      for x in 0..<width {
        let a = row + x * 3
        let b = row + (width - 1 - x) * 3
        out[a] = pixels[b]
        out[a + 1] = pixels[b + 1]
        out[a + 2] = pixels[b + 2]
      }
    }
    return RGBImage(width: width, height: height, pixels: out)
  }

  /// `[3, height, width]` Float32, `(pixel / 255 − mean[c]) / std[c]`: torchvision's `ToTensor`
  /// then `Normalize(mean, std)`, with their float32 arithmetic (so results match bit for bit).
  public func tensor(mean: [Double] = [0, 0, 0], std: [Double] = [1, 1, 1]) -> Tensor {
    let out = Tensor(shape: [3, height, width], zeroed: false)
    write(into: out.pointer, mean: mean, std: std)
    return out
  }

  /// Writes `tensor(mean:std:)`'s values to `destination` (3 × height × width floats).
  func write(into destination: UnsafeMutablePointer<Float>, mean: [Double], std: [Double]) {
    precondition(mean.count == 3 && std.count == 3, "mean and std need 3 values each")
    let plane = width * height
    for c in 0..<3 {
      let m = Float(mean[c])
      let s = Float(std[c])
      let out = destination + c * plane
      pixels.withUnsafeBufferPointer { p in
        for i in 0..<plane { out[i] = (Float(p[i * 3 + c]) / 255 - m) / s }
      }
    }
  }
}

/// How timm fits an image into the model's input (`pretrained_cfg["crop_mode"]`).
public enum ImageCropMode: String, Codable, Sendable, CaseIterable {
  /// Resize the shorter side to `size / crop_pct` keeping the aspect ratio, then centre-crop.
  case center
  /// Resize each side to `size / crop_pct` (aspect ratio not kept), then centre-crop.
  case squash
  /// Resize the longer side to `size / crop_pct`, then centre-crop or pad with the mean colour.
  case border
}

/// A config that cannot be turned into a preprocessing pipeline.
public struct ImagePreprocessConfigError: Error, CustomStringConvertible, Sendable {
  /// What is wrong.
  public let message: String
  /// The message.
  public var description: String { "image preprocessing config: \(message)" }
}

/// The eval preprocessing of a timm model, from its `pretrained_cfg`.
///
/// Missing (or, as in timm, empty/zero) entries take the values of timm's
/// `resolve_data_config`: input size (3, 224, 224), bicubic, crop_pct 0.875, centre crop,
/// ImageNet mean and std. Encoded with timm's key names, so a `pretrained_cfg` JSON object
/// decodes directly with `JSONDecoder`.
public struct ImagePreprocessConfig: Codable, Sendable, Equatable {
  /// `[channels, height, width]`; channels must be 3.
  public var inputSize: [Int]
  /// Resampling filter.
  public var interpolation: ImageInterpolation
  /// Fraction of the resized image that the crop keeps (`scale = floor(size / cropPct)`).
  public var cropPct: Double
  /// How the image is fitted.
  public var cropMode: ImageCropMode
  /// Per-channel mean subtracted after scaling to [0, 1].
  public var mean: [Double]
  /// Per-channel divisor applied after the mean.
  public var std: [Double]

  /// timm's `IMAGENET_DEFAULT_MEAN`.
  public static let imagenetMean = [0.485, 0.456, 0.406]
  /// timm's `IMAGENET_DEFAULT_STD`.
  public static let imagenetStd = [0.229, 0.224, 0.225]

  /// Output height.
  public var height: Int { inputSize[1] }
  /// Output width.
  public var width: Int { inputSize[2] }

  /// A config from explicit values; the defaults are timm's.
  public init(
    inputSize: [Int] = [3, 224, 224], interpolation: ImageInterpolation = .bicubic,
    cropPct: Double = 0.875, cropMode: ImageCropMode = .center,
    mean: [Double] = ImagePreprocessConfig.imagenetMean,
    std: [Double] = ImagePreprocessConfig.imagenetStd
  ) {
    self.inputSize = inputSize
    self.interpolation = interpolation
    self.cropPct = cropPct
    self.cropMode = cropMode
    self.mean = mean
    self.std = std
    do {
      try validate()
    } catch {
      preconditionFailure("\(error)")
    }
  }

  /// Reads a timm `pretrained_cfg` dictionary (as `JSONSerialization` returns it).
  ///
  /// `useTestSize` picks `test_input_size` and `test_crop_pct` where present, like
  /// `resolve_data_config(use_test_size=True)`.
  public init(pretrainedCfg cfg: [String: Any], useTestSize: Bool = false) throws {
    self.init(unchecked: ())
    func fail(_ key: String) -> ImagePreprocessConfigError {
      ImagePreprocessConfigError(message: "'\(key)' is \(cfg[key].map { "\($0)" } ?? "missing")")
    }
    func present(_ key: String) -> Any? {
      guard let v = cfg[key], !(v is NSNull) else { return nil }
      return v
    }
    if useTestSize, let v = present("test_input_size") {
      guard let size = Self.ints(v) else { throw fail("test_input_size") }
      inputSize = size
    } else if let v = present("input_size") {
      guard let size = Self.ints(v) else { throw fail("input_size") }
      inputSize = size
    }
    if let v = present("interpolation") {
      guard let name = v as? String else { throw fail("interpolation") }
      if !name.isEmpty { interpolation = try Self.interpolation(named: name) }
    }
    // timm treats 0 and empty values as "not given".
    for key in useTestSize ? ["test_crop_pct", "crop_pct"] : ["crop_pct"] {
      guard let v = present(key) else { continue }
      guard let pct = Self.double(v) else { throw fail(key) }
      if pct != 0 {
        cropPct = pct
        break
      }
    }
    if let v = present("crop_mode") {
      guard let name = v as? String else { throw fail("crop_mode") }
      if !name.isEmpty { cropMode = try Self.cropMode(named: name) }
    }
    for key in ["mean", "std"] {
      guard let v = present(key) else { continue }
      guard let values = Self.doubles(v) else { throw fail(key) }
      if values.isEmpty { continue }
      if key == "mean" { mean = values } else { std = values }
    }
    try validate()
  }

  /// Reads a `pretrained_cfg` JSON object, or a Hugging Face `config.json` that holds one under
  /// `"pretrained_cfg"`.
  public init(pretrainedCfgJSON data: Data, useTestSize: Bool = false) throws {
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw ImagePreprocessConfigError(message: "not JSON: \(error.localizedDescription)")
    }
    guard var cfg = object as? [String: Any] else {
      throw ImagePreprocessConfigError(message: "JSON is not an object")
    }
    if let inner = cfg["pretrained_cfg"] as? [String: Any] { cfg = inner }
    try self.init(pretrainedCfg: cfg, useTestSize: useTestSize)
  }

  private init(unchecked: Void) {
    inputSize = [3, 224, 224]
    interpolation = .bicubic
    cropPct = 0.875
    cropMode = .center
    mean = Self.imagenetMean
    std = Self.imagenetStd
  }

  private enum CodingKeys: String, CodingKey {
    case inputSize = "input_size"
    case interpolation
    case cropPct = "crop_pct"
    case cropMode = "crop_mode"
    case mean
    case std
  }

  /// Decodes timm's keys; missing ones take timm's defaults, other keys are ignored.
  public init(from decoder: Decoder) throws {
    self.init(unchecked: ())
    let c = try decoder.container(keyedBy: CodingKeys.self)
    if let v = try c.decodeIfPresent([Int].self, forKey: .inputSize) { inputSize = v }
    if let v = try c.decodeIfPresent(String.self, forKey: .interpolation), !v.isEmpty {
      interpolation = try Self.interpolation(named: v)
    }
    if let v = try c.decodeIfPresent(Double.self, forKey: .cropPct), v != 0 { cropPct = v }
    if let v = try c.decodeIfPresent(String.self, forKey: .cropMode), !v.isEmpty {
      cropMode = try Self.cropMode(named: v)
    }
    if let v = try c.decodeIfPresent([Double].self, forKey: .mean), !v.isEmpty { mean = v }
    if let v = try c.decodeIfPresent([Double].self, forKey: .std), !v.isEmpty { std = v }
    do {
      try validate()
    } catch let error as ImagePreprocessConfigError {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: error.message))
    }
  }

  /// Encodes with timm's key names.
  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(inputSize, forKey: .inputSize)
    try c.encode(interpolation, forKey: .interpolation)
    try c.encode(cropPct, forKey: .cropPct)
    try c.encode(cropMode, forKey: .cropMode)
    try c.encode(mean, forKey: .mean)
    try c.encode(std, forKey: .std)
  }

  /// The size the image is resized to before cropping: `floor(side / cropPct)` per side, as
  /// timm computes it.
  public var scaleSize: (height: Int, width: Int) {
    (Int((Double(height) / cropPct).rounded(.down)), Int((Double(width) / cropPct).rounded(.down)))
  }

  private func validate() throws {
    func fail(_ message: String) -> ImagePreprocessConfigError {
      ImagePreprocessConfigError(message: message)
    }
    guard inputSize.count == 3, inputSize[0] == 3, inputSize[1] > 0, inputSize[2] > 0 else {
      throw fail("input_size \(inputSize) is not [3, height, width] (RGB input only)")
    }
    guard cropPct.isFinite, cropPct > 0 else { throw fail("crop_pct \(cropPct) is not positive") }
    guard mean.count == 3, std.count == 3 else {
      throw fail("mean \(mean) and std \(std) need 3 values each")
    }
    guard std.allSatisfy({ $0 != 0 && $0.isFinite }), mean.allSatisfy(\.isFinite) else {
      throw fail("std \(std) must be finite and non-zero, mean \(mean) finite")
    }
  }

  private static func interpolation(named name: String) throws -> ImageInterpolation {
    guard let mode = ImageInterpolation(rawValue: name) else {
      let known = ImageInterpolation.allCases.map(\.rawValue).joined(separator: ", ")
      throw ImagePreprocessConfigError(
        message: "interpolation '\(name)' is not supported (\(known))")
    }
    return mode
  }

  private static func cropMode(named name: String) throws -> ImageCropMode {
    guard let mode = ImageCropMode(rawValue: name) else {
      throw ImagePreprocessConfigError(
        message: "crop_mode '\(name)' is not supported (center, squash, border)")
    }
    return mode
  }

  private static func double(_ value: Any) -> Double? {
    if let v = value as? Double { return v }
    if let v = value as? Int { return Double(v) }
    if let v = value as? Float { return Double(v) }
    return nil
  }

  private static func doubles(_ value: Any) -> [Double]? {
    guard let list = value as? [Any] else { return nil }
    let out = list.compactMap(double)
    return out.count == list.count ? out : nil
  }

  private static func ints(_ value: Any) -> [Int]? {
    guard let values = doubles(value), values.allSatisfy({ $0 == $0.rounded() && abs($0) < 1e9 })
    else { return nil }
    return values.map { Int($0) }
  }
}

/// timm's eval transform, `create_transform(**resolve_data_config(...), is_training=False)`:
/// resize (by crop mode) with Pillow's filters, centre crop, `ToTensor`, `Normalize`.
///
/// Matches timm + Pillow + torchvision bit for bit on the parity fixtures.
public struct EvalTransform: Sendable {
  /// The model's preprocessing settings.
  public let config: ImagePreprocessConfig

  /// A transform for `config`.
  public init(config: ImagePreprocessConfig) { self.config = config }

  /// The resized and cropped image, before conversion to a tensor.
  public func preprocessedImage(_ image: RGBImage) -> RGBImage {
    let (h, w) = (config.height, config.width)
    let (scaleH, scaleW) = config.scaleSize
    let filter = config.interpolation
    switch config.cropMode {
    case .squash:
      return image.resized(width: scaleW, height: scaleH, interpolation: filter)
        .centerCropped(width: w, height: h)
    case .border:
      let size = Self.keepRatioSize(image, height: scaleH, width: scaleW, longest: 1)
      // timm pads with the mean colour: round(255 * mean), halves to even.
      let fill = config.mean.map { UInt8(clamping: Int((255 * $0).rounded(.toNearestOrEven))) }
      return image.resized(width: size.width, height: size.height, interpolation: filter)
        .centerCropped(width: w, height: h, fill: fill)
    case .center:
      let resized: RGBImage
      if scaleH == scaleW {
        resized = image.resizedShorterSide(to: scaleH, interpolation: filter)
      } else {
        let size = Self.keepRatioSize(image, height: scaleH, width: scaleW, longest: 0)
        resized = image.resized(width: size.width, height: size.height, interpolation: filter)
      }
      return resized.centerCropped(width: w, height: h)
    }
  }

  /// The model input for one image: `[3, height, width]`.
  public func callAsFunction(_ image: RGBImage) -> Tensor {
    preprocessedImage(image).tensor(mean: config.mean, std: config.std)
  }

  /// The model input for a batch: `[images.count, 3, height, width]`.
  public func batch(_ images: [RGBImage]) -> Tensor {
    let out = Tensor(shape: [images.count, 3, config.height, config.width], zeroed: false)
    let stride = 3 * config.height * config.width
    for (i, image) in images.enumerated() {
      preprocessedImage(image).write(
        into: out.pointer + i * stride, mean: config.mean, std: config.std)
    }
    return out
  }

  /// timm's `ResizeKeepRatio.get_params` without the random parts: scale both sides by one
  /// ratio, interpolated between the smaller (`longest` 0) and larger (1) of the per-side ratios.
  static func keepRatioSize(_ image: RGBImage, height: Int, width: Int, longest: Double)
    -> (height: Int, width: Int)
  {
    let ratioH = Double(image.height) / Double(height)
    let ratioW = Double(image.width) / Double(width)
    let ratio = max(ratioH, ratioW) * longest + min(ratioH, ratioW) * (1 - longest)
    func side(_ x: Int) -> Int { max(1, Int((Double(x) * 1.0 / ratio).rounded(.toNearestOrEven))) }
    return (side(image.height), side(image.width))
  }
}
