import Foundation
import XCTest

@testable import GraftDetection

/// torchvision's numbers on small random inputs (Fixtures/fcos/fcos.json, written by
/// Tools/make_fcos_fixtures.py).
private struct FCOSFixture: Decodable {
  struct Focal: Decodable {
    let logits: [Float]
    let targets: [Float]
    let shape: [Int]
    let none: [Float]
    let sum: Float
    let mean: Float
  }
  struct GIoU: Decodable {
    let boxes1: [Float]
    let boxes2: [Float]
    let none: [Float]
  }
  struct BCE: Decodable {
    let logits: [Float]
    let targets: [Float]
    let sum: Float
  }
  struct NMS: Decodable {
    let boxes: [Float]
    let scores: [Float]
    let labels: [Int]
    let keep06: [Int]
    let keep03: [Int]
  }
  struct Target: Decodable {
    let boxes: [Float]
    let labels: [Int]
  }
  struct FCOS: Decodable {
    let image_size: [Int]
    let strides: [Int]
    let num_classes: Int
    let anchors: [Float]
    let gt: [Target]
    let matched: [[Int]]
    let cls_logits: [Float]
    let bbox_regression: [Float]
    let bbox_ctrness: [Float]
    let loss_classification: Float
    let loss_bbox_regression: Float
    let loss_bbox_ctrness: Float
  }
  struct Post: Decodable {
    let image_sizes: [[Int]]
    let score_thresh: Float
    let topk: Int
    let nms: Float
    let max_detections: Int
    let cls_logits: [Float]
    let bbox_ctrness: [Float]
  }
  struct Detections: Decodable {
    let boxes: [Float]
    let scores: [Float]
    let labels: [Int]
  }
  struct PostDetections: Decodable {
    let detections: [Detections]
  }
  let focal: Focal
  let giou: GIoU
  let bce: BCE
  let nms: NMS
  let fcos: FCOS
  let postprocess: Post
  let postDetections: PostDetections

  enum CodingKeys: String, CodingKey {
    case focal, giou, bce, nms, fcos, postprocess
  }

  init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    focal = try c.decode(Focal.self, forKey: .focal)
    giou = try c.decode(GIoU.self, forKey: .giou)
    bce = try c.decode(BCE.self, forKey: .bce)
    nms = try c.decode(NMS.self, forKey: .nms)
    fcos = try c.decode(FCOS.self, forKey: .fcos)
    postprocess = try c.decode(Post.self, forKey: .postprocess)
    postDetections = try c.decode(PostDetections.self, forKey: .postprocess)
  }

  static func load() throws -> FCOSFixture {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("fcos/fcos.json")))
    return try JSONDecoder().decode(FCOSFixture.self, from: data)
  }
}

private func corner(_ flat: [Float]) -> [CornerBox] {
  stride(from: 0, to: flat.count, by: 4).map {
    CornerBox(flat[$0], flat[$0 + 1], flat[$0 + 2], flat[$0 + 3])
  }
}

private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
  guard a.count == b.count else { return .infinity }
  return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

final class FCOSParityTests: XCTestCase {
  func testSigmoidFocalLossMatchesTorchvision() throws {
    let f = try FCOSFixture.load().focal
    let x = Tensor(f.logits, shape: f.shape)
    let t = Tensor(f.targets, shape: f.shape)
    let none = DetectionLosses.sigmoidFocalLoss(x, targets: t)
    XCTAssertEqual(none.shape, f.shape)
    XCTAssertLessThan(maxDifference(none.scalars, f.none), 1e-6)
    XCTAssertEqual(
      DetectionLosses.sigmoidFocalLoss(x, targets: t, reduction: .sum).item, f.sum, accuracy: 1e-5)
    XCTAssertEqual(
      DetectionLosses.sigmoidFocalLoss(x, targets: t, reduction: .mean).item, f.mean, accuracy: 1e-6
    )
  }

  func testGIoULossMatchesTorchvision() throws {
    let g = try FCOSFixture.load().giou
    let loss = DetectionLosses.generalizedBoxIoULoss(
      Tensor(g.boxes1, shape: [6, 4]), Tensor(g.boxes2, shape: [6, 4]))
    XCTAssertLessThan(maxDifference(loss.scalars, g.none), 1e-6)
    // The disjoint pair's loss exceeds 1 (negative GIoU), the others do not.
    XCTAssertGreaterThan(loss.scalars[5], 1)
  }

  func testBCEWithLogitsMatchesTorch() throws {
    let c = try FCOSFixture.load().bce
    let loss = DetectionLosses.binaryCrossEntropyWithLogits(
      Tensor(c.logits), targets: Tensor(c.targets), reduction: .sum)
    XCTAssertEqual(loss.item, c.sum, accuracy: 1e-5)
  }

