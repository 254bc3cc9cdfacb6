import Foundation
import GraftTensor
import XCTest

@testable import GraftModels

/// The committed model fixtures.
private let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

final class ReinitialiseTests: XCTestCase {
  func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-reinit-\(UUID().uuidString)")
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  /// The copy loads as the same architecture with every tensor of the same name and shape,
  /// but new values; the same seed gives the same weights and another seed others.
  func checkReinitialised(_ source: URL) throws {
    let original = try SafetensorsFile(
      contentsOf: source.appendingPathComponent("model.safetensors")
    ).tensors()
    var copies: [[String: Tensor]] = []
    for seed: UInt64 in [3, 3, 4] {
      let out = try temporaryFolder()
      try ModelLoader.writeReinitialised(source.path, to: out, seed: seed)
      _ = try ModelLoader.loadBackbone(out.path)
      copies.append(
        try SafetensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).tensors())
    }
    XCTAssertEqual(Set(copies[0].keys), Set(original.keys))
    var changed = 0
    for (name, tensor) in original {
      let fresh = try XCTUnwrap(copies[0][name], name)
      XCTAssertEqual(fresh.shape, tensor.shape, name)
      if fresh.scalars != tensor.scalars { changed += 1 }
      XCTAssertEqual(copies[1][name]?.scalars, fresh.scalars, "same seed: \(name)")
    }
    XCTAssertGreaterThan(changed, original.count / 2)
    XCTAssertTrue(copies[2].contains { $0.value.scalars != copies[0][$0.key]?.scalars })
  }

  func testPointMAEFolder() throws {
    try checkReinitialised(fixtures.appendingPathComponent("point_mae/model"))
  }

  func testTimmFolderKeepsItsConfig() throws {
    let source = fixtures.appendingPathComponent("vit/deit")
    try checkReinitialised(source)
    let out = try temporaryFolder()
    try ModelLoader.writeReinitialised(source.path, to: out, seed: 0)
    XCTAssertEqual(
      try Data(contentsOf: out.appendingPathComponent("config.json")),
      try Data(contentsOf: source.appendingPathComponent("config.json")))
  }

  func testTheSourceFolderIsNeverOverwritten() throws {
    let source = fixtures.appendingPathComponent("point_mae/model")
    XCTAssertThrowsError(try ModelLoader.writeReinitialised(source.path, to: source, seed: 0))
    // Nor is another folder that holds anything (a model, a pretraining run): nothing changes.
    let other = try temporaryFolder()
    try ModelLoader.writeReinitialised(source.path, to: other, seed: 0)
    let before = try Data(contentsOf: other.appendingPathComponent("model.safetensors"))
    XCTAssertThrowsError(try ModelLoader.writeReinitialised(source.path, to: other, seed: 1)) {
      XCTAssertTrue("\($0)".contains("holds files already"), "\($0)")
    }
    XCTAssertEqual(try Data(contentsOf: other.appendingPathComponent("model.safetensors")), before)
  }
}
