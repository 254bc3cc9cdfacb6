import Foundation

// Direct 2-D convolution for few output channels per group (Moment Probing's 3 → 3 stride-2
// convolutions, P2P's image layer).
//
// There im2col + GEMM is a poor fit: the GEMM has only `og` rows, so OpenBLAS runs at a fraction
// of its speed, and the column matrix (C·kh·kw rows of Ho·Wo) is many times the image, written
// and read back through memory for every image. Here each image's rows are instead split once by
// column phase (padded column `x` goes to phase `x mod sw`, index `x / sw`): the taps of one
// kernel column for consecutive outputs are then consecutive floats, so every tap is a
// contiguous multiply-add over an output row, whatever the stride, padding or dilation. Rows
// outside the input are skipped rather than padded.
//
// Work is split by image, so each thread owns its images' outputs and input gradients; the
// weight gradient is summed per image and then over images in image order, so results do not
// depend on the number of threads. Each output sums its taps in (channel, ki, kj) order.

/// One image's input channels with padded rows split by column phase: the floats of channel
/// `c`, input row `r`, phase `q` start at `c·channelFloats + r·rowFloats + q·phaseLength`.
struct PhaseSplitLayout {
  let g: Conv2dGeometry
  /// Floats per phase: ⌈(W + 2·pw) / sw⌉.
  let phaseLength: Int
  /// Where tap column `kj` of output column 0 lies within a split row.
  let tapOffsets: [Int]

  init(_ g: Conv2dGeometry) {
    self.g = g
    let length = (g.w + 2 * g.pw + g.sw - 1) / g.sw
    phaseLength = length
    tapOffsets = (0..<g.kw).map { kj in
      let column = kj * g.dw
      return (column % g.sw) * length + column / g.sw
    }
  }

  var rowFloats: Int { g.sw * phaseLength }
  var channelFloats: Int { g.h * rowFloats }
  var imageFloats: Int { g.c * channelFloats }
  /// `imageFloats` plus the slack that lets the forward pass load up to 31 floats past a row's
  /// last output (lanes it then drops) and the backward pass run whole vectors past it.
  var bufferFloats: Int { imageFloats + 32 }

  /// The indices `j` of phase `q` whose padded column `j·sw + q` is an input column (not
  /// padding).
  @inline(__always) func inputIndices(phase q: Int) -> Range<Int> {
    // Input column j·sw + q − pw must lie in 0..<W.
    let last = g.w - 1 + g.pw - q
    guard last >= 0 else { return 0..<0 }
    let lo = (g.pw - q + g.sw - 1) / g.sw  // q < sw, so the numerator is never negative
    let hi = Swift.min(phaseLength, last / g.sw + 1)
    return lo < hi ? lo..<hi : 0..<0
  }

  /// Calls `body(image, split, indices)` for every input row and column phase: for each `j` in
  /// `indices`, the float at `image + j·sw` of an image `[C, H, W]` is the one at `split + j` of
  /// its split. Each input float is visited once.
  @inline(__always)
  private func forEachPhase(_ body: (_ image: Int, _ split: Int, _ indices: Range<Int>) -> Void) {
    for c in 0..<g.c {
      for r in 0..<g.h {
        for q in 0..<g.sw {
          body(
            (c * g.h + r) * g.w + q - g.pw, c * channelFloats + r * rowFloats + q * phaseLength,
            inputIndices(phase: q))
        }
      }
    }
  }

  /// Splits one image `[C, H, W]` into `dst`, zeros where columns are padding.
  func split(_ x: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
    dst.update(repeating: 0, count: bufferFloats)
    forEachPhase { image, split, indices in
      for j in indices { dst[split + j] = x[image + j * g.sw] }
    }
  }

  /// Adds a split gradient back into one image's gradient `[C, H, W]`, dropping padding.
  func merge(_ src: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>) {
    forEachPhase { image, split, indices in
      for j in indices { x[image + j * g.sw] += src[split + j] }
    }
  }
}

/// The first `count` lanes of `v` (none when `count` ≤ 0) into `dst`.
@inline(__always)
private func storePrefix(_ v: SIMD8<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
  for lane in 0..<Swift.min(Swift.max(count, 0), 8) { dst[lane] = v[lane] }
}

/// d[i] += a·s[i] for i in 0..<n, n a multiple of 8.
@inline(__always)
private func axpy8(
  _ d: UnsafeMutablePointer<Float>, _ a: Float, _ s: UnsafePointer<Float>, _ n: Int
) {
  let (rd, rs) = (UnsafeMutableRawPointer(d), UnsafeRawPointer(s))
  let av = SIMD8<Float>(repeating: a)
  for i in stride(from: 0, to: n, by: 8) {
    let acc = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
    let v = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
    rd.storeBytes(of: acc.addingProduct(av, v), toByteOffset: i * 4, as: SIMD8<Float>.self)
  }
}

/// Which general path a convolution takes; tests force each in turn so that both stay checked.
enum Conv2dPath {
  case direct
  case im2col
}

