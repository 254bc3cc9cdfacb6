// Max and average pooling over the last two axes, and adaptive average pooling over the last
// one, two or three, with PyTorch's window and bin rules. Every plane (one channel of one image)
// is independent, so forward and backward run planes in parallel.

/// Window geometry of a 2-D pooling call.
struct Pool2dGeometry {
  let planes: Int
  let h: Int
  let w: Int
  let kh: Int
  let kw: Int
  let sh: Int
  let sw: Int
  let ph: Int
  let pw: Int
  let dh: Int
  let dw: Int
  let ho: Int
  let wo: Int

  var hw: Int { h * w }
  var p: Int { ho * wo }
}

/// PyTorch's pooled extent: windows of span `dilation·(kernel − 1) + 1` stepping by `stride` over
/// the padded input; with `ceilMode` a last partial window counts if it starts inside the input
/// or its left padding.
func pooledExtent(
  input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, ceilMode: Bool
) -> Int {
  let span = dilation * (kernel - 1) + 1
  let room = input + 2 * padding - span
  guard room >= 0 else { return 0 }
  var out = (ceilMode ? room + stride - 1 : room) / stride + 1
  if ceilMode && (out - 1) * stride >= input + padding { out -= 1 }
  return out
}

extension Tensor {
  /// Checks the arguments of a 2-D pool and works out its geometry (`[N, C, H, W]` or `[C, H, W]`).
  private func pool2dGeometry(
    _ op: String, kernel: (Int, Int), stride: (Int, Int)?, padding: (Int, Int),
    dilation: (Int, Int), ceilMode: Bool
  ) -> Pool2dGeometry {
    precondition(rank == 3 || rank == 4, "\(op): input \(shape) must be [N, C, H, W] or [C, H, W]")
    let stride = stride ?? kernel
    precondition(
      kernel.0 >= 1 && kernel.1 >= 1 && stride.0 >= 1 && stride.1 >= 1 && dilation.0 >= 1
        && dilation.1 >= 1,
      "\(op): kernel \(kernel), stride \(stride) and dilation \(dilation) must be ≥ 1")
    precondition(
      padding.0 >= 0 && padding.1 >= 0 && padding.0 <= kernel.0 / 2 && padding.1 <= kernel.1 / 2,
      "\(op): padding \(padding) must be between 0 and half the kernel \(kernel)")
    let (h, w) = (shape[rank - 2], shape[rank - 1])
    let ho = pooledExtent(
      input: h, kernel: kernel.0, stride: stride.0, padding: padding.0, dilation: dilation.0,
      ceilMode: ceilMode)
    let wo = pooledExtent(
      input: w, kernel: kernel.1, stride: stride.1, padding: padding.1, dilation: dilation.1,
      ceilMode: ceilMode)
    precondition(
      ho >= 1 && wo >= 1,
      "\(op): kernel \(kernel) with dilation \(dilation) does not fit input \(shape)"
        + " with padding \(padding)")
    return Pool2dGeometry(
      planes: shape.dropLast(2).reduce(1, *), h: h, w: w, kh: kernel.0, kw: kernel.1,
      sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1, dh: dilation.0, dw: dilation.1,
      ho: ho, wo: wo)
  }

  /// 2-D max pooling of `[N, C, H, W]` (or `[C, H, W]`), as PyTorch's `F.max_pool2d`.
  ///
  /// Padding counts as −∞, so it is never selected. The gradient goes to the first maximal
  /// element of each window (a NaN wins, as in PyTorch).
  /// - Parameters:
  ///   - kernel: window size, (height, width).
  ///   - stride: step between windows; defaults to `kernel`.
  ///   - padding: implicit −∞ border, at most half the kernel on each axis.
  ///   - dilation: spacing between window taps.
  ///   - ceilMode: round the output extent up (a last partial window), as PyTorch's `ceil_mode`.
  public func maxPool2d(
    kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
    dilation: (Int, Int) = (1, 1), ceilMode: Bool = false
  ) -> Tensor {
    let g = pool2dGeometry(
      "maxPool2d", kernel: kernel, stride: stride, padding: padding, dilation: dilation,
      ceilMode: ceilMode)
    let out = Tensor(shape: shape.dropLast(2) + [g.ho, g.wo], zeroed: false)
    // Argmax positions within the plane, stored as exact floats so the tape counts their bytes;
    // only kept when a gradient will be asked for.
    let needIndices = GradMode.isEnabled && requiresGrad
    precondition(
      !needIndices || g.hw <= 1 << 24, "maxPool2d: planes of \(shape) too large for argmax")
    let indices = needIndices ? Tensor(shape: out.shape, zeroed: false) : nil
    let (src, dst, idx) = (pointer, out.pointer, indices?.pointer)
    Parallel.forRange(g.planes, grain: Swift.max(1, 16_384 / Swift.max(g.p * g.kh * g.kw, 1))) {
      range in
      for plane in range {
        let x = src + plane * g.hw
        for oy in 0..<g.ho {
          let ys = validOutputRange(
            offset: oy * g.sh - g.ph, stride: g.dh, input: g.h, output: g.kh)
          for ox in 0..<g.wo {
            let xs = validOutputRange(
              offset: ox * g.sw - g.pw, stride: g.dw, input: g.w, output: g.kw)
            var best = -Float.infinity
            var at = -1
            for ki in ys {
              let row = (oy * g.sh - g.ph + ki * g.dh) * g.w + ox * g.sw - g.pw
              for kj in xs {
                let v = x[row + kj * g.dw]
                if at < 0 || v > best || v.isNaN {
                  best = v
                  at = row + kj * g.dw
                }
              }
            }
            let o = (plane * g.ho + oy) * g.wo + ox
            dst[o] = best
            idx?[o] = Float(at)
          }
        }
      }
    }
    guard let indices else { return out }
    let inShape = shape
    return out.recording("max_pool2d", [self], saving: [indices]) { grad in
      let gx = Tensor(shape: inShape)
      let (gs, gd, ix) = (grad.pointer, gx.pointer, indices.pointer)
      Parallel.forRange(g.planes, grain: Swift.max(1, 32_768 / Swift.max(g.p, 1))) { range in
        for plane in range {
          for o in plane * g.p..<(plane + 1) * g.p where ix[o] >= 0 {
            gd[plane * g.hw + Int(ix[o])] += gs[o]
          }
        }
      }
      return [gx]
    }
  }

