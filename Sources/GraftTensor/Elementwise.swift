import Foundation

// Elementwise arithmetic with NumPy broadcasting, and the pointwise activations.

extension Tensor {
  /// The broadcast of two shapes by NumPy's rules (align right, extents equal or 1).
  public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let n = Swift.max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
      let x = i < n - a.count ? 1 : a[i - (n - a.count)]
      let y = i < n - b.count ? 1 : b[i - (n - b.count)]
      precondition(x == y || x == 1 || y == 1, "shapes \(a) and \(b) do not broadcast")
      out[i] = x == 1 ? y : x
    }
    return out
  }

  /// Strides of `shape` seen as broadcast to `target` (0 on broadcast axes).
  static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let own = contiguousStrides(shape)
    let lead = target.count - shape.count
    return (0..<target.count).map { i in
      i < lead || shape[i - lead] == 1 ? 0 : own[i - lead]
    }
  }
}

/// Applies `f` over two broadcast operands into a new tensor of the broadcast shape.
@inline(__always)
func broadcastBinary(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
  let shape = a.shape == b.shape ? a.shape : Tensor.broadcastShape(a.shape, b.shape)
  let out = Tensor(shape: shape, zeroed: false)
  let pa = a.pointer
  let pb = b.pointer
  let po = out.pointer
  let n = out.count
  if a.count == n && b.count == n {
    Parallel.forRange(n) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
  } else if b.count == 1 {
    let s = pb[0]
    Parallel.forRange(n) { r in for i in r { po[i] = f(pa[i], s) } }
  } else if a.count == 1 {
    let s = pa[0]
    Parallel.forRange(n) { r in for i in r { po[i] = f(s, pb[i]) } }
  } else {
    let sa = Tensor.broadcastStrides(a.shape, to: shape)
    let sb = Tensor.broadcastStrides(b.shape, to: shape)
    let inner = shape.last ?? 1
    let ia = sa.last ?? 0
    let ib = sb.last ?? 0
    let rows = n / Swift.max(inner, 1)
    let outer = Array(shape.dropLast())
    Parallel.forRange(rows, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { range in
      for row in range {
        var rem = row
        var oa = 0
        var ob = 0
        for d in stride(from: outer.count - 1, through: 0, by: -1) {
          let ix = rem % outer[d]
          rem /= outer[d]
          oa += ix * sa[d]
          ob += ix * sb[d]
        }
        let dst = po + row * inner
        let xa = pa + oa
        let xb = pb + ob
        switch (ia, ib) {
        case (1, 1): for j in 0..<inner { dst[j] = f(xa[j], xb[j]) }
        case (1, 0):
          let s = xb[0]
          for j in 0..<inner { dst[j] = f(xa[j], s) }
        case (0, 1):
          let s = xa[0]
          for j in 0..<inner { dst[j] = f(s, xb[j]) }
        default:
          let v = f(xa[0], xb[0])
          for j in 0..<inner { dst[j] = v }
        }
      }
    }
  }
  return out
}

/// Applies `f` to every element into a new tensor.
@inline(__always)
func mapUnary(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
  let out = Tensor(shape: x.shape, zeroed: false)
  let px = x.pointer
  let po = out.pointer
  Parallel.forRange(x.count) { r in for i in r { po[i] = f(px[i]) } }
  return out
}

/// Applies `f(x, y)` pairwise over two same-count tensors (backward helpers).
@inline(__always)
func mapPair(_ x: Tensor, _ y: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
  precondition(x.count == y.count, "mapPair: \(x.shape) vs \(y.shape)")
  let out = Tensor(shape: x.shape, zeroed: false)
  let px = x.pointer
  let py = y.pointer
  let po = out.pointer
  Parallel.forRange(x.count) { r in for i in r { po[i] = f(px[i], py[i]) } }
  return out
}

// MARK: Arithmetic

extension Tensor {
  /// Elementwise sum with broadcasting.
  public static func + (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, +)
    return out.recording("add", [a, b]) { g in [g.sumTo(a.shape), g.sumTo(b.shape)] }
  }

  /// Elementwise difference with broadcasting.
  public static func - (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, -)
    return out.recording("sub", [a, b]) { g in [g.sumTo(a.shape), (-g).sumTo(b.shape)] }
  }

  /// Elementwise product with broadcasting.
  public static func * (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, *)
    return out.recording("mul", [a, b], saving: [a, b]) { g in
      [
        a.requiresGrad ? broadcastBinary(g, b, *).sumTo(a.shape) : nil,
        b.requiresGrad ? broadcastBinary(g, a, *).sumTo(b.shape) : nil,
      ]
    }
  }

  /// Elementwise quotient with broadcasting.
  public static func / (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, /)
    return out.recording("div", [a, b], saving: [a, b]) { g in
      [
        a.requiresGrad ? broadcastBinary(g, b, /).sumTo(a.shape) : nil,
        b.requiresGrad
          ? broadcastBinary(broadcastBinary(g, out, *), b, { -$0 / $1 }).sumTo(b.shape) : nil,
      ]
    }
  }

  /// Negation.
  public static prefix func - (a: Tensor) -> Tensor {
    mapUnary(a) { -$0 }.recording("neg", [a]) { g in [mapUnary(g) { -$0 }] }
  }

  /// Adds a scalar.
  public static func + (a: Tensor, s: Float) -> Tensor {
    mapUnary(a) { $0 + s }.recording("add_scalar", [a]) { g in [g] }
  }
  /// Adds a scalar.
  public static func + (s: Float, a: Tensor) -> Tensor { a + s }
  /// Subtracts a scalar.
  public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
  /// Scalar minus tensor.
  public static func - (s: Float, a: Tensor) -> Tensor { (-a) + s }

  /// Multiplies by a scalar.
  public static func * (a: Tensor, s: Float) -> Tensor {
    mapUnary(a) { $0 * s }.recording("mul_scalar", [a]) { g in [mapUnary(g) { $0 * s }] }
  }
  /// Multiplies by a scalar.
  public static func * (s: Float, a: Tensor) -> Tensor { a * s }
  /// Divides by a scalar.
  public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
}

