import XCTest

@testable import GraftTuning

/// A ViT with random weights for HST's tests (class token pooling unless told otherwise).
private func vit(
  img: Int, patch: Int, width: Int, depth: Int, heads: Int = 2, registers: Int = 0,
  pool: GlobalPool = .token, seed: UInt64 = 1
) -> VisionTransformer {
  var config = ViTConfig(
    imgSize: img, patchSize: patch, embedDim: width, depth: depth, numHeads: heads, numClasses: 3)
  config.regTokens = registers
  config.globalPool = pool
  var rng = RandomGenerator(seed: seed)
  return try! VisionTransformer(config: config, generator: &rng)
}

private func hst(
  _ backbone: VisionTransformer, classes: Int = 4, options: [String: String] = [:],
  seed: UInt64 = 3
) throws -> HierarchicalSideTuning {
  try makeMethod("hst", backbone: backbone, classes: classes, options: options, seed: seed)
    as! HierarchicalSideTuning
}

private func randomImages(_ shape: [Int], seed: UInt64) -> Tensor {
  var rng = RandomGenerator(seed: seed)
  return Tensor.randn(shape, generator: &rng)
}

final class HierarchicalSideTuningTests: XCTestCase {
  /// HST's trainable elements, by part, for backbone width `d` and depth `depth`, input channels
  /// `inChans`, stage `widths`, backbone layers per stage `layers`, `g` meta tokens.
  func closedForm(
    d: Int, depth: Int, classes: Int, widths w: [Int], layers n: [Int], g: Int = 1,
    inChans: Int = 3
  ) -> Int {
    // Stem: conv1 3×3 without bias, BatchNorm2d weight + bias, conv2 2×2 with bias, LayerNorm.
    var total = inChans * w[0] * 9 + 2 * w[0] + (w[0] * w[0] * 4 + w[0]) + 2 * w[0]
    // Stages 2…S: conv 3×3 with bias, LayerNorm.
    for s in 1..<w.count { total += w[s - 1] * w[s] * 9 + w[s] + 2 * w[s] }
    for s in 0..<w.count {
      let c = w[s]
      // Side block: norm1 2C, q/k/v/proj 4(C² + C), norm2 2C, fc1 C·4C + 4C, fc2 4C·C + C.
      let block = 2 * c + 4 * (c * c + c) + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c)
      XCTAssertEqual(block, 12 * c * c + 13 * c)
      total += n[s] * block + 2 * c  // blocks, stage-end LayerNorm
      if n[s] > 0 { total += d * c + c }  // bridge
      total += n[s] * 2 * c  // per-layer meta-token LayerNorms
    }
    total += depth * g * d  // meta tokens
    total += w[w.count - 1] * classes + classes  // head (its BatchNorm1d has no affine)
    total += depth * 4 * d  // norm1 and norm2 of every backbone block
    return total
  }

  func testTrainableCountsMatchClosedForms() throws {
    let tiny = tinyBackbone()  // D = 16, 2 blocks
    XCTAssertEqual(
      try hst(tiny).trainableCount,
      closedForm(d: 16, depth: 2, classes: 4, widths: [32, 48, 64, 72], layers: [0, 1, 0, 1]))
    XCTAssertEqual(
      try hst(tinyBackbone(), options: ["meta_tokens": "3", "depths": "2,0,0,0"]).trainableCount,
      closedForm(
        d: 16, depth: 2, classes: 4, widths: [32, 48, 64, 72], layers: [2, 0, 0, 0], g: 3))
    let four = vit(img: 16, patch: 8, width: 16, depth: 4)
    XCTAssertEqual(
      try hst(four, classes: 7, options: ["widths": "4,8,12", "heads": "1,2,3"]).trainableCount,
      closedForm(d: 16, depth: 4, classes: 7, widths: [4, 8, 12], layers: [1, 1, 2]))
    // The formula written out for the tiny backbone and default widths, by hand:
    // stem 864 + 64 + 4_128 + 64; stage embeds 13_968 + 27_840 + 41_688; blocks (stages 2, 4)
    // 28_272 + 63_144; stage norms 432; bridges 16·48 + 48 + 16·72 + 72; meta norms 96 + 144;
    // meta tokens 32; head 72·4 + 4; backbone norms 128.
    XCTAssertEqual(
      try hst(tinyBackbone()).trainableCount,
      5_120 + 83_496 + 91_416 + 432 + 2_040 + 240 + 32 + 292 + 128)
  }

  func testViTB16With100ClassesTrainsAbout078M() throws {
    // ViT-B/16 at 224 (D = 768, 12 blocks) built on zero weights, which is quick: the count
    // depends on shapes alone.
    let config = ViTConfig()
    XCTAssertEqual(config.embedDim, 768)
    XCTAssertEqual(config.depth, 12)
    var weights: [String: Tensor] = [:]
    for (name, shape) in config.stateShapes { weights[name] = Tensor.zeros(shape) }
    let backbone = try VisionTransformer(config: config, weights: weights)
    let method = try hst(backbone, classes: 100)
    XCTAssertEqual(method.stageLayers, [0..<3, 3..<6, 6..<9, 9..<12])
    let expected = closedForm(
      d: 768, depth: 12, classes: 100, widths: [32, 48, 64, 72], layers: [3, 3, 3, 3])
    XCTAssertEqual(method.trainableCount, expected)
    XCTAssertEqual(expected, 772_140)
    // The paper reports 0.78M; our tally of the official code gives 0.77M.
    XCTAssertEqual(Double(method.trainableCount) / 1e6, 0.78, accuracy: 0.015)
  }

  func testTrainsTheSideNetworkAndOnlyTheBackboneBlockNorms() throws {
    let method = try hst(tinyBackbone())
    XCTAssertTrue(method.needsBackboneGradient)
    XCTAssertFalse(method.needsHiddenStates)
    XCTAssertEqual(method.attachPoints, [.beforeBlock, .afterBlock])
    let backboneNames = method.trainableTensors().map(\.name).filter { $0.contains(".backbone.") }
    var expected: [String] = []
    for i in 0..<2 {
      for n in ["norm1", "norm2"] {
        expected += ["weight", "bias"].map { "hst.backbone.blocks.\(i).\(n).\($0)" }
      }
    }
    XCTAssertEqual(backboneNames, expected)
    let names = Set(method.trainableTensors().map(\.name))
    for name in [
      "hst.meta_tokens.0", "hst.meta_tokens.1", "hst.meta_norms.1.weight",
      "hst.stages.0.embed.conv1.weight", "hst.stages.0.embed.bn.weight",
      "hst.stages.0.embed.conv2.bias", "hst.stages.2.embed.proj.weight",
      "hst.stages.1.blocks.0.attn.q.weight", "hst.stages.3.blocks.0.mlp.fc2.bias",
      "hst.stages.3.bridge.weight", "hst.stages.3.norm.weight", "hst.head.weight",
    ] {
      XCTAssertTrue(names.contains(name), name)
    }
    XCTAssertFalse(names.contains("hst.stages.0.embed.conv1.bias"))  // no bias before the BN
    XCTAssertFalse(names.contains("hst.stages.0.bridge.weight"))  // stage 1 takes no layer (L = 2)
    XCTAssertFalse(names.contains(where: { $0.contains("running") || $0.contains("head_norm") }))
    XCTAssertEqual(
      method.stateBuffers.map(\.name),
      [
        "hst.stages.0.embed.bn.running_mean", "hst.stages.0.embed.bn.running_var",
        "hst.head_norm.running_mean", "hst.head_norm.running_var",
      ])
  }

  func testLayerSplitOverStages() throws {
    for (depth, expected) in [
      (2, [0..<0, 0..<1, 1..<1, 1..<2]), (3, [0..<0, 0..<1, 1..<2, 2..<3]),
      (4, [0..<1, 1..<2, 2..<3, 3..<4]), (5, [0..<1, 1..<2, 2..<3, 3..<5]),
    ] {
      let method = try hst(vit(img: 8, patch: 4, width: 8, depth: depth))
      XCTAssertEqual(method.stageLayers, expected, "depth \(depth)")
    }
    let byHand = try hst(tinyBackbone(), options: ["depths": "1,0,1,0"])
    XCTAssertEqual(byHand.stageLayers, [0..<1, 1..<1, 1..<2, 2..<2])
    for (options, message) in [
      (["depths": "1,1"], "method.depths"), (["depths": "2,1,0,0"], "summing to"),
      (["widths": "31,48,64,72"], "not divisible"), (["heads": "2,4"], "method.heads"),
      (["widths": "32,x"], "positive integers"), (["meta_tokens": "0"], "meta_tokens"),
    ] {
      XCTAssertThrowsError(try hst(tinyBackbone(), options: options)) {
        XCTAssertTrue("\($0)".contains(message), "\($0)")
      }
    }
  }

  func testInitialisationFollowsTheReference() throws {
    let method = try hst(tinyBackbone())
    // Meta tokens: Xavier-uniform over [1, G, D]: U(±√(6 / ((G + 1)·D))) = U(±0.433).
    let bound = (6 / Float(2 * 16)).squareRoot()
    let meta = method.metaTokens.tensors.flatMap(\.scalars)
    XCTAssertEqual(method.metaTokens.tensors[0].shape, [1, 1, 16])
    XCTAssertLessThanOrEqual(meta.map(abs).max()!, bound)
    XCTAssertGreaterThan(meta.map(abs).max()!, 0.6 * bound)
    // Convs: N(0, √(2 / (k·k·out))).
    func std(_ t: Tensor) -> Float {
      let v = t.scalars
      let mean = v.reduce(0, +) / Float(v.count)
      return (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(v.count)).squareRoot()
    }
    let stem = method.stages[0].embed
    XCTAssertEqual(std(stem.conv1!.weight), (2 / Float(9 * 32)).squareRoot(), accuracy: 0.01)
    XCTAssertEqual(std(stem.conv2!.weight), (2 / Float(4 * 32)).squareRoot(), accuracy: 0.01)
    XCTAssertEqual(
      std(method.stages[3].embed.proj!.weight), (2 / Float(9 * 72)).squareRoot(), accuracy: 0.005)
    XCTAssertEqual(stem.conv2!.bias!.scalars, [Float](repeating: 0, count: 32))
    // Linears: trunc-normal 0.02, zero bias.
    let block = method.stages[3].blocks[0]
    XCTAssertEqual(std(block.fc1.weight), 0.02, accuracy: 0.002)
    XCTAssertEqual(std(method.stages[3].bridge!.weight), 0.02, accuracy: 0.003)
    XCTAssertEqual(block.attn.q.bias!.scalars, [Float](repeating: 0, count: 72))
    XCTAssertEqual(method.head.bias!.scalars, [0, 0, 0, 0])
    XCTAssertEqual(method.head.weight.shape, [4, 72])
    // Norm eps as the reference.
    XCTAssertEqual(block.norm1.eps, 1e-6)
    XCTAssertEqual(method.stages[0].norm.eps, 1e-6)
    XCTAssertEqual(stem.norm.eps, 1e-5)
    XCTAssertEqual(method.metaNorms[0].eps, 1e-5)
    XCTAssertEqual(method.headNorm.eps, 1e-6)
    XCTAssertNil(method.headNorm.weight)
    XCTAssertEqual(stem.bn!.eps, 1e-5)
    XCTAssertEqual(stem.bn!.momentum, 0.1)
  }

  func testMetaTokensLeaveTheBackbonesFinalSequenceUnchanged() throws {
    for (registers, pool) in [(0, GlobalPool.token), (2, .avg)] {
      let backbone = vit(img: 8, patch: 4, width: 16, depth: 3, registers: registers, pool: pool)
      let method = try hst(backbone, options: ["meta_tokens": "2"])
      let x = randomImages([2, 3, 8, 8], seed: 4)
      let plain = withNoGrad { backbone.forward(x, hiddenStates: false) }
      let hooked = withNoGrad { backbone.forward(x, hooks: method, hiddenStates: true) }
      let n = 1 + registers + 4
      XCTAssertEqual(plain.tokens.shape, [2, n, 16])
      XCTAssertEqual(hooked.tokens.shape, [2, n, 16])
      XCTAssertEqual(hooked.prefixTokenCount, plain.prefixTokenCount)
      XCTAssertEqual(hooked.features.shape, plain.features.shape)
      // Inside the blocks the meta rows are there (block outputs are taken before they go).
      XCTAssertEqual(hooked.hiddenStates.map(\.shape), Array(repeating: [2, 2 + n, 16], count: 3))
      // They take part in attention, so the tokens change.
      XCTAssertNotEqual(hooked.tokens.scalars, plain.tokens.scalars)
      // The same as prepending them before the class token by hand.
      let reference = withNoGrad { referencePass(method, x) }
      assertClose(hooked.tokens.scalars, reference.tokens.scalars, 1e-5)
    }
  }

  func testStageOutputShapesAtStrides4To32() throws {
    // A narrow ViT with 16×16 patches on 224×224 images (14×14 grid).
    let backbone = vit(img: 224, patch: 16, width: 16, depth: 4)
    let method = try hst(backbone, classes: 5)
    method.setTraining(false)
    let x = randomImages([1, 3, 224, 224], seed: 2)
    let maps = withNoGrad { method.featureMaps(x) }
    XCTAssertEqual(
      maps.map(\.shape), [[1, 32, 56, 56], [1, 48, 28, 28], [1, 64, 14, 14], [1, 72, 7, 7]])
    XCTAssertEqual(withNoGrad { method(x) }.shape, [1, 5])
    // Non-square input with a dynamic image size: 64×96 gives 16×24, 8×12, 4×6, 2×3.
    var config = backbone.config
    config.imgSize = Size2D(64, 96)
    config.dynamicImgSize = true
    var rng = RandomGenerator(seed: 1)
    let dynamic = try hst(VisionTransformer(config: config, generator: &rng))
    let shapes = withNoGrad { dynamic.featureMaps(randomImages([2, 3, 64, 96], seed: 3)) }
      .map(\.shape)
    XCTAssertEqual(shapes, [[2, 32, 16, 24], [2, 48, 8, 12], [2, 64, 4, 6], [2, 72, 2, 3]])
  }

  func testLogitsMatchAnIndependentComputationInTheReferenceOrder() throws {
    // 16×16 images with 8×8 patches (a 2×2 grid, one register token): the stages are 4×4
    // (features upsampled), 2×2, 1×1 and 1×1 (downsampled), one backbone layer each.
    let backbone = vit(img: 16, patch: 8, width: 16, depth: 4, registers: 1)
    let method = try hst(backbone, classes: 5, options: ["meta_tokens": "2"])
    XCTAssertEqual(method.stageLayers, [0..<1, 1..<2, 2..<3, 3..<4])
    var rng = RandomGenerator(seed: 8)
    for (name, t) in method.checkpointTensors() {
      let noise = Tensor.randn(t.shape, std: 0.2, generator: &rng)
      t.assign(name.hasSuffix("running_var") ? t + noise.abs() : t + noise)
    }
    method.setTraining(false)
    let x = randomImages([2, 3, 16, 16], seed: 6)
    let logits = withNoGrad { method(x) }
    let reference = withNoGrad { referencePass(method, x) }
    XCTAssertEqual(logits.shape, [2, 5])
    assertClose(logits.scalars, reference.logits.scalars, 1e-4)
    // The feature maps are the same stage outputs.
    let maps = withNoGrad { method.featureMaps(x) }
    assertClose(maps[3].mean(axes: [2, 3]).scalars, reference.pooled.scalars, 1e-5)
  }

  func testTrainingModeGradientsWithBatchStatisticsMatchFiniteDifferences() throws {
    // Batch statistics in both BatchNorms (4 images), every stage fed by a layer.
    let backbone = vit(img: 16, patch: 8, width: 8, depth: 4)
    let method = try hst(
      backbone, classes: 3, options: ["widths": "4,4,8,8", "heads": "1,2,2,4"])
    method.setTraining(true)
    let x = randomImages([4, 3, 16, 16], seed: 9)
    let picked = method.trainableTensors().filter {
      [
        "hst.meta_tokens.0", "hst.meta_tokens.3", "hst.stages.0.embed.conv1.weight",
        "hst.stages.0.embed.bn.weight", "hst.stages.0.embed.bn.bias",
        "hst.stages.1.blocks.0.attn.k.weight", "hst.stages.2.bridge.weight",
        "hst.meta_norms.3.bias", "hst.stages.3.norm.weight", "hst.head.weight",
        "hst.backbone.blocks.1.norm1.weight",
      ].contains($0.name)
    }
    XCTAssertEqual(picked.count, 11)
    // The stem's ReLU after its BatchNorm sees 256 values per channel, and a step of 1e-3 on
    // conv1 or the BatchNorm shift already carries some across the kink (errors grow with the
    // step): probe with 3e-4, where the Float32 noise is still far below the tolerance.
    let check = GradientCheck.run(picked.map(\.tensor), epsilon: 3e-4, atol: 3e-3, rtol: 3e-2) {
      _ in method(x)
    }
    XCTAssertTrue(check.passed, check.summary)
  }

  func testCheckpointRoundTripCarriesRunningStatistics() throws {
    let trained = try hst(tinyBackbone(), seed: 3)
    let optimizer = AdamW(parameters: trained.trainableTensors(), lr: 0.01)
    trained.setTraining(true)
    for step in 0..<3 {
      let loss = trained(tinyInput(batch: 4, seed: UInt64(step))).crossEntropy(targets: [
        0, 1, 2, 3,
      ])
      loss.backward()
      optimizer.step()
      optimizer.zeroGrad()
    }
    // Training moved the running statistics.
    let head = trained.headNorm
    XCTAssertNotEqual(head.runningMean.scalars, [Float](repeating: 0, count: 72))
    XCTAssertNotEqual(
      trained.stages[0].embed.bn!.runningVar.scalars, [Float](repeating: 1, count: 32))
    // Through a safetensors file, as the adapter checkpoint writes it.
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "hst-\(UUID().uuidString).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    let state = trained.trainableState()
    XCTAssertEqual(state.count, trained.trainableTensors().count + 4)
    XCTAssertEqual(state["hst.head_norm.running_mean"]?.scalars, head.runningMean.scalars)
    try Safetensors.write(state, to: url)
    let fresh = try hst(tinyBackbone(), seed: 99)
    try fresh.loadTrainableState(SafetensorsFile(contentsOf: url).tensors())
    XCTAssertEqual(fresh.headNorm.runningVar.scalars, head.runningVar.scalars)
    trained.setTraining(false)
    fresh.setTraining(false)
    let x = tinyInput(batch: 3)
    XCTAssertEqual(withNoGrad { trained(x) }.scalars, withNoGrad { fresh(x) }.scalars)
    // A state without the running statistics does not load.
    var partial = state
    partial["hst.head_norm.running_var"] = nil
    XCTAssertThrowsError(try fresh.loadTrainableState(partial)) {
      XCTAssertTrue("\($0)".contains("hst.head_norm.running_var"), "\($0)")
    }
  }

  func testEvaluationIsDeterministicAndLeavesRunningStatisticsAlone() throws {
    let method = try hst(tinyBackbone())
    method.setTraining(false)
    let x = tinyInput(batch: 2)
    let a = withNoGrad { method(x) }
    let b = withNoGrad { method(x) }
    XCTAssertEqual(a.scalars, b.scalars)
    XCTAssertEqual(method.headNorm.runningMean.scalars, [Float](repeating: 0, count: 72))
    // In training mode a single image still runs (BatchNorm falls back to running statistics
    // where it has one value per channel).
    method.setTraining(true)
    XCTAssertEqual(method(tinyInput(batch: 1)).shape, [1, 4])
  }
}

