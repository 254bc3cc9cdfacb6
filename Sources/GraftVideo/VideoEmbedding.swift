import Foundation
import GraftData
import GraftModels
import GraftTensor

/// The library side of `graft embed --frames`: videos to preprocessed frames, frame tokens and
/// PLLaVA-pooled tokens with a frozen image backbone.
public enum VideoEmbedding {
  /// What `run` wrote.
  public struct Summary {
    /// The output file.
    public var output: URL
    /// Shape of `frames`, [B, T, 3, H, W].
    public var framesShape: [Int]
    /// Shape of `tokens`, [B, T, h, w, D].
    public var tokensShape: [Int]
    /// Shape of `pooled`, [B, t, h', w', D].
    public var pooledShape: [Int]
    /// Decoding warnings, each naming its file.
    public var warnings: [String]
  }

  /// PLLaVA's pooling for a T-frame clip on an h×w grid when none is given: time kept, each
  /// spatial side halved (rounded up), as its released (16, 12, 12) on 16 frames of 24×24.
  public static func defaultPool(frames: Int, rows: Int, columns: Int) -> (Int, Int, Int) {
    (frames, (rows + 1) / 2, (columns + 1) / 2)
  }

  /// Loads the image model `model`, samples `frames` frames of each video with `sampling`,
  /// encodes `batchSize` videos at a time (all their frames as one batch through the backbone;
  /// the videos of a batch are decoded in parallel), and writes to `output` atomically:
  /// `frames` [B, T, 3, H, W] (preprocessed pixels), `tokens` [B, T, h, w, D] (block `layer`,
  /// prefix dropped), `pooled` [B, t, h', w', D] (`AdaptiveAvgPool3d` to `pool`, default
  /// `defaultPool`), `indices` [B, T] I64 (the frames taken), with metadata naming the model,
  /// the layer, the pool, the sampling and the inputs.
  public static func run(
    model reference: String, videos: [URL], frames: Int, layer: Int = -2,
    pool: (Int, Int, Int)? = nil, sampling: FrameSampling = .pllava, batchSize: Int = 8,
    output: URL, progress: ((Int, Int) -> Void)? = nil
  ) throws -> Summary {
    guard !videos.isEmpty, frames >= 1, batchSize >= 1 else {
      throw VideoError(
        .invalidArgument, path: output.path,
        message: "need videos, --frames ≥ 1 and a batch size ≥ 1")
    }
    let loaded = try ModelLoader.load(reference)
    guard let config = loaded.preprocessing else {
      throw FileError(
        path: loaded.source.path,
        message: "the model takes \(loaded.model.config.inChans)-channel input, not RGB frames")
    }
    let encoder = try FrameEncoder(
      backbone: loaded.model, transform: EvalTransform(config: config), layer: layer)
    var pixels: [Tensor] = []
    var tokens: [Tensor] = []
    var pooled: [Tensor] = []
    var indices: [Int] = []
    var warnings: [String] = []
    var poolShape = pool
    let batches = stride(from: 0, to: videos.count, by: batchSize).map {
      Array(videos[$0..<min($0 + batchSize, videos.count)])
    }
    var done = 0
    try encodeBatches(batches, encoder: encoder, frames: frames, sampling: sampling, pool: pool) {
      batch in
      for (url, clip) in zip(batch.urls, batch.clips) {
        warnings += clip.warnings.map { "\(url.path): \($0)" }
        indices += clip.indices
      }
      poolShape = batch.poolShape
      pixels.append(batch.pixels)
      tokens.append(batch.tokens)
      pooled.append(batch.pooled)
      done += batch.urls.count
      progress?(done, videos.count)
    }
    let all = (
      Tensor.concat(pixels, axis: 0), Tensor.concat(tokens, axis: 0),
      Tensor.concat(pooled, axis: 0)
    )
    let shape = poolShape!
    let metadata = [
      "graft_version": GraftVersion.string, "model": loaded.name,
      "model_source": loaded.source.path, "layer": String(layer),
      "pool": "\(shape.0),\(shape.1),\(shape.2)", "sampling": sampling.name,
      "frames": String(frames), "inputs": videos.map(\.path).joined(separator: "\n"),
    ]
    try Safetensors.write(
      raw: [
        "frames": .init(f32: all.0), "tokens": .init(f32: all.1), "pooled": .init(f32: all.2),
        "indices": .init(i64: indices, shape: [videos.count, frames]),
      ], metadata: metadata, to: output)
    return Summary(
      output: output, framesShape: all.0.shape, tokensShape: all.1.shape,
      pooledShape: all.2.shape, warnings: warnings)
  }

