import Foundation
import XCTest

@testable import GraftDetection

/// The head's and the pyramid's forward passes against torchvision's FCOS heads and detectron2's
/// `SimpleFeaturePyramid` layers (rebuilt in torch) with the same random tensors
/// (Fixtures/fcos/modules.json, written by Tools/make_fcos_fixtures.py).
final class FCOSModuleParityTests: XCTestCase {
  private struct Head: Decodable {
    let params: [String: [Float]]
    let inputs: [[Float]]
    let input_shapes: [[Int]]
    let cls_logits: [Float]
    let bbox_regression: [Float]
    let bbox_ctrness: [Float]
  }
  private struct Pyramid: Decodable {
    let params: [String: [Float]]
    let input: [Float]
    let input_shape: [Int]
    let outputs: [[Float]]
    let output_shapes: [[Int]]
  }
  private struct Fixture: Decodable {
    let head: Head
    let pyramid: Pyramid
  }

  private func load() throws -> Fixture {
    let url = URL(fileURLWithPath: fixturePath("fcos/modules.json"))
    return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
  }

  /// Copies the fixture's tensors into `named`; every tensor must be covered.
  private func assign(
    _ named: [(String, Tensor)], _ values: [String: [Float]], skip: Set<String> = []
  )
    throws
  {
    for (name, t) in named where !skip.contains(name) {
      let v = try XCTUnwrap(values[name], "no \(name) in the fixture")
      XCTAssertEqual(v.count, t.count, name)
      t.assign(Tensor(v, shape: t.shape))
    }
    XCTAssertEqual(named.count - skip.count, values.count, "every fixture tensor has a place")
  }

  private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    a.count == b.count ? zip(a, b).map { abs($0 - $1) }.max() ?? 0 : .infinity
  }

  func testHeadMatchesTorchvision() throws {
    let f = try load().head
    let head = FCOSHead(channels: 8, numClasses: 3, numLevels: 2, numConvs: 2)
    try assign(head.namedParameters, f.params, skip: ["scales.0", "scales.1"])
    let out = withNoGrad {
      head(zip(f.inputs, f.input_shapes).map { Tensor($0, shape: $1) })
    }
    XCTAssertLessThan(maxDifference(out.classLogits.scalars, f.cls_logits), 1e-5)
    XCTAssertLessThan(maxDifference(out.boxRegression.scalars, f.bbox_regression), 1e-5)
    XCTAssertLessThan(maxDifference(out.centerness.scalars, f.bbox_ctrness), 1e-5)
    XCTAssertTrue(f.bbox_regression.contains(0), "the ReLU should clip some distances")
  }

  func testSimpleFeaturePyramidMatchesViTDetLayers() throws {
    let f = try load().pyramid
    let pyramid = SimpleFeaturePyramid(inChannels: 8, outChannels: 6)
    try assign(pyramid.namedParameters, f.params)
    let maps = withNoGrad { pyramid(Tensor(f.input, shape: f.input_shape)) }
    XCTAssertEqual(maps.map(\.shape), f.output_shapes)
    for (i, (m, expected)) in zip(maps, f.outputs).enumerated() {
      XCTAssertLessThan(maxDifference(m.scalars, expected), 1e-4, "stride \(4 << i)")
    }
  }
}
