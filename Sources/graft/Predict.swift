import ArgumentParser
import Foundation
import GraftTasks

/// `graft predict`: classes of image files with a tuned adapter.
struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Predict the classes of images (or of videos, for a run on video clips; of point-cloud or mesh files, for a run on point clouds) with a tuned adapter (a graft tune run folder)."
  )

  @Option(help: "Run folder of graft tune.")
  var adapter: String

  @Option(help: "Classes to print per image.")
  var topK = 5

  @Option(
    help:
      "Also write the logits (and, for a run on point clouds, the clouds as the model saw them: 'points') to this .safetensors file."
  )
  var output: String?

  @OptionGroup var jsonFlag: JSONFlag

  @OptionGroup var imageLimit: ImageLimitOptions
  var json: Bool { jsonFlag.json }

  @Flag(
    help:
      "LoRA only: fold the deltas into the backbone's weights first (same logits within rounding, frozen-model cost)."
  )
  var merge = false

  @Argument(
    help:
      "Image files (PNG, JPEG, PPM/PGM), video files for a run on video clips, point-cloud or mesh files (PLY, PCD, OFF, OBJ, …) for a run on point clouds."
  )
  var images: [String] = []

  func validate() throws {
    guard !images.isEmpty else { throw ValidationError("give image files") }
    guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
    if let output {
      try OutputGuard.check(output, flag: "--output", inputs: images, folders: [adapter])
      guard output.lowercased().hasSuffix(".safetensors") else {
        throw ValidationError("--output \(output): the logits are written as a .safetensors file")
      }
    }
  }

  func run() throws {
    imageLimit.apply()
    let loaded = try AdapterCheckpoint.load(URL(fileURLWithPath: adapter))
    for note in loaded.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
    if merge {
      guard let lora = loaded.method as? LoRA else {
        throw ValidationError("--merge applies to lora adapters, not \(loaded.config.method)")
      }
      lora.merge()
    }
    let logits: Tensor
    var inputs: Tensor? = nil
    if loaded.config.pointInput != nil {
      // A run on point clouds (Point-MAE, or P2P on an image backbone): each file is a cloud
      // or a mesh (sampled as `graft data` samples meshes), read as the run read its test split.
      let clouds = try images.map { try PointFile.readCloud(URL(fileURLWithPath: $0)) }
      (logits, inputs) = try loaded.predict(clouds: clouds, sources: images)
    } else if loaded.config.preprocessing == nil {
      throw ValidationError(
        "\(adapter): its backbone (\(loaded.config.baseModelArchitecture)) takes no images")
    } else if loaded.config.videoInput != nil {
      // A run on clips: each file is a video, read as the run read its evaluation clips.
      logits = try loaded.predict(clips: images.map { URL(fileURLWithPath: $0) })
    } else {
      let decoded = try images.map {
        try ImageCodec.decodeAnyFormat(contentsOf: URL(fileURLWithPath: $0))
      }
      logits = try loaded.predict(decoded)
    }
    if let output {
      var tensors = ["logits": logits]
      if let inputs { tensors["points"] = inputs }
      try Safetensors.write(tensors, to: URL(fileURLWithPath: output))
    }
    let probabilities = logits.softmax(axis: 1)
    let c = loaded.config.numClasses
    var rows: [[String: Any]] = []
    for (i, path) in images.enumerated() {
      let p = (0..<c).map { probabilities.pointer[i * c + $0] }
      let order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
      let top = order.prefix(topK).map {
        ["class": loaded.config.classNames[$0], "index": $0, "probability": Double(p[$0])]
          as [String: Any]
      }
      rows.append(["image": path, "top": top])
      if !json {
        let text = order.prefix(topK).map {
          "\(loaded.config.classNames[$0]) \(String(format: "%.4f", p[$0]))"
        }
        print("\(path): " + text.joined(separator: ", "))
      }
    }
    if json {
      let d = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    }
  }
}
