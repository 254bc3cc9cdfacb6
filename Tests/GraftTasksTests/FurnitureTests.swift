import Foundation
import GraftModels
import GraftPoints
import XCTest

@testable import GraftTasks

/// `graft data prepare furniture` on two small libraries in the `.sh3f` layout, written by the
/// test (so CI does not need Debian's package), and on the real package when it is installed.
final class FurnitureTests: XCTestCase {
  /// A box of `w × h × d` as OBJ text (quads, with `vt`/`vn` corner forms as exporters write).
  private func box(_ w: Float, _ h: Float, _ d: Float) -> String {
    var lines = ["mtllib box.mtl", "o box"]
    for x in [0, w] { for y in [0, h] { for z in [0, d] { lines.append("v \(x) \(y) \(z)") } } }
    lines += ["vt 0 0", "vn 0 0 1", "usemtl wood"]
    lines += [
      "f 1/1/1 2/1/1 4/1/1 3/1/1", "f 5 7 8 6", "f 1 5 6 2", "f 3 4 8 7", "f 1 3 7 5", "f 2 6 8 4",
    ]
    return lines.joined(separator: "\n") + "\n"
  }

  /// A flat unit square in the x–y plane (z = 0).
  private let square = "v 0 0 0\nv 2 0 0\nv 2 1 0\nv 0 1 0\nf 1 2 3 4\n"

  private struct Entry {
    var id: String
    var category: String
    var obj: String
    var folder: String? = nil
    var rotation: String? = nil
  }

  /// Writes library `name` with its catalog and one OBJ member per entry (every other member
  /// deflated, as real libraries are).
  private func library(_ name: String, _ entries: [Entry], in folder: URL) throws {
    let slug = name.lowercased()
    var catalog = [
      "# \(name)", "id=Test#\(name)", "license=Test licence of \(name) \\", "  (CC0)", "",
    ]
    var members: [TestZip.Member] = []
    for (k, e) in entries.enumerated() {
      let n = k + 1
      let path = "\(slug)/\(e.folder ?? e.id)/\(e.id).obj"
      catalog += [
        "id#\(n)=\(name)#\(e.id)", "name#\(n)=\(e.id.capitalized) \\u00e9",
        "category#\(n)=\(e.category)",
        "model#\(n)=/\(path)", "creator#\(n)=Maker \(n)",
      ]
      if let r = e.rotation { catalog.append("modelRotation#\(n)=\(r)") }
      catalog.append("")
      members.append(.init(name: path, bytes: Array(e.obj.utf8), deflated: n % 2 == 0))
    }
    members.insert(
      .init(
        name: FurnitureCatalog.member, bytes: Array(catalog.joined(separator: "\n").utf8),
        deflated: true), at: 0)
    try TestZip.write(members, to: folder.appendingPathComponent("\(name).sh3f"))
  }

