import Foundation

/// Where `graft data prepare` keeps prepared datasets: `$GRAFT_DATA_HOME`, else
/// `~/.cache/graft`.
public enum DataHome {
  /// The data home folder.
  public static func url() -> URL {
    if let home = ProcessInfo.processInfo.environment["GRAFT_DATA_HOME"], !home.isEmpty {
      return URL(fileURLWithPath: home)
    }
    return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/graft")
  }

  /// The folder of dataset `name` in the data home.
  public static func folder(_ name: String) -> URL { url().appendingPathComponent(name) }
}
