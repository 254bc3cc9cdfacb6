import Foundation
import GraftText
import XCTest

/// Largest |a − b| over the largest |b|.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count, "\(a.count) against \(b.count) values")
  var diff: Float = 0
  var scale: Float = 0
  for (x, y) in zip(a, b) {
    diff = max(diff, abs(x - y))
    scale = max(scale, abs(y))
  }
  return diff / max(scale, 1e-12)
}

/// A hook adding a low-rank delta `x·Aᵀ·Bᵀ` to the q and v slices of every `c_attn`, as LoRA
/// does on a ViT's fused qkv.
final class QVDeltaHook: BackboneHooks {
  let a: [Tensor]
  let b: [Tensor]
  var linearCalls: [LinearSite] = []

  init(depth: Int, width: Int, rank: Int, generator: inout RandomGenerator) {
    // Two deltas (q and v) per block.
    a = (0..<(2 * depth)).map { _ in
      Tensor.randn([rank, width], std: 0.3, generator: &generator).requiringGrad()
    }
    b = (0..<(2 * depth)).map { _ in
      Tensor.randn([width, rank], std: 0.3, generator: &generator).requiringGrad()
    }
  }

  var attachPoints: AttachPoints { .linear }

  func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    linearCalls.append(site)
    guard site.role == .qkv else { return output }
    let d = input.shape[input.rank - 1]
    let (q, v) = (2 * site.block, 2 * site.block + 1)
    func delta(_ i: Int) -> Tensor {
      input.matmul(a[i], transposeOther: true).matmul(b[i], transposeOther: true)
    }
    let zeros = Tensor.zeros(Array(output.shape.dropLast()) + [d])
    return output + Tensor.concat([delta(q), zeros, delta(v)], axis: output.rank - 1)
  }
}

final class GPT2Tests: XCTestCase {
  let folder = textFixtures.appendingPathComponent("gpt2-tiny")

