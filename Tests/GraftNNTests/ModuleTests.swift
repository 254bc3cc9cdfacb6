import XCTest

@testable import GraftNN

final class ModuleTests: XCTestCase {
  func testDottedNamesAndCounts() {
    let model = TinyViT(seed: 1)
    XCTAssertEqual(model.namedParameters().map(\.name), TinyViT.expectedNames)
    XCTAssertEqual(model.stateDictNames, TinyViT.expectedNames)
    // cls 4 + pos 12 + patch 6·4+4 + 2 blocks · (8 + 4·12+12 + 4·4+4 + 8 + 4·8+8 + 8·4+4)
    // + norm 8 + head 4·3+3 = 4 + 12 + 28 + 2·172 + 8 + 15.
    XCTAssertEqual(model.parameterCount, 411)
    XCTAssertEqual(model.trainableParameterCount, 411)
    model.freeze()
    XCTAssertEqual(model.trainableParameterCount, 0)
    model.head.unfreeze()
    XCTAssertEqual(model.trainableParameterCount, 15)
    XCTAssertEqual(model.trainableParameters().map(\.name), ["head.weight", "head.bias"])
    XCTAssertEqual(
      model.blocks[1].namedParameters(prefix: "x").first?.name, "x.norm1.weight")
    XCTAssertTrue(
      model.parameter(named: "blocks.1.attn.qkv.weight") === model.blocks[1].attn.qkv.weight)
    XCTAssertNil(model.parameter(named: "blocks.2.attn.qkv.weight"))
    XCTAssertEqual(
      model.namedModules().map(\.name).prefix(5),
      ["", "patch_embed", "blocks", "blocks.0", "blocks.0.norm1"])
  }

  func testSequentialNamesSkipParameterFreeLayers() {
    var rng = RandomGenerator(seed: 3)
    let seq = Sequential([
      Linear(3, 5, generator: &rng), Activation.gelu, Linear(5, 2, generator: &rng),
    ])
    XCTAssertEqual(seq.namedParameters().map(\.name), ["0.weight", "0.bias", "2.weight", "2.bias"])
    XCTAssertEqual(seq(Tensor.ones([4, 3])).shape, [4, 2])
  }

  func testTrainEvalPropagates() {
    let model = TinyViT(seed: 1)
    XCTAssertTrue(model.blocks[0].mlp.act.isTraining)
    model.eval()
    XCTAssertFalse(model.isTraining)
    XCTAssertFalse(model.blocks[0].mlp.act.isTraining)
    model.blocks.train()
    XCTAssertFalse(model.isTraining)
    XCTAssertTrue(model.blocks[1].attn.qkv.isTraining)
    // A child registered later takes its parent's mode.
    let late = LayerNorm(4)
    model.registerModule("late", late)
    XCTAssertFalse(late.isTraining)
  }

  func testSetTrainableByPattern() {
    let model = TinyViT(seed: 1)
    model.freeze()
    XCTAssertEqual(model.setTrainable(matching: "blocks.*.norm*.*", true), 8)
    let lnNames = (0..<2).flatMap { b in
      ["norm1", "norm2"].flatMap { ["blocks.\(b).\($0).weight", "blocks.\(b).\($0).bias"] }
    }
    XCTAssertEqual(Set(model.trainableParameters().map(\.name)), Set(lnNames))

    // BitFit: every bias, then one of them off again.
    model.freeze()
    XCTAssertEqual(model.setTrainable(matching: "*bias", true), 15)
    XCTAssertEqual(model.setTrainable(matching: "head.bias", false), 1)
    let expected = TinyViT.expectedNames.filter { $0.hasSuffix(".bias") && $0 != "head.bias" }
    XCTAssertEqual(model.trainableParameters().map(\.name), expected)
    XCTAssertEqual(model.setTrainable(matching: "no.such.*", true), 0)
  }

