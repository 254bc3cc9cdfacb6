/// Graft's release version.
public enum GraftVersion {
  /// Semantic version string printed by `graft --version`.
  public static let string = "0.1.0"
}
