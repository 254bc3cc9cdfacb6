import ArgumentParser
import Foundation
import GraftBench
import GraftModels
import GraftTasks
import GraftTensor

/// `graft bench tune`: the training step of every tuning method, img/s and peak RSS, against
/// PyTorch + timm for `full`, `linear` and `vpt-deep`, in the same run.
struct BenchTune: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tune",
    abstract: "Training-step img/s and peak RSS of every tuning method, vs PyTorch + timm.",
    discussion: """
      Every row runs in a child process (Graft: `graft bench tune-row`; PyTorch:
      Tools/bench_tune_torch.py for full, linear and vpt-deep), so each peak RSS is that
      method's own. Random weights, random images, a 1000-class head (timm's default) on both
      sides; each method uses its recipe optimizer (`graft methods`). The PyTorch side needs a
      Python with torch and timm (by default Tools/.venv/bin/python). Targets: full, linear and
      vpt-deep ≥ 1.5× PyTorch's img/s at ≤ 0.5× its peak RSS; lst and unipt peak RSS ≤ 0.35×
      Graft's own full at the same batch. `--precision bf16` adds each method's step with the
      frozen backbone in BF16 (`backbone.precision=bf16`), with its speed against the same
      method's FP32 row of this run (target for vpt-deep and lora: ≥ 1.4×). `--recompute qkv|mlp|all`
      adds each method's step with the blocks rebuilding those activations in backward
      (`train.recompute`), with its speed and memory against the same method's row without.
      Each row also lists the activations its tape keeps (parameters left out).
      """
  )

  /// The methods with a PyTorch reference script.
  static let referenced: Set<String> = ["full", "linear", "vpt-deep"]
  /// The methods whose peak RSS is held against Graft's `full`.
  static let sideNetworks: Set<String> = ["lst", "unipt"]

  @Option(
    help: ArgumentHelp(
      "timm architecture name (random weights), or point_mae_small for the point encoder "
        + "(Point-MAE-small on random 1,024-point clouds; no PyTorch rows)."))
  var model = "vit_small_patch16_224"

  @Option(help: "Training batch size.")
  var batch = 32

  @Option(
    name: .customLong("method"),
    help: "Methods to measure (repeatable; default every registered method).")
  var methods: [String] = []

  @Option(help: "Timed steps per row (median reported), after one warm-up step.")
  var iterations = 3

  @Option(
    name: .customLong("precision"),
    help: "Backbone precisions to measure: fp32 and/or bf16 (repeatable; default fp32).")
  var precisions: [BackbonePrecision] = [.fp32]

  @Option(
    name: .customLong("recompute"),
    help: "Block recomputation settings to measure: none, qkv, mlp, all (repeatable; default none)."
  )
  var recomputes: [BlockRecompute] = [.none]

  @OptionGroup var reference: ReferenceOptions

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  struct Row: Codable {
    var method: String
    var precision: BackbonePrecision
    var recompute: BlockRecompute
    var graftImgS: Double
    var torchImgS: Double?
    var graftPeakRSSMiB: Double
    var torchPeakRSSMiB: Double?
    var graftTapeMiB: Double
    /// The activations the tape keeps, parameters left out.
    var graftActivationMiB: Double
    var trainableParameters: Int
    var ratioImgS: Double?
    var ratioRSS: Double?
    var rssVsGraftFull: Double?
    /// IDPT's prompt generator's share of its step (see `TuneBenchmark.Measurement`).
    var promptGeneratorShare: Double?
    /// A BF16 row's img/s over the same method's FP32 row of the run.
    var speedVsFP32: Double?
    /// A recomputing row's img/s and peak RSS over the same method's row without.
    var speedVsNoRecompute: Double?
    var rssVsNoRecompute: Double?

    enum CodingKeys: String, CodingKey {
      case method, precision, recompute
      case graftActivationMiB = "graft_activation_mib"
      case speedVsNoRecompute = "speed_vs_no_recompute"
      case rssVsNoRecompute = "rss_vs_no_recompute"
      case speedVsFP32 = "speed_vs_fp32"
      case graftImgS = "graft_img_s"
      case torchImgS = "torch_img_s"
      case graftPeakRSSMiB = "graft_peak_rss_mib"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
      case graftTapeMiB = "graft_tape_mib"
      case trainableParameters = "trainable_parameters"
      case ratioImgS = "ratio_img_s"
      case ratioRSS = "ratio_rss"
      case rssVsGraftFull = "rss_vs_graft_full"
      case promptGeneratorShare = "prompt_generator_share"
    }

    // Always write every key, null where a figure is missing.
    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(method, forKey: .method)
      try c.encode(precision, forKey: .precision)
      try c.encode(recompute, forKey: .recompute)
      try c.encode(graftActivationMiB, forKey: .graftActivationMiB)
      try c.encode(speedVsNoRecompute, forKey: .speedVsNoRecompute)
      try c.encode(rssVsNoRecompute, forKey: .rssVsNoRecompute)
      try c.encode(graftImgS, forKey: .graftImgS)
      try c.encode(torchImgS, forKey: .torchImgS)
      try c.encode(graftPeakRSSMiB, forKey: .graftPeakRSSMiB)
      try c.encode(torchPeakRSSMiB, forKey: .torchPeakRSSMiB)
      try c.encode(graftTapeMiB, forKey: .graftTapeMiB)
      try c.encode(trainableParameters, forKey: .trainableParameters)
      try c.encode(ratioImgS, forKey: .ratioImgS)
      try c.encode(ratioRSS, forKey: .ratioRSS)
      try c.encode(rssVsGraftFull, forKey: .rssVsGraftFull)
      try c.encode(promptGeneratorShare, forKey: .promptGeneratorShare)
      try c.encode(speedVsFP32, forKey: .speedVsFP32)
    }
  }

  struct Report: Codable {
    var openblasKernel: String
    var model: String
    var batch: Int
    var rows: [Row]
    /// The CPU, its clock during the run (before and after) and its peak.
    var machine: MachineReport?
    enum CodingKeys: String, CodingKey {
      case openblasKernel = "openblas_kernel"
      case model, batch, rows, machine
    }
  }

  struct TorchResult: Decodable {
    var torchImgS: Double
    var torchPeakRSSMiB: Double
    enum CodingKeys: String, CodingKey {
      case torchImgS = "torch_img_s"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
    }
  }

  func validate() throws {
    for m in methods where !MethodRegistry.names.contains(m) {
      throw ValidationError(
        "unknown method '\(m)' (known: \(MethodRegistry.names.joined(separator: ", ")))")
    }
    if precisions.contains(.int8) {
      throw ValidationError(
        "--precision int8 is for inference (graft bench vit); steps run fp32 or bf16")
    }
    guard batch >= 1, iterations >= 1 else {
      throw ValidationError("--batch and --iterations must be at least 1")
    }
    if model != TuneBenchmark.pointMAESmall { _ = try TimmArchitecture(model) }
  }

  func run() throws {
    let machineBefore = MachineReport.measure()
    let chosen = methods.isEmpty ? MethodRegistry.names : methods
    let python = reference.resolvedPython()
    var rows: [Row] = []
    for method in chosen {
      for precision in precisions {
        for recompute in recomputes {
          rows.append(try measure(method, precision, recompute, python: python))
        }
      }
    }
    for i in rows.indices where rows[i].precision == .bf16 {
      let fp32 = rows.first {
        $0.method == rows[i].method && $0.precision == .fp32 && $0.recompute == rows[i].recompute
      }
      rows[i].speedVsFP32 = fp32.map { rows[i].graftImgS / $0.graftImgS }
    }
    for i in rows.indices where rows[i].recompute != .none {
      let kept = rows.first {
        $0.method == rows[i].method && $0.precision == rows[i].precision && $0.recompute == .none
      }
      rows[i].speedVsNoRecompute = kept.map { rows[i].graftImgS / $0.graftImgS }
      rows[i].rssVsNoRecompute = kept.map { rows[i].graftPeakRSSMiB / $0.graftPeakRSSMiB }
    }
    if let full = rows.first(where: {
      $0.method == "full" && $0.precision == .fp32 && $0.recompute == .none
    }) {
      for i in rows.indices {
        rows[i].rssVsGraftFull = rows[i].graftPeakRSSMiB / full.graftPeakRSSMiB
      }
    }
    let report = Report(
      openblasKernel: OpsBenchmark.openblasKernel, model: model, batch: batch, rows: rows,
      machine: machineBefore.averaged(with: .measure()))
    try printReport(report, json: json) { printTable(report) }
  }

  /// One row: Graft's step of `method` in `precision` with `recompute`, and PyTorch's for the
  /// FP32 rows without recomputation of the methods it has a script for.
  private func measure(
    _ method: String, _ precision: BackbonePrecision, _ recompute: BlockRecompute,
    python: String?
  ) throws -> Row {
    progress(
      "\(model) batch \(batch) \(method) \(precision.rawValue) recompute \(recompute.rawValue): graft"
    )
    let graft: TuneBenchmark.Measurement = try runJSON(
      executable: selfExecutable(),
      arguments: [
        "bench", "tune-row", "--method", method, "--model", model, "--batch", "\(batch)",
        "--iterations", "\(iterations)", "--precision", precision.rawValue, "--recompute",
        recompute.rawValue,
      ])
    var torch: TorchResult?
    if !reference.noReference, let python, Self.referenced.contains(method),
      model != TuneBenchmark.pointMAESmall, precision == .fp32, recompute == .none
    {
      progress("\(model) batch \(batch) \(method): pytorch")
      torch = try? runJSON(
        executable: python,
        arguments: [
          referenceScript().path, "--method", method, "--model", model, "--batch", "\(batch)",
          "--threads", "\(Parallel.threadCount)", "--iters", "\(iterations)",
          "--classes", "\(TuneBenchmark.defaultClasses)",
        ])
      if torch == nil { progress("  (the PyTorch reference failed; its figures are null)") }
    }
    return Row(
      method: method, precision: precision, recompute: recompute,
      graftImgS: graft.imagesPerSecond,
      torchImgS: torch?.torchImgS, graftPeakRSSMiB: graft.peakRSSMiB,
      torchPeakRSSMiB: torch?.torchPeakRSSMiB, graftTapeMiB: graft.tapeMiB,
      graftActivationMiB: graft.activationMiB,
      trainableParameters: graft.trainableParameters,
      ratioImgS: torch.map { graft.imagesPerSecond / $0.torchImgS },
      ratioRSS: torch.map { graft.peakRSSMiB / $0.torchPeakRSSMiB }, rssVsGraftFull: nil,
      promptGeneratorShare: graft.promptGeneratorShare)
  }

  func printTable(_ report: Report) {
    if let machine = report.machine { print(machine.summary) }
    print(
      "OpenBLAS kernel: \(report.openblasKernel), threads: \(Parallel.threadCount), "
        + "\(report.model), batch \(report.batch)\n")
    print(
      "method        prec  recomp  trainable  graft img/s  torch img/s  ratio (≥1.5)  graft MiB"
        + "  torch MiB  ratio (≤0.5)  act MiB  ÷ graft full  ÷ fp32  speed, RSS ÷ no recompute")
    func mark(_ value: Double?, _ met: (Double) -> Bool) -> String {
      guard let value else { return "-" }
      return fmt(value, 2) + (met(value) ? " met" : " NOT met")
    }
    for row in report.rows {
      let referenced =
        Self.referenced.contains(row.method) && row.precision == .fp32 && row.recompute == .none
      let vsFull =
        Self.sideNetworks.contains(row.method)
        ? mark(row.rssVsGraftFull) { $0 <= 0.35 } + " (≤0.35)"
        : row.rssVsGraftFull.map { fmt($0, 2) } ?? "-"
      print(
        pad(row.method, 12) + pad(row.precision.rawValue, 6, right: true)
          + pad(row.recompute.rawValue, 8, right: true)
          + pad("\(row.trainableParameters)", 11, right: true)
          + pad(fmt(row.graftImgS, 2), 13, right: true)
          + pad(row.torchImgS.map { fmt($0, 2) } ?? "-", 13, right: true)
          + pad(referenced ? mark(row.ratioImgS) { $0 >= 1.5 } : "-", 14, right: true)
          + pad(fmt(row.graftPeakRSSMiB, 0), 11, right: true)
          + pad(row.torchPeakRSSMiB.map { fmt($0, 0) } ?? "-", 11, right: true)
          + pad(referenced ? mark(row.ratioRSS) { $0 <= 0.5 } : "-", 14, right: true)
          + pad(fmt(row.graftActivationMiB, 0), 9, right: true) + "  " + pad(vsFull, 12)
          + pad(row.speedVsFP32.map { fmt($0, 2) } ?? "-", 8, right: true)
          + "  " + (row.speedVsNoRecompute.map { fmt($0, 2) } ?? "-") + ", "
          + (row.rssVsNoRecompute.map { fmt($0, 2) } ?? "-"))
    }
    for row in report.rows {
      guard let share = row.promptGeneratorShare else { continue }
      print(
        "\n\(row.method): the prompt generator (kNN graphs and three EdgeConvs, forward and "
          + "backward) takes \(fmt(100 * share, 1)) % of a training step")
    }
  }

  func progress(_ line: String) { benchProgress(line, json: json) }

  func referenceScript() -> URL {
    repositoryRoot().appendingPathComponent("Tools/bench_tune_torch.py")
  }
}

/// `graft bench tune-row`: one Graft row, printed as JSON (used by `graft bench tune`).
struct BenchTuneRow: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tune-row", abstract: "One Graft row of `graft bench tune`, as JSON.",
    shouldDisplay: false)

  @Option var method: String
  @Option var model = "vit_small_patch16_224"
  @Option var batch = 32
  @Option var iterations = 3
  @Option var precision = BackbonePrecision.fp32
  @Option var recompute = BlockRecompute.none

  func run() throws {
    let m = try TuneBenchmark.measure(
      architecture: model, method: method, batch: batch, iterations: iterations,
      precision: precision, recompute: recompute)
    print(String(decoding: try JSONEncoder().encode(m), as: UTF8.self))
  }
}
