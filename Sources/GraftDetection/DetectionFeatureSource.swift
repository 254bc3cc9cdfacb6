// What a detection head needs from a backbone: feature maps at known strides.

/// A source of multi-scale feature maps for a detection head.
///
/// Given images `[B, 3, H, W]` it returns one `[B, channels, H/s, W/s]` map per entry of
/// `strides` (finest first); H and W are multiples of the coarsest stride. HST's 4-scale side
/// features and `ViTPyramidFeatures` (a simple feature pyramid on a plain ViT) are the two kinds.
public protocol DetectionFeatureSource: AnyObject {
  /// Stride of each map in input pixels, finest first (for example 8, 16, 32, or 4, 8, 16, 32).
  var strides: [Int] { get }
  /// Channels of every map.
  var channels: Int { get }
  /// The maps for a batch of images.
  func features(_ images: Tensor) -> [Tensor]
  /// The source's own trainable tensors with dotted names (a frozen backbone's are not listed).
  var namedParameters: [(String, Tensor)] { get }
}

/// A `SimpleFeaturePyramid` on a plain ViT's last-block token map.
///
/// `tokenMap` runs the backbone and returns its last block's patch tokens as a `[B, D, H/p,
/// W/p]` map for patch size p (class and register tokens dropped, tokens reshaped row-major);
/// the module that owns the ViT supplies it, so that GraftDetection does not depend on the model
/// zoo. The pyramid's strides are relative to a stride-16 map, as ViTDet's; with a patch of p
/// the maps' strides in pixels are the pyramid's times p/16 (a patch-4 ViT with the pyramid's
/// 16, 32, 64 gives strides 4, 8, 16: scales 1, 1/2, 1/4 of its token map).
public final class ViTPyramidFeatures: DetectionFeatureSource {
  /// The pyramid on the token map.
  public let pyramid: SimpleFeaturePyramid
  /// The backbone: images to a stride-16 token map.
  public let tokenMap: (Tensor) -> Tensor

  /// The backbone's patch stride in pixels (16 for ViTDet's ViTs).
  public let patchStride: Int

  /// A source from a backbone closure and a pyramid built for its width.
  public init(
    pyramid: SimpleFeaturePyramid, patchStride: Int = 16, tokenMap: @escaping (Tensor) -> Tensor
  ) {
    precondition(
      pyramid.strides.allSatisfy { ($0 * patchStride) % 16 == 0 },
      "ViTPyramidFeatures: pyramid strides \(pyramid.strides) with patch \(patchStride) are not "
        + "whole pixels")
    self.pyramid = pyramid
    self.patchStride = patchStride
    self.tokenMap = tokenMap
  }

  /// The pyramid's strides in input pixels: its stride-16-relative strides times p/16.
  public var strides: [Int] { pyramid.strides.map { $0 * patchStride / 16 } }
  /// The pyramid's output channels.
  public var channels: Int { pyramid.outChannels }
  /// The pyramid's maps of the backbone's last-block token map.
  public func features(_ images: Tensor) -> [Tensor] { pyramid(tokenMap(images)) }
  /// The pyramid's tensors, under `pyramid.` (the backbone is frozen).
  public var namedParameters: [(String, Tensor)] {
    pyramid.namedParameters.map { ("pyramid.\($0.0)", $0.1) }
  }
}
