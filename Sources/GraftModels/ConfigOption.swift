import Foundation

// Settings declared once: a configuration is a plain struct whose properties hold typed values
// (the property's initial value is the default), and one table of `ConfigOption`s gives each
// setting its key, its help text and the key path it reads and writes. Parsing (`--set`, YAML),
// writing back (`tune_config.yaml`, `adapter_config.json`), listing (`graft methods`) and error
// messages all come from that table.

/// A value a setting can hold, read from and written as text.
public protocol OptionValue: Sendable, Equatable {
  /// The value `text` stands for, or nil.
  init?(optionText text: String)
  /// The value as text that `init(optionText:)` reads back to an equal value.
  var optionText: String { get }
  /// What a valid text looks like, for errors ("an integer").
  static var expectation: String { get }
}

extension Int: OptionValue {
  /// An integer in decimal.
  public init?(optionText text: String) { self.init(text) }
  /// Decimal digits.
  public var optionText: String { String(self) }
  /// "an integer".
  public static var expectation: String { "an integer" }
}

extension UInt64: OptionValue {
  /// A non-negative integer in decimal.
  public init?(optionText text: String) { self.init(text) }
  /// Decimal digits.
  public var optionText: String { String(self) }
  /// "a non-negative integer".
  public static var expectation: String { "a non-negative integer" }
}

extension Float: OptionValue {
  /// A finite decimal or scientific number.
  public init?(optionText text: String) {
    guard let v = Float(text), v.isFinite else { return nil }
    self = v
  }
  /// Swift's shortest round-tripping form (`0.001`, `8.0`).
  public var optionText: String { "\(self)" }
  /// "a number".
  public static var expectation: String { "a number" }
}

extension Double: OptionValue {
  /// A finite decimal or scientific number.
  public init?(optionText text: String) {
    guard let v = Double(text), v.isFinite else { return nil }
    self = v
  }
  /// Swift's shortest round-tripping form.
  public var optionText: String { "\(self)" }
  /// "a number".
  public static var expectation: String { "a number" }
}

extension Bool: OptionValue {
  /// `true` or `false`, any case.
  public init?(optionText text: String) { self.init(text.lowercased()) }
  /// `true` or `false`.
  public var optionText: String { String(self) }
  /// "true or false".
  public static var expectation: String { "true or false" }
}

extension String: OptionValue {
  /// Any text.
  public init?(optionText text: String) { self = text }
  /// Itself.
  public var optionText: String { self }
  /// "text".
  public static var expectation: String { "text" }
}

extension Array: OptionValue where Element: OptionValue {
  /// Comma-separated elements (YAML lists arrive joined by commas); blanks are skipped.
  public init?(optionText text: String) {
    var out: [Element] = []
    for part in text.split(separator: ",") {
      let item = part.trimmingCharacters(in: .whitespaces)
      if item.isEmpty { continue }
      guard let v = Element(optionText: item) else { return nil }
      out.append(v)
    }
    self = out
  }
  /// The elements joined by commas.
  public var optionText: String { map(\.optionText).joined(separator: ",") }
  /// "a comma-separated list of …".
  public static var expectation: String { "a comma-separated list of \(Element.expectation)s" }
}

/// A closed set of names (`enum Kind: String, CaseIterable, OptionValue`) reads and writes its
/// raw values.
extension OptionValue where Self: RawRepresentable & CaseIterable, RawValue == String {
  /// One of the raw values.
  public init?(optionText text: String) { self.init(rawValue: text) }
  /// The raw value.
  public var optionText: String { rawValue }
  /// "a or b", "one of a, b, c".
  public static var expectation: String {
    let names = allCases.map(\.rawValue)
    return names.count == 2
      ? "\(names[0]) or \(names[1])" : "one of \(names.joined(separator: ", "))"
  }
}

/// One setting of a configuration `Root`: its key, help text and typed property.
public struct ConfigOption<Root>: @unchecked Sendable {
  /// The key (`rank`, `optim.lr`).
  public let key: String
  /// What the setting does, for listings.
  public let help: String
  private let read: (Root) -> String
  private let write: (inout Root, String, String) throws -> Void

