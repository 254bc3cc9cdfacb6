import XCTest

@testable import GraftTuning

/// A tiny ViT with random weights standing in for a frozen pretrained backbone:
/// 8×8 RGB input, 4×4 patches (4 patches + class token), D = 16, 2 blocks, 2 heads, MLP 64.
func tinyBackbone(seed: UInt64 = 1, classes: Int = 3, globalPool: GlobalPool = .token)
  -> VisionTransformer
{
  var config = ViTConfig(
    imgSize: 8, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, numClasses: classes)
  config.globalPool = globalPool
  var rng = RandomGenerator(seed: seed)
  return try! VisionTransformer(config: config, generator: &rng)
}

func tinyInput(batch: Int = 2, seed: UInt64 = 5) -> Tensor {
  var rng = RandomGenerator(seed: seed)
  return Tensor.randn([batch, 3, 8, 8], generator: &rng)
}

/// What `method` takes from the task on the tiny backbone: `tinyInput` images, or 16-point clouds
/// for a method that takes point clouds (P2P, which draws them as 8×8 images).
func tinyTaskInput(for method: TuningMethod, batch: Int = 2, seed: UInt64 = 5) -> Tensor {
  if case .points = method.taskInput { return tinyClouds(batch: batch, points: 16, seed: seed) }
  return tinyInput(batch: batch, seed: seed)
}

func makeMethod(
  _ name: String, backbone: VisionTransformer, classes: Int = 4, options: [String: String] = [:],
  seed: UInt64 = 3
) throws -> TuningMethod {
  var rng = RandomGenerator(seed: seed)
  return try MethodRegistry.make(
    name, backbone: backbone, classes: classes, options: options, generator: &rng)
}

/// One training step of `method` on `task` with the cross-entropy of `targets`, through `hooks`
/// (the method itself unless given): its gradients cleared first and its generator reseeded, so
/// runs draw alike (IDPT's head dropout, P2P's training views). Returns the logits, every
/// trainable tensor's name and gradient, and the bytes the tape saved.
func trainingStep(
  _ method: TuningMethod, _ task: Tensor, targets: [Int], hooks: (any BackboneHooks)? = nil
) -> (logits: [Float], grads: [(name: String, values: [Float])], tape: Int) {
  for (_, t) in method.trainableTensors() { t.grad = nil }
  method.generator = RandomGenerator(seed: 1)
  let base = TapeStats.savedBytes
  let x = method.backboneInput(task)
  let hooks = hooks ?? method
  let output =
    method.needsBackboneGradient
    ? method.backbone.forward(x, hooks: hooks, hiddenStates: method.needsHiddenStates)
    : withNoGrad {
      method.backbone.forward(x, hooks: hooks, hiddenStates: method.needsHiddenStates)
    }
  let logits = method.logits(output)
  let loss = logits.crossEntropy(targets: targets)
  let tape = TapeStats.savedBytes - base
  loss.backward()
  return (
    logits.scalars,
    method.trainableTensors().map { ($0.name, $0.tensor.grad?.scalars ?? []) }, tape
  )
}

final class MethodTests: XCTestCase {
  // Sizes of the tiny backbone: D, depth L, MLP hidden H, classes C, patch area, channels.
  let d = 16
  let l = 2
  let h = 64
  let c = 4

  var head: Int { d * c + c }

