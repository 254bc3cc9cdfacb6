import XCTest

@testable import GraftTuning

/// A tiny Point-MAE with random weights standing in for a frozen pretrained point encoder:
/// D = 16, 2 blocks, 2 heads, 6 groups of 4 points, MLP 64, a 3-class `cls_head_finetune`; the
/// mini-PointNet keeps the official widths 128/256/512.
///
/// Weights are drawn at the scale of a trained model (std 1/√fan-in, tokens 0.5), not at the
/// official init's 0.02: with 0.02 everywhere the residual stream of so small a model is ~1e-3
/// wide, the final LayerNorm divides by that, and both finite differences and a few optimizer
/// steps see a wildly non-linear function.
func tinyPointMAE(seed: UInt64 = 1) -> PointMAE {
  let config = PointMAEConfig(
    transDim: 16, depth: 2, numHeads: 2, groupSize: 4, numGroup: 6, numClasses: 3, npoints: 32)
  var rng = RandomGenerator(seed: seed)
  let model = try! PointMAE(config: config, generator: &rng)
  for (name, t) in model.namedParameters() {
    if name == "cls_token" || name == "cls_pos" {
      t.assign(Tensor.randn(t.shape, std: 0.5, generator: &rng))
    } else if t.rank >= 2 {
      let fanIn = t.count / t.shape[0]
      t.assign(Tensor.randn(t.shape, std: 1 / Float(fanIn).squareRoot(), generator: &rng))
    }
  }
  // Non-trivial running statistics, so evaluation-mode BatchNorm is not the identity.
  for (name, t) in model.namedBuffers() where name.hasSuffix("running_var") {
    t.assign(Tensor.rand(t.shape, low: 0.5, high: 2, generator: &rng))
  }
  return model
}

/// Three shapes of 32 points, one per class: points on a sphere, on a cube's surface, and along a
/// helix, each randomly scaled, shifted a little and jittered.
func pointTask(batch: Int, seed: UInt64) -> (Tensor, [Int]) {
  var g = RandomGenerator(seed: seed)
  var values: [Float] = []
  var labels: [Int] = []
  func uniform() -> Float { Tensor.rand([1], low: -1, high: 1, generator: &g).item }
  for i in 0..<batch {
    let label = i % 3
    labels.append(label)
    let scale = 0.7 + 0.3 * abs(uniform())
    let shift = (0..<3).map { _ in 0.1 * uniform() }
    for j in 0..<32 {
      var p: [Float]
      switch label {
      case 0:
        p = (0..<3).map { _ in uniform() }
        let n = max(1e-3, (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).squareRoot())
        p = p.map { $0 / n }
      case 1:
        p = (0..<3).map { _ in uniform() }
        p[j % 3] = j % 2 == 0 ? 1 : -1
      default:
        let t = Float(j) / 31 * 4 * .pi
        p = [0.5 * cos(t), 0.5 * sin(t), Float(j) / 16 - 1]
      }
      for k in 0..<3 { values.append(scale * p[k] + shift[k] + 0.02 * uniform()) }
    }
  }
  return (Tensor(values, shape: [batch, 32, 3]), labels)
}

func makePointMethod(
  _ name: String, backbone: PointMAE, classes: Int = 4, options: [String: String] = [:],
  seed: UInt64 = 3
) throws -> TuningMethod {
  var rng = RandomGenerator(seed: seed)
  return try MethodRegistry.make(
    name, backbone: backbone, classes: classes, options: options, generator: &rng)
}

/// Every method but HST on the Point-MAE encoder, through the same method files as the ViT.
final class PointMAEMethodTests: XCTestCase {
  // Sizes of the tiny Point-MAE: D, depth L, MLP hidden H, classes C, group size S.
  let d = 16
  let l = 2
  let h = 64
  let c = 4
  let s = 4
  /// The pooled features: class token and max, 2·D.
  var f: Int { 2 * d }
  var head: Int { f * c + c }

