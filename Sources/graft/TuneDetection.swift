import ArgumentParser
import Foundation
import GraftDetection
import GraftTasks
import GraftTensor

/// `graft tune --task detection …` (and `--resume DIR` of a detection run): the method as an
/// FCOS detector on its multi-scale features (`DetectionTrainer`).
enum DetectionRoute {
  /// Whether `tune` asks for detection: `--task detection`, or `--resume` of a folder whose
  /// `run.json` says so. Another `--task` than classification or detection is an error.
  static func applies(_ tune: Tune) throws -> Bool {
    if let task = tune.task {
      guard ["classification", "detection"].contains(task) else {
        throw ValidationError("--task \(task): known tasks are classification and detection")
      }
      if task == "detection" { return true }
    }
    if let resume = tune.resume,
      let data = try? Data(
        contentsOf: URL(fileURLWithPath: resume).appendingPathComponent("run.json")),
      let run = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
      run["task"] as? String == "detection"
    {
      if tune.task == "classification" {
        throw ValidationError("--task classification conflicts with the detection run in \(resume)")
      }
      return true
    }
    return false
  }

  static func tune(_ tune: Tune) throws {
    let stderr = FileHandle.standardError
    let log: (String) -> Void = { if !tune.quiet { stderr.write(Data(($0 + "\n").utf8)) } }
    if let resume = tune.resume {
      if tune.initFrom != nil {
        throw ValidationError(
          "--init-from starts a new run; --resume continues one from its checkpoint")
      }
      let folder = URL(fileURLWithPath: resume)
      let runURL = folder.appendingPathComponent("run.json")
      guard let runData = try? MappedFile.contents(of: runURL),
        let run = (try? JSONSerialization.jsonObject(with: runData)) as? [String: Any],
        let backboneRef = run["backbone"] as? String, let dataRef = run["data"] as? String,
        let methodName = run["method"] as? String
      else { throw ValidationError("\(runURL.path): not a run folder to resume") }
      var cfg = try RunConfigFile.read(folder, method: methodName)
      cfg = try tune.checkResumeAgrees(
        method: methodName, backbone: backboneRef, arch: nil, data: dataRef, config: cfg)
      let backbone = try TuneBackbone.load(backboneRef)
      let data = try DetectionTuneData.load(dataRef)
      let trainer = try DetectionTrainer(
        backbone: backbone, config: cfg, categories: data.categories)
      if let s = try trainer.run(
        data: data, folder: folder, dataReference: dataRef, resume: true, log: log)
      {
        try report(s, json: tune.json)
      }
      return
    }
    guard let backboneRef = tune.backbone else {
      throw ValidationError("give --backbone (or --resume DIR)")
    }
    guard let method = tune.method else {
      throw ValidationError("give --method (\(MethodRegistry.names.joined(separator: ", ")))")
    }
    if tune.arch != nil {
      throw ValidationError(
        "--task detection takes a timm model folder or bundled name, not --arch")
    }
    var cfg = try TuneConfig.preset(for: method)
    if let config = tune.config {
      try cfg.apply(yamlFile: config)
    }
    for assignment in tune.overrides { try cfg.set(assignment: assignment) }
    let backbone = try TuneBackbone.load(backboneRef)
    log("backbone \(backbone.architecture) (\(backbone.weightsHash))")
    guard let dataRef = tune.data else { throw ValidationError("give --data") }
    let data = try DetectionTuneData.load(dataRef)
    let trainer = try DetectionTrainer(backbone: backbone, config: cfg, categories: data.categories)
    if let initFrom = tune.initFrom {
      log("starting from " + (try trainer.initialise(from: URL(fileURLWithPath: initFrom))))
    }
    if tune.dryRun {
      let r = trainer.dryRunReport()
      if tune.json {
        let d = try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys])
        print(String(decoding: d, as: UTF8.self))
      } else {
        let n = r["trainable_parameters"] as! Int
        let m = r["backbone_parameters"] as! Int
        print(
          "\(method) (detection): \(n) trainable parameters, backbone \(m) "
            + String(format: "(%.4f%%)", 100 * Double(n) / Double(max(m, 1))))
        print(try cfg.yaml(), terminator: "")
      }
      return
    }
    guard let out = tune.out else { throw ValidationError("give --out DIR for the run folder") }
    let folder = URL(fileURLWithPath: out)
    if Trainer.holdsRun(folder) {
      throw ValidationError("\(out) already holds a run; continue it with --resume \(out)")
    }
    log("data: \(data.description)")
    let reference =
      FileManager.default.fileExists(atPath: dataRef)
      ? URL(fileURLWithPath: dataRef).standardizedFileURL.path : dataRef
    if let s = try trainer.run(data: data, folder: folder, dataReference: reference, log: log) {
      try report(s, json: tune.json)
    }
  }

  static func report(_ s: DetectionSummary, json: Bool) throws {
    if json {
      let d = try JSONSerialization.data(withJSONObject: s.json, options: [.sortedKeys])
      print(String(decoding: d, as: UTF8.self))
    } else {
      let t = s.test.stats
      print(
        String(
          format:
            "%@: test AP %.4f AP50 %.4f AP75 %.4f APs %.4f APm %.4f APl %.4f (best epoch %d), "
            + "%d trainable parameters", s.method, t[0], t[1], t[2], t[3], t[4], t[5],
          s.bestEpoch, s.trainableParameters))
    }
  }
}
