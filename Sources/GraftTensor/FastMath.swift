// Vectorisable replacements for libm's exp and erf, and SIMD reductions.
//
// libm calls cannot be vectorised and cost 10–20 ns each; these are plain arithmetic the compiler
// turns into AVX code inside elementwise loops. Accuracy is within a few float ulps of libm over
// the ranges that matter (checked in FastMathTests).

// Coefficient tables come from Tools/fit_erf.py (near-minimax fits checked in float32 arithmetic);
// the C kernels in Sources/CKernels use the same numbers and the same order of operations.

/// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6 minimax polynomial (relative error
/// 2e-9, about one float ulp after rounding), 2^n built in the exponent bits. Subnormal results
/// between about −87.3 and −87.7, 0 below, +inf above about 88.4 (as before: e^x is still
/// finite up to 88.72), NaN for NaN.
@inline(__always)
public func fastExp(_ x: Float) -> Float {
  // x is the first operand of max and min, so a NaN passes through both (and then through the
  // polynomial); the clamp keeps n in [−127, 128], whose scales are +0 and +inf.
  expReduced(Swift.min(Swift.max(x, -88), 88.7))
}

/// e^x for x ≤ 0 or NaN (softmax's x − max): `fastExp` without the upper clamp.
@inline(__always)
func fastExpNonPositive(_ x: Float) -> Float {
  expReduced(Swift.max(x, -88))
}

/// e^c for c in [−88, 88.7] or NaN.
@inline(__always)
func expReduced(_ c: Float) -> Float {
  // Adding 1.5·2²³ rounds c/ln2 to the nearest integer n and leaves n in the low mantissa bits,
  // so 2^n is built by integer adds and shifts without a float-to-int conversion.
  let shifter: Float = 12_582_912
  let shifted = shifter.addingProduct(c, 1.442_695)
  let n = shifted - shifter
  // r = c − n·ln2, ln2 split Cody–Waite style: n·0.693359375 is exact in float.
  let r = c.addingProduct(-n, 0.693_359_375).addingProduct(n, 2.121_944_4e-4)
  var p: Float = 1.384_365_1e-3
  p = (8.374_155_5e-3 as Float).addingProduct(p, r)
  p = (4.166_8e-2 as Float).addingProduct(p, r)
  p = (1.666_643_2e-1 as Float).addingProduct(p, r)
  p = (4.999_999_4e-1 as Float).addingProduct(p, r)
  p = (1 as Float).addingProduct(p, r)
  p = (1 as Float).addingProduct(p, r)
  // (n + 127) << 23: the low 9 bits of the shifter's pattern are 0, so this is 2^n for n in
  // [−126, 127], +0 for n = −127 and +inf for n = 128.
  let scale = Float(bitPattern: (shifted.bitPattern &+ 127) &<< 23)
  return p * scale
}

/// erf(x) = x·P(x²)/Q(x²) on x clamped to ±3.92 (where erf rounds to ±1 in float), P and Q of
/// degree 5. Relative error of the fit 2e-8; in float arithmetic the result is within about 5
/// ulps (3.5e-7 absolute, relative near 0), with |erf| ≤ 1.
@inline(__always)
public func fastErf(_ x: Float) -> Float {
  let u = Swift.min(Swift.max(x, -3.92), 3.92)
  let z = u * u
  var p: Float = 2.050_038_1e-6
  p = (2.848_793_2e-4 as Float).addingProduct(p, z)
  p = (3.765_621_5e-3 as Float).addingProduct(p, z)
  p = (5.274_873e-2 as Float).addingProduct(p, z)
  p = (1.904_070_7e-1 as Float).addingProduct(p, z)
  p = (1.128_379_1 as Float).addingProduct(p, z)
  var q: Float = 3.809_102_4e-5
  q = (1.162_53e-3 as Float).addingProduct(q, z)
  q = (1.496_922_9e-2 as Float).addingProduct(q, z)
  q = (1.141_092_9e-1 as Float).addingProduct(q, z)
  q = (5.020_766e-1 as Float).addingProduct(q, z)
  q = (1 as Float).addingProduct(q, z)
  // Rounding can lift the quotient an ulp or two above 1 near the clamp.
  return Swift.min(Swift.max(u * p / q, -1), 1)
}

/// GELU x·Φ(x) = h + h·erf(x/√2), h = x/2, with erf(x/√2) = u·P(u²)/Q(u²) on u = x clamped to
/// ±5.5437174 (the same fit as `fastErf` in the variable x/√2). 0 for x → −∞, x for x → +∞.
@inline(__always)
func fastGelu(_ x: Float) -> Float {
  let h = 0.5 * x
  let u = Swift.min(Swift.max(x, -5.543_717_4), 5.543_717_4)
  let z = u * u
  var p: Float = 4.529_987e-8
  p = (1.259_000_7e-5 as Float).addingProduct(p, z)
  p = (3.328_370_5e-4 as Float).addingProduct(p, z)
  p = (9.324_745e-3 as Float).addingProduct(p, z)
  p = (6.731_906_5e-2 as Float).addingProduct(p, z)
  p = (7.978_845e-1 as Float).addingProduct(p, z)
  var q: Float = 1.190_344_5e-6
  q = (7.265_813e-5 as Float).addingProduct(q, z)
  q = (1.871_153_6e-3 as Float).addingProduct(q, z)
  q = (2.852_732_3e-2 as Float).addingProduct(q, z)
  q = (2.510_383e-1 as Float).addingProduct(q, z)
  q = (1 as Float).addingProduct(q, z)
  return h.addingProduct(h, u * p / q)
}

/// d/dx x·Φ(x) = Φ(x) + x·φ(x) = 1/2 + u·P(u²)/Q(u²), u = x clamped to ±6.25 (beyond which the
/// derivative is within 1e-8 of 0 or 1, and the rational gives exactly 0 and 1), deg P = 7,
/// deg Q = 6: one rational, no erf or exp. Absolute error about 2.5e-7 in float arithmetic.
@inline(__always)
func fastGeluDerivative(_ x: Float) -> Float {
  let u = Swift.min(Swift.max(x, -6.25), 6.25)
  let z = u * u
  var p: Float = -3.130_468e-11
  p = (1.561_744_9e-8 as Float).addingProduct(p, z)
  p = (1.489_485_7e-6 as Float).addingProduct(p, z)
  p = (3.198_708_5e-5 as Float).addingProduct(p, z)
  p = (4.212_730_3e-4 as Float).addingProduct(p, z)
  p = (1.327_236_65e-2 as Float).addingProduct(p, z)
  p = (-1.054_422_2e-2 as Float).addingProduct(p, z)
  p = (7.978_844_6e-1 as Float).addingProduct(p, z)
  var q: Float = 4.653_845_5e-7
  q = (1.256_982_8e-5 as Float).addingProduct(q, z)
  q = (2.925_823_5e-4 as Float).addingProduct(q, z)
  q = (4.534_966_3e-3 as Float).addingProduct(q, z)
  q = (4.834_263_4e-2 as Float).addingProduct(q, z)
  q = (3.201_172_6e-1 as Float).addingProduct(q, z)
  q = (1 as Float).addingProduct(q, z)
  return 0.5 + u * p / q
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
