import Foundation
import GraftTasks

// The timing loop every benchmark shares: one warm-up call, then the median of timed calls.

/// Median wall time in seconds of `repeats` calls of `body` (at least one), after one warm-up
/// call whose time is not counted.
public func medianSeconds(_ repeats: Int, _ body: () -> Void) -> Double {
  body()
  var times: [Double] = []
  for _ in 0..<Swift.max(repeats, 1) {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
  }
  times.sort()
  return times[times.count / 2]
}

/// Peak resident set size of this process so far, MiB.
public func peakRSSMiB() -> Double { Double(peakResidentBytes()) / 1_048_576 }

/// Starts the peak counters again from what is resident now: the kernel's high-water RSS
/// (`/proc/self/clear_refs`, which `getrusage` reads) and the tensor storage peak.
func resetPeakMemory() {
  try? Data("5".utf8).write(to: URL(fileURLWithPath: "/proc/self/clear_refs"))
  StorageStats.resetPeak()
}
