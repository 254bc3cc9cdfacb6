import Synchronization

/// Live byte counters: how much tensor memory is allocated, and how much the autodiff tape keeps
/// alive for backward. Tests use the tape counter to prove a frozen backbone holds no activations.
public enum StorageStats {
  static let live = Atomic<Int>(0)
  static let peak = Atomic<Int>(0)

  static func allocated(bytes: Int) {
    let now = live.add(bytes, ordering: .relaxed).newValue
    var seen = peak.load(ordering: .relaxed)
    while now > seen {
      let (exchanged, original) = peak.compareExchange(
        expected: seen, desired: now, ordering: .relaxed)
      if exchanged { break }
      seen = original
    }
  }

  static func freed(bytes: Int) { live.subtract(bytes, ordering: .relaxed) }

  /// Bytes of tensor storage allocated by Graft and not yet freed.
  public static var liveBytes: Int { live.load(ordering: .relaxed) }
  /// The largest `liveBytes` seen since the last `resetPeak()`.
  public static var peakBytes: Int { peak.load(ordering: .relaxed) }
  /// Restarts peak tracking from the current live figure.
  public static func resetPeak() { peak.store(live.load(ordering: .relaxed), ordering: .relaxed) }
}

/// Bytes held by recorded backward nodes (their saved tensors), summed over the live tape.
public enum TapeStats {
  static let saved = Atomic<Int>(0)
  static let nodes = Atomic<Int>(0)

  /// Bytes of tensors saved for backward by nodes that are still alive.
  public static var savedBytes: Int { saved.load(ordering: .relaxed) }
  /// Number of backward nodes alive.
  public static var liveNodes: Int { nodes.load(ordering: .relaxed) }
}
