import CKernels
import Foundation
import GraftTensor

/// The CPU as `/proc/cpuinfo` describes it, and what that says about its FP32 peak.
///
/// Ratios against PyTorch move with the CPU (both sides run nearer the peak of a slower part), so
/// every `graft bench` prints the CPU, the clock it measured during the run and each end-to-end
/// GFLOP/s as a fraction of this CPU's peak: the figure that travels between machines.
public struct CPUInfo: Codable, Equatable, Sendable {
  /// `vendor_id` (`AuthenticAMD`, `GenuineIntel`), empty when absent (not x86).
  public var vendor: String
  /// `model name`.
  public var modelName: String
  /// `cpu family` (AMD: 25 for Zen 3 and Zen 4, 26 for Zen 5), nil when absent.
  public var family: Int?
  /// `model`, nil when absent.
  public var model: Int?
  /// `cpu MHz` (the kernel's last reading of the first core), nil when absent.
  public var reportedMHz: Double?
  /// The flags that decide the peak and the kernels: `fma`, `avx2`, `avx512f`, `avx512_bf16`,
  /// `avx512_vnni`, `amx_bf16`, `amx_tile`, in that order, those present.
  public var flags: [String]

  /// The flags `flags` keeps.
  public static let relevantFlags = [
    "fma", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile",
  ]

  /// The first processor's fields of a `/proc/cpuinfo` text.
  public init(cpuinfo text: String) {
    var fields: [String: String] = [:]
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.trimmingCharacters(in: .whitespaces).isEmpty && !fields.isEmpty { break }
      let parts = line.split(separator: ":", maxSplits: 1)
      guard parts.count == 2 else { continue }
      let key = parts[0].trimmingCharacters(in: .whitespaces)
      if fields[key] == nil { fields[key] = parts[1].trimmingCharacters(in: .whitespaces) }
    }
    vendor = fields["vendor_id"] ?? ""
    modelName = fields["model name"] ?? "unknown CPU"
    family = fields["cpu family"].flatMap { Int($0) }
    model = fields["model"].flatMap { Int($0) }
    reportedMHz = fields["cpu MHz"].flatMap { Double($0) }
    let present = Set((fields["flags"] ?? "").split(separator: " ").map(String.init))
    flags = Self.relevantFlags.filter { present.contains($0) }
  }

  /// This machine's CPU (an empty description where `/proc/cpuinfo` cannot be read).
  public static func current() -> CPUInfo {
    CPUInfo(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
  }

  /// Peak FP32 FLOPs per cycle and core (2 per fused multiply-add) as the vendor, family, model
  /// and flags describe the core: AVX-512 with two 512-bit FMA pipes (Zen 5, Intel server cores)
  /// 64; AVX-512 on 256-bit pipes (Zen 4, AMD family 25) 32; AVX2 + FMA 32, except Zen and Zen+
  /// (AMD family 23 below model 0x30), whose two FMA pipes are 128 bits wide, 16; otherwise SSE's
  /// 4-wide multiply and add, 8. What a core really does can differ (one AVX-512 FMA pipe on
  /// some Intel parts; a virtual machine that shows a generic model), so `graft bench` measures
  /// it (`Machine.measuredFlopsPerCycle`) and uses this only where it cannot.
  public var fp32FlopsPerCycle: Int {
    let has = Set(flags)
    if has.contains("avx512f") {
      return vendor == "AuthenticAMD" && (family ?? 0) <= 25 ? 32 : 64
    }
    if has.contains("avx2") && has.contains("fma") {
      return vendor == "AuthenticAMD" && family == 23 && (model ?? 0) < 0x30 ? 16 : 32
    }
    return 8
  }

  /// Peak BF16 FLOPs per cycle and core: twice FP32 where `avx512_bf16` (`vdpbf16ps`) is
  /// present, nil otherwise.
  public var bf16FlopsPerCycle: Int? {
    flags.contains("avx512_bf16") ? 2 * fp32FlopsPerCycle : nil
  }

  /// The core generation where the family says it (AMD Zen 3/4/5), else nil.
  public var generation: String? {
    guard vendor == "AuthenticAMD", let family else { return nil }
    switch family {
    case 26: return "Zen 5"
    case 25: return flags.contains("avx512f") ? "Zen 4" : "Zen 3"
    case 23: return (model ?? 0) < 0x30 ? "Zen / Zen+" : "Zen 2"
    default: return nil
    }
  }

  /// "AMD EPYC (family 25, model 17, Zen 4)".
  public var description: String {
    var parts: [String] = []
    if let family { parts.append("family \(family)") }
    if let model { parts.append("model \(model)") }
    if let generation { parts.append(generation) }
    return parts.isEmpty ? modelName : "\(modelName) (\(parts.joined(separator: ", ")))"
  }
}

