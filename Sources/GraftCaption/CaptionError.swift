import Foundation

/// What goes wrong building, training or loading a captioner, named so callers (and tests) can
/// tell the cases apart.
public struct CaptionError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The kinds of failure.
  public enum Kind: String, Sendable, Equatable {
    /// The decoder folder is missing or lacks a file it needs.
    case missingDecoder
    /// The image backbone does not take images or gives no patch grid.
    case unsupportedBackbone
    /// An adapter folder was trained on another image backbone.
    case backboneMismatch
    /// An adapter folder was trained on another decoder (weights, config or tokenizer).
    case decoderMismatch
    /// The visual prefix and the longest caption need more positions than the decoder has.
    case sequenceTooLong
    /// The clip set gives nothing to train or evaluate on.
    case noData
    /// A run folder is missing a file or holds something Graft cannot read.
    case badAdapter
  }

  /// The kind.
  public let kind: Kind
  /// The problem, in words.
  public let message: String

  /// An error of `kind`.
  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  /// The message.
  public var description: String { message }
}
