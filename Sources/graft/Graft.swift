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
    do {
      var command = try parseAsRoot(nil)
      try command.run()
    } catch {
      if let text = FileErrorText.describe(error) {
        FileHandle.standardError.write(Data("Error: \(text)\n".utf8))
        Foundation.exit(1)
      }
      exit(withError: error)
    }
  }
}

/// Foundation's file errors print as `Error Domain=NSCocoaErrorDomain Code=516 "…" UserInfo={…}`;
/// the command line says the file and the reason instead.
enum FileErrorText {
  /// `<path>: <reason> (<the system's word for it>)` for a Foundation file error; nil for any
  /// other error (it prints as it is).
  static func describe(_ error: Error) -> String? {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain else { return nil }
    let path =
      ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    var text =
      (path.map { $0 + ": " } ?? "") + (ns.localizedFailureReason ?? ns.localizedDescription)
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error,
      (underlying as NSError).domain == NSPOSIXErrorDomain,
      let word = strerror(Int32((underlying as NSError).code))
    {
      text += " (\(String(cString: word)))"
    }
    return text
  }
}
