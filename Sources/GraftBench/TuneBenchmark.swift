import Foundation
import GraftTasks

/// One row of `graft bench tune`: the speed and memory of one tuning method's training step,
/// measured in its own process so its peak RSS is its own.
///
/// The step is `Trainer.run`'s: `method(images)` → cross-entropy → backward → (gradient clipping
/// if the recipe sets it) → optimizer step → `zeroGrad`, with the method's recipe optimizer
/// (`TuneConfig.preset(for:)`, built as the trainer builds it). The backbone has random weights
/// (timm's init), the images are random normal (random normal clouds [B, N, 3] for a method
/// that takes point clouds, P2P), the labels fixed random classes. `pointMAESmall` names the
/// point encoder instead of a timm ViT: Point-MAE-small (384 wide, 12 blocks, 64 groups of 32
/// points, 1,024-point clouds) on random normal clouds.
public enum TuneBenchmark {
  /// The name `measure(architecture:…)` takes for Point-MAE-small.
  public static let pointMAESmall = "point_mae_small"

  /// Graft's side of one row.
  public struct Measurement: Codable, Sendable {
    /// The method's registry name.
    public var method: String
    /// Images per second (batch / median step time).
    public var imagesPerSecond: Double
    /// Peak resident set size of the process, MiB (model build included).
    public var peakRSSMiB: Double
    /// Peak bytes of live tensor storage, MiB.
    public var peakTensorMiB: Double
    /// Most bytes the tape held for backward during a step (reached at the end of the forward
    /// pass and loss), MiB.
    public var tapeMiB: Double
    /// Trainable elements of the method.
    public var trainableParameters: Int
    /// IDPT only: the median seconds of its prompt generator's forward and backward alone (the
    /// three EdgeConvs on their kNN graphs over the tokens the prompt layer receives) divided by
    /// the median step's; nil for other methods.
    public var promptGeneratorShare: Double?
    /// The activations the tape keeps at the end of the forward pass and loss, per op (the
    /// method's and the backbone's parameters left out: they exist anyway), largest first.
    public var tapeByOp: [TapeEntry] = []
    /// The sum of `tapeByOp`, MiB: what backward costs beyond the model itself.
    public var activationMiB: Double {
      Double(tapeByOp.reduce(0) { $0 + $1.bytes }) / 1_048_576
    }

    enum CodingKeys: String, CodingKey {
      case method
      case tapeByOp = "graft_tape_by_op"
      case promptGeneratorShare = "prompt_generator_share"
      case imagesPerSecond = "graft_img_s"
      case peakRSSMiB = "graft_peak_rss_mib"
      case peakTensorMiB = "graft_peak_tensor_mib"
      case tapeMiB = "graft_tape_mib"
      case trainableParameters = "trainable_parameters"
    }
  }

  /// Head size used when the architecture has none: timm's default, 1000 (ImageNet).
  public static let defaultClasses = 1000

  /// Builds `architecture` (a timm name) with random weights and times `method`'s training step
  /// at `batch` images, with a head of timm's default size (1000 classes) unless `classes` is
  /// given.
  ///
  /// With `precision` bf16 the frozen backbone's matrices get BF16 copies once the method has
  /// chosen what trains (a ViT's weights are first written to a file and mapped back, as a
  /// checkpoint is loaded, so its peak RSS is what a BF16 backbone costs).
  public static func measure(
    architecture: String, method: String, batch: Int, iterations: Int = 3,
    classes: Int? = nil, precision: BackbonePrecision = .fp32, recompute: BlockRecompute = .none,
    seed: UInt64 = 0
  ) throws -> Measurement {
    if precision == .int8 {
      throw BenchmarkError("int8 is for inference; a training step runs fp32 or bf16")
    }
    if architecture == pointMAESmall {
      var rng = RandomGenerator(seed: seed)
      let config = PointsBenchmark.smallConfig(classes: 0)
      let backbone = try PointMAE(config: config, generator: &rng)
      return try measure(
        backbone: backbone, input: [batch, config.npoints, 3], method: method,
        classes: classes ?? defaultClasses, iterations: iterations, precision: precision,
        recompute: recompute, generator: &rng)
    }
    let config = try TimmArchitecture(architecture).config
    return try measure(
      config: config, method: method, batch: batch, iterations: iterations, classes: classes,
      precision: precision, recompute: recompute, seed: seed)
  }

