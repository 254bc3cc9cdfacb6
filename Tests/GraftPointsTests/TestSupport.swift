import Foundation
import GraftData
import XCTest

@testable import GraftPoints

/// The committed fixtures.
enum Fixtures {
  static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }
}

/// A fresh temporary folder, removed when the test ends.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("graft-points-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}

/// Asserts that `body` throws a `PointFileError` of `kind` whose description names `path` and
/// contains `fragment`.
func assertPointError<T>(
  _ kind: PointFileError.Kind, path: String = "<memory>", _ fragment: String = "",
  file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
) {
  do {
    _ = try body()
    XCTFail("expected a \(kind) error", file: file, line: line)
  } catch let error as PointFileError {
    XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
    XCTAssertTrue(error.description.hasPrefix(path + ": "), "\(error)", file: file, line: line)
    XCTAssertTrue(
      fragment.isEmpty || error.message.contains(fragment), "\(error) lacks '\(fragment)'",
      file: file, line: line)
  } catch {
    XCTFail("expected a PointFileError, got \(error)", file: file, line: line)
  }
}

/// Whether two float arrays hold the same values, NaN matching NaN.
func sameFloats(_ a: [Float]?, _ b: [Float]?) -> Bool {
  guard let a, let b else { return a == nil && b == nil }
  return a.count == b.count && zip(a, b).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
}

/// Asserts that two clouds hold the same points and fields (NaN matching NaN).
func assertSameCloud(
  _ a: PointCloud, _ b: PointCloud, organisation: Bool = true, file: StaticString = #filePath,
  line: UInt = #line
) {
  XCTAssertTrue(sameFloats(a.positions, b.positions), "positions differ", file: file, line: line)
  XCTAssertTrue(sameFloats(a.normals, b.normals), "normals differ", file: file, line: line)
  XCTAssertEqual(a.colors, b.colors, "colours differ", file: file, line: line)
  XCTAssertEqual(a.alpha, b.alpha, "alpha differs", file: file, line: line)
  XCTAssertTrue(sameFloats(a.intensity, b.intensity), "intensity differs", file: file, line: line)
  XCTAssertEqual(a.attributes.map(\.name), b.attributes.map(\.name), file: file, line: line)
  XCTAssertEqual(
    a.attributes.map(\.components), b.attributes.map(\.components), file: file, line: line)
  for (x, y) in zip(a.attributes, b.attributes) {
    XCTAssertTrue(
      sameFloats(x.values, y.values), "attribute \(x.name) differs", file: file, line: line)
  }
  if organisation {
    XCTAssertEqual(a.width, b.width, file: file, line: line)
    XCTAssertEqual(a.height, b.height, file: file, line: line)
  }
}

/// A cloud with every kind of field: normals, colours with alpha, intensity, a scalar and a
/// 5-component attribute; values that exercise float text (tiny, huge, negative zero).
func richCloud(_ n: Int = 7) -> PointCloud {
  var rng = SplitMix(seed: 3)
  let positions = (0..<(3 * n)).map { i -> Float in
    i == 1 ? -0.0 : i == 2 ? 1e-30 : i == 4 ? 3.4e37 : Float(rng.next() % 2_000_001) / 1000 - 1000
  }
  let normals = (0..<(3 * n)).map { _ in Float(rng.next() % 1000) / 999 }
  let colors = (0..<(3 * n)).map { _ in UInt8(rng.next() % 256) }
  let alpha = (0..<n).map { _ in UInt8(rng.next() % 256) }
  let intensity = (0..<n).map { _ in Float(rng.next() % 1000) / 7 }
  return PointCloud(
    positions: positions, normals: normals, colors: colors, alpha: alpha, intensity: intensity,
    attributes: [
      PointAttribute(name: "confidence", values: (0..<n).map { Float($0) / 3 }),
      PointAttribute(
        name: "histogram", components: 5, values: (0..<(5 * n)).map { Float($0) * 0.25 }),
    ])
}

/// A tiny deterministic generator for test data.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

extension Data {
  /// The bytes of `text` in UTF-8.
  init(text: String) { self.init(text.utf8) }
}

/// Asserts that `body` throws a `DatasetError` of `kind` about `path` (when given) whose message
/// contains `fragment`.
func assertDatasetError<T>(
  _ kind: DatasetError.Kind, path: String? = nil, line expectedLine: Int? = nil,
  _ fragment: String = "", file: StaticString = #filePath, line: UInt = #line,
  _ body: () throws -> T
) {
  do {
    _ = try body()
    XCTFail("expected a \(kind) error", file: file, line: line)
  } catch let error as DatasetError {
    XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
    if let path { XCTAssertEqual(error.path, path, "\(error)", file: file, line: line) }
    if let expectedLine {
      XCTAssertEqual(error.line, expectedLine, "\(error)", file: file, line: line)
    }
    XCTAssertTrue(
      fragment.isEmpty || error.message.contains(fragment), "\(error) lacks '\(fragment)'",
      file: file, line: line)
  } catch {
    XCTFail("expected a DatasetError, got \(error)", file: file, line: line)
  }
}

/// Writes `text` to `url`, creating its folder.
func writeText(_ text: String, to url: URL) throws {
  try FileManager.default.createDirectory(
    at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
  try Data(text.utf8).write(to: url)
}

/// A cloud of `n` points with normals whose values encode `tag`, so every file is distinct.
func taggedCloud(_ tag: Int, points n: Int = 6) -> PointCloud {
  PointCloud(
    positions: (0..<(3 * n)).map { Float(tag) + Float($0) * 0.25 },
    normals: (0..<n).flatMap { i -> [Float] in i % 2 == 0 ? [0, 1, 0] : [1, 0, 0] })
}