  private func reference() throws -> (ids: [[Int]], mask: [[Int]], logits: Tensor, masked: Tensor) {
    let file = try SafetensorsFile(
      contentsOf: textFixtures.appendingPathComponent("gpt2_logits.safetensors"))
    let shape = try file.info("input_ids").shape
    let flat = try file.intArray("input_ids")
    let mask = try file.intArray("attention_mask")
    let rows = (0..<shape[0]).map { Array(flat[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    let maskRows = (0..<shape[0]).map { Array(mask[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    return (rows, maskRows, try file.tensor("logits"), try file.tensor("masked_logits"))
  }

  func testConfigAndParameterNames() throws {
    let model = try GPT2.load(folder: folder)
    XCTAssertEqual(model.config.nEmbd, 32)
    XCTAssertEqual(model.config.nLayer, 2)
    XCTAssertEqual(model.config.nHead, 4)
    XCTAssertEqual(model.config.vocabSize, 600)
    XCTAssertEqual(model.config.activation, .geluNew)
    XCTAssertEqual(model.config.eosTokenIDs, [0])
    let listed = try GPT2Config(json: [
      "model_type": .string("gpt2"), "eos_token_id": .array([.number(3), .number(7)]),
    ])
    XCTAssertEqual(listed.eosTokenIDs, [3, 7])
    let names = model.namedParameters().map(\.name)
    XCTAssertEqual(names.first, "transformer.wte.weight")
    XCTAssertTrue(names.contains("transformer.h.1.attn.c_attn.weight"))
    XCTAssertEqual(model.linearLayer(at: LinearSite(block: 1, role: .qkv))?.weight.shape, [96, 32])
    XCTAssertEqual(
      model.linearPath(at: LinearSite(block: 0, role: .mlpOut)), "transformer.h.0.mlp.c_proj")
    XCTAssertNil(model.linearLayer(at: LinearSite(block: 2, role: .qkv)))
    // The checkpoint layout comes back exactly.
    let file = try SafetensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors"))
    let state = model.checkpointStateDict()
    XCTAssertEqual(Set(state.keys), Set(file.names))
    for name in file.names {
      XCTAssertEqual(state[name]!.shape, try file.tensor(name).shape, name)
      XCTAssertEqual(state[name]!.scalars, try file.tensor(name).scalars, name)
    }
  }

  func testLogitsMatchTransformers() throws {
    let model = try GPT2.load(folder: folder)
    let ref = try reference()
    let logits = withNoGrad { model.logits(.ids(ref.ids)) }
    XCTAssertEqual(logits.shape, ref.logits.shape)
    let error = relativeError(logits.scalars, ref.logits.scalars)
    XCTAssertLessThanOrEqual(error, 1e-4, "relative error \(error)")
    print("GPT-2 logits: max relative error \(error) against transformers")
  }

  func testPaddingMaskMatchesTransformers() throws {
    let model = try GPT2.load(folder: folder)
    let ref = try reference()
    XCTAssertTrue(ref.mask.contains { $0.contains(0) }, "the fixture pads one row")
    let logits = withNoGrad { model.logits(.ids(ref.ids), attentionMask: ref.mask) }
    let (l, v) = (ref.ids[0].count, model.config.vocabSize)
    // Padded positions' logits mean nothing; compare the real ones.
    for (row, mask) in ref.mask.enumerated() {
      let real = mask.filter { $0 == 1 }.count
      let ours = Array(logits.scalars[(row * l * v)..<((row * l + real) * v)])
      let theirs = Array(ref.masked.scalars[(row * l * v)..<((row * l + real) * v)])
      let error = relativeError(ours, theirs)
      XCTAssertLessThanOrEqual(error, 1e-4, "row \(row): relative error \(error)")
    }
  }

  func testLossAndGradientsMatchTransformers() throws {
    let model = try GPT2.load(folder: folder)
    let ref = try reference()
    let file = try SafetensorsFile(
      contentsOf: textFixtures.appendingPathComponent("gpt2_logits.safetensors"))
    let flat = try file.intArray("labels")
    let l = ref.ids[0].count
    let labels = (0..<ref.ids.count).map { Array(flat[($0 * l)..<(($0 + 1) * l)]) }
    XCTAssertTrue(labels.contains { $0.contains(-100) })
    let logits = model.logits(.ids(ref.ids), attentionMask: ref.mask)
    let loss = GPT2.languageModelingLoss(logits: logits, labels: labels)
    let expected = try file.tensor("loss").item
    XCTAssertEqual(loss.item, expected, accuracy: 1e-5 * abs(expected))
    print("GPT-2 loss \(loss.item) against transformers' \(expected)")
    loss.backward()
    let qkv = model.linearLayer(at: LinearSite(block: 0, role: .qkv))!.weight.grad!
    let pairs: [(String, Tensor)] = [
      ("transformer.h.0.attn.c_attn.weight", withNoGrad { qkv.transposed(0, 1) }),
      ("transformer.wte.weight", model.transformer.wte.weight.grad!),
      ("transformer.h.1.ln_2.weight", model.transformer.h[1].ln2.weight!.grad!),
    ]
    for (name, grad) in pairs {
      let theirs = try file.tensor("grad." + name)
      XCTAssertEqual(grad.shape, theirs.shape, name)
      let error = relativeError(grad.scalars, theirs.scalars)
      XCTAssertLessThanOrEqual(error, 1e-4, "\(name): relative error \(error)")
      print("GPT-2 loss gradient of \(name): max relative error \(error) against PyTorch")
    }
  }

  func testCachedDecodingEqualsFullForward() throws {
    let model = try GPT2.load(folder: folder)
    let ids = try reference().ids
    let full = withNoGrad { model.logits(.ids(ids)) }
    let (b, l, v) = (ids.count, ids[0].count, model.config.vocabSize)
    let cache = GPT2KVCache(layers: model.depth)
    var steps: [Tensor] = []
    withNoGrad {
      steps.append(model.logits(.ids(ids.map { Array($0[0..<5]) }), cache: cache))
      for t in 5..<l {
        steps.append(model.logits(.ids(ids.map { [$0[t]] }), cache: cache))
        XCTAssertEqual(cache.length, t + 1)
      }
    }
    let incremental = Tensor.concat(steps, axis: 1)
    XCTAssertEqual(incremental.shape, [b, l, v])
    let error = relativeError(incremental.scalars, full.scalars)
    XCTAssertLessThanOrEqual(error, 1e-5, "cached against full: relative error \(error)")
  }

  func testEmbeddingsInputAndTrainingThroughTheFrozenDecoder() throws {
    let model = try GPT2.load(folder: folder)
    model.freeze()
    let ids = [[33, 446, 287, 422]]
    let byIDs = withNoGrad { model.logits(.ids(ids)) }
    let byEmbeddings = withNoGrad { model.logits(.embeddings(model.tokenEmbeddings(ids))) }
    XCTAssertEqual(byIDs.scalars, byEmbeddings.scalars)

    // A visual prefix given as embeddings, with deltas on c_attn's q and v: the gradients reach
    // the deltas and the prefix, and agree with finite differences.
    var g = RandomGenerator(seed: 3)
    let hook = QVDeltaHook(depth: model.depth, width: model.width, rank: 2, generator: &g)
    let prefix = Tensor.randn([1, 3, model.width], std: 0.5, generator: &g)
    let tokens = withNoGrad { model.tokenEmbeddings(ids) }
    let check = GradientCheck.run([prefix, hook.a[0], hook.b[3]], epsilon: 1e-2) { inputs in
      let x = Tensor.concat([inputs[0], tokens], axis: 1)
      return model.logits(.embeddings(x), hooks: hook).narrow(2, start: 0, length: 16)
    }
    XCTAssertTrue(check.passed, "max relative error \(check.maxRelativeError)")
    XCTAssertTrue(model.parameters().allSatisfy { $0.grad == nil }, "the decoder stays frozen")
    XCTAssertTrue(hook.linearCalls.contains(LinearSite(block: 1, role: .mlpOut)))
    // The delta changes the output (the hook is really applied).
    let with = withNoGrad { model.logits(.ids(ids), hooks: hook) }
    XCTAssertGreaterThan(relativeError(with.scalars, byIDs.scalars), 1e-3)
  }

  func testDropoutOnlyWhenAskedAndTraining() throws {
    let model = try GPT2.load(folder: folder)
    XCTAssertEqual(model.config.attnPdrop, 0.1)
    let ids = [[33, 446, 287, 422, 261]]
    let plain = withNoGrad { model.logits(.ids(ids)).scalars }
    model.dropoutGenerator = RandomGenerator(seed: 5)
    let dropped = withNoGrad { model.logits(.ids(ids)).scalars }
    XCTAssertGreaterThan(relativeError(dropped, plain), 1e-3)
    let again = withNoGrad { model.logits(.ids(ids)).scalars }
    XCTAssertNotEqual(again, dropped, "fresh masks each pass")
    model.eval()
    XCTAssertEqual(withNoGrad { model.logits(.ids(ids)).scalars }, plain)
  }

  func testRandomInitialisationRoundTripsThroughACheckpoint() throws {
    var config = GPT2Config()
    config.vocabSize = 50
    config.nPositions = 16
    config.nEmbd = 8
    config.nLayer = 1
    config.nHead = 2
    config.tieWordEmbeddings = false
    var g = RandomGenerator(seed: 1)
    let model = try GPT2(config: config, generator: &g)
    XCTAssertNotNil(model.lmHead)
    let state = model.checkpointStateDict()
    XCTAssertEqual(state["transformer.h.0.attn.c_attn.weight"]?.shape, [8, 24])
    let copy = try GPT2(config: config, weights: state, source: nil)
    let ids = [[1, 2, 3]]
    XCTAssertEqual(
      withNoGrad { copy.logits(.ids(ids)).scalars }, withNoGrad { model.logits(.ids(ids)).scalars })
  }

  // MARK: Errors

  private func scratchFolder() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-gpt2-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
  }

  func testConfigErrorsNameTheFileAndKey() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(at: dir) }
    let config = dir.appendingPathComponent("config.json")
    func expect(_ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
      XCTAssertThrowsError(try GPT2.load(folder: dir), file: file, line: line) { e in
        let text = "\(e)"
        XCTAssertTrue(text.contains(config.path), text, file: file, line: line)
        XCTAssertTrue(
          text.contains(fragment), "\(text) lacks '\(fragment)'", file: file, line: line)
      }
    }
    expect("no such file")
    try "{\"n_embd\": ".write(to: config, atomically: true, encoding: .utf8)
    expect("not valid JSON")
    try #"{"model_type": "gpt2", "n_embd": 30, "n_head": 4}"#.write(
      to: config, atomically: true, encoding: .utf8)
    expect("n_embd 30 is not divisible by n_head 4")
    try #"{"model_type": "gpt2", "activation_function": "swish"}"#.write(
      to: config, atomically: true, encoding: .utf8)
    expect("activation_function")
    try #"{"model_type": "llama"}"#.write(to: config, atomically: true, encoding: .utf8)
    expect("model_type 'llama'")
    try #"{"model_type": "gpt2", "n_layer": "two"}"#.write(
      to: config, atomically: true, encoding: .utf8)
    expect("n_layer must be a whole number")
  }

