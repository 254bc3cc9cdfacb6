import CKernels
import Foundation

// Elementwise arithmetic with NumPy broadcasting, and the pointwise activations.
//
// Every hot loop is generic over a small kernel type instead of taking a closure: the compiler
// specialises the loop for each kernel and vectorises it, where a closure called through the
// parallel-for would cost an indirect call per element.

/// A two-argument elementwise function.
protocol BinaryKernel {
  func callAsFunction(_ a: Float, _ b: Float) -> Float
}

/// A one-argument elementwise function with its derivative.
protocol UnaryKernel {
  /// Op name on the tape.
  static var name: String { get }
  /// Whether `gradient` reads x (else only y is saved for backward).
  static var needsInput: Bool { get }
  /// Whether `gradient` reads x or y at all (an affine map needs neither).
  static var needsSaved: Bool { get }
  func callAsFunction(_ x: Float) -> Float
  /// dL/dx from dL/dy = g, the input x and the output y.
  func gradient(_ g: Float, x: Float, y: Float) -> Float
  /// y[i] = f(x[i]) for i in 0..<n; a kernel with its own vector loop replaces the default.
  func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int)
  /// d[i] = gradient(g[i], saved[i]) for i in 0..<n, where `saved` is x or y as declared.
  func applyGradient(
    _ g: UnsafePointer<Float>, _ saved: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
    _ n: Int)
}

extension UnaryKernel {
  @inline(__always)
  func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] = self(x[i]) }
  }

  @inline(__always)
  func applyGradient(
    _ g: UnsafePointer<Float>, _ saved: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
    _ n: Int
  ) {
    // Only one of x and y is kept; the kernel reads the one it declared.
    for i in 0..<n { d[i] = gradient(g[i], x: saved[i], y: saved[i]) }
  }
}

struct AddKernel: BinaryKernel {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b }
}
struct SubKernel: BinaryKernel {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b }
}
struct MulKernel: BinaryKernel {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b }
}
struct DivKernel: BinaryKernel {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b }
}
extension UnaryKernel {
  static var needsSaved: Bool { true }
}

/// Any closure as a kernel, for cold paths where speed does not matter.
struct ClosureKernel: BinaryKernel {
  let f: (Float, Float) -> Float
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { f(a, b) }
}

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

