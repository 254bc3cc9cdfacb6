import Foundation
import GraftModels
import GraftPoints
import Synchronization

/// Furniture: a labelled point-cloud classification set built from real meshes, the 3-D models
/// of Debian's `sweethome3d-furniture` (five Sweet Home 3D libraries, `.sh3f` zip files of OBJ
/// meshes with a catalog naming each model, its category and its creator).
///
/// `prepare` reads every library's catalog, maps its categories to classes (`classNames(for:)`:
/// `Living room` → `living_room`, `Lights` → `light`, …; `Miscellaneous`, a catch-all, is
/// dropped), turns each mesh upright with the catalog's `modelRotation`, samples `points` points
/// with face normals uniformly over its surface (area-weighted, seeded per mesh), moves the cloud
/// to the unit sphere, and keeps the classes with at least `minimumMeshes` meshes that parse.
/// Each class is split by mesh, 60/20/20, into `train`, `val` and `test` with a fixed seed. The
/// result is a class-per-folder tree of binary PLY clouds (x, y, z, nx, ny, nz) per split, read
/// with `PointFolderDataset`:
///
/// ```
/// <root>/train/<class>/<library>-<model>.ply    (val/, test/ alike)
/// <root>/classes.txt                              class names, sorted (= labels)
/// <root>/meshes.tsv                               every mesh: split, class, file, source, licence
/// <root>/README.md                                counts, sources, licences
/// <root>/prepared.json                            written last
/// ```
///
/// A mesh that does not parse, or has no surface, is skipped and counted, never fatal.
public enum Furniture {
  /// Where Debian's `sweethome3d-furniture` installs the libraries.
  public static let defaultLibraries = URL(fileURLWithPath: "/usr/share/sweethome3d/furniture")

  /// Where the set is prepared: `$GRAFT_DATA_HOME/furniture`, else `~/.cache/graft/furniture`.
  public static func defaultRoot() -> URL { DataHome.folder("furniture") }

  /// The splits, in order.
  public static let splits = ["train", "val", "test"]

  /// Fractions of each class's meshes that go to validation and test (the rest trains).
  public static let validationFraction = 0.2
  /// See `validationFraction`.
  public static let testFraction = 0.2

  /// Seed of the split and of every mesh's sampling.
  public static let seed: UInt64 = 1

  /// The licence of each Debian library, from the package's `copyright` file.
  public static let libraryLicences: [String: String] = [
    "BlendSwap-CC-0": "CC0-1.0 (Emmanuel Puybaret / eTeks and other contributors)",
    "BlendSwap-CC-BY": "CC-BY-3.0 (the Blend Swap contributors; creator per model)",
    "KatorLegaz": "CC-BY-3.0-US (Andrew Kator & Jennifer Legaz)",
    "Reallusion": "CC-BY-3.0-US (Reallusion)",
    "Scopia": "CC-BY-3.0 (Scopia Visual Interfaces Systems)",
  ]

  /// Catalog categories → class names; nil drops the category.
  public static let categoryClasses: [String: String?] = [
    "Bathroom": "bathroom", "Bedroom": "bedroom",
    // People and animals (Reallusion's figures, a horse, cats, a chicken).
    "Characters": "character",
    "Doors and windows": "door_window", "Exterior": "exterior", "Kitchen": "kitchen",
    "Lights": "light", "Living room": "living_room", "Office": "office",
    "Staircases": "staircase", "Vehicles": "vehicle",
    // A catch-all (toys, bills, bottles, tools): no shape or use in common.
    "Miscellaneous": nil,
  ]

  /// The class of a catalog category: `categoryClasses`, else the category in lower case with
  /// runs of other characters as `_` (an unknown library's `Garden` → `garden`); nil when dropped.
  public static func className(for category: String) -> String? {
    if let mapped = categoryClasses[category] { return mapped }
    let slug = Self.slug(category)
    return slug.isEmpty ? nil : slug
  }

