import XCTest

@testable import GraftTuning

/// The memory-efficient side methods, `lst` and `unipt`, on the tiny ViT of `MethodTests`
/// (D = 16, 2 blocks, 2 heads of 8, MLP 64, 5 tokens).
final class SideTuningTests: XCTestCase {
  let d = 16
  let l = 2
  let h = 64
  let c = 4
  let n = 5
  var head: Int { d * c + c }

  func lst(
    _ backbone: VisionTransformer = tinyBackbone(), _ options: [String: String] = [:]
  ) throws -> LadderSideTuning {
    try makeMethod("lst", backbone: backbone, classes: c, options: options) as! LadderSideTuning
  }

  func unipt(_ backbone: VisionTransformer = tinyBackbone(), _ options: [String: String] = [:])
    throws -> UniPT
  {
    try makeMethod("unipt", backbone: backbone, classes: c, options: options) as! UniPT
  }

  /// A tiny backbone variant: register tokens, LayerScale, average pooling.
  func variantBackbone(
    pool: GlobalPool = .token, regTokens: Int = 0, initValues: Float? = nil, seed: UInt64 = 1
  ) -> VisionTransformer {
    var config = ViTConfig(imgSize: 8, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2)
    config.globalPool = pool
    config.regTokens = regTokens
    config.initValues = initValues
    var rng = RandomGenerator(seed: seed)
    return try! VisionTransformer(config: config, generator: &rng)
  }

  // MARK: Parameter counts

  /// LST with reduction r over `layers` side layers: w = D / r, hidden H / r.
  func lstCount(r: Int, layers: Int, layerScale: Bool = false) -> Int {
    let w = d / r
    let hs = h / r
    let block =
      2 * w + (w * 3 * w + 3 * w) + (w * w + w) + 2 * w + (w * hs + hs) + (hs * w + w)
      + (layerScale ? 2 * w : 0)
    let ladder = d * w + w
    // First ladder; per layer a ladder, a gate and a block; final norm, upsample, merge gate.
    return ladder + layers * (ladder + 1 + block) + 2 * w + (w * d + d) + 1 + head
  }

  /// UniPT with m = D / r: L + 1 Down layers (Linear + LN), projection (Linear + LN), Up,
  /// the confidence Linear m → 1.
  func uniptCount(r: Int) -> Int {
    let m = d / r
    return (l + 1) * (d * m + m + 2 * m) + (m * m + m + 2 * m) + (m * d + d) + (m + 1) + head
  }

  func testTrainableCountsMatchClosedForms() throws {
    XCTAssertEqual(try lst().trainableCount, lstCount(r: 8, layers: 2))
    XCTAssertEqual(
      try lst(tinyBackbone(), ["reduction": "4", "layers": "1"]).trainableCount,
      lstCount(r: 4, layers: 1))
    XCTAssertEqual(
      try lst(tinyBackbone(), ["reduction": "2", "layers": "0,1", "init": "random"])
        .trainableCount, lstCount(r: 2, layers: 2))
    XCTAssertEqual(
      try lst(variantBackbone(initValues: 0.1), ["reduction": "2"]).trainableCount,
      lstCount(r: 2, layers: 2, layerScale: true))
    XCTAssertEqual(try unipt().trainableCount, uniptCount(r: 2))
    XCTAssertEqual(try unipt(tinyBackbone(), ["reduction": "4"]).trainableCount, uniptCount(r: 4))
    // Nothing of the backbone trains, and every name sits under the method's prefix.
    for m in [try lst() as TuningMethod, try unipt()] {
      XCTAssertFalse(m.needsBackboneGradient)
      XCTAssertTrue(m.needsHiddenStates)
      for (name, _) in m.trainableTensors() {
        XCTAssertTrue(name.hasPrefix(m.prefix + "."), name)
        XCTAssertFalse(name.contains(".backbone."), name)
      }
    }
    let names = Set(try lst(tinyBackbone(), ["layers": "1"]).trainableTensors().map(\.name))
    for expected in [
      "lst.side_first_downsample.weight", "lst.side_downsamples.1.bias", "lst.side_gate_params.1",
      "lst.side_blocks.1.attn.qkv.weight", "lst.side_blocks.1.mlp.fc2.bias",
      "lst.final_side_layer_norm.weight", "lst.side_final_upsample.weight",
      "lst.side_gate_params_merge_last", "lst.head.weight",
    ] {
      XCTAssertTrue(names.contains(expected), expected)
    }
    XCTAssertFalse(names.contains("lst.side_blocks.0.norm1.weight"))
  }

