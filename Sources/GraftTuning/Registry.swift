import Foundation
import GraftData

/// What the registry knows of a method: its command-line name, a one-line summary, the backbone
/// capabilities it needs, its options and recipe (from its typed config) and how to build it.
public struct MethodDescriptor: Sendable {
  /// The name `--method` takes.
  public var name: String
  /// One line for `graft methods`.
  public var summary: String
  /// What the backbone must offer; `MethodRegistry.make` refuses a backbone without it.
  public var requirements: BackboneCapabilities
  /// The `method.*` keys it takes, with defaults and help.
  public var options: [MethodOption]
  /// The optimizer settings it trains with by default.
  public var recipe: Recipe
  /// True when the method takes point clouds whatever its backbone takes and turns them into
  /// the backbone's input itself (P2P draws them as images): it runs on no image task.
  public var takesPointClouds: Bool
  /// Parses the given option texts into the method's config and builds the method.
  private let build:
    @Sendable (any SequenceBackbone, Int, [String: String], inout RandomGenerator) throws ->
      TuningMethod
  /// Parses the given option texts and returns every option's resolved text.
  private let resolveOptions: @Sendable ([String: String]) throws -> [String: String]
  /// Parses one option's text (key without `method.`), alone.
  private let checkOption: @Sendable (String, String) throws -> Void

  /// A method `name` with options and recipe from `Config`; `make` builds it on a backbone for
  /// a number of classes from a parsed config, drawing initial values from the generator.
  public init<Config: MethodConfig>(
    name: String, summary: String, config: Config.Type,
    requires requirements: BackboneCapabilities = [], takesPointClouds: Bool = false,
    make:
      @escaping @Sendable (any SequenceBackbone, Int, Config, inout RandomGenerator) throws ->
      TuningMethod
  ) {
    self.name = name
    self.summary = summary
    self.requirements = requirements
    self.takesPointClouds = takesPointClouds
    options = Config.optionList
    recipe = Config.recipe
    build = { backbone, classes, given, generator in
      try make(backbone, classes, Config.parse(method: name, given: given), &generator)
    }
    resolveOptions = { given in try Config.parse(method: name, given: given).resolved }
    checkOption = { key, text in
      var config = Config()
      try Config.option(key)?.set(&config, from: text, shownKey: "method." + key)
    }
  }

  /// Checks one option's value on its own (`key` without `method.`): a value that does not
  /// parse or is out of its range throws `ConfigError` naming `method.<key>`. Checks that need
  /// several options wait for `resolve`.
  public func check(option key: String, value: String) throws {
    try checkOption(key, value)
  }

  /// Every option's value with `given` (key → text) applied over the defaults; unknown keys and
  /// bad values throw `ConfigError`.
  public func resolve(_ given: [String: String]) throws -> [String: String] {
    try resolveOptions(given)
  }

  /// Builds the method; the caller has checked the requirements.
  func make(
    backbone: any SequenceBackbone, classes: Int, options: [String: String],
    generator: inout RandomGenerator
  ) throws -> TuningMethod {
    try build(backbone, classes, options, &generator)
  }
}

/// Every method by name.
public enum MethodRegistry {
  /// The methods, in the order `graft methods` lists them.
  public static let all: [MethodDescriptor] = [
    LinearProbe.descriptor, FullFineTuning.descriptor, BitFit.descriptor, LNTuning.descriptor,
    VisualPromptTuning.shallowDescriptor, VisualPromptTuning.deepDescriptor, LoRA.descriptor,
    AdaptFormer.descriptor, MomentProbing.descriptor, MomentProbing.plusDescriptor,
    LadderSideTuning.descriptor, HierarchicalSideTuning.descriptor, UniPT.descriptor,
    IDPT.descriptor, P2P.descriptor,
  ]

  /// The names `--method` accepts.
  public static var names: [String] { all.map(\.name) }

  /// The method named `name`, or a `ConfigError` listing the known names.
  public static func descriptor(_ name: String) throws -> MethodDescriptor {
    guard let d = all.first(where: { $0.name == name }) else {
      throw ConfigError(
        "unknown method '\(name)' (known: \(names.joined(separator: ", ")))")
    }
    return d
  }

  /// Builds method `name` on `backbone` with the `given` option values. Unknown methods and
  /// keys, bad values, and a backbone that lacks a capability the method requires throw
  /// `ConfigError`s that say which.
  public static func make(
    _ name: String, backbone: any SequenceBackbone, classes: Int,
    options given: [String: String] = [:],
    generator: inout RandomGenerator
  ) throws -> TuningMethod {
    let d = try descriptor(name)
    guard (1...DatasetLimits.maxClasses).contains(classes) else {
      throw ConfigError(
        "the head needs 1...\(DatasetLimits.maxClasses) classes, got \(classes) classes")
    }
    let missing = d.requirements.subtracting(backbone.capabilities)
    guard missing.isEmpty else {
      throw ConfigError(
        "method '\(name)' needs a backbone with \(missing) (it requires \(d.requirements)); "
          + "the \(backbone.familyName) backbone offers \(backbone.capabilities)")
    }
    let method = try d.make(
      backbone: backbone, classes: classes, options: given, generator: &generator)
    // A method that hooks inside blocks must have declared the capability that provides them.
    precondition(
      method.attachPoints.isDisjoint(with: .insideBlocks)
        || d.requirements.contains(.blockInternals),
      "\(name) attaches inside blocks but does not require blockInternals")
    let pointInput: Bool
    if case .points = method.taskInput { pointInput = true } else { pointInput = false }
    precondition(
      pointInput == d.takesPointClouds,
      "\(name): its descriptor's takesPointClouds disagrees with its taskInput")
    return method
  }
}