/// `f` over two broadcast operands into a new tensor of the broadcast shape.
func broadcastBinary<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _ f: K) -> Tensor {
  let shape = a.shape == b.shape ? a.shape : Tensor.broadcastShape(a.shape, b.shape)
  let out = Tensor(shape: shape, zeroed: false)
  let (pa, pb, po) = (a.pointer, b.pointer, out.pointer)
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
    let (ia, ib) = (sa.last ?? 0, sb.last ?? 0)
    let rows = n / Swift.max(inner, 1)
    let outer = Array(shape.dropLast())
    Parallel.forRange(rows, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { range in
      for row in range {
        var rem = row
        var (oa, ob) = (0, 0)
        for d in stride(from: outer.count - 1, through: 0, by: -1) {
          let ix = rem % outer[d]
          rem /= outer[d]
          oa += ix * sa[d]
          ob += ix * sb[d]
        }
        let (dst, xa, xb) = (po + row * inner, pa + oa, pb + ob)
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

/// `f` pairwise over two tensors with the same element count, shaped like `x`.
func zipMap<K: BinaryKernel>(_ x: Tensor, _ y: Tensor, _ f: K) -> Tensor {
  precondition(x.count == y.count, "zipMap: \(x.shape) vs \(y.shape)")
  let out = Tensor(shape: x.shape, zeroed: false)
  let (px, py, po) = (x.pointer, y.pointer, out.pointer)
  Parallel.forRange(x.count) { r in for i in r { po[i] = f(px[i], py[i]) } }
  return out
}

/// `f` pairwise over two same-count tensors (backward helpers on cold paths).
func mapPair(_ x: Tensor, _ y: Tensor, _ f: @escaping (Float, Float) -> Float) -> Tensor {
  zipMap(x, y, ClosureKernel(f: f))
}

/// Applies a pointwise function and records its derivative.
func pointwise<K: UnaryKernel>(_ x: Tensor, _ f: K) -> Tensor {
  let out = Tensor(shape: x.shape, zeroed: false)
  let (px, po) = (x.pointer, out.pointer)
  Parallel.forRange(x.count) { r in f.apply(px + r.lowerBound, po + r.lowerBound, r.count) }
  // The closure captures only what backward reads (never `x` itself, which would keep an
  // intermediate result alive): the one saved tensor, if the kernel needs any, and the shape.
  // The output is kept as a detached alias of its storage: `out` itself would hold its own node
  // (a cycle that a graph dropped without backward never frees).
  let kept: Tensor? = K.needsSaved ? (K.needsInput ? x : out.detached()) : nil
  let shape = x.shape
  return out.recording(K.name, [x], saving: kept.map { [$0] } ?? []) { g in
    let gi = Tensor(shape: shape, zeroed: false)
    let (pg, pd) = (g.pointer, gi.pointer)
    // Kernels that need no saved tensor never read the second pointer.
    let ps = kept?.pointer ?? pg
    Parallel.forRange(gi.count) { r in
      let o = r.lowerBound
      f.applyGradient(pg + o, ps + o, pd + o, r.count)
    }
    return [gi]
  }
}

// MARK: Arithmetic

extension Tensor {
  /// Elementwise sum with broadcasting.
  public static func + (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, AddKernel())
    let (sa, sb) = (a.shape, b.shape)
    return out.recording("add", [a, b]) { g in [g.sumTo(sa), g.sumTo(sb)] }
  }

  /// Elementwise difference with broadcasting.
  public static func - (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, SubKernel())
    let (sa, sb) = (a.shape, b.shape)
    return out.recording("sub", [a, b]) { g in [g.sumTo(sa), (-g).sumTo(sb)] }
  }

  /// Elementwise product with broadcasting.
  public static func * (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, MulKernel())
    // da = g·b and db = g·a: keep each operand only if the *other* one needs a gradient.
    let (sa, sb) = (a.shape, b.shape)
    let keptA: Tensor? = b.requiresGrad ? a : nil
    let keptB: Tensor? = a.requiresGrad ? b : nil
    return out.recording("mul", [a, b], saving: [keptA, keptB].compactMap { $0 }) { g in
      [
        keptB.map { broadcastBinary(g, $0, MulKernel()).sumTo(sa) },
        keptA.map { broadcastBinary(g, $0, MulKernel()).sumTo(sb) },
      ]
    }
  }

  /// Elementwise quotient with broadcasting.
  public static func / (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastBinary(a, b, DivKernel())
    // da = g / b; db = −g·out / b.
    let (sa, sb, rb) = (a.shape, b.shape, b.requiresGrad)
    let keptOut: Tensor? = rb ? out.detached() : nil  // an alias: no cycle through the node
    return out.recording("div", [a, b], saving: [b] + (keptOut.map { [$0] } ?? [])) { g in
      [
        broadcastBinary(g, b, DivKernel()).sumTo(sa),
        keptOut.map {
          broadcastBinary(zipMap(g, $0, MulKernel()), b, ClosureKernel { -$0 / $1 }).sumTo(sb)
        },
      ]
    }
  }

  /// Negation.
  public static prefix func - (a: Tensor) -> Tensor { a * -1 }

  /// Adds a scalar.
  public static func + (a: Tensor, s: Float) -> Tensor {
    pointwise(a, AffineKernel(scale: 1, shift: s))
  }
  /// Adds a scalar.
  public static func + (s: Float, a: Tensor) -> Tensor { a + s }
  /// Subtracts a scalar.
  public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
  /// Scalar minus tensor.
  public static func - (s: Float, a: Tensor) -> Tensor {
    pointwise(a, AffineKernel(scale: -1, shift: s))
  }
  /// Multiplies by a scalar.
  public static func * (a: Tensor, s: Float) -> Tensor {
    pointwise(a, AffineKernel(scale: s, shift: 0))
  }
  /// Multiplies by a scalar.
  public static func * (s: Float, a: Tensor) -> Tensor { a * s }
  /// Divides by a scalar.
  public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
}

// MARK: Pointwise functions

struct AffineKernel: UnaryKernel {
  static let name = "affine"
  static let needsInput = false
  static let needsSaved = false
  let scale: Float
  let shift: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x * scale + shift }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g * scale }
}

