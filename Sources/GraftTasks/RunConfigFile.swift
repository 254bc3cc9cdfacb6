import Foundation
import GraftTensor
import Yams

/// A run folder's `tune_config.yaml`: every resolved setting, written when the run starts. The
/// run's `run.json` keeps a fingerprint of that text, so that a file emptied, cut short or
/// edited afterwards is an error naming it, not a resumed run that goes on with defaults.
public enum RunConfigFile {
  /// The file's name inside a run folder.
  public static let name = "tune_config.yaml"
  /// The key of the text's fingerprint in `run.json`.
  static let fingerprintKey = "config_fnv1a64"

  /// The fingerprint `run.json` records for the file's `text`.
  static func fingerprint(_ text: String) -> String {
    var hash = ContentHash()
    Array(text.utf8).withUnsafeBytes { hash.update($0) }
    return hash.hex
  }

  /// Writes `config`'s resolved settings to `folder` (atomically); returns the `run.json`
  /// entry that records their fingerprint.
  static func write(_ config: TuneConfig, to folder: URL) throws -> (key: String, value: String) {
    let text = try config.yaml()
    try AtomicFile.write(Data(text.utf8), to: folder.appendingPathComponent(name))
    return (fingerprintKey, fingerprint(text))
  }

  /// The settings of the run in `folder` for `method`. Throws a `ConfigError` naming the file
  /// when it is missing or unreadable, names no method or another one, or is not the text the
  /// run started with (runs from before the fingerprint was recorded are checked for the method
  /// alone).
  public static func read(_ folder: URL, method: String) throws -> TuneConfig {
    let url = folder.appendingPathComponent(name)
    guard let text = try? String(contentsOf: url, encoding: .utf8) else {
      throw ConfigError("\(url.path): missing or unreadable (not a graft tune run folder)")
    }
    let run = folder.appendingPathComponent("run.json")
    if let data = try? MappedFile.contents(of: run),
      let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
      let recorded = object[fingerprintKey] as? String, recorded != fingerprint(text)
    {
      throw ConfigError(
        "\(url.path): not the settings the run started with (\(run.lastPathComponent) records "
          + "another fingerprint): the file was changed or damaged; restore it, or start a new "
          + "run (to change a setting that leaves results alone, resume with --set)")
    }
    let names = ((try? Yams.load(yaml: text)) as? [String: Any])?["method"]
    guard names != nil else {
      throw ConfigError(
        "\(url.path): names no method (the file is empty or damaged, not what graft tune wrote)")
    }
    var config = TuneConfig(method: method)
    try config.apply(yaml: text, source: url.path)
    return config
  }
}
