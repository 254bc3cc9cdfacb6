import ArgumentParser
import Foundation
import GraftBench
import GraftTensor

/// `graft bench …`: speed measurements, each printed as a ratio against its anchor.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure Graft's speed against its anchors (one run, same machine).",
    subcommands: [
      BenchOps.self, BenchViT.self, BenchViTRow.self, BenchGraft1k.self, BenchGraft3D.self,
      BenchTune.self, BenchTuneRow.self, BenchVideo.self, BenchVideoRow.self, BenchPoints.self,
      BenchPointsRow.self, BenchDet.self, BenchCaptions.self, BenchCaptionsRow.self, BenchMPI.self,
    ]
  )
}

/// `graft bench ops`.
struct BenchOps: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ops",
    abstract: "sgemm through the tensor API vs cblas_sgemm, and op throughput vs a plain copy.",
    discussion: """
      OpenBLAS picks its kernel when the library loads. These machines set OPENBLAS_CORETYPE and
      OPENBLAS_L2_SIZE (Haswell kernel); unset both in the command to measure the AVX-512 kernel:
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE graft bench ops
      """
  )

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @Flag(help: "Fewer repeats (a quick smoke run).")
  var quick = false

  func run() throws {
    let report = OpsBenchmark.run(quick: quick) { step in
      if !json { FileHandle.standardError.write(Data("  measuring \(step)…\n".utf8)) }
    }
    if json { return try printReport(report, json: true) {} }
    if let machine = report.machine { print(machine.summary) }
    print("OpenBLAS kernel: \(report.openblasKernel)   (\(report.openblasConfig))")
    print("threads: \(report.threads)\n")
    print(
      "sgemm            m      n      k   graft GFLOP/s   cblas GFLOP/s   ratio (≥ 0.95)   ÷peak")
    for r in report.sgemm {
      print(
        pad(r.label, 8) + pad("\(r.m)", 7, right: true) + pad("\(r.n)", 7, right: true)
          + pad("\(r.k)", 7, right: true) + pad(fmt(r.graftGflops, 1), 16, right: true)
          + pad(fmt(r.cblasGflops, 1), 16, right: true) + pad(fmt(r.ratio, 3), 9, right: true)
          + pad(
            report.machine.map { fmt($0.fractionOfPeak(r.graftGflops), 2) } ?? "-", 8, right: true))
    }
    if let heads = report.headProducts {
      print(
        "\nhead product     m      n      k   graft GFLOP/s   cblas GFLOP/s   ratio (one thread)")
      for r in heads {
        print(
          pad(r.label, 11) + pad("\(r.m)", 4, right: true) + pad("\(r.n)", 7, right: true)
            + pad("\(r.k)", 7, right: true) + pad(fmt(r.graftGflops, 1), 16, right: true)
            + pad(fmt(r.cblasGflops, 1), 16, right: true) + pad(fmt(r.ratio, 3), 9, right: true))
      }
    }
    if let narrow = report.narrowGradients {
      print(
        "\nweight gradient     m      n      k   one call GFLOP/s   in 128-row pieces   ratio (≥ 0.6)"
      )
      for r in narrow {
        print(
          pad(r.label, 17) + pad("\(r.m)", 4, right: true) + pad("\(r.n)", 7, right: true)
            + pad("\(r.k)", 7, right: true) + pad(fmt(r.wholeGflops, 1), 19, right: true)
            + pad(fmt(r.piecesGflops, 1), 20, right: true) + pad(fmt(r.ratio, 3), 9, right: true))
      }
    }
    print("\nop [12608, 384]  pass        GB/s   copy GB/s   ratio (forward ≥ 0.5)")
    for r in report.ops {
      print(
        pad(r.op, 16) + pad(r.pass, 9) + pad(fmt(r.gbps, 1), 9, right: true)
          + pad(fmt(r.copyGbps, 1), 12, right: true) + pad(fmt(r.ratio, 3), 9, right: true))
    }
  }
}
