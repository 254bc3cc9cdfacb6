import XCTest

@testable import GraftNN

/// The quadratic of Tools/optimizer_reference.py: parameters `a` [3] and `w` [2, 2], gradient
/// `c·p + d` elementwise.
private struct Quadratic {
  let a = Tensor([1.0, -2.0, 0.5])
  let w = Tensor([0.3, -0.7, 1.5, 0.2], shape: [2, 2])
  static let (ca, da): ([Float], [Float]) = ([1.0, 0.5, 2.0], [0.1, -0.3, 0.0])
  static let (cw, dw): ([Float], [Float]) = ([0.8, 1.2, 0.3, 2.5], [-0.2, 0.05, 0.4, 0.0])

  var named: [(name: String, tensor: Tensor)] { [("a", a), ("w", w)] }
  var values: [Float] { a.scalars + w.scalars }

  func setGradients(skipW: Bool = false) {
    func grad(_ p: Tensor, _ c: [Float], _ d: [Float]) -> Tensor {
      Tensor((0..<p.count).map { c[$0] * p.pointer[$0] + d[$0] }, shape: p.shape)
    }
    a.grad = grad(a, Quadratic.ca, Quadratic.da)
    w.grad = skipW ? nil : grad(w, Quadratic.cw, Quadratic.dw)
  }

  /// Runs `steps` updates and returns the values after each.
  func run(_ optimizer: Optimizer, steps: Int = 5, skipWAt: Int? = nil) -> [[Float]] {
    (0..<steps).map { s in
      setGradients(skipW: s == skipWAt)
      optimizer.step()
      return values
    }
  }
}

final class OptimizerTests: XCTestCase {
  private func assertMatchesTorch(
    _ name: String, _ make: (Quadratic) -> Optimizer, skipWAt: Int? = nil,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let q = Quadratic()
    let ours = q.run(make(q), skipWAt: skipWAt)
    let reference = TorchReference.trajectories[name]!
    for (s, (row, ref)) in zip(ours, reference).enumerated() {
      let err = maxAbsDifference(row, ref)
      XCTAssertLessThan(
        err, 5e-7, "\(name) step \(s): \(row) vs torch \(ref)", file: file, line: line)
    }
  }

  func testSGDMatchesTorch() {
    assertMatchesTorch("sgdPlain") { SGD(parameters: $0.named, lr: 0.1) }
    assertMatchesTorch("sgdMomentum") { SGD(parameters: $0.named, lr: 0.1, momentum: 0.9) }
    assertMatchesTorch("sgdNesterov") {
      SGD(parameters: $0.named, lr: 0.1, momentum: 0.9, nesterov: true)
    }
    assertMatchesTorch("sgdDecayDampening") {
      SGD(parameters: $0.named, lr: 0.05, momentum: 0.8, dampening: 0.1, weightDecay: 0.01)
    }
  }

  func testAdamWMatchesTorch() throws {
    assertMatchesTorch("adamwDefault") { AdamW(parameters: $0.named, lr: 1e-2) }
    assertMatchesTorch("adamwGroups") {
      AdamW(
        groups: [
          ParameterGroup(parameters: [("a", $0.a)], lr: 0.02, weightDecay: 0),
          ParameterGroup(parameters: [("w", $0.w)], lr: 0.05, weightDecay: 0.1),
        ], betas: (0.8, 0.99), eps: 1e-6)
    }
    assertMatchesTorch("adamwSkip", { AdamW(parameters: $0.named, lr: 1e-2) }, skipWAt: 1)

    // The saved moments are PyTorch's exp_avg / exp_avg_sq.
    let q = Quadratic()
    let opt = AdamW(parameters: q.named, lr: 1e-2)
    _ = q.run(opt)
    let state = opt.stateDict()
    XCTAssertEqual(
      Set(state.keys),
      ["0.a.exp_avg", "0.a.exp_avg_sq", "0.a.step", "0.w.exp_avg", "0.w.exp_avg_sq", "0.w.step"])
    let m = state["0.a.exp_avg"]!.scalars + state["0.w.exp_avg"]!.scalars
    let v = state["0.a.exp_avg_sq"]!.scalars + state["0.w.exp_avg_sq"]!.scalars
    for (ours, torch) in zip(m + v, TorchReference.adamwExpAvg + TorchReference.adamwExpAvgSq) {
      XCTAssertEqual(ours, torch, accuracy: 1e-6 * Swift.abs(torch) + 1e-9)
    }
    XCTAssertEqual(state["0.a.step"]!.shape, [])

    // A parameter without a gradient keeps its own, smaller step count.
    let skip = Quadratic()
    let skipping = AdamW(parameters: skip.named, lr: 1e-2)
    _ = skip.run(skipping, skipWAt: 1)
    let steps = skipping.stateDict()
    XCTAssertEqual(
      [steps["0.a.step"]!.item, steps["0.w.step"]!.item].map { Int($0) },
      TorchReference.adamwSkipSteps)
  }

