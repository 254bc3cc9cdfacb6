import ArgumentParser
import Foundation
import GraftTasks

/// `graft methods`: every tuning method, its options and defaults, and the other config keys.
struct Methods: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List the tuning methods, their method.* options and the other config keys.")

  @OptionGroup var jsonFlag: JSONFlag
  var json: Bool { jsonFlag.json }

  @Option(
    help: ArgumentHelp(
      "Count each method's trainable parameters on this timm architecture (random weights).",
      valueName: "arch"))
  var countOn: String?

  @Option(help: "Classes of the head for --count-on.")
  var classes = 100

  /// The listing as text.
  static func listing() throws -> String {
    var lines: [String] = ["Methods (--method NAME; options as --set method.KEY=VALUE):", ""]
    for d in MethodRegistry.all {
      let recipe = try TuneConfig.preset(for: d.name)
      lines.append("  \(d.name): \(d.summary)")
      lines.append(
        "    recipe: \(recipe.optimizer) lr \(recipe.lr) weight_decay \(recipe.weightDecay) "
          + "\(recipe.schedule) warm-up \(recipe.warmupEpochs) of \(recipe.epochs) epochs")
      lines.append(
        "    grid (graft sweep): "
          + (try TuneConfig.defaultGrid(for: d.name)).map {
            "\($0.key) \($0.values.joined(separator: ","))"
          }.joined(separator: " × "))
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
    if let countOn {
      try count(on: countOn)
      return
    }
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

  /// Trainable parameters of every method (default options) on a random-weight `arch`.
  func count(on arch: String) throws {
    var config = try TimmArchitecture(arch).config
    config.numClasses = 0
    var rng = RandomGenerator(seed: 0)
    let backbone = try VisionTransformer(config: config, generator: &rng)
    var rows: [[String: Any]] = []
    for d in MethodRegistry.all {
      let method = try MethodRegistry.make(
        d.name, backbone: backbone, classes: classes, generator: &rng)
      rows.append([
        "method": d.name, "trainable_parameters": method.trainableCount,
        "backbone_parameters": method.backboneCount,
      ])
    }
    if json {
      let data = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys])
      print(String(decoding: data, as: UTF8.self))
      return
    }
    print("\(arch), \(classes) classes")
    for r in rows {
      let n = r["trainable_parameters"] as! Int
      let m = r["backbone_parameters"] as! Int
      print(
        pad(r["method"] as! String, 14) + pad("\(n)", 11, right: true)
          + pad(String(format: "%.3f%%", 100 * Double(n) / Double(m)), 10, right: true))
    }
  }
}