  /// Times `method`'s training step on a random-weight ViT of `config` at `batch` images: one
  /// warm-up step, then the median of `iterations` timed steps. The backbone is built without
  /// its own head (a method never runs it); the method's head has `classes` outputs
  /// (`config.numClasses`, or 1000 when that is 0, unless given).
  public static func measure(
    config: ViTConfig, method name: String, batch: Int, iterations: Int = 3,
    classes: Int? = nil, precision: BackbonePrecision = .fp32, recompute: BlockRecompute = .none,
    seed: UInt64 = 0
  ) throws -> Measurement {
    var backboneConfig = config
    backboneConfig.numClasses = 0
    let classes = classes ?? (config.numClasses > 0 ? config.numClasses : defaultClasses)
    var rng = RandomGenerator(seed: seed)
    let backbone =
      precision == .bf16
      ? try mappedRandomModel(config: backboneConfig, generator: &rng)
      : try VisionTransformer(config: backboneConfig, generator: &rng)
    return try measure(
      backbone: backbone,
      input: [batch, config.inChans, config.imgSize.height, config.imgSize.width], method: name,
      classes: classes, iterations: iterations, precision: precision, recompute: recompute,
      generator: &rng)
  }

  /// Times `name`'s training step on `backbone` with random normal inputs of shape `input`
  /// ([B, C, H, W] images or [B, N, 3] clouds; a method that draws its own images from clouds,
  /// P2P, gets clouds of its own size).
  static func measure(
    backbone: any SequenceBackbone, input: [Int], method name: String, classes: Int,
    iterations: Int, precision: BackbonePrecision = .fp32, recompute: BlockRecompute = .none,
    generator rng: inout RandomGenerator
  ) throws -> Measurement {
    let batch = input[0]
    let tune = try TuneConfig.preset(for: name)
    let method = try MethodRegistry.make(
      name, backbone: backbone, classes: classes, options: tune.methodOptions, generator: &rng)
    let (ran, note) = applyPrecision(precision, to: backbone)
    if ran != precision { throw BenchmarkError(note ?? precision.rawValue) }
    backbone.setBlockRecompute(recompute)
    method.backboneTrainMode = tune.backboneTrainMode
    method.setTraining(true)
    let optimizer = Trainer.makeOptimizer(for: method, config: tune)
    let inputShape: [Int]
    switch method.taskInput {
    case .backbone: inputShape = input
    case .points(let count): inputShape = [batch, count, 3]
    }
    let images = Tensor.randn(inputShape, generator: &rng)
    let labels = (0..<batch).map { _ in rng.nextInt(below: classes) }

    var tapeBytes = 0
    var tapeByOp: [TapeEntry]?
    let parameters = method.parameters() + backbone.parameters()
    func step() {
      let base = TapeStats.savedBytes
      let logits = method(images)
      let loss = logits.crossEntropy(targets: labels, labelSmoothing: tune.labelSmoothing)
      tapeBytes = Swift.max(tapeBytes, TapeStats.savedBytes - base)
      if tapeByOp == nil { tapeByOp = loss.tapeReport(excluding: parameters) }
      loss.backward()
      if tune.clipGrad > 0 { optimizer.clipGradNorm(maxNorm: tune.clipGrad) }
      optimizer.step()
      optimizer.zeroGrad()
    }
    let seconds = medianSeconds(iterations, step)
    var generatorShare: Double? = nil
    if let idpt = method as? IDPT {
      // The generator alone on tokens of the prompt layer's shape, forward and backward.
      let sequence = withNoGrad { backbone.embed(images).tokens.shape[1] }
      let tokens = Tensor.randn(
        [batch, sequence - backbone.prefixTokens, backbone.width], generator: &rng)
      let generatorSeconds = medianSeconds(iterations) {
        idpt.prompt(tokens).sum().backward()
        optimizer.zeroGrad()
      }
      generatorShare = generatorSeconds / seconds
    }
    return Measurement(
      method: name, imagesPerSecond: Double(batch) / seconds, peakRSSMiB: peakRSSMiB(),
      peakTensorMiB: Double(StorageStats.peakBytes) / 1_048_576,
      tapeMiB: Double(tapeBytes) / 1_048_576, trainableParameters: method.trainableCount,
      promptGeneratorShare: generatorShare, tapeByOp: tapeByOp ?? [])
  }
}
