import Foundation

// Training augmentation: torchvision's RandomResizedCrop sampling, horizontal flip, and timm's
// Mixup/CutMix in 'batch' mode, all driven by Graft's seeded RandomGenerator so a run is
// reproducible from its seed (the streams are not PyTorch's or NumPy's).

/// Uniform in [0, 1) with 53 random bits.
private func uniform(_ generator: inout RandomGenerator) -> Double {
  Double(generator.next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
}

extension RandomGenerator {
  /// A Gamma(`shape`, 1) sample: Marsaglia and Tsang's squeeze method, with the
  /// `Gamma(a) = Gamma(a + 1) · U^(1/a)` boost for shapes below one.
  public mutating func nextGamma(shape: Double) -> Double {
    precondition(shape > 0 && shape.isFinite, "Gamma shape must be positive, got \(shape)")
    if shape < 1 {
      let u = 1 - uniform(&self)  // (0, 1]
      return nextGamma(shape: shape + 1) * pow(u, 1 / shape)
    }
    let d = shape - 1.0 / 3
    let c = 1 / (9 * d).squareRoot()
    while true {
      var x = 0.0
      var v = 0.0
      repeat {
        x = Double(nextNormal())
        v = 1 + c * x
      } while v <= 0
      v = v * v * v
      let u = uniform(&self)
      let x2 = x * x
      if u < 1 - 0.0331 * x2 * x2 { return d * v }
      if log(u) < 0.5 * x2 + d * (1 - v + log(v)) { return d * v }
    }
  }

  /// A Beta(`a`, `b`) sample, `X / (X + Y)` with X ~ Gamma(a), Y ~ Gamma(b).
  public mutating func nextBeta(_ a: Double, _ b: Double) -> Double {
    let x = nextGamma(shape: a)
    let y = nextGamma(shape: b)
    // Both can underflow to zero for tiny shapes; the limit is a Bernoulli(a / (a + b)).
    if x + y == 0 { return uniform(&self) < a / (a + b) ? 1 : 0 }
    return x / (x + y)
  }
}

/// torchvision's `RandomResizedCrop`: a random region covering `scale` of the image area with
/// aspect ratio (width / height) in `ratio`, resized to the output size with Pillow's filters.
public struct RandomResizedCrop: Sendable {
  /// Output height.
  public var height: Int
  /// Output width.
  public var width: Int
  /// Range of the region's area as a fraction of the image's.
  public var scale: ClosedRange<Double>
  /// Range of the region's width / height; sampled log-uniformly.
  public var ratio: ClosedRange<Double>
  /// Filter for the resize.
  public var interpolation: ImageInterpolation

  /// A region of the input, in pixels.
  public struct Region: Equatable, Sendable {
    /// First row.
    public var top: Int
    /// First column.
    public var left: Int
    /// Rows.
    public var height: Int
    /// Columns.
    public var width: Int

    /// A region `height × width` at (`top`, `left`).
    public init(top: Int, left: Int, height: Int, width: Int) {
      self.top = top
      self.left = left
      self.height = height
      self.width = width
    }
  }

  /// A square `size × size` output; torchvision's default scale, ratio and bilinear filter.
  public init(
    size: Int, scale: ClosedRange<Double> = 0.08...1,
    ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3),
    interpolation: ImageInterpolation = .bilinear
  ) {
    self.init(height: size, width: size, scale: scale, ratio: ratio, interpolation: interpolation)
  }

  /// A `height × width` output.
  public init(
    height: Int, width: Int, scale: ClosedRange<Double> = 0.08...1,
    ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3),
    interpolation: ImageInterpolation = .bilinear
  ) {
    precondition(height > 0 && width > 0, "RandomResizedCrop to \(height)×\(width)")
    precondition(scale.lowerBound > 0 && ratio.lowerBound > 0, "scale and ratio must be positive")
    self.height = height
    self.width = width
    self.scale = scale
    self.ratio = ratio
    self.interpolation = interpolation
  }

  /// torchvision's `get_params`: up to 10 tries of area ~ U(scale) · area and
  /// log(ratio) ~ U(log ratio), sides rounded half-to-even, kept if they fit, at a uniform
  /// position; otherwise the centred largest region with the ratio clamped into range.
  public func sampleRegion(
    imageWidth: Int, imageHeight: Int, generator: inout RandomGenerator
  ) -> Region {
    let area = Double(imageWidth * imageHeight)
    let logRatio = (log(ratio.lowerBound), log(ratio.upperBound))
    for _ in 0..<10 {
      let targetArea =
        area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * uniform(&generator))
      let aspect = exp(logRatio.0 + (logRatio.1 - logRatio.0) * uniform(&generator))
      let w = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
      let h = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
      if w > 0 && w <= imageWidth && h > 0 && h <= imageHeight {
        let top = generator.nextInt(below: imageHeight - h + 1)
        let left = generator.nextInt(below: imageWidth - w + 1)
        return Region(top: top, left: left, height: h, width: w)
      }
    }
    let inRatio = Double(imageWidth) / Double(imageHeight)
    var w = imageWidth
    var h = imageHeight
    if inRatio < ratio.lowerBound {
      h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
    } else if inRatio > ratio.upperBound {
      w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
    }
    return Region(top: (imageHeight - h) / 2, left: (imageWidth - w) / 2, height: h, width: w)
  }

  /// Crops `region` and resizes it to the output size (torchvision's `resized_crop`).
  public func apply(_ region: Region, to image: RGBImage) -> RGBImage {
    image.cropped(x: region.left, y: region.top, width: region.width, height: region.height)
      .resized(width: width, height: height, interpolation: interpolation)
  }

  /// A random resized crop of `image`.
  public func callAsFunction(_ image: RGBImage, generator: inout RandomGenerator) -> RGBImage {
    let region = sampleRegion(
      imageWidth: image.width, imageHeight: image.height, generator: &generator)
    return apply(region, to: image)
  }
}

