import ArgumentParser
import Foundation
import GraftPoints

/// `graft points`: inspects and converts point-cloud and mesh files.
struct PointsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "points", abstract: "Inspect and convert point-cloud and mesh files.",
    discussion: """
      Formats: PCD (ascii, binary, binary_compressed), PLY (ascii, binary little and big \
      endian), OFF/COFF/NOFF, OBJ, ModelNet40 text (.txt: x,y,z[,nx,ny,nz] per line), NumPy \
      .npy [N, 3|6] and HDF5 sets (.h5: ModelNet40's ply_data_*.h5, ScanObjectNN's \
      *_objectdataset*.h5). The format is read from the file's first bytes or its extension.
      """,
    subcommands: [Info.self, Convert.self])

  /// `graft points info FILE`.
  struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Print a file's format, fields, point count and bounds (and a mesh's faces).")

    @Argument(help: "A point-cloud or mesh file.")
    var file: String

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: "For an HDF5 set: the cloud to describe.")
    var index = 0

    func run() throws {
      let contents = try PointFile.read(URL(fileURLWithPath: file), cloudIndex: index)
      let cloud = contents.points
      let bounds = cloud.bounds
      let missing = cloud.missingCount
      var mesh: TriangleMesh?
      if case .mesh(let m) = contents.geometry { mesh = m }
      if json {
        // Keys in a fixed order, so the output reads like the documentation.
        var items = [
          "\"points\": \(cloud.count)",
          "\"fields\": [" + contents.fields.map(jsonString).joined(separator: ", ") + "]",
          "\"format\": \(jsonString(contents.format.description))",
          "\"bounds\": "
            + (bounds.map { "[[\(jsonNumbers($0.min))], [\(jsonNumbers($0.max))]]" } ?? "null"),
        ]
        if let mesh {
          items.append("\"vertices\": \(mesh.vertexCount)")
          items.append("\"faces\": \(mesh.faceCount)")
          items.append("\"triangles\": \(mesh.triangleCount)")
        }
        if cloud.isOrganized {
          items.append("\"width\": \(cloud.width), \"height\": \(cloud.height)")
        }
        if missing > 0 { items.append("\"missing\": \(missing)") }
        if contents.clouds > 1 || contents.format == .hdf5 {
          items.append("\"clouds\": \(contents.clouds), \"index\": \(index)")
          if let label = contents.label { items.append("\"label\": \(label)") }
        }
        print("{" + items.joined(separator: ", ") + "}")
        return
      }
      print("\(file): \(contents.format)")
      print(
        "  points: \(cloud.count)"
          + (cloud.isOrganized ? " (\(cloud.width) × \(cloud.height) organised)" : ""))
      if missing > 0 { print("  missing (NaN) points: \(missing)") }
      print("  fields: " + contents.fields.joined(separator: " "))
      if let mesh {
        print(
          "  mesh: \(mesh.vertexCount) vertices (\(mesh.referencedVertexCount) used by faces), "
            + "\(mesh.faceCount) faces, \(mesh.triangleCount) triangles")
      }
      if let bounds {
        print("  bounds: min \(jsonNumbers(bounds.min)), max \(jsonNumbers(bounds.max))")
      }
      if contents.format == .hdf5 {
        print(
          "  clouds: \(contents.clouds) (showing \(index)"
            + (contents.label.map { ", label \($0)" } ?? "") + ")")
      }
    }
  }

  /// `graft points convert IN OUT`.
  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Convert between point-cloud and mesh formats.",
      discussion: """
        The output format follows OUT's extension (.pcd, .ply, .off, .obj, .txt, .npy, .h5). A \
        mesh input is sampled to --points points over its surface (area-weighted, seeded, with \
        face normals) unless --keep-mesh writes its faces to a PLY, OFF or OBJ file. NaN points \
        (an organised PCD cloud's missing points) are kept in PCD output and dropped, with a \
        count, for every other format. The output is written atomically.
        """)

    @Argument(help: "Input file.")
    var input: String

    @Argument(help: "Output file; its extension picks the format.")
    var output: String

    @Option(help: "Points to sample from a mesh input (default 2048).")
    var points: Int?

    @Option(
      help: "Encoding: ascii, binary, binary_compressed (PCD) or binary_big_endian (PLY).")
    var format: String?

    @Option(help: "Seed of the surface sampling.")
    var seed: UInt64 = 0

    @Option(help: "For an HDF5 set input: the cloud to convert.")
    var index = 0

    @Flag(help: "Write a mesh input's faces (PLY, OFF or OBJ output) instead of sampling it.")
    var keepMesh = false

    func validate() throws {
      // 100 million points is 1.2 GB of positions; more is a typo that would abort on memory.
      if let points, !(1...100_000_000).contains(points) {
        throw ValidationError("--points must be between 1 and 100000000, not \(points)")
      }
      let known = [
        "ascii", "binary", "binary_compressed", "binary_big_endian", "binary_little_endian",
      ]
      if let format, !known.contains(format) {
        throw ValidationError("--format must be one of \(known.joined(separator: ", "))")
      }
    }

    func run() throws {
      let stderr = FileHandle.standardError
      let inURL = URL(fileURLWithPath: input)
      let outURL = URL(fileURLWithPath: output)
      let contents = try PointFile.read(inURL, cloudIndex: index)
      var encoding = format
      // "binary" means little endian for PLY.
      if PointFileKind.forExtension(of: outURL) == .ply, encoding == "binary" {
        encoding = "binary_little_endian"
      }
      var cloud: PointCloud
      switch contents.geometry {
      case .mesh(let mesh):
        if keepMesh {
          let written = try PointFile.write(mesh, to: outURL, encoding: encoding)
          print(
            "\(output): \(written), \(mesh.vertexCount) vertices, \(mesh.triangleCount) triangles "
              + "(from \(contents.format) with \(mesh.faceCount) faces)")
          return
        }
        cloud = try mesh.sampleSurface(count: points ?? 2048, seed: seed, source: input)
        stderr.write(
          Data(
            "note: sampled \(cloud.count) points over \(mesh.triangleCount) triangles (seed \(seed))\n"
              .utf8))
      case .cloud(let c):
        if keepMesh { throw ValidationError("--keep-mesh needs a mesh input; \(input) is a cloud") }
        if points != nil {
          stderr.write(
            Data("note: --points applies to mesh inputs; the cloud is converted whole\n".utf8))
        }
        cloud = c
      }
      if PointFileKind.forExtension(of: outURL) != .pcd {
        let (dense, dropped) = cloud.dense()
        if dropped > 0 {
          stderr.write(Data("note: dropped \(dropped) points with NaN coordinates\n".utf8))
        }
        cloud = dense
      }
      let lost = droppedFields(cloud, outURL)
      if !lost.isEmpty {
        stderr.write(
          Data(
            "note: \(outURL.pathExtension) output does not keep \(lost.joined(separator: ", "))\n"
              .utf8))
      }
      let written = try PointFile.write(cloud, to: outURL, encoding: encoding)
      print("\(output): \(written), \(cloud.count) points (from \(contents.format))")
    }

    /// The cloud's fields that the output format cannot hold.
    private func droppedFields(_ cloud: PointCloud, _ url: URL) -> [String] {
      let kind = PointFileKind.forExtension(of: url)
      var lost = [String]()
      let keepsNormals = kind != .obj
      let keepsColor = [.pcd, .ply, .off, .obj].contains(kind)
      let keepsRest = kind == .pcd || kind == .ply
      if cloud.normals != nil, !keepsNormals { lost.append("normals") }
      if cloud.colors != nil, !keepsColor { lost.append("colours") }
      if cloud.alpha != nil, kind == .obj { lost.append("alpha") }
      if cloud.intensity != nil, !keepsRest { lost.append("intensity") }
      if !keepsRest { lost += cloud.attributes.map(\.name) }
      if cloud.isOrganized, kind != .pcd { lost.append("organisation") }
      return lost
    }
  }
}

/// A JSON string literal.
private func jsonString(_ s: String) -> String {
  var out = "\""
  for u in s.unicodeScalars {
    switch u {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    default:
      if u.value < 0x20 {
        out += String(format: "\\u%04x", u.value)
      } else {
        out.unicodeScalars.append(u)
      }
    }
  }
  return out + "\""
}

/// `x, y, z` as JSON numbers (shortest round-trip text).
private func jsonNumbers(_ v: SIMD3<Float>) -> String {
  [v.x, v.y, v.z].map { $0.description }.joined(separator: ", ")
}