  /// 2-D average pooling of `[N, C, H, W]` (or `[C, H, W]`), as PyTorch's `F.avg_pool2d`.
  ///
  /// - Parameters:
  ///   - kernel: window size, (height, width).
  ///   - stride: step between windows; defaults to `kernel`.
  ///   - padding: implicit zero border, at most half the kernel on each axis.
  ///   - countIncludePad: divide by the window size including padding (PyTorch's default) rather
  ///     than by the number of input elements in the window.
  ///   - ceilMode: round the output extent up (a last partial window), as PyTorch's `ceil_mode`;
  ///     the part of that window beyond the padded input is never counted.
  public func avgPool2d(
    kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
    countIncludePad: Bool = true, ceilMode: Bool = false
  ) -> Tensor {
    let g = pool2dGeometry(
      "avgPool2d", kernel: kernel, stride: stride, padding: padding, dilation: (1, 1),
      ceilMode: ceilMode)
    let out = Tensor(shape: shape.dropLast(2) + [g.ho, g.wo], zeroed: false)
    let (src, dst) = (pointer, out.pointer)
    Parallel.forRange(g.planes, grain: Swift.max(1, 16_384 / Swift.max(g.p * g.kh * g.kw, 1))) {
      range in
      for plane in range {
        let x = src + plane * g.hw
        for oy in 0..<g.ho {
          let (y0, y1, spanY) = Tensor.avgWindow(oy, g.sh, g.ph, g.kh, g.h)
          for ox in 0..<g.wo {
            let (x0, x1, spanX) = Tensor.avgWindow(ox, g.sw, g.pw, g.kw, g.w)
            var acc: Float = 0
            for iy in y0..<y1 {
              for ix in x0..<x1 { acc += x[iy * g.w + ix] }
            }
            let divisor = countIncludePad ? spanY * spanX : (y1 - y0) * (x1 - x0)
            dst[(plane * g.ho + oy) * g.wo + ox] = divisor > 0 ? acc / Float(divisor) : 0
          }
        }
      }
    }
    let inShape = shape
    return out.recording("avg_pool2d", [self]) { grad in
      let gx = Tensor(shape: inShape)
      let (gs, gd) = (grad.pointer, gx.pointer)
      Parallel.forRange(g.planes, grain: Swift.max(1, 16_384 / Swift.max(g.p * g.kh * g.kw, 1))) {
        range in
        for plane in range {
          let x = gd + plane * g.hw
          for oy in 0..<g.ho {
            let (y0, y1, spanY) = Tensor.avgWindow(oy, g.sh, g.ph, g.kh, g.h)
            for ox in 0..<g.wo {
              let (x0, x1, spanX) = Tensor.avgWindow(ox, g.sw, g.pw, g.kw, g.w)
              let divisor = countIncludePad ? spanY * spanX : (y1 - y0) * (x1 - x0)
              guard divisor > 0 else { continue }
              let v = gs[(plane * g.ho + oy) * g.wo + ox] / Float(divisor)
              for iy in y0..<y1 {
                for ix in x0..<x1 { x[iy * g.w + ix] += v }
              }
            }
          }
        }
      }
      return [gx]
    }
  }

  /// One axis of an average-pool window: the input range it covers and its span within the
  /// padded input (the count-include-pad divisor along that axis).
  @inline(__always)
  private static func avgWindow(
    _ i: Int, _ stride: Int, _ pad: Int, _ kernel: Int, _ input: Int
  ) -> (Int, Int, Int) {
    let start = i * stride - pad
    let end = Swift.min(start + kernel, input + pad)
    let lo = Swift.max(start, 0)
    let hi = Swift.min(end, input)
    return (lo, Swift.max(hi, lo), end - start)
  }
}