/// What a benchmark ran on: the CPU, the threads, the clock and the FP32 (and BF16) peak measured
/// during the run, and the OpenBLAS kernel.
public struct MachineReport: Codable, Sendable {
  /// The CPU.
  public var cpu: CPUInfo
  /// Threads of the run.
  public var threads: Int
  /// Clock measured during the run, GHz: the cycles each thread got per second of wall time
  /// (the mean of the measurements taken). On an idle machine it is the cores' clock; on a
  /// shared one it is lower by the share the run got.
  public var clockGHz: Double
  /// FP32 FLOPs per cycle and core: measured on this machine where it can be
  /// (`Machine.measuredFlopsPerCycle`), else `CPUInfo.fp32FlopsPerCycle`.
  public var fp32FlopsPerCycle: Int
  /// Whether `fp32FlopsPerCycle` was measured rather than taken from the CPU's description.
  public var flopsPerCycleMeasured: Bool
  /// FP32 GFLOP/s each thread's fused multiply-adds ran at during the run, all threads at once
  /// (`Machine.measureFMAGflops`, the mean of the measurements taken); nil where there is no
  /// probe for the CPU.
  public var fmaGflopsPerThread: Double?
  /// The FP32 peak during the run, GFLOP/s: threads × `fmaGflopsPerThread` where measured (on a
  /// shared machine lower by the share the run got, as its GFLOP/s are, so the fraction of peak
  /// stays a property of the code), else threads × FP32 FLOPs per cycle × clock.
  public var fp32PeakGflops: Double
  /// The same for BF16 (twice FP32's), where the CPU has it.
  public var bf16PeakGflops: Double?
  /// The OpenBLAS kernel in use.
  public var openblasKernel: String

  enum CodingKeys: String, CodingKey {
    case cpu, threads
    case clockGHz = "clock_ghz"
    case fp32FlopsPerCycle = "fp32_flops_per_cycle"
    case flopsPerCycleMeasured = "flops_per_cycle_measured"
    case fmaGflopsPerThread = "fma_gflops_per_thread"
    case fp32PeakGflops = "fp32_peak_gflops"
    case bf16PeakGflops = "bf16_peak_gflops"
    case openblasKernel = "openblas_kernel"
  }

  /// The report for `cpu` at `clockGHz` on `threads` threads: FP32 FLOPs per cycle and core
  /// `measuredFlopsPerCycle` where given, else what `cpu` describes; the peak from
  /// `fmaGflopsPerThread` where given, else from the FLOPs per cycle and the clock.
  public init(
    cpu: CPUInfo, threads: Int, clockGHz: Double, openblasKernel: String,
    measuredFlopsPerCycle: Int? = nil, fmaGflopsPerThread: Double? = nil
  ) {
    self.cpu = cpu
    self.threads = threads
    self.clockGHz = clockGHz
    fp32FlopsPerCycle = measuredFlopsPerCycle ?? cpu.fp32FlopsPerCycle
    flopsPerCycleMeasured = measuredFlopsPerCycle != nil
    self.fmaGflopsPerThread = fmaGflopsPerThread
    let peak = Double(threads) * (fmaGflopsPerThread ?? Double(fp32FlopsPerCycle) * clockGHz)
    fp32PeakGflops = peak
    bf16PeakGflops = cpu.bf16FlopsPerCycle == nil ? nil : 2 * peak
    self.openblasKernel = openblasKernel
  }

