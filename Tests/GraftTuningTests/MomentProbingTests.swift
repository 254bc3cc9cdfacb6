import XCTest

@testable import GraftModels
@testable import GraftTuning

final class MomentProbingTests: XCTestCase {
  // The tiny backbone of MethodTests: D = 16, L = 2 blocks, 4 + 1 tokens.
  let d = 16
  let l = 2
  let c = 4

  /// MP's closed form: head D·C + C, proj D·P + P, LayerNorm 2h, two K→K 3×3 convs 18K²,
  /// classifier2 F·C + C with F = K·s², s = ⌊(⌊(h − 3)/2⌋ + 1 − 3)/2⌋ + 1, h = P / heads.
  func mpCount(d: Int, p: Int, heads: Int, k: Int, classes c: Int) -> Int {
    let h = p / heads
    let s = ((h - 3) / 2 + 1 - 3) / 2 + 1
    return (d * c + c) + (d * p + p) + 2 * h + 2 * 9 * k * k + (k * s * s * c + c)
  }

  func testTrainableCountsMatchClosedForms() throws {
    // Defaults on D = 16: P = auto = 4·16 = 64, 4 heads (h = 16, s = 3), near: K = 3.
    let mp = try makeMethod("mp", backbone: tinyBackbone(), classes: c)
    XCTAssertEqual(mp.trainableCount, mpCount(d: d, p: 64, heads: 4, k: 3, classes: c))
    XCTAssertEqual(mp.trainableCount, (16 * 4 + 4) + (16 * 64 + 64) + 32 + 162 + (27 * 4 + 4))
    // MP+ adds per block down D·r, up_weight r·D, up_bias r·D (no biases), r = 16.
    let plus = try makeMethod("mp+", backbone: tinyBackbone(), classes: c)
    XCTAssertEqual(plus.trainableCount, mp.trainableCount + l * 3 * d * 16)
    // Non-default: P = 56 (h = 14, s = 2), cn2: K = 6 pairs of 4 heads.
    let cn2 = try makeMethod(
      "mp", backbone: tinyBackbone(), classes: c, options: ["proj_dim": "56", "cross": "cn2"])
    XCTAssertEqual(cn2.trainableCount, mpCount(d: d, p: 56, heads: 4, k: 6, classes: c))
    // P = 32 in 2 heads (h = 16, K = 1), r = 3.
    let small = try makeMethod(
      "mp+", backbone: tinyBackbone(), classes: c,
      options: ["proj_dim": "32", "heads": "2", "psrp_rank": "3"])
    XCTAssertEqual(
      small.trainableCount, mpCount(d: d, p: 32, heads: 2, k: 1, classes: c) + l * 3 * d * 3)
    // n/2 of 6 heads: K = 3; auto P = 64 / 6 · 6 = 60, h = 10, s = 1.
    let half = try makeMethod(
      "mp", backbone: tinyBackbone(), classes: c, options: ["heads": "6", "cross": "n/2"])
    XCTAssertEqual((half as! MomentProbing).projectionWidth, 60)
    XCTAssertEqual(half.trainableCount, mpCount(d: d, p: 60, heads: 6, k: 3, classes: c))
    // Names.
    let names = plus.trainableTensors().map(\.name)
    for n in [
      "mp.head.weight", "mp.head.bias", "mp.proj.weight", "mp.proj.bias", "mp.ln.weight",
      "mp.ln.bias", "mp.conv1.weight", "mp.conv2.weight", "mp.classifier2.weight",
      "mp.classifier2.bias", "mp.blocks.1.psrp.down.weight", "mp.blocks.1.psrp.up_weight.weight",
      "mp.blocks.1.psrp.up_bias.weight",
    ] {
      XCTAssertTrue(names.contains(n), n)
    }
    XCTAssertEqual(names.count, 10 + 3 * l)
    XCTAssertTrue(plus.needsBackboneGradient)
    XCTAssertFalse(mp.needsBackboneGradient)
  }

