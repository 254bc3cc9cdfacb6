import ArgumentParser
import Foundation
import GraftBench
import GraftModels
import GraftTensor

/// `graft bench points`: Point-MAE-small inference and full fine-tuning (clouds/s, peak RSS) and
/// the geometry ops alone, against the same work in PyTorch run in the same command.
struct BenchPoints: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "points",
    abstract: "Point-MAE clouds/s and peak RSS, and FPS / kNN times, vs PyTorch, same run.",
    discussion: """
      Every configuration runs in a child process (Graft: `graft bench points-row`; PyTorch:
      Tools/bench_points_torch.py), so each peak RSS is that configuration's own. The model is
      Point-MAE-small (384 wide, 12 blocks, 6 heads, 64 groups of 32 points, 1,024-point clouds,
      a 40-class head) with random weights on random clouds; PyTorch runs the official
      models/Point_MAE.py with FPS and kNN in plain torch, so its model rows need the official
      source (--point-mae-repo, or POINT_MAE_REPO: a checkout or its git directory) and a Python
      with torch, timm, easydict and termcolor (by default Tools/.venv/bin/python). The geometry
      ops need only torch. Targets: ≥ 1.5× PyTorch's clouds/s at ≤ 0.5× its peak RSS.
      """
  )

  @Option(help: "Batch size of the model rows.")
  var batch = 32

  @Option(help: "Timed steps per model row and calls per op (median reported), after a warm-up.")
  var iterations = 3

  @Flag(help: "One timed step per row and op (a smoke run).")
  var quick = false

  @Option(
    help: "The official Point-MAE source for the PyTorch model rows (default: $POINT_MAE_REPO).")
  var pointMaeRepo: String?

  @OptionGroup var reference: ReferenceOptions

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  /// The model's head: ModelNet40's classes.
  static let classes = 40

  struct Row: Codable {
    var mode: String
    var graftCloudsS: Double
    var torchCloudsS: Double?
    var ratioCloudsS: Double?
    var graftPeakRSSMiB: Double
    var torchPeakRSSMiB: Double?
    var ratioRSS: Double?
    var graftTapeMiB: Double
    var graftGflops: Double
    var vsGemm: Double

    enum CodingKeys: String, CodingKey {
      case mode
      case graftCloudsS = "graft_clouds_s"
      case torchCloudsS = "torch_clouds_s"
      case ratioCloudsS = "ratio_clouds_s"
      case graftPeakRSSMiB = "graft_peak_rss_mib"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
      case ratioRSS = "ratio_rss"
      case graftTapeMiB = "graft_tape_mib"
      case graftGflops = "graft_gflops"
      case vsGemm = "graft_gflops_vs_gemm"
    }

    // Always write every key, null where a figure is missing.
    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(mode, forKey: .mode)
      try c.encode(graftCloudsS, forKey: .graftCloudsS)
      try c.encode(torchCloudsS, forKey: .torchCloudsS)
      try c.encode(ratioCloudsS, forKey: .ratioCloudsS)
      try c.encode(graftPeakRSSMiB, forKey: .graftPeakRSSMiB)
      try c.encode(torchPeakRSSMiB, forKey: .torchPeakRSSMiB)
      try c.encode(ratioRSS, forKey: .ratioRSS)
      try c.encode(graftTapeMiB, forKey: .graftTapeMiB)
      try c.encode(graftGflops, forKey: .graftGflops)
      try c.encode(vsGemm, forKey: .vsGemm)
    }
  }

  struct OpRow: Codable {
    var op: String
    var graftMs: Double
    /// The anchor: PyTorch's stand-in (the faster of sort and topk for kNN).
    var torchMs: Double?
    var torchAnchor: String?
    /// torch_ms / graft_ms: how many times faster Graft is.
    var speedup: Double?

    enum CodingKeys: String, CodingKey {
      case op
      case graftMs = "graft_ms"
      case torchMs = "torch_ms"
      case torchAnchor = "torch_anchor"
      case speedup
    }

    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(op, forKey: .op)
      try c.encode(graftMs, forKey: .graftMs)
      try c.encode(torchMs, forKey: .torchMs)
      try c.encode(torchAnchor, forKey: .torchAnchor)
      try c.encode(speedup, forKey: .speedup)
    }
  }

  struct Report: Codable {
    var openblasKernel: String
    var cpu: String
    var threads: Int
    var batch: Int
    var forwardGflopPerCloud: Double
    var gemmGflops: Double
    var rows: [Row]
    var ops: [OpRow]
    var notes: [String]
    /// The 1-minute load average when the run started and ended (other work on the machine).
    var loadAverage: [Double]
    /// The CPU, its clock during the run (before and after) and its peak.
    var machine: MachineReport?

    enum CodingKeys: String, CodingKey {
      case openblasKernel = "openblas_kernel"
      case loadAverage = "load_average_start_end"
      case cpu, threads, batch, rows, ops, notes
      case forwardGflopPerCloud = "forward_gflop_per_cloud"
      case gemmGflops = "gemm_gflops"
    }
  }

  struct TorchModel: Decodable {
    var torchCloudsS: Double
    var torchPeakRSSMiB: Double
    enum CodingKeys: String, CodingKey {
      case torchCloudsS = "torch_clouds_s"
      case torchPeakRSSMiB = "torch_peak_rss_mib"
    }
  }

  struct TorchOps: Decodable {
    var ops: [String: Double]
  }

  func validate() throws {
    guard batch >= 1, iterations >= 1 else {
      throw ValidationError("--batch and --iterations must be at least 1")
    }
  }

  func run() throws {
    let steps = quick ? 1 : iterations
    let loadAtStart = Self.loadAverage()
    let machineBefore = MachineReport.measure()
    let config = PointsBenchmark.smallConfig(classes: Self.classes)
    let python = reference.noReference ? nil : reference.resolvedPython()
    let repo = pointMaeRepo ?? ProcessInfo.processInfo.environment["POINT_MAE_REPO"]
    let pythonName = python == "/usr/bin/env" ? "python3 on the PATH" : python ?? "-"
    var notes: [String] = []
    if reference.noReference {
      notes.append("PyTorch side skipped (--no-reference)")
    } else if repo == nil {
      notes.append(
        "PyTorch model rows skipped: they need the official Point-MAE source "
          + "(--point-mae-repo or POINT_MAE_REPO)")
    }
    progress("sgemm rate of the kernel in use (fc1 at batch \(batch))")
    let tokens = config.numGroup + 1
    let gemm = OpsBenchmark.linearLayerGflops(
      m: batch * tokens, n: config.mlpHidden, k: config.transDim)
    let flops = PointsBenchmark.forwardFLOPs(config)

    var rows: [Row] = []
    for mode in PointsBenchmark.Mode.allCases {
      progress("Point-MAE-small batch \(batch) \(mode.rawValue): graft")
      let graft: PointsBenchmark.Measurement = try runJSON(
        executable: selfExecutable(),
        arguments: [
          "bench", "points-row", "--mode", mode.rawValue, "--batch", "\(batch)",
          "--iterations", "\(steps)",
        ])
      var torch: TorchModel?
      if let python, let repo {
        progress("Point-MAE-small batch \(batch) \(mode.rawValue): pytorch")
        torch = try? runJSON(
          executable: python,
          arguments: [
            referenceScript().path, "--mode", mode.rawValue, "--repo", repo, "--batch",
            "\(batch)", "--classes", "\(Self.classes)", "--iters", "\(steps)", "--threads",
            "\(Parallel.threadCount)",
          ])
        if torch == nil {
          notes.append(
            "the PyTorch \(mode.rawValue) row failed (\(pythonName)); its figures are null")
        }
      }
      // A training step is about 3× the forward FLOPs (forward + two backward GEMMs each).
      let stepFlops = flops * (mode == .inference ? 1 : 3)
      let gflops = stepFlops * graft.cloudsPerSecond / 1e9
      rows.append(
        Row(
          mode: mode.rawValue, graftCloudsS: graft.cloudsPerSecond,
          torchCloudsS: torch?.torchCloudsS,
          ratioCloudsS: torch.map { graft.cloudsPerSecond / $0.torchCloudsS },
          graftPeakRSSMiB: graft.peakRSSMiB, torchPeakRSSMiB: torch?.torchPeakRSSMiB,
          ratioRSS: torch.map { graft.peakRSSMiB / $0.torchPeakRSSMiB },
          graftTapeMiB: graft.tapeMiB, graftGflops: gflops, vsGemm: gflops / gemm))
    }

    progress("geometry ops: graft")
    let graftOps: [PointsBenchmark.OpTiming] = try runJSON(
      executable: selfExecutable(),
      arguments: ["bench", "points-row", "--mode", "ops", "--iterations", "\(steps)"])
    var torchOps: TorchOps?
    if let python {
      progress("geometry ops: pytorch (its 100k-point FPS takes a while)")
      torchOps = try? runJSON(
        executable: python,
        arguments: [
          referenceScript().path, "--mode", "ops", "--iters", "\(steps)", "--threads",
          "\(Parallel.threadCount)",
        ] + (quick ? ["--quick"] : []))
      if torchOps == nil {
        notes.append("the PyTorch geometry ops failed (\(pythonName)); their figures are null")
      }
    }
    let ops = graftOps.map { op -> OpRow in
      var anchor = torchOps?.ops[op.name].map { (op.name, $0) }
      // kNN: the faster of the stand-in (a full sort) and torch.topk is the anchor.
      let topkName = op.name.replacingOccurrences(of: "knn_", with: "knn_topk_")
      if op.name.hasPrefix("knn_"), let topk = torchOps?.ops[topkName],
        topk < anchor?.1 ?? .infinity
      {
        anchor = (topkName, topk)
      }
      return OpRow(
        op: op.name, graftMs: op.milliseconds, torchMs: anchor?.1, torchAnchor: anchor?.0,
        speedup: anchor.map { $0.1 / op.milliseconds })
    }
    let report = Report(
      openblasKernel: OpsBenchmark.openblasKernel, cpu: PointsBenchmark.cpuDescription,
      threads: Parallel.threadCount, batch: batch, forwardGflopPerCloud: flops / 1e9,
      gemmGflops: gemm, rows: rows, ops: ops, notes: notes,
      loadAverage: [loadAtStart, Self.loadAverage()],
      machine: machineBefore.averaged(with: .measure()))
    try printReport(report, json: json) { printTable(report) }
  }

  /// The 1-minute load average (/proc/loadavg), or -1 where there is none.
  static func loadAverage() -> Double {
    let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return text.split(separator: " ").first.flatMap { Double($0) } ?? -1
  }

  func printTable(_ report: Report) {
    if let machine = report.machine { print(machine.summary) }
    print(
      "OpenBLAS kernel: \(report.openblasKernel), CPU: \(report.cpu), threads: \(report.threads), "
        + "load average \(report.loadAverage.map { fmt($0, 1) }.joined(separator: " → "))")
    print(
      "Point-MAE-small, batch \(report.batch), \(fmt(report.forwardGflopPerCloud, 2)) GFLOP per "
        + "cloud forward; sgemm \(fmt(report.gemmGflops, 0)) GFLOP/s on its fc1\n")
    func mark(_ value: Double?, _ met: (Double) -> Bool) -> String {
      guard let value else { return "-" }
      return fmt(value, 2) + (met(value) ? " met" : " NOT met")
    }
    print(
      "mode        graft clouds/s  torch clouds/s  ratio (≥1.5)  graft MiB  torch MiB"
        + "  ratio (≤0.5)  GFLOP/s  ÷GEMM  ÷peak")
    for row in report.rows {
      print(
        pad(row.mode, 12) + pad(fmt(row.graftCloudsS, 2), 14, right: true)
          + pad(row.torchCloudsS.map { fmt($0, 2) } ?? "-", 16, right: true)
          + pad(mark(row.ratioCloudsS) { $0 >= 1.5 }, 14, right: true)
          + pad(fmt(row.graftPeakRSSMiB, 0), 11, right: true)
          + pad(row.torchPeakRSSMiB.map { fmt($0, 0) } ?? "-", 11, right: true)
          + pad(mark(row.ratioRSS) { $0 <= 0.5 }, 14, right: true)
          + pad(fmt(row.graftGflops, 0), 9, right: true)
          + pad(fmt(row.vsGemm, 2), 7, right: true)
          + pad(
            report.machine.map { fmt($0.fractionOfPeak(row.graftGflops), 2) } ?? "-", 7, right: true
          ))
    }
    print("\nop                        graft ms    torch ms  speedup  (torch anchor)")
    for op in report.ops {
      print(
        pad(op.op, 24) + pad(fmt(op.graftMs, 2), 10, right: true)
          + pad(op.torchMs.map { fmt($0, 2) } ?? "-", 12, right: true)
          + pad(op.speedup.map { fmt($0, 1) + "×" } ?? "-", 9, right: true)
          + "  " + (op.torchAnchor ?? "-"))
    }
    for note in report.notes { print("note: \(note)") }
  }

  func progress(_ line: String) { benchProgress(line, json: json) }

  func referenceScript() -> URL {
    repositoryRoot().appendingPathComponent("Tools/bench_points_torch.py")
  }
}

/// `graft bench points-row`: one Graft configuration of `graft bench points`, printed as JSON.
struct BenchPointsRow: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "points-row", abstract: "One Graft row of `graft bench points`, as JSON.",
    shouldDisplay: false)

  @Option(help: "inference, train_full or ops.")
  var mode: String
  @Option var batch = 32
  @Option var iterations = 3

  func run() throws {
    let encoder = JSONEncoder()
    if mode == "ops" {
      let ops = PointsBenchmark.measureOps(iterations: iterations)
      return print(String(decoding: try encoder.encode(ops), as: UTF8.self))
    }
    guard let m = PointsBenchmark.Mode(rawValue: mode) else {
      throw ValidationError("--mode must be inference, train_full or ops")
    }
    let config = PointsBenchmark.smallConfig(classes: BenchPoints.classes)
    let result = try PointsBenchmark.measure(
      config: config, batch: batch, mode: m, iterations: iterations)
    print(String(decoding: try encoder.encode(result), as: UTF8.self))
  }
}
