import ArgumentParser
import Foundation
import GraftBench
import GraftCaption
import GraftTensor

/// The settings of a captioning comparison, shared by `graft bench captions` and `graft demo
/// video`, passed on to each arm's child process as flags.
struct CaptionArmOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Language model: a folder, or a bundled name (GRAFT_MODELS, then Models/).",
      valueName: "folder"))
  var decoder = CaptionDecoder.bundledName

  @Option(help: ArgumentHelp("Frozen image backbone (bundled name or folder).", valueName: "model"))
  var backbone = "vit-nano-fmnist"

  @Option(
    help: ArgumentHelp(
      "The captioned clip set (default: $GRAFT_DATA_HOME/clips, from graft data prepare clips).",
      valueName: "path"))
  var data: String?

  @Option(help: "Passes over the training clips.")
  var epochs = 15

  @Option(help: "Clips per step.")
  var batchSize = 16

  @Option(help: "Peak learning rate (AdamW, cosine with warm-up).")
  var lr: Float = 3e-3

  @Option(help: "Seed of initialisation, order, frames and captions drawn.")
  var seed: UInt64 = 0

  @Option(help: "Use at most this many training clips.")
  var maxClips: Int?

  @OptionGroup var sets: SetOptions

  /// The clip set's folder.
  var dataURL: URL { data.map { URL(fileURLWithPath: $0) } ?? DataHome.folder("clips") }

  /// The flags that give a child the same settings.
  var arguments: [String] {
    var a = [
      "--decoder", decoder, "--backbone", backbone, "--data", dataURL.path, "--epochs",
      // `--lr=…` in one piece: a child's parser reads a lone negative number as a flag.
      "\(epochs)", "--batch-size", "\(batchSize)", "--lr=\(lr)", "--seed", "\(seed)",
    ]
    if let maxClips { a += ["--max-clips", "\(maxClips)"] }
    for s in sets.overrides { a += ["--set", s] }
    return a
  }

  /// The `method.*` options: `prompt` defaults to `<|endoftext|>` (the start-of-text context
  /// a decoder pretrained on packed text, as `graft pretrain --modality text` does, saw), then
  /// `--set`. `mode` and `video` are the arm's; giving them is refused.
  func methodConfig() throws -> PLLaVAConfig {
    var given = ["prompt": "<|endoftext|>"]
    for item in sets.overrides {
      guard let eq = item.firstIndex(of: "="), item.hasPrefix("method.") else {
        throw ValidationError("--set \(item): expected method.KEY=VALUE")
      }
      let key = String(item[item.index(item.startIndex, offsetBy: 7)..<eq])
      guard key != "mode", key != "video" else {
        throw ValidationError("--set \(item): the arms (--arms) set method.\(key)")
      }
      given[key] = String(item[item.index(after: eq)...])
    }
    return try PLLaVAConfig.parse(given)
  }

  /// The training options.
  var training: CaptionTrainingOptions {
    var o = CaptionTrainingOptions()
    o.epochs = epochs
    o.batchSize = batchSize
    o.lr = lr
    o.seed = seed
    o.maxClips = maxClips
    return o
  }

  func validate() throws {
    guard epochs >= 1, batchSize >= 1 else {
      throw ValidationError("--epochs and --batch-size must be at least 1")
    }
    guard lr.isFinite, lr > 0 else { throw ValidationError("--lr must be a number > 0, not \(lr)") }
  }

  /// The title lines of a report: decoder, backbone, data and recipe.
  func notes(_ decoderFolder: URL) -> [String] {
    [
      "decoder \(decoderFolder.path) · frame encoder \(backbone) · clips \(dataURL.path)",
      "\(epochs) epochs, batch \(batchSize), lr \(lr), seed \(seed)"
        + (maxClips.map { ", at most \($0) training clips" } ?? "")
        + (sets.overrides.isEmpty ? "" : " · " + sets.overrides.joined(separator: " "))
        + " · test captions by greedy decoding · Graft \(GraftVersion.string)",
    ]
  }

  /// Runs every arm in its own child process (`graft bench captions-row`, so each peak RSS
  /// is its own), reusing the results of arms finished in `out` unless `fresh`, and writes
  /// `summary.json` and `report.html` there. Returns the results in `arms` order.
  func runArms(
    _ arms: [CaptionArm], out: URL, fresh: Bool, title: String, json: Bool
  ) throws -> (results: [CaptionArmResult], decoder: URL) {
    if let twice = arms.firstRepeated(by: \.name) {
      throw ValidationError("--arms: '\(twice.name)' is given twice")
    }
    let decoderFolder = try CaptionDecoder.resolve(decoder)
    _ = try methodConfig()
    let clips = try CaptionClips(path: dataURL)
    guard !clips.entries(split: "test").isEmpty else {
      throw CaptionError(.noData, "\(clips.annotations.path): no 'test' clips with captions")
    }
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    let settings = summarySettings(decoderFolder)
    let started = Date()
    var results: [CaptionArmResult] = []
    for (i, arm) in arms.enumerated() {
      let folder = out.appendingPathComponent(arm.name)
      if !fresh, let done = try CaptionBenchmark.readResult(in: folder) {
        if done.settings == settings {
          benchProgress(
            "[\(i + 1)/\(arms.count)] \(arm.name): reusing \(folder.path)", json: json)
          results.append(done)
          continue
        }
        benchProgress(
          "[\(i + 1)/\(arms.count)] \(arm.name): \(folder.path) ran with other settings; "
            + "training again", json: json)
      }
      benchProgress("[\(i + 1)/\(arms.count)] \(arm.name): training", json: json)
      try? FileManager.default.removeItem(at: folder)
      let result: CaptionArmResult = try runChild(
        [
          "bench", "captions-row", "--arm", arm.name, "--out", folder.path, "--decoder-folder",
          decoderFolder.path,
        ] + arguments, json: json)
      benchProgress(
        "[\(i + 1)/\(arms.count)] \(arm.name): CIDEr "
          + fmt(result.scores["cider"] ?? .nan, 3) + ", action named \(result.actionNamed) / "
          + "\(result.actionCounted), " + fmt(result.trainSeconds, 0) + " s", json: json)
      results.append(result)
    }
    try CaptionBenchSummary(
      settings: settings, arms: results,
      wallSeconds: Date().timeIntervalSince(started)
    ).write(to: out)
    try CaptionReport.write(
      results, title: title, notes: notes(decoderFolder), data: clips, to: out)
    return (results, decoderFolder)
  }

  /// The settings as `summary.json` records them; an arm is reused only when they are equal.
  /// Besides the references they hold what those name: the decoder's and the backbone's weights
  /// hashes and the clip set's annotations hash, so a decoder pretrained again into the same
  /// folder, a model retrained in place or clips prepared again (`graft data prepare clips`
  /// with another count or seed) train the arms again.
  func summarySettings(_ decoderFolder: URL) -> [String: String] {
    let unreadable = "unreadable"
    var s = [
      "decoder": decoderFolder.path, "backbone": backbone, "data": dataURL.path,
      "epochs": "\(epochs)", "batch_size": "\(batchSize)", "lr": "\(lr)", "seed": "\(seed)",
      "decoding": "greedy",
      "decoder_weights":
        (try? FNV1a64.file(decoderFolder.appendingPathComponent("model.safetensors")))
        ?? unreadable,
      "backbone_weights": RunReuse().weightsHash(of: backbone) ?? unreadable,
      "data_annotations": (try? CaptionClips(path: dataURL)).flatMap {
        try? FNV1a64.file($0.annotations)
      } ?? unreadable,
    ]
    if let maxClips { s["max_clips"] = "\(maxClips)" }
    if !sets.overrides.isEmpty { s["set"] = sets.overrides.joined(separator: " ") }
    return s
  }

  /// Runs `graft <arguments>` and decodes the last line of its standard output; its standard
  /// error (the epochs' lines) passes through unless `json`.
  private func runChild<T: Decodable>(_ arguments: [String], json: Bool) throws -> T {
    try runJSON(
      executable: selfExecutable(), arguments: arguments + (json ? ["--quiet"] : []),
      showsStandardError: !json)
  }
}