  func testFeatureLengthFormula() throws {
    // The reference: P = 512, 4 heads (h = 128 → 63 → 31), near (3 pairs): 3·31·31.
    XCTAssertEqual(MomentProbing.convolvedSide(128), 31)
    XCTAssertEqual(MomentProbing.featureLength(projection: 512, heads: 4, pairs: 3), 2883)
    // The smallest side that survives both convolutions: 7 → 3 → 1; 6 would not.
    XCTAssertEqual(MomentProbing.convolvedSide(7), 1)
    XCTAssertEqual(MomentProbing.convolvedSide(16), 3)
    XCTAssertEqual(try MomentProbing.pairs(cross: "near", heads: 4).count, 3)
    XCTAssertEqual(
      try MomentProbing.pairs(cross: "n/2", heads: 4).map { [$0.0, $0.1] }, [[0, 2], [1, 3]])
    XCTAssertEqual(try MomentProbing.pairs(cross: "cn2", heads: 4).count, 6)
    // auto: the reference's 512 from D = 128 up, 4·D below, at least 7 per head.
    XCTAssertEqual(MomentProbing.autoProjection(width: 768, heads: 4), 512)
    XCTAssertEqual(MomentProbing.autoProjection(width: 384, heads: 4), 512)
    XCTAssertEqual(MomentProbing.autoProjection(width: 192, heads: 4), 512)
    XCTAssertEqual(MomentProbing.autoProjection(width: 100, heads: 4), 400)
    XCTAssertEqual(MomentProbing.autoProjection(width: 16, heads: 4), 64)
    XCTAssertEqual(MomentProbing.autoProjection(width: 16, heads: 16), 112)
    // Built on a tiny backbone the head gives [B, C] logits through the shapes above.
    let mp = try makeMethod("mp", backbone: tinyBackbone(), classes: c) as! MomentProbing
    let out = withNoGrad { mp.backbone.forward(tinyInput(batch: 3), hooks: mp) }
    XCTAssertEqual(mp.crossCovariances(out.patchTokens).shape, [3, 3, 16, 16])
    XCTAssertEqual(mp.secondOrderFeature(out.patchTokens).shape, [3, 27])
    XCTAssertEqual(mp(tinyInput(batch: 3)).shape, [3, c])
  }

  /// A ViT-B-wide backbone (D = 768, one block, 32×32 input): `auto` gives the reference head,
  /// 2883 second-order features and 4.05M parameters for 1000 classes (methods.md §6.1).
  func testViTBaseWidthGivesTheReferenceHead() throws {
    let config = ViTConfig(imgSize: 32, patchSize: 16, embedDim: 768, depth: 1, numHeads: 12)
    var rng = RandomGenerator(seed: 2)
    let backbone = try VisionTransformer(config: config, generator: &rng)
    let mp = try makeMethod("mp", backbone: backbone, classes: 1000) as! MomentProbing
    XCTAssertEqual(mp.projectionWidth, 512)
    XCTAssertEqual(mp.featureLength, 2883)
    XCTAssertEqual(mp.classifier2.weight.shape, [1000, 2883])
    XCTAssertEqual(mp.trainableCount, 769_000 + 393_728 + 256 + 162 + 2_884_000)
    XCTAssertEqual(mp.trainableCount, 4_047_146)
    var inputRng = RandomGenerator(seed: 4)
    let x = Tensor.randn([1, 3, 32, 32], generator: &inputRng)
    XCTAssertEqual(withNoGrad { mp(x) }.shape, [1, 1000])
  }

  func testBadOptionsAreClearErrors() {
    func message(_ name: String, _ options: [String: String]) -> String {
      do {
        _ = try makeMethod(name, backbone: tinyBackbone(), options: options)
        return "no error"
      } catch { return "\(error)" }
    }
    XCTAssertTrue(message("mp", ["proj_dim": "30"]).contains("multiple of heads"))
    XCTAssertTrue(message("mp", ["proj_dim": "24"]).contains("≥ 7"))
    XCTAssertTrue(message("mp", ["cross": "far"]).contains("near, n/2, cn2"))
    XCTAssertTrue(message("mp", ["cross": "n/2", "heads": "3"]).contains("even"))
    XCTAssertTrue(message("mp", ["heads": "1"]).contains("method.heads"))
    XCTAssertTrue(message("mp", ["psrp_rank": "4"]).contains("no option 'psrp_rank'"))
    XCTAssertTrue(message("mp+", ["psrp_init": "ones"]).contains("timm or zero"))
    XCTAssertTrue(message("mp+", ["psrp_rank": "0"]).contains("method.psrp_rank"))
  }