  func testSGDMomentumByHand() {
    // L = p²/2, p₀ = 1, lr 0.1, momentum 0.9: b₁ = 1, p₁ = 0.9; b₂ = 0.9·1 + 0.9 = 1.8,
    // p₂ = 0.9 − 0.18 = 0.72; b₃ = 0.9·1.8 + 0.72 = 2.34, p₃ = 0.72 − 0.234 = 0.486.
    let p = Tensor([1])
    let opt = SGD(parameters: [("p", p)], lr: 0.1, momentum: 0.9)
    var values: [Float] = []
    for _ in 0..<3 {
      p.grad = p.copy()
      opt.step()
      values.append(p.item)
    }
    XCTAssertEqual(values[0], 0.9, accuracy: 1e-6)
    XCTAssertEqual(values[1], 0.72, accuracy: 1e-6)
    XCTAssertEqual(values[2], 0.486, accuracy: 1e-6)
  }

  func testAdamWFirstStepByHand() {
    // At t = 1 the corrected moments are g and g², so the step is lr·g / (|g| + eps) after the
    // decoupled decay p·(1 − lr·wd): p = 2, g = −0.5, lr 0.1, wd 0.5 → 2·0.95 + 0.1 = 2.0.
    // For p = 1, g = 3: 0.95 − 0.1 = 0.85.
    let p = Tensor([2, 1])
    let opt = AdamW(parameters: [("p", p)], lr: 0.1, eps: 0, weightDecay: 0.5)
    p.grad = Tensor([-0.5, 3])
    opt.step()
    XCTAssertEqual(p.scalars[0], 2.0, accuracy: 1e-6)
    XCTAssertEqual(p.scalars[1], 0.85, accuracy: 1e-6)
  }

  func testGradlessParametersAreSkipped() {
    let p = Tensor([1, 2])
    let q = Tensor([3])
    let opt = SGD(parameters: [("p", p), ("q", q)], lr: 1, momentum: 0.5)
    p.grad = Tensor([1, 1])
    opt.step()
    XCTAssertEqual(p.scalars, [0, 1])
    XCTAssertEqual(q.scalars, [3])
    XCTAssertEqual(Set(opt.stateDict().keys), ["0.p.momentum_buffer"])
    opt.zeroGrad()
    XCTAssertNil(p.grad)
  }

  func testLearningRateScaleAndGroupRates() {
    let p = Tensor([1])
    let q = Tensor([1])
    let opt = SGD(
      groups: [
        ParameterGroup(parameters: [("p", p)], lr: 0.1),
        ParameterGroup(parameters: [("q", q)], lr: 1),
      ])
    opt.learningRateScale = 0.5
    p.grad = Tensor([1])
    q.grad = Tensor([1])
    opt.step()
    XCTAssertEqual(p.item, 0.95, accuracy: 1e-7)
    XCTAssertEqual(q.item, 0.5, accuracy: 1e-7)
    opt.groups[1].lr = 0.2
    opt.step()
    XCTAssertEqual(q.item, 0.4, accuracy: 1e-7)
    XCTAssertEqual(opt.effectiveLearningRate(group: 1), 0.1, accuracy: 1e-7)
    opt.apply(StepSchedule(baseLR: 0.1, stepSize: 2, gamma: 0.1), step: 2)
    XCTAssertEqual(opt.learningRateScale, 0.1, accuracy: 1e-7)
  }