  // MARK: LST initialisation

  func testLSTGatesStartAtOneHalf() throws {
    let m = try lst()
    for i in 0..<l {
      XCTAssertEqual(m.gate(m.sideGateParams[i]!).item, 0.5)
    }
    XCTAssertEqual(m.gate(m.sideGateParamsMergeLast).item, 0.5)
    // α = 0.2 at T = 0.1: sigmoid(2).
    let other = try lst(tinyBackbone(), ["gate_alpha": "0.2"])
    XCTAssertEqual(other.gate(other.sideGateParams[0]!).item, 1 / (1 + exp(-2)), accuracy: 1e-6)
  }

  /// Each side block is exactly the backbone block's weights at the kept rows and columns, with
  /// one set of residual channels everywhere.
  func testLSTPrunedInitIsTheChosenSlicesOfTheBackbone() throws {
    let backbone = variantBackbone(pool: .avg, initValues: 0.3)
    let m = try lst(backbone, ["reduction": "2"])
    let e = try XCTUnwrap(m.keptChannels)
    XCTAssertEqual(e.count, d / 2)
    XCTAssertEqual(e, e.sorted())
    XCTAssertEqual(Set(e).count, e.count)
    func rows(_ t: Tensor, _ rs: [Int], _ cs: [Int]) -> [Float] {
      let s = t.scalars
      let width = t.shape[1]
      return rs.flatMap { r in cs.map { s[r * width + $0] } }
    }
    func pick(_ t: Tensor?, _ rs: [Int]) -> [Float] {
      let s = t!.scalars
      return rs.map { s[$0] }
    }
    for i in 0..<l {
      let b = backbone.blocks[i]
      let s = try XCTUnwrap(m.sideBlocks[i] as? ViTBlock)
      let kept = try XCTUnwrap(m.keptBlockIndices[i])
      // Per head, 8 / 2 = 4 q/k dims shared by q and k, and 4 value dims.
      let w = d / 2
      XCTAssertEqual(kept.qkvRows.count, 3 * w)
      let q = Array(kept.qkvRows[0..<w])
      XCTAssertEqual(Array(kept.qkvRows[w..<2 * w]), q.map { $0 + d })
      XCTAssertEqual(Array(kept.qkvRows[2 * w..<3 * w]), kept.projColumns.map { $0 + 2 * d })
      for head in 0..<2 {
        XCTAssertEqual(q.filter { $0 / 8 == head }.count, 4)
        XCTAssertEqual(kept.projColumns.filter { $0 / 8 == head }.count, 4)
      }
      XCTAssertEqual(kept.hidden.count, h / 2)
      XCTAssertEqual(s.attn.qkv.weight.scalars, rows(b.attn.qkv.weight, kept.qkvRows, e))
      XCTAssertEqual(s.attn.qkv.bias!.scalars, pick(b.attn.qkv.bias, kept.qkvRows))
      XCTAssertEqual(s.attn.proj.weight.scalars, rows(b.attn.proj.weight, e, kept.projColumns))
      XCTAssertEqual(s.attn.proj.bias!.scalars, pick(b.attn.proj.bias, e))
      XCTAssertEqual(s.mlp.fc1.weight.scalars, rows(b.mlp.fc1.weight, kept.hidden, e))
      XCTAssertEqual(s.mlp.fc1.bias!.scalars, pick(b.mlp.fc1.bias, kept.hidden))
      XCTAssertEqual(s.mlp.fc2.weight.scalars, rows(b.mlp.fc2.weight, e, kept.hidden))
      XCTAssertEqual(s.mlp.fc2.bias!.scalars, pick(b.mlp.fc2.bias, e))
      XCTAssertEqual(s.norm1.weight!.scalars, pick(b.norm1.weight, e))
      XCTAssertEqual(s.norm1.bias!.scalars, pick(b.norm1.bias, e))
      XCTAssertEqual(s.norm2.weight!.scalars, pick(b.norm2.weight, e))
      XCTAssertEqual(s.ls1!.gamma.scalars, pick(b.ls1!.gamma, e))
      XCTAssertEqual(s.ls2!.gamma.scalars, pick(b.ls2!.gamma, e))
      XCTAssertEqual(s.attn.heads, 2)
    }
    // The final side norm comes from the backbone's (here fc_norm: average pooling).
    XCTAssertEqual(m.finalSideLayerNorm.weight!.scalars, pick(backbone.fcNorm!.weight, e))
  }

