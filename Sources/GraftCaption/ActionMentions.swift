import Foundation

/// Which action of Graft's clip set (`ClipSetGenerator.actions`) a caption names, by phrases
/// per action matched on whole words: the measure of `graft bench captions` that says whether
/// captions follow the video, since BLEU and CIDEr also reward a fluent caption of the wrong
/// action.
///
/// A caption names an action when it holds one of that action's phrases and none of another's.
/// Swap captions may say "moves right as … moves left": with a swap phrase present, the two
/// slide actions do not count against it. Every caption the clip set's grammar writes is
/// named as its own action (`ActionMentionsTests` checks each template).
public enum ActionMentions {
  /// Phrases (lower-case words) per action.
  public static let phrases: [String: [String]] = [
    "slide-left": ["to the left", "moves left", "right to left", "left edge", "leftward"],
    "slide-right": ["to the right", "moves right", "left to right", "right edge", "rightward"],
    "move-up": ["rises", "moves up", "upward", "climbs", "top edge", "to the top"],
    "move-down": ["falls", "moves down", "downward", "sinks", "bottom edge", "toward the bottom"],
    "appear": ["appears", "joined by", "pops up", "shows up"],
    "disappear": ["vanishes", "disappears", "left alone", "is gone"],
    "turn": ["turns", "rotates", "spins", "turned"],
    "swap": [
      "swap", "trade", "switches places", "exchange", "moves right as", "moves left as",
    ],
  ]

  /// The caption's words, lower-cased, split at anything but letters, digits and hyphens.
  static func words(_ caption: String) -> [String] {
    caption.lowercased().split { !($0.isLetter || $0.isNumber || $0 == "-") }.map(String.init)
  }

  /// Every action with a phrase in `caption`, before the single-action rule.
  public static func mentioned(_ caption: String) -> Set<String> {
    let w = words(caption)
    var found = Set<String>()
    for (action, list) in phrases {
      for phrase in list {
        let p = phrase.split(separator: " ").map(String.init)
        guard p.count <= w.count else { continue }
        if (0...(w.count - p.count)).contains(where: { Array(w[$0..<($0 + p.count)]) == p }) {
          found.insert(action)
          break
        }
      }
    }
    if found.contains("swap") { found.subtract(["slide-left", "slide-right"]) }
    return found
  }

  /// The one action `caption` names, or nil for none or several.
  public static func action(of caption: String) -> String? {
    let found = mentioned(caption)
    return found.count == 1 ? found.first : nil
  }

  /// How many of `captions` name the action of the label beside them (pairs without a label
  /// are not counted), and how many were counted.
  public static func named(_ captions: [String], labels: [String?]) -> (named: Int, of: Int) {
    var hits = 0
    var total = 0
    for (c, label) in zip(captions, labels) {
      guard let label else { continue }
      total += 1
      if action(of: c) == label { hits += 1 }
    }
    return (hits, total)
  }
}
