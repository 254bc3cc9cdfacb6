import Foundation
import XCTest

@testable import GraftTensor

/// PyTorch reference cases for the spatial ops, written by Tools/make_spatial_fixture.py
/// (shared by the convolution, pooling and resize tests).
struct SpatialFixture: Decodable {
  struct Values: Decodable {
    let shape: [Int]
    let data: [Float]
    var tensor: Tensor { Tensor(data, shape: shape) }
  }

  struct Params: Decodable {
    var stride: [Int]?
    var padding: [Int]?
    var dilation: [Int]?
    var groups: Int?
    var kernel: [Int]?
    var ceilMode: Bool?
    var countIncludePad: Bool?
    var outputSize: [Int]?
    var mode: String?
    var size: [Int]?
    var scaleFactor: [Double]?
  }

  struct Case: Decodable {
    let op: String
    let name: String
    let params: Params
    let inputs: [String: Values]
    let output: Values
    let grads: [String: Values]
  }

  let cases: [Case]

  /// The cases of one op; fails the calling test when the fixture is missing or has none.
  static func cases(_ op: String, file: StaticString = #filePath, line: UInt = #line) -> [Case] {
    guard
      let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil),
      let data = try? Data(contentsOf: dir.appendingPathComponent("spatial.json")),
      let fixture = try? JSONDecoder().decode(SpatialFixture.self, from: data)
    else {
      XCTFail("cannot load Fixtures/spatial.json", file: file, line: line)
      return []
    }
    let found = fixture.cases.filter { $0.op == op }
    XCTAssertFalse(found.isEmpty, "no \(op) cases in the fixture", file: file, line: line)
    return found
  }

  /// The upstream gradient the fixture script used: `sin(0.37·i + 0.1)` over the flat index.
  static func upstream(_ shape: [Int]) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor((0..<n).map { Float(sin(0.37 * Double($0) + 0.1)) }, shape: shape)
  }

  /// Runs `f` on the case's inputs (named in `order`), compares the output and, after a backward
  /// pass with the shared upstream gradient, every input's gradient with PyTorch's.
  static func check(
    _ c: Case, inputs order: [String], tolerance: Float = 1e-4, file: StaticString = #filePath,
    line: UInt = #line, _ f: ([Tensor]) -> Tensor
  ) {
    let xs = order.map { c.inputs[$0]!.tensor.requiringGrad() }
    let y = f(xs)
    assertClose(y, c.output, "\(c.op) '\(c.name)' output", tolerance, file: file, line: line)
    y.backward(upstream(y.shape))
    for (name, x) in zip(order, xs) {
      guard let grad = x.grad else {
        XCTFail("\(c.op) '\(c.name)': no gradient for \(name)", file: file, line: line)
        continue
      }
      assertClose(
        grad, c.grads[name]!, "\(c.op) '\(c.name)' grad \(name)", tolerance, file: file,
        line: line)
    }
  }

  static func assertClose(
    _ t: Tensor, _ want: Values, _ what: String, _ tolerance: Float, file: StaticString,
    line: UInt
  ) {
    XCTAssertEqual(t.shape, want.shape, "\(what): shape", file: file, line: line)
    guard t.shape == want.shape else { return }
    // The fixture keeps 5 significant digits.
    let worst = zip(t.scalars, want.data).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? 0
    XCTAssertLessThan(worst, tolerance, "\(what): worst scaled error", file: file, line: line)
  }
}

/// Direct 7-loop convolution, the definition the im2col path must reproduce.
func naiveConv2d(
  _ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: (Int, Int), padding: (Int, Int),
  dilation: (Int, Int), groups: Int
) -> Tensor {
  let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
  let og = o / groups
  let ho = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
  let wo = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
  let out = Tensor(shape: [n, o, ho, wo])
  precondition(c == cg * groups)
  for img in 0..<n {
    for oc in 0..<o {
      for oy in 0..<ho {
        for ox in 0..<wo {
          var acc = Double(b?[oc] ?? 0)
          for ic in 0..<cg {
            for ki in 0..<kh {
              for kj in 0..<kw {
                let iy = oy * stride.0 - padding.0 + ki * dilation.0
                let ix = ox * stride.1 - padding.1 + kj * dilation.1
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                acc += Double(x[img, (oc / og) * cg + ic, iy, ix]) * Double(w[oc, ic, ki, kj])
              }
            }
          }
          out[img, oc, oy, ox] = Float(acc)
        }
      }
    }
  }
  return out
}

