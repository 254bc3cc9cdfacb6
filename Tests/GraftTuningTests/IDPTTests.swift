import XCTest

@testable import GraftTuning

final class IDPTTests: XCTestCase {
  /// Trainable elements of IDPT at width d, `parts` token-wide head inputs, `classes` classes and
  /// `prefix` trained prefix tensors of width d.
  func closedForm(d: Int, parts: Int, classes: Int, prefix: Int) -> Int {
    let edgeConv = 2 * d * d + 2 * d  // 1×1 conv without bias, BatchNorm affine
    let generator = 3 * edgeConv + 3 * d * d + 2 * d
    let head =
      (parts * d * 256 + 256) + 2 * 256 + (256 * 256 + 256) + 2 * 256 + (256 * classes + classes)
    return generator + head + prefix * d
  }

  func testTrainableCountsMatchTheOfficialFigures() throws {
    // Point-MAE-small's width with 15 classes: the official README's 1.7M, counted by hand as
    // 1,696,783 with cls_token and cls_pos (1,500,175 for `promptonly`).
    XCTAssertEqual(closedForm(d: 384, parts: 3, classes: 15, prefix: 2), 1_696_783)
    XCTAssertEqual(closedForm(d: 384, parts: 1, classes: 15, prefix: 2), 1_500_175)
    // A ViT of that width trains its class token only (its positions are one table).
    var config = ViTConfig(imgSize: 8, patchSize: 4, embedDim: 384, depth: 1, numHeads: 6)
    config.numClasses = 0
    var rng = RandomGenerator(seed: 1)
    let vit = try VisionTransformer(config: config, generator: &rng)
    for (head, parts) in [("all", 3), ("promptonly", 1), ("promptcls", 2), ("pointcls", 2)] {
      let m = try makeMethod("idpt", backbone: vit, classes: 15, options: ["head": head])
      XCTAssertEqual(
        m.trainableCount, closedForm(d: 384, parts: parts, classes: 15, prefix: 1), head)
    }
  }

  /// On Point-MAE at Point-MAE-small's width (one block: the count does not depend on depth),
  /// with 15 classes, IDPT trains exactly the official 1,696,783 (class token and position
  /// included), and 1,500,175 with the prompt-only head.
  func testPointMAESmallCountsAreTheOfficialOnes() throws {
    let config = PointMAEConfig(
      transDim: 384, depth: 1, numHeads: 6, groupSize: 8, numGroup: 8, numClasses: 0, npoints: 64)
    var rng = RandomGenerator(seed: 1)
    let backbone = try PointMAE(config: config, generator: &rng)
    let all = try makePointMethod("idpt", backbone: backbone, classes: 15)
    XCTAssertEqual(all.trainableCount, 1_696_783)
    let promptOnly = try makePointMethod(
      "idpt", backbone: backbone, classes: 15, options: ["head": "promptonly"])
    XCTAssertEqual(promptOnly.trainableCount, 1_500_175)
  }

  func testPromptGoesAfterTheClassTokenBeforeTheChosenBlock() throws {
    let backbone = tinyBackbone(globalPool: .avg)
    let m = try makeMethod("idpt", backbone: backbone, classes: 3, options: ["prompt_layer": "1"])
    m.setTraining(false)
    let out = withNoGrad { backbone.forward(tinyInput(), hooks: m, hiddenStates: true) }
    // Block 0 sees class + 4 patches; block 1 class, prompt, 4 patches.
    XCTAssertEqual(out.hiddenStates[0].shape, [2, 5, 16])
    XCTAssertEqual(out.hiddenStates[1].shape, [2, 6, 16])
    XCTAssertEqual(out.prefixTokenCount, 2)
    XCTAssertEqual(withNoGrad { m(tinyInput()) }.shape, [2, 3])
    XCTAssertThrowsError(
      try makeMethod("idpt", backbone: backbone, classes: 3, options: ["prompt_layer": "2"])
    ) { XCTAssertTrue("\($0)".contains("method.prompt_layer = 2"), "\($0)") }
  }

