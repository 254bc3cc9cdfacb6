import XCTest

@testable import GraftDetection

/// FCOS's assignment rules and losses on hand-made cases (the parity tests cover torchvision's
/// numbers).
final class FCOSAssignerTests: XCTestCase {
  /// One 8-pixel level of 8 × 8 locations and a coarser 16-pixel level of 4 × 4.
  private let levels = FCOSLevels(strides: [8, 16], sizes: [(8, 8), (4, 4)])

  func testSmallestBoxWinsAndRangesSplitLevels() {
    let small = CornerBox(36, 36, 60, 60)  // reach ≤ 24: the 8-pixel level only
    let large = CornerBox(0, 0, 64, 64)
    let matched = FCOSAssigner().assign(
      anchors: levels.anchors, counts: levels.counts, boxes: [large, small])
    // Location (x 5, y 5) of the 8-pixel level, centre (40, 40): a candidate for both boxes
    // (within 12 px of both centres, reach 20 and 40), the smaller one wins.
    XCTAssertEqual(matched[5 * 8 + 5], 1)
    // (4, 4), centre (32, 32), lies outside the small box: the large one.
    XCTAssertEqual(matched[4 * 8 + 4], 0)
    // No coarse location takes the small box: its reach is under 4·16.
    XCTAssertFalse(matched[64...].contains(1))
    // Centre sampling: (1, 1), centre (8, 8), is inside the large box but 24 px from its centre
    // on both axes, beyond 1.5·8 = 12: background.
    XCTAssertEqual(matched[1 * 8 + 1], -1)
    XCTAssertEqual(matched.filter { $0 == 1 }.count, 9, "3 × 3 locations near the small centre")
  }

  func testAreasWithinSinglePrecisionRoundingTieToTheFirstBox() {
    // Areas 576 and 572: 1e8 − area rounds to the same Float, so the first box wins as in
    // torchvision; with the order swapped, the other one does.
    let a = CornerBox(20, 20, 44, 44)
    let b = CornerBox(20, 20, 44, 43.8333333)
    XCTAssertEqual(Float(1e8) - BoxOps.area(a), Float(1e8) - BoxOps.area(b))
    let ab = FCOSAssigner().assign(anchors: levels.anchors, counts: levels.counts, boxes: [a, b])
    let ba = FCOSAssigner().assign(anchors: levels.anchors, counts: levels.counts, boxes: [b, a])
    XCTAssertEqual(ab[4 * 8 + 4], 0)
    XCTAssertEqual(ba[4 * 8 + 4], 0)
  }

  func testImagesWithoutBoxesGiveOnlyAClassificationLoss() {
    let head = FCOSHead(channels: 4, numClasses: 2, numLevels: 2, numConvs: 1, boxActivation: .exp)
    var rng = RandomGenerator(seed: 9)
    let out = head([
      Tensor.randn([1, 4, 8, 8], generator: &rng), Tensor.randn([1, 4, 4, 4], generator: &rng),
    ])
    XCTAssertGreaterThan(out.boxRegression.scalars.min() ?? 0, 0, "exp gives positive distances")
    let losses = FCOSHead.loss(out, levels: levels, targets: [FCOSTarget(boxes: [], labels: [])])
    XCTAssertEqual(losses.foreground, 0)
    XCTAssertEqual(losses.boxRegression.item, 0)
    XCTAssertEqual(losses.centerness.item, 0)
    XCTAssertGreaterThan(losses.classification.item, 0)
    losses.total.backward()
    XCTAssertNotNil(head.namedParameters.first { $0.0 == "cls_logits.bias" }?.1.grad)
  }

  func testHeadLossGradientsMatchFiniteDifferences() {
    let small = FCOSLevels(strides: [8, 16], sizes: [(3, 3), (2, 2)])
    let target = FCOSTarget(
      boxes: [CornerBox(1, 2, 19, 15), CornerBox(6, 9, 30, 29)], labels: [1, 0])
    XCTAssertGreaterThan(
      FCOSAssigner().assign(anchors: small.anchors, counts: small.counts, boxes: target.boxes)
        .filter { $0 >= 0 }.count, 1)
    var rng = RandomGenerator(seed: 4)
    let logits = Tensor.randn([1, 13, 2], generator: &rng)
    let codes = Tensor.rand([1, 13, 4], low: 0.5, high: 2, generator: &rng)
    let centerness = Tensor.randn([1, 13, 1], generator: &rng)
    let check = GradientCheck.run([logits, codes, centerness], epsilon: 1e-3, atol: 2e-3) {
      FCOSHead.loss(
        FCOSHeadOutputs(classLogits: $0[0], boxRegression: $0[1], centerness: $0[2]),
        levels: small, targets: [target]
      ).total
    }
    XCTAssertTrue(check.passed, check.summary)
  }
}
