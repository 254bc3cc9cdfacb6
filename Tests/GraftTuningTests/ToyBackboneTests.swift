import XCTest

@testable import GraftTuning

/// A residual MLP block over a set of vectors: `x + fc2(gelu(fc1(norm(x + positions))))`, its
/// linear layers and MLP branch going through the pass's hooks.
final class ToySetBlock: Module, UnaryModule {
  let norm: LayerNorm
  let fc1: Linear
  let fc2: Linear
  let index: Int

  init(index: Int, width: Int, hidden: Int, generator: inout RandomGenerator) {
    self.index = index
    norm = LayerNorm(width)
    fc1 = Linear(width, hidden, generator: &generator)
    fc2 = Linear(hidden, width, generator: &generator)
    super.init()
    registerModule("norm", norm)
    registerModule("fc1", fc1)
    registerModule("fc2", fc2)
  }

  func callAsFunction(_ x: Tensor, pass: ForwardPass?) -> Tensor {
    var x = x
    if let positions = pass?.positions(for: x) { x = x + positions }
    let h = norm(x)
    var a = fc1(h)
    if let pass { a = pass.linear(LinearSite(block: index, role: .mlpIn), input: h, output: a) }
    let g = a.gelu()
    var m = fc2(g)
    if let pass {
      m = pass.linear(LinearSite(block: index, role: .mlpOut), input: g, output: m)
      m = pass.mlpBranch(index, input: x, output: m)
    }
    return x + m
  }

  func callAsFunction(_ x: Tensor) -> Tensor { self(x, pass: nil) }
}

/// A backbone that is not an image model: a set of N vectors [B, N, F] embedded by a Linear,
/// with a positional embedding (a Linear of the same vectors) added before every block as
/// Point-MAE does, a few `ToySetBlock`s, a final LayerNorm and mean pooling; no prefix token.
final class ToySetBackbone: Module, SequenceBackbone {
  let embedding: Linear
  let positionEmbedding: Linear
  let blocks: ModuleList<ToySetBlock>
  let norm: LayerNorm
  let hidden: Int
  /// When false the blocks ignore the pass (a backbone that lies about its capabilities).
  var callsHooks = true

  init(features: Int = 4, width: Int = 16, hidden: Int = 32, depth: Int = 2, seed: UInt64 = 1) {
    var g = RandomGenerator(seed: seed)
    embedding = Linear(features, width, generator: &g)
    positionEmbedding = Linear(features, width, generator: &g)
    blocks = ModuleList(
      (0..<depth).map { ToySetBlock(index: $0, width: width, hidden: hidden, generator: &g) })
    norm = LayerNorm(width)
    self.hidden = hidden
    super.init()
    registerModule("embedding", embedding)
    registerModule("position_embedding", positionEmbedding)
    registerModule("blocks", blocks)
    registerModule("norm", norm)
  }

  var width: Int { embedding.outFeatures }
  var featureWidth: Int { width }
  var depth: Int { blocks.count }
  var prefixTokens: Int { 0 }
  var embeddingFanIn: Int { embedding.inFeatures }
  var capabilities: BackboneCapabilities { [.tokenInsertion, .blockInternals, .reducibleBlocks] }
  var familyName: String { "toy set" }

  func embed(_ input: Tensor) -> EmbeddedTokens {
    EmbeddedTokens(
      tokens: embedding(input), layout: .sequence, positions: positionEmbedding(input))
  }

  func block(_ index: Int, _ x: Tensor, pass: ForwardPass?) -> Tensor {
    blocks[index](x, pass: callsHooks ? pass : nil)
  }

  func finalNorm(_ x: Tensor) -> Tensor { norm(x) }

  func pool(_ tokens: Tensor, prefixTokens: Int) -> Tensor {
    tokens.narrow(1, start: prefixTokens, length: tokens.shape[1] - prefixTokens).mean(axis: 1)
  }