  /// Reads a report; one written before the FLOPs per cycle were recorded counts what its CPU
  /// describes, as it did then.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    cpu = try c.decode(CPUInfo.self, forKey: .cpu)
    threads = try c.decode(Int.self, forKey: .threads)
    clockGHz = try c.decode(Double.self, forKey: .clockGHz)
    fp32FlopsPerCycle =
      try c.decodeIfPresent(Int.self, forKey: .fp32FlopsPerCycle) ?? cpu.fp32FlopsPerCycle
    flopsPerCycleMeasured =
      try c.decodeIfPresent(Bool.self, forKey: .flopsPerCycleMeasured) ?? false
    fmaGflopsPerThread = try c.decodeIfPresent(Double.self, forKey: .fmaGflopsPerThread)
    fp32PeakGflops = try c.decode(Double.self, forKey: .fp32PeakGflops)
    bf16PeakGflops = try c.decodeIfPresent(Double.self, forKey: .bf16PeakGflops)
    openblasKernel = try c.decode(String.self, forKey: .openblasKernel)
  }

  /// This machine now: the clock and the FMA rate measured on every thread at once
  /// (`Machine.measureClockGHz`, `Machine.measureFMAGflops`) and the FLOPs per cycle its cores
  /// do (`Machine.measuredFlopsPerCycle`).
  public static func measure() -> MachineReport {
    _ = Machine.warmedUp
    return MachineReport(
      cpu: .current(), threads: Parallel.threadCount, clockGHz: Machine.measureClockGHz(),
      openblasKernel: OpsBenchmark.openblasKernel,
      measuredFlopsPerCycle: Machine.measuredFlopsPerCycle,
      fmaGflopsPerThread: Machine.measureFMAGflops())
  }

  /// This report with the clock and FMA rate averaged with a later measurement (`graft bench`
  /// measures them before and after the timed work, so a machine that slows under load shows).
  public func averaged(with later: MachineReport) -> MachineReport {
    let fma = fmaGflopsPerThread.flatMap { a in later.fmaGflopsPerThread.map { (a + $0) / 2 } }
    return MachineReport(
      cpu: cpu, threads: threads, clockGHz: (clockGHz + later.clockGHz) / 2,
      openblasKernel: openblasKernel,
      measuredFlopsPerCycle: flopsPerCycleMeasured ? fp32FlopsPerCycle : nil,
      fmaGflopsPerThread: fma)
  }

  /// `gflops` as a fraction of the FP32 peak.
  public func fractionOfPeak(_ gflops: Double) -> Double { gflops / fp32PeakGflops }

  /// `gflops` as a fraction of the BF16 peak (the FP32 one where the CPU has no BF16): the
  /// figure for a run whose products are BF16.
  public func fractionOfBF16Peak(_ gflops: Double) -> Double {
    gflops / (bf16PeakGflops ?? fp32PeakGflops)
  }

  /// Two lines: the CPU with its clock and peak, and the kernel.
  public var summary: String {
    let bf16 = bf16PeakGflops.map { String(format: ", BF16 %.0f", $0) } ?? ""
    let reported = cpu.reportedMHz.map { String(format: "; /proc/cpuinfo: %.2f", $0 / 1000) } ?? ""
    var perCycle = fmaGflopsPerThread == nil ? "" : "FMAs measured on every thread; "
    perCycle += "\(fp32FlopsPerCycle) FLOP/cycle/core"
    if flopsPerCycleMeasured {
      perCycle += " measured"
      if fp32FlopsPerCycle != cpu.fp32FlopsPerCycle {
        perCycle += ", \(cpu.fp32FlopsPerCycle) as the CPU describes itself"
      }
    }
    return "CPU: \(cpu.description), \(threads) threads at "
      + String(format: "%.2f GHz (measured during the run\(reported))\n", clockGHz)
      + "FP32 peak \(String(format: "%.0f", fp32PeakGflops)) GFLOP/s "
      + "(\(perCycle)\(bf16)); OpenBLAS kernel \(openblasKernel)"
  }
}

/// Measurements of the machine itself.
public enum Machine {
  /// The clock in GHz, measured on every thread at once (as a benchmark loads them): each runs
  /// a chain of dependent one-cycle additions (`graft_dependent_adds`) for about `seconds`, and
  /// the cycles over the time gives its clock; the mean over threads (see `onEveryThread`).
  public static func measureClockGHz(seconds: Double = 0.05) -> Double {
    // Calibrate the rounds on one short run so the timed runs last about `seconds`.
    let probe: UInt64 = 100_000
    let probeTime = time { graft_dependent_adds(probe) }
    let rounds = UInt64(
      max(1e4, min(1e9, Double(probe) * seconds / 3 / max(probeTime, 1e-7))))
    return onEveryThread {
      Double(rounds) * 16 / time { graft_dependent_adds(rounds) } / 1e9
    }
  }