  /// Channels made much larger in the backbone are the ones pruning keeps.
  func testLSTPruningKeepsTheLargestChannels() throws {
    let backbone = tinyBackbone()
    let strongChannels = [1, 4, 6, 13]  // D / r = 4 at r = 4
    let strongHidden = Array(stride(from: 3, to: 64, by: 4))  // 16 = 64 / 4
    let strongQK = [2, 7, 8, 12]  // 8 / 4 = 2 per head: {2, 7} in head 0, {8, 12} in head 1
    let strongV = [0, 5, 9, 15]
    withNoGrad {
      for b in backbone.blocks {
        func scale(_ t: Tensor, rows: [Int] = [], columns: [Int] = [], by f: Float = 20) {
          let width = t.rank == 2 ? t.shape[1] : 1
          for r in rows { for j in 0..<width { t.pointer[r * width + j] *= f } }
          for col in columns { for r in 0..<t.shape[0] { t.pointer[r * width + col] *= f } }
        }
        scale(b.attn.qkv.weight, columns: strongChannels)
        scale(b.mlp.fc1.weight, columns: strongChannels)
        scale(b.attn.proj.weight, rows: strongChannels)
        scale(b.mlp.fc2.weight, rows: strongChannels)
        scale(b.mlp.fc1.weight, rows: strongHidden, by: 100)
        scale(
          b.attn.qkv.weight, rows: strongQK + strongQK.map { $0 + 16 } + strongV.map { $0 + 32 })
      }
    }
    let m = try lst(backbone, ["reduction": "4"])
    XCTAssertEqual(m.keptChannels, strongChannels)
    for i in 0..<l {
      let kept = try XCTUnwrap(m.keptBlockIndices[i])
      XCTAssertEqual(kept.hidden, strongHidden)
      XCTAssertEqual(Array(kept.qkvRows[0..<4]), strongQK)
      XCTAssertEqual(kept.projColumns, strongV)
    }
  }

