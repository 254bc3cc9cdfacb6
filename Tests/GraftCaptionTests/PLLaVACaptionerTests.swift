import Foundation
import GraftCaption
import XCTest

final class PLLaVACaptionerTests: XCTestCase {
  func makeCaptioner(_ mode: CaptionMode, folder: URL) throws -> PLLaVACaptioner {
    let decoder = try CaptionDecoder.load(
      folder: try CaptionFixtures.decoderFolder(in: folder))
    var config = PLLaVAConfig()
    config.mode = mode
    var g = RandomGenerator(seed: 5)
    return try PLLaVACaptioner(
      config: config, backbone: try CaptionFixtures.backbone(), decoder: decoder, generator: &g)
  }

  func testPoolingMatrixIsAdaptivePooling() {
    var g = RandomGenerator(seed: 3)
    let x = Tensor.randn([2, 5, 4, 3, 6], generator: &g)
    let expected = AdaptivePooling.averagePool3D(x, to: (3, 2, 2))
    let p = VisualProjector.poolingMatrix(input: (5, 4, 3), output: (3, 2, 2))
    let got = x.reshaped([2, 60, 6]).permuted([0, 2, 1]).matmul(p, transposeOther: true)
      .permuted([0, 2, 1])
    XCTAssertEqual(got.shape, [2, 12, 6])
    for (a, b) in zip(got.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }

  func testProjectorPoolsBetweenItsLayersExactly() {
    // Pooling after the whole MLP (PLLaVA's order) equals pooling before its second layer.
    var g = RandomGenerator(seed: 4)
    let projector = VisualProjector(encoderWidth: 6, decoderWidth: 8, generator: &g)
    let x = Tensor.randn([1, 4, 4, 4, 6], generator: &g)
    let got = projector(x, pool: (2, 2, 2))
    let full = projector.linear2(projector.linear1(x).gelu())
    let expected = AdaptivePooling.averagePool3D(full, to: (2, 2, 2))
    XCTAssertEqual(got.shape, [1, 8, 8])
    for (a, b) in zip(got.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }

  func testGradientsReachTheProjectorThroughThePooling() {
    var g = RandomGenerator(seed: 6)
    let projector = VisualProjector(encoderWidth: 4, decoderWidth: 6, generator: &g)
    let x = Tensor.randn([2, 3, 2, 2, 4], generator: &g)
    let check = GradientCheck.run(
      [projector.linear1.weight, projector.linear1.bias!, projector.linear2.weight],
      epsilon: 1e-2
    ) { _ in projector(x, pool: (2, 1, 2)) }
    XCTAssertTrue(check.passed, check.summary)
  }

  func testShapesAndLossCountsCaptionTokensOnly() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let captioner = try makeCaptioner(.lora, folder: folder)
    var g = RandomGenerator(seed: 9)
    // Two clips of 8 frames on the 4 × 4 grid of a width-16 backbone.
    let tokens = Tensor.randn([2, 8, 4, 4, 16], generator: &g)
    let prefix = captioner.visualPrefix(tokens)
    XCTAssertEqual(prefix.shape, [2, 16, 32])  // pool (4, 2, 2), decoder width 32
    let captions = ["A square slides to the left", "A ring rises"]
    let (logits, labels) = captioner.logits(frameTokens: tokens, captions: captions)
    let ids = captions.map(captioner.captionTokens)
    let length = ids.map(\.count).max()!
    XCTAssertEqual(logits.shape, [2, 16 + length, 600])
    XCTAssertEqual(ids[1].last, captioner.endOfText)
    for (row, c) in zip(labels, ids) {
      XCTAssertEqual(Array(row.prefix(16)), Array(repeating: -100, count: 16))
      XCTAssertEqual(Array(row[16..<(16 + c.count)]), c)
      XCTAssertTrue(row[(16 + c.count)...].allSatisfy { $0 == -100 })
    }
    // The loss is the mean cross-entropy of exactly the caption tokens, each predicted from
    // the position before it (the first one from the last prefix position).
    let loss = withNoGrad { captioner.loss(frameTokens: tokens, captions: captions) }
    let v = 600
    let l = 16 + length
    let values = logits.scalars
    var sum = 0.0
    var count = 0
    for (b, c) in ids.enumerated() {
      for (k, token) in c.enumerated() {
        let at = (b * l + 15 + k) * v
        let row = values[at..<(at + v)].map(Double.init)
        let m = row.max()!
        let lse = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
        sum += lse - row[token]
        count += 1
      }
    }
    XCTAssertEqual(count, ids[0].count + ids[1].count)
    XCTAssertEqual(Double(loss.scalars[0]), sum / Double(count), accuracy: 1e-4)
    // Changing what follows a caption (its padding) changes nothing.
    let longer = withNoGrad {
      captioner.loss(
        frameTokens: Tensor.concat([tokens, tokens.narrow(0, start: 0, length: 1)], axis: 0),
        captions: captions + ["A cross is turned step by step and then some more"])
    }
    XCTAssertNotEqual(longer.scalars[0], loss.scalars[0])
    let alone = withNoGrad {
      captioner.loss(frameTokens: tokens.narrow(0, start: 1, length: 1), captions: [captions[1]])
    }
    let perToken0 = (sum - Double(alone.scalars[0]) * Double(ids[1].count)) / Double(ids[0].count)
    let first = withNoGrad {
      captioner.loss(frameTokens: tokens.narrow(0, start: 0, length: 1), captions: [captions[0]])
    }
    XCTAssertEqual(Double(first.scalars[0]), perToken0, accuracy: 1e-4)
  }

  func testPromptIsContextNotTarget() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let decoder = try CaptionDecoder.load(folder: try CaptionFixtures.decoderFolder(in: folder))
    var g = RandomGenerator(seed: 5)
    let captioner = try PLLaVACaptioner(
      config: try PLLaVAConfig.parse(["prompt": "<|endoftext|>Video:"]),
      backbone: CaptionFixtures.backbone(), decoder: decoder, generator: &g)
    let prompt = captioner.promptTokens
    XCTAssertEqual(prompt.first, 0)
    XCTAssertGreaterThan(prompt.count, 1)
    let caption = captioner.captionTokens("A ring rises")
    let (ids, labels) = captioner.sequences([caption], prefix: 16)
    XCTAssertEqual(ids[0], prompt + caption)
    XCTAssertEqual(labels[0], Array(repeating: -100, count: 16 + prompt.count) + caption)
    let tokens = Tensor.randn([1, 8, 4, 4, 16], generator: &g)
    let (logits, _) = captioner.logits(frameTokens: tokens, captions: ["A ring rises"])
    XCTAssertEqual(logits.shape, [1, 16 + prompt.count + caption.count, 600])
    // Generation continues after the prompt: the same as the decoder given prefix + prompt.
    let input = withNoGrad {
      Tensor.concat(
        [captioner.visualPrefix(tokens), captioner.decoder.tokenEmbeddings([prompt])], axis: 1)
    }
    let direct = try captioner.decoder.generate(
      .embeddings(input), options: GenerationOptions(maxNewTokens: 24, eosTokenIDs: [0]),
      hooks: captioner.lora)
    let expected = captioner.tokenizer.decode(direct.filter { $0 != 0 }, skipSpecialTokens: true)
      .trimmingCharacters(in: .whitespacesAndNewlines)
    XCTAssertEqual(try captioner.generate(frameTokens: tokens), expected)
  }

