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
    ParentWatch.start()
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
    if let problem = EnvironmentSettings.firstProblem(in: ProcessInfo.processInfo.environment) {
      FileHandle.standardError.write(Data("Error: \(problem)\n".utf8))
      Foundation.exit(64)
    }
    if let flag = EmptyPathOption.first(in: Array(CommandLine.arguments.dropFirst())) {
      FileHandle.standardError.write(
        Data("Error: \(flag) was given an empty path (an unset shell variable?)\n".utf8))
      Foundation.exit(64)
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

/// The environment variables Graft reads as numbers: a value that is not one would otherwise be
/// ignored (`abc`) or taken literally (`GRAFT_MEMORY_LIMIT_MIB=0` fails every run as out of
/// memory), so it is an error before anything runs. Empty counts as unset.
enum EnvironmentSettings {
  /// Each variable and the least value it takes.
  static let numbers: [(name: String, least: Int, unit: String)] = [
    ("GRAFT_MEMORY_LIMIT_MIB", 1, "MiB"), ("GRAFT_POOL_MIB", 0, "MiB"),
    ("GRAFT_NUM_THREADS", 1, "threads"), ("GRAFT_SPIN_US", 0, "microseconds"),
  ]

  /// What is wrong with the first bad variable in `environment`, nil when none is.
  static func firstProblem(in environment: [String: String]) -> String? {
    for (name, least, unit) in numbers {
      guard let text = environment[name], !text.isEmpty else { continue }
      guard let value = Int(text), value >= least else {
        return
          "\(name)=\(text) is not a whole number of \(unit) ≥ \(least); set it to one, or unset it"
      }
    }
    return nil
  }
}

/// Options whose value is a file or folder: given as an empty string (`--out ""`, `--out=`, most
/// often an unset shell variable), it would name the current folder and scatter a run there.
enum EmptyPathOption {
  static let flags: Set<String> = [
    "--out", "-o", "--output", "--resume", "--draw", "--init-from", "--adapter", "--peft",
    "--data", "--config", "--backbone", "--model", "--root",
  ]

  /// The first path option in `arguments` given an empty value, nil when there is none.
  static func first(in arguments: [String]) -> String? {
    for (i, argument) in arguments.enumerated() {
      if argument == "--" { return nil }
      if flags.contains(argument), i + 1 < arguments.count, arguments[i + 1].isEmpty {
        return argument
      }
      if argument.hasSuffix("="), flags.contains(String(argument.dropLast())) {
        return String(argument.dropLast())
      }
    }
    return nil
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
