import Foundation

/// Visual Prompt Tuning (Jia et al., ECCV 2022; `vpt-shallow`, `vpt-deep`).
///
/// `prompt_length` learned tokens are inserted after the backbone's prefix tokens (class,
/// distillation, registers), without position embedding. Shallow: once, before block 0. Deep:
/// before every block, replacing the previous block's prompt rows with that block's own. The
/// prompt rows are reported to the pass (`recordInsertion`), so average pooling leaves them out.
///
/// As the reference code: prompts are drawn from U(±v), v = √(6 / (F + prompt_dim)), F the
/// backbone's `embeddingFanIn` (C·ph·pw for a ViT patch; prompt_dim is the projection width, or
/// D without one); an optional `project` learns them
/// in a smaller width through a Linear (kaiming-normal fan-out, zero bias); `prompt_dropout`
/// applies to the prompts; the head is kaiming-normal (fan-out) with the bias
/// −log((1 − 0.01) / 0.01).
///
/// Tensors: `vpt.prompt_embeddings` [1, p, P], `vpt.deep_prompt_embeddings` [L − 1, p, P] (deep),
/// `vpt.prompt_proj.weight/bias` (with `project`), `vpt.head.weight/bias`.
public final class VisualPromptTuning: TuningMethod {
  /// The options both variants take. Recipe: SGD momentum 0.9, wd 1e-4, cosine, warm-up 2,
  /// lr 0.25 at the default batch of 32. VPT tunes the lr per task on the validation split from
  /// a grid of base rates {50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05} scaled by batch/256;
  /// 0.25 here is a base rate of 2.0, chosen on Graft-1k mnist's validation split (val 70.0%
  /// against 65.5% at 0.1, 68.0% at 0.3125 and underfitting at 0.03125, the base default 0.25
  /// scaled to batch 32).
  public struct Config: MethodConfig {
    /// Prompt tokens per layer (p).
    public var promptLength = 10
    /// Dropout on the prompts while training.
    public var promptDropout: Float = 0
    /// Learn prompts in this width and project to D (0: off).
    public var project = 0

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int("prompt_length", \.promptLength, in: 1...4096, "prompt tokens per layer (p)"),
      .float(
        "prompt_dropout", \.promptDropout, in: 0...0.99, "dropout on the prompts while training"),
      .int(
        "project", \.project, in: 0...16384,
        "learn prompts in this width and project to D (0: off)"),
    ]
    /// SGD, lr 0.25 (batch 32), wd 1e-4, warm-up 2, 40 epochs for both depths (`TuneConfig.epochs`).
    public static let recipe = Recipe(
      .sgd, lr: 0.25, weightDecay: 1e-4, warmupEpochs: 2, epochs: 40)
  }

  /// The registry entry of `vpt-shallow`.
  public static let shallowDescriptor = MethodDescriptor(
    name: "vpt-shallow", summary: "prompt tokens before block 0 and a new head",
    config: Config.self, requires: .tokenInsertion
  ) { backbone, classes, config, generator in
    VisualPromptTuning(
      deep: false, backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// The registry entry of `vpt-deep`.
  public static let deepDescriptor = MethodDescriptor(
    name: "vpt-deep", summary: "fresh prompt tokens before every block and a new head",
    config: Config.self, requires: .tokenInsertion
  ) { backbone, classes, config, generator in
    VisualPromptTuning(
      deep: true, backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// Whether every block gets its own prompts.
  public let deep: Bool
  /// Prompts per layer.
  public let promptLength: Int
  /// Dropout probability on the prompts.
  public let promptDropout: Float
  /// The first layer's prompts, [1, p, P].
  public let promptEmbeddings: Tensor
  /// The prompts of blocks 1…L−1, [L − 1, p, P] (deep only).
  public let deepPromptEmbeddings: Tensor?
  /// P → D projection, when `project` > 0.
  public let promptProj: Linear?

  /// A VPT method on `backbone`.
  public init(
    deep: Bool, backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) {
    let p = config.promptLength
    let dropout = config.promptDropout
    let project = config.project
    let d = backbone.width
    let width = project > 0 ? project : d
    let bound = (6 / Float(backbone.embeddingFanIn + width)).squareRoot()
    promptEmbeddings = Tensor.rand([1, p, width], low: -bound, high: bound, generator: &generator)
    deepPromptEmbeddings =
      deep && backbone.depth > 1
      ? Tensor.rand(
        [backbone.depth - 1, p, width], low: -bound, high: bound, generator: &generator) : nil
    if project > 0 {
      // kaiming_normal_(mode="fan_out"): std √(2 / out_features).
      promptProj = Linear(
        weight: Tensor.randn(
          [d, project], std: (2 / Float(d)).squareRoot(), generator: &generator),
        bias: Tensor.zeros([d]))
    } else {
      promptProj = nil
    }
    let head = Linear(
      weight: Tensor.randn(
        [classes, backbone.featureWidth], std: (2 / Float(classes)).squareRoot(),
        generator: &generator),
      bias: Tensor.full([classes], -Float(log((1 - 0.01) / 0.01))))
    self.deep = deep
    promptLength = p
    promptDropout = dropout
    super.init(
      name: deep ? "vpt-deep" : "vpt-shallow", prefix: "vpt", backbone: backbone,
      classes: classes, head: head, options: config.resolved, generator: generator)
    registerParameter("prompt_embeddings", promptEmbeddings)
    if let deepPromptEmbeddings {
      registerParameter("deep_prompt_embeddings", deepPromptEmbeddings)
    }
    if let promptProj { registerModule("prompt_proj", promptProj) }
    finishSetUp()
  }

  /// The sequence before block 0 and, for the deep variant, before every block.
  public override var attachPoints: AttachPoints { deep ? [.tokens, .beforeBlock] : .tokens }

  /// Layer `layer`'s prompts, projected and dropped out, broadcast to [B, p, D].
  private func prompts(layer: Int, batch: Int) -> Tensor {
    var p =
      layer == 0
      ? promptEmbeddings.reshaped([promptLength, promptEmbeddings.shape[2]])
      : deepPromptEmbeddings!.narrow(0, start: layer - 1, length: 1)
        .reshaped([promptLength, promptEmbeddings.shape[2]])
    if let promptProj { p = promptProj(p) }
    p = p.dropout(p: promptDropout, training: isTraining, generator: &generator)
    return p.unsqueezed(0).broadcast(to: [batch, promptLength, backbone.width])
  }

  /// Inserts the first prompts after the prefix tokens.
  public override func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor {
    let k = backbone.prefixTokens
    let n = x.shape[1]
    pass.recordInsertion(promptLength, at: k)
    return joinRows(
      x, keep: 0..<k, prompts(layer: 0, batch: x.shape[0]), then: k..<n)
  }

  /// Deep: replaces the prompt rows with block `index`'s prompts.
  public override func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    guard deep, index > 0 else { return x }
    let k = backbone.prefixTokens
    let rest = k + promptLength
    return joinRows(
      x, keep: 0..<k, prompts(layer: index, batch: x.shape[0]), then: rest..<x.shape[1])
  }

  /// Rows `keep` of `x`, then `middle`, then rows `then` of `x` (empty parts left out).
  private func joinRows(_ x: Tensor, keep: Range<Int>, _ middle: Tensor, then: Range<Int>)
    -> Tensor
  {
    var parts: [Tensor] = []
    if !keep.isEmpty { parts.append(x.narrow(1, start: keep.lowerBound, length: keep.count)) }
    parts.append(middle)
    if !then.isEmpty { parts.append(x.narrow(1, start: then.lowerBound, length: then.count)) }
    return parts.count == 1 ? middle : Tensor.concat(parts, axis: 1)
  }
}