  func testTrainableTensorsInClosedForm() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let (e, d, layers, r) = (16, 32, 2, 8)
    let projector = e * d + d + d * d + d
    let lora = try makeCaptioner(.lora, folder: folder.appendingPathComponent("a"))
    XCTAssertEqual(lora.trainableParameterCount, projector + layers * 2 * (r * d + d * r))
    XCTAssertTrue(
      lora.trainableParameters().allSatisfy {
        $0.name.hasPrefix("projector.") || $0.name.hasPrefix("lora.")
      })
    XCTAssertEqual(lora.decoder.trainableParameterCount, 0)
    let only = try makeCaptioner(.projector, folder: folder.appendingPathComponent("b"))
    XCTAssertEqual(only.trainableParameterCount, projector)
    XCTAssertNil(only.lora)
    let full = try makeCaptioner(.full, folder: folder.appendingPathComponent("c"))
    XCTAssertEqual(full.trainableParameterCount, projector + full.decoder.parameterCount)
    // A step in LoRA mode changes the LoRA B matrices and leaves the decoder as it was.
    var g = RandomGenerator(seed: 1)
    let tokens = Tensor.randn([1, 8, 4, 4, 16], generator: &g)
    let before = lora.decoder.checkpointStateDict()
    let loss = lora.loss(frameTokens: tokens, captions: ["A square drifts upward"])
    loss.backward()
    XCTAssertNotNil(lora.lora!.blocks[0].layer("q")!.loraB.grad)
    XCTAssertNotNil(lora.projector.linear1.weight.grad)
    XCTAssertTrue(lora.decoder.parameters().allSatisfy { $0.grad == nil })
    let after = lora.decoder.checkpointStateDict()
    for (name, t) in before { XCTAssertEqual(t.scalars, after[name]!.scalars, name) }
  }

  /// `lora_targets: all` puts a delta on every linear layer of every block, and the adapted
  /// decoder computes what the decoder with `W + (alpha / r)·B·A` merged into each weight does
  /// (PEFT's merge); `qv` keeps PLLaVA's two deltas per block.
  func testLoRAOnEveryLinearLayerEqualsMergedWeights() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    let decoderFolder = try CaptionFixtures.decoderFolder(in: folder)
    let decoder = try CaptionDecoder.load(folder: decoderFolder)
    var g = RandomGenerator(seed: 9)
    let lora = DecoderLoRA(
      decoder: decoder.model, rank: 4, alpha: 3, dropout: 0, targets: .all, generator: &g)
    let (d, layers) = (decoder.model.width, decoder.model.depth)
    let hidden = decoder.model.transformer.h[0].mlp.cFc.weight.shape[0]
    XCTAssertEqual(lora.parameterCount, layers * 4 * (d + 3 * d + d + d + d + hidden + hidden + d))
    XCTAssertEqual(
      lora.blocks[0].layers.map(\.name), ["c_attn", "attn_c_proj", "mlp_c_fc", "mlp_c_proj"])
    for block in lora.blocks {
      for entry in block.layers {
        entry.layer.loraB.assign(Tensor.randn(entry.layer.loraB.shape, std: 0.5, generator: &g))
      }
    }
    let merged = try CaptionDecoder.load(folder: decoderFolder).model
    for (i, block) in merged.transformer.h.enumerated() {
      for (name, linear) in [
        ("c_attn", block.attn.cAttn), ("attn_c_proj", block.attn.cProj),
        ("mlp_c_fc", block.mlp.cFc), ("mlp_c_proj", block.mlp.cProj),
      ] {
        let delta = lora.blocks[i].layer(name)!
        linear.weight.assign(linear.weight + delta.loraB.matmul(delta.loraA) * (3 / 4))
      }
    }
    let ids = [[5, 17, 3, 42, 8, 11]]
    let adapted = decoder.model.logits(.ids(ids), hooks: lora).scalars
    let reference = merged.logits(.ids(ids)).scalars
    let plain = decoder.model.logits(.ids(ids)).scalars
    let scale = reference.map(abs).max()!
    for (a, r) in zip(adapted, reference) { XCTAssertEqual(a, r, accuracy: 1e-4 * scale) }
    XCTAssertGreaterThan(zip(plain, reference).map { abs($0 - $1) }.max()!, 1e-2 * scale)
    // The option, and PLLaVA's default.
    XCTAssertEqual(try PLLaVAConfig.parse(["lora_targets": "all"]).loraTargets, .all)
    XCTAssertEqual(PLLaVAConfig().loraTargets, .qv)
    XCTAssertThrowsError(try PLLaVAConfig.parse(["lora_targets": "mlp"]))
    let qv = DecoderLoRA(decoder: decoder.model, rank: 4, alpha: 3, dropout: 0, generator: &g)
    XCTAssertEqual(qv.blocks[0].layers.map(\.name), ["q", "v"])
    XCTAssertEqual(qv.parameterCount, layers * 2 * 4 * (d + d))
  }

  func testLoRAScalesAtGenerationAndBadOptionsAreNamed() throws {
    let folder = try CaptionFixtures.temporaryFolder(self)
    // A wide initialisation, so that greedy decoding does not repeat one token.
    let decoder = try CaptionDecoder.load(
      folder: try CaptionFixtures.decoderFolder(in: folder, initializerRange: 0.6))
    var g = RandomGenerator(seed: 5)
    // 8 × 8 × 8 visual tokens do not fit 64 positions.
    XCTAssertThrowsError(
      try PLLaVACaptioner(
        config: try PLLaVAConfig.parse(["pool": "8,8,8"]), backbone: CaptionFixtures.backbone(),
        decoder: decoder, generator: &g)
    ) { e in XCTAssertEqual((e as? CaptionError)?.kind, .sequenceTooLong, "\(e)") }
    XCTAssertThrowsError(try PLLaVAConfig.parse(["pool": "2,2"]))
    XCTAssertThrowsError(try PLLaVAConfig.parse(["lora_alpha_eval": "x"]))
    XCTAssertThrowsError(try PLLaVAConfig.parse(["ranks": "2"]))
    XCTAssertThrowsError(try CaptionDecoder.load(folder: folder.appendingPathComponent("nope"))) {
      e in XCTAssertEqual((e as? CaptionError)?.kind, .missingDecoder, "\(e)")
    }
    let config = try PLLaVAConfig.parse(["lora_alpha_eval": "0"])
    XCTAssertEqual(config.evalAlpha, 0)
    let captioner = try PLLaVACaptioner(
      config: config, backbone: CaptionFixtures.backbone(), decoder: decoder, generator: &g)
    // Make the LoRA deltas large: with alpha_eval 0, generation equals the plain decoder's.
    for b in captioner.lora!.blocks {
      b.layer("q")!.loraB.assign(Tensor.randn(b.layer("q")!.loraB.shape, std: 2, generator: &g))
      b.layer("v")!.loraB.assign(Tensor.randn(b.layer("v")!.loraB.shape, std: 2, generator: &g))
    }
    let tokens = Tensor.randn([1, 8, 4, 4, 16], generator: &g)
    let prefix = withNoGrad { captioner.visualPrefix(tokens) }
    let options = GenerationOptions(maxNewTokens: 24, eosTokenIDs: [0])
    let plain = try captioner.decoder.generate(.embeddings(prefix), options: options)
    let adapted = try captioner.decoder.generate(
      .embeddings(prefix), options: options, hooks: captioner.lora)
    XCTAssertNotEqual(plain, adapted)
    let text = try captioner.generate(frameTokens: tokens)
    let plainText = captioner.tokenizer.decode(plain.filter { $0 != 0 }, skipSpecialTokens: true)
      .trimmingCharacters(in: .whitespacesAndNewlines)
    XCTAssertEqual(text, plainText)
    XCTAssertEqual(captioner.lora!.alpha, config.loraAlpha)  // restored after generation
  }
}