final class ConvolutionTests: XCTestCase {
  func testHandWorkedConvolution() {
    // x = 1…9 in a 3×3 image; the kernel [[1, 0], [0, −1]] takes x[i, j] − x[i+1, j+1].
    let x = Tensor((1...9).map(Float.init), shape: [1, 1, 3, 3])
    let w = Tensor([1, 0, 0, -1], shape: [1, 1, 2, 2])
    XCTAssertEqual(x.conv2d(weight: w).scalars, [-4, -4, -4, -4])
    XCTAssertEqual(x.conv2d(weight: w, bias: Tensor([0.5])).scalars, [-3.5, -3.5, -3.5, -3.5])
    // Padding 1, stride 2: windows start at (−1, −1), (−1, 1), (1, −1), (1, 1); padding reads 0.
    let y = x.conv2d(weight: w, stride: (2, 2), padding: (1, 1))
    XCTAssertEqual(y.shape, [1, 1, 2, 2])
    XCTAssertEqual(y.scalars, [-1, -3, -7, -4])  // 0 − 1, 0 − 3, 0 − 7, 5 − 9
    // A 2×2 kernel with dilation 2 spans the whole image and reads its corners.
    let corners = Tensor([1, 0, 2, 0, 0, 0, 3, 0, 4], shape: [1, 1, 3, 3])
    let dilated = Tensor([1, 1, 1, 1], shape: [1, 1, 2, 2])
    XCTAssertEqual(x.conv2d(weight: dilated, dilation: (2, 2)).scalars, [20])  // 1 + 3 + 7 + 9
    // A kernel as large as the image: one output, the full weighted sum.
    XCTAssertEqual(x.conv2d(weight: corners).scalars, [64])  // 1·1 + 2·3 + 3·7 + 4·9
  }

  func testHandWorkedDepthwiseAndGroups() {
    // Two channels, depthwise with a 1×1 kernel: channel c is scaled by w[c].
    let x = Tensor([1, 2, 3, 4, 10, 20, 30, 40], shape: [1, 2, 2, 2])
    let w = Tensor([2, -1], shape: [2, 1, 1, 1])
    XCTAssertEqual(x.conv2d(weight: w, groups: 2).scalars, [2, 4, 6, 8, -10, -20, -30, -40])
    // Depthwise 2×2 without padding: one output per channel, the plane's weighted sum.
    let w2 = Tensor([1, 1, 1, 1, 1, 0, 0, 1], shape: [2, 1, 2, 2])
    XCTAssertEqual(x.conv2d(weight: w2, bias: Tensor([0, 1]), groups: 2).scalars, [10, 51])
  }

  func testMatchesPyTorch() {
    for c in SpatialFixture.cases("conv2d") {
      let p = c.params
      let names = c.inputs["b"] == nil ? ["x", "w"] : ["x", "w", "b"]
      SpatialFixture.check(c, inputs: names) { xs in
        xs[0].conv2d(
          weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: (p.stride![0], p.stride![1]),
          padding: (p.padding![0], p.padding![1]), dilation: (p.dilation![0], p.dilation![1]),
          groups: p.groups!)
      }
    }
  }

  /// Runs `body` once with each general path forced (direct loops, im2col + GEMM), so that the
  /// shapes the other path would take by default check both.
  func forEachPath(_ body: (Conv2dPath) -> Void) {
    defer { Conv2dGeometry.forcedPath = nil }
    for path in [Conv2dPath.direct, .im2col] {
      Conv2dGeometry.forcedPath = path
      body(path)
    }
  }

  func testMatchesNaiveLoopOnOddShapes() {
    forEachPath { path in matchesNaiveLoopOnOddShapes(path) }
  }

  func matchesNaiveLoopOnOddShapes(_ path: Conv2dPath) {
    var rng = RandomGenerator(seed: 11)
    // (N, C, H, W, O, kh, kw, stride, padding, dilation, groups): general, strided, grouped,
    // depthwise, patchify (with leftover rows), pointwise, and a kernel as large as the input.
    let configs: [(Int, Int, Int, Int, Int, Int, Int, (Int, Int), (Int, Int), (Int, Int), Int)] = [
      (2, 3, 7, 5, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),
      (1, 3, 9, 11, 4, 3, 2, (2, 3), (1, 0), (2, 3), 1),
      (2, 6, 5, 7, 9, 2, 3, (1, 2), (0, 1), (1, 1), 3),
      (2, 5, 9, 7, 5, 3, 3, (2, 2), (1, 1), (1, 1), 5),
      (1, 3, 6, 5, 6, 5, 3, (1, 1), (2, 1), (1, 2), 3),
      (2, 3, 11, 13, 7, 4, 4, (4, 4), (0, 0), (1, 1), 1),
      (3, 4, 5, 3, 6, 1, 1, (1, 1), (0, 0), (1, 1), 2),
      (1, 2, 3, 5, 3, 3, 5, (1, 1), (0, 0), (1, 1), 1),
      (1, 1, 7, 7, 2, 1, 1, (2, 3), (1, 1), (1, 1), 1),
    ]
    for (i, cfg) in configs.enumerated() {
      let (n, c, h, w, o, kh, kw, s, p, d, g) = cfg
      let x = Tensor.randn([n, c, h, w], generator: &rng)
      let wt = Tensor.randn([o, c / g, kh, kw], generator: &rng)
      let b = Tensor.randn([o], generator: &rng)
      let got = x.conv2d(weight: wt, bias: b, stride: s, padding: p, dilation: d, groups: g)
      let want = naiveConv2d(x, wt, b, stride: s, padding: p, dilation: d, groups: g)
      XCTAssertEqual(got.shape, want.shape, "\(path) config \(i)")
      let err = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? 0
      XCTAssertLessThan(err, 1e-4, "\(path) config \(i): max abs error vs naive loop")
    }
  }