  /// The setting `key` stored at `path`; `valid`, when given, restricts the values and
  /// `expectation` then says what is valid ("an integer ≥ 1").
  public init<Value: OptionValue>(
    _ key: String, _ path: WritableKeyPath<Root, Value>, _ help: String,
    expectation: String? = nil, valid: ((Value) -> Bool)? = nil
  ) {
    self.key = key
    self.help = help
    read = { $0[keyPath: path].optionText }
    write = { root, text, shownKey in
      let trimmed = text.trimmingCharacters(in: .whitespaces)
      guard let v = Value(optionText: trimmed), valid?(v) ?? true else {
        throw ConfigError(
          "\(shownKey) = '\(trimmed)' is not \(expectation ?? Value.expectation)")
      }
      root[keyPath: path] = v
    }
  }

  /// An integer setting of at least `minimum`.
  public static func int(
    _ key: String, _ path: WritableKeyPath<Root, Int>, atLeast minimum: Int, _ help: String
  ) -> ConfigOption {
    ConfigOption(key, path, help, expectation: "an integer ≥ \(minimum)") { $0 >= minimum }
  }

  /// An integer setting within `range`: sizes get an upper bound too, so that a typo (an extra
  /// zero or three) is an error naming the key instead of an allocation that cannot succeed.
  public static func int(
    _ key: String, _ path: WritableKeyPath<Root, Int>, in range: ClosedRange<Int>, _ help: String
  ) -> ConfigOption {
    ConfigOption(
      key, path, help, expectation: "an integer in \(range.lowerBound)...\(range.upperBound)"
    ) { range.contains($0) }
  }

  /// A real setting within `range`.
  public static func float(
    _ key: String, _ path: WritableKeyPath<Root, Float>, in range: ClosedRange<Float>,
    _ help: String
  ) -> ConfigOption {
    ConfigOption(
      key, path, help, expectation: "a number in \(range.lowerBound)...\(range.upperBound)"
    ) { range.contains($0) }
  }

  /// This setting on the `Root` found at `path` of a larger configuration (an option table
  /// that includes another's options).
  public func lifted<Outer>(_ path: WritableKeyPath<Outer, Root>) -> ConfigOption<Outer> {
    let (read, write) = (self.read, self.write)
    return ConfigOption<Outer>(
      key: key, help: help, read: { read($0[keyPath: path]) },
      write: { outer, text, shown in try write(&outer[keyPath: path], text, shown) })
  }

  private init(
    key: String, help: String, read: @escaping (Root) -> String,
    write: @escaping (inout Root, String, String) throws -> Void
  ) {
    self.key = key
    self.help = help
    self.read = read
    self.write = write
  }

  /// The setting's value in `root`, as text.
  public func text(of root: Root) -> String { read(root) }

  /// Sets the setting in `root` from `text`; a value that does not parse or is not valid throws
  /// a `ConfigError` naming `shownKey` (the key as the user wrote it, `method.rank`).
  public func set(_ root: inout Root, from text: String, shownKey: String? = nil) throws {
    try write(&root, text, shownKey ?? key)
  }
}

/// A configuration whose settings are a table of `ConfigOption`s.
public protocol OptionTable {
  /// Every setting, in listing order.
  static var options: [ConfigOption<Self>] { get }
}

extension OptionTable {
  /// The setting `key`, if there is one.
  public static func option(_ key: String) -> ConfigOption<Self>? {
    options.first { $0.key == key }
  }

  /// Every setting's key and value as text, in listing order.
  public var optionValues: [(key: String, value: String)] {
    Self.options.map { ($0.key, $0.text(of: self)) }
  }

  /// Sets `key` to `value` (`--set`); an unknown key (the message lists the known ones) and a
  /// bad value throw `ConfigError`.
  public mutating func set(_ key: String, _ value: String) throws {
    guard let option = Self.option(key) else {
      throw ConfigError(
        "unknown key '\(key)' (keys: \(Self.options.map(\.key).joined(separator: ", ")))")
    }
    try option.set(&self, from: value)
  }
}

/// A value that may be left for the program to choose (`auto`).
public enum AutoOr<Value: OptionValue>: OptionValue {
  /// The program chooses.
  case auto
  /// This value.
  case value(Value)

  /// `auto`, or a value.
  public init?(optionText text: String) {
    if text == "auto" {
      self = .auto
    } else if let v = Value(optionText: text) {
      self = .value(v)
    } else {
      return nil
    }
  }
  /// `auto` or the value's text.
  public var optionText: String {
    switch self {
    case .auto: "auto"
    case .value(let v): v.optionText
    }
  }
  /// "auto or …".
  public static var expectation: String { "auto or \(Value.expectation)" }
}

extension OptimizerKind: OptionValue {}
extension ScheduleKind: OptionValue {}
