import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// How long work reports itself: a bar redrawn in place on a terminal, plain log lines when
/// standard error is a file or a pipe, nothing with `--quiet`.
public enum ProgressStyle: Sendable, Equatable {
  /// One line redrawn in place (`\r`), for terminals.
  case bar
  /// A plain line now and then (every `lineInterval` seconds and at the end of each phase).
  case lines
  /// Nothing.
  case quiet

  /// `.bar` when standard error is a terminal, else `.lines`; `.quiet` when `quiet`.
  public static func automatic(quiet: Bool) -> ProgressStyle {
    if quiet { return .quiet }
    return isatty(STDERR_FILENO) == 1 ? .bar : .lines
  }
}

/// Progress of long work (pretraining, tuning, benchmarks, dataset preparation): the phase
/// (`epoch 3/30`), the step within it, the last loss, throughput and the time left over all
/// phases.
///
/// The time left is the mean seconds per step so far times the steps still to go in the whole
/// job, so it needs the job's total step count up front (`totalSteps`).
public final class ProgressReporter {
  /// How reports are shown.
  public let style: ProgressStyle
  /// Seconds between two plain lines in `.lines` style.
  public var lineInterval: Double = 30
  private let write: (String) -> Void
  /// Steps of the whole job (set later by a job that learns it only once started).
  public var totalSteps: Int { didSet { totalSteps = max(totalSteps, 1) } }
  private var doneSteps = 0
  private var phase = ""
  private var phaseSteps = 0
  private var phaseDone = 0
  private let started = Date()
  private var lastLine = Date.distantPast
  private var barShown = false
  private var samples = 0
  private let unit: String

  /// A reporter for a job of `totalSteps` steps, writing to standard error (or `write`);
  /// throughput is shown in `unit`s per second (`img/s`, `clouds/s`).
  public init(
    style: ProgressStyle, totalSteps: Int, unit: String = "img", write: ((String) -> Void)? = nil
  ) {
    self.style = style
    self.unit = unit
    self.totalSteps = max(totalSteps, 1)
    self.write = write ?? { FileHandle.standardError.write(Data($0.utf8)) }
  }

  /// Starts a phase of `steps` steps called `name` (`epoch 3/30`).
  public func beginPhase(_ name: String, steps: Int) {
    phase = name
    phaseSteps = steps
    phaseDone = 0
  }

  /// Adds `steps` steps to the current phase and the whole job (a job that learns of more work
  /// as it goes, as a protocol sweep that widens a grid).
  public func addSteps(_ steps: Int) {
    phaseSteps += steps
    totalSteps += steps
  }

  /// One step done, over `samples` inputs, with the running `loss` if any.
  public func step(samples: Int = 0, loss: Double? = nil) {
    doneSteps += 1
    phaseDone += 1
    self.samples += samples
    switch style {
    case .quiet: return
    case .bar:
      write("\r" + statusLine(loss: loss) + "\u{1B}[K")
      barShown = true
    case .lines:
      if Date().timeIntervalSince(lastLine) >= lineInterval || phaseDone == phaseSteps {
        lastLine = Date()
        write(statusLine(loss: loss) + "\n")
      }
    }
  }

  /// A line that stays (a result, a note), printed above the bar.
  public func log(_ line: String) {
    guard style != .quiet else { return }
    if barShown {
      write("\r\u{1B}[K")
      barShown = false
    }
    write(line + "\n")
  }

  /// Clears the bar at the end of the job.
  public func finish() {
    if barShown { write("\r\u{1B}[K") }
    barShown = false
  }

  /// `epoch 3/30 [#####.....] 120/469 loss 0.4321 812 img/s ETA 4:12`.
  func statusLine(loss: Double?) -> String {
    let elapsed = Date().timeIntervalSince(started)
    var parts: [String] = []
    if !phase.isEmpty { parts.append(phase) }
    if phaseSteps > 0 {
      let width = 20
      let filled = min(width, phaseDone * width / phaseSteps)
      parts.append(
        "[" + String(repeating: "#", count: filled)
          + String(repeating: ".", count: width - filled) + "] \(phaseDone)/\(phaseSteps)")
    }
    if let loss { parts.append(String(format: "loss %.4f", loss)) }
    if samples > 0 && elapsed > 0 {
      parts.append(String(format: "%.1f \(unit)/s", Double(samples) / elapsed))
    }
    let left = Double(totalSteps - doneSteps) * elapsed / Double(max(doneSteps, 1))
    parts.append("ETA " + Self.clock(max(left, 0)))
    return parts.joined(separator: "  ")
  }

  /// `m:ss` or `h:mm:ss`.
  static func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600
      ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
      : String(format: "%d:%02d", s / 60, s % 60)
  }
}
