import ArgumentParser
import Foundation
import GraftTasks
import GraftTensor
import GraftText

/// `graft report <folder>`: (re)writes `report.html` of a run folder or a sweep folder;
/// `graft report A B … --out M` merges protocol sweeps into one table.
struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "Write report.html for a run folder (graft tune) or a sweep (graft demo, bench).",
    discussion: """
      With several protocol sweeps (graft sweep, graft bench graft1k --protocol vtab) and \
      --out M: one table and report of them all, as if swept together (the same backbone; a \
      method on a task in one of them only), so methods swept one command at a time compare \
      against each other and the linear probe. M/sources.json lists the sweeps: graft report M \
      merges them again.
      """)

  @Argument(help: "The folder (or, with --out, several protocol sweep folders).")
  var folders: [String]

  @Option(help: "With several protocol sweeps: the folder for the merged report.")
  var out: String?

  /// The file of a merged report's folder that lists its sweeps.
  static let sourcesFile = "sources.json"

  func run() throws {
    guard let folder = folders.first else { throw ValidationError("give a folder") }
    if let out {
      try merge(folders.map { URL(fileURLWithPath: $0).standardizedFileURL }, into: out)
      return
    }
    guard folders.count == 1 else {
      throw ValidationError("several folders are merged into one report: give --out")
    }
    let url = URL(fileURLWithPath: folder)
    let sources = url.appendingPathComponent(Self.sourcesFile)
    if FileManager.default.fileExists(atPath: sources.path) {
      guard let data = try? MappedFile.contents(of: sources),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let paths = object["sweeps"] as? [String]
      else { throw ValidationError("\(sources.path): not a list of sweeps ({\"sweeps\": […]})") }
      try merge(paths.map { URL(fileURLWithPath: $0) }, into: folder)
      return
    }
    let summaryURL = url.appendingPathComponent("summary.json")
    guard let data = try? MappedFile.contents(of: summaryURL),
      let object = try? JSONSerialization.jsonObject(with: data),
      let summary = object as? [String: Any]
    else { throw ValidationError("\(summaryURL.path): missing or not JSON (is the run finished?)") }
    if summary["protocol"] as? String == "vtab" {
      // A protocol sweep (graft sweep, graft bench graft1k --protocol vtab).
      let sweep = try Self.protocolSweep(url)
      try ReportWriter.writeProtocol(
        sweep, title: "graft sweep: \(sweep.backbone) on \(sweep.tasks.joined(separator: ", "))",
        to: url)
      // The sweep's table again, with what was added since it ran (the chosen runs' curves).
      print(sweep.table())
    } else if let tasks = summary["tasks"] as? [String],
      let rows = summary["methods"] as? [[String: Any]],
      let backbone = summary["backbone"] as? String
    {
      let runner = SweepRunner(
        backbone: backbone, settings: [], out: url, fresh: false,
        progress: ProgressReporter(style: .quiet, totalSteps: 1), quiet: true)
      var records: [RunRecord] = []
      for task in tasks {
        for row in rows {
          guard let method = row["method"] as? String else { continue }
          records.append(
            try RunRecord.load(
              folder: runner.folder(task: task, method: method, single: tasks.count == 1),
              task: task))
        }
      }
      let sweep = SweepSummary(
        backbone: backbone, tasks: tasks, runs: records,
        wallSeconds: summary["wall_seconds"] as? Double ?? 0)
      let first = try ImageTuneData.load(tasks[0])
      var testLabels: [String: [Int]] = [:]
      for task in tasks {
        testLabels[task] = ReportWriter.testLabels(
          task == tasks[0] ? first : try ImageTuneData.load(task))
      }
      try ReportWriter.write(
        sweep, title: "Graft: \(backbone) on \(tasks.joined(separator: ", "))",
        classNames: first.classNames, testSamples: ReportWriter.gridSamples(first),
        testLabels: testLabels, to: url)
    } else {
      let runURL = url.appendingPathComponent("run.json")
      guard let runData = try? MappedFile.contents(of: runURL),
        let object = try? JSONSerialization.jsonObject(with: runData),
        let run = object as? [String: Any],
        let backbone = run["backbone"] as? String, let dataRef = run["data"] as? String
      else { throw ValidationError("\(runURL.path): not a run folder") }
      try ReportWriter.writeRun(
        folder: url, backbone: backbone, dataReference: dataRef, data: ImageTuneData.load(dataRef))
    }
    print(url.appendingPathComponent("report.html").path)
  }
}