  /// Alpha and Beta: kitchen 5 good + 1 broken, lights 3, garden 3 (an unknown category),
  /// bedroom 2 (under the minimum of 3), Miscellaneous 1 (dropped), one mesh without faces.
  private func libraries() throws -> URL {
    let folder = temporaryFolder().appendingPathComponent("furniture-libraries")
    addTeardownBlock { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try library(
      "Alpha",
      [
        Entry(id: "box", category: "Kitchen", obj: box(1, 2, 3), folder: "k1"),
        Entry(id: "box", category: "Kitchen", obj: box(2, 1, 1), folder: "k2"),
        Entry(id: "oven", category: "Kitchen", obj: box(3, 3, 1)),
        Entry(id: "sink", category: "Kitchen", obj: box(1, 1, 4)),
        Entry(id: "broken", category: "Kitchen", obj: "v 1 2\nf 1 2 3\n"),
        Entry(id: "panel", category: "Lights", obj: square, rotation: "1 0 0 0 0 1 0 -1 0"),
        Entry(id: "bulb", category: "Lights", obj: box(1, 1, 1)),
        Entry(id: "spot", category: "Lights", obj: box(1, 5, 1)),
        Entry(id: "toy", category: "Miscellaneous", obj: box(1, 1, 1)),
        Entry(id: "bed", category: "Bedroom", obj: box(2, 1, 2)),
      ], in: folder)
    try library(
      "Beta",
      [
        Entry(id: "fridge", category: "Kitchen", obj: box(1, 3, 1)),
        Entry(id: "cot", category: "Bedroom", obj: box(1, 1, 2)),
        Entry(id: "shed", category: "Garden", obj: box(3, 2, 2)),
        Entry(id: "pond", category: "Garden", obj: box(3, 1, 3)),
        Entry(id: "tree", category: "Garden", obj: box(1, 6, 1)),
        Entry(id: "points", category: "Garden", obj: "v 0 0 0\nv 1 0 0\nv 0 1 0\n"),
      ], in: folder)
    return folder
  }

  func testPreparesClassesSplitsCloudsAndRecords() throws {
    let libraries = try libraries()
    let root = libraries.deletingLastPathComponent().appendingPathComponent("furniture")
    var logged: [String] = []
    let s = try Furniture.prepare(
      libraries: libraries, root: root, points: 64, minimumMeshes: 3, log: { logged.append($0) })
    XCTAssertEqual(s.classNames, ["garden", "kitchen", "light"])
    XCTAssertEqual(s.counts["train"], [1, 3, 1])
    XCTAssertEqual(s.counts["val"], [1, 1, 1])
    XCTAssertEqual(s.counts["test"], [1, 1, 1])
    XCTAssertEqual(s.models, 16)
    XCTAssertEqual(s.meshes, 11)
    XCTAssertEqual(s.droppedCategory, 1)
    XCTAssertEqual(s.droppedSmallClass, 2)
    XCTAssertEqual(
      s.failures.map(\.model).sorted(),
      ["Alpha/alpha/broken/broken.obj", "Beta/beta/points/points.obj"])
    XCTAssertTrue(s.failures.allSatisfy { $0.reason.contains(".sh3f:") }, "\(s.failures)")
    XCTAssertTrue(logged.last!.contains("11 meshes in 3 classes (2 failed to parse"), "\(logged)")
    XCTAssertTrue(Furniture.isPrepared(root: root))

    let train = try Furniture.dataset(split: "train", root: root)
    XCTAssertEqual(train.classNames, s.classNames)
    XCTAssertEqual(train.labels, [0, 1, 1, 1, 2])
    for i in 0..<train.count {
      let cloud = try train.sample(at: i)
      XCTAssertEqual(cloud.count, 64)
      let radius = (0..<64).map { j in
        let p = cloud.point(j)
        return (p * p).sum().squareRoot()
      }
      XCTAssertEqual(radius.max()!, 1, accuracy: 1e-5, "clouds are on the unit sphere")
      let normals = try XCTUnwrap(cloud.normals)
      for j in 0..<64 {
        let n = SIMD3(normals[3 * j], normals[3 * j + 1], normals[3 * j + 2])
        XCTAssertEqual((n * n).sum(), 1, accuracy: 1e-5)
      }
    }
    XCTAssertEqual(try Furniture.dataset(split: "test", root: root).labels, [0, 1, 2])

    // Every kept mesh once, with its source and licence; the same-named models of two folders
    // got distinct files.
    let tsv = try String(contentsOf: root.appendingPathComponent("meshes.tsv"), encoding: .utf8)
      .split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
    XCTAssertEqual(tsv.count, 12)
    XCTAssertEqual(tsv[0].first, "split")
    let files = Set(tsv.dropFirst().map { String($0[2]) })
    XCTAssertEqual(files.count, 11)
    XCTAssertTrue(files.contains { $0.hasSuffix("/alpha-box.ply") })
    XCTAssertTrue(files.contains { $0.hasSuffix("/alpha-box-2.ply") })
    for row in tsv.dropFirst() {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: root.appendingPathComponent(String(row[2])).path))
    }
    let panel = try XCTUnwrap(tsv.first { $0[4] == "Alpha#panel" })
    XCTAssertEqual(panel[3], "Alpha.sh3f")
    XCTAssertEqual(panel[5], "Panel é")
    XCTAssertEqual(panel[7], "alpha/panel/panel.obj")
    XCTAssertEqual(panel[8], "Maker 6")
    XCTAssertEqual(panel[9], "Test licence of Alpha (CC0)")
    XCTAssertEqual(
      try String(contentsOf: root.appendingPathComponent("classes.txt"), encoding: .utf8),
      "garden\nkitchen\nlight\n")
    let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    XCTAssertTrue(readme.contains("| kitchen | 3 | 1 | 1 |"), readme)

    // The square, turned upright by its modelRotation (y′ = z = 0), lies in the x–z plane.
    let panelCloud = try PointFile.readCloud(root.appendingPathComponent(String(panel[2])))
    XCTAssertTrue((0..<64).allSatisfy { panelCloud.positions[3 * $0 + 1] == 0 })
    XCTAssertTrue((0..<64).allSatisfy { abs(panelCloud.normals![3 * $0 + 1]) == 1 })

    // Preparing again replaces the set and nothing else in its folder.
    let stray = root.appendingPathComponent("notes.txt")
    try Data("mine".utf8).write(to: stray)
    try FileManager.default.removeItem(at: root.appendingPathComponent(String(panel[2])))
    try Furniture.prepare(libraries: libraries, root: root, points: 64, minimumMeshes: 3)
    XCTAssertTrue(FileManager.default.fileExists(atPath: stray.path))
    XCTAssertEqual(try Furniture.dataset(split: "train", root: root).count, 5)