extension Conv2dGeometry {
  /// Forces one path for every convolution that is not depthwise, pointwise or patchify (nil:
  /// choose by shape). Tests set it; `GRAFT_CONV_PATH=direct` or `im2col` sets it for a process,
  /// to time one path against the other.
  nonisolated(unsafe) static var forcedPath: Conv2dPath? = {
    switch ProcessInfo.processInfo.environment["GRAFT_CONV_PATH"] {
    case "direct": .direct
    case "im2col": .im2col
    default: nil
    }
  }()

  /// Whether this call runs the direct loops: by default for few output channels per group
  /// (at most 8), where they beat im2col + GEMM (Moment Probing's 3 → 3 convolutions of 128×128
  /// maps: see the README's feature-cache section).
  var usesDirect: Bool {
    guard !isDepthwise, !isPointwise, !isPatchify else { return false }
    return Self.forcedPath.map { $0 == .direct } ?? (og <= 8)
  }
}

extension Tensor {
  /// Direct forward: `out[n, o]` = Σ over the group's channels and taps of weight × input, each
  /// output summing its taps in (channel, ki, kj) order in registers.
  static func directForward(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    _ g: Conv2dGeometry
  ) {
    let layout = PhaseSplitLayout(g)
    Parallel.forRange(g.n, grain: 1) { images in
      let split = UnsafeMutablePointer<Float>.allocate(capacity: layout.bufferFloats)
      // The taps of one output row: where each reads (for output column 0) and its weight.
      let sources = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: g.kg)
      let weights = UnsafeMutablePointer<Float>.allocate(capacity: g.kg)
      defer {
        split.deallocate()
        sources.deallocate()
        weights.deallocate()
      }
      for img in images {
        layout.split(x + img * g.c * g.hw, into: split)
        for oc in 0..<g.o {
          let firstChannel = (oc / g.og) * g.cg
          for oy in 0..<g.ho {
            var taps = 0
            for ci in 0..<g.cg {
              let channel = split + (firstChannel + ci) * layout.channelFloats
              for ki in 0..<g.kh {
                let iy = oy * g.sh + ki * g.dh - g.ph
                guard iy >= 0 && iy < g.h else { continue }
                let row = channel + iy * layout.rowFloats
                for kj in 0..<g.kw {
                  sources[taps] = UnsafePointer(row + layout.tapOffsets[kj])
                  weights[taps] = w[((oc * g.cg + ci) * g.kh + ki) * g.kw + kj]
                  taps += 1
                }
              }
            }
            let d = out + ((img * g.o + oc) * g.ho + oy) * g.wo
            // 32 outputs at a time in four independent accumulators: one would wait on the
            // latency of each multiply-add before the next.
            var ox = 0
            while ox < g.wo {
              var acc0 = SIMD8<Float>(repeating: 0)
              var acc1 = acc0
              var acc2 = acc0
              var acc3 = acc0
              for t in 0..<taps {
                let src = UnsafeRawPointer(sources[t] + ox)
                let wv = SIMD8<Float>(repeating: weights[t])
                acc0 = acc0.addingProduct(wv, src.loadUnaligned(as: SIMD8<Float>.self))
                acc1 = acc1.addingProduct(
                  wv, src.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
                acc2 = acc2.addingProduct(
                  wv, src.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
                acc3 = acc3.addingProduct(
                  wv, src.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
              }
              let dst = d + ox
              if ox + 32 <= g.wo {
                let raw = UnsafeMutableRawPointer(dst)
                raw.storeBytes(of: acc0, as: SIMD8<Float>.self)
                raw.storeBytes(of: acc1, toByteOffset: 32, as: SIMD8<Float>.self)
                raw.storeBytes(of: acc2, toByteOffset: 64, as: SIMD8<Float>.self)
                raw.storeBytes(of: acc3, toByteOffset: 96, as: SIMD8<Float>.self)
              } else {
                let left = g.wo - ox
                storePrefix(acc0, dst, left)
                storePrefix(acc1, dst + 8, left - 8)
                storePrefix(acc2, dst + 16, left - 16)
                storePrefix(acc3, dst + 24, left - 24)
              }
              ox += 32
            }
          }
        }
      }
    }
  }

  /// Direct backward, one pass over the taps: dW as per-image dot products (summed over images
  /// in order), dX by scattering each tap into a split gradient. The output gradient is first
  /// copied into rows padded with zeros to a multiple of 8, so both run in whole vectors: a
  /// padded lane adds 0 to dX, and for dW its input lane is zeroed too (an infinite input the
  /// convolution never reads stays out of the sum).
  static func directBackward(
    _ gy: UnsafePointer<Float>, _ x: UnsafePointer<Float>?, _ w: UnsafePointer<Float>?,
    _ gx: UnsafeMutablePointer<Float>?, _ gw: UnsafeMutablePointer<Float>?, _ g: Conv2dGeometry
  ) {
    let layout = PhaseSplitLayout(g)
    let weightCount = g.o * g.kg
    let paddedWidth = (g.wo + 7) / 8 * 8
    let lastChunk = paddedWidth - 8
    let lastLanes =
      SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .< SIMD8(repeating: Int32(g.wo - lastChunk))
    // What each gradient reads: dW the input, dX the weight.
    let input = gw == nil ? nil : x
    let weight = gx == nil ? nil : w
    let perImage: UnsafeMutablePointer<Float>? =
      input == nil ? nil : .allocate(capacity: g.n * weightCount)
    defer { perImage?.deallocate() }
    Parallel.forRange(g.n, grain: 1) { images in
      let padded = UnsafeMutablePointer<Float>.allocate(capacity: g.o * g.ho * paddedWidth)
      let inputSplit: UnsafeMutablePointer<Float>? =
        input == nil ? nil : .allocate(capacity: layout.bufferFloats)
      let gradientSplit: UnsafeMutablePointer<Float>? =
        weight == nil ? nil : .allocate(capacity: layout.bufferFloats)
      defer {
        padded.deallocate()
        inputSplit?.deallocate()
        gradientSplit?.deallocate()
      }
      for img in images {
        let gyi = gy + img * g.o * g.p
        for row in 0..<(g.o * g.ho) {
          let dst = padded + row * paddedWidth
          dst.update(from: gyi + row * g.wo, count: g.wo)
          (dst + g.wo).update(repeating: 0, count: paddedWidth - g.wo)
        }
        if let input, let inputSplit { layout.split(input + img * g.c * g.hw, into: inputSplit) }
        gradientSplit?.update(repeating: 0, count: layout.bufferFloats)
        let partial = perImage.map { $0 + img * weightCount }
        for oc in 0..<g.o {
          let firstChannel = (oc / g.og) * g.cg
          for ci in 0..<g.cg {
            let channelOffset = (firstChannel + ci) * layout.channelFloats
            for ki in 0..<g.kh {
              let rowOffset = ki * g.dh - g.ph
              let ys = validOutputRange(offset: rowOffset, stride: g.sh, input: g.h, output: g.ho)
              let tap = ((oc * g.cg + ci) * g.kh + ki) * g.kw
              for kj in 0..<g.kw {
                // Four accumulators: with one, each multiply-add waited for the one before
                // (its latency, about five cycles) and dW ran at a fifth of the FMA rate.
                var acc0 = SIMD8<Float>(repeating: 0)
                var (acc1, acc2, acc3) = (acc0, acc0, acc0)
                for oy in ys {
                  let at =
                    channelOffset + (oy * g.sh + rowOffset) * layout.rowFloats
                    + layout.tapOffsets[kj]
                  let gr = padded + (oc * g.ho + oy) * paddedWidth
                  if let inputSplit {
                    let (src, grRaw) = (UnsafeRawPointer(inputSplit + at), UnsafeRawPointer(gr))
                    @inline(__always) func product(_ chunk: Int) -> (SIMD8<Float>, SIMD8<Float>) {
                      (
                        grRaw.loadUnaligned(fromByteOffset: chunk * 4, as: SIMD8<Float>.self),
                        src.loadUnaligned(fromByteOffset: chunk * 4, as: SIMD8<Float>.self)
                      )
                    }
                    var chunk = 0
                    while chunk + 32 <= lastChunk {
                      let (p0, p1, p2, p3) = (
                        product(chunk), product(chunk + 8), product(chunk + 16),
                        product(chunk + 24)
                      )
                      acc0 = acc0.addingProduct(p0.0, p0.1)
                      acc1 = acc1.addingProduct(p1.0, p1.1)
                      acc2 = acc2.addingProduct(p2.0, p2.1)
                      acc3 = acc3.addingProduct(p3.0, p3.1)
                      chunk += 32
                    }
                    if chunk + 16 <= lastChunk {
                      let (p0, p1) = (product(chunk), product(chunk + 8))
                      acc0 = acc0.addingProduct(p0.0, p0.1)
                      acc1 = acc1.addingProduct(p1.0, p1.1)
                      chunk += 16
                    }
                    if chunk + 8 <= lastChunk {
                      let p = product(chunk)
                      acc2 = acc2.addingProduct(p.0, p.1)
                    }
                    let tail = product(lastChunk)
                    acc3 = acc3.addingProduct(tail.0, tail.1.replacing(with: 0, where: .!lastLanes))
                  }
                  if let weight, let gradientSplit {
                    axpy8(gradientSplit + at, weight[tap + kj], gr, paddedWidth)
                  }
                }
                partial?[tap + kj] = ((acc0 + acc1) + (acc2 + acc3)).sum()
              }
            }
          }
        }
        if let gx, let gradientSplit { layout.merge(gradientSplit, into: gx + img * g.c * g.hw) }
      }
    }
    if let gw, let perImage {
      for img in 0..<g.n {
        let partial = perImage + img * weightCount
        for i in 0..<weightCount { gw[i] += partial[i] }
      }
    }
  }
}