  /// What `prepare` did.
  public struct Summary: Sendable {
    /// Class names, sorted (a label is an index).
    public var classNames: [String]
    /// Meshes per class (indexed like `classNames`) in each split, keyed by split name.
    public var counts: [String: [Int]]
    /// Models read from the catalogs.
    public var models: Int
    /// Models whose category was dropped.
    public var droppedCategory: Int
    /// Models in classes with fewer than the minimum of meshes.
    public var droppedSmallClass: Int
    /// Meshes that failed to parse or sample, with the reason.
    public var failures: [(model: String, reason: String)]
    /// Seconds the preparation took.
    public var seconds: Double

    /// Meshes kept in all splits.
    public var meshes: Int { counts.values.reduce(0) { $0 + $1.reduce(0, +) } }
  }

  /// Whether the set is prepared under `root` (its `prepared.json`, written last, exists).
  public static func isPrepared(root: URL = defaultRoot()) -> Bool {
    FileManager.default.fileExists(atPath: root.appendingPathComponent("prepared.json").path)
  }

  /// Split `split` (`train`, `val` or `test`) of the prepared set.
  public static func dataset(split: String, root: URL = defaultRoot()) throws -> PointFolderDataset
  {
    guard splits.contains(split) else {
      throw DatasetError(
        .invalidArgument, path: root.path,
        "no furniture split '\(split)' (splits: \(splits.joined(separator: ", ")))")
    }
    guard isPrepared(root: root) else {
      throw DatasetError(
        .notFound, path: root.path,
        "the furniture set is not prepared here (run 'graft data prepare furniture')")
    }
    return try PointFolderDataset(root: root.appendingPathComponent(split), extensions: ["ply"])
  }