/// `summary.json` of a captioning comparison: the settings, every arm's result, and for each
/// mode with both arms the difference the video makes.
struct CaptionBenchSummary: Encodable {
  var settings: [String: String]
  var arms: [CaptionArmResult]
  var wallSeconds: Double

  struct Difference: Encodable {
    var mode: String
    var scores: [String: Double]
    var actionNamed: Int
    enum CodingKeys: String, CodingKey {
      case mode, scores
      case actionNamed = "action_named"
    }
  }

  var differences: [Difference] {
    CaptionReport.baselinePairs(arms).map { v, b in
      Difference(
        mode: v.mode,
        scores: v.scores.reduce(into: [:]) { d, kv in
          d[kv.key] = kv.value - (b.scores[kv.key] ?? .nan)
        },
        actionNamed: v.actionNamed - b.actionNamed)
    }
  }

  enum CodingKeys: String, CodingKey {
    case settings, arms, differences
    case wallSeconds = "wall_seconds"
    case meteor
  }

  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(settings, forKey: .settings)
    try c.encode(arms, forKey: .arms)
    try c.encode(differences, forKey: .differences)
    try c.encode(wallSeconds, forKey: .wallSeconds)
    try c.encode(
      "not computed: METEOR needs the Java METEOR 1.5 jar and its paraphrase tables",
      forKey: .meteor)
  }

  func write(to folder: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try AtomicFile.write(
      encoder.encode(self) + Data("\n".utf8), to: folder.appendingPathComponent("summary.json"))
  }
}

