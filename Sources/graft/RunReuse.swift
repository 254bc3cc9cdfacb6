import Foundation
import GraftTasks
import GraftTensor

/// Decides whether a run folder that a sweep, the demo or a benchmark finds can stand for the
/// run it would start, so that stopping and calling again reuses finished work and never
/// reports a run trained otherwise under new settings.
///
/// A run is stale (redone) when its `tune_config.yaml` is missing, unreadable or differs from
/// `method`'s preset with the new run's `--set` assignments in a setting that changes results
/// (a changed grid point, choice, recipe or a removed setting counts, `train.recompute` does
/// not); when its `run.json` names other data or another backbone, or records another
/// `DataFingerprint` of the data (or none: a run from before fingerprints), or its
/// `adapter_config.json` other backbone weights (a dataset prepared again in place, a model
/// folder trained again in place, keep their names); or when it started from another
/// `--init-from` folder, other contents of it, or another `--fresh-head`.
final class RunReuse {
  /// Each backbone reference's weights hash (nil: it could not be read), read once.
  private var hashes: [String: String?] = [:]
  /// Each data reference's `DataFingerprint` (nil: none), read once.
  private var fingerprints: [String: String?] = [:]

  /// The weights hash of the backbone `reference` names (the `TuneBackbone.weightsHash` a run
  /// records), or nil when it cannot be loaded: a new run would fail on it anyway, and a
  /// finished run is not thrown away for that.
  func weightsHash(of reference: String) -> String? {
    if let known = hashes[reference] { return known }
    let hash = try? TuneBackbone.load(reference).weightsHash
    hashes[reference] = hash
    return hash
  }

  /// The `DataFingerprint` of the data `reference` names (nil: none), read once.
  func fingerprint(of reference: String) -> String? {
    if let known = fingerprints[reference] { return known }
    let fingerprint = DataFingerprint.of(reference)
    fingerprints[reference] = fingerprint
    return fingerprint
  }

  /// Whether the run in `dir` (finished or interrupted) was trained otherwise than a new run
  /// with these arguments would be (see the type's documentation).
  func isStale(
    _ dir: URL, method: String, settings: [String], backbone: String, data: String,
    initFrom: String? = nil, freshHead: Bool = false
  ) -> Bool {
    let url = dir.appendingPathComponent("tune_config.yaml")
    guard let yaml = try? String(contentsOf: url, encoding: .utf8) else { return true }
    do {
      var stored = TuneConfig(method: method)
      try stored.apply(yaml: yaml, source: url.path)
      var wanted = try TuneConfig.preset(for: method)
      for s in settings { try wanted.set(assignment: s) }
      guard try wanted.resumeConflicts(with: stored).isEmpty else { return true }
    } catch {
      return true
    }
    let run = try? MappedFile.contents(of: dir.appendingPathComponent("run.json"))
    let object = run.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
    guard object?["data"] as? String == data,
      object?["backbone"] as? String == TuneBackbone.recordedReference(backbone)
    else { return true }
    if let fingerprint = fingerprint(of: data),
      object?["data_fingerprint"] as? String != fingerprint
    {
      return true
    }
    if let hash = weightsHash(of: backbone) {
      let adapter = try? MappedFile.contents(
        of: dir.appendingPathComponent(AdapterCheckpoint.configFile))
      let config = adapter.flatMap { try? JSONSerialization.jsonObject(with: $0) }
      guard (config as? [String: Any])?["base_model_hash"] as? String == hash else { return true }
    }
    guard object?["init_from"] as? String == initFrom else { return true }
    guard let initFrom else { return false }
    return object?["fresh_head"] as? Bool != freshHead
      || object?["init_from_hash"] as? String
        != (try? AdapterCheckpoint.tensorsHash(URL(fileURLWithPath: initFrom)))
  }
}