  /// Builds the set under `root` (replacing an earlier preparation there, nothing else) from the
  /// `.sh3f` libraries in `libraries`. `log` receives a line per skipped mesh and one with the
  /// totals.
  @discardableResult
  public static func prepare(
    libraries: URL = defaultLibraries, root: URL = defaultRoot(), points: Int = 2048,
    minimumMeshes: Int = 15, log: (String) -> Void = { _ in }
  ) throws -> Summary {
    let started = Date()
    guard points > 0, minimumMeshes >= 3 else {
      throw DatasetError(
        .invalidArgument, path: root.path,
        "points (\(points)) must be positive and the class minimum (\(minimumMeshes)) at least 3")
    }
    let archives = try libraryFiles(libraries)
    var catalogs: [(archive: ZipFile, catalog: FurnitureCatalog)] = []
    for url in archives {
      let archive = try ZipFile(contentsOf: url)
      catalogs.append((archive, try FurnitureCatalog(archive: archive)))
    }

    // Every model of a kept category, in library then catalog order.
    var candidates: [(archive: Int, model: FurnitureModel, className: String)] = []
    var modelCount = 0
    var droppedCategory = 0
    for (a, entry) in catalogs.enumerated() {
      modelCount += entry.catalog.models.count
      for model in entry.catalog.models {
        if let name = className(for: model.category) {
          candidates.append((a, model, name))
        } else {
          droppedCategory += 1
        }
      }
    }

    // Sample every candidate's mesh, on every core (each mesh is inflated, parsed and sampled
    // on its own; results land in their own slots).
    let clouds = sampleAll(
      candidates.map { (catalogs[$0.archive].archive, $0.model) }, points: points)

    var failures: [(model: String, reason: String)] = []
    var byClass: [String: [Int]] = [:]
    for (i, result) in clouds.enumerated() {
      switch result {
      case .success: byClass[candidates[i].className, default: []].append(i)
      case .failure(let error):
        let c = candidates[i]
        failures.append(("\(c.model.library)/\(c.model.model)", "\(error)"))
      }
    }
    let kept = byClass.filter { $0.value.count >= minimumMeshes }
    let droppedSmallClass = byClass.values.reduce(0) {
      $0 + ($1.count < minimumMeshes ? $1.count : 0)
    }
    let classNames = kept.keys.sorted()
    guard !classNames.isEmpty else {
      throw DatasetError(
        .tooFewSamples, path: libraries.path,
        "no class has \(minimumMeshes) meshes that parse (\(failures.count) failed)")
    }

    // Replace only what a preparation writes: `root` may be a folder the user keeps other
    // things in.
    let fm = FileManager.default
    for name in ["prepared.json"] + splits + ["classes.txt", "meshes.tsv", "README.md"] {
      try? fm.removeItem(at: root.appendingPathComponent(name))
    }
    var counts = Dictionary(
      uniqueKeysWithValues: splits.map { ($0, [Int](repeating: 0, count: classNames.count)) })
    var rows: [String] = [
      "split\tclass\tfile\tlibrary\tcatalog_id\tname\tcategory\tmodel\tcreator\tlicence"
    ]
    var usedNames: Set<String> = []
    for (label, name) in classNames.enumerated() {
      let members = kept[name]!
      var g = RandomGenerator(seed: SeedMix.mix(seed, stableSeed(name)))
      let order = g.permutation(members.count).map { members[$0] }
      let test = Int((Double(members.count) * testFraction).rounded())
      let validation = Int((Double(members.count) * validationFraction).rounded())
      for (position, i) in order.enumerated() {
        let split = position < test ? "test" : position < test + validation ? "val" : "train"
        let c = candidates[i]
        let folder = root.appendingPathComponent(split).appendingPathComponent(name)
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        var file = slug(c.model.library) + "-" + slug(modelStem(c.model))
        if usedNames.contains(file) {
          var k = 2
          while usedNames.contains("\(file)-\(k)") { k += 1 }
          file += "-\(k)"
        }
        usedNames.insert(file)
        try PointFile.write(try clouds[i].get(), to: folder.appendingPathComponent(file + ".ply"))
        counts[split]![label] += 1
        let licence =
          libraryLicences[c.model.library] ?? catalogs[c.archive].catalog.license
        rows.append(
          [
            split, name, "\(split)/\(name)/\(file).ply", c.model.library + ".sh3f", c.model.id,
            c.model.name, c.model.category, c.model.model, c.model.creator, licence,
          ].map(tsvField).joined(separator: "\t"))
      }
    }
    try write(classNames.joined(separator: "\n") + "\n", root, "classes.txt")
    try write(rows.joined(separator: "\n") + "\n", root, "meshes.tsv")
    let summary = Summary(
      classNames: classNames, counts: counts, models: modelCount,
      droppedCategory: droppedCategory, droppedSmallClass: droppedSmallClass,
      failures: failures, seconds: Date().timeIntervalSince(started))
    try write(
      readme(summary, catalogs: catalogs.map(\.catalog), points: points, minimum: minimumMeshes),
      root, "README.md")
    var record: [String: Any] = [
      "classes": classNames, "points": points, "seed": Int(seed),
      "minimum_meshes": minimumMeshes, "models": modelCount,
      "dropped_category": droppedCategory, "dropped_small_class": droppedSmallClass,
      "failed": failures.count, "libraries": archives.map(\.lastPathComponent),
      "graft_version": GraftVersion.string,
    ]
    for split in splits { record[split] = counts[split]! }
    let json = try JSONSerialization.data(
      withJSONObject: record, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(json, to: root.appendingPathComponent("prepared.json"))
    for failure in failures { log("skipped \(failure.model): \(failure.reason)") }
    log(
      "\(summary.meshes) meshes in \(classNames.count) classes (\(failures.count) failed to parse, "
        + "\(droppedCategory) in dropped categories, \(droppedSmallClass) in classes under "
        + "\(minimumMeshes)) in \(String(format: "%.1f", summary.seconds)) s")
    return summary
  }

  /// The `.sh3f` files in `folder`, sorted by name.
  static func libraryFiles(_ folder: URL) throws -> [URL] {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
    } catch {
      throw DatasetError(
        .notFound, path: folder.path,
        "no furniture libraries here (apt install sweethome3d-furniture)")
    }
    let libraries = names.filter { $0.hasSuffix(".sh3f") }.sorted()
    guard !libraries.isEmpty else {
      throw DatasetError(
        .notFound, path: folder.path,
        "no .sh3f furniture library here (apt install sweethome3d-furniture)")
    }
    return libraries.map { folder.appendingPathComponent($0) }
  }

