import Foundation

/// PLLaVA's projector and pooling: per frame token `Linear(E → D) → GELU → Linear(D → D)`
/// (E the frame encoder's width, D the decoder's), then adaptive average pooling over
/// (time, rows, columns) to the visual tokens, flattened in (t, h, w) order.
///
/// PLLaVA pools after the whole MLP. Here the pooling runs between the GELU and the second
/// linear: an average whose weights sum to one commutes with an affine map, so the result is
/// the same while the second layer runs on the pooled tokens only. The pooling is a fixed
/// matrix product so gradients reach the first layer.
///
/// Tensors: `linear_1.weight` [D, E], `linear_1.bias`, `linear_2.weight` [D, D], `linear_2.bias`
/// (the names of `transformers`' `LlavaMultiModalProjector`).
public final class VisualProjector: Module {
  /// First layer, E → D.
  public let linear1: Linear
  /// Second layer, D → D.
  public let linear2: Linear

  /// A freshly initialised projector (PyTorch's `nn.Linear` initialisation).
  public init(encoderWidth: Int, decoderWidth: Int, generator: inout RandomGenerator) {
    linear1 = Linear(encoderWidth, decoderWidth, generator: &generator)
    linear2 = Linear(decoderWidth, decoderWidth, generator: &generator)
    super.init()
    registerModule("linear_1", linear1)
    registerModule("linear_2", linear2)
  }

  /// Visual tokens [B, t·h'·w', D] of frame tokens [B, T, H, W, E] pooled to `pool`.
  public func callAsFunction(_ tokens: Tensor, pool: (Int, Int, Int)) -> Tensor {
    precondition(tokens.rank == 5, "frame tokens \(tokens.shape) must be [B, T, H, W, E]")
    let (b, t, h, w, e) = (
      tokens.shape[0], tokens.shape[1], tokens.shape[2], tokens.shape[3], tokens.shape[4]
    )
    let hidden = linear1(tokens.reshaped([b, t * h * w, e])).gelu()
    let matrix = Self.poolingMatrix(input: (t, h, w), output: pool)
    // [B, THW, D] → [B, D, THW] · Pᵀ → [B, D, thw] → [B, thw, D]
    let pooled = hidden.permuted([0, 2, 1]).matmul(matrix, transposeOther: true)
      .permuted([0, 2, 1])
    return linear2(pooled)
  }

  /// The matrix [t·h·w, T·H·W] of `AdaptivePooling.averagePool3D`'s bins: row (i, j, k) holds
  /// 1/|bin| at every input position of its bin.
  public static func poolingMatrix(input: (Int, Int, Int), output: (Int, Int, Int)) -> Tensor {
    let (t, h, w) = input
    let bt = AdaptivePooling.bins(input: t, output: output.0)
    let bh = AdaptivePooling.bins(input: h, output: output.1)
    let bw = AdaptivePooling.bins(input: w, output: output.2)
    let columns = t * h * w
    let out = Tensor(shape: [output.0 * output.1 * output.2, columns])
    let p = out.pointer
    var row = 0
    for ti in bt {
      for hj in bh {
        for wk in bw {
          let weight = 1 / Float(ti.count * hj.count * wk.count)
          for a in ti {
            for r in hj {
              for c in wk { p[row * columns + (a * h + r) * w + c] = weight }
            }
          }
          row += 1
        }
      }
    }
    return out
  }
}