  func testGradientCheck() {
    forEachPath { path in gradientCheck(path) }
  }

  func gradientCheck(_ path: Conv2dPath) {
    var rng = RandomGenerator(seed: 3)
    // (C, H, W, O, k, stride, padding, dilation, groups, bias)
    let configs: [(Int, Int, Int, Int, Int, (Int, Int), (Int, Int), (Int, Int), Int, Bool)] = [
      (2, 5, 5, 3, 3, (2, 2), (1, 1), (1, 1), 1, true),  // stride 2, padding 1
      (2, 6, 5, 2, 2, (1, 1), (1, 0), (2, 2), 1, false),  // dilation 2
      (4, 4, 5, 2, 3, (1, 2), (1, 1), (1, 1), 2, true),  // groups 2
      (3, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1), 3, true),  // depthwise
      (2, 5, 5, 4, 3, (2, 1), (1, 1), (2, 1), 2, false),  // depthwise, multiplier 2, dilated
      (2, 6, 7, 3, 3, (3, 3), (0, 0), (1, 1), 1, true),  // patchify with leftover column
      (4, 3, 3, 4, 1, (1, 1), (0, 0), (1, 1), 2, true),  // pointwise, grouped
    ]
    for (i, cfg) in configs.enumerated() {
      let (c, h, w, o, k, s, p, d, g, hasBias) = cfg
      let x = Tensor.randn([2, c, h, w], generator: &rng)
      let wt = Tensor.randn([o, c / g, k, k], generator: &rng)
      var inputs = [x, wt]
      if hasBias { inputs.append(Tensor.randn([o], generator: &rng)) }
      let check = GradientCheck.run(inputs) { xs in
        xs[0].conv2d(
          weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: s, padding: p, dilation: d,
          groups: g)
      }
      XCTAssertTrue(check.passed, "\(path) config \(i): \(check.summary)")
    }
  }

  func testLargeBackwardSatisfiesLinearity() {
    forEachPath { path in largeBackwardSatisfiesLinearity(path) }
  }

  func largeBackwardSatisfiesLinearity(_ path: Conv2dPath) {
    // Shapes large enough that im2col, col2im, the patch gather and the depthwise loops split
    // across threads. Convolution is linear in x and in w, so for L = Σ gy·conv(x, w):
    // ⟨∂L/∂x, v⟩ = Σ gy·conv(v, w) and ⟨∂L/∂w, u⟩ = Σ gy·conv(x, u).
    var rng = RandomGenerator(seed: 12)
    // (N, C, H, W, O, k, stride, padding, groups)
    let configs: [(Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
      (2, 64, 10, 10, 8, 3, 1, 1, 1),  // general im2col
      (2, 64, 12, 12, 64, 3, 1, 1, 64),  // depthwise
      (2, 3, 128, 128, 8, 8, 8, 0, 1),  // patchify
      (3, 3, 128, 128, 3, 3, 2, 0, 1),  // Moment Probing's first convolution
    ]
    for (i, cfg) in configs.enumerated() {
      let (n, c, h, w, o, k, s, p, g) = cfg
      func conv(_ x: Tensor, _ wt: Tensor) -> Tensor {
        x.conv2d(weight: wt, stride: (s, s), padding: (p, p), groups: g)
      }
      let x = Tensor.randn([n, c, h, w], generator: &rng).requiringGrad()
      let wt = Tensor.randn([o, c / g, k, k], generator: &rng).requiringGrad()
      let y = conv(x, wt)
      let gy = Tensor.randn(y.shape, generator: &rng)
      y.backward(gy)
      let v = Tensor.randn(x.shape, generator: &rng)
      let u = Tensor.randn(wt.shape, generator: &rng)
      let (viaV, viaU) = withNoGrad { (dot(conv(v, wt), gy), dot(conv(x, u), gy)) }
      XCTAssertEqual(
        dot(x.grad!, v), viaV, accuracy: 1e-4 * Swift.max(1, abs(viaV)), "\(path) config \(i) dx")
      XCTAssertEqual(
        dot(wt.grad!, u), viaU, accuracy: 1e-4 * Swift.max(1, abs(viaU)), "\(path) config \(i) dw")
    }
  }

  func testDirectPathIsChosenForFewOutputChannelsAndAgreesWithIm2col() {
    // Moment Probing's 3 → 3 stride-2 convolution takes the direct loops, a wide one keeps the
    // GEMM; on the same inputs both paths give the same output and gradients to rounding.
    func geometry(_ o: Int, groups: Int = 1) -> Conv2dGeometry {
      Conv2dGeometry(
        n: 1, c: 6, h: 9, w: 9, o: o, kh: 3, kw: 3, sh: 2, sw: 2, ph: 0, pw: 0, dh: 1, dw: 1,
        groups: groups, ho: 4, wo: 4)
    }
    XCTAssertTrue(geometry(3).usesDirect)
    XCTAssertTrue(geometry(16, groups: 2).usesDirect, "8 output channels per group")
    XCTAssertFalse(geometry(32).usesDirect)
    XCTAssertFalse(geometry(6, groups: 6).usesDirect, "depthwise has its own loop")

    var rng = RandomGenerator(seed: 21)
    // Output rows 20 wide (three 8-float chunks) and 71 wide (nine: the weight gradient's
    // four-accumulator loop, then its two- and one-chunk steps and the masked tail).
    for (h, w, ho, wo) in [(37, 41, 18, 20), (29, 143, 14, 71)] {
      let x = Tensor.randn([4, 3, h, w], generator: &rng)
      let weight = Tensor.randn([3, 3, 3, 3], generator: &rng)
      let gy = Tensor.randn([4, 3, ho, wo], generator: &rng)
      var results: [[[Float]]] = []
      forEachPath { _ in
        let (xi, wi) = (x.detached().requiringGrad(), weight.detached().requiringGrad())
        let y = xi.conv2d(weight: wi, stride: (2, 2))
        y.backward(gy)
        results.append([y.scalars, xi.grad!.scalars, wi.grad!.scalars])
      }
      for (part, name) in ["output", "input gradient", "weight gradient"].enumerated() {
        let (direct, gemm) = (results[0][part], results[1][part])
        let scale = gemm.map(abs).max()!
        let err = zip(direct, gemm).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err, 1e-5 * scale, "\(name), output \(ho) × \(wo)")
      }
    }
  }

  func testInputNoWindowReadsStaysOutOfTheGradients() {
    // With kernel 3 and stride 2 over 8 columns the windows read columns 0…6: an infinite value
    // in column 7 must not reach the weight gradient (the direct path runs whole vectors past
    // the last output and zeroes those lanes), on either path.
    var rng = RandomGenerator(seed: 4)
    let x = Tensor.randn([2, 3, 9, 8], generator: &rng)
    for c in 0..<3 { x[1, c, 4, 7] = .infinity }
    let w = Tensor.randn([3, 3, 3, 3], generator: &rng)
    forEachPath { path in
      let (xi, wi) = (x.detached().requiringGrad(), w.detached().requiringGrad())
      let y = xi.conv2d(weight: wi, stride: (2, 2))
      XCTAssertTrue(y.scalars.allSatisfy(\.isFinite), "\(path) output")
      y.backward(Tensor.randn(y.shape, generator: &rng))
      XCTAssertTrue(wi.grad!.scalars.allSatisfy(\.isFinite), "\(path) weight gradient")
      XCTAssertTrue(xi.grad!.scalars.allSatisfy(\.isFinite), "\(path) input gradient")
    }
  }

  func testOnlyNeededInputsGetGradients() {
    var rng = RandomGenerator(seed: 5)
    let x = Tensor.randn([1, 2, 4, 4], generator: &rng)
    let w = Tensor.randn([3, 2, 3, 3], generator: &rng)
    let b = Tensor.randn([3], generator: &rng)
    // Frozen: nothing is recorded, nothing is saved.
    let before = TapeStats.savedBytes
    let frozen = x.conv2d(weight: w, bias: b, padding: (1, 1))
    XCTAssertNil(frozen.gradFnName)
    XCTAssertEqual(TapeStats.savedBytes, before)
    // Only the bias trains: its gradient is the per-channel sum of the output gradient.
    b.requiresGrad = true
    let y = x.conv2d(weight: w, bias: b, padding: (1, 1))
    XCTAssertEqual(y.gradFnName, "conv2d")
    XCTAssertEqual(TapeStats.savedBytes, before, "a bias-only backward needs no saved tensors")
    y.sum().backward()
    XCTAssertEqual(b.grad?.scalars, [16, 16, 16])
    XCTAssertNil(x.grad)
    XCTAssertNil(w.grad)
  }
}