  func testGlobPatterns() {
    XCTAssertTrue(NamePattern.matches("blocks.11.norm2.bias", "blocks.*.norm*.*"))
    XCTAssertFalse(NamePattern.matches("norm.bias", "blocks.*.norm*.*"))
    XCTAssertTrue(NamePattern.matches("head.bias", "*bias"))
    XCTAssertFalse(NamePattern.matches("head.bias", "bias"))
    XCTAssertFalse(NamePattern.matches("head.bias.x", "*bias"))
    XCTAssertTrue(NamePattern.matches("blocks.3.attn.qkv.weight", "blocks.?.attn.*"))
    XCTAssertFalse(NamePattern.matches("blocks.10.attn.qkv.weight", "blocks.?.attn.*"))
    XCTAssertTrue(NamePattern.matches("a", "*"))
    XCTAssertTrue(NamePattern.matches("", "*"))
    XCTAssertFalse(NamePattern.matches("", "?"))
    XCTAssertTrue(NamePattern.matches("abcbcd", "a*bcd"))
    XCTAssertTrue(NamePattern.matches("prompt", "prompt"))
  }

  func testSharedTensorCountedOnceButNamedTwiceInStateDict() {
    var rng = RandomGenerator(seed: 5)
    let shared = Tensor.randn([3, 2], generator: &rng)
    let parent = Module()
    parent.registerModule("enc", Linear(weight: shared, bias: nil))
    parent.registerModule("dec", Linear(weight: shared, bias: nil))
    XCTAssertEqual(parent.namedParameters().map(\.name), ["enc.weight"])
    XCTAssertEqual(parent.parameterCount, 6)
    XCTAssertEqual(Set(parent.stateDict().keys), ["enc.weight", "dec.weight"])
  }

  func testBuffersAreInStateDictButNotParameters() {
    let m = Module()
    m.registerParameter("w", Tensor.ones([2]))
    m.registerBuffer("running_mean", Tensor.zeros([2]))
    m.registerBuffer("cache", Tensor.zeros([5]), persistent: false)
    XCTAssertEqual(m.namedParameters().map(\.name), ["w"])
    XCTAssertEqual(m.namedBuffers().map(\.name), ["running_mean", "cache"])
    XCTAssertEqual(m.stateDictNames, ["w", "running_mean"])
    XCTAssertFalse(m.namedBuffers()[0].tensor.requiresGrad)
  }

  func testStateDictRoundTrip() throws {
    let a = TinyViT(seed: 1)
    let b = TinyViT(seed: 2)
    XCTAssertNotEqual(a.head.weight.scalars, b.head.weight.scalars)
    let result = try b.loadStateDict(a.stateDict())
    XCTAssertEqual(result, StateDictLoadResult(missing: [], unexpected: []))
    for ((na, ta), (nb, tb)) in zip(a.namedParameters(), b.namedParameters()) {
      XCTAssertEqual(na, nb)
      XCTAssertEqual(ta.scalars, tb.scalars, na)
      XCTAssertFalse(ta === tb)
    }
    // Copied, not shared: b keeps its own storage.
    a.head.bias!.pointer[0] = 42
    XCTAssertNotEqual(b.head.bias!.pointer[0], 42)
    // The dict's values are views on the module's own storage, with their own flags.
    let dict = a.stateDict()
    XCTAssertEqual(dict["head.bias"]!.pointer, a.head.bias!.pointer)
    dict["head.bias"]!.requiresGrad = false
    XCTAssertTrue(a.head.bias!.requiresGrad)
  }

  func testTrainableOnlyStateDict() {
    let model = TinyViT(seed: 1)
    model.freeze()
    model.setTrainable(matching: "head.*", true)
    XCTAssertEqual(Set(model.stateDict(trainableOnly: true).keys), ["head.weight", "head.bias"])
  }

  private func snapshot(_ m: Module) -> [Float] { m.parameters().flatMap(\.scalars) }

