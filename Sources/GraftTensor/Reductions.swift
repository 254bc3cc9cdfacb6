// Reductions along axes: sum, mean, max, argmax, variance.

/// Views a tensor as [outer, n, inner] around `axis`.
@inline(__always)
func splitAround(_ shape: [Int], _ axis: Int) -> (outer: Int, n: Int, inner: Int) {
  (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
}

extension Tensor {
  /// Sum of all elements, as a scalar tensor.
  public func sum() -> Tensor {
    let n = count
    var total = 0.0
    let p = pointer
    // Double accumulation: sums of many floats stay accurate (losses, gradient norms).
    var i = 0
    while i < n {
      let end = Swift.min(n, i + 4096)
      var partial: Float = 0
      for j in i..<end { partial += p[j] }
      total += Double(partial)
      i = end
    }
    let out = Tensor(scalar: Float(total))
    let inShape = shape
    return out.recording("sum_all", [self]) { g in [Tensor.full(inShape, g.item)] }
  }

  /// Mean of all elements, as a scalar tensor.
  public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

  /// Sum along `axes`; reduced axes are kept with extent 1 when `keepDims`.
  public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
    let axes = Set(axes.map { axis($0) }).sorted(by: >)
    var out = self
    for a in axes { out = out.sumAxis(a) }
    if !keepDims {
      out = out.reshaped(shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    }
    return out
  }

  /// Sum along one axis.
  public func sum(axis: Int, keepDims: Bool = false) -> Tensor {
    sum(axes: [axis], keepDims: keepDims)
  }

  /// Mean along `axes`.
  public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
    let n = Set(axes.map { axis($0) }).reduce(1) { $0 * shape[$1] }
    return sum(axes: axes, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
  }

  /// Mean along one axis.
  public func mean(axis: Int, keepDims: Bool = false) -> Tensor {
    mean(axes: [axis], keepDims: keepDims)
  }

  /// Variance along `axes` with Bessel's `correction` (1 = unbiased, PyTorch's default).
  public func variance(axes: [Int], correction: Int = 1, keepDims: Bool = false) -> Tensor {
    let n = Set(axes.map { axis($0) }).reduce(1) { $0 * shape[$1] }
    let centered = self - mean(axes: axes, keepDims: true)
    let ss = centered.pow(2).sum(axes: axes, keepDims: keepDims)
    return ss * (1 / Float(Swift.max(n - correction, 1)))
  }

  /// Keep-dims sum along one axis: [outer, n, inner] → [outer, 1, inner].
  func sumAxis(_ a: Int) -> Tensor {
    let (outer, n, inner) = splitAround(shape, a)
    var outShape = shape
    outShape[a] = 1
    let out = Tensor(shape: outShape)
    let (src, dst) = (pointer, out.pointer)
    if inner == 1 {
      Parallel.forRange(outer, grain: Swift.max(1, 32_768 / Swift.max(n, 1))) { r in
        for o in r {
          var acc: Float = 0
          let row = src + o * n
          for k in 0..<n { acc += row[k] }
          dst[o] = acc
        }
      }
    } else if outer >= Parallel.threadCount {
      Parallel.forRange(outer, grain: Swift.max(1, 32_768 / Swift.max(n * inner, 1))) { r in
        for o in r {
          let d = dst + o * inner
          for k in 0..<n {
            let s = src + (o * n + k) * inner
            for j in 0..<inner { d[j] += s[j] }
          }
        }
      }
    } else {
      Parallel.forRange(inner, grain: Swift.max(1, 32_768 / Swift.max(n * outer, 1))) { r in
        for o in 0..<outer {
          let d = dst + o * inner
          for k in 0..<n {
            let s = src + (o * n + k) * inner
            for j in r { d[j] += s[j] }
          }
        }
      }
    }
    let inShape = shape
    return out.recording("sum", [self]) { g in [g.broadcast(to: inShape)] }
  }

  /// Maximum along `axis`; the gradient flows to the first maximal entry (as PyTorch).
  public func max(axis: Int, keepDims: Bool = false) -> Tensor {
    let a = self.axis(axis)
    let (values, indices) = maxWithIndices(a)
    var outShape = shape
    outShape[a] = 1
    let out = Tensor(values, shape: outShape)
    let inShape = shape
    let (outer, n, inner) = splitAround(shape, a)
    out.recording("max", [self]) { g in
      let gi = Tensor(shape: inShape)
      for o in 0..<outer {
        for j in 0..<inner {
          gi.pointer[(o * n + indices[o * inner + j]) * inner + j] = g.pointer[o * inner + j]
        }
      }
      return [gi]
    }
    return keepDims ? out : out.squeezed(a)
  }

  /// Index of the maximum along `axis` (first on ties), flattened row-major over the other axes.
  public func argmax(axis: Int) -> [Int] { maxWithIndices(self.axis(axis)).1 }

  private func maxWithIndices(_ a: Int) -> ([Float], [Int]) {
    let (outer, n, inner) = splitAround(shape, a)
    precondition(n > 0, "max over an empty axis in \(shape)")
    var values = [Float](repeating: -.infinity, count: outer * inner)
    var indices = [Int](repeating: 0, count: outer * inner)
    let p = pointer
    for o in 0..<outer {
      for k in 0..<n {
        let row = p + (o * n + k) * inner
        for j in 0..<inner {
          let v = row[j]
          // NaN propagates as the maximum, as in PyTorch.
          if v > values[o * inner + j] || (v.isNaN && !values[o * inner + j].isNaN) || k == 0 {
            values[o * inner + j] = v
            indices[o * inner + j] = k
          }
        }
      }
    }
    return (values, indices)
  }
}
