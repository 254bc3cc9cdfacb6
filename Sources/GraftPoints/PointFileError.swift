/// A malformed, unreadable or unwritable point-cloud or mesh file; the description names the file
/// and the problem (with the line for text formats).
public struct PointFileError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What went wrong; each malformed-file problem has its own kind.
  public enum Kind: String, Sendable, Equatable {
    /// The file does not exist.
    case fileNotFound
    /// The file exists but cannot be read (or is not a regular file).
    case readFailed
    /// Neither the extension nor the first bytes name a format Graft reads.
    case unknownFormat
    /// The header is malformed: an unknown keyword, a missing line, values that contradict
    /// each other.
    case badHeader
    /// Valid, but a variant Graft does not read (binary OFF, 4-D OFF, Fortran-order 3-D arrays, …).
    case unsupported
    /// A required field is absent (`x`, `y` or `z`, a `vertex` element, a `data` dataset).
    case missingField
    /// The data ends before the header's count of points, vertices or faces.
    case truncated
    /// A record holds more or fewer values than the header declares, or data follows the last
    /// declared record.
    case countMismatch
    /// A declared byte size does not match the data (compressed sizes, array sizes, trailing
    /// bytes).
    case sizeMismatch
    /// A face or label refers past the end of what it indexes.
    case indexOutOfRange
    /// A NaN or infinity where the format does not allow one (coordinates outside PCD).
    case nonFiniteValue
    /// A value that does not parse, or is out of its type's range.
    case badValue
    /// The header claims more data than the file can hold or memory can take; refused before
    /// allocating.
    case tooLarge
    /// Compressed or library-encoded data that does not decode.
    case corruptData
    /// A mesh with no surface to sample (no triangles, or all of zero area).
    case noSurface
    /// The cloud or options given to a writer cannot be written in the format.
    case invalidWrite
    /// Writing the file failed (I/O).
    case writeFailed
  }

  /// What went wrong.
  public let kind: Kind
  /// The file concerned (`<memory>` for bytes parsed from memory).
  public let path: String
  /// The problem, in words.
  public let message: String

  /// An error of `kind` about `path`.
  public init(_ kind: Kind, path: String, _ message: String) {
    self.kind = kind
    self.path = path
    self.message = message
  }

  /// `path: message`.
  public var description: String { "\(path): \(message)" }
}
