import XCTest

@testable import GraftModels

/// The bundled `Models/vit-nano-fmnist` (pretrained by `graft pretrain`): found by name, built as
/// its card says, and giving timm's logits on real Fashion-MNIST test images
/// (`Tools/check_bundled_model.py --fixture`, which also measured timm's test top-1).
final class BundledModelTests: XCTestCase {
  func testBundledBackboneLoadsByNameAndMatchesTimm() throws {
    let loaded = try ModelLoader.load("vit-nano-fmnist")
    let c = loaded.model.config
    XCTAssertEqual(
      [c.imgSize.height, c.patchSize.height, c.embedDim, c.depth, c.numHeads], [28, 4, 128, 6, 4])
    XCTAssertEqual(c.numClasses, 10)
    XCTAssertEqual(loaded.model.parameterCount, 1_203_978)
    let url = try XCTUnwrap(
      Bundle.module.url(
        forResource: "bundled_logits", withExtension: "safetensors", subdirectory: "Fixtures"))
    let fixture = try SafetensorsFile(contentsOf: url).tensors()
    let pixels = try XCTUnwrap(fixture["pixels"])
    let expected = try XCTUnwrap(fixture["logits"])
    loaded.model.eval()
    let logits = withNoGrad { loaded.model(pixels) }
    XCTAssertEqual(logits.shape, expected.shape)
    let scale = expected.scalars.map(abs).max()!
    for (a, b) in zip(logits.scalars, expected.scalars) {
      XCTAssertEqual(a, b, accuracy: 1e-4 * scale)
    }
    // The first eight test images are mostly classified right (timm's own predictions).
    let labels = try XCTUnwrap(fixture["labels"]).scalars.map { Int($0) }
    let hits = zip(logits.argmax(axis: 1), labels).filter { $0 == $1 }.count
    XCTAssertGreaterThanOrEqual(hits, 6)
  }
}