  func linearLayer(at site: LinearSite) -> Linear? {
    guard blocks.indices.contains(site.block) else { return nil }
    switch site.role {
    case .mlpIn: return blocks[site.block].fc1
    case .mlpOut: return blocks[site.block].fc2
    default: return nil
    }
  }

  func linearPath(at site: LinearSite) -> String? {
    guard linearLayer(at: site) != nil else { return nil }
    return "blocks.\(site.block).\(site.role == .mlpIn ? "fc1" : "fc2")"
  }

  func parameterPatterns(_ role: ParameterRole) -> [String] {
    switch role {
    case .biases: ["*.bias"]
    case .norms: ["blocks.*.norm.*", "norm.*"]
    case .blockNorms: ["blocks.*.norm.*"]
    case .prefixTokens: []
    case .classifier: []
    }
  }

  /// Fresh blocks at width D / r (pruning keeps the first channels).
  func reducedBlocks(
    _ layers: [Int], reduction: Int, pruned: Bool, generator: inout RandomGenerator
  ) throws -> ReducedBlocks {
    guard width % reduction == 0, hidden % reduction == 0 else {
      throw ConfigError("toy: reduction \(reduction) does not divide \(width) and \(hidden)")
    }
    var out: [Int: any UnaryModule] = [:]
    for i in layers {
      out[i] = ToySetBlock(
        index: i, width: width / reduction, hidden: hidden / reduction, generator: &generator)
    }
    return ReducedBlocks(blocks: out, finalNorm: nil, normEps: 1e-5, pruning: nil)
  }
}

/// The same method files serve a backbone that is not a ViT.
final class ToyBackboneTests: XCTestCase {
  /// Sets of 6 vectors around one of three prototype directions; the label is the prototype.
  func task(batch: Int, seed: UInt64) -> (Tensor, [Int]) {
    var g = RandomGenerator(seed: seed)
    let prototypes: [[Float]] = [[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 1]]
    var values: [Float] = []
    var labels: [Int] = []
    for _ in 0..<batch {
      let c = g.nextInt(below: 3)
      labels.append(c)
      for _ in 0..<6 {
        for f in 0..<4 { values.append(prototypes[c][f] + Tensor.randn([1], generator: &g).item) }
      }
    }
    return (Tensor(values, shape: [batch, 6, 4]), labels)
  }

  /// Loss and accuracy of `method` on a fixed evaluation set.
  func evaluate(_ method: TuningMethod) -> (loss: Float, accuracy: Double) {
    let (x, labels) = task(batch: 96, seed: 999)
    method.setTraining(false)
    let logits = withNoGrad { method(x) }
    let predicted = logits.argmax(axis: 1)
    let correct = zip(predicted, labels).filter { $0 == $1 }.count
    return (logits.crossEntropy(targets: labels).item, Double(correct) / Double(labels.count))
  }

  func testMethodsTrainOnANonImageBackbone() throws {
    let cases: [(String, [String: String])] = [
      ("linear", [:]), ("vpt-deep", ["prompt_length": "3"]),
      ("lora", ["targets": "fc1,fc2", "rank": "2"]), ("adapter", ["bottleneck": "4"]),
      ("lst", ["reduction": "2", "init": "random"]), ("unipt", [:]),
    ]
    for (name, options) in cases {
      let backbone = ToySetBackbone()
      let frozen = backbone.namedParameters().map { ($0.name, $0.tensor.scalars) }
      var g = RandomGenerator(seed: 3)
      let method = try MethodRegistry.make(
        name, backbone: backbone, classes: 3, options: options, generator: &g)
      // The head (16 → 3) alone for the linear probe; more for every other method.
      XCTAssertEqual(method.trainableCount == 3 * 16 + 3, name == "linear", name)
      let before = evaluate(method)
      let optimizer = AdamW(parameters: method.trainableTensors(), lr: 1e-2)
      for step in 0..<60 {
        method.setTraining(true)
        let (x, labels) = task(batch: 16, seed: UInt64(step))
        let loss = method(x).crossEntropy(targets: labels)
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
      }
      let after = evaluate(method)
      XCTAssertLessThan(after.loss, 0.5 * before.loss, "\(name): \(before) → \(after)")
      XCTAssertGreaterThan(after.accuracy, 0.9, "\(name): \(before) → \(after)")
      // The backbone stays frozen, bit for bit.
      for ((n, old), (_, t)) in zip(frozen, backbone.namedParameters()) {
        XCTAssertEqual(old, t.scalars, "\(name): frozen \(n) changed")
      }
    }
  }