/// The score table of a comparison, then the video's difference per mode.
func captionTable(_ results: [CaptionArmResult]) -> String {
  let metrics = ["bleu_1", "bleu_4", "rouge_l", "cider"]
  func scores(_ s: [String: Double]) -> String {
    metrics.map { pad(fmt(s[$0] ?? .nan, 3), 8, right: true) }.joined()
  }
  var lines = [
    pad("arm", 22) + pad("trainable", 10, right: true)
      + ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"].map { pad($0, 8, right: true) }.joined()
      + pad("action", 9, right: true) + pad("distinct", 9, right: true)
      + pad("train s", 8, right: true) + pad("RSS MiB", 8, right: true)
  ]
  for r in results {
    lines.append(
      pad(r.arm, 22) + pad("\(r.trainable)", 10, right: true) + scores(r.scores)
        + pad("\(r.actionNamed)/\(r.actionCounted)", 9, right: true)
        + pad("\(r.distinctCaptions)/\(r.captions.count)", 9, right: true)
        + pad(fmt(r.trainSeconds, 0), 8, right: true)
        + pad(r.peakRSSMiB.map { fmt($0, 0) } ?? "-", 8, right: true))
  }
  for (v, b) in CaptionReport.baselinePairs(results) {
    let diff = v.scores.reduce(into: [String: Double]()) { d, kv in
      let v = kv.value - (b.scores[kv.key] ?? .nan)
      d[kv.key] = abs(v) < 5e-4 ? 0 : v  // no "-0.000" for a difference of rounding size
    }
    lines.append(
      pad("video − none (\(v.mode))", 32) + scores(diff)
        + pad(String(format: "%+d", v.actionNamed - b.actionNamed), 9, right: true))
  }
  return lines.joined(separator: "\n")
}

/// `graft bench captions`.
struct BenchCaptions: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "captions",
    abstract: "PLLaVA captioning on the clip set against the same recipe without the video.",
    discussion: """
      Trains each arm (--arms: a mode, lora, projector or full, optionally with -no-video) in \
      its own child process on the captioned clip set (graft data prepare clips), then \
      captions the test clips greedily and scores them: BLEU-1..4, ROUGE-L, CIDEr-D, how many \
      captions name their clip's action, distinct captions, training time and peak RSS. The \
      no-video arm is the same recipe with the frame tokens zeroed before the projector: its \
      prefix is a trained constant with the same positions and trainable tensors, so it learns \
      every caption prior the video arm can and nothing about the clip, and the difference is \
      what the video adds. METEOR is not computed (it needs Java). Writes <out>/<arm>/ run \
      folders with result.json, <out>/summary.json and <out>/report.html; finished arms are \
      reused, --fresh redoes them.
      """)

  @OptionGroup var options: CaptionArmOptions

  @Option(help: "Comma-separated arms.")
  var arms = "lora,lora-no-video"

  @Option(help: "Output folder.")
  var out = "runs/bench-captions"

  @Flag(help: "Redo arms that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  func run() throws {
    let list = try arms.split(separator: ",").map {
      try CaptionArm.parse($0.trimmingCharacters(in: .whitespaces))
    }
    guard !list.isEmpty else { throw ValidationError("--arms is empty") }
    let outURL = URL(fileURLWithPath: out)
    let (results, _) = try options.runArms(
      list, out: outURL, fresh: fresh, title: "Graft bench captions", json: jsonFlag.json)
    if jsonFlag.json {
      let data = try MappedFile.contents(of: outURL.appendingPathComponent("summary.json"))
      let object = try JSONSerialization.jsonObject(with: data)
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
    } else {
      print(captionTable(results))
      print(
        "\nwrote \(outURL.appendingPathComponent("summary.json").path) and "
          + outURL.appendingPathComponent("report.html").path)
    }
  }
}

/// `graft bench captions-row`: one arm of `graft bench captions`, its result as one JSON line.
struct BenchCaptionsRow: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "captions-row", abstract: "One arm of `graft bench captions`, as JSON.",
    shouldDisplay: false)

  @OptionGroup var options: CaptionArmOptions
  @Option var arm: String
  @Option var out: String
  @Option var decoderFolder: String
  @OptionGroup var quietFlag: QuietFlag

  func run() throws {
    let arm = try CaptionArm.parse(arm)
    let backbone = try TuneBackbone.load(options.backbone)
    let decoder = try CaptionDecoder.load(folder: URL(fileURLWithPath: decoderFolder))
    let clips = try CaptionClips(path: options.dataURL)
    let quiet = quietFlag.quiet
    var result = try CaptionBenchmark.run(
      arm, base: try options.methodConfig(), options: options.training, backbone: backbone,
      decoder: decoder, data: clips, out: URL(fileURLWithPath: out),
      log: quiet ? nil : { FileHandle.standardError.write(Data("    \($0)\n".utf8)) })
    result.peakRSSMiB = peakRSSMiB()
    result.settings = options.summarySettings(URL(fileURLWithPath: decoderFolder))
    try CaptionBenchmark.write(result, to: URL(fileURLWithPath: out))
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(result), as: UTF8.self))
  }
}
