import CKernels
import Foundation
import XCTest

@testable import GraftTensor

final class MatmulTests: XCTestCase {
  /// Naive triple loop on explicitly transposed copies.
  func naive(_ a: Tensor, _ b: Tensor, _ ta: Bool, _ tb: Bool) -> [Float] {
    let m = ta ? a.shape[1] : a.shape[0]
    let k = ta ? a.shape[0] : a.shape[1]
    let n = tb ? b.shape[0] : b.shape[1]
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        var acc: Double = 0
        for p in 0..<k {
          let av = ta ? a[p, i] : a[i, p]
          let bv = tb ? b[j, p] : b[p, j]
          acc += Double(av) * Double(bv)
        }
        c[i * n + j] = Float(acc)
      }
    }
    return c
  }

  func testAllTransposeCombinationsAndOddShapes() {
    let shapes = [(1, 1, 1), (3, 5, 7), (17, 1, 9), (1, 33, 2), (64, 65, 63), (5, 0, 3)]
    for (m, k, n) in shapes {
      for ta in [false, true] {
        for tb in [false, true] {
          let a = randomTensor(ta ? [k, m] : [m, k], seed: UInt64(m * 100 + k))
          let b = randomTensor(tb ? [n, k] : [k, n], seed: UInt64(n * 100 + k + 1))
          let c = a.matmul(b, transposeSelf: ta, transposeOther: tb)
          XCTAssertEqual(c.shape, [m, n])
          assertClose(c.scalars, naive(a, b, ta, tb), tolerance: 1e-4)
        }
      }
    }
  }

  /// Small GEMMs split from 1 MFLOP on two threads (LST's narrow side layers), into blocks of
  /// at least 0.5 MFLOP, all threads from 4 MFLOP; one thread never splits.
  func testGEMMSplitsIntoBlocksOfAtLeastHalfAMegaflop() {
    XCTAssertEqual(sgemmParts(flops: 999_999, threads: 2), 1)
    XCTAssertEqual(sgemmParts(flops: 1_000_000, threads: 2), 2)
    // LST's side qkv at the bundled backbone: 1,600 tokens, 16 → 48.
    XCTAssertEqual(sgemmParts(flops: 2 * 1600 * 16 * 48, threads: 2), 2)
    XCTAssertEqual(sgemmParts(flops: 3_999_999, threads: 16), 7)
    XCTAssertEqual(sgemmParts(flops: 4_000_000, threads: 16), 16)
    XCTAssertEqual(sgemmParts(flops: 400_000_000, threads: 64), 64)
    XCTAssertEqual(sgemmParts(flops: 100, threads: 8), 1)
    XCTAssertEqual(sgemmParts(flops: 10_000_000, threads: 1), 1)
  }

  /// A product split into row or column blocks across the pool (each block with its own
  /// offsets and leading dimensions) gives what one OpenBLAS call gives, to float reordering.
  func testSplitGEMMMatchesOneCall() {
    for (m, k, n) in [(1600, 24, 24), (24, 1600, 24), (24, 24, 1600), (37, 300, 91)] {
      for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = randomTensor(ta ? [k, m] : [m, k], seed: UInt64(m + k))
        let b = randomTensor(tb ? [n, k] : [k, n], seed: UInt64(n + 7 * k))
        var split = [Float](repeating: .nan, count: m * n)
        var whole = [Float](repeating: .nan, count: m * n)
        split.withUnsafeMutableBufferPointer { c in
          sgemm(a.pointer, transA: ta, b.pointer, transB: tb, c.baseAddress!, m: m, n: n, k: k)
        }
        _ = blasSingleThreaded
        whole.withUnsafeMutableBufferPointer { c in
          sgemmBlock(
            a.pointer, ta, ta ? m : k, b.pointer, tb, tb ? k : n, c.baseAddress!, n, m: m, n: n,
            k: k, beta: 0)
        }
        XCTAssertFalse(split.contains { $0.isNaN }, "\(m)x\(k)x\(n) ta \(ta) tb \(tb)")
        assertClose(split, whole, tolerance: 1e-4)
      }
    }
  }

  /// `graft_small_sgemm` (attention heads ≤ 16 wide): every element is alpha times one chain of
  /// fused multiply-adds in order of the inner index, so it equals that chain to the bit on any
  /// instruction set, for every transpose and for widths on both sides of each vector width;
  /// it reads rows through the leading dimensions and writes nothing past column n.
  func testSmallProductKernelIsOneMultiplyAddChainPerElement() {
    var rng = RandomGenerator(seed: 31)
    for (m, n, k) in [
      (1, 1, 1), (7, 3, 5), (50, 4, 50), (50, 50, 4), (9, 8, 16), (13, 9, 3),
      (6, 16, 7), (5, 17, 2), (50, 50, 16), (3, 5, 0),
    ] {
      for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let (lda, ldb, ldc) = ((ta ? m : k) + 3, (tb ? k : n) + 2, n + 5)
        let a = (0..<((ta ? k : m) * lda)).map { _ in rng.nextNormal() }
        let b = (0..<((tb ? n : k) * ldb)).map { _ in rng.nextNormal() }
        var c = [Float](repeating: 42, count: m * ldc)
        let alpha: Float = 0.375
        graft_small_sgemm(ta ? 1 : 0, tb ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, &c, ldc)
        var wrong = 0
        for i in 0..<m {
          for j in 0..<n {
            var chain: Float = 0
            for p in 0..<k {
              let av = ta ? a[p * lda + i] : a[i * lda + p]
              let bv = tb ? b[j * ldb + p] : b[p * ldb + j]
              chain = chain.addingProduct(av, bv)
            }
            if c[i * ldc + j].bitPattern != (chain * alpha).bitPattern { wrong += 1 }
          }
          XCTAssertTrue(c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy { $0 == 42 })
        }
        XCTAssertEqual(wrong, 0, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb)")
      }
    }
  }

  func testDegenerateEmptyOutput() {
    let c = Tensor.zeros([0, 4]).matmul(Tensor.ones([4, 3]))
    XCTAssertEqual(c.shape, [0, 3])
  }

  func testBatchedAndLinearLayerShapes() {
    let a = randomTensor([2, 3, 4, 5], seed: 1)
    let b = randomTensor([2, 3, 5, 6], seed: 2)
    let c = a.matmul(b)
    XCTAssertEqual(c.shape, [2, 3, 4, 6])
    let a1 = a.slice(0, 1..<2).slice(1, 2..<3).reshaped([4, 5])
    let b1 = b.slice(0, 1..<2).slice(1, 2..<3).reshaped([5, 6])
    assertClose(
      c.slice(0, 1..<2).slice(1, 2..<3).scalars, naive(a1, b1, false, false), tolerance: 1e-4)
    // Batch broadcast: [3,4,5] · [5,6] (linear layer) and [1,4,5] · [3,5,6].
    let w = randomTensor([6, 5], seed: 3)
    let y = a.matmul(w, transposeOther: true)
    XCTAssertEqual(y.shape, [2, 3, 4, 6])
    assertClose(
      y.slice(0, 1..<2).slice(1, 2..<3).scalars, naive(a1, w, false, true), tolerance: 1e-4)
    XCTAssertEqual(
      randomTensor([1, 4, 5], seed: 4).matmul(randomTensor([3, 5, 6], seed: 5)).shape, [3, 4, 6])
  }

  func testMatmulGradients() {
    for ta in [false, true] {
      for tb in [false, true] {
        let a = randomTensor(ta ? [4, 3] : [3, 4], seed: 6)
        let b = randomTensor(tb ? [5, 4] : [4, 5], seed: 7)
        assertGradients([a, b]) { $0[0].matmul($0[1], transposeSelf: ta, transposeOther: tb) }
      }
    }
    let x = randomTensor([2, 3, 4], seed: 8)
    let w = randomTensor([5, 4], seed: 9)
    assertGradients([x, w]) { $0[0].matmul($0[1], transposeOther: true) }
    let q = randomTensor([2, 3, 4], seed: 10)
    let k = randomTensor([2, 5, 4], seed: 11)
    assertGradients([q, k]) { $0[0].matmul($0[1], transposeOther: true) }
    let shared = randomTensor([4, 2], seed: 12)
    assertGradients([q, shared]) { $0[0].matmul($0[1].broadcast(to: [2, 4, 2])) }
  }

  func testGroupCrossProductsMatchPermuteGatherMatmul() {
    // Moment Probing's pairs (near, n/2, all) and a group paired with itself: the fused op against
    // the composed ops it replaces, output and gradient.
    var rng = RandomGenerator(seed: 17)
    let (batch, n, groups, h) = (3, 7, 4, 5)
    for pairs in [[(0, 1), (1, 2), (2, 3)], [(0, 2), (1, 3)], [(2, 2), (3, 0), (0, 1)]] {
      let x = Tensor.randn([batch, n, groups * h], generator: &rng)
      let g = Tensor.randn([batch, pairs.count, h, h], generator: &rng)
      let (fused, composed) = (x.detached().requiringGrad(), x.detached().requiringGrad())
      let y = fused.groupCrossProducts(groups: groups, pairs: pairs, scale: 1 / Float(n))
      let byGroup = composed.reshaped([batch, n, groups, h]).permuted([0, 2, 1, 3])
      let want =
        byGroup.indexSelect(1, pairs.map(\.0)).matmul(
          byGroup.indexSelect(1, pairs.map(\.1)), transposeSelf: true) * (1 / Float(n))
      y.backward(g)
      want.backward(g)
      XCTAssertEqual(y.shape, [batch, pairs.count, h, h])
      for (got, expected, what) in [(y, want, "output"), (fused.grad!, composed.grad!, "gradient")]
      {
        let err = zip(got.scalars, expected.scalars).map { abs($0 - $1) / (1 + abs($1)) }.max()!
        XCTAssertLessThan(err, 1e-5, "\(pairs): \(what)")
      }
    }
    let check = GradientCheck.run([Tensor.randn([2, 3, 6], generator: &rng)]) {
      $0[0].groupCrossProducts(groups: 3, pairs: [(0, 1), (2, 2)], scale: 0.5)
    }
    XCTAssertTrue(check.passed, check.summary)
  }
}
