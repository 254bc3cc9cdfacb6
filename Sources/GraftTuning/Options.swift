import Foundation

// Method options (`method.*` keys): each method declares its keys with defaults and help; a
// user's values are checked against them, and the resolved set (defaults filled in) goes into
// the run's config and the checkpoint.

/// One option a method takes.
public struct MethodOption: Sendable, Equatable {
  /// The key, without `method.` (`prompt_length`).
  public var key: String
  /// The default, as text (`"10"`, `"q,v"`).
  public var defaultValue: String
  /// What it does, for `graft methods`.
  public var help: String

  /// An option `key` defaulting to `defaultValue`.
  public init(_ key: String, _ defaultValue: String, _ help: String) {
    self.key = key
    self.defaultValue = defaultValue
    self.help = help
  }
}

/// A method's option values, every declared key present (defaults filled in), read with typed
/// accessors that throw a `TuningError` naming the key and value.
public struct MethodOptions: Sendable, Equatable {
  /// The method the options belong to.
  public var method: String
  /// Every key's value as text.
  public private(set) var values: [String: String]

  /// Checks `given` against `declared`: an unknown key throws, listing the known ones; missing
  /// keys take their defaults.
  public init(method: String, declared: [MethodOption], given: [String: String]) throws {
    let known = Set(declared.map(\.key))
    if let bad = given.keys.sorted().first(where: { !known.contains($0) }) {
      let list = declared.map(\.key).sorted()
      throw TuningError(
        "method '\(method)' has no option '\(bad)'"
          + (list.isEmpty ? " (it takes none)" : " (options: \(list.joined(separator: ", ")))"))
    }
    self.method = method
    var values: [String: String] = [:]
    for option in declared { values[option.key] = given[option.key] ?? option.defaultValue }
    self.values = values
  }

  private func raw(_ key: String) -> String {
    guard let v = values[key] else { preconditionFailure("option '\(key)' is not declared") }
    return v
  }

  private func bad(_ key: String, _ what: String) -> TuningError {
    TuningError("method.\(key) = '\(raw(key))' is not \(what)")
  }

  /// An integer option.
  public func int(_ key: String, atLeast minimum: Int = Int.min) throws -> Int {
    guard let v = Int(raw(key).trimmingCharacters(in: .whitespaces)), v >= minimum else {
      throw bad(key, minimum == Int.min ? "an integer" : "an integer ≥ \(minimum)")
    }
    return v
  }

  /// A real option within `range`.
  public func float(
    _ key: String,
    in range: ClosedRange<Float> = -Float.greatestFiniteMagnitude...Float.greatestFiniteMagnitude
  ) throws -> Float {
    guard let v = Float(raw(key).trimmingCharacters(in: .whitespaces)), v.isFinite,
      range.contains(v)
    else { throw bad(key, "a number in \(range.lowerBound)...\(range.upperBound)") }
    return v
  }

  /// A comma-separated list option (YAML lists arrive joined by commas).
  public func list(_ key: String) -> [String] {
    raw(key).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty }
  }
}
