import Foundation
import GraftCaption
import XCTest

/// Tiny models and clips for the captioner's tests.
enum CaptionFixtures {
  static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  /// A fresh temporary folder, removed after the test.
  static func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-caption-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    return folder
  }

  /// A random ViT: 16 × 16 input, 4 × 4 patches (a 4 × 4 grid), width 16, 2 blocks.
  static func backbone(seed: UInt64 = 1) throws -> TuneBackbone {
    let config = ViTConfig(imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2)
    var g = RandomGenerator(seed: seed)
    return TuneBackbone(
      inMemory: try VisionTransformer(config: config, generator: &g), name: "tiny-vit")
  }

  /// A random GPT-2-layout decoder folder (width 32, 2 blocks, 64 positions) with the fixture
  /// tokenizer, as `transformers` would save one.
  static func decoderFolder(
    in parent: URL, seed: UInt64 = 2, name: String = "decoder", initializerRange: Float = 0.1
  ) throws -> URL {
    let out = parent.appendingPathComponent(name)
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    let json = """
      {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 600,
       "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4, "activation_function":
       "gelu_new", "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": true}
      """
    try Data(json.utf8).write(to: out.appendingPathComponent("config.json"))
    let config = try GPT2Config.read(out.appendingPathComponent("config.json"))
    var g = RandomGenerator(seed: seed)
    let model = try GPT2(config: config, initializerRange: initializerRange, generator: &g)
    try Safetensors.write(
      model.checkpointStateDict(), to: out.appendingPathComponent("model.safetensors"))
    try FileManager.default.copyItem(
      at: folder.appendingPathComponent("tokenizer/tokenizer.json"),
      to: out.appendingPathComponent("tokenizer.json"))
    return out
  }

  /// 28 × 28 shapes standing in for Fashion-MNIST items: a filled square, a ring, a cross.
  static let items: [ClipSetGenerator.Item] = {
    func draw(_ inside: (Int, Int) -> Bool) -> [UInt8] {
      (0..<(28 * 28)).map { inside($0 / 28, $0 % 28) ? 255 : 0 }
    }
    return [
      .init(pixels: draw { r, c in (6..<22).contains(r) && (6..<22).contains(c) }, noun: "square"),
      .init(
        pixels: draw { r, c in
          let d = (r - 14) * (r - 14) + (c - 14) * (c - 14)
          return d < 144 && d > 49
        }, noun: "ring"),
      .init(pixels: draw { r, c in abs(r - 14) < 3 || abs(c - 14) < 3 }, noun: "cross"),
    ]
  }()

  /// One video of `action` (an index into `ClipSetGenerator.actions`).
  static func writeClip(_ index: Int, to url: URL, frames: Int = 8) throws {
    var options = ClipSetGenerator.Options()
    options.size = 48
    options.frames = frames
    options.fps = 8
    let clip = ClipSetGenerator.clip(index, items: items, options: options)
    let writer = try VideoWriter(url: url, width: 48, height: 48, fps: 8)
    for frame in clip.frames { try writer.append(frame) }
    try writer.finish()
  }

  /// A clip set of `perAction` clips of each of the given actions per split, each clip with the
  /// captions of its action. Returns the annotation file.
  static func clipSet(
    in parent: URL, actions: [Int: [String]], train: Int, val: Int, test: Int
  ) throws -> URL {
    let videos = parent.appendingPathComponent("videos")
    try FileManager.default.createDirectory(at: videos, withIntermediateDirectories: true)
    var set = CaptionedClipSet(videos: [], sentences: [])
    var n = 0
    let splits = [("train", train), ("val", val), ("test", test)]
    for (split, count) in splits {
      for round in 0..<count {
        for (action, captions) in actions.sorted(by: { $0.key < $1.key }) {
          // ClipSetGenerator draws action `index % 8`.
          let index = action + 8 * (n + round)
          let id = "clip\(index)"
          try writeClip(index, to: videos.appendingPathComponent(id + ".mp4"))
          set.videos.append(
            .init(
              videoID: id, split: split, label: ClipSetGenerator.actions[action],
              file: "videos/\(id).mp4"))
          for c in captions {
            set.sentences.append(.init(videoID: id, caption: c, sentenceID: set.sentences.count))
          }
        }
      }
      n += count
    }
    let url = parent.appendingPathComponent("annotations.json")
    try JSONEncoder().encode(set).write(to: url)
    return url
  }
}
