import ArgumentParser
import Foundation
import GraftBench
import GraftModels
import GraftTensor

/// `graft bench vit`: ViT inference and full fine-tuning throughput and peak memory, Graft against
/// PyTorch + timm (and onnxruntime for inference) run on the same machine in the same command.
struct BenchViT: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vit",
    abstract: "ViT img/s and peak RSS: Graft vs PyTorch + timm (+ onnxruntime), same run.",
    discussion: """
      Every row runs in a child process (Graft: `graft bench vit-row`; PyTorch:
      Tools/bench_vit_torch.py), so each peak RSS is that configuration's own. The PyTorch side
      needs a Python with torch, timm, onnx and onnxruntime (by default Tools/.venv/bin/python).
      The OpenBLAS kernel follows OPENBLAS_CORETYPE; unset it and OPENBLAS_L2_SIZE in the command
      to measure the AVX-512 kernel. `--precision bf16` adds inference rows with every matrix in
      BF16 on oneDNN (weights mapped from a file, as a checkpoint is loaded), against PyTorch
      under torch.autocast("cpu", dtype=torch.bfloat16) and the FP32 row of the same run
      (targets at ViT-S/16 batch 32: ≥ 1.7× Graft FP32, ≥ 1.5× PyTorch's autocast).
      `--precision int8` adds rows with s8 matrices (per-channel weight and per-token activation
      scales, oneDNN's int8 matmul) against PyTorch's dynamic quantization of its nn.Linear
      layers (torch.ao.quantization.quantize_dynamic, qint8).
      """
  )

  @Option(name: .customLong("model"), help: "timm architecture names (repeatable).")
  var models: [String] = ["vit_tiny_patch16_224", "vit_small_patch16_224"]

  @Option(name: .customLong("batch"), help: "Batch sizes (repeatable).")
  var batches: [Int] = [1, 8, 32]

  @Option(name: .customLong("mode"), help: "inference and/or train_full (repeatable).")
  var modes: [ViTBenchmark.Mode] = [.inference, .trainFull]

  @Option(
    name: .customLong("precision"),
    help: "fp32, bf16 and/or int8 (repeatable; bf16 and int8 rows are inference only).")
  var precisions: [BackbonePrecision] = [.fp32]

  @Option(
    help: ArgumentHelp(
      "Timed steps per row at batch 32 (median reported), after one warm-up step.",
      discussion:
        "Smaller batches time proportionally more steps (the same images per row, at least as many "
        + "steps), so a millisecond step is not judged on a handful of timer readings."))
  var iterations = 3

  @OptionGroup var reference: ReferenceOptions

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  func validate() throws {
    guard batches.allSatisfy({ (1...4096).contains($0) }), (1...10_000).contains(iterations)
    else {
      throw ValidationError("--batch must be in 1...4096 and --iterations in 1...10000")
    }
  }

  struct Row: Codable {
    var model: String
    var batch: Int
    var mode: String
    var precision: BackbonePrecision
    var graftImgS: Double
    var torchImgS: Double?
    var onnxruntimeImgS: Double?
    var graftPeakRSSMiB: Double
    var torchPeakRSSMiB: Double?
    var graftGflops: Double
    var gemmGflops: Double
    /// A BF16 row's img/s over the FP32 row of the same model, batch and mode in this run.
    var speedVsFP32: Double? = nil

    enum CodingKeys: String, CodingKey {
      case model, batch, mode, precision
      case speedVsFP32 = "speed_vs_fp32"
      case graftImgS = "graft_img_s"
      case torchImgS = "torch_img_s"
      case onnxruntimeImgS = "onnxruntime_img_s"
      case graftPeakRSSMiB = "graft_peak_rss_mib"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
      case graftGflops = "graft_gflops"
      case gemmGflops = "gemm_gflops"
    }

    // Always write every key, null where a figure is missing.
    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(model, forKey: .model)
      try c.encode(batch, forKey: .batch)
      try c.encode(mode, forKey: .mode)
      try c.encode(precision, forKey: .precision)
      try c.encode(graftImgS, forKey: .graftImgS)
      try c.encode(torchImgS, forKey: .torchImgS)
      try c.encode(onnxruntimeImgS, forKey: .onnxruntimeImgS)
      try c.encode(graftPeakRSSMiB, forKey: .graftPeakRSSMiB)
      try c.encode(torchPeakRSSMiB, forKey: .torchPeakRSSMiB)
      try c.encode(graftGflops, forKey: .graftGflops)
      try c.encode(gemmGflops, forKey: .gemmGflops)
      try c.encode(speedVsFP32, forKey: .speedVsFP32)
    }
  }

  struct Report: Codable {
    var openblasKernel: String
    var rows: [Row]
    /// The CPU, its clock during the run (before and after) and its peak.
    var machine: MachineReport
    enum CodingKeys: String, CodingKey {
      case openblasKernel = "openblas_kernel"
      case rows, machine
    }
  }

  func run() throws {
    let python = reference.resolvedPython()
    let machineBefore = MachineReport.measure()
    var rows: [Row] = []
    for model in models {
      let config = try TimmArchitecture(model).config
      let flops = ViTBenchmark.forwardFLOPs(config)
      for batch in batches {
        // The GEMM rate of the kernel in use, on this model's fc1 at this batch.
        let tokens = config.gridSize.height * config.gridSize.width + config.prefixTokens
        let gemm = OpsBenchmark.linearLayerGflops(
          m: batch * tokens, n: config.mlpHidden, k: config.embedDim)
        let steps = iterations * Swift.max(1, 32 / batch)
        for mode in modes {
          for precision in precisions where precision == .fp32 || mode == .inference {
            rows.append(
              try measure(
                model, batch: batch, mode: mode, precision: precision, steps: steps,
                forwardFlops: flops, gemm: gemm, python: python))
          }
        }
      }
    }
    for i in rows.indices where rows[i].precision != .fp32 {
      let fp32 = rows.first {
        $0.model == rows[i].model && $0.batch == rows[i].batch && $0.mode == rows[i].mode
          && $0.precision == .fp32
      }
      rows[i].speedVsFP32 = fp32.map { rows[i].graftImgS / $0.graftImgS }
    }
    let report = Report(
      openblasKernel: OpsBenchmark.openblasKernel, rows: rows,
      machine: machineBefore.averaged(with: .measure()))
    try printReport(report, json: json) { printTable(report) }
  }

  /// One row: Graft's and the references' rates and memory for one configuration.
  private func measure(
    _ model: String, batch: Int, mode: ViTBenchmark.Mode, precision: BackbonePrecision,
    steps: Int, forwardFlops flops: Double, gemm: Double, python: String?
  ) throws -> Row {
    let label = "\(model) batch \(batch) \(mode.rawValue) \(precision.rawValue)"
    progress("\(label): graft")
    let graft: ViTBenchmark.Measurement = try runJSON(
      executable: selfExecutable(),
      arguments: [
        "bench", "vit-row", "--model", model, "--batch", "\(batch)", "--mode", mode.rawValue,
        "--iterations", "\(steps)", "--precision", precision.rawValue,
      ])
    var torch: TorchResult?
    if !reference.noReference, let python {
      progress("\(label): pytorch")
      torch = try? runJSON(
        executable: python,
        arguments: [
          referenceScript().path, "--model", model, "--batch", "\(batch)", "--mode",
          mode.rawValue, "--iters", "\(steps)", "--threads", "\(Parallel.threadCount)",
          "--precision", precision.rawValue,
        ] + (mode == .inference && precision == .fp32 ? ["--onnxruntime"] : []))
      if torch == nil { progress("  (the PyTorch reference failed; its figures are null)") }
    }
    // A training step is about 3× the forward FLOPs (forward + two backward GEMMs each).
    let stepFlops = flops * (mode == .inference ? 1 : 3)
    return Row(
      model: model, batch: batch, mode: mode.rawValue, precision: precision,
      graftImgS: graft.imagesPerSecond, torchImgS: torch?.torchImgS,
      onnxruntimeImgS: torch?.onnxruntimeImgS, graftPeakRSSMiB: graft.peakRSSMiB,
      torchPeakRSSMiB: torch?.torchPeakRSSMiB, graftGflops: stepFlops * graft.imagesPerSecond / 1e9,
      gemmGflops: gemm)
  }

  struct TorchResult: Decodable {
    var torchImgS: Double?
    var torchPeakRSSMiB: Double?
    var onnxruntimeImgS: Double?
    enum CodingKeys: String, CodingKey {
      case torchImgS = "torch_img_s"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
      case onnxruntimeImgS = "onnxruntime_img_s"
    }
  }

  func printTable(_ report: Report) {
    print(report.machine.summary + "\n")
    print(
      "model                    batch  mode        prec  graft img/s  torch img/s  ratio  ort img/s"
        + "  ratio  GFLOP/s  ÷GEMM  ÷peak  graft MiB  torch MiB  ratio  ÷fp32")
    func r(_ a: Double?, _ b: Double?) -> String {
      guard let a, let b, b > 0 else { return "-" }
      return fmt(a / b, 2)
    }
    for row in report.rows {
      print(
        pad(row.model, 25) + pad("\(row.batch)", 6) + pad(row.mode, 12)
          + pad(row.precision.rawValue, 5)
          + pad(fmt(row.graftImgS, 1), 11, right: true)
          + pad(row.torchImgS.map { fmt($0, 1) } ?? "-", 13, right: true)
          + pad(r(row.graftImgS, row.torchImgS), 7, right: true)
          + pad(row.onnxruntimeImgS.map { fmt($0, 1) } ?? "-", 11, right: true)
          + pad(r(row.graftImgS, row.onnxruntimeImgS), 7, right: true)
          + pad(fmt(row.graftGflops, 0), 9, right: true)
          + pad(fmt(row.graftGflops / row.gemmGflops, 2), 7, right: true)
          + pad(fmt(fractionOfPeak(row, report.machine), 2), 7, right: true)
          + pad(fmt(row.graftPeakRSSMiB, 0), 11, right: true)
          + pad(row.torchPeakRSSMiB.map { fmt($0, 0) } ?? "-", 11, right: true)
          + pad(r(row.graftPeakRSSMiB, row.torchPeakRSSMiB), 7, right: true)
          + pad(row.speedVsFP32.map { fmt($0, 2) } ?? "-", 7, right: true))
    }
  }

  /// The row's GFLOP/s against the peak of its precision (BF16's for BF16 rows).
  func fractionOfPeak(_ row: Row, _ machine: MachineReport) -> Double {
    row.precision == .fp32
      ? machine.fractionOfPeak(row.graftGflops) : machine.fractionOfBF16Peak(row.graftGflops)
  }

  func progress(_ line: String) { benchProgress(line, json: json) }

  func referenceScript() -> URL {
    repositoryRoot().appendingPathComponent("Tools/bench_vit_torch.py")
  }
}

/// `graft bench vit-row`: one Graft row, printed as JSON (used by `graft bench vit`).
struct BenchViTRow: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vit-row", abstract: "One Graft row of `graft bench vit`, as JSON.",
    shouldDisplay: false)

  @Option var model: String
  @Option var batch: Int
  @Option var mode: ViTBenchmark.Mode
  @Option var precision = BackbonePrecision.fp32
  @Option var iterations = 3

  func run() throws {
    let m = try ViTBenchmark.measure(
      architecture: model, batch: batch, mode: mode, precision: precision,
      iterations: iterations)
    print(String(decoding: try JSONEncoder().encode(m), as: UTF8.self))
  }
}

extension ViTBenchmark.Mode: ExpressibleByArgument {}
extension BackbonePrecision: ExpressibleByArgument {}
extension BlockRecompute: ExpressibleByArgument {}
