/// A file, folder or name that cannot be read, written or used as asked: the loaders' and
/// writers' error when the problem needs no more structure than the path and a sentence.
///
/// Readers whose callers branch on what went wrong keep their own error types with a `kind`
/// (`SafetensorsError`, `MappedFileError`, …); every one of them also names the file.
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file, folder or name concerned (`<inputs>` for an argument list).
  public var path: String
  /// The problem, in words (may span several lines).
  public var message: String

  /// Makes an error about `path`.
  public init(path: String, message: String) {
    self.path = path
    self.message = message
  }

  /// `path: message`.
  public var description: String { "\(path): \(message)" }
}
