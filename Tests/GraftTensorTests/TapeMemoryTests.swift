import XCTest

@testable import GraftTensor

/// The tape keeps alive exactly what backward reads: intermediate results that no backward needs
/// are freed during the forward pass, and frozen operands never make an op keep the other one.
final class TapeMemoryTests: XCTestCase {
  /// Runs `op` on an intermediate tensor (a recorded result, not a leaf) and reports whether that
  /// intermediate is still alive afterwards, while the op's output (and so its node) is alive.
  func intermediateSurvives(_ op: (Tensor) -> Tensor) -> Bool {
    let leaf = randomTensor([4, 6], seed: 1, low: 0.5, high: 1.5).requiringGrad()
    weak var intermediate: Tensor?
    let output: Tensor = {
      let x = leaf + 1  // recorded, saves nothing
      intermediate = x
      return op(x)
    }()
    XCTAssertTrue(output.requiresGrad)
    return intermediate != nil
  }

  func testOpsThatDoNotReadTheirInputDoNotKeepIt() {
    let bias = randomTensor([6], seed: 2)
    let frozenWeight = randomTensor([5, 6], seed: 3)
    let cases: [(String, (Tensor) -> Tensor)] = [
      ("add", { $0 + bias }), ("sub", { $0 - bias }), ("affine", { $0 * 3 + 1 }),
      ("mul by frozen", { $0 * bias }),
      (
        "matmul by frozen weight",
        {
          $0.matmul(frozenWeight, transposeOther: true)
        }
      ), ("reshape", { $0.reshaped([24]) }), ("permute", { $0.transposed() }),
      ("slice", { $0.slice(1, 1..<4) }), ("concat", { Tensor.concat([$0, $0], axis: 0) }),
      ("pad", { $0.padded([(1, 1)]) }), ("sum", { $0.sum(axis: 1) }), ("mean", { $0.mean() }),
      ("index select", { $0.indexSelect(0, [1, 3]) }),
      (
        "broadcast",
        {
          $0.unsqueezed(0).broadcast(to: [2, 4, 6])
        }
      ), ("exp", { $0.exp() }), ("softmax", { $0.softmax() }), ("sigmoid", { $0.sigmoid() }),
      ("where", { Tensor.where(Tensor([1, 0, 1, 0, 1, 0]), $0, bias) }),
    ]
    for (name, op) in cases {
      XCTAssertFalse(intermediateSurvives(op), "\(name) keeps its input alive")
    }
  }

  func testOpsThatReadTheirInputKeepIt() {
    let trainable = randomTensor([6], seed: 4).requiringGrad()
    // Control cases: these backward passes do read the input.
    XCTAssertTrue(intermediateSurvives { $0 * trainable })
    XCTAssertTrue(intermediateSurvives { $0.gelu() })
    XCTAssertTrue(intermediateSurvives { $0.layerNorm() })
  }

  /// An op whose backward reads its own output keeps it without a reference cycle, so a graph
  /// dropped without backward (a skipped step, a forward pass with recording on) is freed.
  func testAGraphDroppedWithoutBackwardIsFreed() {
    let divisor = randomTensor([6], seed: 7, low: 1, high: 2).requiringGrad()
    let cases: [(String, (Tensor) -> Tensor)] = [
      ("exp", { $0.exp() }), ("sigmoid", { $0.sigmoid() }), ("softmax", { $0.softmax() }),
      ("log_softmax", { $0.logSoftmax() }), ("div by a trainable", { $0 / divisor }),
    ]
    for (name, op) in cases {
      weak var output: Tensor?
      do {
        let leaf = randomTensor([4, 6], seed: 8).requiringGrad()
        let y = op(leaf + 1)
        XCTAssertTrue(y.requiresGrad, name)
        output = y
      }
      XCTAssertNil(output, "\(name): the output outlives its graph")
    }
  }

  func testBackwardFreesEverySavedTensorEvenWhileTheRootIsHeld() {
    let before = TapeStats.savedBytes
    let w = randomTensor([32, 32], seed: 5).requiringGrad()
    let x = randomTensor([8, 32], seed: 6)
    let loss = x.matmul(w).gelu().softmax().sum()
    XCTAssertGreaterThan(TapeStats.savedBytes, before)
    loss.backward()
    XCTAssertEqual(TapeStats.savedBytes, before)
    XCTAssertNotNil(w.grad)
  }

  /// `tapeReport` lists what backward would keep, per op: a tensor saved by two nodes counts
  /// once, excluded tensors (parameters) not at all, largest first.
  func testTapeReportCountsEachSavedTensorOnceAndLeavesOutParameters() {
    let w = randomTensor([6], seed: 7).requiringGrad()
    let x = randomTensor([4, 6], seed: 8).requiringGrad()
    let h = x * w  // keeps x (for w's gradient) and w (for x's)
    let y = (h * h).gelu()  // mul keeps h once for both operands; gelu keeps h*h
    let report = y.sum().tapeReport()
    let bytes = Dictionary(uniqueKeysWithValues: report.map { ($0.op, $0.bytes) })
    XCTAssertEqual(bytes["gelu"], 24 * 4)
    // The two products together (x, w and h) come first; their entry counts both nodes.
    XCTAssertEqual(report.first, TapeEntry(op: "mul", nodes: 2, bytes: (24 + 6 + 24) * 4))
    XCTAssertEqual(report.reduce(0) { $0 + $1.bytes }, (24 + 24 + 24 + 6) * 4)
    let withoutParameters = y.sum().tapeReport(excluding: [w, x])
    XCTAssertEqual(withoutParameters.reduce(0) { $0 + $1.bytes }, (24 + 24) * 4)
    XCTAssertEqual(w.tapeReport(), [])
  }
}
