import ArgumentParser
import Foundation
import GraftDistributed
import GraftTensor

/// The `graft` command line.
@main
struct Graft: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graft",
    abstract: "Parameter-efficient transfer learning on frozen backbones, natively on CPUs.",
    version: GraftVersion.string,
    subcommands: [
      Bench.self, Embed.self, Tune.self, Eval.self, Predict.self, Methods.self, Pretrain.self,
      DataCommand.self, Demo.self, ReportCommand.self, ModelsCommand.self, PointsCommand.self,
      VideoCommand.self, Export.self, Import.self, ScoreCommand.self, CaptionCommand.self,
      Detect.self,
      SweepCommand.self,
    ]
  )

  /// Re-executes with a faster OpenBLAS kernel when the library did not recognise the CPU
  /// (`OpenBLASKernel`), then runs the command.
  static func main() {
    OpenBLASKernel.reexecWithBetterKernelIfNeeded()
    // K processes of another command would each write the same outputs.
    if let ranks = MPILaunch.announcedSize(), ranks > 1,
      let command = CommandLine.arguments.dropFirst().first, command != "tune"
    {
      FileHandle.standardError.write(
        Data(
          ("graft: started as \(ranks) MPI ranks, but only 'graft tune' trains data-parallel; "
            + "run 'graft \(command)' as one process\n").utf8))
      Foundation.exit(2)
    }
    main(nil)
  }
}
