import GraftTensor
import XCTest

@testable import GraftBench

/// `CPUInfo` and `MachineReport`: what /proc/cpuinfo says about a CPU's FP32 peak, and the
/// clock measured by a chain of dependent additions.
final class MachineTests: XCTestCase {
  /// The first processor's lines of a /proc/cpuinfo, with `flags`.
  private func cpuinfo(vendor: String, family: Int, model: Int, name: String, flags: String)
    -> String
  {
    """
    processor\t: 0
    vendor_id\t: \(vendor)
    cpu family\t: \(family)
    model\t\t: \(model)
    model name\t: \(name)
    cpu MHz\t\t: 2596.138
    flags\t\t: fpu sse sse2 \(flags)

    processor\t: 1
    vendor_id\t: OtherVendor
    cpu family\t: 1
    """
  }

  func testPeakFollowsTheFMAWidthOfTheCoreGeneration() {
    let zen5 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 26, model: 2, name: "AMD EPYC 9B45",
        flags: "fma avx2 avx512f avx512_bf16 avx512_vnni"))
    XCTAssertEqual(zen5.fp32FlopsPerCycle, 64)
    XCTAssertEqual(zen5.bf16FlopsPerCycle, 128)
    XCTAssertEqual(zen5.generation, "Zen 5")
    XCTAssertEqual(zen5.family, 26)
    XCTAssertEqual(zen5.reportedMHz, 2596.138)
    XCTAssertEqual(zen5.flags, ["fma", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"])

    let zen4 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 25, model: 17, name: "AMD EPYC",
        flags: "fma avx2 avx512f avx512_bf16"))
    XCTAssertEqual(zen4.fp32FlopsPerCycle, 32, "AVX-512 on 256-bit pipes")
    XCTAssertEqual(zen4.generation, "Zen 4")
    XCTAssertEqual(zen4.description, "AMD EPYC (family 25, model 17, Zen 4)")

    let zen3 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 25, model: 1, name: "AMD EPYC 7B13", flags: "fma avx2"))
    XCTAssertEqual(zen3.fp32FlopsPerCycle, 32)
    XCTAssertNil(zen3.bf16FlopsPerCycle)
    XCTAssertEqual(zen3.generation, "Zen 3")

    // Zen and Zen+ run AVX2 on two 128-bit FMA pipes; Zen 2 widened them to 256 bits.
    let zen1 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 23, model: 1, name: "AMD EPYC", flags: "fma avx2"))
    XCTAssertEqual(zen1.fp32FlopsPerCycle, 16)
    XCTAssertEqual(zen1.generation, "Zen / Zen+")
    let zen2 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 23, model: 49, name: "AMD EPYC 7B12", flags: "fma avx2"))
    XCTAssertEqual(zen2.fp32FlopsPerCycle, 32)
    XCTAssertEqual(zen2.generation, "Zen 2")

    let sapphire = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "GenuineIntel", family: 6, model: 143, name: "Intel Xeon Platinum 8481C",
        flags: "fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile"))
    XCTAssertEqual(sapphire.fp32FlopsPerCycle, 64)
    XCTAssertNil(sapphire.generation)

    let old = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "GenuineIntel", family: 6, model: 45, name: "Xeon E5", flags: "avx"))
    XCTAssertEqual(old.fp32FlopsPerCycle, 8)
    XCTAssertEqual(old.flags, [])

    let none = CPUInfo(cpuinfo: "")
    XCTAssertEqual(none.modelName, "unknown CPU")
    XCTAssertNil(none.family)
    XCTAssertEqual(none.description, "unknown CPU")
  }

  func testReportScalesThePeakByThreadsAndClock() {
    let zen4 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 25, model: 17, name: "AMD EPYC",
        flags: "fma avx2 avx512f avx512_bf16"))
    let report = MachineReport(cpu: zen4, threads: 2, clockGHz: 3, openblasKernel: "SkylakeX")
    XCTAssertEqual(report.fp32PeakGflops, 192, accuracy: 1e-9)
    XCTAssertEqual(report.bf16PeakGflops ?? 0, 384, accuracy: 1e-9)
    XCTAssertEqual(report.fractionOfPeak(96), 0.5, accuracy: 1e-12)
    let later = MachineReport(cpu: zen4, threads: 2, clockGHz: 2, openblasKernel: "SkylakeX")
    XCTAssertEqual(report.averaged(with: later).clockGHz, 2.5, accuracy: 1e-12)
    XCTAssertTrue(report.summary.contains("FP32 peak 192 GFLOP/s"), report.summary)
  }

  /// A measured FLOPs-per-cycle figure replaces the CPU's own description in the peak (BF16's
  /// too), the summary says both when they differ, and a report written before the figure was
  /// recorded reads back with the description's.
  func testMeasuredFlopsPerCycleSetsThePeak() throws {
    let zen4 = CPUInfo(
      cpuinfo: cpuinfo(
        vendor: "AuthenticAMD", family: 25, model: 17, name: "AMD EPYC",
        flags: "fma avx2 avx512f avx512_bf16"))
    let report = MachineReport(
      cpu: zen4, threads: 2, clockGHz: 3, openblasKernel: "Zen", measuredFlopsPerCycle: 16)
    XCTAssertEqual(report.fp32FlopsPerCycle, 16)
    XCTAssertEqual(report.fp32PeakGflops, 96, accuracy: 1e-9)
    XCTAssertEqual(report.bf16PeakGflops ?? 0, 192, accuracy: 1e-9)
    XCTAssertTrue(
      report.summary.contains("(16 FLOP/cycle/core measured, 32 as the CPU describes itself"),
      report.summary)
    let later = MachineReport(
      cpu: zen4, threads: 2, clockGHz: 2, openblasKernel: "Zen", measuredFlopsPerCycle: 16)
    XCTAssertEqual(report.averaged(with: later).fp32PeakGflops, 80, accuracy: 1e-9)
    XCTAssertTrue(report.averaged(with: later).flopsPerCycleMeasured)

    let probed = MachineReport(
      cpu: zen4, threads: 2, clockGHz: 3, openblasKernel: "Zen", measuredFlopsPerCycle: 16,
      fmaGflopsPerThread: 40)
    XCTAssertEqual(probed.fp32PeakGflops, 80, accuracy: 1e-9, "the FMA rate, not the clock")
    XCTAssertEqual(probed.bf16PeakGflops ?? 0, 160, accuracy: 1e-9)
    XCTAssertTrue(
      probed.summary.contains("(FMAs measured on every thread; 16 FLOP/cycle/core measured"),
      probed.summary)
    let slower = MachineReport(
      cpu: zen4, threads: 2, clockGHz: 3, openblasKernel: "Zen", measuredFlopsPerCycle: 16,
      fmaGflopsPerThread: 30)
    XCTAssertEqual(probed.averaged(with: slower).fp32PeakGflops, 70, accuracy: 1e-9)

    let same = MachineReport(
      cpu: zen4, threads: 2, clockGHz: 3, openblasKernel: "Zen", measuredFlopsPerCycle: 32)
    XCTAssertTrue(same.summary.contains("(32 FLOP/cycle/core measured, BF16 384)"), same.summary)

    var json = try XCTUnwrap(
      JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
    XCTAssertEqual(json["fp32_flops_per_cycle"] as? Int, 16)
    json["fp32_flops_per_cycle"] = nil
    json["flops_per_cycle_measured"] = nil
    let old = try JSONDecoder().decode(
      MachineReport.self, from: JSONSerialization.data(withJSONObject: json))
    XCTAssertEqual(old.fp32FlopsPerCycle, 32)
    XCTAssertFalse(old.flopsPerCycleMeasured)
    XCTAssertEqual(old.fp32PeakGflops, 96, accuracy: 1e-9, "the peak as it was written")
  }

  func testNearestPowerOfTwo() {
    XCTAssertEqual(Machine.nearestPowerOfTwo(15.8), 16)
    XCTAssertEqual(Machine.nearestPowerOfTwo(12.9), 16)
    XCTAssertEqual(Machine.nearestPowerOfTwo(11), 8)
    XCTAssertEqual(Machine.nearestPowerOfTwo(45), 32)
    XCTAssertEqual(Machine.nearestPowerOfTwo(46), 64)
    XCTAssertEqual(Machine.nearestPowerOfTwo(0.3), 1)
  }

  /// The FMA probe measures what the cores do: a power of two per cycle, and a GEMM on every
  /// thread never runs faster than the probe's rate times the threads (had the probe counted
  /// half its FMAs, OpenBLAS's sgemm, near the peak on any kernel it picks, would beat it).
  /// The cores are brought to their clock first (`Machine.warmedUp`): a probe taken on a core
  /// still ramping up read low, and the all-thread rate measured after it then passed a 1.1
  /// bound in 2 of 16 runs on a 2-core Zen 3 EPYC (0 of 24 warmed up, half of them beside a
  /// busy loop). The bound is 1.25 to leave the clock room to move between the two
  /// measurements; counting each FMA twice, or summing the threads' rates instead of averaging
  /// them, reads 2 and fails.
  func testFMAProbeBoundsTheGEMM() throws {
    _ = Machine.warmedUp
    guard let probe = Machine.probeFMA() else {
      throw XCTSkip("no FMA probe for this CPU (no FMA, or not x86-64)")
    }
    let perCycle = Machine.nearestPowerOfTwo(probe.gflops / probe.clockGHz)
    XCTAssertTrue([8, 16, 32, 64].contains(perCycle), "\(probe)")
    XCTAssertEqual(Machine.measuredFlopsPerCycle.map { [8, 16, 32, 64].contains($0) }, true)
    let gemm = OpsBenchmark.linearLayerGflops(m: 1024, n: 1024, k: 1024)
    XCTAssertLessThan(gemm, 1.1 * probe.gflops * Double(Parallel.threadCount), "\(probe)")
    let perThread = try XCTUnwrap(Machine.measureFMAGflops(seconds: 0.01))
    XCTAssertLessThan(perThread, 1.25 * probe.gflops, "all threads at once, not faster than one")
  }

  /// The dependent-addition chain measures a clock a CPU can have (and the machine's own CPU
  /// parses): a wrong cycle count per round would land far outside these bounds.
  func testMeasuredClockIsPlausible() {
    let ghz = Machine.measureClockGHz(seconds: 0.02)
    XCTAssertGreaterThan(ghz, 0.2)
    XCTAssertLessThan(ghz, 7)
    let report = MachineReport.measure()
    XCTAssertGreaterThan(report.fp32PeakGflops, 0)
  }

  /// `graft bench ops`'s weight-gradient rows: each shape timed as one call and in pieces that
  /// compute the same product (the rate comparison itself is the benchmark's, not a test's: it
  /// depends on the machine), and the row's JSON carries both rates and their ratio.
  func testNarrowGradientRowsTimeOneCallAgainstPieces() throws {
    let rows = OpsBenchmark.narrowGradientProducts(repeats: 1)
    XCTAssertEqual(
      rows.map { [$0.m, $0.n, $0.k, $0.piece] }, [[64, 128, 1600, 128], [16, 128, 1600, 128]])
    for row in rows {
      XCTAssertTrue(row.wholeGflops.isFinite && row.wholeGflops > 0, row.label)
      XCTAssertTrue(row.piecesGflops.isFinite && row.piecesGflops > 0, row.label)
    }
    let json =
      try JSONSerialization.jsonObject(with: JSONEncoder().encode(rows[0])) as? [String: Any]
    XCTAssertEqual(try XCTUnwrap(json?["ratio"] as? Double), rows[0].ratio, accuracy: 1e-12)
    XCTAssertEqual(json?["piece"] as? Int, 128)
    let back = try JSONDecoder().decode(
      OpsBenchmark.SplitRow.self, from: JSONEncoder().encode(rows[1]))
    XCTAssertEqual(back.wholeGflops, rows[1].wholeGflops)
    XCTAssertEqual(back.label, "16×128 over 1600")
  }
}
