import CDNNLShim
import Foundation
import XCTest

@testable import GraftTensor

/// BF16 rounding, and products with a weight's BF16 copy against FP32 products of the same
/// rounded operands (oneDNN accumulates in FP32, so they agree to FP32 reordering).
final class BFloat16Tests: XCTestCase {
  func testRoundingToNearestEven() {
    XCTAssertEqual(BFloat16.bits(1), 0x3F80)
    XCTAssertEqual(BFloat16.bits(-2), 0xC000)
    // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even pattern (1).
    XCTAssertEqual(BFloat16.bits(1 + 0x1p-8), 0x3F80)
    // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even): up.
    XCTAssertEqual(BFloat16.bits(1 + 3 * 0x1p-8), 0x3F82)
    XCTAssertEqual(BFloat16.bits(1 + 0x1p-8 + 0x1p-20), 0x3F81)
    XCTAssertEqual(BFloat16.bits(.infinity), 0x7F80)
    XCTAssertEqual(BFloat16.bits(.greatestFiniteMagnitude), 0x7F80)  // rounds up to infinity
    XCTAssertTrue(BFloat16.value(BFloat16.bits(.nan)).isNaN)
    // A NaN whose payload sits only in the low bits must not round to infinity.
    XCTAssertTrue(BFloat16.value(BFloat16.bits(Float(bitPattern: 0x7F80_0001))).isNaN)
  }