  /// One encoded batch of clips.
  public struct EncodedBatch {
    /// The videos.
    public var urls: [URL]
    /// Their sampled frames.
    public var clips: [VideoFrames]
    /// Preprocessed pixels [B, T, 3, H, W].
    public var pixels: Tensor
    /// Tokens [B, T, h, w, D].
    public var tokens: Tensor
    /// Pooled tokens [B, t, h', w', D].
    public var pooled: Tensor
    /// The pool used (t, h', w').
    public var poolShape: (Int, Int, Int)
  }

  /// Decodes and encodes `batches` of videos in order, handing each to `body`. While a batch
  /// runs through the backbone, the next one is decoded on a background thread (its videos in
  /// parallel), so decoding overlaps compute. `pool` nil: `defaultPool`.
  public static func encodeBatches(
    _ batches: [[URL]], encoder: FrameEncoder, frames: Int, sampling: FrameSampling,
    pool: (Int, Int, Int)?, _ body: (EncodedBatch) throws -> Void
  ) throws {
    guard !batches.isEmpty else { return }
    let queue = DispatchQueue(label: "graft.video.decode")
    func prefetch(_ urls: [URL]) -> Prefetch {
      let pending = Prefetch()
      queue.async {
        pending.finish(Result { try decodeInParallel(urls, frames: frames, sampling: sampling) })
      }
      return pending
    }
    var next = prefetch(batches[0])
    for (k, urls) in batches.enumerated() {
      let clips = try next.wait()
      if k + 1 < batches.count { next = prefetch(batches[k + 1]) }
      let framePixels = encoder.pixels(clips)
      let frameTokens = encoder.tokens(pixels: framePixels)
      let (rows, columns) = (frameTokens.shape[1], frameTokens.shape[2])
      let shape = pool ?? defaultPool(frames: frames, rows: rows, columns: columns)
      let b = clips.count
      let clipTokens = frameTokens.reshaped([b, frames] + Array(frameTokens.shape.dropFirst()))
      try body(
        EncodedBatch(
          urls: urls, clips: clips,
          pixels: framePixels.reshaped([b, frames] + Array(framePixels.shape.dropFirst())),
          tokens: clipTokens, pooled: AdaptivePooling.averagePool3D(clipTokens, to: shape),
          poolShape: shape))
    }
  }

  /// Samples every video of `urls` on its own thread (one decoding thread each).
  public static func decodeInParallel(
    _ urls: [URL], frames: Int, sampling: FrameSampling
  ) throws -> [VideoFrames] {
    let results = ResultBox(count: urls.count)
    DispatchQueue.concurrentPerform(iterations: urls.count) { i in
      let result = Result {
        try VideoDecoding.sample(urls[i], count: frames, sampling: sampling, threads: 1)
      }
      results.set(i, result)
    }
    return try results.values().map { try $0.get() }
  }
}

/// A batch being decoded in the background.
private final class Prefetch: @unchecked Sendable {
  private var result: Result<[VideoFrames], any Error>?
  private let ready = DispatchSemaphore(value: 0)

  func finish(_ value: Result<[VideoFrames], any Error>) {
    result = value
    ready.signal()
  }

  /// Blocks until the batch is decoded.
  func wait() throws -> [VideoFrames] {
    ready.wait()
    return try result!.get()
  }
}

/// Results written from several threads, each to its own slot.
private final class ResultBox: @unchecked Sendable {
  private var slots: [Result<VideoFrames, any Error>?]
  private let lock = NSLock()

  init(count: Int) { slots = Array(repeating: nil, count: count) }

  func set(_ i: Int, _ value: Result<VideoFrames, any Error>) {
    lock.lock()
    slots[i] = value
    lock.unlock()
  }

  func values() -> [Result<VideoFrames, any Error>] { slots.map { $0! } }
}