// MARK: Adaptive average pooling

/// PyTorch's adaptive bins along one axis: bin `i` of `output` covers
/// `floor(i·input/output) ..< ceil((i+1)·input/output)`.
func adaptiveBins(input: Int, output: Int) -> [Range<Int>] {
  (0..<output).map { i in (i * input / output)..<(((i + 1) * input + output - 1) / output) }
}

extension Tensor {
  /// Adaptive average pooling of the last axis: `[N, C, L]` or `[C, L]` → `[…, outputSize]`, as
  /// PyTorch's `F.adaptive_avg_pool1d`.
  public func adaptiveAvgPool1d(outputSize: Int) -> Tensor {
    precondition(
      rank == 2 || rank == 3, "adaptiveAvgPool1d: input \(shape) must be [N, C, L] or [C, L]")
    return adaptiveAvgPool("adaptive_avg_pool1d", spatial: 1, [outputSize])
  }

  /// Adaptive average pooling of the last two axes: `[N, C, H, W]` or `[C, H, W]` →
  /// `[…, outputSize.0, outputSize.1]`, as PyTorch's `F.adaptive_avg_pool2d`.
  public func adaptiveAvgPool2d(outputSize: (Int, Int)) -> Tensor {
    precondition(
      rank == 3 || rank == 4,
      "adaptiveAvgPool2d: input \(shape) must be [N, C, H, W] or [C, H, W]")
    return adaptiveAvgPool("adaptive_avg_pool2d", spatial: 2, [outputSize.0, outputSize.1])
  }

  /// Adaptive average pooling to a square `outputSize × outputSize`.
  public func adaptiveAvgPool2d(outputSize: Int) -> Tensor {
    adaptiveAvgPool2d(outputSize: (outputSize, outputSize))
  }

  /// Adaptive average pooling of the last three axes: `[N, C, T, H, W]` or `[C, T, H, W]` →
  /// `[…, outputSize.0, outputSize.1, outputSize.2]`, as PyTorch's `F.adaptive_avg_pool3d`.
  public func adaptiveAvgPool3d(outputSize: (Int, Int, Int)) -> Tensor {
    precondition(
      rank == 4 || rank == 5,
      "adaptiveAvgPool3d: input \(shape) must be [N, C, T, H, W] or [C, T, H, W]")
    return adaptiveAvgPool(
      "adaptive_avg_pool3d", spatial: 3, [outputSize.0, outputSize.1, outputSize.2])
  }

  /// Shared 1-, 2- and 3-D kernel: the spatial axes are padded to three with leading ones.
  private func adaptiveAvgPool(_ op: String, spatial: Int, _ outputSize: [Int]) -> Tensor {
    let inSpatial = Array(shape.suffix(spatial))
    precondition(
      outputSize.allSatisfy { $0 >= 1 } && inSpatial.allSatisfy { $0 >= 1 },
      "\(op): output size \(outputSize) and the pooled extents of input \(shape) must be ≥ 1")
    let ins = [Int](repeating: 1, count: 3 - spatial) + inSpatial
    let outs = [Int](repeating: 1, count: 3 - spatial) + outputSize
    let bins = (0..<3).map { adaptiveBins(input: ins[$0], output: outs[$0]) }
    let (bt, bh, bw) = (bins[0], bins[1], bins[2])
    let planes = shape.dropLast(spatial).reduce(1, *)
    let inPlane = ins.reduce(1, *)
    let outPlane = outs.reduce(1, *)
    let (inH, inW) = (ins[1], ins[2])
    let out = Tensor(shape: shape.dropLast(spatial) + outputSize, zeroed: false)
    let (src, dst) = (pointer, out.pointer)
    // Each output reads about inPlane/outPlane inputs (more where bins overlap).
    let grain = Swift.max(1, 32_768 / Swift.max(inPlane + outPlane, 1))
    Parallel.forRange(planes, grain: grain) { range in
      for plane in range {
        let x = src + plane * inPlane
        var o = plane * outPlane
        for t in bt {
          for y in bh {
            for xr in bw {
              var acc: Float = 0
              for it in t {
                for iy in y {
                  let row = x + (it * inH + iy) * inW
                  for ix in xr { acc += row[ix] }
                }
              }
              dst[o] = acc / Float(t.count * y.count * xr.count)
              o += 1
            }
          }
        }
      }
    }
    let inShape = shape
    return out.recording(op, [self]) { grad in
      let gx = Tensor(shape: inShape)
      let (gs, gd) = (grad.pointer, gx.pointer)
      Parallel.forRange(planes, grain: grain) { range in
        for plane in range {
          let x = gd + plane * inPlane
          var o = plane * outPlane
          for t in bt {
            for y in bh {
              for xr in bw {
                let v = gs[o] / Float(t.count * y.count * xr.count)
                o += 1
                for it in t {
                  for iy in y {
                    let row = x + (it * inH + iy) * inW
                    for ix in xr { row[ix] += v }
                  }
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
