import Foundation

/// What the registry knows of a method: its command-line name, a one-line summary, its options
/// and how to build it.
public struct MethodDescriptor: Sendable {
  /// The name `--method` takes.
  public var name: String
  /// One line for `graft methods`.
  public var summary: String
  /// The `method.*` keys it takes.
  public var options: [MethodOption]
  /// Builds the method on `backbone` for `classes` classes; draws its initial values from
  /// `generator`.
  public var make:
    @Sendable (VisionTransformer, Int, MethodOptions, inout RandomGenerator) throws
      -> TuningMethod
}

/// Every method by name.
public enum MethodRegistry {
  /// The methods, in the order `graft methods` lists them.
  public static let all: [MethodDescriptor] = [
    LinearProbe.descriptor, FullFineTuning.descriptor, BitFit.descriptor, LNTuning.descriptor,
    VisualPromptTuning.shallowDescriptor, VisualPromptTuning.deepDescriptor, LoRA.descriptor,
    AdaptFormer.descriptor, MomentProbing.descriptor, MomentProbing.plusDescriptor,
    LadderSideTuning.descriptor, HierarchicalSideTuning.descriptor, UniPT.descriptor,
  ]

  /// The names `--method` accepts.
  public static var names: [String] { all.map(\.name) }

  /// The method named `name`, or a `TuningError` listing the known names.
  public static func descriptor(_ name: String) throws -> MethodDescriptor {
    guard let d = all.first(where: { $0.name == name }) else {
      throw TuningError(
        "unknown method '\(name)' (known: \(names.joined(separator: ", ")))")
    }
    return d
  }

  /// Builds method `name` on `backbone` with the `given` option values (unknown keys throw).
  public static func make(
    _ name: String, backbone: VisionTransformer, classes: Int,
    options given: [String: String] = [:],
    generator: inout RandomGenerator
  ) throws -> TuningMethod {
    let d = try descriptor(name)
    guard classes >= 1 else { throw TuningError("the head needs at least 1 class, got \(classes)") }
    let options = try MethodOptions(method: name, declared: d.options, given: given)
    return try d.make(backbone, classes, options, &generator)
  }
}
