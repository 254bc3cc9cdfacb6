import ArgumentParser
import Foundation
import GraftCaption

/// `graft caption`: video captioning as PLLaVA does it (`GraftCaption`).
struct CaptionCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "caption",
    abstract: "Caption videos: train a PLLaVA-style captioner, run it, score it.",
    subcommands: [CaptionTrain.self, CaptionRun.self, CaptionEval.self])
}

/// Writes a progress line on standard error.
private func note(_ line: String) {
  FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// `graft caption train`.
struct CaptionTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train the projector (and LoRA) of a captioner on a captioned clip set.",
    discussion: """
      A frozen image backbone encodes the sampled frames (tokens of block method.layer), a \
      projector MLP maps them to the decoder's width, adaptive pooling brings them to \
      method.pool (t,h,w) visual tokens, and a frozen GPT-2-layout decoder with LoRA on q and v \
      (method.lora_rank, method.lora_alpha, method.lora_dropout) learns to continue them with a \
      reference caption. method.mode: lora (default), projector, full. The run folder holds \
      adapter_config.json (bound by hash to the backbone and the decoder), \
      adapter_model.safetensors (the trained tensors only) and history.json.
      """)

  @Option(
    help: ArgumentHelp(
      "The frozen image backbone (bundled name or model folder).", valueName: "model"))
  var backbone: String

  @Option(
    help: ArgumentHelp(
      "A GPT-2-layout language model folder (Hugging Face layout).", valueName: "folder"))
  var decoder: String

  @Option(
    help: ArgumentHelp(
      "The clip set: a folder with annotations.json, or the JSON file.", valueName: "path"))
  var data: String

  @Option(help: ArgumentHelp("The run folder to write.", valueName: "dir"))
  var out: String

  @Option(help: "Passes over the training clips.")
  var epochs = 10

  @Option(help: "Clips per step.")
  var batchSize = 8

  @Option(help: "Peak learning rate (AdamW, cosine with warm-up).")
  var lr: Float = 1e-3

  @Option(help: "Seed of initialisation, order, frames and captions drawn.")
  var seed: UInt64 = 0

  @Option(help: "Use at most this many training clips.")
  var maxClips: Int?

  @OptionGroup var sets: SetOptions
  @OptionGroup var quietFlag: QuietFlag

  func validate() throws {
    guard epochs >= 1, batchSize >= 1, (maxClips ?? 1) >= 1 else {
      throw ValidationError("--epochs, --batch-size and --max-clips must be at least 1")
    }
    guard lr.isFinite, lr > 0 else {
      throw ValidationError("--lr must be a number > 0, not \(lr)")
    }
    // A run folder is written, never written over: another run's files would be mixed in.
    let held = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
    guard held.isEmpty else {
      throw ValidationError(
        "--out \(out) already holds files (\(held.sorted().prefix(3).joined(separator: ", "))); "
          + "give a new folder")
    }
  }

  func run() throws {
    var given: [String: String] = [:]
    for item in sets.overrides {
      guard let eq = item.firstIndex(of: "="), item.hasPrefix("method.") else {
        throw ValidationError("--set \(item): expected method.KEY=VALUE")
      }
      given[String(item[item.index(item.startIndex, offsetBy: 7)..<eq])] = String(
        item[item.index(after: eq)...])
    }
    let config = try PLLaVAConfig.parse(given)
    let backboneModel = try TuneBackbone.load(backbone)
    let decoderModel = try CaptionDecoder.load(folder: URL(fileURLWithPath: decoder))
    let clips = try CaptionClips(path: URL(fileURLWithPath: data))
    var generator = RandomGenerator(seed: seed)
    let captioner = try PLLaVACaptioner(
      config: config, backbone: backboneModel, decoder: decoderModel, generator: &generator)
    var options = CaptionTrainingOptions()
    options.epochs = epochs
    options.batchSize = batchSize
    options.lr = lr
    options.seed = seed
    options.maxClips = maxClips
    let trainer = CaptionTrainer(
      captioner: captioner, backbone: backboneModel, decoder: decoderModel, options: options)
    if !quietFlag.quiet { trainer.log = note }
    try trainer.train(on: clips, out: URL(fileURLWithPath: out))
    if !quietFlag.quiet { note("wrote \(out)") }
  }
}

/// `graft caption run`.
struct CaptionRun: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Print one caption per video with a trained captioner.")

  @Option(help: ArgumentHelp("A graft caption train run folder.", valueName: "dir"))
  var adapter: String

  @Option(help: "Beams (1: greedy decoding).")
  var beam = 1

  @Option(help: "Length penalty of beam search (above 0 favours longer captions).")
  var lengthPenalty: Float = 1

  @OptionGroup var jsonFlag: JSONFlag

  @Argument(help: ArgumentHelp("Video files.", valueName: "video"))
  var videos: [String]

  func validate() throws {
    guard !videos.isEmpty else { throw ValidationError("give at least one video") }
    try CaptionEval.checkBeam(beam)
  }

  func run() throws {
    let captioner = try CaptionAdapter.load(URL(fileURLWithPath: adapter)).captioner
    var rows: [[String: String]] = []
    for video in videos {
      let frames = try VideoDecoding.sample(
        URL(fileURLWithPath: video), count: captioner.config.frames, sampling: .pllava)
      let caption = try captioner.caption([frames], beams: beam, lengthPenalty: lengthPenalty)[0]
      if jsonFlag.json {
        rows.append(["video": video, "caption": caption])
      } else {
        print(caption)
      }
    }
    if jsonFlag.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      print(String(decoding: try encoder.encode(rows), as: UTF8.self))
    }
  }
}

