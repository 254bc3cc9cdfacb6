import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A `graft` started by another `graft` (a sweep's runs, a benchmark's measurements) ends when
/// the process that started it is gone. Ctrl-C reaches the whole process group, but a sweep
/// killed on its own (`kill -9`, an out-of-memory kill, a scheduler's time limit) left its
/// running `graft tune` to train on for hours, holding the run's lock, with nobody to read its
/// result. The parent names itself in `GRAFT_PARENT_PID`; the child checks once a second that
/// it is still its parent and stops as Ctrl-C would stop it: every file it writes is written
/// to a temporary name and renamed, so nothing it already wrote is lost and a later
/// `--resume` goes on from its last checkpoint.
enum ParentWatch {
  /// The environment variable that carries the parent's process id.
  static let variable = "GRAFT_PARENT_PID"

  /// This process's environment with its own id under `variable`: for a child `graft`.
  static func childEnvironment(
    _ base: [String: String] = ProcessInfo.processInfo.environment
  ) -> [String: String] {
    var environment = base
    environment[variable] = String(getpid())
    return environment
  }

  /// Reads and removes `variable` (so this process's own children answer to it, not to its
  /// parent) and, when it names this process's parent, watches that parent from a thread.
  /// A parent that is gone already ends this process at once.
  static func start() {
    guard let value = getenv(variable) else { return }
    let text = String(cString: value)
    unsetenv(variable)
    guard let parent = pid_t(text), parent > 1 else { return }
    if getppid() != parent { endBecauseTheParentIsGone(parent) }
    let watcher = Thread {
      while true {
        sleep(1)
        if getppid() != parent { endBecauseTheParentIsGone(parent) }
      }
    }
    watcher.start()
  }

  private static func endBecauseTheParentIsGone(_ parent: pid_t) -> Never {
    FileHandle.standardError.write(
      Data("graft: the graft that started this one (pid \(parent)) has ended; stopping too\n".utf8))
    // SIGTERM's default action, as a Ctrl-C would end it (no exit handlers run beside the
    // threads that are still training).
    signal(SIGTERM, SIG_DFL)
    kill(getpid(), SIGTERM)
    while true { pause() }
  }
}