/// Mirrors an image left to right with probability `probability`.
public struct RandomHorizontalFlip: Sendable {
  /// Chance of flipping.
  public var probability: Double

  /// Flips with `probability` (torchvision's default 0.5).
  public init(probability: Double = 0.5) { self.probability = probability }

  /// `image`, flipped or not.
  public func callAsFunction(_ image: RGBImage, generator: inout RandomGenerator) -> RGBImage {
    uniform(&generator) < probability ? image.horizontallyFlipped() : image
  }
}

/// Training preprocessing: random resized crop to the model's input size, random horizontal
/// flip, `ToTensor`, `Normalize` (timm's train transform without colour jitter or
/// auto-augment).
public struct TrainTransform: Sendable {
  /// The random crop.
  public var crop: RandomResizedCrop
  /// The random flip.
  public var flip: RandomHorizontalFlip
  /// Per-channel mean.
  public var mean: [Double]
  /// Per-channel std.
  public var std: [Double]

  /// Crop to `config`'s input size with its filter (or `interpolation`) and normalise with its
  /// mean and std.
  public init(
    config: ImagePreprocessConfig, scale: ClosedRange<Double> = 0.08...1,
    ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3), flipProbability: Double = 0.5,
    interpolation: ImageInterpolation? = nil
  ) {
    crop = RandomResizedCrop(
      height: config.height, width: config.width, scale: scale, ratio: ratio,
      interpolation: interpolation ?? config.interpolation)
    flip = RandomHorizontalFlip(probability: flipProbability)
    mean = config.mean
    std = config.std
  }

  /// The augmented image before conversion to a tensor.
  public func augmentedImage(_ image: RGBImage, generator: inout RandomGenerator) -> RGBImage {
    flip(crop(image, generator: &generator), generator: &generator)
  }

  /// One augmented model input, `[3, height, width]`.
  public func callAsFunction(_ image: RGBImage, generator: inout RandomGenerator) -> Tensor {
    augmentedImage(image, generator: &generator).tensor(mean: mean, std: std)
  }

  /// A batch of augmented inputs, `[images.count, 3, height, width]`.
  public func batch(_ images: [RGBImage], generator: inout RandomGenerator) -> Tensor {
    let out = Tensor(shape: [images.count, 3, crop.height, crop.width], zeroed: false)
    let stride = 3 * crop.height * crop.width
    for (i, image) in images.enumerated() {
      augmentedImage(image, generator: &generator)
        .write(into: out.pointer + i * stride, mean: mean, std: std)
    }
    return out
  }
}

/// timm's `Mixup` in 'batch' mode: one λ per batch, each image mixed with its mirror in the
/// batch (image `i` with image `B − 1 − i`), either blended (Mixup) or with a box pasted in
/// (CutMix), and label-smoothed one-hot targets mixed with the same λ.
public struct Mixup: Sendable {
  /// Mixup's Beta(α, α) parameter; mixup is active if > 0.
  public var mixupAlpha: Double
  /// CutMix's Beta(α, α) parameter; cutmix is active if > 0.
  public var cutmixAlpha: Double
  /// If set, CutMix boxes have sides uniformly in `[min, max)` of the image's (λ unused).
  public var cutmixMinMax: (min: Double, max: Double)?
  /// Chance that a batch is mixed at all.
  public var probability: Double
  /// Chance of CutMix rather than Mixup when both are active.
  public var switchProbability: Double
  /// Recompute λ from the box area actually pasted (after clipping at the borders).
  public var correctLambda: Bool
  /// Label smoothing ε: targets are ε / C off the label and 1 − ε + ε / C on it.
  public var labelSmoothing: Double
  /// Number of classes C.
  public var numClasses: Int
  /// Switch mixing off (targets are still smoothed), as timm's `mixup_enabled`.
  public var enabled = true

