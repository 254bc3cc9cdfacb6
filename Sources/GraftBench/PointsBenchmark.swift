import Foundation
import GraftTasks

/// `graft bench points`: Point-MAE inference and full fine-tuning on point clouds, and the
/// geometry ops under it (farthest point sampling, kNN, grouping), each configuration measured in
/// its own process so its peak RSS is its own.
///
/// The model is Point-MAE-small as `Tools/bench_points_torch.py` builds it from the official code:
/// trans_dim 384, depth 12, 6 heads, 64 groups of 32 points, 1,024-point clouds, a 40-class
/// `cls_head_finetune`, random weights, random normal clouds.
public enum PointsBenchmark {
  /// What a model row measures.
  public enum Mode: String, CaseIterable, Sendable, Codable {
    /// Eval forward (grouping included) under `withNoGrad`.
    case inference
    /// One full fine-tuning step in training mode: forward, cross-entropy, backward, AdamW.
    case trainFull = "train_full"
  }

  /// Graft's side of one model row.
  public struct Measurement: Codable, Sendable {
    /// Clouds per second (batch / median step time).
    public var cloudsPerSecond: Double
    /// Peak resident set size of the process, MiB (model build included).
    public var peakRSSMiB: Double
    /// Peak bytes of live tensor storage, MiB.
    public var peakTensorMiB: Double
    /// Most bytes the tape held for backward during a step, MiB (0 for inference).
    public var tapeMiB: Double

    enum CodingKeys: String, CodingKey {
      case cloudsPerSecond = "graft_clouds_s"
      case peakRSSMiB = "graft_peak_rss_mib"
      case peakTensorMiB = "graft_peak_tensor_mib"
      case tapeMiB = "graft_tape_mib"
    }
  }

  /// One geometry op timed alone: its name (shared with the PyTorch script) and median time.
  public struct OpTiming: Codable, Sendable, Equatable {
    /// `fps_b32_1024_64`, `fps_1_100k_2048`, `knn_b32_64x1024_k32` or `group_b32_1024_64x32`.
    public var name: String
    /// Median milliseconds per call.
    public var milliseconds: Double

    enum CodingKeys: String, CodingKey {
      case name
      case milliseconds = "ms"
    }
  }

  /// Point-MAE-small (the official defaults) with a `classes`-way head.
  public static func smallConfig(classes: Int = 40) -> PointMAEConfig {
    var config = PointMAEConfig()
    config.numClasses = classes
    return config
  }

  /// Forward FLOPs (2 per multiply-add) of one cloud through `config`, counting the GEMMs: the
  /// mini-PointNet on every grouped point, the position MLP, the blocks (qkv, attention,
  /// projection, MLP) and the classifier. Grouping (FPS, kNN) is left out.
  public static func forwardFLOPs(_ config: PointMAEConfig) -> Double {
    let w = PointMAEConfig.encoderWidths
    let g = Double(config.numGroup)
    let points = g * Double(config.groupSize)
    let d = Double(config.transDim)
    let perPoint =
      3 * Double(w.first) + Double(w.first * w.second) + Double(2 * w.second * w.third)
      + Double(w.third) * d
    let hidden = Double(PointMAEConfig.positionHidden)
    let position = g * (3 * hidden + hidden * d)
    let n = g + 1
    let perBlock =
      n * d * 3 * d  // qkv
      + 2 * n * n * d  // q·kᵀ and p·v
      + n * d * d  // proj
      + 2 * n * d * Double(config.mlpHidden)  // fc1, fc2
    let h = Double(PointMAEConfig.headHidden)
    let head =
      config.numClasses > 0 ? 2 * d * h + h * h + h * Double(config.numClasses) : 0
    return 2 * (points * perPoint + position + Double(config.depth) * perBlock + head)
  }