  func testBulkRoundingEqualsScalar() {
    var values = randomTensor([1000], seed: 3, low: -5, high: 5).scalars
    values += [.nan, -.nan, .infinity, -.infinity, 0, -0.0, 1 + 0x1p-8, 1 + 3 * 0x1p-8]
    values += [Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFF80_0001), 65504, 1e30]
    let subnormals: [Float] = [1e-40, -1e-40, 3e-39]
    values += subnormals
    var out = [UInt16](repeating: 0, count: values.count)
    graft_dnnl_round_to_bf16(values, &out, Int64(values.count))
    let normal = values.count - subnormals.count
    XCTAssertEqual(Array(out.prefix(normal)), values.prefix(normal).map(BFloat16.bits))
    // Subnormals: the scalar rounding, or zero of the same sign (the hardware flushes them).
    for (x, bits) in zip(subnormals, out.suffix(subnormals.count)) {
      XCTAssertTrue(bits == BFloat16.bits(x) || bits == (x < 0 ? 0x8000 : 0), "\(x): \(bits)")
    }
  }

  /// A copy of `t` with every element rounded to BF16.
  private func rounded(_ t: Tensor) -> Tensor {
    Tensor(t.scalars.map(BFloat16.rounded), shape: t.shape)
  }

  /// What the user reads when a CPU lacks the native kernel: the fallback kernel's name where
  /// oneDNN has one (AVX-512 without BF16), and a sentence that says so where it has none
  /// (AVX2 only), not "would use no kernel".
  func testNoNativeKernelReasonNamesTheFallbackOrItsAbsence() {
    func probe(_ name: String) -> NativeKernelProbe {
      NativeKernelProbe(missing: "AVX-512 BF16", fallback: "kernel, slower than FP32") {
        buffer, size in
        _ = name.withCString { strncpy(buffer, $0, size - 1) }
        return Int32(GRAFT_DNNL_NO_NATIVE_KERNEL)
      }
    }
    XCTAssertEqual(
      probe("brg:avx512_core").unavailableReason,
      "this CPU has no AVX-512 BF16: oneDNN would use its brg:avx512_core kernel, slower than FP32")
    XCTAssertEqual(
      probe("").unavailableReason,
      "this CPU has no AVX-512 BF16, and oneDNN has no kernel for these products on it")
    XCTAssertNil(probe("").nativeKernel)
  }

  func testLinearOnBF16WeightsEqualsFP32OnRoundedOperands() throws {
    guard BF16Support.isAvailable else {
      // Without native BF16 nothing changes: the weight keeps FP32 and says so.
      let w = randomTensor([4, 3], seed: 1)
      XCTAssertFalse(w.storeInBF16())
      XCTAssertNil(w.bf16Weights)
      XCTAssertNotNil(BF16Support.unavailableReason)
      return
    }
    // 1,100 rows: several oneDNN calls per thread, and a shorter last block.
    for rows in [1, 7, 1100] {
      let x = randomTensor([rows, 40], seed: 2)
      let w = randomTensor([24, 40], seed: 3)
      let b = randomTensor([24], seed: 4)
      let expected = rounded(x).linear(weight: rounded(w), bias: b)
      XCTAssertTrue(w.storeInBF16())
      XCTAssertNotNil(w.bf16Weights)
      assertClose(x.linear(weight: w, bias: b).scalars, expected.scalars, tolerance: 1e-5)
      assertClose(
        x.linear(weight: w).scalars, rounded(x).linear(weight: rounded(w)).scalars,
        tolerance: 1e-5)
    }
  }

  func testInputGradientThroughBF16Weights() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let x = randomTensor([600, 40], seed: 5)
    x.requiresGrad = true
    let w = randomTensor([24, 40], seed: 6)
    let g = randomTensor([600, 24], seed: 7)
    XCTAssertTrue(w.storeInBF16())
    (x.linear(weight: w) * g).sum().backward()
    // dL/dx = bf16(g)·bf16(W) in FP32.
    let expected = rounded(g).matmul(rounded(w))
    assertClose(x.grad!.scalars, expected.scalars, tolerance: 1e-5)
  }

  func testFusedLayersUseTheBF16Copy() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let x = randomTensor([2, 9, 48], seed: 8)
    let (gamma, beta) = (randomTensor([48], seed: 9), randomTensor([48], seed: 10))
    let w = randomTensor([144, 48], seed: 11)
    let b = randomTensor([144], seed: 12)
    let fp32 = x.layerNormLinear(normWeight: gamma, normBias: beta, weight: w, bias: b)
    XCTAssertTrue(w.storeInBF16())
    let bf16 = x.layerNormLinear(normWeight: gamma, normBias: beta, weight: w, bias: b)
    // The normalised rows are rounded inside the op: compare with the composition on rounded
    // operands.
    let normalised = x.layerNorm(weight: gamma, bias: beta)
    let expected = rounded(normalised).linear(weight: rounded(w), bias: b)
    assertClose(bf16.scalars, expected.scalars, tolerance: 1e-4)
    XCTAssertLessThan(relativeDifference(bf16, fp32), 1e-2)

    let w2 = randomTensor([48, 144], seed: 13)
    let fp32Second = fp32.activationLinear(.gelu, weight: w2, bias: nil)
    XCTAssertTrue(w2.storeInBF16())
    let second = fp32.activationLinear(.gelu, weight: w2, bias: nil)
    // The activation reads its input rounded too (as autocast's BF16 hand-over).
    assertClose(
      second.scalars, rounded(rounded(fp32).gelu()).linear(weight: rounded(w2)).scalars,
      tolerance: 1e-4)
    XCTAssertLessThan(relativeDifference(second, fp32Second), 1e-2)

    let proj = randomTensor([48, 48], seed: 14)
    let attentionFP32 = Tensor.attentionProjection(qkv: fp32, heads: 4, weight: proj, bias: nil)
    XCTAssertTrue(proj.storeInBF16())
    let attention = Tensor.attentionProjection(qkv: fp32, heads: 4, weight: proj, bias: nil)
    let mixed = Tensor.attention(qkv: fp32, heads: 4)
    assertClose(
      attention.scalars, rounded(mixed).linear(weight: rounded(proj)).scalars, tolerance: 1e-4)
    XCTAssertLessThan(relativeDifference(attention, attentionFP32), 1e-2)
  }

  /// Attention in BF16 by hand: S = scale·bf16(q)·bf16(k)ᵀ, P = softmax(S), O = bf16(P)·bf16(v),
  /// every sum in FP32 (Double here).
  private func referenceBF16Attention(_ qkv: Tensor, heads: Int) -> [Float] {
    let (b, n, dim) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    let d = dim / heads
    let x = qkv.scalars.map(BFloat16.rounded)
    func at(_ bi: Int, _ i: Int, _ part: Int, _ h: Int, _ j: Int) -> Double {
      Double(x[(bi * n + i) * 3 * dim + part * dim + h * d + j])
    }
    var out = [Float](repeating: 0, count: b * n * dim)
    for bi in 0..<b {
      for h in 0..<heads {
        for i in 0..<n {
          var s = (0..<n).map { j in
            (0..<d).reduce(0.0) { $0 + at(bi, i, 0, h, $1) * at(bi, j, 1, h, $1) }
              / Double(d).squareRoot()
          }
          let top = s.max()!
          s = s.map { Foundation.exp($0 - top) }
          let total = s.reduce(0, +)
          let p = s.map { Double(BFloat16.rounded(Float($0 / total))) }
          for j in 0..<d {
            let value = (0..<n).reduce(0.0) { $0 + p[$1] * at(bi, $1, 2, h, j) }
            out[(bi * n + i) * dim + h * d + j] = Float(value)
          }
        }
      }
    }
    return out
  }

  func testAttentionProductsInBF16() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let qkv = randomTensor([2, 7, 3 * 16], seed: 19, low: -2, high: 2)
    let expected = referenceBF16Attention(qkv, heads: 2)
    let fused = Tensor.attention(qkv: qkv, heads: 2, productsInBF16: true)
    assertClose(fused.scalars, expected, tolerance: 1e-4)
    let fp32 = Tensor.attention(qkv: qkv, heads: 2)
    XCTAssertLessThan(relativeDifference(fused, fp32), 2e-2)
    XCTAssertGreaterThan(relativeDifference(fused, fp32), 1e-5, "the products did run in BF16")

    // With the projection; its weight has a BF16 copy.
    let w = randomTensor([16, 16], seed: 20)
    let projectedFP32 = Tensor.attentionProjection(qkv: qkv, heads: 2, weight: w, bias: nil)
    XCTAssertTrue(w.storeInBF16())
    let projected = Tensor.attentionProjection(
      qkv: qkv, heads: 2, weight: w, bias: nil, productsInBF16: true)
    let reference = rounded(Tensor(expected, shape: [2, 7, 16])).linear(weight: rounded(w))
    assertClose(projected.scalars, reference.scalars, tolerance: 1e-4)
    XCTAssertLessThan(relativeDifference(projected, projectedFP32), 2e-2)
  }

  func testAttentionGradientWithBF16Products() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let values = randomTensor([2, 9, 3 * 16], seed: 21)
    let g = randomTensor([2, 9, 16], seed: 22)
    func gradient(bf16: Bool, keep: Bool) -> Tensor {
      let qkv = Tensor(values.scalars, shape: values.shape)
      qkv.requiresGrad = true
      let out = Tensor.attention(
        qkv: qkv, heads: 4, keepProbabilities: keep, productsInBF16: bf16)
      (out * g).sum().backward()
      return qkv.grad!
    }
    // Rebuilding P in backward gives the P the forward pass used (kept or not: same gradient).
    assertClose(
      gradient(bf16: true, keep: false).scalars, gradient(bf16: true, keep: true).scalars,
      tolerance: 1e-6)
    XCTAssertLessThan(
      relativeDifference(gradient(bf16: true, keep: false), gradient(bf16: false, keep: false)),
      2e-2)
  }

  func testOnlyFrozenMatricesGetACopy() {
    let trained = randomTensor([4, 3], seed: 15)
    trained.requiresGrad = true
    XCTAssertFalse(trained.storeInBF16())
    XCTAssertFalse(randomTensor([4, 3, 2], seed: 16).storeInBF16())
    XCTAssertNil(trained.bf16Weights)
  }

  func testReleasedPagesReadBackAndWrittenPagesStay() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-bf16-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("w.safetensors")
    // 1 MiB per tensor: well above the mapping threshold, many whole pages each.
    let clean = randomTensor([512, 512], seed: 17)
    let written = randomTensor([512, 512], seed: 18)
    try Safetensors.write(["clean": clean, "written": written], to: url)
    let file = try SafetensorsFile(contentsOf: url)
    let mappedClean = try file.tensor("clean")
    let mappedWritten = try file.tensor("written")
    XCTAssertEqual(mappedClean.scalars, clean.scalars)  // reads every page in
    mappedWritten.pointer[200_000] = 42  // this page is now the process's own
    XCTAssertGreaterThan(mappedClean.storage.releaseBorrowedPages(), 1 << 19)
    XCTAssertEqual(mappedClean.scalars, clean.scalars, "released pages read back from the file")
    XCTAssertEqual(mappedWritten.storage.releaseBorrowedPages(), 0, "a written page is kept")
    XCTAssertEqual(mappedWritten.pointer[200_000], 42)
    XCTAssertEqual(Tensor(shape: [1024]).storage.releaseBorrowedPages(), 0, "owned memory")
  }

  private func relativeDifference(_ a: Tensor, _ b: Tensor) -> Float {
    let diff = zip(a.scalars, b.scalars).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
    let norm = b.scalars.map { $0 * $0 }.reduce(0, +)
    return (diff / norm).squareRoot()
  }

  // MARK: activations kept in BF16

  /// `op` on `source` and on `source` rounded to BF16 by hand, each differentiated through
  /// `sum(y²)`: the outputs, the input gradients, and the bytes the tape held for the op.
  private func onRawAndRounded(_ source: Tensor, _ op: (Tensor) -> Tensor) -> (
    raw: (y: [Float], g: [Float], tape: Int), byHand: (y: [Float], g: [Float], tape: Int)
  ) {
    func run(_ input: Tensor) -> (y: [Float], g: [Float], tape: Int) {
      let x = input.detached().requiringGrad()
      let base = TapeStats.savedBytes
      let y = op(x)
      let tape = TapeStats.savedBytes - base
      (y * y).sum().backward()
      return (y.scalars, x.grad!.scalars, tape)
    }
    return (run(source), run(Tensor(source.scalars.map(BFloat16.rounded), shape: source.shape)))
  }

  func testPackedBF16RoundTripsTheRoundedValues() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    for count in [1, 2, 7, 70_001] {
      let x = randomTensor([count], seed: UInt64(count), low: -40, high: 40)
      let packed = x.packedBF16()
      XCTAssertEqual(packed.count, (count + 1) / 2)
      XCTAssertEqual(packed.unpackedBF16(shape: [count]).scalars, x.scalars.map(BFloat16.rounded))
    }
  }

  /// With a frozen BF16 weight, `activationLinear` reads its input rounded and backward keeps it
  /// so (half the bytes): the op on x and on x rounded by hand agree exactly, gradient included.
  func testActivationLinearKeepsItsInputInBF16() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let w = randomTensor([24, 96], seed: 30)
    XCTAssertTrue(w.storeInBF16())
    let source = randomTensor([3, 10, 96], seed: 31, low: -3, high: 3)
    let (raw, byHand) = onRawAndRounded(source) { $0.activationLinear(.gelu, weight: w, bias: nil) }
    XCTAssertEqual(raw.y, byHand.y)
    XCTAssertEqual(raw.g, byHand.g)
    XCTAssertEqual(raw.tape, source.count * 2 + w.byteCount, "x in BF16, and the weight")
    // Without recording nothing is packed, and the values are the same.
    let inference = withNoGrad { source.activationLinear(.gelu, weight: w, bias: nil) }
    XCTAssertEqual(inference.scalars, raw.y)
  }

  /// Attention whose products run in BF16 keeps q, k and v rounded (half the bytes), and its
  /// gradient is the one of q, k and v rounded by hand.
  func testAttentionKeepsQKVInBF16() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let proj = randomTensor([48, 48], seed: 40)
    XCTAssertTrue(proj.storeInBF16())
    let source = randomTensor([2, 9, 144], seed: 41, low: -2, high: 2)
    let (raw, byHand) = onRawAndRounded(source) {
      Tensor.attentionProjection(qkv: $0, heads: 4, weight: proj, bias: nil, productsInBF16: true)
    }
    XCTAssertEqual(raw.y, byHand.y)
    XCTAssertEqual(raw.g, byHand.g)
    XCTAssertEqual(raw.tape, source.count * 2 + proj.byteCount)
  }
}