  /// One model's mesh: the OBJ member parsed and turned upright with the catalog's rotation.
  static func mesh(_ archive: ZipFile, _ model: FurnitureModel) throws -> TriangleMesh {
    let source = "\(archive.url.path):\(model.model)"
    guard let contents = try OBJ.decode(try archive.data(model.model), path: source).mesh else {
      throw PointFileError(.noSurface, path: source, "the OBJ file has no face")
    }
    var mesh = contents
    if let m = model.rotation {
      var p = mesh.vertices.positions
      for j in 0..<mesh.vertexCount {
        let (x, y, z) = (p[3 * j], p[3 * j + 1], p[3 * j + 2])
        for r in 0..<3 { p[3 * j + r] = m[3 * r] * x + m[3 * r + 1] * y + m[3 * r + 2] * z }
      }
      mesh.vertices.positions = p
    }
    return mesh
  }

  /// The meshes of split `split` of the prepared set at `root`, with their labels, read again
  /// from the libraries in `libraries` (its `meshes.tsv` names each one's library and catalog
  /// entry): what pretraining samples fresh surface points from every epoch.
  public static func meshes(
    split: String, root: URL = defaultRoot(), libraries: URL = defaultLibraries
  ) throws -> (meshes: [TriangleMesh], labels: [Int], classNames: [String]) {
    let table = root.appendingPathComponent("meshes.tsv")
    guard isPrepared(root: root), let text = try? String(contentsOf: table, encoding: .utf8)
    else {
      throw DatasetError(
        .notFound, path: root.path,
        "the furniture set is not prepared: run 'graft data prepare furniture'")
    }
    let classNames = try String(
      contentsOf: root.appendingPathComponent("classes.txt"), encoding: .utf8
    ).split(separator: "\n").map(String.init)
    var archives: [String: (ZipFile, FurnitureCatalog)] = [:]
    var meshes: [TriangleMesh] = []
    var labels: [Int] = []
    for line in text.split(separator: "\n").dropFirst() {
      let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
      guard f.count >= 5, f[0] == split else { continue }
      guard let label = classNames.firstIndex(of: f[1]) else {
        throw DatasetError(.invalidFormat, path: table.path, "unknown class '\(f[1])'")
      }
      if archives[f[3]] == nil {
        let archive = try ZipFile(contentsOf: libraries.appendingPathComponent(f[3]))
        archives[f[3]] = (archive, try FurnitureCatalog(archive: archive))
      }
      let (archive, catalog) = archives[f[3]]!
      guard let model = catalog.models.first(where: { $0.id == f[4] }) else {
        throw DatasetError(
          .invalidFormat, path: table.path, "catalog entry '\(f[4])' is not in \(f[3])")
      }
      meshes.append(try mesh(archive, model))
      labels.append(label)
    }
    return (meshes, labels, classNames)
  }

  /// The cloud of one model: the OBJ member parsed, turned upright, sampled, normalised.
  static func sampleModel(
    _ archive: ZipFile, _ model: FurnitureModel, points: Int
  ) throws -> PointCloud {
    let source = "\(archive.url.path):\(model.model)"
    let mesh = try mesh(archive, model)
    var cloud = try mesh.sampleSurface(
      count: points, seed: SeedMix.mix(seed, stableSeed(model.library + "/" + model.model)),
      source: source)
    cloud.positions = Tensor(cloud.positions, shape: [points, 3]).normalizedToUnitSphere().scalars
    return cloud
  }

