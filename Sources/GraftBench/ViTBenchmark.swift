import Foundation
import GraftTasks

/// A benchmark that cannot run as asked, with the reason.
public struct BenchmarkError: Error, CustomStringConvertible, Sendable {
  /// What cannot run, and why.
  public let description: String
  /// An error with its message.
  public init(_ description: String) { self.description = description }
}

/// One configuration of `graft bench vit`, measured in its own process so its peak RSS is its own.
public enum ViTBenchmark {
  /// What a row measures.
  public enum Mode: String, CaseIterable, Sendable, Codable {
    /// Eval forward under `withNoGrad`.
    case inference
    /// One full fine-tuning step: forward, cross-entropy, backward, AdamW update.
    case trainFull = "train_full"
  }

  /// Graft's side of one row.
  public struct Measurement: Codable, Sendable {
    /// Images per second (batch / median step time).
    public var imagesPerSecond: Double
    /// Peak resident set size of the process, MiB.
    public var peakRSSMiB: Double
    /// Peak bytes of live tensor storage, MiB (what RSS would be with no allocator overhead).
    public var peakTensorMiB: Double
    /// Bytes the tape held for backward at the end of a training forward pass, MiB (0 for
    /// inference).
    public var tapeMiB: Double

    enum CodingKeys: String, CodingKey {
      case imagesPerSecond = "graft_img_s"
      case peakRSSMiB = "graft_peak_rss_mib"
      case peakTensorMiB = "graft_peak_tensor_mib"
      case tapeMiB = "graft_tape_mib"
    }
  }

  /// Forward FLOPs (2 per multiply-add) of one image through `config` at its image size,
  /// counting the GEMMs (patch embedding, qkv, attention, projection, MLP, head).
  public static func forwardFLOPs(_ config: ViTConfig) -> Double {
    let d = Double(config.embedDim)
    let patches = Double(config.gridSize.height * config.gridSize.width)
    let n = patches + Double(config.prefixTokens)
    let patchDim = Double(config.inChans * config.patchSize.height * config.patchSize.width)
    let hidden = Double(config.mlpHidden)
    let perBlock =
      2 * n * d * 3 * d  // qkv
      + 2 * 2 * n * n * d  // q·kᵀ and p·v
      + 2 * n * d * d  // proj
      + 2 * 2 * n * d * hidden  // fc1, fc2
    return 2 * patches * patchDim * d + Double(config.depth) * perBlock
      + 2 * d * Double(config.numClasses)
  }

  /// Builds `architecture` (a timm name) with random weights and times `iterations` steps of
  /// `mode` at `batch` images after one warm-up step; returns the median rate and the peak RSS.
  ///
  /// With `precision` bf16 or int8 (inference only: full fine-tuning has no frozen weight) the
  /// weights are written to a safetensors file and mapped back, as a checkpoint is loaded, and
  /// every matrix gets its BF16 (s8) copy, so the peak RSS is what such a backbone costs.
  public static func measure(
    architecture: String, batch: Int, mode: Mode, precision: BackbonePrecision = .fp32,
    iterations: Int = 3, seed: UInt64 = 0
  ) throws -> Measurement {
    let config = try TimmArchitecture(architecture).config
    var rng = RandomGenerator(seed: seed)
    let model: VisionTransformer
    if precision != .fp32 {
      guard mode == .inference else {
        throw BenchmarkError(
          "\(precision.rawValue) rows measure inference; full fine-tuning trains every weight")
      }
      model = try mappedRandomModel(config: config, generator: &rng)
      model.freeze()
      let (ran, note) = applyPrecision(precision, to: model)
      if ran != precision { throw BenchmarkError(note ?? precision.rawValue) }
    } else {
      model = try VisionTransformer(config: config, generator: &rng)
    }
    let pixels = Tensor.randn(
      [batch, config.inChans, config.imgSize.height, config.imgSize.width], generator: &rng)
    var tapeBytes = 0
    let step: () -> Void
    switch mode {
    case .inference:
      model.eval()
      step = { _ = withNoGrad { model(pixels) } }
    case .trainFull:
      model.train()
      let labels = (0..<batch).map { _ in rng.nextInt(below: Swift.max(config.numClasses, 1)) }
      let optimizer = AdamW(
        groups: ParameterGroup.defaultGroups(
          named: model.namedParameters(), lr: 1e-4, weightDecay: 0.05))
      step = {
        optimizer.zeroGrad()
        let loss = model(pixels).crossEntropy(targets: labels)
        tapeBytes = Swift.max(tapeBytes, TapeStats.savedBytes)
        loss.backward()
        optimizer.step()
      }
    }
    let seconds = medianSeconds(iterations, step)
    return Measurement(
      imagesPerSecond: Double(batch) / seconds, peakRSSMiB: peakRSSMiB(),
      peakTensorMiB: Double(StorageStats.peakBytes) / 1_048_576,
      tapeMiB: Double(tapeBytes) / 1_048_576)
  }
}

/// A random-weight model of `config` as a checkpoint is loaded: built, written to a temporary
/// safetensors file, dropped, and built again on the file's mapped pages. The process's peak
/// RSS and tensor peak then start again from what is resident, so a row measures the loaded
/// model, not its random initialisation.
func mappedRandomModel(config: ViTConfig, generator: inout RandomGenerator) throws
  -> VisionTransformer
{
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "graft-bench-\(getpid())-\(UUID().uuidString).safetensors")
  try Safetensors.write(
    try VisionTransformer(config: config, generator: &generator).stateDict(), to: url)
  // The mapping outlives the name.
  defer { try? FileManager.default.removeItem(at: url) }
  BufferPool.shared.trim()
  let model = try VisionTransformer(
    config: config, weights: try SafetensorsFile(contentsOf: url).tensors())
  resetPeakMemory()
  return model
}
