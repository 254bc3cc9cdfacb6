import ArgumentParser
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
    main(nil)
  }
}
