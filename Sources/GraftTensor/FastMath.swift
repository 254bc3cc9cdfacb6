// Vectorisable replacements for libm's exp and erf, and SIMD reductions.
//
// libm calls cannot be vectorised and cost 10–20 ns each; these are plain arithmetic the compiler
// turns into AVX code inside elementwise loops. Accuracy is within a few float ulps of libm over
// the ranges that matter (checked in FastMathTests).

/// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁷ (error < 6e-9 relative),
/// 2^n built in the exponent bits. Saturates to 0 below −87.3 and to +inf above 88.7.
@inline(__always)
public func fastExp(_ x: Float) -> Float {
  let clamped = x.isNaN ? 0 : Swift.min(Swift.max(x, -87.3), 88.7)
  let n = (clamped * 1.442_695_04).rounded(.toNearestOrEven)
  // r = x − n·ln2 with ln2 split Cody–Waite style: n·0.693359375 is exact in float.
  let r = clamped.addingProduct(-n, 0.693_359_375).addingProduct(n, 2.121_944_4e-4)
  var p: Float = 1.0 / 5040
  p = (1.0 / 720 as Float).addingProduct(p, r)
  p = (1.0 / 120 as Float).addingProduct(p, r)
  p = (1.0 / 24 as Float).addingProduct(p, r)
  p = (1.0 / 6 as Float).addingProduct(p, r)
  p = (0.5 as Float).addingProduct(p, r)
  p = (1 as Float).addingProduct(p, r)
  p = (1 as Float).addingProduct(p, r)
  let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
  let result = p * scale
  return x > 88.7 ? .infinity : (x < -87.3 ? 0 : (x.isNaN ? x : result))
}

/// erf(x): its Maclaurin series below |x| = 0.5 (relative accuracy near 0), Abramowitz & Stegun
/// 7.1.26 (|error| ≤ 1.5e-7) above, odd-symmetric, using `fastExp`.
@inline(__always)
public func fastErf(_ x: Float) -> Float {
  let a = Swift.abs(x)
  // 2/√π · (x − x³/3 + x⁵/10 − x⁷/42 + x⁹/216 − x¹¹/1320); the next term is < 2e-8 at 0.5.
  let z = a * a
  var series: Float = -1.0 / 1320
  series = (1.0 / 216 as Float).addingProduct(series, z)
  series = (-1.0 / 42 as Float).addingProduct(series, z)
  series = (1.0 / 10 as Float).addingProduct(series, z)
  series = (-1.0 / 3 as Float).addingProduct(series, z)
  series = (1 as Float).addingProduct(series, z)
  series *= 1.128_379_17 * a
  let t = 1 / (1 + 0.327_591_1 * a)
  var p: Float = 1.061_405_429
  p = (-1.453_152_027 as Float).addingProduct(p, t)
  p = (1.421_413_741 as Float).addingProduct(p, t)
  p = (-0.284_496_736 as Float).addingProduct(p, t)
  p = (0.254_829_592 as Float).addingProduct(p, t)
  let tail = 1 - p * t * fastExp(-z)
  let y = a < 0.5 ? series : tail
  return x < 0 ? -y : y
}

/// Σ p[0..<n], with 16 independent lanes so the loop vectorises.
@inline(__always)
func simdSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
  var acc = SIMD16<Float>(repeating: 0)
  var i = 0
  let raw = UnsafeRawPointer(p)
  while i + 16 <= n {
    acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
    i += 16
  }
  var s = acc.sum()
  while i < n {
    s += p[i]
    i += 1
  }
  return s
}

/// Σ (p[i] − c)², vectorised.
@inline(__always)
func simdSumSquaredDeviation(_ p: UnsafePointer<Float>, _ n: Int, _ c: Float) -> Float {
  var acc = SIMD16<Float>(repeating: 0)
  let cv = SIMD16<Float>(repeating: c)
  var i = 0
  let raw = UnsafeRawPointer(p)
  while i + 16 <= n {
    let d = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) - cv
    acc = acc.addingProduct(d, d)
    i += 16
  }
  var s = acc.sum()
  while i < n {
    s += (p[i] - c) * (p[i] - c)
    i += 1
  }
  return s
}

/// Σ p[i]·q[i], vectorised.
@inline(__always)
func simdDot(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ n: Int) -> Float {
  var acc = SIMD16<Float>(repeating: 0)
  var i = 0
  let (rp, rq) = (UnsafeRawPointer(p), UnsafeRawPointer(q))
  while i + 16 <= n {
    acc = acc.addingProduct(
      rp.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self),
      rq.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
    i += 16
  }
  var s = acc.sum()
  while i < n {
    s += p[i] * q[i]
    i += 1
  }
  return s
}

/// max p[0..<n] (−inf for n = 0), vectorised. Written with compare-and-select on 8 lanes:
/// the generic `pointwiseMax` on wider vectors compiles to per-lane scalar code.
@inline(__always)
func simdMax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
  var acc = SIMD8<Float>(repeating: -.infinity)
  var i = 0
  let raw = UnsafeRawPointer(p)
  while i + 8 <= n {
    let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
    acc.replace(with: v, where: v .> acc)
    i += 8
  }
  var m = -Float.infinity
  for lane in 0..<8 where acc[lane] > m { m = acc[lane] }
  while i < n {
    if p[i] > m { m = p[i] }
    i += 1
  }
  return m
}