  func testLossGradientsMatchFiniteDifferences() {
    var rng = RandomGenerator(seed: 11)
    // Logits kept away from 0, where |x| has its kink.
    let logits = Tensor(
      (0..<12).map { i in Float(i % 2 == 0 ? 1 : -1) * (0.3 + 0.2 * Float(i)) }, shape: [4, 3])
    let targets = Tensor((0..<12).map { Float($0 % 3 == 0 ? 1 : 0) }, shape: [4, 3])
    let focal = GradientCheck.run([logits]) {
      DetectionLosses.sigmoidFocalLoss($0[0], targets: targets)
    }
    XCTAssertTrue(focal.passed, "focal: \(focal.summary)")
    let soft = Tensor.rand([5], generator: &rng)
    let bce = GradientCheck.run([Tensor([0.7, -1.3, 2.1, -0.4, 0.9])]) {
      DetectionLosses.binaryCrossEntropyWithLogits($0[0], targets: soft, reduction: .none)
    }
    XCTAssertTrue(bce.passed, "bce: \(bce.summary)")
    // Overlapping, disjoint and nested pairs, no coordinates tied.
    let boxes = Tensor([10, 12, 30, 35, 0, 0, 8, 9, 20, 21, 60, 70], shape: [3, 4])
    let truth = Tensor([14, 9, 33, 40, 15, 16, 25, 27, 25, 26, 50, 55], shape: [3, 4])
    let giou = GradientCheck.run([boxes], epsilon: 1e-2, atol: 1e-3, rtol: 2e-2) {
      DetectionLosses.generalizedBoxIoULoss($0[0], truth)
    }
    XCTAssertTrue(giou.passed, "giou: \(giou.summary)")
  }

  func testBatchedNMSMatchesTorchvision() throws {
    let n = try FCOSFixture.load().nms
    let boxes = corner(n.boxes)
    XCTAssertEqual(
      BoxOps.batchedNMS(boxes: boxes, scores: n.scores, labels: n.labels, iouThreshold: 0.6),
      n.keep06)
    XCTAssertEqual(
      BoxOps.batchedNMS(boxes: boxes, scores: n.scores, labels: n.labels, iouThreshold: 0.3),
      n.keep03)
    XCTAssertLessThan(
      n.keep03.count, n.keep06.count, "the fixture should make the threshold matter")
  }

  private func levels(_ f: FCOSFixture.FCOS) -> FCOSLevels {
    FCOSLevels(
      strides: f.strides, sizes: f.strides.map { (f.image_size[0] / $0, f.image_size[1] / $0) })
  }

  func testAnchorsAndAssignmentMatchTorchvision() throws {
    let f = try FCOSFixture.load().fcos
    let levels = levels(f)
    XCTAssertEqual(levels.anchors, corner(f.anchors))
    for (image, gt) in f.gt.enumerated() {
      let matched = FCOSAssigner().assign(
        anchors: levels.anchors, counts: levels.counts, boxes: corner(gt.boxes))
      XCTAssertEqual(matched, f.matched[image], "image \(image)")
      XCTAssertGreaterThan(matched.filter { $0 >= 0 }.count, 5)
    }
  }

  func testHeadLossesMatchTorchvision() throws {
    let f = try FCOSFixture.load().fcos
    let levels = levels(f)
    let a = levels.counts.reduce(0, +)
    let outputs = FCOSHeadOutputs(
      classLogits: Tensor(f.cls_logits, shape: [2, a, f.num_classes]),
      boxRegression: Tensor(f.bbox_regression, shape: [2, a, 4]),
      centerness: Tensor(f.bbox_ctrness, shape: [2, a, 1]))
    let targets = f.gt.map { FCOSTarget(boxes: corner($0.boxes), labels: $0.labels) }
    let losses = FCOSHead.loss(outputs, levels: levels, targets: targets)
    XCTAssertEqual(losses.foreground, f.matched.joined().filter { $0 >= 0 }.count)
    XCTAssertEqual(
      losses.classification.item, f.loss_classification, accuracy: 1e-5 * f.loss_classification)
    XCTAssertEqual(
      losses.boxRegression.item, f.loss_bbox_regression, accuracy: 1e-5 * f.loss_bbox_regression)
    XCTAssertEqual(
      losses.centerness.item, f.loss_bbox_ctrness, accuracy: 1e-5 * f.loss_bbox_ctrness)
  }

  func testPostprocessMatchesTorchvision() throws {
    let fixture = try FCOSFixture.load()
    let (f, p) = (fixture.fcos, fixture.postprocess)
    let levels = levels(f)
    let a = levels.counts.reduce(0, +)
    let post = FCOSPostprocessor(
      scoreThreshold: p.score_thresh, topK: p.topk, nmsThreshold: p.nms,
      maxDetections: p.max_detections)
    let found = post.detections(
      classLogits: Tensor(p.cls_logits, shape: [2, a, f.num_classes]),
      boxRegression: Tensor(f.bbox_regression, shape: [2, a, 4]),
      centerness: Tensor(p.bbox_ctrness, shape: [2, a, 1]), levels: levels,
      imageSizes: p.image_sizes.map { ($0[0], $0[1]) })
    for (image, expected) in fixture.postDetections.detections.enumerated() {
      XCTAssertEqual(found[image].labels, expected.labels, "image \(image)")
      XCTAssertLessThan(maxDifference(found[image].scores, expected.scores), 1e-6)
      XCTAssertLessThan(
        maxDifference(found[image].boxes.flatMap { [$0[0], $0[1], $0[2], $0[3]] }, expected.boxes),
        1e-4)
      XCTAssertEqual(found[image].boxes.count, p.max_detections, "the cap should act")
      XCTAssertTrue(
        found[image].boxes.allSatisfy { $0[0] >= 0 && $0[2] <= Float(p.image_sizes[image][1]) })
    }
  }
}
