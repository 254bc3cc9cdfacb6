import Foundation
import GraftTensor

/// What an interrupted `graft pretrain` run (images, points or text) left in its last committed
/// checkpoint, read back and applied: the model's and the optimizer's tensors are loaded, and
/// `metrics.jsonl` is rewritten to the epochs the checkpoint covers. `commit` writes what this
/// reads.
struct PretrainResume {
  /// Epochs already done.
  var epoch: Int
  /// One JSON line per finished epoch.
  var metricLines: [String]
  /// Training seconds so far.
  var seconds: Double
  /// The whole `state.json` object, for the modality's own figures.
  var state: [String: Any]

  /// Reads `folder/state.json` and applies `folder`'s tensors to `model` and `optimizer`; throws
  /// `ConfigError` naming the file when it is missing or unreadable or was written with other
  /// `settings`.
  init(
    folder: URL, settings: String, model: Module, optimizer: any Optimizer, out: URL
  ) throws {
    let stateURL = folder.appendingPathComponent("state.json")
    guard let data = try? MappedFile.contents(of: stateURL),
      let object = try? JSONSerialization.jsonObject(with: data),
      let state = object as? [String: Any],
      let epoch = state["epoch"] as? Int, let lines = state["metrics"] as? [String],
      let stored = state["settings"] as? String, let seconds = state["seconds"] as? Double
    else { throw ConfigError("\(stateURL.path): nothing to resume (missing or unreadable)") }
    guard stored == settings else {
      throw ConfigError("\(stateURL.path): the run was started with other settings")
    }
    (self.epoch, metricLines, self.seconds, self.state) = (epoch, lines, seconds, state)
    _ = try model.loadStateDict(
      SafetensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors")).tensors())
    try optimizer.loadStateDict(
      SafetensorsFile(contentsOf: folder.appendingPathComponent("optimizer.safetensors"))
        .tensors())
    try Self.writeMetrics(lines, out: out)
  }
}

extension PretrainResume {
  /// Commits epoch `epoch` of a `graft pretrain` run to `store` as one unit (`CheckpointStore`):
  /// the model's and the optimizer's tensors and `state.json` (the epoch, `metricLines`,
  /// `settings`, `seconds` and the modality's own `figures`, what `init(folder:…)` reads back);
  /// then rewrites `out/metrics.jsonl` with `metricLines`.
  static func commit(
    epoch: Int, metricLines: [String], settings: String, seconds: Double,
    figures: [String: Any], model: Module, optimizer: any Optimizer, store: CheckpointStore,
    out: URL
  ) throws {
    let state = figures.merging(
      ["epoch": epoch, "metrics": metricLines, "settings": settings, "seconds": seconds]
    ) { _, own in own }
    let stateData = Data(try jsonLine(state).utf8)
    try store.commit(epoch: epoch) { dir in
      try Safetensors.write(model.stateDict(), to: dir.appendingPathComponent("model.safetensors"))
      try Safetensors.write(
        optimizer.stateDict(), to: dir.appendingPathComponent("optimizer.safetensors"))
      try AtomicFile.write(stateData, to: dir.appendingPathComponent("state.json"))
    }
    try writeMetrics(metricLines, out: out)
  }

  /// `out/metrics.jsonl`: one line per finished epoch.
  private static func writeMetrics(_ lines: [String], out: URL) throws {
    try AtomicFile.write(
      Data(lines.map { $0 + "\n" }.joined().utf8), to: out.appendingPathComponent("metrics.jsonl"))
  }
}
