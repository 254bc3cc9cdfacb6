// ViTDet's simple feature pyramid (Li et al. 2022; detectron2's
// `detectron2/modeling/backbone/vit.py`, `SimpleFeaturePyramid`).

import Foundation

/// Multi-scale maps from a plain ViT's single stride-16 map, as ViTDet builds them.
///
/// From `[B, D, H/16, W/16]`: stride 4 by a 2×2 stride-2 transposed convolution to D/2, LayerNorm,
/// GELU and another to D/4; stride 8 by one to D/2; stride 16 the map itself; stride 32 by 2×2 max
/// pooling (and, beyond ViTDet, stride 64 by 4×4 max pooling, for backbones whose patch is finer
/// than 16: `ViTPyramidFeatures.patchStride`). Each branch then has a 1×1 conv + LayerNorm and a 3×3 conv + LayerNorm to
/// `outChannels`, the convs without bias (ViTDet's `norm="LN"`). The LayerNorm is detectron2's
/// channels-first one (over C at every position, eps 1e-6).
///
/// Initialisation as detectron2: the 1×1 and 3×3 convs Kaiming-normal with fan-out (`c2_msra_fill`),
/// the transposed convs PyTorch's default (uniform ±1/√fan_in). Differences: only the levels
/// asked for are built (FCOS uses 8, 16, 32 or 4–32), and there is no extra top block (ViTDet's
/// Mask R-CNN adds a stride-64 map by pooling; FCOS's P6/P7 are left out for small images).
public final class SimpleFeaturePyramid {
  /// Strides built, finest first, each one of 4, 8, 16, 32, 64 (relative to a stride-16 input).
  public let strides: [Int]
  /// Input width D.
  public let inChannels: Int
  /// Channels of every output map.
  public let outChannels: Int
  private var parameters: [(String, Tensor)] = []
  private var stages: [(Tensor) -> Tensor] = []

  /// A pyramid from D-channel stride-16 maps to `outChannels`-channel maps at `strides`.
  public init(inChannels: Int, outChannels: Int, strides: [Int] = [4, 8, 16, 32], seed: UInt64 = 0)
  {
    precondition(
      !strides.isEmpty && strides.allSatisfy { [4, 8, 16, 32, 64].contains($0) }
        && strides == strides.sorted(),
      "SimpleFeaturePyramid: strides \(strides) must be increasing, from 4, 8, 16, 32, 64")
    precondition(
      inChannels % 4 == 0 && outChannels > 0,
      "SimpleFeaturePyramid: D = \(inChannels) must be a multiple of 4")
    self.strides = strides
    self.inChannels = inChannels
    self.outChannels = outChannels
    var rng = RandomGenerator(seed: seed)
    for s in strides {
      let name = "stage\(Int(log2(Double(s))))"
      var ops: [(Tensor) -> Tensor] = []
      var width = inChannels
      if s == 4 || s == 8 {
        let up1 = deconvolution("\(name).up1", inChannels, inChannels / 2, &rng)
        width = inChannels / 2
        if s == 4 {
          let norm = layerNorm("\(name).up1.norm", width)
          let up2 = deconvolution("\(name).up2", width, inChannels / 4, &rng)
          ops.append { up2(norm(up1($0)).gelu()) }
          width = inChannels / 4
        } else {
          ops.append(up1)
        }
      } else if s == 32 {
        ops.append { $0.maxPool2d(kernel: (2, 2), stride: (2, 2)) }
      } else if s == 64 {
        // Two 2×2 poolings in one: the max over each 4×4 block.
        ops.append { $0.maxPool2d(kernel: (4, 4), stride: (4, 4)) }
      }
      ops.append(convolution("\(name).lateral", width, outChannels, kernel: 1, &rng))
      ops.append(convolution("\(name).output", outChannels, outChannels, kernel: 3, &rng))
      stages.append { x in ops.reduce(x) { $1($0) } }
    }
  }

  /// Every trainable tensor, with a dotted name.
  public var namedParameters: [(String, Tensor)] { parameters }

  /// The maps at `strides` from a `[B, D, h, w]` stride-16 map (`h` and `w` even when stride 32
  /// is built, multiples of 4 when stride 64 is).
  public func callAsFunction(_ x: Tensor) -> [Tensor] {
    precondition(
      x.rank == 4 && x.shape[1] == inChannels,
      "SimpleFeaturePyramid: input \(x.shape), D = \(inChannels)")
    return stages.map { $0(x) }
  }

  private func register(_ name: String, _ t: Tensor) -> Tensor {
    t.requiresGrad = true
    parameters.append((name, t))
    return t
  }

  /// LayerNorm over channels of `[B, C, H, W]` (detectron2's channels-first `LayerNorm`).
  private func layerNorm(_ name: String, _ c: Int) -> (Tensor) -> Tensor {
    let weight = register("\(name).weight", Tensor.ones([c]))
    let bias = register("\(name).bias", Tensor.zeros([c]))
    return {
      $0.permuted([0, 2, 3, 1]).layerNorm(weight: weight, bias: bias, eps: 1e-6)
        .permuted([0, 3, 1, 2])
    }
  }

  /// A 2×2 stride-2 transposed convolution with bias, PyTorch's default initialisation.
  private func deconvolution(
    _ name: String, _ inC: Int, _ outC: Int, _ rng: inout RandomGenerator
  ) -> (Tensor) -> Tensor {
    let bound = 1 / Float(outC * 4).squareRoot()
    let weight = register(
      "\(name).weight", Tensor.rand([inC, outC, 2, 2], low: -bound, high: bound, generator: &rng))
    let bias = register(
      "\(name).bias", Tensor.rand([outC], low: -bound, high: bound, generator: &rng))
    return { $0.convTranspose2d(weight: weight, bias: bias, stride: (2, 2)) }
  }

  /// A bias-free k×k convolution (padding k/2) followed by channels-first LayerNorm.
  private func convolution(
    _ name: String, _ inC: Int, _ outC: Int, kernel: Int, _ rng: inout RandomGenerator
  ) -> (Tensor) -> Tensor {
    let std = (2 / Float(outC * kernel * kernel)).squareRoot()
    let weight = register(
      "\(name).weight", Tensor.randn([outC, inC, kernel, kernel], std: std, generator: &rng))
    let norm = layerNorm("\(name).norm", outC)
    let pad = kernel / 2
    return { norm($0.conv2d(weight: weight, padding: (pad, pad))) }
  }
}