/// `graft caption eval`.
struct CaptionEval: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Caption a split of a clip set and score it (BLEU-1..4, ROUGE-L, CIDEr-D).")

  @Option(help: ArgumentHelp("A graft caption train run folder.", valueName: "dir"))
  var adapter: String

  @Option(
    help: ArgumentHelp(
      "The clip set: a folder with annotations.json, or the JSON file.", valueName: "path"))
  var data: String

  @Option(help: "The split to caption.")
  var split = "test"

  @Option(help: "Beams (1: greedy decoding).")
  var beam = 1

  @Option(help: "Length penalty of beam search.")
  var lengthPenalty: Float = 1

  @Option(
    help: ArgumentHelp(
      "Also write the captions here, as graft score captions reads them.", valueName: "hyps.json"))
  var hypsOut: String?

  /// The widest beam search: each beam is a decoder pass per token, so far more is a typo.
  static let maxBeams = 64

  /// `--beam` in 1...`maxBeams`, for every command that decodes captions.
  static func checkBeam(_ beam: Int) throws {
    guard (1...maxBeams).contains(beam) else {
      throw ValidationError("--beam must be between 1 and \(maxBeams)")
    }
  }

  @OptionGroup var jsonFlag: JSONFlag
  @OptionGroup var quietFlag: QuietFlag

  func validate() throws {
    try CaptionEval.checkBeam(beam)
  }

  func run() throws {
    try Self.evaluate(
      adapter: adapter, data: data, split: split, beam: beam, lengthPenalty: lengthPenalty,
      hypsOut: hypsOut, json: jsonFlag.json, quiet: quietFlag.quiet)
  }

  /// Captions `split` of the clip set `data` with the caption run `adapter` and prints the
  /// scores (also what `graft eval` does with a caption run).
  static func evaluate(
    adapter: String, data: String, split: String, beam: Int, lengthPenalty: Float,
    hypsOut: String?, json: Bool, quiet: Bool
  ) throws {
    if let hypsOut { try OutputGuard.check(hypsOut, flag: "--hyps-out", folders: [adapter, data]) }
    let captioner = try CaptionAdapter.load(URL(fileURLWithPath: adapter)).captioner
    let clips = try CaptionClips(path: URL(fileURLWithPath: data))
    let quiet = quiet || json
    let (hypotheses, scores) = try CaptionEvaluation.run(
      captioner, data: clips, split: split, beams: beam, lengthPenalty: lengthPenalty
    ) { done, total in
      if !quiet && (done % 20 == 0 || done == total) { note("captioned \(done)/\(total)") }
    }
    if let hypsOut {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      try AtomicFile.write(
        try encoder.encode(hypotheses) + Data("\n".utf8), to: URL(fileURLWithPath: hypsOut))
    }
    if json {
      let body = scores.named.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ")
      print("{\(body), \"videos\": \(hypotheses.count)}")
    } else {
      print("Caption scores over \(hypotheses.count) '\(split)' videos (COCO caption evaluation)")
      for (name, value) in scores.named {
        print(
          "  \(name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(format: "%.4f", value))"
        )
      }
    }
  }
}

/// `graft tune --method pllava …`: the issue's spelling of `graft caption train`. Tune's flags
/// map onto the captioner's: `--backbone`, `--decoder`, `--data`, `--out`; `--set method.*`
/// as given, and `train.epochs`, `train.batch_size`, `optim.lr` and `seed` onto its options.
/// Everything else Tune offers (a YAML config, --resume, --dry-run) is refused by name.
enum PLLaVARoute {
  /// The method name that routes here.
  static let method = "pllava"

  /// Runs `graft caption train` with `tune`'s settings.
  static func tune(_ tune: Tune) throws {
    guard let backbone = tune.backbone, let decoder = tune.decoder, let data = tune.data,
      let out = tune.out
    else {
      throw ValidationError(
        "--method pllava needs --backbone (an image model), --decoder (a language model "
          + "folder), --data (a captioned clip set) and --out")
    }
    if tune.config != nil { throw ValidationError("--method pllava takes --set, not --config") }
    if tune.resume != nil { throw ValidationError("--method pllava cannot --resume yet") }
    if tune.dryRun { throw ValidationError("--method pllava has no --dry-run") }
    var arguments = ["--backbone", backbone, "--decoder", decoder, "--data", data, "--out", out]
    let flags = [
      "train.epochs": "--epochs", "train.batch_size": "--batch-size", "optim.lr": "--lr",
      "seed": "--seed",
    ]
    for item in tune.overrides {
      guard let eq = item.firstIndex(of: "=") else {
        throw ValidationError("--set \(item): expected KEY=VALUE")
      }
      let key = String(item[..<eq])
      let value = String(item[item.index(after: eq)...])
      if key.hasPrefix("method.") {
        arguments += ["--set", item]
      } else if let flag = flags[key] {
        arguments += [flag, value]
      } else {
        throw ValidationError(
          "--set \(key): --method pllava takes method.* and "
            + flags.keys.sorted().joined(separator: ", "))
      }
    }
    if tune.quiet { arguments.append("--quiet") }
    let command = try CaptionTrain.parse(arguments)
    try command.run()
  }
}
