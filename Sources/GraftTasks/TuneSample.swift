import Foundation

/// A kind of sample a run trains on (images today; point clouds next): how it becomes a
/// backbone's input tensor, and how a report shows it.
public protocol TuneSample {
  /// The training and evaluation transforms into `input`'s tensors; throws `ConfigError` when
  /// this kind of sample cannot feed such a backbone.
  static func transforms(for input: BackboneInput) throws -> SampleTransforms<Self>
  /// The transform that draws one random test-time view of a sample for voting
  /// (`eval.votes`), or nil when this kind of sample has none.
  static func votingTransform(for input: BackboneInput) throws -> SampleTransform<Self>?
  /// A picture of `sample` for reports (nil when there is none).
  static func preview(_ sample: Self) -> RGBImage?
}

extension TuneSample {
  /// None by default: a kind of sample votes only when it defines its test-time views (point
  /// clouds do; images evaluate one view, as Graft's image recipes do).
  public static func votingTransform(for input: BackboneInput) throws -> SampleTransform<Self>? {
    nil
  }
}

/// A run's two transforms of one sample kind.
public struct SampleTransforms<Sample>: Sendable {
  /// Applied to training samples (augmentation included).
  public var train: SampleTransform<Sample>
  /// Applied to validation, test and prediction samples (deterministic).
  public var eval: SampleTransform<Sample>
  /// True when both transforms give each sample one fixed tensor (no augmentation, no random
  /// view) of a single image: what a feature cache may key and store.
  public var cacheable: Bool

  /// The two transforms; `cacheable` as above (false unless said).
  public init(
    train: @escaping SampleTransform<Sample>, eval: @escaping SampleTransform<Sample>,
    cacheable: Bool = false
  ) {
    self.train = train
    self.eval = eval
    self.cacheable = cacheable
  }
}

extension RGBImage: TuneSample {
  /// timm's eval transform for the model, for training too (Graft's tuning recipes train
  /// without augmentation).
  public static func transforms(for input: BackboneInput) throws -> SampleTransforms<RGBImage> {
    guard case .image(let config) = input else {
      throw ConfigError("the data are images, but the backbone does not take images")
    }
    let t = EvalTransform(config: config)
    let transform: ImageTransform = { image, _ in t(image) }
    // No augmentation: the same tensor for an image in every epoch, so features may be cached.
    return SampleTransforms(train: transform, eval: transform, cacheable: true)
  }

  /// The image itself.
  public static func preview(_ sample: RGBImage) -> RGBImage? { sample }
}