  /// Every parameter of the tiny backbone except its own head, written out by layer.
  var backboneTotal: Int {
    let embed = 1 * d + 5 * d + (d * 3 * 16 + d)  // cls, pos (5 tokens), patch proj
    let block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * h + h) + (h * d + d)
    return embed + l * block + 2 * d  // final norm
  }

  func testTrainableCountsMatchClosedForms() throws {
    let expected: [(String, [String: String], Int)] = [
      ("linear", [:], head),
      ("full", [:], backboneTotal + head),
      // Biases: patch proj D, per block norm1 D, qkv 3D, proj D, norm2 D, fc1 H, fc2 D; norm D.
      ("bitfit", [:], d + l * (d + 3 * d + d + d + h + d) + d + head),
      // LayerNorms: per block 2·(D + D), final norm D + D.
      ("ln-tune", [:], l * 4 * d + 2 * d + head),
      ("vpt-shallow", ["prompt_length": "3"], 3 * d + head),
      ("vpt-deep", ["prompt_length": "3"], l * 3 * d + head),
      // With a projection of width 5: prompts in width 5 plus a 5 → D Linear.
      ("vpt-deep", ["prompt_length": "3", "project": "5"], l * 3 * 5 + (5 * d + d) + head),
      // q and v: per block 2·(r·D + D·r).
      ("lora", ["rank": "2"], l * 2 * (2 * d + d * 2) + head),
      (
        "lora", ["rank": "2", "targets": "qkv,fc1"],
        l * ((2 * d + 3 * d * 2) + (2 * d + h * 2)) + head
      ),
      // Per block: down D·b + b, up b·D + D.
      ("adapter", ["bottleneck": "3"], l * (d * 3 + 3 + 3 * d + d) + head),
    ]
    for (name, options, count) in expected {
      let method = try makeMethod(name, backbone: tinyBackbone(), classes: c, options: options)
      XCTAssertEqual(method.trainableCount, count, "\(name) \(options)")
      XCTAssertEqual(method.backboneCount, backboneTotal)
      // Checkpoint names live under the method's prefix.
      for (n, _) in method.trainableTensors() {
        XCTAssertTrue(n.hasPrefix(method.prefix + "."), n)
      }
    }
  }

  func testFrozenTensorsStayBitIdenticalAfterSteps() throws {
    // For `full` only the backbone's own classifier (replaced by the method's head) is frozen.
    for name in MethodRegistry.names {
      let backbone = tinyBackbone()
      let before = backbone.namedParameters().map { ($0.name, $0.tensor.scalars) }
      let method = try makeMethod(name, backbone: backbone, classes: c)
      let trainedNames = Set(
        method.trainableTensors().map { $0.name }.filter { $0.contains(".backbone.") }
          .map { String($0.split(separator: ".", maxSplits: 2)[2]) })
      let optimizer = AdamW(parameters: method.trainableTensors(), lr: 0.05)
      method.setTraining(true)
      for step in 0..<3 {
        let loss = method(tinyTaskInput(for: method, batch: 4, seed: UInt64(step))).crossEntropy(
          targets: [0, 1, 2, 3])
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
      }
      var changedTrainable = false
      for ((n, old), (_, t)) in zip(before, backbone.namedParameters()) {
        if trainedNames.contains(n) {
          if old != t.scalars { changedTrainable = true }
        } else {
          XCTAssertEqual(old, t.scalars, "\(name): frozen \(n) changed")
        }
      }
      if !trainedNames.isEmpty { XCTAssertTrue(changedTrainable, name) }
      XCTAssertNil(backbone.blocks[0].attn.qkv.weight.grad)
    }
  }

  func testGradientsMatchFiniteDifferences() throws {
    // IDPT max-pools over tokens and neighbours, where finite differences cross kinks at every
    // step: IDPTTests checks it on a one-patch backbone, where every max is over one entry.
    // P2P max-pools over neighbours and splats onto a canvas full of ReLU kinks (and takes point
    // clouds): P2PTests checks it at a probe point it shows to be smooth.
    try checkGradients(
      MethodRegistry.names.filter { $0 != "idpt" && $0 != "p2p" }.map { ($0, [:]) })
  }

  /// VPT's projection and LoRA on the other linears.
  func testGradientsOfVariantsMatchFiniteDifferences() throws {
    try checkGradients([("vpt-deep", ["project": "3"]), ("lora", ["targets": "k,proj,fc1,fc2"])])
  }

  func checkGradients(_ cases: [(String, [String: String])]) throws {
    let x = tinyInput(batch: 2)
    for (name, extra) in cases {
      let backbone = tinyBackbone()
      // HST's side network at its default widths has ~10⁵ elements: check a narrow one.
      let narrow = name == "hst" ? ["widths": "4,4,8,8", "heads": "1,2,2,4"] : [:]
      let all = ["rank": "2", "bottleneck": "3", "prompt_length": "2"].merging(narrow) { $1 }
        .merging(extra) { $1 }
      let keys = Set(try MethodRegistry.descriptor(name).options.map(\.key))
      let method = try makeMethod(
        name, backbone: backbone, classes: 3, options: all.filter { keys.contains($0.key) })
      method.setTraining(false)
      // Zero-initialised up projections make the other factor's gradient vanish: give them
      // values so both are checked.
      var rng = RandomGenerator(seed: 11)
      for (n, t) in method.trainableTensors() where n.hasSuffix("lora_B") || n.contains(".up.") {
        t.assign(Tensor.randn(t.shape, std: 0.5, generator: &rng))
      }
      // For full fine-tuning, a few representative backbone tensors (all of them would be slow).
      var params = method.trainableTensors()
      if name == "full" {
        params = params.filter {
          $0.name.hasSuffix("blocks.0.norm1.weight") || $0.name.hasSuffix("blocks.1.attn.qkv.bias")
            || $0.name.hasSuffix("pos_embed") || $0.name.hasPrefix("full.head")
        }
        XCTAssertEqual(params.count, 5)
      }

      // ReLU has a kink at 0: probe the adapter with a smaller step. MP's LayerNorm sits on a
      // projection initialised at 0.02, where 3e-3 is a large relative step.
      let eps: Float = ["adapter", "mp", "mp+"].contains(name) ? 1e-3 : 3e-3
      let check = GradientCheck.run(params.map(\.tensor), epsilon: eps, atol: 3e-3, rtol: 3e-2) {
        _ in
        method(x)
      }
      XCTAssertTrue(check.passed, "\(name): \(check.summary)")
    }
  }

  func testCheckpointRoundTripGivesIdenticalLogits() throws {
    for name in MethodRegistry.names {
      let trained = try makeMethod(name, backbone: tinyBackbone(), classes: c, seed: 3)
      let x = tinyTaskInput(for: trained, batch: 3)
      // Perturb every trainable tensor and state buffer (running statistics) so the round trip
      // carries real values.
      var rng = RandomGenerator(seed: 21)
      for (_, t) in trained.checkpointTensors() {
        t.assign(t + Tensor.randn(t.shape, std: 0.1, generator: &rng))
      }
      let state = trained.trainableState()
      let fresh = try makeMethod(name, backbone: tinyBackbone(), classes: c, seed: 99)
      try fresh.loadTrainableState(state)
      trained.setTraining(false)
      fresh.setTraining(false)
      let a = withNoGrad { trained(x) }
      let b = withNoGrad { fresh(x) }
      XCTAssertEqual(a.scalars, b.scalars, name)
    }
  }

  func testLinearProbeKeepsNoBackboneActivations() throws {
    let x = tinyInput(batch: 4)
    let linear = try makeMethod("linear", backbone: tinyBackbone(), classes: c)
    let base = TapeStats.savedBytes
    let logits = linear(x)
    // Only the head's input may be saved (for its weight gradient): [B, D] floats.
    XCTAssertLessThanOrEqual(TapeStats.savedBytes - base, 4 * d * 4)
    let vpt = try makeMethod("vpt-shallow", backbone: tinyBackbone(), classes: c)
    let base2 = TapeStats.savedBytes
    let logits2 = vpt(x)
    XCTAssertGreaterThan(TapeStats.savedBytes - base2, 20 * 4 * d * 4)
    _ = (logits, logits2)
  }

  func testLoRAMergedMatchesUnmerged() throws {
    for targets in ["q,v", "qkv,proj,fc1,fc2", "k"] {
      let lora =
        try makeMethod(
          "lora", backbone: tinyBackbone(), classes: c, options: ["rank": "2", "targets": targets])
        as! LoRA
      var rng = RandomGenerator(seed: 4)
      for (n, t) in lora.trainableTensors() where n.hasSuffix("lora_B") {
        t.assign(Tensor.randn(t.shape, std: 0.3, generator: &rng))
      }
      lora.setTraining(false)
      let x = tinyInput(batch: 3)
      let backbone = lora.backbone as! VisionTransformer
      let plain = withNoGrad { backbone(x) }
      let unmerged = withNoGrad { lora(x) }
      lora.merge()
      let merged = withNoGrad { lora(x) }
      XCTAssertNotEqual(withNoGrad { backbone(x) }.scalars, plain.scalars)
      for (a, b) in zip(unmerged.scalars, merged.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    }
  }

  func testVPTInsertsPromptsAfterTheClassToken() throws {
    let backbone = tinyBackbone(globalPool: .avg)
    let vpt = try makeMethod(
      "vpt-deep", backbone: backbone, classes: c, options: ["prompt_length": "3"])
    let out = withNoGrad { backbone.forward(tinyInput(), hooks: vpt, hiddenStates: true) }
    XCTAssertEqual(out.tokens.shape, [2, 1 + 3 + 4, d])
    XCTAssertEqual(out.prefixTokenCount, 4)
    // VPT's head bias: −log((1 − 0.01) / 0.01).
    XCTAssertEqual(vpt.head.bias!.scalars[0], -4.59512, accuracy: 1e-4)
    // Prompts lie in U(±√(6 / (3·4·4 + 16))) = U(±0.306).
    let p = (vpt as! VisualPromptTuning).promptEmbeddings.scalars
    XCTAssertLessThanOrEqual(p.map(abs).max()!, (6.0 / 64.0).squareRoot())
  }

  func testBadInputIsAClearError() {
    XCTAssertThrowsError(try makeMethod("prompt", backbone: tinyBackbone())) { e in
      XCTAssertTrue("\(e)".contains("unknown method 'prompt'"), "\(e)")
    }
    XCTAssertThrowsError(try makeMethod("lora", backbone: tinyBackbone(), options: ["rnak": "4"])) {
      XCTAssertTrue("\($0)".contains("no option 'rnak'"), "\($0)")
    }
    XCTAssertThrowsError(try makeMethod("lora", backbone: tinyBackbone(), options: ["rank": "x"])) {
      XCTAssertTrue("\($0)".contains("method.rank"), "\($0)")
    }
    XCTAssertThrowsError(
      try makeMethod("lora", backbone: tinyBackbone(), options: ["targets": "q,zz"]))
    // A target given twice is an error, as a block given twice is for LST's layers.
    XCTAssertThrowsError(
      try makeMethod("lora", backbone: tinyBackbone(), options: ["targets": "q,v,q"])
    ) { XCTAssertTrue("\($0)".contains("'q' is given twice"), "\($0)") }
    XCTAssertThrowsError(try makeMethod("linear", backbone: tinyBackbone(), options: ["rank": "4"]))
    let a = try! makeMethod("lora", backbone: tinyBackbone(), options: ["rank": "2"])
    let b = try! makeMethod("lora", backbone: tinyBackbone(), options: ["rank": "4"])
    XCTAssertThrowsError(try b.loadTrainableState(a.trainableState())) {
      XCTAssertTrue("\($0)".contains("mis-shaped"), "\($0)")
    }
  }
}