struct ExpKernel: UnaryKernel {
  static let name = "exp"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { fastExp(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g * y }
  /// The C loop: the same arithmetic as `fastExp`, with AVX-512 where the CPU has it.
  @inline(__always)
  func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    graft_exp(x, y, n)
  }
}

struct LogKernel: UnaryKernel {
  static let name = "log"
  static let needsInput = true
  @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.log(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g / x }
}

struct SqrtKernel: UnaryKernel {
  static let name = "sqrt"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x.squareRoot() }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g / (2 * y) }
}

struct RsqrtKernel: UnaryKernel {
  static let name = "rsqrt"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x.squareRoot() }
  // d(x^-1/2)/dx = −x^-3/2 / 2 = −y³ / 2
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { -0.5 * g * y * y * y }
}

struct AbsKernel: UnaryKernel {
  static let name = "abs"
  static let needsInput = true
  @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.abs(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    x > 0 ? g : (x < 0 ? -g : 0)
  }
}

struct SquareKernel: UnaryKernel {
  static let name = "square"
  static let needsInput = true
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { 2 * g * x }
}

struct PowKernel: UnaryKernel {
  static let name = "pow"
  static let needsInput = true
  let p: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.pow(x, p) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    g * p * Foundation.pow(x, p - 1)
  }
}

struct TanhKernel: UnaryKernel {
  static let name = "tanh"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { fastTanh(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g * (1 - y * y) }
}

struct SigmoidKernel: UnaryKernel {
  static let name = "sigmoid"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { sigmoidScalar(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { g * y * (1 - y) }
}

struct ReluKernel: UnaryKernel {
  static let name = "relu"
  static let needsInput = false
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : 0 }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float { y > 0 ? g : 0 }
}

struct GeluKernel: UnaryKernel {
  static let name = "gelu"
  static let needsInput = true
  @inline(__always) func callAsFunction(_ x: Float) -> Float { fastGelu(x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    g * fastGeluDerivative(x)
  }
  // The C loops compute `fastGelu` and `fastGeluDerivative` operation for operation, with
  // AVX-512 where the CPU has it.
  @inline(__always)
  func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    graft_gelu_forward(x, y, n)
  }
  @inline(__always)
  func applyGradient(
    _ g: UnsafePointer<Float>, _ saved: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
    _ n: Int
  ) {
    graft_gelu_backward(g, saved, d, n)
  }
}

struct GeluTanhKernel: UnaryKernel {
  static let name = "gelu_tanh"
  static let needsInput = true
  static let k: Float = 0.797_884_56  // sqrt(2/pi)
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    0.5 * x * (1 + fastTanh(Self.k * (x + 0.044715 * x * x * x)))
  }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    let t = fastTanh(Self.k * (x + 0.044715 * x * x * x))
    let du = Self.k * (1 + 3 * 0.044715 * x * x)
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
  }
}

struct QuickGeluKernel: UnaryKernel {
  static let name = "quick_gelu"
  static let needsInput = true
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x * sigmoidScalar(1.702 * x) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    let s = sigmoidScalar(1.702 * x)
    return g * (s + 1.702 * x * s * (1 - s))
  }
}