// MARK: Pointwise functions

extension Tensor {
  /// e^x.
  public func exp() -> Tensor {
    let out = mapUnary(self) { Foundation.exp($0) }
    return out.recording("exp", [self], saving: [out]) { g in [mapPair(g, out, *)] }
  }

  /// Natural logarithm.
  public func log() -> Tensor {
    mapUnary(self) { Foundation.log($0) }.recording("log", [self], saving: [self]) { g in
      [mapPair(g, self, /)]
    }
  }

  /// Square root.
  public func sqrt() -> Tensor {
    let out = mapUnary(self) { $0.squareRoot() }
    return out.recording("sqrt", [self], saving: [out]) { g in [mapPair(g, out) { $0 / (2 * $1) }] }
  }

  /// 1 / sqrt(x).
  public func rsqrt() -> Tensor {
    let out = mapUnary(self) { 1 / $0.squareRoot() }
    return out.recording("rsqrt", [self], saving: [self, out]) { g in
      [
        mapPair(mapPair(g, out) { $0 * $1 * $1 * $1 }, self) {
          _ = $1
          return -0.5 * $0
        }
      ]
    }
  }

  /// |x| (gradient 0 at 0, as PyTorch's sign).
  public func abs() -> Tensor {
    mapUnary(self) { Swift.abs($0) }.recording("abs", [self], saving: [self]) { g in
      [mapPair(g, self) { $1 > 0 ? $0 : ($1 < 0 ? -$0 : 0) }]
    }
  }

  /// x raised to a constant power.
  public func pow(_ p: Float) -> Tensor {
    if p == 2 {
      return mapUnary(self) { $0 * $0 }.recording("square", [self], saving: [self]) { g in
        [mapPair(g, self) { 2 * $0 * $1 }]
      }
    }
    return mapUnary(self) { Foundation.pow($0, p) }.recording("pow", [self], saving: [self]) { g in
      [mapPair(g, self) { $0 * p * Foundation.pow($1, p - 1) }]
    }
  }

  /// Hyperbolic tangent.
  public func tanh() -> Tensor {
    let out = mapUnary(self) { Foundation.tanh($0) }
    return out.recording("tanh", [self], saving: [out]) { g in
      [mapPair(g, out) { $0 * (1 - $1 * $1) }]
    }
  }

