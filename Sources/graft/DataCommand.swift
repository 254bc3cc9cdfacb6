import ArgumentParser
import Foundation
import GraftTasks

/// `graft data`: prepares and lists datasets.
struct DataCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data", abstract: "Prepare and list datasets.",
    subcommands: [Prepare.self, List.self])

  /// `graft data prepare graft1k`.
  struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Build the Graft-1k tasks from the real images in Data/ and Fashion-MNIST.",
      discussion: """
        Writes each task as PNG files with VTAB-1k list files (train800.txt, val200.txt, \
        train800val200.txt, test.txt) and classes.txt under --root (default \
        $GRAFT_DATA_HOME/graft1k or ~/.cache/graft/graft1k). Use a task with \
        'graft tune --data graft1k/<task>'.
        """)

    @Argument(help: "The benchmark to prepare: graft1k.")
    var benchmark: String

    @Option(help: "Only this task (repeatable); default all.")
    var task: [String] = []

    @Option(help: "Folder to write the tasks in.")
    var root: String?

    @Option(help: "Folder of Fashion-MNIST's IDX files.")
    var fashionMnist = Graft1k.defaultFashionMNIST.path

    @OptionGroup var quietFlag: QuietFlag
    var quiet: Bool { quietFlag.quiet }

    func run() throws {
      guard benchmark == "graft1k" else {
        throw ValidationError("unknown benchmark '\(benchmark)' (known: graft1k)")
      }
      let names = task.isEmpty ? Graft1k.tasks.map(\.name) : task
      for name in names { _ = try Graft1k.task(name) }
      let rootURL = root.map { URL(fileURLWithPath: $0) } ?? Graft1k.defaultRoot()
      let progress = ProgressReporter(style: .automatic(quiet: quiet), totalSteps: names.count)
      progress.beginPhase("graft1k", steps: names.count)
      for name in names {
        let started = Date()
        try Graft1k.prepare(
          name, root: rootURL, fashionMNIST: URL(fileURLWithPath: fashionMnist))
        progress.step()
        progress.log(
          String(
            format: "%@: prepared in %.1f s at %@", name, Date().timeIntervalSince(started),
            rootURL.appendingPathComponent(name).path))
      }
      progress.finish()
    }
  }

  /// `graft data list`.
  struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the datasets Graft knows and whether they are prepared.")

    @Option(help: "Folder of the prepared Graft-1k tasks.")
    var root: String?

    func run() throws {
      let rootURL = root.map { URL(fileURLWithPath: $0) } ?? Graft1k.defaultRoot()
      print("name                    classes  prepared  what")
      for t in Graft1k.tasks {
        let ready = Graft1k.isPrepared(t.name, root: rootURL)
        print(
          "graft1k/\(t.name)".padding(toLength: 24, withPad: " ", startingAt: 0)
            + String(t.classNames.count).padding(toLength: 9, withPad: " ", startingAt: 0)
            + (ready ? "yes" : "no").padding(toLength: 10, withPad: " ", startingAt: 0)
            + t.summary)
      }
      let digits = DataFiles.digitsLocations().contains {
        FileManager.default.fileExists(atPath: $0.path)
      }
      print(
        "digits".padding(toLength: 24, withPad: " ", startingAt: 0) + "10       "
          + (digits ? "yes" : "no ").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "the committed UCI digits, split 70/10/20")
      let fmnist = FileManager.default.fileExists(
        atPath: Graft1k.defaultFashionMNIST.appendingPathComponent("t10k-labels-idx1-ubyte.gz")
          .path)
      print(
        "fashion-mnist".padding(toLength: 24, withPad: " ", startingAt: 0) + "10       "
          + (fmnist ? "yes" : "no ").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "\(Graft1k.defaultFashionMNIST.path) (apt install dataset-fashion-mnist)")
      print("prepared tasks live in \(rootURL.path)")
    }
  }
}
