import ArgumentParser
import Foundation
import GraftTasks
import GraftTensor

/// `graft eval`: a run folder's adapter on a dataset split.
struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a tuned adapter (a graft tune run folder) on a dataset.",
    discussion: """
      The backbone named in adapter_config.json is loaded and refused if its weights hash \
      differs; the data's class count must match the head's. Logits are the run's bit for bit \
      (same preprocessing and batch size). A run on video clips reads --data's clips as it \
      read its own (video_input: frames and evaluation sampling). A captioning run       (--method pllava, graft caption train) captions the clip set's split and prints BLEU-1..4,       ROUGE-L and CIDEr-D, as 'graft caption eval' (--beam, --length-penalty, --hyps-out).
      """)

  @Option(help: "Run folder of graft tune.")
  var adapter: String

  @Option(help: "Dataset, as for graft tune.")
  var data: String

  @Option(help: "Split: train, val or test.")
  var split = "test"

  @Option(help: "Also write the logits to this .safetensors file.")
  var logits: String?

  @Option(
    name: .customLong("set"),
    help: "eval.votes=N: average the logits of N test-time views (point clouds; 1: none).")
  var overrides: [String] = []

  @Option(
    help: ArgumentHelp(
      "Backbone precision: fp32, bf16 or int8 (default: the run's own).",
      discussion:
        "The run's own precision reproduces its logits. int8 runs the frozen matrices in s8 "
        + "(per-channel weight scales, per-token activation scales) on oneDNN's int8 matmul, "
        + "where the CPU has AVX-512 VNNI; bf16 on its BF16 matmul."))
  var precision: BackbonePrecision?

  @Option(help: "Seed of the random voting views.")
  var seed: UInt64 = 0

  @Option(help: "Captioning runs: beams (1: greedy decoding).")
  var beam = 1

  @Option(help: "Captioning runs: length penalty of beam search.")
  var lengthPenalty: Float = 1

  @Option(
    help: ArgumentHelp(
      "Captioning runs: also write the captions here, as graft score captions reads them.",
      valueName: "hyps.json"))
  var hypsOut: String?

  /// Whether the run folder `adapter` holds a captioning run (`adapter_config.json`'s method is
  /// pllava); a folder without a readable config is left to the classification path's errors.
  static func isCaptionRun(_ adapter: String) throws -> Bool {
    let url = URL(fileURLWithPath: adapter).appendingPathComponent("adapter_config.json")
    guard let data = try? MappedFile.contents(of: url),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return false }
    return object["method"] as? String == PLLaVARoute.method
  }

  /// `eval.votes` from `--set` (1 when not given); any other key is an error.
  func votes() throws -> Int {
    var cfg = TuneConfig(method: "linear")
    for assignment in overrides {
      guard
        assignment.split(separator: "=").first?.trimmingCharacters(in: .whitespaces)
          == "eval.votes"
      else {
        throw ValidationError("graft eval takes only --set eval.votes=N, not '\(assignment)'")
      }
      try cfg.set(assignment: assignment)
    }
    return cfg.votes
  }

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @OptionGroup var imageLimit: ImageLimitOptions

  func run() throws {
    imageLimit.apply()
    if try Self.isCaptionRun(adapter) {
      guard overrides.isEmpty, logits == nil, precision == nil else {
        throw ValidationError(
          "\(adapter) is a captioning run: it has no logits to write, votes to take or "
            + "--precision (it takes --beam, --length-penalty and --hyps-out)")
      }
      try CaptionEval.checkBeam(beam)
      return try CaptionEval.evaluate(
        adapter: adapter, data: data, split: split, beam: beam, lengthPenalty: lengthPenalty,
        hypsOut: hypsOut, json: json, quiet: false)
    }
    if beam != 1 || lengthPenalty != 1 || hypsOut != nil {
      throw ValidationError(
        "--beam, --length-penalty and --hyps-out are for captioning runs; \(adapter) classifies")
    }
    let loaded = try AdapterCheckpoint.load(URL(fileURLWithPath: adapter), precision: precision)
    for note in loaded.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
    guard let input = loaded.config.input else {
      throw ValidationError("\(adapter): the run records no input (preprocessing or point_input)")
    }
    let votes = try votes()
    let (result, out): (EvaluationResult, Tensor)
    let tuneData = try AnyTuneData.load(
      data, for: input, video: loaded.config.videoInput ?? VideoInput())
    if let note = Self.classNamesNote(run: loaded.config.classNames, data: tuneData.classNames) {
      FileHandle.standardError.write(Data("note: \(note)\n".utf8))
    }
    switch tuneData {
    case .images(let d):
      (result, out) = try loaded.evaluate(try Self.split(d, split), votes: votes, seed: seed)
    case .points(let d):
      (result, out) = try loaded.evaluate(try Self.split(d, split), votes: votes, seed: seed)
    case .videos(let d):
      (result, out) = try loaded.evaluate(try Self.split(d, split), votes: votes, seed: seed)
    }
    if let logits {
      try Safetensors.write(["logits": out], to: URL(fileURLWithPath: logits))
    }
    if json {
      var o = result.json(confusion: true)
      o["method"] = loaded.config.method
      o["split"] = split
      o["votes"] = votes
      let d = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    } else {
      print(
        String(
          format: "%@ on %@ (%d samples%@): top-1 %.4f top-5 %.4f mean per-class %.4f loss %.4f",
          loaded.config.method, split, result.count, votes > 1 ? ", \(votes) votes" : "",
          result.top1, result.top5, result.meanPerClass, result.loss))
    }
  }

  /// What to say when the run's classes and the data's differ by name or order (the head's
  /// outputs are scored against the data's labels by index, so other names may mean the scores
  /// compare other classes); nil when they agree.
  static func classNamesNote(run: [String], data: [String]) -> String? {
    guard run != data else { return nil }
    func some(_ names: [String]) -> String {
      names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", …" : "")
    }
    return "the run's classes (\(some(run))) are not this data's (\(some(data))) by name and "
      + "order; labels are scored by index, as if they were the same classes"
  }

  /// Split `name` of `data`.
  static func split<Sample>(_ data: TuneData<Sample>, _ name: String) throws -> any Dataset<Sample>
  {
    switch name {
    case "train": data.train
    case "val", "validation": data.validation
    case "test": data.test
    default: throw ValidationError("--split must be train, val or test")
    }
  }
}