  /// Every parameter of the tiny Point-MAE except its own classifier, written out by layer
  /// (BatchNorm running statistics are buffers, not parameters).
  var backboneTotal: Int {
    let tokens = 2 * d  // cls_token, cls_pos
    let firstConv = (3 * 128 + 128) + 2 * 128 + (128 * 256 + 256)
    let secondConv = (512 * 512 + 512) + 2 * 512 + (512 * d + d)
    let positions = (3 * 128 + 128) + (128 * d + d)
    // No qkv bias in Point-MAE's blocks.
    let block = 2 * d + 3 * d * d + (d * d + d) + 2 * d + (d * h + h) + (h * d + d)
    return tokens + firstConv + secondConv + positions + l * block + 2 * d
  }

  /// MP: head 2D·C + C, proj D·P + P, LayerNorm 2h, two K→K 3×3 convs, classifier2.
  func mpCount(p: Int, heads: Int, k: Int) -> Int {
    let hw = p / heads
    let side = ((hw - 3) / 2 + 1 - 3) / 2 + 1
    return head + (d * p + p) + 2 * hw + 2 * 9 * k * k + (k * side * side * c + c)
  }

  /// LST with reduction r on every block: w = D / r, hidden H / r, side blocks without qkv bias.
  func lstCount(r: Int) -> Int {
    let w = d / r
    let hs = h / r
    let block = 2 * w + 3 * w * w + (w * w + w) + 2 * w + (w * hs + hs) + (hs * w + w)
    let ladder = d * w + w
    return ladder + l * (ladder + 1 + block) + 2 * w + (w * d + d) + 1 + head
  }

  /// UniPT with m = D / r.
  func uniptCount(r: Int) -> Int {
    let m = d / r
    return (l + 1) * (d * m + m + 2 * m) + (m * m + m + 2 * m) + (m * d + d) + (m + 1) + head
  }

  func testTrainableCountsMatchClosedForms() throws {
    // Biases: conv 128 + 256 + 512 + D, BatchNorm 128 + 512, position MLP 128 + D; per block
    // norm1 D, proj D, norm2 D, fc1 H, fc2 D (qkv has none); final norm D.
    let biases = (128 + 256 + 512 + d) + (128 + 512) + (128 + d) + l * (4 * d + h) + d
    let expected: [(String, [String: String], Int)] = [
      ("linear", [:], head),
      ("full", [:], backboneTotal + head),
      ("bitfit", [:], biases + head),
      // LayerNorms only: per block 2·(D + D), final norm D + D (not the BatchNorms).
      ("ln-tune", [:], l * 4 * d + 2 * d + head),
      ("vpt-shallow", ["prompt_length": "3"], 3 * d + head),
      ("vpt-deep", ["prompt_length": "3"], l * 3 * d + head),
      ("lora", ["rank": "2"], l * 2 * (2 * d + d * 2) + head),
      (
        "lora", ["rank": "2", "targets": "qkv,fc2"],
        l * ((2 * d + 3 * d * 2) + (2 * h + d * 2)) + head
      ),
      ("adapter", ["bottleneck": "3"], l * (d * 3 + 3 + 3 * d + d) + head),
      // auto proj_dim: 4·D = 64 in 4 heads (h = 16, s = 3), near: K = 3.
      ("mp", [:], mpCount(p: 64, heads: 4, k: 3)),
      // MP+ adds per block down D·r, up_weight r·D, up_bias r·D, r = 16.
      ("mp+", [:], mpCount(p: 64, heads: 4, k: 3) + l * 3 * d * 16),
      ("lst", [:], lstCount(r: 8)),
      ("lst", ["reduction": "2", "init": "random"], lstCount(r: 2)),
      ("unipt", [:], uniptCount(r: 2)),
    ]
    for (name, options, count) in expected {
      let method = try makePointMethod(name, backbone: tinyPointMAE(), classes: c, options: options)
      XCTAssertEqual(method.trainableCount, count, "\(name) \(options)")
      XCTAssertEqual(method.backboneCount, backboneTotal, name)
      for (n, _) in method.trainableTensors() {
        XCTAssertTrue(n.hasPrefix(method.prefix + "."), n)
        XCTAssertFalse(n.contains("cls_head_finetune"), "\(name) trains the old head: \(n)")
      }
    }
  }

