import Foundation
import GraftModels
import XCTest

@testable import GraftTasks

/// Sweet Home 3D's `PluginFurnitureCatalog.properties`, a Java properties file.
final class FurnitureCatalogTests: XCTestCase {
  func testJavaPropertiesSyntax() throws {
    var bytes = Array(
      """
      # a comment
        ! another
      plain=value
      colon: spaced value \\
          continued
      blank separated
      escaped\\=key = a\\tb\\u20ac\\\\
      empty=
      name#3=Chaise longue
      plain=replaced\r
      latin=caf
      """.utf8)
    bytes.append(0xE9)  // ISO-8859-1 é
    let p = try FurnitureCatalog.parseProperties(Data(bytes), path: "x")
    XCTAssertEqual(p["plain"], "replaced")
    XCTAssertEqual(p["colon"], "spaced value continued")
    XCTAssertEqual(p["blank"], "separated")
    XCTAssertEqual(p["escaped=key"], "a\tb€\\")
    XCTAssertEqual(p["empty"], "")
    XCTAssertEqual(p["name#3"], "Chaise longue")
    XCTAssertEqual(p["latin"], "café")
    XCTAssertNil(p["#"])
    XCTAssertEqual(p.count, 7)
    XCTAssertThrowsError(try FurnitureCatalog.parseProperties(Data("k=\\u20x".utf8), path: "cat")) {
      let error = $0 as? DatasetError
      XCTAssertEqual(error?.path, "cat")
      XCTAssertEqual(error?.line, 1)
    }
  }

  func testCatalogModels() throws {
    let catalog = """
      id=Test#Lib
      license=Free for tests
      id#2=Lib#lamp
      name#2=Lamp
      category#2=Lights
      model#2=/lib/lamp/lamp.obj
      modelRotation#2=1 0 0 0 0 1 0 -1 0
      creator#2=Someone
      id#1=Lib#chair
      name#1=Chair
      category#1=Living room
      model#1=lib/chair.obj
      name#3=No model
      """
    let url = temporaryFolder().appendingPathComponent("Lib.sh3f")
    defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
    try TestZip.write([.init(name: FurnitureCatalog.member, bytes: Array(catalog.utf8))], to: url)
    let parsed = try FurnitureCatalog(archive: try ZipFile(contentsOf: url))
    XCTAssertEqual(parsed.library, "Lib")
    XCTAssertEqual(parsed.license, "Free for tests")
    XCTAssertEqual(parsed.models.map(\.index), [1, 2])
    XCTAssertEqual(
      parsed.models[1],
      FurnitureModel(
        library: "Lib", index: 2, id: "Lib#lamp", name: "Lamp", category: "Lights",
        model: "lib/lamp/lamp.obj", creator: "Someone", rotation: [1, 0, 0, 0, 0, 1, 0, -1, 0]))
    XCTAssertEqual(parsed.models[0].model, "lib/chair.obj")
    XCTAssertNil(parsed.models[0].rotation)

    try TestZip.write(
      [
        .init(
          name: FurnitureCatalog.member, bytes: Array("model#1=a.obj\nmodelRotation#1=1 0 0\n".utf8)
        )
      ],
      to: url)
    XCTAssertThrowsError(try FurnitureCatalog(archive: try ZipFile(contentsOf: url))) {
      XCTAssertTrue("\($0)".contains("modelRotation#1"), "\($0)")
    }
    try TestZip.write([.init(name: "other.txt", bytes: [])], to: url)
    XCTAssertThrowsError(try FurnitureCatalog(archive: try ZipFile(contentsOf: url))) {
      XCTAssertEqual(($0 as? DatasetError)?.path, url.path)
    }
  }
}
