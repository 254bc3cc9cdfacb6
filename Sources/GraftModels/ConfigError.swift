import Foundation

/// A setting is wrong: a method option, a run's configuration key, or a method that does not fit
/// the backbone it is asked to attach to. The message names the key or the requirement and says
/// why.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The problem, in words.
  public var message: String
  /// Wraps `message`.
  public init(_ message: String) { self.message = message }
  /// The message.
  public var description: String { message }
}
