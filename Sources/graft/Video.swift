import ArgumentParser
import Foundation
import GraftTensor
import GraftVideo

/// `graft video`: what a video file holds, and its sampled frames.
struct VideoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "video",
    abstract: "Inspect video files and save sampled frames (FFmpeg's libraries).",
    subcommands: [VideoInfoCommand.self, VideoFramesCommand.self]
  )
}

/// `graft video info FILE [--json]`.
struct VideoInfoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info",
    abstract: "Frame count, frame rate, displayed size, codec and duration of a video file.",
    discussion: """
      The frame count is the container's; when it gives none, the stream's packets are counted \
      (the file is read without decoding). Width and height are as displayed: a rotation in \
      the stream's metadata is applied, as FFmpeg's command line applies it.
      """
  )

  @Flag(help: "Print one JSON object.")
  var json = false

  @Argument(help: "A video file (any container and codec the installed FFmpeg decodes).")
  var file: String

  func run() throws {
    let info = try VideoReader(url: URL(fileURLWithPath: file), threads: 1).info()
    if json {
      let fields: [(String, String)] = [
        ("frames", "\(info.frames)"), ("fps", jsonNumber(info.fps)),
        ("width", "\(info.width)"), ("height", "\(info.height)"),
        ("codec", jsonQuoted(info.codec)), ("duration", jsonNumber(info.duration)),
        ("rotation", "\(info.rotation)"), ("container", jsonQuoted(info.container)),
        ("frame_count_source", jsonQuoted(info.frameCountSource)),
      ]
      print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
    } else {
      print(
        "\(file): \(info.codec) in \(info.container), \(info.width)x\(info.height)"
          + (info.rotation != 0 ? " (rotated \(info.rotation)°)" : "")
          + ", \(info.frames) frames (\(info.frameCountSource)), "
          + String(format: "%.3f fps, %.3f s", info.fps, info.duration))
    }
  }
}

/// `graft video frames FILE --frames T -o frames.safetensors`.
struct VideoFramesCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "frames",
    abstract: "Save T sampled frames of a video as RGB bytes.",
    discussion: """
      Writes 'frames' [T, H, W, 3] U8 (RGB as decoded, rotation applied, native size, the \
      colours of `ffmpeg -pix_fmt rgb24`) and 'indices' [T] I64 (each frame's index in the \
      stream). --sampling pllava is PLLaVA's evaluation rule (seg = (N-1)/T, \
      int(seg/2) + round(seg*i)); middle takes the middle frame of T equal segments; random \
      one frame per segment drawn with --seed.
      """
  )

  @Option(help: "Number of frames T.")
  var frames = 16

  @Option(help: "pllava, middle or random.")
  var sampling = "pllava"

  @Option(help: "Seed of --sampling random.")
  var seed: UInt64 = 0

  @Option(help: "With --sampling pllava: sample between these seconds (PLLaVA's bound) …")
  var start: Double?

  @Option(help: "… and these.")
  var end: Double?

  @Option(name: .shortAndLong, help: "Output .safetensors file.")
  var output: String

  @Argument(help: "A video file.")
  var file: String

  func validate() throws {
    guard (1...VideoDecoding.maxFrameCount).contains(frames) else {
      throw ValidationError("--frames must be between 1 and \(VideoDecoding.maxFrameCount)")
    }
    try OutputGuard.check(output, flag: "-o", inputs: [file])
    guard FrameSampling(name: sampling) != nil else {
      throw ValidationError("--sampling must be pllava, middle or random")
    }
    if start != nil || end != nil {
      guard sampling == "pllava", let start, let end, start >= 0, end >= start else {
        throw ValidationError("--start and --end go together, 0 ≤ start ≤ end, with pllava")
      }
    }
  }

  func run() throws {
    var rule = FrameSampling(name: sampling, seed: seed)!
    if let start, let end { rule = .pllavaBound(start: start, end: end) }
    let url = URL(fileURLWithPath: file)
    let sampled = try VideoDecoding.sample(url, count: frames, sampling: rule)
    for warning in sampled.warnings {
      FileHandle.standardError.write(Data("warning: \(file): \(warning)\n".utf8))
    }
    try Safetensors.write(
      raw: [
        "frames": .init(
          u8: sampled.pixels, shape: [sampled.count, sampled.height, sampled.width, 3]),
        "indices": .init(i64: sampled.indices, shape: [sampled.count]),
      ],
      metadata: ["source": url.lastPathComponent, "sampling": rule.name],
      to: URL(fileURLWithPath: output))
    print(
      "\(output): frames [\(sampled.count), \(sampled.height), \(sampled.width), 3] of "
        + "\(sampled.info.frames), indices \(sampled.indices)")
  }
}

/// A JSON number to the microsecond (`null` for NaN or infinities).
private func jsonNumber(_ value: Double) -> String {
  guard value.isFinite else { return "null" }
  let x = (value * 1e6).rounded() / 1e6
  if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
  return "\(x)"
}

/// A JSON string literal.
private func jsonQuoted(_ s: String) -> String {
  let data = try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
  guard let data, let text = String(data: data, encoding: .utf8) else { return "\"\"" }
  return String(text.dropFirst().dropLast())
}