  func testWeightErrorsNameTheFileAndTensor() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(at: dir) }
    try FileManager.default.copyItem(
      at: folder.appendingPathComponent("config.json"),
      to: dir.appendingPathComponent("config.json"))
    let weights = dir.appendingPathComponent("model.safetensors")
    XCTAssertThrowsError(try GPT2.load(folder: dir)) { e in
      XCTAssertEqual(e as? FileError, FileError(path: weights.path, message: "no such file"))
    }
    try Data("not a safetensors file".utf8).write(to: weights)
    XCTAssertThrowsError(try GPT2.load(folder: dir)) { e in
      XCTAssertTrue(e is SafetensorsError, "\(e)")
      XCTAssertTrue("\(e)".contains(weights.path), "\(e)")
    }
    var tensors = try SafetensorsFile(
      contentsOf: folder.appendingPathComponent("model.safetensors")
    ).tensors().mapValues { $0.copy() }
    // Without the `transformer.` prefix (older checkpoints) it loads.
    var bare: [String: Tensor] = [:]
    for (k, t) in tensors { bare[String(k.dropFirst("transformer.".count))] = t }
    bare["h.0.attn.bias"] = Tensor.ones([1, 1, 48, 48])  // the old mask buffer is ignored
    try Safetensors.write(bare, to: weights)
    XCTAssertNoThrow(try GPT2.load(folder: dir))

    tensors["transformer.h.1.mlp.c_fc.weight"] = nil
    tensors["transformer.h.0.attn.c_attn.weight"] = Tensor.zeros([96, 32])
    tensors["transformer.extra"] = Tensor.zeros([1])
    try Safetensors.write(tensors, to: weights)
    XCTAssertThrowsError(try GPT2.load(folder: dir)) { e in
      guard let e = e as? StateDictError else { return XCTFail("\(e)") }
      XCTAssertEqual(e.source, weights.path)
      XCTAssertEqual(e.missing, ["transformer.h.1.mlp.c_fc.weight"])
      XCTAssertEqual(e.unexpected, ["transformer.extra"])
      XCTAssertEqual(
        e.misshaped,
        [.init(name: "transformer.h.0.attn.c_attn.weight", expected: [32, 96], got: [96, 32])])
    }
  }
}
