import Foundation

// A method's options as one typed struct (as PEFT's config dataclasses): its properties are the
// options with their defaults, its `options` table names each once with its key and help, and its
// `recipe` is the optimizer setting its paper (scaled to small data) trains it with.

/// The optimizer settings a method is trained with by default.
public struct Recipe: Sendable, Equatable {
  /// SGD with momentum or AdamW.
  public var optimizer: OptimizerKind
  /// Peak learning rate.
  public var lr: Float
  /// Weight decay (never on biases, norms, tokens and prompts).
  public var weightDecay: Float
  /// Linear warm-up, in epochs.
  public var warmupEpochs: Int
  /// Epochs on a task of VTAB-1k's size (1,000 images): enough that the method's validation
  /// curve is flat at the end (the evidence is in `TuneConfig.epochs`'s documentation).
  public var epochs: Int

  /// The settings.
  public init(
    _ optimizer: OptimizerKind, lr: Float, weightDecay: Float, warmupEpochs: Int, epochs: Int = 20
  ) {
    self.optimizer = optimizer
    self.lr = lr
    self.weightDecay = weightDecay
    self.warmupEpochs = warmupEpochs
    self.epochs = epochs
  }

  /// The learning rates `graft sweep` tries by default: the recipe's rate, one step of VPT's
  /// grid (roughly ×2.5: 0.1, 0.25, 0.5, 1, 2.5, …) below it and two above, as text. VPT and
  /// V-PETL Bench search wider grids (VPT: ten rates × four decays) on full VTAB-1k budgets;
  /// four rates around a recipe already tuned for small data keep a CPU sweep to eight runs a
  /// seed. The second step up is there because on Graft-1k's MNIST task, with one step either
  /// side, all four methods measured (linear, vpt-deep, lora, full) chose the largest rate: the
  /// optimum may lie beyond it, and a grid whose edge wins cannot tell.
  public var lrGrid: [String] {
    [0.4, 1, 2.5, 6.25].map { Self.text(Double(lr) * $0) }
  }

  /// The weight decays `graft sweep` tries by default: none and the recipe's (or VPT's
  /// smallest, 1e-4, when the recipe has none).
  public var weightDecayGrid: [String] {
    ["0", weightDecay > 0 ? Self.text(Double(weightDecay)) : "0.0001"]
  }

  /// A rate as short text (four significant digits: `0.0125`, not `0.012500001`).
  private static func text(_ v: Double) -> String {
    String(format: "%.4g", v)
  }
}

/// One option a method takes, as `graft methods` lists it.
public struct MethodOption: Sendable, Equatable {
  /// The key, without `method.` (`prompt_length`).
  public var key: String
  /// The default, as text (`10`, `q,v`).
  public var defaultValue: String
  /// What it does.
  public var help: String
}

/// A method's options, typed. Conformers are structs whose initial property values are the
/// defaults; `options` names each once.
public protocol MethodConfig: OptionTable, Codable, Equatable, Sendable {
  /// The defaults.
  init()
  /// The method's recipe (see each method's documentation for the evidence behind it).
  static var recipe: Recipe { get }
  /// Checks that need several options at once; throws `ConfigError`.
  func validate() throws
}

extension MethodConfig {
  /// No checks beyond each option's own.
  public func validate() throws {}

  /// The defaults with `given` (key → text, keys without `method.`) applied and validated. An
  /// unknown key throws, listing the known ones, and a bad value names `method.<key>`.
  public static func parse(method: String, given: [String: String]) throws -> Self {
    var config = Self()
    for key in given.keys.sorted() {
      guard let option = option(key) else {
        let list = options.map(\.key).sorted()
        throw ConfigError(
          "method '\(method)' has no option '\(key)'"
            + (list.isEmpty ? " (it takes none)" : " (options: \(list.joined(separator: ", ")))"))
      }
      try option.set(&config, from: given[key]!, shownKey: "method." + key)
    }
    try config.validate()
    return config
  }

  /// Every option's value as text, by key (what run folders record).
  public var resolved: [String: String] {
    Dictionary(uniqueKeysWithValues: optionValues.map { ($0.key, $0.value) })
  }

  /// Every option with its default and help.
  public static var optionList: [MethodOption] {
    let defaults = Self()
    return options.map {
      MethodOption(key: $0.key, defaultValue: $0.text(of: defaults), help: $0.help)
    }
  }

  /// Decodes the options by key from their text values (as `adapter_config.json` stores them).
  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: OptionKey.self)
    var given: [String: String] = [:]
    for key in container.allKeys {
      given[key.stringValue] = try container.decode(String.self, forKey: key)
    }
    self = try Self.parse(method: String(describing: Self.self), given: given)
  }

  /// Encodes every option by key as text.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: OptionKey.self)
    for (key, value) in optionValues { try container.encode(value, forKey: OptionKey(key)) }
  }
}

/// A coding key for any option name.
struct OptionKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(_ name: String) { stringValue = name }
  init?(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}