  /// MP records nothing in the backbone: what one training forward keeps for backward is exactly
  /// what the head alone keeps on the same (unrecorded) backbone output. MP+ keeps the blocks'.
  func testMPKeepsNoBackboneActivations() throws {
    let x = tinyInput(batch: 4)
    let mp = try makeMethod("mp", backbone: tinyBackbone(), classes: c)
    mp.setTraining(true)
    let base = TapeStats.savedBytes
    let logits = mp(x)
    let whole = TapeStats.savedBytes - base
    let output = withNoGrad { mp.backbone.forward(x, hooks: mp, hiddenStates: false) }
    let base2 = TapeStats.savedBytes
    let headOnly = mp.logits(output)
    XCTAssertEqual(whole, TapeStats.savedBytes - base2)
    XCTAssertGreaterThan(whole, 0)
    // And it is the head's size: far below one block's activations (B·N·D floats per tensor).
    let plus = try makeMethod("mp+", backbone: tinyBackbone(), classes: c)
    plus.setTraining(true)
    let base3 = TapeStats.savedBytes
    let logits3 = plus(x)
    XCTAssertGreaterThan(TapeStats.savedBytes - base3, whole + l * 10 * 4 * 5 * d * 4)
    _ = (logits, headOnly, logits3)
  }

  /// The MLP branch becomes b + (1 + w) ⊙ m with w = up_weight(relu(down(x))),
  /// b = up_bias(relu(down(x))), checked element by element against loops.
  func testPSRPRecalibratesTheMLPBranch() throws {
    let plus = try makeMethod("mp+", backbone: tinyBackbone(), classes: c) as! MomentProbing
    var rng = RandomGenerator(seed: 8)
    for (_, t) in plus.trainableTensors() {
      t.assign(Tensor.randn(t.shape, std: 0.3, generator: &rng))
    }
    let input = Tensor.randn([2, 3, d], generator: &rng)
    let branch = Tensor.randn([2, 3, d], generator: &rng)
    let y = withNoGrad { plus.mlpBranch(1, input: input, output: branch) }.scalars
    let p = plus.blocks![1].psrp
    let (down, upW, upB) = (
      p.down.weight.scalars, p.upWeight.weight.scalars, p.upBias.weight.scalars
    )
    let r = 16
    let (x, m) = (input.scalars, branch.scalars)
    for row in 0..<6 {
      var s = [Float](repeating: 0, count: r)
      for j in 0..<r {
        for i in 0..<d { s[j] += down[j * d + i] * x[row * d + i] }
        s[j] = max(s[j], 0)
      }
      for o in 0..<d {
        var w: Float = 0
        var b: Float = 0
        for j in 0..<r {
          w += upW[o * r + j] * s[j]
          b += upB[o * r + j] * s[j]
        }
        XCTAssertEqual(y[row * d + o], b + (1 + w) * m[row * d + o], accuracy: 1e-4)
      }
    }
    // MP leaves the branch alone.
    let mp = try makeMethod("mp", backbone: tinyBackbone(), classes: c)
    XCTAssertEqual(mp.mlpBranch(0, input: input, output: branch).scalars, branch.scalars)
  }

  /// `psrp_init = zero`: both up layers start at zero, so w = b = 0 and every block's output,
  /// hence the final tokens, equal the frozen backbone's bit for bit. The reference init
  /// (trunc-normal 0.02 everywhere, the default) starts near, not at, the backbone.
  func testPSRPInitAndTheBackboneAtStepZero() throws {
    let x = tinyInput(batch: 3)
    let backbone = tinyBackbone()
    // A hook that changes nothing, so the reference runs the same (unfused) block code.
    let plain = try makeMethod("linear", backbone: backbone, classes: c)
    let frozen = withNoGrad { backbone.forward(x, hooks: plain) }.tokens.scalars

    let zero = try makeMethod("mp+", backbone: backbone, classes: c, options: ["psrp_init": "zero"])
    XCTAssertEqual(withNoGrad { backbone.forward(x, hooks: zero) }.tokens.scalars, frozen)
    // So MP+ starts where MP starts when their heads agree.
    let mp = try makeMethod("mp", backbone: backbone, classes: c)
    var state = mp.trainableState()
    for (n, t) in zero.trainableState() where n.contains(".psrp.") { state[n] = t }
    try zero.loadTrainableState(state)
    XCTAssertEqual(withNoGrad { zero(x) }.scalars, withNoGrad { mp(x) }.scalars)

    let timm = try makeMethod("mp+", backbone: backbone, classes: c) as! MomentProbing
    let ups = timm.trainableTensors().filter { $0.name.contains(".up_") }
    XCTAssertEqual(ups.count, 2 * l)
    for (n, t) in ups {
      let v = t.scalars
      XCTAssertTrue(v.contains { $0 != 0 }, n)
      // trunc-normal(0.02) (timm truncates at ±2 absolute, so in effect a plain normal).
      let std = (v.map { $0 * $0 }.reduce(0, +) / Float(v.count)).squareRoot()
      XCTAssertEqual(std, 0.02, accuracy: 0.005, n)
    }
    let started = withNoGrad { backbone.forward(x, hooks: timm) }.tokens.scalars
    var diff: Float = 0
    var norm: Float = 0
    for (a, b) in zip(started, frozen) {
      diff += (a - b) * (a - b)
      norm += b * b
    }
    XCTAssertGreaterThan(diff, 0)
    XCTAssertLessThan((diff / norm).squareRoot(), 0.05)
  }

