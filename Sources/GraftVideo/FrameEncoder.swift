import Foundation
import GraftData
import GraftModels
import GraftTensor

/// Tokens of video frames from a frozen image backbone, PLLaVA's way: every frame through the
/// backbone, the hidden state of one block (`layer`, default −2: the second-to-last block's
/// output, PLLaVA's `vision_feature_layer`) with the prefix tokens (class, registers) dropped,
/// laid out as [B, T, h, w, D] on the patch grid, then `AdaptivePooling` over (T, h, w).
public struct FrameEncoder {
  /// The frozen backbone.
  public let backbone: any ImageBackbone
  /// The eval transform each frame goes through (resize, crop, normalise).
  public let transform: EvalTransform
  /// Which block's output: 0-based, or negative from the end (−1 the last block).
  public let layer: Int

  /// Wraps a backbone and its eval transform; throws `VideoError.invalidArgument` when `layer`
  /// names no block.
  public init(backbone: any ImageBackbone, transform: EvalTransform, layer: Int = -2) throws {
    guard (-backbone.depth..<backbone.depth).contains(layer) else {
      throw VideoError(
        .invalidArgument, path: "layer",
        message:
          "\(layer) is not a block of a \(backbone.depth)-block backbone (0…\(backbone.depth - 1), "
          + "or -\(backbone.depth)…-1 from the end)")
    }
    self.backbone = backbone
    self.transform = transform
    self.layer = layer
  }

  /// The block index `layer` names.
  public var blockIndex: Int { layer < 0 ? backbone.depth + layer : layer }

  /// Preprocessed pixels of every frame of every clip, [B·T, 3, H, W] (clip-major).
  public func pixels(_ clips: [VideoFrames]) -> Tensor {
    transform.batch(clips.flatMap { clip in (0..<clip.count).map { clip.image($0) } })
  }

  /// Tokens of `pixels` [N, 3, H, W] at `layer`, prefix dropped: [N, h, w, D]. The frames run
  /// as one batch, without gradients, and only up to the block asked for.
  public func tokens(pixels: Tensor) -> Tensor {
    withNoGrad {
      let embedded = backbone.embed(pixels)
      guard case .grid(1, let rows, let columns) = embedded.layout else {
        preconditionFailure("\(backbone.familyName) gives no single-frame patch grid")
      }
      var x: Tensor
      if embedded.positions == nil {
        // A ViT adds positions once in the embedding, so its blocks run alone.
        x = embedded.tokens
        for i in 0...blockIndex { x = backbone.block(i, x, pass: nil) }
      } else {
        x = backbone.forward(pixels, hiddenStates: true).hiddenStates[blockIndex]
      }
      let n = x.shape[0]
      let prefix = backbone.prefixTokens
      return x.narrow(1, start: prefix, length: x.shape[1] - prefix)
        .reshaped([n, rows, columns, backbone.width])
    }
  }

  /// Pixels [B, T, 3, H, W], tokens [B, T, h, w, D] and tokens pooled to `pool` (t, h', w'),
  /// [B, t, h', w', D], of clips that all have T frames; all frames run as one batch.
  public func encode(_ clips: [VideoFrames], pool: (Int, Int, Int)) -> (
    pixels: Tensor, tokens: Tensor, pooled: Tensor
  ) {
    let t = clips[0].count
    precondition(clips.allSatisfy { $0.count == t }, "clips of different frame counts")
    let pixels = pixels(clips)
    let frameTokens = tokens(pixels: pixels)
    let b = clips.count
    let tokens = frameTokens.reshaped([b, t] + Array(frameTokens.shape.dropFirst()))
    let pooled = AdaptivePooling.averagePool3D(tokens, to: pool)
    return (pixels.reshaped([b, t] + Array(pixels.shape.dropFirst())), tokens, pooled)
  }
}