  /// Logistic sigmoid.
  public func sigmoid() -> Tensor {
    let out = mapUnary(self, sigmoidScalar)
    return out.recording("sigmoid", [self], saving: [out]) { g in
      [mapPair(g, out) { $0 * $1 * (1 - $1) }]
    }
  }

  /// max(x, 0).
  public func relu() -> Tensor {
    let out = mapUnary(self) { $0 > 0 ? $0 : 0 }
    return out.recording("relu", [self], saving: [out]) { g in [mapPair(g, out) { $1 > 0 ? $0 : 0 }]
    }
  }

  /// GELU, exact form x·Φ(x) with erf (timm's and PyTorch's default `nn.GELU()`).
  public func gelu() -> Tensor {
    mapUnary(self) { 0.5 * $0 * (1 + erff($0 * 0.707_106_77)) }
      .recording("gelu", [self], saving: [self]) { g in
        [
          mapPair(g, self) { g, x in
            let cdf = 0.5 * (1 + erff(x * 0.707_106_77))
            let pdf = 0.398_942_28 * Foundation.exp(-0.5 * x * x)
            return g * (cdf + x * pdf)
          }
        ]
      }
  }

  /// GELU, tanh approximation (PyTorch's `approximate='tanh'`).
  public func geluTanh() -> Tensor {
    let k: Float = 0.797_884_56  // sqrt(2/pi)
    return mapUnary(self) { x in 0.5 * x * (1 + Foundation.tanh(k * (x + 0.044715 * x * x * x))) }
      .recording("gelu_tanh", [self], saving: [self]) { g in
        [
          mapPair(g, self) { g, x in
            let u = k * (x + 0.044715 * x * x * x)
            let t = Foundation.tanh(u)
            let du = k * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
          }
        ]
      }
  }

  /// QuickGELU, x·sigmoid(1.702x), as OpenAI CLIP.
  public func quickGELU() -> Tensor {
    mapUnary(self) { $0 * sigmoidScalar(1.702 * $0) }
      .recording("quick_gelu", [self], saving: [self]) { g in
        [
          mapPair(g, self) { g, x in
            let s = sigmoidScalar(1.702 * x)
            return g * (s + 1.702 * x * s * (1 - s))
          }
        ]
      }
  }

  /// Limits every element to `[low, high]`; the gradient passes only inside the range.
  public func clamp(min low: Float = -.infinity, max high: Float = .infinity) -> Tensor {
    mapUnary(self) { Swift.min(Swift.max($0, low), high) }
      .recording("clamp", [self], saving: [self]) { g in
        [mapPair(g, self) { $1 >= low && $1 <= high ? $0 : 0 }]
      }
  }

  /// `mask ? a : b` elementwise with broadcasting; `mask` holds 0 (false) or non-zero (true).
  public static func `where`(_ mask: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
    let shape = broadcastShape(mask.shape, broadcastShape(a.shape, b.shape))
    let m = mask.broadcast(to: shape).detached()
    let ea = a.broadcast(to: shape).detached()
    let eb = b.broadcast(to: shape).detached()
    let out = Tensor(shape: shape, zeroed: false)
    let (pm, pa, pb, po) = (m.pointer, ea.pointer, eb.pointer, out.pointer)
    Parallel.forRange(out.count) { r in for i in r { po[i] = pm[i] != 0 ? pa[i] : pb[i] } }
    return out.recording("where", [a, b], saving: [m]) { g in
      [
        a.requiresGrad ? mapPair(g, m) { $1 != 0 ? $0 : 0 }.sumTo(a.shape) : nil,
        b.requiresGrad ? mapPair(g, m) { $1 != 0 ? 0 : $0 }.sumTo(b.shape) : nil,
      ]
    }
  }

  /// Replaces elements where `mask` (broadcast to this shape) is non-zero with `value`.
  public func maskedFill(_ mask: Tensor, _ value: Float) -> Tensor {
    let m = mask.broadcast(to: shape).detached()
    let out = mapPair(self, m) { $1 != 0 ? value : $0 }
    return out.recording("masked_fill", [self], saving: [m]) { g in
      [mapPair(g, m) { $1 != 0 ? 0 : $0 }]
    }
  }
}

@inline(__always) func sigmoidScalar(_ x: Float) -> Float {
  x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
}
