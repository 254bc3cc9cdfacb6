import ArgumentParser
import Foundation
import GraftBench
import GraftData
import GraftModels
import GraftTensor
import GraftVideo

/// `graft bench video`: clips/s of the video path (decode 16 frames, preprocess, encode with a
/// 224 ViT-S/16 to its second-to-last block, PLLaVA-pool), Graft against PyTorch + PyAV + timm
/// doing the same in the same run.
struct BenchVideo: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "video",
    abstract: "Video clips/s (decode + encode + pool): Graft vs PyTorch + PyAV, same run.",
    discussion: """
      Each side runs in its own child process (Graft: `graft bench video-row`; PyTorch: \
      Tools/bench_video_torch.py, which needs torch, timm and av), so each peak RSS is its own. \
      Both run --iterations batches of --batch copies of the clip after one warm-up batch and \
      report clips per second of the whole stream. Both sample --frames frames by PLLaVA's \
      rule, decode forward with FFmpeg (Graft: its libraries, one decoding thread per clip, the \
      clips of a batch in parallel, the next batch decoded while the current one is encoded; \
      PyAV: one clip after another with FFmpeg's threads, as a plain loop), convert to RGB, resize 248 bicubic and \
      centre-crop 224, normalise, run a random-weight vit_small_patch16_224 over all frames of \
      the batch at once up to block -2, drop the class token and pool [T, 14, 14] to \
      (T, 7, 7). Without --video, a 320x240 H.264 clip of 64 frames is made with the ffmpeg \
      command line.
      """
  )

  @Option(help: "Video file (default: a synthetic clip made with ffmpeg).")
  var video: String?

  @Option(help: "Frames per clip.")
  var frames = 16

  @Option(help: "Clips per batch.")
  var batch = 2

  @Option(help: "Timed batches in one stream, after one warm-up batch.")
  var iterations = 3

  @OptionGroup var reference: ReferenceOptions

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  func validate() throws {
    guard (1...VideoDecoding.maxFrameCount).contains(frames), (1...1024).contains(batch),
      (1...10_000).contains(iterations)
    else {
      throw ValidationError(
        "--frames must be in 1...\(VideoDecoding.maxFrameCount), --batch in 1...1024 and "
          + "--iterations in 1...10000")
    }
  }

  struct Side: Codable {
    var clipsPerSecond: Double
    var peakRSSMiB: Double
    enum CodingKeys: String, CodingKey {
      case clipsPerSecond = "clips_s"
      case peakRSSMiB = "peak_rss_mib"
    }
  }

  struct Report: Codable {
    var video: String
    var frames: Int
    var batch: Int
    var threads: Int
    var openblasKernel: String
    var graft: Side
    var torch: Side?
    var ratio: Double?
    enum CodingKeys: String, CodingKey {
      case video, frames, batch, threads, graft, torch, ratio
      case openblasKernel = "openblas_kernel"
    }
  }

  func run() throws {
    var clip = video
    var made: URL?
    if clip == nil {
      let url = FileManager.default.temporaryDirectory
        .appendingPathComponent(
          "graft-bench-video-\(ProcessInfo.processInfo.processIdentifier).mp4")
      try makeClip(url)
      made = url
      clip = url.path
    }
    defer { if let made { try? FileManager.default.removeItem(at: made) } }
    let common = [
      "--video", clip!, "--frames", "\(frames)", "--batch", "\(batch)", "--iterations",
      "\(iterations)",
    ]
    benchProgress("graft", json: json)
    let graft: Side = try runJSON(
      executable: selfExecutable(), arguments: ["bench", "video-row"] + common)
    var torch: Side?
    if !reference.noReference, let python = reference.resolvedPython() {
      benchProgress("pytorch + pyav", json: json)
      let script = repositoryRoot().appendingPathComponent("Tools/bench_video_torch.py").path
      torch = try? runJSON(
        executable: python, arguments: [script] + common + ["--threads", "\(Parallel.threadCount)"])
      if torch == nil {
        benchProgress("(the PyTorch reference failed; its figures are null)", json: json)
      }
    }
    let report = Report(
      video: clip!, frames: frames, batch: batch, threads: Parallel.threadCount,
      openblasKernel: OpsBenchmark.openblasKernel, graft: graft, torch: torch,
      ratio: torch.map { graft.clipsPerSecond / $0.clipsPerSecond })
    try printReport(report, json: json) {
      print("OpenBLAS kernel: \(report.openblasKernel), threads: \(report.threads)")
      print("\(frames) frames per clip, batches of \(batch) clips, \(clip!)\n")
      print("side              clips/s   peak RSS MiB")
      print(
        pad("graft", 16) + pad(fmt(graft.clipsPerSecond, 2), 9, right: true)
          + pad(fmt(graft.peakRSSMiB, 0), 15, right: true))
      if let torch {
        print(
          pad("pytorch + pyav", 16) + pad(fmt(torch.clipsPerSecond, 2), 9, right: true)
            + pad(fmt(torch.peakRSSMiB, 0), 15, right: true))
        print("\nratio (graft ÷ pytorch, target ≥ 1.5): " + fmt(report.ratio!, 2))
      }
    }
  }

  /// A 320x240 H.264 clip of 64 frames at 25 fps from FFmpeg's test pattern.
  private func makeClip(_ url: URL) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
      "testsrc2=size=320x240:rate=25:duration=2.56", "-frames:v", "64", "-c:v", "libx264",
      "-pix_fmt", "yuv420p", url.path,
    ]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw ValidationError("ffmpeg could not make the benchmark clip; give --video")
    }
  }
}

/// `graft bench video-row`: the Graft side of `graft bench video`, printed as JSON.
struct BenchVideoRow: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "video-row", abstract: "The Graft side of `graft bench video`, as JSON.",
    shouldDisplay: false)

  @Option var video: String
  @Option var frames = 16
  @Option var batch = 2
  @Option var iterations = 3

  func run() throws {
    let config = try TimmArchitecture("vit_small_patch16_224").config
    var rng = RandomGenerator(seed: 0)
    let model = try VisionTransformer(config: config, generator: &rng)
    model.eval()
    // timm's eval transform of vit_small_patch16_224.augreg_in21k_ft_in1k.
    let preprocessing = ImagePreprocessConfig(
      interpolation: .bicubic, cropPct: 0.9, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
    let encoder = try FrameEncoder(
      backbone: model, transform: EvalTransform(config: preprocessing), layer: -2)
    let urls = Array(repeating: URL(fileURLWithPath: video), count: batch)
    func stream(_ batches: Int) throws {
      try VideoEmbedding.encodeBatches(
        Array(repeating: urls, count: batches), encoder: encoder, frames: frames,
        sampling: .pllava, pool: (frames, 7, 7)
      ) { _ in }
    }
    try stream(1)  // warm-up
    let start = DispatchTime.now().uptimeNanoseconds
    try stream(iterations)
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 / Double(iterations)
    let side = BenchVideo.Side(
      clipsPerSecond: Double(batch) / seconds, peakRSSMiB: peakRSSMiB())
    print(String(decoding: try JSONEncoder().encode(side), as: UTF8.self))
  }
}