  /// A pasted box: rows `top..<bottom`, columns `left..<right`.
  public struct Box: Equatable, Sendable {
    /// First row.
    public var top: Int
    /// One past the last row.
    public var bottom: Int
    /// First column.
    public var left: Int
    /// One past the last column.
    public var right: Int

    /// A box covering rows `top..<bottom` and columns `left..<right`.
    public init(top: Int, bottom: Int, left: Int, right: Int) {
      self.top = top
      self.bottom = bottom
      self.left = left
      self.right = right
    }
  }

  /// What one batch gets: the weight λ of each image itself, and the CutMix box if any.
  public struct Parameters: Equatable, Sendable {
    /// Weight of the original image and label (1: unmixed).
    public var lambda: Double
    /// The region replaced by the mirror image's (CutMix); nil for a Mixup blend.
    public var box: Box?

    /// λ and an optional CutMix box.
    public init(lambda: Double, box: Box? = nil) {
      self.lambda = lambda
      self.box = box
    }
  }

  /// timm's defaults: mixup α 1, no cutmix, always on, switch 0.5, λ correction, smoothing 0.1.
  public init(
    mixupAlpha: Double = 1, cutmixAlpha: Double = 0,
    cutmixMinMax: (min: Double, max: Double)? = nil, probability: Double = 1,
    switchProbability: Double = 0.5, correctLambda: Bool = true, labelSmoothing: Double = 0.1,
    numClasses: Int
  ) {
    precondition(numClasses > 0, "Mixup needs at least one class")
    // As timm: a min/max box range forces cutmix on with α 1.
    let cutmix = cutmixMinMax == nil ? cutmixAlpha : 1
    precondition(
      mixupAlpha > 0 || cutmix > 0,
      "one of mixupAlpha > 0, cutmixAlpha > 0 or cutmixMinMax must be given")
    if let range = cutmixMinMax {
      precondition(0 <= range.min && range.min < range.max, "cutmixMinMax \(range)")
    }
    self.mixupAlpha = mixupAlpha
    self.cutmixAlpha = cutmix
    self.cutmixMinMax = cutmixMinMax
    self.probability = probability
    self.switchProbability = switchProbability
    self.correctLambda = correctLambda
    self.labelSmoothing = labelSmoothing
    self.numClasses = numClasses
  }

  /// Draws a batch's λ and (for CutMix) box for images of `height × width`, as timm's
  /// `_params_per_batch` and `cutmix_bbox_and_lam`.
  public func sampleParameters(
    height: Int, width: Int, generator: inout RandomGenerator
  ) -> Parameters {
    var lambda = 1.0
    var useCutmix = false
    if enabled && uniform(&generator) < probability {
      if mixupAlpha > 0 && cutmixAlpha > 0 {
        useCutmix = uniform(&generator) < switchProbability
        let alpha = useCutmix ? cutmixAlpha : mixupAlpha
        lambda = generator.nextBeta(alpha, alpha)
      } else if mixupAlpha > 0 {
        lambda = generator.nextBeta(mixupAlpha, mixupAlpha)
      } else {
        useCutmix = true
        lambda = generator.nextBeta(cutmixAlpha, cutmixAlpha)
      }
    }
    if lambda == 1 || !useCutmix { return Parameters(lambda: lambda) }
    let box: Box
    if let range = cutmixMinMax {
      // rand_bbox_minmax: sides uniform in [int(side · min), int(side · max)), position uniform.
      func side(_ n: Int) -> Int {
        let lo = Int(Double(n) * range.min)
        let hi = Int(Double(n) * range.max)
        precondition(hi > lo, "cutmixMinMax \(range) gives no box sizes for side \(n)")
        return lo + generator.nextInt(below: hi - lo)
      }
      let cutH = side(height)
      let cutW = side(width)
      let top = generator.nextInt(below: height - cutH + 1)
      let left = generator.nextInt(below: width - cutW + 1)
      box = Box(top: top, bottom: top + cutH, left: left, right: left + cutW)
    } else {
      let cy = generator.nextInt(below: height)
      let cx = generator.nextInt(below: width)
      box = Self.cutmixBox(lambda: lambda, centerY: cy, centerX: cx, height: height, width: width)
    }
    if correctLambda || cutmixMinMax != nil {
      let boxArea = (box.bottom - box.top) * (box.right - box.left)
      lambda = 1 - Double(boxArea) / Double(height * width)
    }
    return Parameters(lambda: lambda, box: box)
  }