extension ReportCommand {
  /// The protocol sweep in `folder` (its runs in the sweep's own layout).
  static func protocolSweep(_ folder: URL) throws -> ProtocolSummary {
    let summaryURL = folder.appendingPathComponent("summary.json")
    let object =
      (try? MappedFile.contents(of: summaryURL)).flatMap {
        try? JSONSerialization.jsonObject(with: $0)
      } as? [String: Any]
    guard let object, object["protocol"] as? String == "vtab" else {
      throw ValidationError(
        "\(summaryURL.path): missing, or not a protocol sweep's summary (graft sweep, graft "
          + "bench graft1k --protocol vtab)")
    }
    let tasks = object["tasks"] as? [String] ?? []
    let runner = SweepRunner(
      backbone: "", settings: [], out: folder, fresh: false,
      progress: ProgressReporter(style: .quiet, totalSteps: 1), quiet: true)
    return try ProtocolSummary.load(folder: folder) { task, method in
      runner.folder(task: task, method: method, single: tasks.count == 1)
    }
  }

  /// Merges the protocol sweeps in `folders` (`ProtocolSummary.merged`) and writes
  /// `sources.json` and `report.html` into `out`; prints the table.
  func merge(_ folders: [URL], into out: String) throws {
    // Written into a sweep, the merge's sources.json would replace that sweep's own report.
    try OutputGuard.check(out, flag: "--out", inputs: folders.map(\.path))
    let parts = try folders.map { (folder: $0, summary: try Self.protocolSweep($0)) }
    let merged = try ProtocolSummary.merged(parts)
    let url = URL(fileURLWithPath: out)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    let list = try JSONSerialization.data(
      withJSONObject: ["sweeps": folders.map(\.path)],
      options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try AtomicFile.write(list + Data("\n".utf8), to: url.appendingPathComponent(Self.sourcesFile))
    try ReportWriter.writeProtocol(
      merged,
      title: "graft report: \(merged.backbone) on \(merged.tasks.joined(separator: ", ")) "
        + "(\(folders.count) sweeps)", to: url)
    print(merged.table())
    print(url.appendingPathComponent("report.html").path)
  }
}

/// `graft models`: the bundled models.
struct ModelsList: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "list", abstract: "List the bundled models (Models/ and $GRAFT_MODELS).")

  func run() throws {
    var found = 0
    for dir in ModelLoader.bundledModelDirectories() {
      let names =
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
      for name in names {
        let folder = dir.appendingPathComponent(name)
        let configURL = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else { continue }
        // A text decoder (the captioner's, `graft pretrain --modality text`) is a model too.
        if let object = try? GPT2Config.readObject(configURL),
          GPT2Config.describesLanguageModel(object)
        {
          do {
            let c = try GPT2Config.read(configURL)
            print(
              pad(name, 20)
                + "gpt2 decoder  D \(c.nEmbd)  depth \(c.nLayer)  heads \(c.nHead)  "
                + "vocabulary \(c.vocabSize)  \(folder.path)")
          } catch {
            print(pad(name, 20) + "unreadable: \(error)")
          }
          found += 1
          continue
        }
        do {
          switch try ModelLoader.loadBackbone(folder.path) {
          case .vit(let loaded):
            let c = loaded.model.config
            print(
              pad(name, 20)
                + "\(loaded.name)  \(c.imgSize.height)×\(c.imgSize.width) patch "
                + "\(c.patchSize.height)  D \(c.embedDim)  depth \(c.depth)  heads \(c.numHeads)  "
                + "\(loaded.model.parameterCount) parameters  \(folder.path)")
          case .pointMAE(let loaded):
            let c = loaded.model.config
            print(
              pad(name, 20)
                + "point_mae  \(c.npoints) points, \(c.numGroup) groups of \(c.groupSize)  "
                + "D \(c.transDim)  depth \(c.depth)  heads \(c.numHeads)  "
                + "\(loaded.model.parameterCount) parameters  \(folder.path)")
          }
        } catch {
          print(pad(name, 20) + "unreadable: \(error)")
        }
        found += 1
      }
    }
    if found == 0 { print("no bundled models found (looked in Models/ and $GRAFT_MODELS)") }
  }
}