  /// A few steps of every method lower the loss on a batch, and leave the frozen tensors and
  /// the BatchNorm running statistics bit for bit as they were.
  func testEveryMethodTrainsAndLeavesTheFrozenBackbone() throws {
    let (x, labels) = pointTask(batch: 6, seed: 1)
    // Every method but those that need an image grid (HST; P2P draws its input as images).
    for name in MethodRegistry.all.filter({ !$0.requirements.contains(.imageGrid) }).map(\.name) {
      let backbone = tinyPointMAE()
      let before = backbone.namedParameters().map { ($0.name, $0.tensor.scalars) }
      let buffers = backbone.namedBuffers().map { ($0.name, $0.tensor.scalars) }
      let options = name.hasPrefix("vpt") ? ["prompt_length": "3"] : [:]
      let method = try makePointMethod(name, backbone: backbone, classes: 3, options: options)
      let trained = Set(
        method.trainableTensors().map(\.name).filter { $0.contains(".backbone.") }
          .map { String($0.split(separator: ".", maxSplits: 2)[2]) })
      let lr: Float = name == "full" ? 1e-3 : 1e-2
      let optimizer = AdamW(parameters: method.trainableTensors(), lr: lr)
      func loss() -> Float {
        method.setTraining(false)
        return withNoGrad { method(x).crossEntropy(targets: labels).item }
      }
      let start = loss()
      // IDPT's generator and head normalise with BatchNorm: evaluation reads the running
      // statistics, which follow the batches at momentum 0.1, so it needs more steps than 8
      // before its evaluation-mode loss reflects the training.
      for _ in 0..<(name == "idpt" ? 40 : 8) {
        method.setTraining(true)
        method(x).crossEntropy(targets: labels).backward()
        optimizer.step()
        optimizer.zeroGrad()
      }
      let end = loss()
      XCTAssertLessThan(end, 0.9 * start, "\(name): loss \(start) → \(end)")
      var changed = false
      for ((n, old), (_, t)) in zip(before, backbone.namedParameters()) {
        if trained.contains(n) {
          changed = changed || old != t.scalars
        } else {
          XCTAssertEqual(old, t.scalars, "\(name): frozen \(n) changed")
        }
      }
      if !trained.isEmpty { XCTAssertTrue(changed, name) }
      for ((n, old), (_, t)) in zip(buffers, backbone.namedBuffers()) {
        XCTAssertEqual(old, t.scalars, "\(name): buffer \(n) changed")
      }
      XCTAssertNil(backbone.blocks.blocks[0].attn.qkv.weight.grad, name)
    }
  }

  /// Finite differences on a few methods, each on a few of its tensors (a forward pass of the
  /// mini-PointNet is costly in a debug build).
  func testGradientsMatchFiniteDifferences() throws {
    let (x, _) = pointTask(batch: 1, seed: 4)
    let cases: [(String, [String: String], [String])] = [
      ("linear", [:], ["linear.head."]),
      ("vpt-deep", ["prompt_length": "1"], ["vpt.prompt", "vpt.deep"]),
      ("lora", ["rank": "1", "targets": "q"], ["lora.blocks."]),
      ("adapter", ["bottleneck": "1"], ["adapter.blocks."]),
      ("lst", [:], ["lst.side_downsamples.1.", "lst.side_blocks.1.attn.qkv.", "lst.side_gate"]),
      // Tensors after the max-pools (a bias shared by a group's points cannot move its arg-max).
      (
        "full", [:],
        [
          "full.backbone.blocks.blocks.0.norm1.weight", "full.backbone.cls_pos",
          "full.backbone.pos_embed.2.bias", "full.backbone.encoder.second_conv.3.bias",
        ]
      ),
    ]
    for (name, options, prefixes) in cases {
      let method = try makePointMethod(name, backbone: tinyPointMAE(), classes: 3, options: options)
      method.setTraining(false)
      var rng = RandomGenerator(seed: 11)
      for (n, t) in method.trainableTensors() where n.hasSuffix("lora_B") || n.contains(".up.") {
        t.assign(Tensor.randn(t.shape, std: 0.5, generator: &rng))
      }
      let params = method.trainableTensors().filter { p in
        prefixes.contains { p.name.hasPrefix($0) }
      }
      XCTAssertGreaterThanOrEqual(params.count, prefixes.count, "\(name): \(params.map(\.name))")
      let eps: Float = name == "adapter" ? 1e-3 : 3e-3
      let check = GradientCheck.run(params.map(\.tensor), epsilon: eps, atol: 3e-3, rtol: 3e-2) {
        _ in
        method(x)
      }
      XCTAssertTrue(check.passed, "\(name): \(check.summary)")
    }
  }

