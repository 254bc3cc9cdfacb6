import Foundation

/// An image with its boxes: what box-aware augmentation transforms.
public struct AnnotatedSample: Equatable, Sendable {
  /// The pixels.
  public var image: RGBImage
  /// The boxes, in the image's pixel coordinates.
  public var annotations: [BoxAnnotation]

  /// Pairs an image with its boxes.
  public init(image: RGBImage, annotations: [BoxAnnotation]) {
    self.image = image
    self.annotations = annotations
  }

  /// Mirrored left to right: a box from `x` to `maxX` goes to `width - maxX` … `width - x`.
  public func horizontallyFlipped() -> AnnotatedSample {
    let w = Double(image.width)
    return AnnotatedSample(
      image: image.horizontallyFlipped(),
      annotations: annotations.map { a in
        var a = a
        a.box.x = w - a.box.maxX
        return a
      })
  }

  /// Resized to `width`×`height`; boxes and areas scale with the image.
  public func resized(width: Int, height: Int, interpolation: ImageInterpolation = .bilinear)
    -> AnnotatedSample
  {
    let sx = Double(width) / Double(image.width)
    let sy = Double(height) / Double(image.height)
    return AnnotatedSample(
      image: image.resized(width: width, height: height, interpolation: interpolation),
      annotations: annotations.map { a in
        var a = a
        a.box = BoundingBox(
          x: a.box.x * sx, y: a.box.y * sy, width: a.box.width * sx, height: a.box.height * sy)
        a.area *= sx * sy
        return a
      })
  }

  /// The `width`×`height` region at (`x`, `y`), which must lie in the image. Boxes are clipped
  /// to it and moved into its coordinates; a box keeps its place only if at least
  /// `minVisibleFraction` of its area stays inside (and some area does), otherwise it is
  /// dropped. A kept box's `area` shrinks in proportion to its box.
  public func cropped(
    x: Int, y: Int, width: Int, height: Int, minVisibleFraction: Double = 0
  ) -> AnnotatedSample {
    precondition(
      x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= image.width
        && y + height <= image.height,
      "crop \(width)×\(height) at (\(x), \(y)) outside a \(image.width)×\(image.height) image")
    let (left, top) = (Double(x), Double(y))
    let (right, bottom) = (Double(x + width), Double(y + height))
    var kept: [BoxAnnotation] = []
    for a in annotations {
      let clipped = BoundingBox(
        minX: max(a.box.x, left), minY: max(a.box.y, top), maxX: min(a.box.maxX, right),
        maxY: min(a.box.maxY, bottom))
      guard clipped.width > 0, clipped.height > 0 else { continue }
      let fraction = a.box.area > 0 ? clipped.area / a.box.area : 1
      guard fraction >= minVisibleFraction else { continue }
      var moved = a
      moved.box = BoundingBox(
        x: clipped.x - left, y: clipped.y - top, width: clipped.width, height: clipped.height)
      moved.area = a.area * fraction
      kept.append(moved)
    }
    return AnnotatedSample(
      image: image.cropped(x: x, y: y, width: width, height: height), annotations: kept)
  }
}

/// Training augmentation for detection: scale jitter, a random crop that keeps boxes valid,
/// and a horizontal flip, each moving the boxes with the pixels.
public struct BoxAugmentation: Sendable {
  /// The image is resized by a factor drawn uniformly from this range (1…1 turns it off).
  public var scaleRange: ClosedRange<Double>
  /// Each side of the crop is this fraction of the (scaled) image's side at least; 1 turns the
  /// crop off.
  public var minCropFraction: Double
  /// Boxes with less of their area inside the crop are dropped.
  public var minVisibleFraction: Double
  /// Chance of a horizontal flip.
  public var flipProbability: Double
  /// Crops tried before giving up and keeping the whole image, when every try would leave no
  /// box (an image without boxes is cropped on the first try).
  public var cropTries: Int

  /// The augmentation; by default scale 0.8…1.25, crops of at least 60% of each side, boxes
  /// dropped below 30% visible, flips half the time.
  public init(
    scaleRange: ClosedRange<Double> = 0.8...1.25, minCropFraction: Double = 0.6,
    minVisibleFraction: Double = 0.3, flipProbability: Double = 0.5, cropTries: Int = 10
  ) {
    self.scaleRange = scaleRange
    self.minCropFraction = minCropFraction
    self.minVisibleFraction = minVisibleFraction
    self.flipProbability = flipProbability
    self.cropTries = cropTries
  }

  /// `sample`, scaled, cropped and perhaps flipped.
  public func callAsFunction(_ sample: AnnotatedSample, generator: inout RandomGenerator)
    -> AnnotatedSample
  {
    var out = sample
    let factor =
      scaleRange.lowerBound + (scaleRange.upperBound - scaleRange.lowerBound)
      * Double(generator.nextFloat())
    if factor != 1 {
      let w = max(1, Int((Double(out.image.width) * factor).rounded()))
      let h = max(1, Int((Double(out.image.height) * factor).rounded()))
      out = out.resized(width: w, height: h)
    }
    if minCropFraction < 1 {
      for _ in 0..<max(1, cropTries) {
        let (w, h) = (out.image.width, out.image.height)
        let cw = side(w, &generator)
        let ch = side(h, &generator)
        let x = generator.nextInt(below: w - cw + 1)
        let y = generator.nextInt(below: h - ch + 1)
        let candidate = out.cropped(
          x: x, y: y, width: cw, height: ch, minVisibleFraction: minVisibleFraction)
        if !candidate.annotations.isEmpty || out.annotations.isEmpty {
          out = candidate
          break
        }
      }
    }
    if Double(generator.nextFloat()) < flipProbability { out = out.horizontallyFlipped() }
    return out
  }

  /// A crop side between `minCropFraction` of `length` and all of it.
  private func side(_ length: Int, _ generator: inout RandomGenerator) -> Int {
    let low = max(1, Int((Double(length) * minCropFraction).rounded(.up)))
    return low >= length ? length : low + generator.nextInt(below: length - low + 1)
  }
}
