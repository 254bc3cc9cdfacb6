import ArgumentParser
import Foundation
import GraftBench
import GraftTasks

/// `graft bench mpi`: data-parallel training's communication against its compute.
struct BenchMPI: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mpi",
    abstract: "Bytes allreduced and time per step with 1, 2 and 4 MPI ranks, per method.",
    discussion: """
      For each method, trains a random-weight ViT (default vit_small_patch16_224) for --steps \
      steps of a global batch of --batch random images, as 'graft tune' under 'mpirun -np K' \
      for each K of --ranks (K = 1 runs plainly, without MPI), and reads each run's \
      summary.json: training seconds per step, the bytes each rank allreduces per step (the \
      trainable gradients, float32) and the seconds spent in that allreduce. The ranks share \
      this machine's cores, so what the figures show is communication against compute; the \
      projection then gives the expected speed-up on K machines with one rank each: the \
      one-rank step divided by K plus a ring allreduce of those bytes over --bandwidth-gbit \
      links with --latency-us per message (DataParallelScaling).
      """)

  @Option(help: "Methods, comma-separated.")
  var methods = "linear,bitfit,lora,adapter,vpt-deep,lst,hst,full"

  @Option(help: "Rank counts on this machine, comma-separated.")
  var ranks = "1,2,4"

  @Option(help: "timm architecture of the random-weight backbone.")
  var model = "vit_small_patch16_224"

  @Option(help: "Global batch (split across the ranks).")
  var batch = 16

  @Option(help: "Training steps per run.")
  var steps = 4

  @Option(help: "Link bandwidth of the projected machines, Gbit/s.")
  var bandwidthGbit = 10.0

  @Option(help: "Latency of one message between the projected machines, microseconds.")
  var latencyUs = 50.0

  @Option(help: "Machine counts to project, comma-separated.")
  var machines = "2,4,8,16,32,64"

  @Option(help: "Folder for the backbone, images and runs (default: a temporary folder).")
  var work: String?

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  func run() throws {
    let methodList = methods.split(separator: ",").map(String.init)
    for method in methodList where !MethodRegistry.names.contains(method) {
      throw ValidationError(
        "--methods: unknown method '\(method)' (known: "
          + MethodRegistry.names.joined(separator: ", ") + ")")
    }
    let rankList = try ranks.split(separator: ",").map { s -> Int in
      guard let k = Int(s), (1...64).contains(k) else {
        throw ValidationError("--ranks: '\(s)' is not a rank count from 1 to 64")
      }
      return k
    }
    let machineList = try machines.split(separator: ",").map { s -> Int in
      guard let k = Int(s), k >= 1 else { throw ValidationError("--machines: '\(s)'") }
      return k
    }
    guard batch >= (rankList.max() ?? 1), steps >= 1 else {
      throw ValidationError("--batch must be at least the largest rank count, --steps at least 1")
    }
    guard bandwidthGbit > 0, latencyUs >= 0 else {
      throw ValidationError("--bandwidth-gbit must be positive and --latency-us not negative")
    }
    if rankList.contains(where: { $0 > 1 }) { _ = try mpirunPath() }
    let root =
      work.map { URL(fileURLWithPath: $0) }
      ?? FileManager.default.temporaryDirectory.appendingPathComponent(
        "graft-bench-mpi-\(ProcessInfo.processInfo.processIdentifier)")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    defer { if work == nil { try? FileManager.default.removeItem(at: root) } }
    let backbone = try writeBackbone(in: root)
    let images = try writeImages(in: root)
    let network = DataParallelScaling(
      bandwidthGbit: bandwidthGbit, latencyMicroseconds: latencyUs)
    let machineBefore = MachineReport.measure()
    var rows: [DataParallelScalingReport.Row] = []
    for method in methodList {
      var row = DataParallelScalingReport.Row(
        method: method, trainableParameters: 0, allreduceBytesPerStep: 0, stepSeconds: [:],
        allreduceSeconds: [:], projectedSpeedup: [:])
      for k in rankList {
        benchProgress("\(method) on \(k) rank\(k == 1 ? "" : "s")", json: json)
        let out = root.appendingPathComponent("runs/\(method)-\(k)")
        try? FileManager.default.removeItem(at: out)
        let summary = try tune(method: method, ranks: k, backbone: backbone, data: images, out: out)
        row.trainableParameters = summary.trainableParameters
        row.stepSeconds["\(k)"] = summary.trainSeconds / Double(steps)
        if let parallel = summary.dataParallel {
          row.allreduceBytesPerStep = parallel.allreduceBytesPerStep
          row.allreduceSeconds["\(k)"] = parallel.allreduceSeconds / Double(parallel.steps)
        }
      }
      if row.allreduceBytesPerStep == 0 {
        // Only one rank measured: the bytes a K-rank run would allreduce.
        row.allreduceBytesPerStep = 4 * (row.trainableParameters + 4)
      }
      if let one = row.stepSeconds["1"] {
        for k in machineList {
          row.projectedSpeedup["\(k)"] = network.speedup(
            oneMachine: one, bytes: row.allreduceBytesPerStep, machines: k)
        }
      }
      rows.append(row)
    }
    let report = DataParallelScalingReport(
      model: model, batch: batch, steps: steps, network: network, machines: machineList,
      rows: rows, machine: machineBefore.averaged(with: .measure()))
    try printReport(report, json: json) { printTable(report, ranks: rankList) }
  }

  /// A random-weight timm folder of `model` (timm's init; head removed).
  private func writeBackbone(in root: URL) throws -> URL {
    let folder = root.appendingPathComponent("backbone")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    var config = try TimmArchitecture(model).config
    config.numClasses = 0
    var generator = RandomGenerator(seed: 0)
    let vit = try VisionTransformer(config: config, generator: &generator)
    try Safetensors.write(
      vit.stateDict(), metadata: ["format": "pt"],
      to: folder.appendingPathComponent("model.safetensors"))
    let size = config.imgSize
    let hub: [String: Any] = [
      "architecture": model, "num_classes": 0, "num_features": config.embedDim,
      "pretrained_cfg": [
        "input_size": [3, size.height, size.width], "interpolation": "bicubic", "crop_pct": 0.9,
        "crop_mode": "center", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
        "num_classes": 0,
      ] as [String: Any],
    ]
    try AtomicFile.write(
      JSONSerialization.data(withJSONObject: hub, options: [.sortedKeys]),
      to: folder.appendingPathComponent("config.json"))
    return folder
  }

  /// An image folder of random 64×64 PNGs in two classes: `steps × batch` training images,
  /// two for validation and two for test.
  private func writeImages(in root: URL) throws -> URL {
    let folder = root.appendingPathComponent("images")
    var generator = RandomGenerator(seed: 1)
    for (split, count) in [("train", steps * batch), ("val", 2), ("test", 2)] {
      for i in 0..<count {
        let dir = folder.appendingPathComponent("\(split)/\(i % 2 == 0 ? "a" : "b")")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let pixels = (0..<(64 * 64 * 3)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try ImageCodec.write(
          RGBImage(width: 64, height: 64, pixels: pixels),
          to: dir.appendingPathComponent("\(i).png"))
      }
    }
    return folder
  }

  /// `graft tune` of `method` for one epoch as `ranks` ranks; its summary.
  private func tune(method: String, ranks: Int, backbone: URL, data: URL, out: URL) throws
    -> TuneSummary
  {
    var arguments = [
      "tune", "--backbone", backbone.path, "--method", method, "--data", data.path, "--set",
      "train.epochs=1", "--set", "train.batch_size=\(batch)", "--set", "train.workers=1",
      "--set", "train.cache=off", "--out", out.path, "--quiet",
    ]
    let process = Process()
    if ranks == 1 {
      process.executableURL = URL(fileURLWithPath: selfExecutable())
    } else {
      process.executableURL = URL(fileURLWithPath: try mpirunPath())
      var launcher = ["--oversubscribe", "-np", "\(ranks)"]
      if getuid() == 0 { launcher.insert("--allow-run-as-root", at: 0) }
      arguments = launcher + [selfExecutable()] + arguments
    }
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    // Containers often forbid the cross-memory attach Open MPI uses between local ranks.
    if environment["OMPI_MCA_btl_vader_single_copy_mechanism"] == nil {
      environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
    }
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw ValidationError(
        "\(method) on \(ranks) ranks failed (status \(process.terminationStatus)): "
          + arguments.joined(separator: " "))
    }
    return try TuneSummary.read(from: out.appendingPathComponent("summary.json"))
  }

  private func mpirunPath() throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for dir in path.split(separator: ":").map(String.init) + ["/usr/bin"] {
      let candidate = URL(fileURLWithPath: dir).appendingPathComponent("mpirun").path
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ValidationError("mpirun not found: install openmpi-bin (Tools/setup-debian.sh does)")
  }

  private func printTable(_ report: DataParallelScalingReport, ranks: [Int]) {
    if let machine = report.machine { print(machine.summary) }
    print(
      "\(report.model), random weights, global batch \(report.batch), \(report.steps) steps; "
        + "ranks share this machine's cores")
    var header =
      pad("method", 9) + pad("trainable", 12, right: true)
      + pad("MB/step", 10, right: true)
    for k in ranks { header += pad("s/step@\(k)", 11, right: true) }
    for k in ranks where k > 1 { header += pad("allreduce@\(k)", 16, right: true) }
    print(header)
    for row in report.rows {
      var line =
        pad(row.method, 9) + pad("\(row.trainableParameters)", 12, right: true)
        + pad(fmt(Double(row.allreduceBytesPerStep) / 1e6, 3), 10, right: true)
      for k in ranks {
        line += pad(row.stepSeconds["\(k)"].map { fmt($0, 3) } ?? "-", 11, right: true)
      }
      for k in ranks where k > 1 {
        var cell = "-"
        if let seconds = row.allreduceSeconds["\(k)"], let step = row.stepSeconds["\(k)"] {
          cell = fmt(seconds, 4) + " (\(fmt(100 * seconds / step, 0))%)"
        }
        line += pad(cell, 16, right: true)
      }
      print(line)
    }
    print(
      "\nexpected speed-up on K machines (one rank each; ring allreduce over "
        + "\(fmt(report.network.bandwidthGbit, 0)) Gbit/s, \(fmt(report.network.latencyMicroseconds, 0)) µs):"
    )
    var projection = pad("method", 9)
    for k in report.machines { projection += pad("K=\(k)", 8, right: true) }
    print(projection)
    for row in report.rows {
      var line = pad(row.method, 9)
      for k in report.machines {
        line += pad(row.projectedSpeedup["\(k)"].map { fmt($0, 1) + "×" } ?? "-", 8, right: true)
      }
      print(line)
    }
  }
}
