import ArgumentParser
import Foundation
import GraftTasks

/// `graft methods`: every tuning method, its options and defaults, and the other config keys.
struct Methods: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List the tuning methods, their method.* options and the other config keys.")

  @Flag(help: "Print JSON.")
  var json = false

  /// The listing as text.
  static func listing() throws -> String {
    var lines: [String] = ["Methods (--method NAME; options as --set method.KEY=VALUE):", ""]
    for d in MethodRegistry.all {
      let recipe = try TuneConfig.preset(for: d.name)
      lines.append("  \(d.name): \(d.summary)")
      lines.append(
        "    recipe: \(recipe.optimizer) lr \(recipe.lr) weight_decay \(recipe.weightDecay) "
          + "\(recipe.schedule) warm-up \(recipe.warmupEpochs) of \(recipe.epochs) epochs")
      for o in d.options {
        lines.append("    method.\(o.key) (default \(o.defaultValue)): \(o.help)")
      }
      lines.append("")
    }
    lines.append("Other keys (--set KEY=VALUE or a --config YAML file):")
    let defaults = TuneConfig(method: "linear")
    let values = Dictionary(
      uniqueKeysWithValues: try defaults.resolved().map { ($0.key, $0.value) })
    for (key, help) in TuneConfig.keys {
      let d = values[key].map { " (default \($0), or the method's recipe)" } ?? ""
      lines.append("  \(key)\(d): \(help)")
    }
    return lines.joined(separator: "\n")
  }

  func run() throws {
    guard json else {
      print(try Self.listing())
      return
    }
    var out: [[String: Any]] = []
    for d in MethodRegistry.all {
      out.append([
        "name": d.name, "summary": d.summary,
        "options": d.options.map { ["key": $0.key, "default": $0.defaultValue, "help": $0.help] },
      ])
    }
    let data = try JSONSerialization.data(
      withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
  }
}
