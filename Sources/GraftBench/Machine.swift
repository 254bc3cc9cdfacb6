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

  /// Peak FP32 FLOPs per cycle and core (2 per fused multiply-add), from the vendor, family and
  /// flags: AVX-512 with two 512-bit FMA pipes (Zen 5, Intel server cores) 64; AVX-512 on
  /// 256-bit pipes (Zen 4, AMD family 25) 32; AVX2 + FMA 32; otherwise SSE's 4-wide multiply and
  /// add, 8. A core with one AVX-512 FMA pipe (some Intel client parts) is counted at 64: its
  /// fractions of peak then read low, which the README's note on machines says.
  public var fp32FlopsPerCycle: Int {
    let has = Set(flags)
    if has.contains("avx512f") {
      return vendor == "AuthenticAMD" && (family ?? 0) <= 25 ? 32 : 64
    }
    if has.contains("avx2") && has.contains("fma") { return 32 }
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
    case 23: return "Zen / Zen 2"
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

/// What a benchmark ran on: the CPU, the threads, the clock measured during the run and the FP32
/// (and BF16) peak that follows, and the OpenBLAS kernel.
public struct MachineReport: Codable, Sendable {
  /// The CPU.
  public var cpu: CPUInfo
  /// Threads of the run.
  public var threads: Int
  /// Clock measured during the run, GHz: the cycles each thread got per second of wall time
  /// (the mean of the measurements taken). On an idle machine it is the cores' clock; on a
  /// shared one it is lower by the share the run got, as its GFLOP/s are, so the fraction of
  /// peak stays a property of the code.
  public var clockGHz: Double
  /// threads × FP32 FLOPs per cycle × clock, GFLOP/s.
  public var fp32PeakGflops: Double
  /// The same for BF16, where the CPU has it.
  public var bf16PeakGflops: Double?
  /// The OpenBLAS kernel in use.
  public var openblasKernel: String

  enum CodingKeys: String, CodingKey {
    case cpu, threads
    case clockGHz = "clock_ghz"
    case fp32PeakGflops = "fp32_peak_gflops"
    case bf16PeakGflops = "bf16_peak_gflops"
    case openblasKernel = "openblas_kernel"
  }

  /// The report for `cpu` at `clockGHz` on `threads` threads.
  public init(cpu: CPUInfo, threads: Int, clockGHz: Double, openblasKernel: String) {
    self.cpu = cpu
    self.threads = threads
    self.clockGHz = clockGHz
    fp32PeakGflops = Double(threads * cpu.fp32FlopsPerCycle) * clockGHz
    bf16PeakGflops = cpu.bf16FlopsPerCycle.map { Double(threads * $0) * clockGHz }
    self.openblasKernel = openblasKernel
  }

  /// This machine now: the clock measured on every thread at once (`Machine.measureClockGHz`).
  public static func measure() -> MachineReport {
    MachineReport(
      cpu: .current(), threads: Parallel.threadCount, clockGHz: Machine.measureClockGHz(),
      openblasKernel: OpsBenchmark.openblasKernel)
  }

  /// This report with the clock averaged with a later measurement (`graft bench` measures it
  /// before and after the timed work, so a clock that drops under load shows).
  public func averaged(with later: MachineReport) -> MachineReport {
    MachineReport(
      cpu: cpu, threads: threads, clockGHz: (clockGHz + later.clockGHz) / 2,
      openblasKernel: openblasKernel)
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
    return "CPU: \(cpu.description), \(threads) threads at "
      + String(format: "%.2f GHz (measured during the run\(reported))\n", clockGHz)
      + "FP32 peak \(String(format: "%.0f", fp32PeakGflops)) GFLOP/s "
      + "(\(cpu.fp32FlopsPerCycle) FLOP/cycle/core\(bf16)); OpenBLAS kernel \(openblasKernel)"
  }
}

/// Measurements of the machine itself.
public enum Machine {
  /// The clock in GHz, measured on every thread at once (as a benchmark loads them): each runs
  /// a chain of dependent one-cycle additions (`graft_dependent_adds`) for about `seconds`, and
  /// the cycles over the time gives its clock; the mean over threads.
  public static func measureClockGHz(seconds: Double = 0.05) -> Double {
    // Calibrate the rounds on one short run so the timed runs last about `seconds`.
    let probe: UInt64 = 100_000
    let probeTime = time { graft_dependent_adds(probe) }
    let rounds = UInt64(max(1e5, min(1e9, Double(probe) * seconds / max(probeTime, 1e-7))))
    let threads = Parallel.threadCount
    let clocks = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
    defer { clocks.deallocate() }
    clocks.initialize(repeating: 0)
    Parallel.forRange(threads, grain: 1) { range in
      for t in range {
        let s = time { graft_dependent_adds(rounds) }
        clocks[t] = Double(rounds) * 16 / s / 1e9
      }
    }
    return clocks.reduce(0, +) / Double(threads)
  }

  private static func time(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }
}