/// Forwards every hook to `method` but says it uses the points inside blocks, so the backbone
/// runs its unfused blocks.
private final class UnfusedProxy: BackboneHooks {
  let method: TuningMethod
  init(_ method: TuningMethod) { self.method = method }
  var attachPoints: AttachPoints { .all }
  func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor { method.tokens(x, pass: pass) }
  func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    method.beforeBlock(index, x, pass: pass)
  }
  func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    method.afterBlock(index, x, pass: pass)
  }
  func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    method.attentionBranch(index, input: input, output: output)
  }
  func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    method.mlpBranch(index, input: input, output: output)
  }
  func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    method.linear(site, input: input, output: output)
  }
}

final class FusedBlocksTests: XCTestCase {
  /// What one training step gives: the logits, every trainable tensor's gradient (empty where
  /// none) and the bytes the tape held at the loss.
  private typealias Step = (logits: [Float], grads: [[Float]], tape: Int)

  /// One step of `method` on `task` (labels 0, 1, 2) with `hooks` (the method itself unless
  /// given), its gradients cleared first and its generator reseeded, so runs draw alike (IDPT's
  /// head dropout, P2P's training views).
  private func step(
    _ method: TuningMethod, _ task: Tensor, hooks: (any BackboneHooks)? = nil
  ) -> Step {
    let step = trainingStep(method, task, targets: [0, 1, 2], hooks: hooks)
    return (step.logits, step.grads.map(\.values), step.tape)
  }

