import Foundation
import GraftTensor

/// What an interrupted `graft pretrain` run (images or points) left in its last committed
/// checkpoint, read back and applied: the model's and the optimizer's tensors are loaded, and
/// `metrics.jsonl` is rewritten to the epochs the checkpoint covers.
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
    try AtomicFile.write(
      Data(lines.map { $0 + "\n" }.joined().utf8), to: out.appendingPathComponent("metrics.jsonl"))
  }
}
