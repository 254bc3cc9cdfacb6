import Foundation
import GraftVideo
import XCTest

/// Frame indices against PLLaVA's own `get_index` run with NumPy (Fixtures/sampling.json).
final class FrameSamplingTests: XCTestCase {
  struct Case: Decodable {
    var n: Int
    var t: Int
    var pllava: [Int]
    var middle: [Int]
  }

  struct Bounded: Decodable {
    var n: Int
    var fps: Double
    var start: Double
    var end: Double
    var t: Int
    var pllava: [Int]
  }

  struct File: Decodable {
    var cases: [Case]
    var bounded: [Bounded]
  }

  func testPLLaVAAndMiddleIndicesMatchNumPy() throws {
    let data = try Data(
      contentsOf: VideoFixtures.folder.appendingPathComponent("sampling.json"))
    let file = try JSONDecoder().decode(File.self, from: data)
    let cases = file.cases
    XCTAssertEqual(file.bounded.count, 6)
    for c in file.bounded {
      XCTAssertEqual(
        FrameSampling.pllavaBound(start: c.start, end: c.end)
          .indices(frameCount: c.n, count: c.t, fps: c.fps), c.pllava, "\(c)")
    }
    XCTAssertGreaterThan(cases.count, 100)
    for c in cases {
      XCTAssertEqual(
        FrameSampling.pllava.indices(frameCount: c.n, count: c.t), c.pllava, "N \(c.n) T \(c.t)")
      XCTAssertEqual(
        FrameSampling.middle.indices(frameCount: c.n, count: c.t), c.middle, "N \(c.n) T \(c.t)")
    }
    // Round half to even: seg 2.5 gives 1 + round(2.5) = 3, not 4.
    XCTAssertEqual(FrameSampling.pllava.indices(frameCount: 6, count: 2), [1, 3])
  }

  /// One frame per segment, in its segment; the seed decides which, and decides it again.
  func testRandomSamplingDrawsOneFramePerSegment() {
    let n = 100
    let t = 8
    var seen = Set<[Int]>()
    for seed in UInt64(0)..<20 {
      let indices = FrameSampling.random(seed: seed).indices(frameCount: n, count: t)
      XCTAssertEqual(indices, FrameSampling.random(seed: seed).indices(frameCount: n, count: t))
      for (i, index) in indices.enumerated() {
        XCTAssertTrue((i * n / t..<(i + 1) * n / t).contains(index), "segment \(i): \(index)")
      }
      seen.insert(indices)
    }
    XCTAssertGreaterThan(seen.count, 15)
    // More frames asked than exist: every index stays inside the video.
    XCTAssertTrue(
      FrameSampling.random(seed: 1).indices(frameCount: 3, count: 8).allSatisfy {
        (0..<3).contains($0)
      })
  }
}