  /// Every model's cloud, or why it failed, in input order; models run in parallel.
  private static func sampleAll(
    _ models: [(ZipFile, FurnitureModel)], points: Int
  ) -> [Result<PointCloud, any Error>] {
    let next = Atomic<Int>(0)
    var results = [Result<PointCloud, any Error>?](repeating: nil, count: models.count)
    results.withUnsafeMutableBufferPointer { slots in
      Parallel.forRange(Parallel.threadCount, grain: 1) { workers in
        for _ in workers {
          while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            guard i < models.count else { break }
            slots[i] = Result { try sampleModel(models[i].0, models[i].1, points: points) }
          }
        }
      }
    }
    return results.map { $0! }
  }

  /// The model's file name without folder or extension (`armchair` of `scopia/armchair/armchair.obj`).
  private static func modelStem(_ model: FurnitureModel) -> String {
    ((model.model as NSString).lastPathComponent as NSString).deletingPathExtension
  }

  /// Lower-case letters and digits, other runs as `_`, trimmed.
  static func slug(_ text: String) -> String {
    var out = ""
    var gap = false
    for c in text.lowercased().unicodeScalars {
      if (c >= "a" && c <= "z") || (c >= "0" && c <= "9") {
        if gap && !out.isEmpty { out.append("_") }
        out.unicodeScalars.append(c)
        gap = false
      } else {
        gap = true
      }
    }
    return out
  }

  /// A seed from a name: FNV-1a 64 of its UTF-8 bytes (stable across runs and machines).
  static func stableSeed(_ text: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
  }

  /// A TSV field: tabs and line ends become spaces.
  private static func tsvField(_ text: String) -> String {
    String(text.map { $0 == "\t" || $0.isNewline ? " " : $0 })
  }

  private static func write(_ text: String, _ root: URL, _ name: String) throws {
    try AtomicFile.write(Data(text.utf8), to: root.appendingPathComponent(name))
  }

  /// The prepared folder's README: what the set is, counts, sources and licences.
  private static func readme(
    _ s: Summary, catalogs: [FurnitureCatalog], points: Int, minimum: Int
  ) -> String {
    var lines = [
      "# Furniture: point clouds of real furniture meshes",
      "",
      "Made by `graft data prepare furniture` (Graft \(GraftVersion.string)) from the Sweet Home 3D",
      "furniture libraries of Debian's `sweethome3d-furniture` package. Each cloud is \(points) points",
      "with face normals, sampled uniformly over a mesh's surface (area-weighted, seeded per mesh),",
      "turned upright with the catalog's `modelRotation` (y up) and moved to the unit sphere.",
      "Classes are the catalogs' categories (`Miscellaneous` dropped) with at least \(minimum)",
      "meshes; each class is split by mesh into train/val/test (60/20/20, seed \(seed)).",
      "Files are binary PLY (x, y, z, nx, ny, nz); read a split with Graft's `PointFolderDataset`.",
      "`meshes.tsv` names every cloud's source model, creator and licence.",
      "",
      "| class | train | val | test |",
      "| --- | ---: | ---: | ---: |",
    ]
    for (label, name) in s.classNames.enumerated() {
      let c = splits.map { String(s.counts[$0]![label]) }
      lines.append("| \(name) | \(c.joined(separator: " | ")) |")
    }
    let totals = splits.map { String(s.counts[$0]!.reduce(0, +)) }
    lines.append("| **all** | \(totals.joined(separator: " | ")) |")
    lines += [
      "",
      "\(s.models) catalog models: \(s.meshes) kept, \(s.failures.count) failed to parse,",
      "\(s.droppedCategory) in dropped categories, \(s.droppedSmallClass) in classes under \(minimum).",
      "",
      "## Sources and licences",
      "",
    ]
    for catalog in catalogs {
      let licence = libraryLicences[catalog.library] ?? "as the catalog states"
      lines.append("- `\(catalog.library).sh3f` (\(catalog.models.count) models): \(licence).")
      if !catalog.license.isEmpty { lines.append("  The catalog states: \(catalog.license)") }
    }
    lines += [
      "",
      "The point clouds are derived works of the meshes: CC-BY models require attribution to the",
      "creator named in `meshes.tsv` and the licence; CC0 models require nothing.",
      "",
    ]
    return lines.joined(separator: "\n")
  }
}
