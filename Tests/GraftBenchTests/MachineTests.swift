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

  /// The dependent-addition chain measures a clock a CPU can have (and the machine's own CPU
  /// parses): a wrong cycle count per round would land far outside these bounds.
  func testMeasuredClockIsPlausible() {
    let ghz = Machine.measureClockGHz(seconds: 0.02)
    XCTAssertGreaterThan(ghz, 0.2)
    XCTAssertLessThan(ghz, 7)
    let report = MachineReport.measure()
    XCTAssertGreaterThan(report.fp32PeakGflops, 0)
  }
}