  /// Finite differences for the options the generic test does not build (`cn2` is not
  /// normalised, `n/2` pairs far heads, zero-initialised ups, two heads). The LayerNorm sits on
  /// a projection initialised at 0.02, so a step of 1e-3 is already a large relative change.
  func testGradientsOfVariantsMatchFiniteDifferences() throws {
    let x = tinyInput(batch: 2)
    let cases: [(String, [String: String])] = [
      ("mp", ["cross": "cn2", "proj_dim": "28"]),
      ("mp", ["cross": "n/2", "heads": "2", "proj_dim": "16"]),
      ("mp+", ["psrp_init": "zero", "psrp_rank": "2", "proj_dim": "28"]),
    ]
    for (name, options) in cases {
      let method = try makeMethod(name, backbone: tinyBackbone(), classes: 3, options: options)
      method.setTraining(false)
      let check = GradientCheck.run(
        method.trainableTensors().map(\.tensor), epsilon: 1e-3, atol: 3e-3, rtol: 3e-2
      ) { _ in method(x) }
      XCTAssertTrue(check.passed, "\(name) \(options): \(check.summary)")
    }
  }

  /// The head against PyTorch (Tools/make_mp_fixture.py, the official `Moment_Probing_ViT` ops):
  /// the reference's own configuration (P = 512, 4 heads, near: 2883 features) and the `cn2`
  /// and `n/2` variants, weights loaded by checkpoint name.
  func testLogitsMatchPyTorchReference() throws {
    let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
      .appendingPathComponent("mp_head.safetensors")
    let file = try SafetensorsFile(contentsOf: url)
    // case: (cross option, D, P, heads)
    let cases: [(String, String, Int, Int, Int)] = [
      ("near", "near", 12, 512, 4), ("cn2", "cn2", 12, 56, 4), ("n2", "n/2", 10, 64, 4),
    ]
    let names = [
      "head": "head.classifier1", "proj": "head.proj", "ln": "head.ln",
      "conv1": "head.downblocks.0.0", "conv2": "head.downblocks.0.2",
      "classifier2": "head.classifier2",
    ]
    for (key, cross, width, projection, heads) in cases {
      let tokens = try file.tensor("\(key).tokens").copy()
      let expected = try file.tensor("\(key).logits").scalars
      let classes = expected.count / tokens.shape[0]
      var config = ViTConfig(
        imgSize: 8, patchSize: 4, embedDim: width, depth: 1, numHeads: 2, numClasses: 0)
      config.globalPool = .token
      var rng = RandomGenerator(seed: 1)
      let backbone = try VisionTransformer(config: config, generator: &rng)
      let mp = try makeMethod(
        "mp", backbone: backbone, classes: classes,
        options: ["cross": cross, "proj_dim": "\(projection)", "heads": "\(heads)"])
      var state: [String: Tensor] = [:]
      for (ours, theirs) in names {
        for part in ["weight", "bias"] where file.contains("\(key).\(theirs).\(part)") {
          state["mp.\(ours).\(part)"] = try file.tensor("\(key).\(theirs).\(part)").copy()
        }
      }
      try mp.loadTrainableState(state, source: url.lastPathComponent)
      let pass = ForwardPass(
        input: tokens, embedded: EmbeddedTokens(tokens: tokens, layout: .sequence),
        prefixTokens: 1, hooks: nil)
      let output = BackboneOutput(
        tokens: tokens, features: tokens.narrow(1, start: 0, length: 1).squeezed(1),
        hiddenStates: [], prefixTokenCount: 1, pass: pass)
      let got = withNoGrad { mp.logits(output) }
      XCTAssertEqual(got.shape, [tokens.shape[0], classes])
      let scale = expected.map(abs).max()!
      let worst = zip(got.scalars, expected).map { abs($0 - $1) }.max()!
      XCTAssertLessThanOrEqual(worst / scale, 1e-4, "\(key): max error \(worst), scale \(scale)")
    }
  }
}