  /// Builds Point-MAE of `config` with random weights and times `mode` at `batch` random normal
  /// clouds of `config.npoints` points: one warm-up step, then the median of `iterations`.
  ///
  /// Training is the official fine-tuning step: training mode (BatchNorm on batch statistics,
  /// head dropout), cross-entropy on fixed random labels, backward, AdamW at lr 5e-4 with weight
  /// decay 0.05 on everything but 1-d tensors, biases, norms and tokens.
  public static func measure(
    config: PointMAEConfig, batch: Int, mode: Mode, iterations: Int = 3, seed: UInt64 = 0
  ) throws -> Measurement {
    var rng = RandomGenerator(seed: seed)
    let model = try PointMAE(config: config, generator: &rng)
    let points = Tensor.randn([batch, config.npoints, 3], generator: &rng)
    var tapeBytes = 0
    let step: () -> Void
    switch mode {
    case .inference:
      model.eval()
      step = { _ = withNoGrad { model(points) } }
    case .trainFull:
      model.train()
      let classes = Swift.max(config.numClasses, 1)
      let labels = (0..<batch).map { _ in rng.nextInt(below: classes) }
      let optimizer = AdamW(
        groups: ParameterGroup.defaultGroups(
          named: model.namedParameters(), lr: 5e-4, weightDecay: 0.05))
      step = {
        let base = TapeStats.savedBytes
        let loss = model(points).crossEntropy(targets: labels)
        tapeBytes = Swift.max(tapeBytes, TapeStats.savedBytes - base)
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
      }
    }
    let seconds = medianSeconds(iterations, step)
    return Measurement(
      cloudsPerSecond: Double(batch) / seconds, peakRSSMiB: peakRSSMiB(),
      peakTensorMiB: Double(StorageStats.peakBytes) / 1_048_576,
      tapeMiB: Double(tapeBytes) / 1_048_576)
  }

  /// Times the geometry ops alone, on the shapes the PyTorch script uses: FPS 1,024 → 64 on 32
  /// clouds, FPS 100,000 → 2,048 on one cloud (one timed call after a 16-pick warm-up, unless
  /// `largeCount` says otherwise), kNN of the 64 FPS centres among each cloud's 1,024 points
  /// (k = 32), and Point-MAE's whole grouping. FPS skips points near the origin, as Point-MAE's.
  /// `largePoints` sizes the one large cloud (100,000; tests use fewer).
  public static func measureOps(
    iterations: Int = 5, largePoints: Int = 100_000, largeCount: Int = 2048, seed: UInt64 = 0
  ) -> [OpTiming] {
    var rng = RandomGenerator(seed: seed)
    let clouds = Tensor.randn([32, 1024, 3], generator: &rng)
    let large = Tensor.randn([largePoints, 3], generator: &rng)
    let centres = PointOps.gather(
      clouds, PointOps.farthestPointSample(clouds, count: 64, skipNearOrigin: true))
    func time(_ name: String, repeats: Int, _ body: () -> Void) -> OpTiming {
      OpTiming(name: name, milliseconds: 1000 * medianSeconds(repeats, body))
    }
    let largeName = largePoints == 100_000 ? "100k" : "\(largePoints)"
    return withNoGrad {
      [
        time("fps_b32_1024_64", repeats: iterations) {
          _ = PointOps.farthestPointSample(clouds, count: 64, skipNearOrigin: true)
        },
        {
          // A short warm-up run rather than a whole extra call.
          _ = PointOps.farthestPointSample(large, count: 16, skipNearOrigin: true)
          let start = DispatchTime.now().uptimeNanoseconds
          _ = PointOps.farthestPointSample(large, count: largeCount, skipNearOrigin: true)
          let ms = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-6
          return OpTiming(name: "fps_1_\(largeName)_\(largeCount)", milliseconds: ms)
        }(),
        time("knn_b32_64x1024_k32", repeats: iterations) {
          _ = PointOps.knn(query: centres, points: clouds, k: 32)
        },
        time("group_b32_1024_64x32", repeats: iterations) {
          _ = PointOps.group(clouds, groups: 64, size: 32, skipNearOrigin: true)
        },
      ]
    }
  }

  /// The CPU as /proc/cpuinfo names it (`model name`, `cpu family`), or "unknown".
  public static var cpuDescription: String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
      return "unknown"
    }
    func field(_ key: String) -> String? {
      for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2 && parts[0].trimmingCharacters(in: .whitespaces) == key {
          return parts[1].trimmingCharacters(in: .whitespaces)
        }
      }
      return nil
    }
    guard let model = field("model name") else { return "unknown" }
    return field("cpu family").map { "\(model) (family \($0))" } ?? model
  }
}