  func testDefaultGroupsKeepDecayOffBiasesNormsAndTokens() {
    let model = TinyViT(seed: 1)
    model.setTrainable(matching: "blocks.1.*", false)
    let extra = Module()
    extra.registerParameter("prompt_embeddings", Tensor.zeros([5, 4]))
    extra.registerParameter("lora_A", Tensor.zeros([2, 4]))
    extra.registerParameter("gamma", Tensor.zeros([4]))
    let named = model.namedParameters() + extra.namedParameters(prefix: "method")
    let groups = ParameterGroup.defaultGroups(named: named, lr: 1e-3, weightDecay: 0.05)
    XCTAssertEqual(groups.map(\.name), ["decay", "no_decay"])
    XCTAssertEqual(groups.map(\.weightDecay), [0.05, 0])
    XCTAssertEqual(groups.map(\.lr), [1e-3, 1e-3])
    XCTAssertEqual(
      groups[0].parameters.map(\.name),
      [
        "patch_embed.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
        "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight", "method.lora_A",
      ])
    XCTAssertEqual(
      groups[1].parameters.map(\.name),
      [
        "cls_token", "pos_embed", "patch_embed.bias", "blocks.0.norm1.weight",
        "blocks.0.norm1.bias", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.bias",
        "blocks.0.norm2.weight", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.bias",
        "blocks.0.mlp.fc2.bias", "norm.weight", "norm.bias", "head.bias",
        "method.prompt_embeddings", "method.gamma",
      ])
    XCTAssertTrue(ParameterGroup.isNoDecay(name: "x.bias", tensor: Tensor.zeros([2, 2])))
    XCTAssertFalse(ParameterGroup.isNoDecay(name: "x.weight", tensor: Tensor.zeros([2, 2])))
  }

  /// k steps, save, restore into a fresh optimizer and fresh tensors, continue: the result must
  /// equal an uninterrupted run bit for bit.
  private func assertBitIdenticalContinuation(_ make: (Quadratic) -> Optimizer) throws {
    let uninterrupted = Quadratic()
    let first = make(uninterrupted)
    _ = uninterrupted.run(first, steps: 3, skipWAt: 1)
    let savedState = first.stateDict()
    let savedValues = uninterrupted.named.map { ($0.name, $0.tensor.copy()) }
    let expected = uninterrupted.run(first, steps: 4)

    let resumed = Quadratic()
    for ((_, t), (_, saved)) in zip(resumed.named, savedValues) { t.assign(saved) }
    let second = make(resumed)
    try second.loadStateDict(savedState)
    XCTAssertEqual(resumed.run(second, steps: 4), expected)
  }

  func testStateRoundTripContinuesBitIdentically() throws {
    try assertBitIdenticalContinuation { q in
      AdamW(
        groups: ParameterGroup.defaultGroups(named: q.named, lr: 0.05, weightDecay: 0.1),
        betas: (0.8, 0.95))
    }
    try assertBitIdenticalContinuation { q in
      SGD(parameters: q.named, lr: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true)
    }
    // The same without restoring the state diverges (the test can fail).
    let q = Quadratic()
    let opt = AdamW(parameters: q.named, lr: 0.05)
    _ = q.run(opt, steps: 3)
    let fresh = Quadratic()
    for (t, saved) in zip(fresh.named, q.named) { t.tensor.assign(saved.tensor) }
    XCTAssertNotEqual(
      fresh.run(AdamW(parameters: fresh.named, lr: 0.05), steps: 1), q.run(opt, steps: 1))
  }

  func testOptimizerStateErrors() {
    let q = Quadratic()
    let opt = AdamW(parameters: q.named, lr: 0.01)
    _ = q.run(opt, steps: 2)
    var state = opt.stateDict()
    state["0.w.exp_avg_sq"] = nil
    state["0.a.exp_avg"] = Tensor.zeros([4])
    state["1.a.exp_avg"] = Tensor.zeros([3])
    let target = AdamW(parameters: Quadratic().named, lr: 0.01)
    XCTAssertThrowsError(try target.loadStateDict(state)) { error in
      let e = error as! StateDictError
      XCTAssertEqual(e.missing, ["0.w.exp_avg_sq"])
      XCTAssertEqual(e.unexpected, ["1.a.exp_avg"])
      XCTAssertEqual(e.misshaped, [.init(name: "0.a.exp_avg", expected: [3], got: [4])])
    }
    XCTAssertTrue(target.stateDict().isEmpty)
  }
}