  /// The generator written out with plain ops: brute-force kNN in feature space, edge features,
  /// the 1×1 convolutions, BatchNorm from running statistics (eval mode), LeakyReLU, maxima.
  func testGeneratorMatchesAHandComputation() throws {
    let m =
      try makeMethod("idpt", backbone: tinyBackbone(), classes: 3, options: ["k": "3"])
      as! IDPT
    m.setTraining(false)
    var rng = RandomGenerator(seed: 4)
    // Non-trivial running statistics, so the test sees them used.
    withNoGrad {
      for conv in m.edgeConvs {
        conv.norm.runningMean.assign(Tensor.randn([16], std: 0.1, generator: &rng))
        conv.norm.runningVar.assign(Tensor.rand([16], low: 0.5, high: 2, generator: &rng))
      }
    }
    let tokens = Tensor.randn([2, 6, 16], generator: &rng)
    let got = withNoGrad { m.prompt(tokens) }

    func edgeConv(_ x: [[Float]], _ conv: IDPTEdgeConv) -> [[Float]] {
      let w = conv.linear.weight.scalars
      let (mean, variance) = (conv.norm.runningMean.scalars, conv.norm.runningVar.scalars)
      let (gamma, beta) = (conv.norm.weight!.scalars, conv.norm.bias!.scalars)
      return x.indices.map { i in
        let order = x.indices.sorted { a, b in
          let da = zip(x[a], x[i]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
          let db = zip(x[b], x[i]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
          return da != db ? da < db : a < b
        }
        var best = [Float](repeating: -.infinity, count: 16)
        for j in order.prefix(3) {
          let edge = zip(x[j], x[i]).map { $0 - $1 } + x[i]
          for c in 0..<16 {
            var v = (0..<32).map { w[c * 32 + $0] * edge[$0] }.reduce(0, +)
            v = (v - mean[c]) / (variance[c] + 1e-5).squareRoot() * gamma[c] + beta[c]
            v = v > 0 ? v : 0.2 * v
            best[c] = max(best[c], v)
          }
        }
        return best
      }
    }
    for b in 0..<2 {
      let s = tokens.scalars
      var x = (0..<6).map { i in Array(s[(b * 6 + i) * 16..<(b * 6 + i + 1) * 16]) }
      var outs: [[[Float]]] = []
      for conv in m.edgeConvs {
        x = edgeConv(x, conv)
        outs.append(x)
      }
      let w = m.fuse.linear.weight.scalars
      let norm = m.fuse.norm
      var expected = [Float](repeating: -.infinity, count: 16)
      for i in 0..<6 {
        let cat = outs[0][i] + outs[1][i] + outs[2][i]
        for c in 0..<16 {
          var v = (0..<48).map { w[c * 48 + $0] * cat[$0] }.reduce(0, +)
          v =
            (v - norm.runningMean.scalars[c]) / (norm.runningVar.scalars[c] + 1e-5).squareRoot()
            * norm.weight!.scalars[c] + norm.bias!.scalars[c]
          expected[c] = max(expected[c], v > 0 ? v : 0.2 * v)
        }
      }
      let row = Array(got.scalars[(b * 16)..<((b + 1) * 16)])
      for (a, e) in zip(row, expected) { XCTAssertEqual(a, e, accuracy: 1e-4) }
    }
  }

  /// On a backbone that adds positions before every block, the prompt's rows carry
  /// `prompt_pos` (not zeros) in the pass's positions, and it is never trained.
  func testPromptPositionRidesWithThePromptAndIsNotTrained() throws {
    let backbone = ToySetBackbone()
    var g = RandomGenerator(seed: 3)
    let m =
      try MethodRegistry.make(
        "idpt", backbone: backbone, classes: 3, options: ["prompt_layer": "0", "k": "4"],
        generator: &g) as! IDPT
    m.setTraining(false)
    var rng = RandomGenerator(seed: 2)
    let x = Tensor.randn([2, 6, 4], generator: &rng)
    let out = withNoGrad { backbone.forward(x, hooks: m, hiddenStates: false) }
    let positions = try XCTUnwrap(out.pass.positions(for: out.tokens))
    XCTAssertEqual(positions.narrow(1, start: 0, length: 1).scalars.count, 2 * 16)
    for b in 0..<2 {
      XCTAssertEqual(
        positions.narrow(0, start: b, length: 1).narrow(1, start: 0, length: 1).scalars,
        m.promptPos.scalars)
    }
    XCTAssertFalse(m.trainableTensors().contains { $0.name.contains("prompt_pos") })
    XCTAssertTrue(m.checkpointTensors().contains { $0.name == "idpt.prompt_pos" })
  }

  /// Finite differences on a backbone with one patch, so every maximum (over neighbours, over
  /// tokens, in the head) is over one entry and the function is smooth: the generator, the class
  /// token and the final layer (the 256-wide head MLP is plain Linear/BatchNorm/ReLU, each
  /// tested on its own, and 80k elements would take minutes).
  func testGradientsMatchFiniteDifferences() throws {
    var config = ViTConfig(imgSize: 4, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2)
    config.numClasses = 0
    var rng = RandomGenerator(seed: 1)
    let backbone = try VisionTransformer(config: config, generator: &rng)
    let m = try makeMethod("idpt", backbone: backbone, classes: 3)
    m.setTraining(false)
    let x = Tensor.randn([2, 3, 4, 4], generator: &rng)
    let params = m.trainableTensors().filter { !$0.name.contains("head_") }
    // Every BatchNorm shifted well above zero, so every LeakyReLU and ReLU stays on its linear
    // side under the perturbations (the init leaves pre-activations within a step of zero).
    withNoGrad {
      for (name, t) in m.namedParameters() where name.hasSuffix(".bias") && t.rank == 1 {
        if name.contains(".1.bias") || name.contains("_bn") { t.assign(Tensor.full(t.shape, 10)) }
      }
    }
    XCTAssertEqual(params.count, 2 + 3 * 3 + 3 + 1)  // head, generator, class token
    // The shifted BatchNorms make prompt tokens of magnitude ~10, so the loss carries float32
    // rounding of a few 1e-6 (deterministic, but not smooth below steps of ~1e-3): ε = 1e-3
    // turned that into differences off by 5e-3 with AVX2's OpenBLAS kernels. At ε = 3e-3 the
    // rounding costs under 1e-3 and the curvature less (largest error 1.8e-3 over four seeds).
    let check = GradientCheck.run(params.map(\.tensor), epsilon: 3e-3, atol: 3e-3, rtol: 3e-2) {
      _ in m(x)
    }
    XCTAssertTrue(check.passed, check.summary)
  }
}