  /// At r = 1 pruning keeps everything: each side block is its backbone block.
  func testLSTPruningAtReductionOneCopiesTheBlocks() throws {
    for backbone in [tinyBackbone(), variantBackbone(regTokens: 2, initValues: 0.5)] {
      let m = try lst(backbone, ["reduction": "1"])
      XCTAssertEqual(m.keptChannels, Array(0..<d))
      var rng = RandomGenerator(seed: 31)
      let x = Tensor.randn([2, n, d], generator: &rng)
      for i in 0..<l {
        let side = withNoGrad { (m.sideBlocks[i] as! ViTBlock)(x) }
        let ref = withNoGrad { backbone.blocks[i](x) }
        for (a, b) in zip(side.scalars, ref.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
      }
    }
  }

  func testLSTRandomInitIsTimmStyle() throws {
    let m = try lst(tinyBackbone(), ["reduction": "2", "init": "random"])
    XCTAssertNil(m.keptChannels)
    let s = try XCTUnwrap(m.sideBlocks[0] as? ViTBlock)
    XCTAssertEqual(s.norm1.weight!.scalars, [Float](repeating: 1, count: 8))
    XCTAssertEqual(s.attn.qkv.bias!.scalars, [Float](repeating: 0, count: 24))
    // 8 × 32 + 32 × 8 + 24 × 8 + 8 × 8 samples of N(0, 0.02²) (timm truncates at ±2, far out).
    let w = [s.mlp.fc1.weight, s.mlp.fc2.weight, s.attn.qkv.weight, s.attn.proj.weight]
      .flatMap(\.scalars)
    let std = (w.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
    XCTAssertEqual(std, 0.02, accuracy: 0.003)
    XCTAssertNotEqual(w, try XCTUnwrap(m.sideBlocks[1] as? ViTBlock).mlp.fc1.weight.scalars)
  }

  // MARK: LST forward

  /// The whole forward pass written out with unfused ops: ladders, gates at 0.5, one side
  /// block at layer 1 only, final norm, upsample, merge, class-token pool, head.
  func testLSTForwardMatchesHandComputation() throws {
    let backbone = tinyBackbone()
    let m = try lst(backbone, ["reduction": "2", "layers": "1"])
    // Move the merge gate off 0.5 so both gates are exercised with distinct values.
    withNoGrad { m.sideGateParamsMergeLast.assign(Tensor([0.05])) }
    let x = tinyInput(batch: 3)
    let logits = withNoGrad { m(x) }

    let expected = withNoGrad { () -> Tensor in
      func lin(_ layer: Linear, _ t: Tensor) -> Tensor {
        t.matmul(layer.weight, transposeOther: true) + layer.bias!
      }
      let x0 = backbone.embed(x).tokens
      let out = backbone.forward(x, hooks: nil, hiddenStates: true)
      var hs = lin(m.sideFirstDownsample, x0)
      hs = hs * 0.5 + lin(m.sideDownsamples[1]!, out.hiddenStates[1]) * 0.5
      let blk = m.sideBlocks[1] as! ViTBlock
      let (b, w, heads) = (3, 8, 2)
      let qkv = lin(
        blk.attn.qkv, hs.layerNorm(weight: blk.norm1.weight, bias: blk.norm1.bias, eps: 1e-6))
      let parts = qkv.reshaped([b, n, 3, heads, w / heads]).permuted([2, 0, 3, 1, 4])
      let q = parts.narrow(0, start: 0, length: 1).squeezed(0)
      let k = parts.narrow(0, start: 1, length: 1).squeezed(0)
      let v = parts.narrow(0, start: 2, length: 1).squeezed(0)
      let p = (q.matmul(k, transposeOther: true) * (1 / Float(w / heads).squareRoot())).softmax(
        axis: -1)
      let mixed = p.matmul(v).permuted([0, 2, 1, 3]).reshaped([b, n, w])
      let x1 = hs + lin(blk.attn.proj, mixed)
      let hidden = lin(
        blk.mlp.fc1, x1.layerNorm(weight: blk.norm2.weight, bias: blk.norm2.bias, eps: 1e-6))
      hs = x1 + lin(blk.mlp.fc2, hidden.gelu())
      let side = lin(
        m.sideFinalUpsample,
        hs.layerNorm(
          weight: m.finalSideLayerNorm.weight, bias: m.finalSideLayerNorm.bias, eps: 1e-6))
      let mu = Float(1 / (1 + exp(-0.5)))  // sigmoid(0.05 / 0.1)
      let merged = side * mu + out.tokens * (1 - mu)
      return lin(m.head, merged.narrow(1, start: 0, length: 1).squeezed(1))
    }
    XCTAssertEqual(logits.shape, [3, c])
    for (a, b) in zip(logits.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }

  /// Average pooling reads the patch rows only (after the register tokens) and then the frozen
  /// fc_norm, as the backbone pools.
  func testLSTPoolsAsTheBackbone() throws {
    let backbone = variantBackbone(pool: .avg, regTokens: 2)
    let m = try lst(backbone, ["reduction": "2"])
    let x = tinyInput(batch: 2)
    let logits = withNoGrad { m(x) }
    let expected = withNoGrad { () -> Tensor in
      let out = backbone.forward(x, hooks: nil, hiddenStates: true)
      let merged = m.mergedTokens(embedded: backbone.embed(x).tokens, output: out)
      XCTAssertEqual(out.prefixTokenCount, 3)
      let patches = merged.narrow(1, start: 3, length: 4).mean(axis: 1)
      return m.head(backbone.fcNorm!(patches))
    }
    for (a, b) in zip(logits.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }

  // MARK: Gradients

  /// Finite differences for every trainable tensor at side widths where LayerNorm is smooth
  /// (the generic test runs the defaults), on several backbones.
  func testGradientsMatchFiniteDifferences() throws {
    let cases: [(VisionTransformer, String, [String: String])] = [
      (tinyBackbone(), "lst", ["reduction": "2"]),
      (
        variantBackbone(pool: .avg, regTokens: 1, initValues: 0.5), "lst",
        ["reduction": "2", "layers": "1", "init": "random"]
      ),
      (variantBackbone(pool: .avg, regTokens: 1), "unipt", [:]),
      (tinyBackbone(), "unipt", ["reduction": "4"]),
    ]
    let x = tinyInput(batch: 2)
    for (backbone, name, options) in cases {
      let m = try makeMethod(name, backbone: backbone, classes: 3, options: options)
      m.setTraining(false)
      // Gates away from their start so every path has a distinct weight.
      var rng = RandomGenerator(seed: 12)
      for (n, t) in m.trainableTensors() where n.contains("gate_params") {
        t.assign(Tensor.randn(t.shape, std: 0.05, generator: &rng))
      }
      let check = GradientCheck.run(
        m.trainableTensors().map(\.tensor), epsilon: 1e-3, atol: 3e-3, rtol: 3e-2
      ) { _ in m(x) }
      XCTAssertTrue(check.passed, "\(name) \(options): \(check.summary)")
    }
  }

  // MARK: Memory

  /// The backbone keeps nothing for backward: the tape holds exactly what the side computation
  /// alone holds on states computed without recording, and that is more than the ladder inputs
  /// (the side network keeps its own activations).
  func testSideMethodsKeepNoBackboneActivations() throws {
    let x = tinyInput(batch: 4)
    let floats = 4
    for name in ["lst", "unipt"] {
      let backbone = tinyBackbone()
      let m = try makeMethod(name, backbone: backbone, classes: c, options: ["reduction": "2"])
      let base = TapeStats.savedBytes
      let logits = m(x)
      let whole = TapeStats.savedBytes - base
      let x0 = withNoGrad { backbone.embed(x).tokens }
      let out = withNoGrad { backbone.forward(x, hooks: nil, hiddenStates: true) }
      let base2 = TapeStats.savedBytes
      let z: Tensor
      if let lst = m as? LadderSideTuning {
        z = lst.mergedTokens(embedded: x0, output: out)
      } else {
        z = (m as! UniPT).fuse(states: [x0] + out.hiddenStates.dropLast(), final: out.tokens)
      }
      let sideLogits = m.head(backbone.pool(z, prefixTokens: out.prefixTokenCount))
      let sideOnly = TapeStats.savedBytes - base2
      XCTAssertEqual(whole, sideOnly, name)
      // Inputs of the ladders / Down layers ((L + 1) states of [B, N, D]) and more.
      let states = (l + 1) * 4 * n * d * floats
      XCTAssertGreaterThan(sideOnly, states + l * 4 * n * (d / 2) * floats, name)
      // Far below what a backbone run with gradients keeps (full fine-tuning's forward).
      let full = try makeMethod("full", backbone: tinyBackbone(), classes: c)
      let base3 = TapeStats.savedBytes
      let fullLogits = full(x)
      let fullBytes = TapeStats.savedBytes - base3
      XCTAssertLessThan(sideOnly - states, fullBytes / 2, name)
      _ = (logits, sideLogits, fullLogits)
    }
  }

  /// LST's side blocks run under activation checkpointing, so they keep their attention
  /// probabilities for backward (alive only while that block's own backward runs) rather than
  /// rebuilding them: the forward pass keeps the same (only each checkpoint's inputs), and the
  /// gradients are those of rebuilding.
  func testLSTSideBlocksKeepProbabilitiesOnlyInsideTheirCheckpoints() throws {
    let m = try lst(tinyBackbone(), ["reduction": "2", "keep_mib": "0"])
    let blocks = m.sideLayers.map { m.sideBlocks[$0] as! ViTBlock }
    XCTAssertEqual(blocks.map(\.keepsAttentionProbabilities), blocks.map { _ in true })
    let x = tinyInput(batch: 2)
    var saved: [Int] = []
    var gradients: [[Float]] = []
    for keep in [true, false] {
      for block in blocks { block.keepsAttentionProbabilities = keep }
      m.zeroGrad()
      let base = TapeStats.savedBytes
      let y = m(x)
      let loss = (y * y).sum()
      saved.append(TapeStats.savedBytes - base)
      loss.backward()
      gradients.append(m.trainableTensors().flatMap { $0.tensor.grad!.scalars })
    }
    XCTAssertEqual(saved[0], saved[1])
    XCTAssertEqual(gradients[0].count, gradients[1].count)
    for (kept, rebuilt) in zip(gradients[0], gradients[1]) {
      XCTAssertEqual(kept, rebuilt, accuracy: 1e-6)
    }
  }

  /// `keep_mib`: the tiny model's side layers fit in the default budget, so a step keeps them
  /// as recorded (more tape, no recomputation); with `keep_mib = 0` every layer is a checkpoint
  /// again. Logits and gradients are the same either way.
  func testSideMethodsKeepTheirLayersWithinTheBudget() throws {
    let x = tinyInput(batch: 2)
    for name in ["lst", "unipt"] {
      var saved: [Int] = []
      var results: [[Float]] = []
      for keep in ["\(defaultKeepMiB)", "0"] {
        let m = try makeMethod(
          name, backbone: tinyBackbone(), classes: c,
          options: ["reduction": "2", "keep_mib": keep])
        let base = TapeStats.savedBytes
        let y = m(x)
        saved.append(TapeStats.savedBytes - base)
        (y * y).sum().backward()
        results.append(y.scalars + m.trainableTensors().flatMap { $0.tensor.grad!.scalars })
      }
      XCTAssertGreaterThan(saved[0], saved[1], "\(name): kept layers hold their activations")
      XCTAssertLessThanOrEqual(saved[0] - saved[1], defaultKeepMiB << 20, name)
      XCTAssertEqual(results[0].count, results[1].count)
      for (kept, recomputed) in zip(results[0], results[1]) {
        XCTAssertEqual(kept, recomputed, accuracy: 1e-6 * max(1, abs(recomputed)), name)
      }
    }
  }

  // MARK: UniPT

  /// `fuse` against an independent PyTorch computation (Tools/make_unipt_fixture.py).
  func testUniPTMatchesPyTorchReference() throws {
    let url = try XCTUnwrap(
      Bundle.module.url(forResource: "Fixtures", withExtension: nil)?
        .appendingPathComponent("unipt_reference.safetensors"))
    let tensors = try SafetensorsFile(contentsOf: url).tensors()
    let m = try unipt()
    var loaded = 0
    for (name, t) in m.namedParameters(prefix: "unipt") where !name.hasPrefix("unipt.head.") {
      let v = try XCTUnwrap(tensors[name], name)
      XCTAssertEqual(v.shape, t.shape, name)
      t.assign(v)
      loaded += 1
    }
    XCTAssertEqual(loaded, tensors.keys.filter { $0.hasPrefix("unipt.") }.count)
    let states = [tensors["input.state.0"]!, tensors["input.state.1"]!]
    let got = withNoGrad { m.fuse(states: states, final: tensors["input.final"]!) }
    let expected = tensors["expected.fused"]!
    XCTAssertEqual(got.shape, expected.shape)
    var worst: Float = 0
    for (a, b) in zip(got.scalars, expected.scalars) {
      worst = max(worst, abs(a - b) / max(abs(b), 1e-3))
    }
    XCTAssertLessThanOrEqual(worst, 1e-4)
  }

  /// The interaction's identity term: with every score negative the ReLU/L1 weights vanish and
  /// each layer's merged features are its own T_l; with equal confidences the merge is their
  /// mean.
  func testUniPTIdentityTermWhenScoresVanish() throws {
    let m = try unipt(tinyBackbone(), ["reduction": "2"])
    var rng = RandomGenerator(seed: 9)
    let states = (0..<l).map { _ in Tensor.randn([1, n, d], generator: &rng) }
    let final = Tensor.randn([1, n, d], generator: &rng)
    withNoGrad {
      // Anchor = LN output scaled to all-positive rows; keys all-negative: A·Tᵀ < 0.
      let anchorNorm = m.downsampleLayers[l].layers[1] as! LayerNorm
      anchorNorm.weight!.assign(Tensor.zeros([8]))
      anchorNorm.bias!.assign(Tensor.ones([8]))
      for i in 0..<l {
        let norm = m.downsampleLayers[i].layers[1] as! LayerNorm
        norm.weight!.assign(Tensor.full([8], 0.1))
        norm.bias!.assign(Tensor.full([8], -1))
      }
      m.gateLayer.weight.assign(Tensor.zeros([1, 8]))
    }
    let got = withNoGrad { m.fuse(states: states, final: final) }
    let expected = withNoGrad { () -> Tensor in
      let t = (0..<l).map { m.downsampleLayers[$0](states[$0]) }
      let merged = t.dropFirst().reduce(t[0], +) * (1 / Float(l))
      let anchor = m.downsampleLayers[l](final)
      return final + m.upsampleLayer(anchor + m.projectionLayer(merged))
    }
    for (a, b) in zip(got.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }

  // MARK: Options and backbones

  func testWorksOnBackboneVariants() throws {
    let backbones = [
      tinyBackbone(), variantBackbone(pool: .avg), variantBackbone(regTokens: 2),
      variantBackbone(pool: .avg, regTokens: 1, initValues: 1e-2),
    ]
    for backbone in backbones {
      for (name, options) in [
        ("lst", [:]), ("lst", ["reduction": "4", "init": "random"]),
        ("unipt", [:]),
      ] as [(String, [String: String])] {
        let m = try makeMethod(name, backbone: backbone, classes: c, options: options)
        let y = m(tinyInput(batch: 2))
        XCTAssertEqual(y.shape, [2, c])
        XCTAssertTrue(y.scalars.allSatisfy(\.isFinite))
        y.sum().backward()
        XCTAssertNil(backbone.blocks[0].attn.qkv.weight.grad)
        XCTAssertNil(backbone.posEmbed.grad)
      }
    }
  }

  func testBadOptionsAreClearErrors() {
    XCTAssertThrowsError(try lst(tinyBackbone(), ["reduction": "3"])) {
      XCTAssertTrue("\($0)".contains("head width 8"), "\($0)")
    }
    XCTAssertThrowsError(try lst(tinyBackbone(), ["layers": "0,2"])) {
      XCTAssertTrue("\($0)".contains("'2'"), "\($0)")
    }
    XCTAssertThrowsError(try lst(tinyBackbone(), ["layers": "1,1"]))
    XCTAssertThrowsError(try lst(tinyBackbone(), ["init": "fisher"])) {
      XCTAssertTrue("\($0)".contains("prune or random"), "\($0)")
    }
    XCTAssertThrowsError(try lst(tinyBackbone(), ["gate_T": "0"]))
    XCTAssertThrowsError(try unipt(tinyBackbone(), ["reduction": "32"]))
    // A negative or non-numeric keep budget names the key.
    for (name, value) in [("lst", "-1"), ("unipt", "lots")] {
      XCTAssertThrowsError(
        try makeMethod(name, backbone: tinyBackbone(), classes: c, options: ["keep_mib": value])
      ) {
        XCTAssertTrue("\($0)".contains("keep_mib"), "\(name): \($0)")
      }
    }
  }
}
