import Foundation

/// The one seeded random source: xoshiro256** seeded through SplitMix64.
///
/// The same seed gives the same stream on every machine, so initialisation, shuffling,
/// augmentation and dropout are reproducible from a single config seed.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
  private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
  private var spareNormal: Float?

  /// A generator whose whole stream is determined by `seed`.
  public init(seed: UInt64) {
    var x = seed
    func splitmix() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    s0 = splitmix()
    s1 = splitmix()
    s2 = splitmix()
    s3 = splitmix()
  }

  /// Next 64 random bits.
  public mutating func next() -> UInt64 {
    let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
    let t = s1 << 17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << 45) | (s3 >> 19)
    return result
  }

  /// Uniform in [0, 1), 24 bits of mantissa.
  public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

  /// Standard normal, Box–Muller in double precision (pairs are cached).
  public mutating func nextNormal() -> Float {
    if let z = spareNormal {
      spareNormal = nil
      return z
    }
    var u1 = 0.0
    repeat { u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) } while u1 == 0
    let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    let r = (-2 * log(u1)).squareRoot()
    spareNormal = Float(r * sin(2 * Double.pi * u2))
    return Float(r * cos(2 * Double.pi * u2))
  }

  /// Uniform integer in `0..<n`.
  public mutating func nextInt(below n: Int) -> Int { Int.random(in: 0..<n, using: &self) }

  /// A random permutation of `0..<n` (Fisher–Yates).
  public mutating func permutation(_ n: Int) -> [Int] {
    var p = Array(0..<n)
    if n > 1 {
      for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) }
    }
    return p
  }
}
