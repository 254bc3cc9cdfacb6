import Foundation
import XCTest

@testable import GraftModels

// MARK: - Fixture helpers (shared with TimmLoaderTests)

/// `Fixtures/vit`, written by Tools/make_vit_fixtures.py from timm.
let vitFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  .appendingPathComponent("vit")

/// One family's fixture folder: the timm model folder plus `io.safetensors` of timm's outputs.
struct ViTFixture {
  let folder: URL
  let io: SafetensorsFile
  /// The `fixture` metadata entry: architecture, overrides, state-dict keys, labels.
  let meta: [String: JSONValue]

  init(_ name: String) throws {
    folder = vitFixtures.appendingPathComponent(name)
    io = try SafetensorsFile(contentsOf: folder.appendingPathComponent("io.safetensors"))
    let text = io.metadata["fixture"] ?? "{}"
    meta = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)).objectValue ?? [:]
  }

  func tensor(_ name: String) throws -> Tensor { try io.tensor(name) }

  /// timm's `state_dict().keys()`, in order.
  var keys: [String] { meta["keys"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
}

/// Fails unless max |actual − expected| ≤ `relative` · max |expected| (the tensor's scale).
func assertMatches(
  _ actual: Tensor, _ expected: Tensor, relative: Float = 1e-4, _ what: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  guard actual.shape == expected.shape else {
    XCTFail("\(what): shape \(actual.shape) vs expected \(expected.shape)", file: file, line: line)
    return
  }
  let (a, e) = (actual.scalars, expected.scalars)
  let scale = e.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
  var worst: Float = 0
  var at = 0
  for i in 0..<a.count {
    let d = Swift.abs(a[i] - e[i])
    if !(d <= worst) {
      worst = d
      at = i
    }
  }
  XCTAssertTrue(
    worst <= relative * Swift.max(scale, 1e-12),
    "\(what): max |Δ| \(worst) at \(at) (\(a[at]) vs \(e[at])) exceeds \(relative) × scale \(scale)",
    file: file, line: line)
}

final class VisionTransformerTests: XCTestCase {
  static let families = [
    "vit_augreg", "deit", "deit_distilled", "deit3", "dinov2", "dinov2_reg", "clip",
    "clip_quickgelu", "mae",
  ]

  // MARK: Parity with timm

  /// Embedding, every block's output, final tokens, features and logits of every family.
  func testForwardMatchesTimmForEveryFamily() throws {
    for name in Self.families {
      let fx = try ViTFixture(name)
      let model = try TimmModelFolder.load(fx.folder).model
      let out = withNoGrad { model.forward(try! fx.tensor("input")) }
      XCTAssertEqual(out.hiddenStates.count, model.depth, name)
      for (i, h) in out.hiddenStates.enumerated() {
        assertMatches(h, try fx.tensor("hidden.\(i)"), "\(name) block \(i)")
      }
      let embedded = withNoGrad { model.embed(try! fx.tensor("input")).tokens }
      assertMatches(embedded, try fx.tensor("embedded"), "\(name) embedding")
      assertMatches(out.tokens, try fx.tensor("tokens"), "\(name) tokens")
      assertMatches(out.features, try fx.tensor("features"), "\(name) features")
      assertMatches(withNoGrad { model.logits(out) }, try fx.tensor("logits"), "\(name) logits")
      // The convenience entry points agree with forward().
      let x = try fx.tensor("input")
      assertMatches(withNoGrad { model(x) }, try fx.tensor("logits"), "\(name) callAsFunction")
      assertMatches(
        withNoGrad { model.features(x) }, try fx.tensor("features"), "\(name) features()")
      assertMatches(
        withNoGrad { model.forwardTokens(x) }, try fx.tensor("tokens"), "\(name) forwardTokens()")
    }
  }

  /// Cross-entropy gradients with respect to the input and to every parameter (timm's
  /// `loss.backward()`), for an augreg ViT and a DINOv2 with registers and LayerScale.
  func testGradientsMatchTimm() throws {
    for name in ["vit_augreg", "dinov2_reg"] {
      let fx = try ViTFixture(name)
      let model = try TimmModelFolder.load(fx.folder).model
      let labels = fx.meta["labels"]?.arrayValue?.compactMap(\.intValue) ?? []
      XCTAssertEqual(labels.count, 2)
      let nodes = TapeStats.liveNodes
      let x = try fx.tensor("input").copy().requiringGrad()
      let loss = model(x).crossEntropy(targets: labels)
      assertMatches(loss, try fx.tensor("loss").reshaped([]), relative: 1e-5, "\(name) loss")
      loss.backward()
      assertMatches(x.grad!, try fx.tensor("grad.input"), relative: 1e-3, "\(name) d/dinput")
      var checked = 0
      for (pname, p) in model.namedParameters() {
        guard let g = p.grad else {
          XCTFail("\(name): no gradient for \(pname)")
          continue
        }
        assertMatches(g, try fx.tensor("grad." + pname), relative: 1e-3, "\(name) d/d\(pname)")
        checked += 1
      }
      XCTAssertEqual(checked, fx.keys.count, name)
      XCTAssertEqual(TapeStats.liveNodes, nodes, "the tape is released after backward")
    }
  }

  /// `dynamic_img_size`: a 28×56 input to a model laid out for 42×42 (grid 3×3 → 2×4, the
  /// position embedding shrunk along one axis and stretched along the other).
  func testDynamicImageSizeMatchesTimm() throws {
    let fx = try ViTFixture("dinov2_reg")
    let model = try TimmModelFolder.load(fx.folder).model
    XCTAssertTrue(model.config.dynamicImgSize)
    let out = withNoGrad { model.forward(try! fx.tensor("dyn.input")) }
    XCTAssertEqual(out.patchGrid, Size2D(2, 4))
    assertMatches(
      withNoGrad { model.embed(try! fx.tensor("dyn.input")).tokens },
      try fx.tensor("dyn.embedded"), "embedding")
    for (i, h) in out.hiddenStates.enumerated() {
      assertMatches(h, try fx.tensor("dyn.hidden.\(i)"), "block \(i)")
    }
    assertMatches(out.features, try fx.tensor("dyn.features"), "features")
    assertMatches(withNoGrad { model.logits(out) }, try fx.tensor("dyn.logits"), "logits")
  }

  /// timm's `resample_abs_pos_embed` (antialiased bicubic) on shrinking, stretching and mixed
  /// grids, with and without prefix rows.
  func testPositionEmbeddingResamplingMatchesTimm() throws {
    let file = try SafetensorsFile(
      contentsOf: vitFixtures.appendingPathComponent("resample.safetensors"))
    let cases = try JSONDecoder().decode(
      JSONValue.self, from: Data(file.metadata["cases"]!.utf8)
    ).arrayValue!
    XCTAssertEqual(cases.count, 4)
    for (i, c) in cases.enumerated() {
      let o = c.objectValue!
      let old = o["old"]!.arrayValue!.map { $0.intValue! }
      let new = o["new"]!.arrayValue!.map { $0.intValue! }
      let out = VisionTransformer.resamplePositionEmbedding(
        try file.tensor("\(i).input"), from: Size2D(old[0], old[1]), to: Size2D(new[0], new[1]),
        prefixTokens: o["prefix"]!.intValue!)
      assertMatches(out, try file.tensor("\(i).output"), relative: 1e-5, "case \(i) \(old)→\(new)")
    }
  }

  func testAntialiasedWeightsWorkedByHand() {
    // Same size: the filter at offsets −1…1 is (0, 1, 0), so the matrix is the identity.
    XCTAssertEqual(
      VisionTransformer.antialiasedBicubicWeights(input: 3, output: 3).scalars,
      [1, 0, 0, 0, 1, 0, 0, 0, 1])
    // Halving 4 → 2: the filter is stretched ×2 (support 4). Output 0 is centred at 1.0 and
    // sees all four inputs at distances 0.5, 0.5, 1.5, 2.5, halved: Keys(a = −½) at 0.25, 0.25,
    // 0.75 (inner piece) and 1.25 (outer piece), then normalised.
    func inner(_ x: Double) -> Double { 1.5 * x * x * x - 2.5 * x * x + 1 }
    func outer(_ x: Double) -> Double { ((-0.5 * x + 2.5) * x - 4) * x + 2 }
    let w = [inner(0.25), inner(0.25), inner(0.75), outer(1.25)]
    let total = w.reduce(0, +)
    XCTAssertEqual(total, 1.890625, accuracy: 1e-12)
    let m = VisionTransformer.antialiasedBicubicWeights(input: 4, output: 2)
    XCTAssertEqual(m.shape, [2, 4])
    for (j, v) in w.enumerated() { XCTAssertEqual(m[0, j], Float(v / total), accuracy: 1e-6) }
    // Output 1 is its mirror image.
    for j in 0..<4 { XCTAssertEqual(m[1, j], m[0, 3 - j], accuracy: 1e-6) }
    for i in 0..<2 {
      XCTAssertEqual((0..<4).reduce(Float(0)) { $0 + m[i, $1] }, 1, accuracy: 1e-6)
    }
  }

  // MARK: Structure

  /// Parameter names and order are timm's `state_dict()` keys exactly, for every family.
  func testStateDictNamesAreTimmsInOrder() throws {
    for name in Self.families {
      let fx = try ViTFixture(name)
      let model = try TimmModelFolder.load(fx.folder).model
      XCTAssertFalse(fx.keys.isEmpty)
      XCTAssertEqual(model.stateDictNames, fx.keys, name)
      XCTAssertEqual(model.namedParameters().map(\.name), fx.keys, name)
      XCTAssertEqual(
        model.config.stateShapes.map(\.name), fx.keys, "\(name): ViTConfig.stateShapes")
    }
  }

  /// A freshly initialised model has the names and shapes `stateShapes` promises, timm's init
  /// values where they are fixed, and accepts its own state dict.
  func testRandomInitialisation() throws {
    var c = ViTConfig(imgSize: 16, patchSize: 8, embedDim: 12, depth: 2, numHeads: 3, numClasses: 4)
    c.initValues = 0.1
    c.regTokens = 2
    c.noEmbedClass = true
    var rng = RandomGenerator(seed: 3)
    let model = try VisionTransformer(config: c, generator: &rng)
    let shapes = model.namedParameters().map { ($0.name, $0.tensor.shape) }
    XCTAssertEqual(shapes.map(\.0), c.stateShapes.map(\.name))
    XCTAssertEqual(shapes.map(\.1), c.stateShapes.map(\.shape))
    XCTAssertEqual(model.posEmbed.shape, [1, 4, 12])
    XCTAssertEqual(model.blocks[1].ls2!.gamma.scalars, [Float](repeating: 0.1, count: 12))
    XCTAssertEqual(model.blocks[0].attn.qkv.bias!.scalars, [Float](repeating: 0, count: 36))
    XCTAssertEqual(model.norm!.weight!.scalars, [Float](repeating: 1, count: 12))
    let w = model.blocks[0].mlp.fc1.weight.scalars
    let std = (w.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
    XCTAssertEqual(std, 0.02, accuracy: 0.004, "trunc-normal(0.02) linear weights")
    XCTAssertLessThan(model.clsToken!.scalars.map(abs).max()!, 1e-4, "class token N(0, 1e-6)")
    // The generator advanced: a second model differs.
    let other = try VisionTransformer(config: c, generator: &rng)
    XCTAssertNotEqual(other.posEmbed.scalars, model.posEmbed.scalars)
    try other.loadStateDict(model.stateDict())
    XCTAssertEqual(other.posEmbed.scalars, model.posEmbed.scalars)
    let x = Tensor.randn([1, 3, 16, 16], generator: &rng)
    XCTAssertEqual(withNoGrad { other(x).scalars }, withNoGrad { model(x).scalars })
  }

  func testInvalidConfigurationsThrow() {
    var rng = RandomGenerator(seed: 0)
    var c = ViTConfig(imgSize: 30, patchSize: 8, embedDim: 12, depth: 1, numHeads: 3)
    XCTAssertThrowsError(try VisionTransformer(config: c, generator: &rng)) {
      XCTAssertTrue("\($0)".contains("not divisible by patch_size"), "\($0)")
    }
    c.imgSize = Size2D(square: 32)
    c.numHeads = 5
    XCTAssertThrowsError(try VisionTransformer(config: c, generator: &rng)) {
      XCTAssertTrue("\($0)".contains("num_heads 5"), "\($0)")
    }
    c.numHeads = 3
    c.classToken = false
    XCTAssertThrowsError(try VisionTransformer(config: c, generator: &rng)) {
      XCTAssertTrue("\($0)".contains("needs the class token"), "\($0)")
    }
  }

  /// Each image's result depends on that image alone: the batched GEMMs and attention keep
  /// images apart.
  func testBatchRowsAreIndependent() throws {
    let fx = try ViTFixture("clip")
    let model = try TimmModelFolder.load(fx.folder).model
    let x = try fx.tensor("input")
    let second = x.narrow(0, start: 1, length: 1)
    let alone = withNoGrad { model(second) }
    assertMatches(alone, try fx.tensor("logits").narrow(0, start: 1, length: 1), "image 1 alone")
  }

  // MARK: Frozen runs

  /// A frozen backbone under `withNoGrad` keeps nothing for backward, even with trainable
  /// parameters and an input that wants a gradient; in grad mode it records.
  func testNoGradRunKeepsNoActivations() throws {
    let fx = try ViTFixture("dinov2_reg")
    let model = try TimmModelFolder.load(fx.folder).model
    let x = try fx.tensor("input").copy().requiringGrad()
    let (bytes, nodes) = (TapeStats.savedBytes, TapeStats.liveNodes)
    let out = withNoGrad { model.forward(x) }
    XCTAssertEqual(TapeStats.savedBytes, bytes)
    XCTAssertEqual(TapeStats.liveNodes, nodes)
    XCTAssertFalse(out.features.requiresGrad)
    // Frozen parameters and a plain input record nothing in grad mode either.
    model.freeze()
    let frozen = model.forward(try fx.tensor("input"))
    XCTAssertEqual(TapeStats.savedBytes, bytes)
    XCTAssertFalse(frozen.tokens.requiresGrad)
    // With a trainable input the tape holds activations until backward releases them.
    let y = model(x)
    XCTAssertGreaterThan(TapeStats.savedBytes, bytes)
    y.sum().backward()
    XCTAssertEqual(TapeStats.savedBytes, bytes)
    XCTAssertNotNil(x.grad)
    XCTAssertNil(model.posEmbed.grad, "frozen parameters get no gradient")
  }

  // MARK: Attach points

  /// Records every call and optionally changes things, to check each attach point.
  final class ProbeHooks: BackboneHooks {
    var calls: [String] = []
    var prompts: Tensor?
    var mlpScale: Float = 1
    var loraDelta: Float = 0

    func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor {
      calls.append("tokens")
      guard let prompts else { return x }
      // VPT-shallow: prompts after the model's prefix rows.
      let b = x.shape[0]
      let p = prompts.broadcast(to: [b, prompts.shape[1], x.shape[2]])
      pass.recordInsertion(prompts.shape[1], at: 1)
      return Tensor.concat(
        [x.narrow(1, start: 0, length: 1), p, x.narrow(1, start: 1, length: x.shape[1] - 1)],
        axis: 1)
    }
    func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
      calls.append("before\(index)")
      return x
    }
    func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
      calls.append("after\(index)")
      return x
    }
    func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
      calls.append("attn\(index)")
      return output
    }
    func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
      calls.append("mlp\(index)")
      return output * mlpScale
    }
    func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
      calls.append("\(site.block).\(site.role)")
      guard site.role == .qkv, loraDelta != 0 else { return output }
      return output + loraDelta
    }
  }

  /// Block `index` of `model` on `x` with `hooks` (a pass over `x` as its own embedding).
  private func block(
    _ model: VisionTransformer, _ index: Int, _ x: Tensor, hooks: (any BackboneHooks)?
  ) -> Tensor {
    let pass = ForwardPass(
      input: x, embedded: EmbeddedTokens(tokens: x, layout: .sequence),
      prefixTokens: model.prefixTokens, hooks: hooks)
    return model.block(index, x, pass: pass)
  }

  func testHooksAreCalledInOrderAndIdentityHooksChangeNothing() throws {
    let fx = try ViTFixture("deit3")
    let model = try TimmModelFolder.load(fx.folder).model
    let hooks = ProbeHooks()
    let out = withNoGrad { model.forward(try! fx.tensor("input"), hooks: hooks) }
    let block = { (i: Int) in
      [
        "before\(i)", "\(i).qkv", "\(i).attentionOut", "attn\(i)", "\(i).mlpIn",
        "\(i).mlpOut", "mlp\(i)", "after\(i)",
      ]
    }
    XCTAssertEqual(hooks.calls, ["tokens"] + block(0) + block(1))
    assertMatches(out.features, try fx.tensor("features"), "features with identity hooks")
    XCTAssertEqual(out.prefixTokenCount, 1)
    XCTAssertEqual(out.patchGrid, Size2D(4, 4))
    XCTAssertEqual(out.patchTokens.shape, [2, 16, 32])
  }

  /// The inner hooks really act: scaling every MLP branch by 0 leaves x + attention only, which
  /// we recompute from the block's own layers; a LoRA-style delta on qkv changes the output.
  func testInnerHooksChangeTheBlock() throws {
    let fx = try ViTFixture("vit_augreg")
    let model = try TimmModelFolder.load(fx.folder).model
    let hooks = ProbeHooks()
    hooks.mlpScale = 0
    let x = try fx.tensor("embedded")
    let y = withNoGrad { block(model, 0, x, hooks: hooks) }
    let blk = model.blocks[0]
    let expected = withNoGrad {
      x + blk.attn.proj(Tensor.attention(qkv: blk.attn.qkv(blk.norm1(x)), heads: 2))
    }
    assertMatches(y, expected, relative: 1e-6, "block without its MLP branch")
    hooks.mlpScale = 1
    hooks.loraDelta = 0.5
    let shifted = withNoGrad { block(model, 0, x, hooks: hooks) }
    let plain = withNoGrad { block(model, 0, x, hooks: nil) }
    assertMatches(plain, try fx.tensor("hidden.0"), "plain block 0")
    XCTAssertGreaterThan(
      zip(shifted.scalars, plain.scalars).map { abs($0 - $1) }.max()!, 1e-3,
      "the qkv delta reaches the output")
  }

  /// VPT-style prompts inserted before the blocks lengthen the sequence; average pooling leaves
  /// them out (they count as prefix rows), and gradients reach the prompts through the frozen
  /// backbone.
  func testInsertedPromptsAndTheirGradients() throws {
    let fx = try ViTFixture("mae")  // average pooling with fc_norm
    let model = try TimmModelFolder.load(fx.folder).model
    model.freeze()
    let hooks = ProbeHooks()
    var rng = RandomGenerator(seed: 9)
    hooks.prompts = Tensor.randn([1, 3, 32], generator: &rng).requiringGrad()
    let out = model.forward(try fx.tensor("input"), hooks: hooks)
    XCTAssertEqual(out.tokens.shape, [2, 1 + 3 + 16, 32])
    XCTAssertEqual(out.prefixTokenCount, 4)
    let patches = out.tokens.narrow(1, start: 4, length: 16)
    assertMatches(out.features, model.fcNorm!(patches.mean(axis: 1)), relative: 1e-6, "avg pool")
    model.logits(out).sum().backward()
    XCTAssertEqual(hooks.prompts!.grad?.shape, [1, 3, 32])
    XCTAssertGreaterThan(hooks.prompts!.grad!.scalars.map(abs).max()!, 0)
    XCTAssertTrue(model.parameters().allSatisfy { $0.grad == nil })
  }

  // MARK: Fused blocks

  /// One training step's loss, gradients (input and parameters) and the bytes the tape held
  /// after the forward pass.
  private func trainingStep(
    _ model: VisionTransformer, _ input: Tensor, labels: [Int], hooks: (any BackboneHooks)?
  ) -> (loss: Float, grads: [String: Tensor], tape: Int, tokens: [Int]) {
    model.zeroGrad()
    let x = input.copy().requiringGrad()
    let before = TapeStats.savedBytes
    let out = model.forward(x, hooks: hooks, hiddenStates: false)
    let loss = model.logits(out).crossEntropy(targets: labels)
    let tape = TapeStats.savedBytes - before
    loss.backward()
    var grads = ["input": x.grad!]
    for (name, p) in model.namedParameters() { grads[name] = p.grad }
    return (loss.item, grads, tape, out.tokens.shape)
  }

  /// Without hooks the blocks run on fused ops; any hooks (identity ones here) switch them to the
  /// unfused ops. Both give the same loss and gradients, and the fused blocks keep seven
  /// token-sized tensors less each: the two normalised inputs of qkv and fc1, the attention
  /// result, and the 4·D-wide activation (they keep each norm's shift instead, D floats).
  func testFusedBlocksMatchTheUnfusedOnesAndKeepLess() throws {
    for name in ["dinov2_reg", "clip_quickgelu", "vit_augreg"] {
      let fx = try ViTFixture(name)
      let model = try TimmModelFolder.load(fx.folder).model
      let labels = [1, 3]
      let input = try fx.tensor("input")
      let fused = trainingStep(model, input, labels: labels, hooks: nil)
      let plain = trainingStep(model, input, labels: labels, hooks: ProbeHooks())
      XCTAssertEqual(fused.loss, plain.loss, accuracy: 1e-5 * Swift.max(1, abs(plain.loss)), name)
      XCTAssertEqual(Set(fused.grads.keys), Set(plain.grads.keys))
      for (key, g) in plain.grads {
        assertMatches(fused.grads[key]!, g, relative: 1e-5, "\(name) d/d\(key)")
      }
      let (b, n, d) = (fused.tokens[0], fused.tokens[1], fused.tokens[2])
      XCTAssertEqual(
        plain.tape - fused.tape, model.depth * (7 * b * n * d - 2 * d) * 4,
        "\(name): fused blocks keep 7·B·N·D floats less each")
    }
  }

  /// Keeping the attention probabilities instead of recomputing them changes memory, not values.
  func testKeepingAttentionProbabilitiesGivesTheSameGradients() throws {
    let fx = try ViTFixture("deit3")
    let model = try TimmModelFolder.load(fx.folder).model
    let input = try fx.tensor("input")
    let recomputed = trainingStep(model, input, labels: [0, 2], hooks: nil)
    for block in model.blocks { block.keepsAttentionProbabilities = true }
    let kept = trainingStep(model, input, labels: [0, 2], hooks: nil)
    let (b, n) = (kept.tokens[0], kept.tokens[1])
    let heads = model.blocks[0].attn.heads
    XCTAssertEqual(kept.tape - recomputed.tape, model.depth * b * heads * n * n * 4)
    for (key, g) in recomputed.grads {
      assertMatches(kept.grads[key]!, g, relative: 1e-6, "d/d\(key)")
    }
  }

  /// LN-tuning selects timm's names: `blocks.*.norm*.*` matches exactly the block norms.
  func testNamePatternsSelectTimmNames() throws {
    let model = try TimmModelFolder.load(vitFixtures.appendingPathComponent("clip")).model
    model.freeze()
    XCTAssertEqual(model.setTrainable(matching: "blocks.*.norm*.*", true), 2 * 2 * 2)
    XCTAssertEqual(
      model.trainableParameters().map(\.name),
      [
        "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.norm2.weight",
        "blocks.0.norm2.bias", "blocks.1.norm1.weight", "blocks.1.norm1.bias",
        "blocks.1.norm2.weight", "blocks.1.norm2.bias",
      ])
  }
}