/// The elements of `a` and `b` agree within `tolerance`.
private func assertClose(
  _ a: [Float], _ b: [Float], _ tolerance: Float, file: StaticString = #filePath,
  line: UInt = #line
) {
  XCTAssertEqual(a.count, b.count, file: file, line: line)
  for (i, (x, y)) in zip(a, b).enumerated() where !(abs(x - y) <= tolerance) {
    XCTFail("element \(i): \(x) vs \(y)", file: file, line: line)
    return
  }
}

/// HST written out from the official code's order of operations with plain ops, on `method`'s
/// tensors: meta tokens prepended by hand, the D-wide feature maps resized *before* the bridge,
/// attention as softmax(q·kᵀ/√d)·v, BatchNorms from their running statistics (evaluation mode).
private func referencePass(_ method: HierarchicalSideTuning, _ x: Tensor) -> (
  tokens: Tensor, logits: Tensor, pooled: Tensor
) {
  let backbone = method.backbone as! VisionTransformer
  let (b, g, d) = (x.shape[0], method.metaTokenCount, backbone.width)
  let skip = g + backbone.prefixTokens
  let grid = Size2D(
    x.shape[2] / backbone.config.patchSize.height, x.shape[3] / backbone.config.patchSize.width)
  var sequence = backbone.embed(x).tokens
  var metas: [Tensor] = []
  var maps: [Tensor] = []
  for i in 0..<backbone.depth {
    let meta = method.metaTokens.tensors[i].broadcast(to: [b, g, d])
    sequence = backbone.blocks[i](Tensor.concat([meta, sequence], axis: 1))
    let n = sequence.shape[1]
    metas.append(sequence.narrow(1, start: 0, length: g))
    maps.append(
      sequence.narrow(1, start: skip, length: n - skip).transposed(1, 2)
        .reshaped([b, d, grid.height, grid.width]))
    sequence = sequence.narrow(1, start: g, length: n - g)
  }
  let tokens = backbone.finalNorm(sequence)

  func channelAffine(_ t: Tensor, _ bn: BatchNorm) -> Tensor {
    let shape = [1, bn.features] + Array(repeating: 1, count: t.rank - 2)
    var y = (t - bn.runningMean.reshaped(shape)) / (bn.runningVar + bn.eps).sqrt().reshaped(shape)
    if let w = bn.weight, let bias = bn.bias { y = y * w.reshaped(shape) + bias.reshaped(shape) }
    return y
  }
  func attention(_ a: HSTCrossAttention, _ q: Tensor, _ kv: Tensor) -> Tensor {
    let (n, m, c) = (q.shape[1], kv.shape[1], q.shape[2])
    let dh = c / a.heads
    func heads(_ t: Tensor, _ rows: Int) -> Tensor {
      t.reshaped([b, rows, a.heads, dh]).permuted([0, 2, 1, 3])
    }
    let scores =
      heads(a.q(q), n).matmul(heads(a.k(kv), m), transposeOther: true)
      * (1 / Float(dh).squareRoot())
    let mixed = scores.softmax(axis: -1).matmul(heads(a.v(kv), m))
    return a.proj(mixed.permuted([0, 2, 1, 3]).reshaped([b, n, c]))
  }

  var map = x
  var side = x
  for (s, stage) in method.stages.enumerated() {
    let embed = stage.embed
    let conv: Tensor
    if s == 0 {
      let c1 = map.conv2d(weight: embed.conv1!.weight, stride: (2, 2), padding: (1, 1))
      conv = channelAffine(c1, embed.bn!).relu()
        .conv2d(weight: embed.conv2!.weight, bias: embed.conv2!.bias, stride: (2, 2))
    } else {
      conv = map.conv2d(
        weight: embed.proj!.weight, bias: embed.proj!.bias, stride: (2, 2), padding: (1, 1))
    }
    let (c, h, w) = (conv.shape[1], conv.shape[2], conv.shape[3])
    side = embed.norm(conv.reshaped([b, c, h * w]).transposed(1, 2))
    for (j, layer) in method.stageLayers[s].enumerated() {
      let bridge = stage.bridge!
      let resized = maps[layer].resized(to: (h, w), mode: .bilinear)
      let features = bridge(resized.reshaped([b, d, h * w]).transposed(1, 2))
      let global = features.mean(axis: 1, keepDims: true)
      let kv = Tensor.concat([method.metaNorms[layer](bridge(metas[layer])), global], axis: 1)
      let block = stage.blocks[j]
      side = side + attention(block.attn, block.norm1(side), kv)
      side = side + features
      side = side + block.fc2(block.fc1(block.norm2(side)).gelu())
    }
    side = stage.norm(side)
    map = side.transposed(1, 2).reshaped([b, c, h, w])
  }
  let pooled = side.mean(axis: 1)
  return (tokens, method.head(channelAffine(pooled, method.headNorm)), pooled)
}