  /// VPT's prompts are reported to the pass: the positions added before every block get zero
  /// rows at the prompts, and mean pooling leaves the prompts out.
  func testInsertedRowsKeepPositionsAndPoolingRight() throws {
    let backbone = ToySetBackbone()
    var g = RandomGenerator(seed: 3)
    let vpt = try MethodRegistry.make(
      "vpt-shallow", backbone: backbone, classes: 3, options: ["prompt_length": "2"],
      generator: &g)
    let (x, _) = task(batch: 2, seed: 1)
    let out = withNoGrad { backbone.forward(x, hooks: vpt, hiddenStates: false) }
    XCTAssertEqual(out.tokens.shape, [2, 2 + 6, 16])
    XCTAssertEqual(out.prefixTokenCount, 2)
    let content = out.tokens.narrow(1, start: 2, length: 6).mean(axis: 1)
    XCTAssertEqual(out.features.scalars, content.scalars)
    // Positions laid out for the lengthened sequence: zeros where the prompts are.
    let positions = try XCTUnwrap(out.pass.positions(for: out.tokens))
    XCTAssertEqual(positions.shape, [2, 8, 16])
    XCTAssertTrue(positions.narrow(1, start: 0, length: 2).scalars.allSatisfy { $0 == 0 })
    let original = withNoGrad { backbone.positionEmbedding(x) }
    XCTAssertEqual(positions.narrow(1, start: 2, length: 6).scalars, original.scalars)
  }

  func testMismatchesAreClearErrors() {
    var g = RandomGenerator(seed: 3)
    // HST needs an image on a 2-D patch grid.
    XCTAssertThrowsError(
      try MethodRegistry.make("hst", backbone: ToySetBackbone(), classes: 3, generator: &g)
    ) {
      let message = "\($0)"
      XCTAssertTrue(
        message.contains("method 'hst' needs a backbone with image patch grid"), message)
      XCTAssertTrue(message.contains("toy set backbone offers"), message)
    }
    // LoRA's default targets are slices of a fused qkv the toy does not have.
    XCTAssertThrowsError(
      try MethodRegistry.make("lora", backbone: ToySetBackbone(), classes: 3, generator: &g)
    ) {
      XCTAssertTrue("\($0)".contains("no qkv layer in block 0 for target 'q'"), "\($0)")
    }
  }

  /// A backbone that declares block internals but never calls the hooks is caught: the pass
  /// records which points were reached, and the method reports what it missed.
  func testABackboneThatSkipsItsHooksIsReported() throws {
    let backbone = ToySetBackbone()
    var g = RandomGenerator(seed: 3)
    let lora = try MethodRegistry.make(
      "lora", backbone: backbone, classes: 3, options: ["targets": "fc1"], generator: &g)
    let (x, _) = task(batch: 2, seed: 1)
    let good = withNoGrad { backbone.forward(x, hooks: lora, hiddenStates: false) }
    XCTAssertEqual(lora.attachmentProblems(good.pass), [])
    backbone.callsHooks = false
    let bad = withNoGrad { backbone.forward(x, hooks: lora, hiddenStates: false) }
    let problems = lora.attachmentProblems(bad.pass)
    XCTAssertEqual(problems.count, 2, "\(problems)")
    XCTAssertTrue(problems[0].contains("never called the linear hook"), "\(problems)")
    XCTAssertTrue(problems[1].contains("block 0 mlpIn"), "\(problems)")
  }
}
