// Resampling of NCHW feature maps, as PyTorch's `F.interpolate(..., align_corners=False)` without
// antialiasing: bilinear (2 taps per axis) and bicubic (4 taps, A = −0.75, indices clamped to the
// border). The filter is separable, so each axis is described by a table of taps and weights,
// and the backward scatters the output gradient through the same tables.

/// Interpolation filter for `Tensor.resized`.
public enum ResizeMode: Sendable {
  /// Linear in each axis over the 2 nearest samples.
  case bilinear
  /// Keys' cubic convolution with A = −0.75 over 4 samples, as PyTorch's `bicubic`.
  case bicubic
}

/// Taps of one resampled axis: output `i` reads `index[i·taps + t]` with weight
/// `weight[i·taps + t]`.
struct ResampleAxis {
  let taps: Int
  let index: [Int]
  let weight: [Float]

  /// PyTorch's tables for an axis of `input` samples resized to `output`. `scale` is the
  /// input-per-output step: `input / output`, or `1 / scaleFactor` when a factor was given.
  init(input: Int, output: Int, scale: Float, mode: ResizeMode) {
    taps = mode == .bilinear ? 2 : 4
    var index = [Int](repeating: 0, count: output * taps)
    var weight = [Float](repeating: 0, count: output * taps)
    for i in 0..<output {
      // Half-pixel centres (align_corners = false); linear clamps negatives to the first sample.
      var real = scale * (Float(i) + 0.5) - 0.5
      if mode == .bilinear && real < 0 { real = 0 }
      let base = Swift.min(Int(real.rounded(.down)), input - 1)
      let t = Swift.min(Swift.max(real - Float(base), 0), 1)
      switch mode {
      case .bilinear:
        index[2 * i] = base
        index[2 * i + 1] = base + (base < input - 1 ? 1 : 0)
        weight[2 * i] = 1 - t
        weight[2 * i + 1] = t
      case .bicubic:
        let a: Float = -0.75
        // Keys' kernel: |x| ≤ 1 and 1 < |x| < 2 pieces, at distances t+1, t, 1−t, 2−t.
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        let w = [far(t + 1), near(t), near(1 - t), far(2 - t)]
        for k in 0..<4 {
          index[4 * i + k] = Swift.min(Swift.max(base - 1 + k, 0), input - 1)
          weight[4 * i + k] = w[k]
        }
      }
    }
    self.index = index
    self.weight = weight
  }
}

extension Tensor {
  /// Resamples the spatial axes of `[N, C, H, W]` to `size` = (H', W'), as PyTorch's
  /// `F.interpolate(x, size=size, mode=…, align_corners=False)` (no antialiasing).
  public func resized(to size: (Int, Int), mode: ResizeMode) -> Tensor {
    precondition(rank == 4, "resized: input \(shape) must be [N, C, H, W]")
    precondition(
      size.0 >= 1 && size.1 >= 1 && shape[2] >= 1 && shape[3] >= 1,
      "resized: cannot resize \(shape) to \(size)")
    return resample(
      size, scale: (Float(shape[2]) / Float(size.0), Float(shape[3]) / Float(size.1)), mode: mode)
  }

  /// Resamples `[N, C, H, W]` by `scaleFactor` = (height, width) factors: the output is
  /// `floor(H·sh) × floor(W·sw)` and sample positions step by `1 / factor`, as PyTorch's
  /// `F.interpolate(x, scale_factor=…, mode=…, align_corners=False)`.
  public func resized(scaleFactor: (Double, Double), mode: ResizeMode) -> Tensor {
    precondition(rank == 4, "resized: input \(shape) must be [N, C, H, W]")
    precondition(
      scaleFactor.0 > 0 && scaleFactor.1 > 0, "resized: scale factor \(scaleFactor) must be > 0")
    let size = (
      Int((Double(shape[2]) * scaleFactor.0).rounded(.down)),
      Int((Double(shape[3]) * scaleFactor.1).rounded(.down))
    )
    precondition(
      size.0 >= 1 && size.1 >= 1 && shape[2] >= 1 && shape[3] >= 1,
      "resized: scale factor \(scaleFactor) turns \(shape) into an empty \(size)")
    return resample(
      size, scale: (Float(1 / scaleFactor.0), Float(1 / scaleFactor.1)), mode: mode)
  }

  private func resample(_ size: (Int, Int), scale: (Float, Float), mode: ResizeMode) -> Tensor {
    let (h, w) = (shape[2], shape[3])
    let (ho, wo) = size
    let ay = ResampleAxis(input: h, output: ho, scale: scale.0, mode: mode)
    let ax = ResampleAxis(input: w, output: wo, scale: scale.1, mode: mode)
    let taps = ay.taps
    let planes = shape[0] * shape[1]
    let out = Tensor(shape: [shape[0], shape[1], ho, wo], zeroed: false)
    let (src, dst) = (pointer, out.pointer)
    let perRow = wo * taps * taps
    // Output rows are independent in the forward, so they split finely across threads.
    Parallel.forRange(planes * ho, grain: Swift.max(1, 16_384 / Swift.max(perRow, 1))) { range in
      for r in range {
        let x = src + (r / ho) * h * w
        let oy = r % ho
        let d = dst + r * wo
        for ox in 0..<wo {
          var acc: Float = 0
          for ty in 0..<taps {
            let row = x + ay.index[oy * taps + ty] * w
            var inner: Float = 0
            for tx in 0..<taps {
              inner += ax.weight[ox * taps + tx] * row[ax.index[ox * taps + tx]]
            }
            acc += ay.weight[oy * taps + ty] * inner
          }
          d[ox] = acc
        }
      }
    }
    let inShape = shape
    let name = mode == .bilinear ? "upsample_bilinear2d" : "upsample_bicubic2d"
    return out.recording(name, [self]) { grad in
      let gx = Tensor(shape: inShape)
      let (gs, gd) = (grad.pointer, gx.pointer)
      // Different output rows scatter into the same input rows: split by plane only.
      Parallel.forRange(planes, grain: Swift.max(1, 16_384 / Swift.max(perRow * ho, 1))) {
        range in
        for plane in range {
          let x = gd + plane * h * w
          for oy in 0..<ho {
            let g = gs + (plane * ho + oy) * wo
            for ty in 0..<taps {
              let row = x + ay.index[oy * taps + ty] * w
              let wy = ay.weight[oy * taps + ty]
              for ox in 0..<wo {
                let v = wy * g[ox]
                for tx in 0..<taps {
                  row[ax.index[ox * taps + tx]] += ax.weight[ox * taps + tx] * v
                }
              }
            }
          }
        }
      }
      return [gx]
    }
  }
}