    // The same libraries give the same set, byte for byte.
    let again = libraries.deletingLastPathComponent().appendingPathComponent("again")
    try Furniture.prepare(libraries: libraries, root: again, points: 64, minimumMeshes: 3)
    for name in ["meshes.tsv", String(panel[2]), String(tsv[1][2])] {
      XCTAssertEqual(
        try Data(contentsOf: root.appendingPathComponent(name)),
        try Data(contentsOf: again.appendingPathComponent(name)), name)
    }
  }

  func testErrors() throws {
    let empty = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: empty) }
    XCTAssertThrowsError(
      try Furniture.prepare(libraries: empty, root: empty.appendingPathComponent("out"))
    ) {
      XCTAssertTrue("\($0)".contains("apt install sweethome3d-furniture"), "\($0)")
    }
    XCTAssertThrowsError(try Furniture.dataset(split: "train", root: empty)) {
      XCTAssertEqual(($0 as? DatasetError)?.kind, .notFound)
    }
    XCTAssertThrowsError(try Furniture.dataset(split: "validation", root: empty)) {
      XCTAssertEqual(($0 as? DatasetError)?.kind, .invalidArgument)
    }
    let libraries = try libraries()
    XCTAssertThrowsError(
      try Furniture.prepare(
        libraries: libraries, root: empty.appendingPathComponent("out"), points: 8, minimumMeshes: 6
      )
    ) {
      XCTAssertEqual(($0 as? DatasetError)?.kind, .tooFewSamples, "\($0)")
    }
    XCTAssertEqual(Furniture.className(for: "Living room"), "living_room")
    XCTAssertEqual(Furniture.className(for: "Doors and windows"), "door_window")
    XCTAssertNil(Furniture.className(for: "Miscellaneous"))
    XCTAssertEqual(Furniture.className(for: "Jardin & Patio"), "jardin_patio")
  }

  func testCommandLinePreparesAndLists() throws {
    let libraries = try libraries()
    let root = libraries.deletingLastPathComponent().appendingPathComponent("set")
    let prepared = try runGraft([
      "data", "prepare", "furniture", "--libraries", libraries.path, "--root", root.path,
      "--points", "32", "--minimum-meshes", "3",
    ])
    XCTAssertEqual(prepared.status, 0, prepared.err)
    XCTAssertTrue(prepared.out.contains("kitchen: train 3, val 1, test 1"), prepared.out)
    let listed = try runGraft(["data", "list", "--furniture-root", root.path])
    XCTAssertEqual(listed.status, 0, listed.err)
    let line = try XCTUnwrap(listed.out.split(separator: "\n").first { $0.hasPrefix("furniture ") })
    XCTAssertEqual(
      line.split(separator: " ", omittingEmptySubsequences: true).prefix(3),
      ["furniture", "3", "yes"])
  }

  /// The real libraries of Debian's `sweethome3d-furniture`, when installed; skipped otherwise
  /// (CI without the package). Reads every catalog and samples the smallest mesh of each library.
  func testRealSweetHome3DLibrariesWhenInstalled() throws {
    guard let files = try? Furniture.libraryFiles(Furniture.defaultLibraries) else {
      throw XCTSkip("sweethome3d-furniture is not installed (apt install sweethome3d-furniture)")
    }
    var models = 0
    var byCategory: [String: Int] = [:]
    for url in files {
      let zip = try ZipFile(contentsOf: url)
      let catalog = try FurnitureCatalog(archive: zip)
      XCTAssertFalse(catalog.models.isEmpty, url.path)
      XCTAssertNotNil(Furniture.libraryLicences[catalog.library], "licence of \(catalog.library)")
      for m in catalog.models {
        XCTAssertTrue(zip.contains(m.model), "\(url.lastPathComponent): \(m.model)")
        byCategory[m.category, default: 0] += 1
      }
      models += catalog.models.count
      let smallest = try XCTUnwrap(
        catalog.models.min { zip.size(of: $0.model)! < zip.size(of: $1.model)! })
      let cloud = try Furniture.sampleModel(zip, smallest, points: 2048)
      XCTAssertEqual(cloud.count, 2048)
      XCTAssertEqual(cloud.normals?.count, 3 * 2048)
    }
    XCTAssertGreaterThanOrEqual(files.count, 5)
    XCTAssertGreaterThanOrEqual(models, 800)
    let classes = Set(byCategory.filter { $0.value >= 15 }.keys.compactMap(Furniture.className))
    XCTAssertGreaterThanOrEqual(classes.count, 10, "\(byCategory)")
  }
}