  /// timm's `rand_bbox` for a given centre: sides `Int(side · sqrt(1 − λ))`, extending
  /// `cut / 2` before and `(cut + 1) / 2` after the centre, clipped to the image.
  static func cutmixBox(lambda: Double, centerY: Int, centerX: Int, height: Int, width: Int)
    -> Box
  {
    let ratio = (1 - lambda).squareRoot()
    let cutH = Int(Double(height) * ratio)
    let cutW = Int(Double(width) * ratio)
    func clip(_ v: Int, _ n: Int) -> Int { min(max(v, 0), n) }
    return Box(
      top: clip(centerY - cutH / 2, height), bottom: clip(centerY + (cutH + 1) / 2, height),
      left: clip(centerX - cutW / 2, width), right: clip(centerX + (cutW + 1) / 2, width))
  }

  /// Mixes a batch `[B, C, H, W]` (B even) with `parameters`: returns the mixed images and the
  /// soft targets `[B, numClasses]`. The input tensor is not modified.
  public func apply(_ parameters: Parameters, images: Tensor, labels: [Int]) -> (
    images: Tensor, targets: Tensor
  ) {
    precondition(images.rank == 4, "Mixup expects [B, C, H, W], got \(images.shape)")
    let batch = images.shape[0]
    precondition(batch % 2 == 0, "Mixup needs an even batch size, got \(batch)")
    precondition(labels.count == batch, "\(labels.count) labels for a batch of \(batch)")
    let (channels, height, width) = (images.shape[1], images.shape[2], images.shape[3])
    let lambda = parameters.lambda
    let out = images.detached().copy()
    let sample = channels * height * width
    let src = images.pointer
    let dst = out.pointer
    if let box = parameters.box {
      let rows = box.top..<max(box.bottom, box.top)
      let columns = box.left..<max(box.right, box.left)
      for b in 0..<batch {
        let mirror = batch - 1 - b
        for c in 0..<channels {
          for y in rows {
            let offset = c * height * width + y * width
            for x in columns {
              dst[b * sample + offset + x] = src[mirror * sample + offset + x]
            }
          }
        }
      }
    } else if lambda != 1 {
      // timm: x.mul_(λ).add_(x.flip(0).mul_(1 − λ)), in float32 with float32 scalars.
      let own = Float(lambda)
      let other = Float(1 - lambda)
      for b in 0..<batch {
        let a = src + b * sample
        let m = src + (batch - 1 - b) * sample
        let o = dst + b * sample
        for i in 0..<sample { o[i] = a[i] * own + m[i] * other }
      }
    }
    let targets = Self.targets(
      labels: labels, numClasses: numClasses, lambda: lambda, smoothing: labelSmoothing)
    return (out, targets)
  }

  /// Draws parameters and mixes the batch (timm's `Mixup.__call__`).
  public func callAsFunction(
    _ images: Tensor, labels: [Int], generator: inout RandomGenerator
  ) -> (images: Tensor, targets: Tensor) {
    precondition(images.rank == 4, "Mixup expects [B, C, H, W], got \(images.shape)")
    let parameters = sampleParameters(
      height: images.shape[2], width: images.shape[3], generator: &generator)
    return apply(parameters, images: images, labels: labels)
  }

  /// timm's `mixup_target`: smoothed one-hot rows (ε / C off, 1 − ε + ε / C on), each mixed
  /// with the mirror row: `λ · y[i] + (1 − λ) · y[B − 1 − i]`, in float32.
  public static func targets(labels: [Int], numClasses: Int, lambda: Double, smoothing: Double)
    -> Tensor
  {
    let batch = labels.count
    let offValue = smoothing / Double(numClasses)
    let off = Float(offValue)
    let on = Float(1 - smoothing + offValue)
    let own = Float(lambda)
    let other = Float(1 - lambda)
    let out = Tensor(shape: [batch, numClasses], zeroed: false)
    for (b, label) in labels.enumerated() {
      precondition(label >= 0 && label < numClasses, "label \(label) outside 0..<\(numClasses)")
      let mirror = labels[batch - 1 - b]
      let row = out.pointer + b * numClasses
      for c in 0..<numClasses {
        row[c] = (c == label ? on : off) * own + (c == mirror ? on : off) * other
      }
    }
    return out
  }
}