  func testStateDictErrorListsEverythingAndLoadsNothing() {
    let source = TinyViT(seed: 1)
    let target = TinyViT(seed: 2)
    let before = snapshot(target)
    var dict = source.stateDict()
    dict["head.bias"] = nil
    dict["norm.bias"] = nil
    dict["extra.weight"] = Tensor.zeros([2])
    dict["blocks.0.attn.qkv.weight"] = Tensor.zeros([4, 12])
    dict["pos_embed"] = Tensor.zeros([1, 5, 4])
    XCTAssertThrowsError(try target.loadStateDict(dict)) { error in
      guard let e = error as? StateDictError else { return XCTFail("wrong error \(error)") }
      XCTAssertEqual(e.missing, ["norm.bias", "head.bias"])
      XCTAssertEqual(e.unexpected, ["extra.weight"])
      XCTAssertEqual(
        e.misshaped,
        [
          .init(name: "pos_embed", expected: [1, 3, 4], got: [1, 5, 4]),
          .init(name: "blocks.0.attn.qkv.weight", expected: [12, 4], got: [4, 12]),
        ])
      let text = e.description
      for needle in [
        "2 missing", "1 unexpected", "2 mis-shaped", "norm.bias", "head.bias", "extra.weight",
        "blocks.0.attn.qkv.weight expected [12, 4] got [4, 12]",
        "pos_embed expected [1, 3, 4] got [1, 5, 4]",
      ] {
        XCTAssertTrue(text.contains(needle), "'\(needle)' not in:\n\(text)")
      }
    }
    XCTAssertEqual(snapshot(target), before)
    // Non-strict still refuses wrong shapes, and still changes nothing.
    XCTAssertThrowsError(try target.loadStateDict(dict, strict: false))
    XCTAssertEqual(snapshot(target), before)
  }

  func testEachKindOfProblemAlone() {
    let source = TinyViT(seed: 1)
    let target = TinyViT(seed: 2)
    var missing = source.stateDict()
    missing["cls_token"] = nil
    XCTAssertThrowsError(try target.loadStateDict(missing)) { error in
      let e = error as! StateDictError
      XCTAssertEqual(e, StateDictError(missing: ["cls_token"]))
      XCTAssertTrue(e.description.contains("missing: cls_token"), e.description)
    }
    var unexpected = source.stateDict()
    unexpected["fc_norm.weight"] = Tensor.ones([4])
    XCTAssertThrowsError(try target.loadStateDict(unexpected)) { error in
      let e = error as! StateDictError
      XCTAssertEqual(e, StateDictError(unexpected: ["fc_norm.weight"]))
      XCTAssertTrue(e.description.contains("unexpected: fc_norm.weight"), e.description)
    }
    var misshaped = source.stateDict()
    misshaped["head.weight"] = Tensor.zeros([5, 4])
    XCTAssertThrowsError(try target.loadStateDict(misshaped)) { error in
      let e = error as! StateDictError
      XCTAssertEqual(
        e, StateDictError(misshaped: [.init(name: "head.weight", expected: [3, 4], got: [5, 4])]))
    }
    XCTAssertEqual(target.head.weight.scalars, TinyViT(seed: 2).head.weight.scalars)
  }

  func testNonStrictLoadSkipsMissingAndUnexpected() throws {
    let source = TinyViT(seed: 1)
    let target = TinyViT(seed: 2)
    let headBefore = target.head.weight.scalars
    var dict = source.stateDict()
    dict["head.weight"] = nil
    dict["head.bias"] = nil
    dict["fc_norm.weight"] = Tensor.ones([4])
    let result = try target.loadStateDict(dict, strict: false)
    XCTAssertEqual(result.missing, ["head.weight", "head.bias"])
    XCTAssertEqual(result.unexpected, ["fc_norm.weight"])
    XCTAssertEqual(target.head.weight.scalars, headBefore)
    XCTAssertEqual(target.norm.weight!.scalars, source.norm.weight!.scalars)
    XCTAssertEqual(target.clsToken.scalars, source.clsToken.scalars)
  }
}