struct LeakyReluKernel: UnaryKernel {
  static let name = "leaky_relu"
  static let needsInput = false
  let slope: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : slope * x }
  // The output has the input's sign for a positive slope, so backward reads the output.
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    y > 0 ? g : slope * g
  }
}

struct ClampKernel: UnaryKernel {
  static let name = "clamp"
  static let needsInput = true
  let low: Float
  let high: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.min(Swift.max(x, low), high) }
  @inline(__always) func gradient(_ g: Float, x: Float, y: Float) -> Float {
    x >= low && x <= high ? g : 0
  }
}

extension Tensor {
  /// e^x.
  public func exp() -> Tensor { pointwise(self, ExpKernel()) }
  /// Natural logarithm.
  public func log() -> Tensor { pointwise(self, LogKernel()) }
  /// Square root.
  public func sqrt() -> Tensor { pointwise(self, SqrtKernel()) }
  /// 1 / sqrt(x).
  public func rsqrt() -> Tensor { pointwise(self, RsqrtKernel()) }
  /// |x| (gradient 0 at 0, as PyTorch's sign).
  public func abs() -> Tensor { pointwise(self, AbsKernel()) }
  /// x raised to a constant power.
  public func pow(_ p: Float) -> Tensor {
    p == 2 ? pointwise(self, SquareKernel()) : pointwise(self, PowKernel(p: p))
  }
  /// Hyperbolic tangent.
  public func tanh() -> Tensor { pointwise(self, TanhKernel()) }
  /// Logistic sigmoid.
  public func sigmoid() -> Tensor { pointwise(self, SigmoidKernel()) }
  /// max(x, 0).
  public func relu() -> Tensor { pointwise(self, ReluKernel()) }
  /// x for x > 0, else `slope`·x (PyTorch's `LeakyReLU(negative_slope)`; `slope` > 0).
  public func leakyReLU(slope: Float = 0.01) -> Tensor {
    precondition(slope > 0, "leakyReLU: slope \(slope) must be positive")
    return pointwise(self, LeakyReluKernel(slope: slope))
  }
  /// GELU, exact form x·Φ(x) with erf (timm's and PyTorch's default `nn.GELU()`).
  public func gelu() -> Tensor { pointwise(self, GeluKernel()) }
  /// GELU, tanh approximation (PyTorch's `approximate='tanh'`).
  public func geluTanh() -> Tensor { pointwise(self, GeluTanhKernel()) }
  /// QuickGELU, x·sigmoid(1.702x), as OpenAI CLIP.
  public func quickGELU() -> Tensor { pointwise(self, QuickGeluKernel()) }
  /// Limits every element to `[low, high]`; the gradient passes only inside the range.
  public func clamp(min low: Float = -.infinity, max high: Float = .infinity) -> Tensor {
    pointwise(self, ClampKernel(low: low, high: high))
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
    let (sa, sb, ra, rb) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
    return out.recording("where", [a, b], saving: [m]) { g in
      [
        ra ? mapPair(g, m) { $1 != 0 ? $0 : 0 }.sumTo(sa) : nil,
        rb ? mapPair(g, m) { $1 != 0 ? 0 : $0 }.sumTo(sb) : nil,
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
  // 1 / (1 + e^−x) computed from e^−|x| so neither branch overflows.
  let e = fastExp(-Swift.abs(x))
  return x >= 0 ? 1 / (1 + e) : e / (1 + e)
}

/// tanh(x) = sign(x)·(1 − e^−2|x|) / (1 + e^−2|x|), vectorisable; exact to ~1e-7 away from 0,
/// and x itself near 0 where the formula would cancel.
@inline(__always) func fastTanh(_ x: Float) -> Float {
  let a = Swift.abs(x)
  let e = fastExp(-2 * a)
  let t = (1 - e) / (1 + e)
  let small = x - x * x * x / 3
  let r = a < 0.004 ? Swift.abs(small) : t
  return x < 0 ? -r : r
}