  /// VPT's prompts get no position (zero rows) and stay out of the max-pool; its prompt init
  /// reads the backbone's fan-in, 3·S per group.
  func testPromptsSitBetweenTheClassTokenAndTheGroups() throws {
    let backbone = tinyPointMAE()
    let vpt = try makePointMethod(
      "vpt-deep", backbone: backbone, classes: c, options: ["prompt_length": "3"])
    let (x, _) = pointTask(batch: 2, seed: 2)
    let out = withNoGrad { backbone.forward(x, hooks: vpt, hiddenStates: true) }
    XCTAssertEqual(out.tokens.shape, [2, 1 + 3 + 6, d])
    XCTAssertEqual(out.prefixTokenCount, 4)
    let cls = out.tokens.narrow(1, start: 0, length: 1).squeezed(1)
    let groups = out.tokens.narrow(1, start: 4, length: 6).max(axis: 1)
    XCTAssertEqual(out.features.scalars, Tensor.concat([cls, groups], axis: 1).scalars)
    let positions = try XCTUnwrap(out.pass.positions(for: out.tokens))
    XCTAssertTrue(positions.narrow(1, start: 1, length: 3).scalars.allSatisfy { $0 == 0 })
    XCTAssertEqual(
      positions.narrow(1, start: 4, length: 6).scalars,
      out.pass.embedded.positions!.narrow(1, start: 1, length: 6).scalars)
    XCTAssertEqual(backbone.embeddingFanIn, 3 * s)
    let bound = (6 / Float(3 * s + d)).squareRoot()
    let prompts = (vpt as! VisualPromptTuning).promptEmbeddings.scalars
    XCTAssertLessThanOrEqual(prompts.map(abs).max()!, bound)
    XCTAssertGreaterThan(prompts.map(abs).max()!, 0.5 * bound)
  }

  func testLoRAMergedMatchesUnmergedAndLSTPrunesTheBlocks() throws {
    let lora =
      try makePointMethod(
        "lora", backbone: tinyPointMAE(), classes: c, options: ["targets": "q,v,fc1"]) as! LoRA
    var rng = RandomGenerator(seed: 4)
    for (n, t) in lora.trainableTensors() where n.hasSuffix("lora_B") {
      t.assign(Tensor.randn(t.shape, std: 0.3, generator: &rng))
    }
    let (x, _) = pointTask(batch: 3, seed: 5)
    let unmerged = withNoGrad { lora(x) }
    lora.merge()
    let merged = withNoGrad { lora(x) }
    for (a, b) in zip(unmerged.scalars, merged.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }

    // LST's pruned side blocks are the backbone's blocks at the kept channels.
    let backbone = tinyPointMAE()
    let lst =
      try makePointMethod("lst", backbone: backbone, classes: c, options: ["reduction": "2"])
      as! LadderSideTuning
    let kept = try XCTUnwrap(lst.keptChannels)
    XCTAssertEqual(kept.count, d / 2)
    let side = lst.sideBlock(1) as! ViTBlock
    let qkv = backbone.blocks.blocks[1].attn.qkv.weight
    let rows = lst.keptBlockIndices[1]!.qkvRows
    XCTAssertEqual(side.attn.qkv.weight.shape, [rows.count, d / 2])
    XCTAssertNil(side.attn.qkv.bias)
    XCTAssertEqual(
      side.attn.qkv.weight.scalars[0], qkv.scalars[rows[0] * d + kept[0]], "pruned, not fresh")
    XCTAssertEqual(
      lst.finalSideLayerNorm.weight!.scalars, kept.map { backbone.norm.weight!.scalars[$0] })
  }

  func testHSTRefusesAPointBackbone() {
    XCTAssertThrowsError(try makePointMethod("hst", backbone: tinyPointMAE())) {
      let message = "\($0)"
      XCTAssertTrue(
        message.contains("method 'hst' needs a backbone with image patch grid"), message)
      XCTAssertTrue(message.contains("Point-MAE backbone offers"), message)
    }
  }
}