  /// The fused step's logits and gradients agree with the unfused one's to 1e-4.
  private func assertAgree(_ fused: Step, _ unfused: Step, _ name: String) {
    for (a, b) in zip(fused.logits, unfused.logits) {
      XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), name)
    }
    for (ga, gb) in zip(fused.grads, unfused.grads) {
      XCTAssertEqual(ga.count, gb.count, name)
      let scale = gb.map(abs).max() ?? 0
      for (a, b) in zip(ga, gb) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(scale, 1e-3), name) }
    }
  }

  /// The methods whose hooks leave the blocks' linear layers alone, so blocks run fused.
  private func fusedMethodNames() -> [String] {
    MethodRegistry.names.filter { name in
      (try? makeMethod(name, backbone: tinyBackbone()))?.attachPoints.isDisjoint(with: .linear)
        == true
    }
  }

  /// A method that does not hook the blocks' linear layers gets the same logits and gradients
  /// from the fused blocks (residual-branch hooks included) as from the unfused ones, and keeps
  /// no more on the tape.
  func testMethodsWithoutLinearHooksRunFusedToTheSameNumbers() throws {
    let fusedNames = fusedMethodNames()
    XCTAssertTrue(
      Set([
        "linear", "full", "bitfit", "ln-tune", "vpt-deep", "mp", "lst", "unipt", "adapter", "mp+",
      ])
      .isSubset(of: Set(fusedNames)), "\(fusedNames)")
    XCTAssertFalse(fusedNames.contains("lora"))
    for name in fusedNames where name != "hst" {
      let method = try makeMethod(name, backbone: tinyBackbone())
      // The backbone's input (P2P draws its clouds as images, with gradients to its encoder).
      let task = tinyTaskInput(for: method, batch: 3)
      let fused = step(method, task)
      let unfused = step(method, task, hooks: UnfusedProxy(method))
      assertAgree(fused, unfused, name)
      // With frozen weights the unfused ops already keep no activations for weight gradients;
      // when the weights train (full, ln-tune) the fused ops keep strictly less.
      XCTAssertLessThanOrEqual(fused.tape, unfused.tape, name)
      if name == "full" || name == "ln-tune" { XCTAssertLessThan(fused.tape, unfused.tape, name) }
    }
  }

  /// `train.recompute`: every setting gives bit for bit the logits and gradients of keeping
  /// everything, and the tape shrinks by the qkv projection (3 token widths a block), the MLP's
  /// hidden pre-activation (4 at the tiny model's MLP ratio) or both.
  func testBlockRecomputeGivesTheSameGradientsWithASmallerTape() throws {
    let width = 16
    for name in fusedMethodNames() where name != "hst" {
      let backbone = tinyBackbone()
      let method = try makeMethod(name, backbone: backbone)
      guard method.needsBackboneGradient else { continue }
      let task = tinyTaskInput(for: method, batch: 3)
      var results: [BlockRecompute: Step] = [:]
      for recompute in BlockRecompute.allCases {
        backbone.setBlockRecompute(recompute)
        XCTAssertTrue(backbone.blocks.allSatisfy { $0.recompute == recompute })
        results[recompute] = step(method, task)
      }
      let kept = results[.none]!
      let blocks = backbone.blocks.count
      for recompute in [BlockRecompute.qkv, .mlp, .all] {
        let r = results[recompute]!
        XCTAssertEqual(r.logits, kept.logits, "\(name) \(recompute)")
        XCTAssertEqual(r.grads, kept.grads, "\(name) \(recompute)")
        XCTAssertLessThan(r.tape, kept.tape, "\(name) \(recompute)")
      }
      // Each block's rebuild keeps its norm's input (already kept by the norm) in place of
      // 3 (qkv) or 4 (mlp) token widths; VPT's prompts add rows, so compare per row.
      let savedQKV = kept.tape - results[.qkv]!.tape
      let savedMLP = kept.tape - results[.mlp]!.tape
      XCTAssertEqual(savedQKV * 3, (3 - 1) * (savedMLP), "\(name): qkv saves 2 widths, mlp 3")
      XCTAssertEqual(kept.tape - results[.all]!.tape, savedQKV + savedMLP, name)
      // Whole rows of 3 token widths (IDPT's prompts make later blocks longer).
      XCTAssertEqual(savedMLP % (3 * width * 4), 0, name)
      XCTAssertGreaterThanOrEqual(savedMLP, blocks * 3 * width * 4, name)
    }
  }

  /// LoRA without dropout adds its q and v deltas inside the fused norm+qkv op, so both halves
  /// run fused: the logits and gradients of the unfused path with its `linear` hook, a smaller
  /// tape, and every `train.recompute` setting giving the same gradients bit for bit.
  func testLoRARunsFusedAndRecomputes() throws {
    let backbone = tinyBackbone()
    let method = try makeMethod("lora", backbone: backbone)
    // B starts at zero; give it values so the deltas matter.
    var rng = RandomGenerator(seed: 9)
    for (name, t) in method.trainableTensors() where name.hasSuffix("lora_B") {
      t.pointer.update(from: Tensor.randn(t.shape, generator: &rng).scalars, count: t.count)
    }
    let task = tinyTaskInput(for: method, batch: 3)
    let unfused = step(method, task, hooks: UnfusedProxy(method))
    var results: [BlockRecompute: Step] = [:]
    for recompute in BlockRecompute.allCases {
      backbone.setBlockRecompute(recompute)
      results[recompute] = step(method, task)
    }
    let fused = results[.none]!
    assertAgree(fused, unfused, "lora")
    XCTAssertFalse(unfused.grads.contains { $0.isEmpty })
    XCTAssertLessThan(fused.tape, unfused.tape)
    for recompute in [BlockRecompute.qkv, .mlp, .all] {
      XCTAssertEqual(results[recompute]!.grads, fused.grads, "\(recompute)")
      XCTAssertLessThan(results[recompute]!.tape, fused.tape, "\(recompute)")
    }
    // With dropout LoRA draws masks in its hook, and the attention half runs unfused.
    let dropped = try makeMethod("lora", backbone: tinyBackbone(), options: ["dropout": "0.1"])
    XCTAssertEqual(dropped.hookedLinearSites?.contains(LinearSite(block: 0, role: .qkv)), true)
    XCTAssertEqual(method.hookedLinearSites?.contains(LinearSite(block: 0, role: .qkv)), false)
  }
}
