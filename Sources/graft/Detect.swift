import ArgumentParser
import Foundation
import GraftDetection
import GraftTasks

/// `graft detect`: boxes in images with a detection run (`graft tune --task detection`).
struct Detect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Detect objects in images with a detection run folder (graft tune --task detection).",
    discussion: """
      Writes COCO's result format (a JSON list of image_id, category_id, bbox [x, y, w, h] in \
      the image's own pixels, score): image ids are 1, 2, … in the order the images are given. \
      The detector keeps boxes scoring above 0.05 after per-class NMS, at most 100 per image. \
      With --draw, each image is also written to OUTDIR as NAME.png with its boxes, labels and \
      scores (enlarged so its shorter side is at least 256 pixels), dropping boxes below \
      --draw-threshold.
      """)

  @Option(help: "Run folder of graft tune --task detection.")
  var adapter: String

  @Option(name: .shortAndLong, help: "The COCO results file to write.")
  var output: String

  @Option(
    help: ArgumentHelp("Also draw each image with its boxes into this folder.", valueName: "dir"))
  var draw: String?

  @Option(help: "Boxes scoring below this are not drawn.")
  var drawThreshold = 0.3

  @OptionGroup var imageLimit: ImageLimitOptions

  @OptionGroup var quietFlag: QuietFlag

  @Argument(help: "Image files (PNG, JPEG, PPM/PGM).")
  var images: [String] = []

  func validate() throws {
    guard !images.isEmpty else { throw ValidationError("give image files") }
    guard drawThreshold.isFinite, (0...1).contains(drawThreshold) else {
      throw ValidationError(
        "--draw-threshold must be a score between 0 and 1, not \(drawThreshold)")
    }
    let inputs = Set(images.map(OutputGuard.canonical))
    if inputs.contains(OutputGuard.canonical(output)) {
      throw ValidationError("-o \(output) is one of the input images: give another results file")
    }
    if draw != nil { _ = try drawingPaths(inputs: inputs) }
  }

  /// Where --draw writes each image's drawing: `NAME.png` in the folder. Refused before anything
  /// runs when two images would share a drawing or a drawing would replace an input image.
  func drawingPaths(inputs: Set<String>) throws -> [URL] {
    guard let draw else { return [] }
    let folder = URL(fileURLWithPath: draw)
    var takenBy: [String: String] = [:]
    return try images.map { image in
      let base = URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent
      let url = folder.appendingPathComponent("\(base).png")
      let key = OutputGuard.canonical(url.path)
      if let other = takenBy[key] {
        throw ValidationError(
          "--draw: \(other) and \(image) would both be drawn to \(url.path): draw them in separate runs"
        )
      }
      if inputs.contains(key) {
        throw ValidationError(
          "--draw: drawing \(image) would replace the input image \(url.path): give another folder")
      }
      takenBy[key] = image
      return url
    }
  }

  func run() throws {
    imageLimit.apply()
    let folder = adapter
    let adapter = try DetectionAdapter.load(URL(fileURLWithPath: adapter))
    // After the run loads, so a folder that is no run is named as that first.
    try OutputGuard.check(output, flag: "-o", folders: [folder])
    var decoded: [RGBImage] = []
    for path in images {
      guard FileManager.default.fileExists(atPath: path) else {
        throw ValidationError("\(path): no such image file")
      }
      decoded.append(try ImageCodec.decode(contentsOf: URL(fileURLWithPath: path)))
    }
    let found = adapter.detect(decoded)
    try AtomicFile.write(
      DetectionResultsFile.encode(found.flatMap { $0 }), to: URL(fileURLWithPath: output))
    if let draw {
      let paths = try drawingPaths(inputs: Set(images.map(OutputGuard.canonical)))
      try FileManager.default.createDirectory(
        at: URL(fileURLWithPath: draw), withIntermediateDirectories: true)
      let names = Dictionary(
        uniqueKeysWithValues: adapter.categories.enumerated().map {
          ($1.id, ($0, $1.name))
        })
      for (k, (image, detections)) in zip(decoded, found).enumerated() {
        let marks = detections.filter { $0.score >= drawThreshold }.map { d in
          let (index, name) = names[d.categoryID] ?? (0, "\(d.categoryID)")
          return DetectionDrawing.Mark(
            box: d.box, classIndex: index, text: String(format: "%@ %.2f", name, d.score))
        }
        try ImageCodec.write(DetectionDrawing.draw(image, marks: marks), to: paths[k])
      }
    }
    if !quietFlag.quiet {
      FileHandle.standardError.write(
        Data(
          "\(found.reduce(0) { $0 + $1.count }) detections in \(images.count) images → \(output)\n"
            .utf8))
    }
  }
}
