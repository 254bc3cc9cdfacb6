import ArgumentParser
import Foundation
import GraftDistributed
import GraftTasks
import GraftTensor

/// `graft tune`: trains a parameter-efficient method on a frozen backbone.
struct Tune: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Tune a method on a frozen backbone and write a PEFT-style run folder.",
    discussion: """
      --backbone takes a timm model folder, a Google .npz (with --arch) or a bundled name. \
      --data takes 'digits' (the committed UCI digits, split 70/10/20 with a fixed seed), a \
      .csv of 8×8 digits, a VTAB-1k folder (train800.txt, val200.txt, test.txt), an image \
      folder with train/ (val/, test/) class folders, or a folder of IDX files. \
      Video clips for an image backbone: an MSR-VTT-style annotations .json with a label per \
      video (or a folder holding annotations.json, as 'graft data prepare clips' writes), or a \
      tree of class folders of videos (with or without train/ val/ test/); every frame runs \
      through the backbone with the method attached, and a clip's logits are the mean of its \
      frames' (data.frames, data.sampling, data.train_sampling). \
      --method pllava --decoder <language model folder> trains the video captioner on a \
      captioned clip set, as 'graft caption train' (which lists its settings).

      Settings resolve in order: the method's recipe, --config FILE.yaml, then each \
      --set KEY=VALUE. Run 'graft methods' for every method, option and key with its default.

      The run folder gets tune_config.yaml (resolved), adapter_config.json, \
      adapter_model.safetensors (the best epoch's trainable tensors), metrics.jsonl, \
      summary.json, test_logits.safetensors and checkpoint/ (written atomically each epoch; \
      continue an interrupted run with --resume DIR).
      """)

  @Option(help: "Backbone: model folder, .npz or bundled name.")
  var backbone: String?

  @Option(help: "timm architecture of an .npz backbone.")
  var arch: String?

  @Option(
    help: ArgumentHelp(
      "Method: \(MethodRegistry.names.joined(separator: ", ")), or pllava (video captioning, "
        + "with --decoder)."))
  var method: String?

  @Option(
    help: ArgumentHelp(
      "--method pllava: the language model folder the captioner decodes with (the same run as "
        + "'graft caption train').", valueName: "dir"))
  var decoder: String?

  @Option(help: "Dataset (see below).")
  var data: String?

  @Option(
    help: ArgumentHelp(
      "classification (default) or detection: --data a canvas-det folder or a COCO .json; an "
        + "FCOS head on the method's multi-scale features (det.* settings).",
      valueName: "task"))
  var task: String?

  @Option(help: "Run folder to write.")
  var out: String?

  @Option(help: "YAML file of settings.")
  var config: String?

  @OptionGroup var settings: SetOptions
  var overrides: [String] { settings.overrides }

  @Option(
    help:
      "Continue the interrupted run in this folder, with its own settings (other flags must agree)."
  )
  var resume: String?

  @Option(
    help: ArgumentHelp(
      "Start from the trained tensors of this run or imported adapter folder (same method "
        + "and backbone) instead of a fresh initialisation; its head too when its classes are "
        + "this data's.", valueName: "dir"))
  var initFrom: String?

  @Flag(
    help: ArgumentHelp(
      "With --init-from: take only the method's tensors, the head starts fresh (PVP's warm "
        + "start from prompts trained on another task)."))
  var freshHead = false

  @Flag(help: "Build everything, print the parameter counts, do not train.")
  var dryRun = false

  @Option(help: "Classes of the head when no --data is given (--dry-run).")
  var classes: Int?

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @OptionGroup var quietFlag: QuietFlag
  var quiet: Bool { quietFlag.quiet }

  @OptionGroup var imageLimit: ImageLimitOptions

  func validate() throws {
    // A resumed run writes into its own folder; another --out would be silently ignored.
    if let resume, let out,
      URL(fileURLWithPath: out).standardizedFileURL.path
        != URL(fileURLWithPath: resume).standardizedFileURL.path
    {
      throw ValidationError(
        "--out \(out) conflicts with --resume \(resume): a resumed run goes on in its own "
          + "folder; leave --out out, or copy the folder first and resume the copy")
    }
  }

  func run() throws {
    // Under `mpirun -np K` (K > 1) every rank runs this; otherwise MPI is never initialised.
    guard let communicator = try MPILaunch.communicator() else {
      return try train(communicator: nil)
    }
    do {
      let detection = try DetectionRoute.applies(self)
      if method == PLLaVARoute.method || detection {
        throw ValidationError(
          "captioning and detection train as one process; only classification runs "
            + "data-parallel under mpirun")
      }
      try train(communicator: communicator)
    } catch {
      // One rank's error must end every rank (the others would wait in a collective).
      communicator.abort("\(error)")
    }
    communicator.finalize()
  }

  /// The run, on one process (`communicator` nil) or as one rank of a data-parallel job (rank 0
  /// logs, prints and writes the run folder).
  private func train(communicator: MPICommunicator?) throws {
    if method == PLLaVARoute.method { return try PLLaVARoute.tune(self) }
    imageLimit.apply()
    if try DetectionRoute.applies(self) { return try DetectionRoute.tune(self) }
    let stderr = FileHandle.standardError
    let leader = (communicator?.rank ?? 0) == 0
    let log: (String) -> Void = {
      if !quiet && leader { stderr.write(Data(($0 + "\n").utf8)) }
    }
    if let communicator {
      log("data-parallel: \(communicator.size) ranks, global batch split across them")
    }
    if freshHead, initFrom == nil {
      throw ValidationError("--fresh-head belongs with --init-from")
    }
    if let resume {
      if initFrom != nil {
        throw ValidationError(
          "--init-from starts a new run; --resume continues one from its checkpoint")
      }
      let folder = URL(fileURLWithPath: resume)
      let runURL = folder.appendingPathComponent("run.json")
      guard let runData = try? MappedFile.contents(of: runURL),
        let object = try? JSONSerialization.jsonObject(with: runData),
        let run = object as? [String: Any],
        let backboneRef = run["backbone"] as? String, let dataRef = run["data"] as? String,
        let methodName = run["method"] as? String
      else { throw ValidationError("\(runURL.path): not a run folder to resume") }
      var cfg = try RunConfigFile.read(folder, method: methodName)
      let adapter = try AdapterCheckpoint.readConfig(folder)
      let runArch = backboneRef.hasSuffix(".npz") ? adapter.baseModelArchitecture : nil
      cfg = try checkResumeAgrees(
        method: methodName, backbone: backboneRef, arch: runArch, data: dataRef, config: cfg)
      let tb = try TuneBackbone.load(backboneRef, arch: runArch)
      let tuneData = try AnyTuneData.load(
        dataRef, for: taskInput(methodName, tb, options: cfg.methodOptions),
        video: cfg.videoInput)
      let trainer = try Trainer(backbone: tb, config: cfg, classNames: tuneData.classNames)
      trainer.communicator = communicator
      // A run started with --init-from starts from the same tensors again when no epoch was
      // committed (a committed epoch's checkpoint replaces them, and the source is not read).
      if let source = run["init_from"] as? String,
        !CheckpointStore(folder: folder.appendingPathComponent("checkpoint")).hasCommittedEpoch
      {
        try trainer.initialise(
          from: URL(fileURLWithPath: source), freshHead: run["fresh_head"] as? Bool ?? false)
      }
      if let s = try trainer.run(
        data: tuneData, folder: folder, dataReference: dataRef, resume: true, log: log),
        leader
      {
        try report(s)
      }
      return
    }
    guard let backbone else { throw ValidationError("give --backbone (or --resume DIR)") }
    guard let method else {
      throw ValidationError("give --method (\(MethodRegistry.names.joined(separator: ", ")))")
    }
    var cfg = try TuneConfig.preset(for: method)
    if let config {
      try cfg.apply(yamlFile: config)
    }
    for assignment in overrides { try cfg.set(assignment: assignment) }
    let tb = try TuneBackbone.load(backbone, arch: arch)
    for note in ["backbone \(tb.architecture) (\(tb.weightsHash))"] { log(note) }
    var tuneData: AnyTuneData? = nil
    let classNames: [String]
    if let data {
      tuneData = try AnyTuneData.load(
        data, for: taskInput(method, tb, options: cfg.methodOptions), video: cfg.videoInput)
      classNames = tuneData!.classNames
      if let classes, classes != classNames.count {
        throw ValidationError("--classes \(classes) but \(data) has \(classNames.count) classes")
      }
    } else if dryRun, let classes {
      guard classes >= 1 else { throw ValidationError("--classes must be at least 1") }
      classNames = (0..<classes).map(String.init)
    } else {
      throw ValidationError(dryRun ? "give --data or --classes" : "give --data")
    }
    let trainer = try Trainer(backbone: tb, config: cfg, classNames: classNames)
    trainer.communicator = communicator
    if let initFrom {
      let taken = try trainer.initialise(
        from: URL(fileURLWithPath: initFrom), freshHead: freshHead)
      log("starting from " + taken)
    }
    if dryRun {
      guard leader else { return }
      let r = trainer.dryRunReport()
      if json {
        let d = try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys])
        print(String(decoding: d, as: UTF8.self))
      } else {
        let n = r["trainable_parameters"] as! Int
        let m = r["backbone_parameters"] as! Int
        print(
          "\(method): \(n) trainable parameters, backbone \(m) "
            + String(format: "(%.4f%%)", 100 * Double(n) / Double(max(m, 1))))
        print(try cfg.yaml(), terminator: "")
      }
      return
    }
    guard let out else { throw ValidationError("give --out DIR for the run folder") }
    let folder = URL(fileURLWithPath: out)
    if Trainer.holdsRun(folder) {
      throw ValidationError("\(out) already holds a run; continue it with --resume \(out)")
    }
    log("data: \(tuneData!.description)")
    if let s = try trainer.run(data: tuneData!, folder: folder, dataReference: data!, log: log),
      leader
    {
      try report(s)
    }
  }

  /// What the run's data must be: the backbone's input, or point clouds for a method that takes
  /// them whatever its backbone (P2P).
  private func taskInput(_ method: String, _ backbone: TuneBackbone, options: [String: String])
    throws -> BackboneInput
  {
    let descriptor = try MethodRegistry.descriptor(method)
    guard descriptor.takesPointClouds else { return backbone.input }
    let points = Int(try descriptor.resolve(options)["points"] ?? "") ?? 1024
    return .points(PointInput(points: points))
  }

  /// With `--resume`, the run's own settings win and may not be changed: each of `--method`,
  /// `--backbone`, `--arch`, `--data`, `--config` and `--set` must be left out or agree with
  /// the run (a value that differs is an error naming it), so a resumed run ends as the
  /// uninterrupted one would. The exception is `train.recompute`, which changes memory and time
  /// but not results: a run that ran out of memory can resume with `train.recompute=all`.
  /// Returns the configuration the resumed run uses.
  func checkResumeAgrees(
    method runMethod: String, backbone runBackbone: String, arch runArch: String?,
    data runData: String, config runConfig: TuneConfig
  ) throws -> TuneConfig {
    func conflict(_ flag: String, _ given: String, _ recorded: String) -> ValidationError {
      ValidationError(
        "\(flag) \(given) conflicts with the run being resumed (\(recorded)); a resumed run keeps "
          + "its own settings: leave \(flag) out, or start a new run in another folder")
    }
    /// A path as the run records it (absolute), or the text as given.
    func reference(_ s: String) -> String {
      FileManager.default.fileExists(atPath: s)
        ? URL(fileURLWithPath: s).standardizedFileURL.path : s
    }
    if let method, method != runMethod { throw conflict("--method", method, runMethod) }
    if let backbone, reference(backbone) != reference(runBackbone) {
      throw conflict("--backbone", backbone, runBackbone)
    }
    if let arch, arch != runArch { throw conflict("--arch", arch, runArch ?? "no --arch") }
    if let data, reference(data) != reference(runData) {
      throw conflict("--data", data, runData)
    }
    guard config != nil || !overrides.isEmpty else { return runConfig }
    var asked = runConfig
    if let config {
      try asked.apply(yamlFile: config)
    }
    for assignment in overrides { try asked.set(assignment: assignment) }
    if let first = try asked.resumeConflicts(with: runConfig).first {
      throw conflict(
        config != nil ? "--config/--set" : "--set", "\(first.key)=\(first.now)",
        "\(first.key) = \(first.recorded)")
    }
    var resumed = runConfig
    resumed.recompute = asked.recompute
    return resumed
  }

  private func report(_ s: TuneSummary) throws {
    if json {
      let d = try JSONSerialization.data(withJSONObject: s.json, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    } else {
      print(
        String(
          format:
            "%@: test top-1 %.4f top-5 %.4f mean per-class %.4f (best epoch %d), %d trainable "
            + "parameters", s.method, s.test.top1, s.test.top5, s.test.meanPerClass, s.bestEpoch,
          s.trainableParameters))
      if let voted = s.testVoted {
        print(
          String(
            format: "with %d votes: test top-1 %.4f mean per-class %.4f", s.votes, voted.top1,
            voted.meanPerClass))
      }
    }
  }
}