  /// FP32 GFLOP/s of fused multiply-adds per thread, measured on every thread at once (as a
  /// benchmark loads them): each runs `graft_fma_flops` for about `seconds`; the mean over
  /// threads (see `onEveryThread`). Nil where the FMA probe does not run (no FMA, not x86-64).
  public static func measureFMAGflops(seconds: Double = 0.05) -> Double? {
    let probe: UInt64 = 4_000
    var probeFlops: UInt64 = 0
    let probeTime = time { probeFlops = graft_fma_flops(probe) }
    guard probeFlops > 0 else { return nil }
    let rounds = UInt64(max(1e3, min(1e9, Double(probe) * seconds / 3 / max(probeTime, 1e-7))))
    let flops = Double(probeFlops) / Double(probe) * Double(rounds)
    return onEveryThread { flops / time { _ = graft_fma_flops(rounds) } / 1e9 }
  }

  /// Every thread kept busy for about 0.1 s, once per process, before the first measurement:
  /// a core that was idle can take tens of milliseconds to reach its clock (on the 2-core
  /// development VM the first clock measured after a pause read 1.0 GHz on both threads, the
  /// next 2.5).
  static let warmedUp: Void = {
    let rounds: UInt64 = 100_000
    let start = DispatchTime.now().uptimeNanoseconds
    while DispatchTime.now().uptimeNanoseconds - start < 100_000_000 {
      Parallel.forRange(Parallel.threadCount, grain: 1) { range in
        for _ in range { graft_dependent_adds(rounds) }
      }
    }
  }()

  /// The mean over the pool's threads of `rate`, each thread running it at the same time, taken
  /// three times; the highest of the three means. A thread the scheduler has not yet moved to
  /// a core of its own (at a process's start two can share one for milliseconds) or a moment
  /// of another process's load reads low; a machine shared for the whole run reads low in every
  /// repetition, as the benchmark's own figures do.
  private static func onEveryThread(_ rate: @escaping () -> Double) -> Double {
    let threads = Parallel.threadCount
    let rates = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
    defer { rates.deallocate() }
    var best = 0.0
    for _ in 0..<3 {
      rates.initialize(repeating: 0)
      Parallel.forRange(threads, grain: 1) { range in
        for t in range { rates[t] = rate() }
      }
      best = max(best, rates.reduce(0, +) / Double(threads))
    }
    return best
  }

  /// FP32 FLOPs per cycle one core does, measured once per process (`probeFMA`, its rate over
  /// its clock rounded to the nearest power of two: every core's FMA width × pipes is one, so a
  /// clock that moved by a third between the two probes cannot change the answer). Nil where
  /// there is no probe for the CPU (no FMA, not x86-64).
  public static let measuredFlopsPerCycle: Int? = probeFMA().map {
    nearestPowerOfTwo($0.gflops / $0.clockGHz)
  }

  /// One core's FP32 FMA rate (GFLOP/s) and clock (GHz): short runs of independent FMAs on the
  /// widest vectors the CPU has (`graft_fma_flops`) alternate with short runs of the
  /// dependent-addition chain, `samples` of each, and the fastest of each is kept: a run that
  /// lost the core for a while is only ever slower. Nil where the FMA probe does not run.
  static func probeFMA(samples: Int = 9) -> (gflops: Double, clockGHz: Double)? {
    guard graft_fma_flops(1) > 0 else { return nil }
    var (bestGflops, bestClock) = (0.0, 0.0)
    for _ in 0..<samples {
      // About 1 ms each on a 2-3 GHz core (an FMA round takes 12-24 cycles): short enough to
      // fall between two interruptions.
      var flops: UInt64 = 0
      let fmaSeconds = time { flops = graft_fma_flops(60_000) }
      bestGflops = max(bestGflops, Double(flops) / max(fmaSeconds, 1e-9) / 1e9)
      let rounds: UInt64 = 150_000
      let addSeconds = time { graft_dependent_adds(rounds) }
      bestClock = max(bestClock, Double(rounds) * 16 / max(addSeconds, 1e-9) / 1e9)
    }
    return (bestGflops, bestClock)
  }

  /// 2ⁿ for the n nearest log₂ `x` (x > 0), at least 1.
  static func nearestPowerOfTwo(_ x: Double) -> Int {
    1 << Int(max(0, log2(x).rounded()))
  }

  private static func time(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }
}
