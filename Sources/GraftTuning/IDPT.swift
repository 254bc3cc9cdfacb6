import Foundation

/// One EdgeConv of IDPT's prompt generator in feature space: for every token i and its k nearest
/// tokens j (a dynamic graph, recomputed on this layer's input), the edge feature
/// [x_j − x_i, x_i] (2·D) → a 1×1 convolution without bias (a Linear on the last axis, 2·D → D) →
/// BatchNorm over every edge → LeakyReLU(0.2) → max over the k neighbours. The convolution is
/// computed per token and gathered (the same values up to rounding, k times fewer FLOPs).
///
/// Tensors as the official `DGCNNView`'s `convN`: `0.weight` [D, 2·D] (its Conv2d kernel
/// without the 1×1 axes), `1.weight`, `1.bias`, `1.running_mean`, `1.running_var`.
public final class IDPTEdgeConv: Module {
  /// 2·D → D, no bias.
  public let linear: Linear
  /// BatchNorm over D channels.
  public let norm: BatchNorm

  /// A fresh EdgeConv of width `width` (trunc-normal 0.02 weights, BatchNorm ones and zeros).
  public init(width: Int, generator: inout RandomGenerator) {
    linear = Linear(
      weight: Tensor.truncatedNormal([width, 2 * width], std: 0.02, generator: &generator),
      bias: nil)
    norm = BatchNorm(width)
    super.init()
    registerModule("0", linear)
    registerModule("1", norm)
  }

  /// The layer on `x` [B, N, D] with `k` neighbours per token (itself included, as the
  /// official kNN on negative squared distances picks it first) → [B, N, D].
  public func callAsFunction(_ x: Tensor, k: Int) -> Tensor {
    let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2])
    let (neighbours, _) = withNoGrad {
      PointOps.knn(query: x.detached(), points: x.detached(), k: k)
    }
    // W · [x_j − x_i; x_i] = W₁ · x_j + (W₂ − W₁) · x_i (W = [W₁ W₂]): both products are taken
    // per token, then gathered, instead of multiplying all N·k edge rows of width 2·D — k times
    // fewer FLOPs for the same edge features (DGCNN's usual rewrite of its edge convolution).
    let w = linear.weight
    let neighbourWeight = w.narrow(1, start: 0, length: d)
    let centreWeight = w.narrow(1, start: d, length: d) - neighbourWeight
    let fromNeighbour = PointOps.gather(x.linear(weight: neighbourWeight), neighbours)
    let fromCentre = x.linear(weight: centreWeight).unsqueezed(2).broadcast(to: [b, n, k, d])
    let normed = norm((fromNeighbour + fromCentre).reshaped([b * n * k, d]))
    return normed.leakyReLU(slope: 0.2).reshaped([b, n, k, d]).max(axis: 2)
  }
}

/// `idpt`: Instance-aware Dynamic Prompt Tuning (Zha et al., ICCV 2023;
/// zyh16143998882/ICCV23-IDPT, `models/Point_MAE.py` `PointTransformer` with
/// `TransformerPromptEncoderLayerI`, `models/dgcnn.py` `DGCNNView`).
///
/// **Prompt.** Before block `prompt_layer` (default: the last block), the content tokens that
/// block receives (the previous block's output after the prefix rows, [B, N, D]) go through the
/// generator: three `IDPTEdgeConv`s in feature space (k = `k`, each on the previous one's
/// output), their outputs concatenated (3·D) → a 1×1 convolution without bias (3·D → D) →
/// BatchNorm → LeakyReLU(0.2) → max over the tokens: one prompt token [B, 1, D], inserted right
/// after the backbone's prefix tokens (the class token) and kept to the end. Its position is
/// `prompt_pos` [1, 1, D], trunc-normal(0.02) and **never trained** (as the official code: its
/// optimizer selects names containing "cls", which `prompt_pos` does not; the official issue #4
/// discusses it): on a backbone that adds positions before every block (Point-MAE) the pass adds
/// it before each later block as the official loop does; on one that does not (a ViT) it is
/// added to the prompt once.
///
/// **Head** (`head`, the official `cls_type`): the final tokens' features `all` =
/// concat[class token, prompt, max over the content tokens] (3·D, the default), `promptonly` =
/// the prompt (D), `promptcls` = [class token, prompt] (2·D), `pointcls` = [class token, max over
/// content] (2·D); then Linear → 256 → BatchNorm → ReLU → Dropout(0.5) → Linear 256 → 256 →
/// BatchNorm → ReLU → Dropout(0.5) → Linear 256 → classes (`head_fc1`, `head_bn1`, `head_fc2`,
/// `head_bn2`, `head`).
///
/// **Trainable:** the generator, the head, and the backbone's prefix tokens with their own
/// positions (`cls_token`, `cls_pos` on Point-MAE). On Point-MAE-small (D = 384) with 15 classes:
/// 1,696,783 with `all`, 1,500,175 with `promptonly` (the official README's 1.7M).
///
/// **Init** as the official `_init_weights`: Linears and convolutions trunc-normal(0.02), zero
/// biases; BatchNorms ones and zeros.
///
/// Deviations: the official code always inserts the prompt at row 1 (after the class token);
/// here it goes after all prefix tokens (registers, distillation), the same on Point-MAE. kNN
/// ties go to the lower index (the official `topk` leaves them unspecified).
///
/// Tensors: `idpt.generator.conv1/2/3.{0.weight, 1.*}`, `idpt.generator.conv5.{0.weight, 1.*}`,
/// `idpt.prompt_pos` (a state buffer, saved but not trained), `idpt.head_fc1`, `idpt.head_bn1`,
/// `idpt.head_fc2`, `idpt.head_bn2`, `idpt.head`, `idpt.backbone.cls_token`,
/// `idpt.backbone.cls_pos`.
public final class IDPT: TuningMethod {
  /// What the head reads (the official `cls_type`).
  public enum HeadInput: String, CaseIterable, OptionValue {
    /// Class token, prompt and max over the content tokens.
    case all
    /// The prompt alone.
    case promptonly
    /// Class token and prompt.
    case promptcls
    /// Class token and max over the content tokens.
    case pointcls

    /// How many token-wide features the head reads.
    var parts: Int {
      switch self {
      case .all: 3
      case .promptonly: 1
      case .promptcls, .pointcls: 2
      }
    }
  }

  /// IDPT's options. Recipe: AdamW lr 5e-4, wd 0.05, cosine, warm-up 10 of 300 epochs in the
  /// official configs, scaled here to 2 of the default 20 epochs.
  public struct Config: MethodConfig {
    /// The block the prompt is inserted before.
    public var promptLayer = AutoOr<Int>.auto
    /// Neighbours of each token in the generator's graphs.
    public var k = 20
    /// What the head reads.
    public var head = HeadInput.all

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      ConfigOption(
        "prompt_layer", \.promptLayer,
        "block the prompt is inserted before (auto: the last block, as the official configs)"),
      .int("k", \.k, atLeast: 1, "neighbours of each token in the generator's kNN graphs"),
      ConfigOption(
        "head", \.head, "head input: all (class, prompt, max), promptonly, promptcls, pointcls"),
    ]
    /// AdamW, lr 5e-4, wd 0.05, warm-up 2.
    public static let recipe = Recipe(.adamw, lr: 5e-4, weightDecay: 0.05, warmupEpochs: 2)
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "idpt",
    summary: "a prompt generated per instance (EdgeConvs over the tokens) before the last block",
    config: Config.self, requires: .tokenInsertion
  ) { backbone, classes, config, generator in
    try IDPT(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// The block the prompt is inserted before.
  public let promptLayer: Int
  /// Neighbours per token in the generator's graphs.
  public let k: Int
  /// What the head reads.
  public let headInput: HeadInput
  /// The three EdgeConvs.
  public let edgeConvs: [IDPTEdgeConv]
  /// 3·D → D without bias, then BatchNorm (the official `conv5`).
  public let fuse: (linear: Linear, norm: BatchNorm)
  /// The prompt's own position, [1, 1, D] (not trained).
  public let promptPos: Tensor
  /// Head layers before the final `head`.
  public let headFC1: Linear
  /// BatchNorm after `headFC1`.
  public let headBN1: BatchNorm
  /// 256 → 256.
  public let headFC2: Linear
  /// BatchNorm after `headFC2`.
  public let headBN2: BatchNorm

  /// IDPT on `backbone`.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    let d = backbone.width
    let layer: Int
    switch config.promptLayer {
    case .auto: layer = backbone.depth - 1
    case .value(let l): layer = l
    }
    guard (0..<backbone.depth).contains(layer) else {
      throw ConfigError(
        "method.prompt_layer = \(layer) is not a block index in 0...\(backbone.depth - 1)")
    }
    promptLayer = layer
    k = config.k
    headInput = config.head
    func trunc(_ shape: [Int]) -> Tensor {
      Tensor.truncatedNormal(shape, std: 0.02, generator: &generator)
    }
    edgeConvs = (0..<3).map { _ in IDPTEdgeConv(width: d, generator: &generator) }
    fuse = (Linear(weight: trunc([d, 3 * d]), bias: nil), BatchNorm(d))
    promptPos = trunc([1, 1, d])
    headFC1 = Linear(weight: trunc([256, config.head.parts * d]), bias: Tensor.zeros([256]))
    headBN1 = BatchNorm(256)
    headFC2 = Linear(weight: trunc([256, 256]), bias: Tensor.zeros([256]))
    headBN2 = BatchNorm(256)
    let head = Linear(weight: trunc([classes, 256]), bias: Tensor.zeros([classes]))
    super.init(
      name: "idpt", prefix: "idpt", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    let generatorModule = Module()
    for (i, conv) in edgeConvs.enumerated() { generatorModule.registerModule("conv\(i + 1)", conv) }
    let conv5 = Module()
    conv5.registerModule("0", fuse.linear)
    conv5.registerModule("1", fuse.norm)
    generatorModule.registerModule("conv5", conv5)
    registerModule("generator", generatorModule)
    registerBuffer("prompt_pos", promptPos)
    registerModule("head_fc1", headFC1)
    registerModule("head_bn1", headBN1)
    registerModule("head_fc2", headFC2)
    registerModule("head_bn2", headBN2)
    finishSetUp()
  }

  /// The sequence entering each block (the prompt goes in before `prompt_layer`).
  public override var attachPoints: AttachPoints { .beforeBlock }

  /// The backbone's prefix tokens and their positions.
  public override var unfrozenPatterns: [String] { backbone.parameterPatterns(.prefixTokens) }

  /// The prompt token [B, 1, D] for content tokens `tokens` [B, N, D].
  public func prompt(_ tokens: Tensor) -> Tensor {
    precondition(tokens.shape[1] >= 1, "IDPT needs at least one content token")
    let neighbours = Swift.min(k, tokens.shape[1])
    var x = tokens
    var outputs: [Tensor] = []
    for conv in edgeConvs {
      x = conv(x, k: neighbours)
      outputs.append(x)
    }
    let (b, n, d) = (tokens.shape[0], tokens.shape[1], tokens.shape[2])
    let fused = fuse.norm(fuse.linear(Tensor.concat(outputs, axis: 2)).reshaped([b * n, d]))
    return fused.leakyReLU(slope: 0.2).reshaped([b, n, d]).max(axis: 1, keepDims: true)
  }

  /// Inserts the prompt after the prefix tokens before block `prompt_layer`.
  public override func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor {
    guard index == promptLayer else { return x }
    let p = backbone.prefixTokens
    let content = x.narrow(1, start: p, length: x.shape[1] - p)
    var token = prompt(content)
    if pass.embedded.positions == nil {
      token = token + promptPos
      pass.recordInsertion(1, at: p)
    } else {
      pass.recordInsertion(1, at: p, positions: promptPos)
    }
    let parts = [x.narrow(1, start: 0, length: p), token, content]
    return Tensor.concat(parts.filter { $0.shape[1] > 0 }, axis: 1)
  }

  /// The head on the class token, the prompt and the content tokens, as `head` says.
  public override func logits(_ output: BackboneOutput) -> Tensor {
    let t = output.tokens
    let p = backbone.prefixTokens
    func row(_ i: Int) -> Tensor { t.narrow(1, start: i, length: 1).squeezed(1) }
    let content = t.narrow(1, start: p + 1, length: t.shape[1] - p - 1).max(axis: 1)
    let parts: [Tensor]
    switch headInput {
    case .all: parts = [row(0), row(p), content]
    case .promptonly: parts = [row(p)]
    case .promptcls: parts = [row(0), row(p)]
    case .pointcls: parts = [row(0), content]
    }
    var h = parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 1)
    h = headBN1(headFC1(h)).relu().sampleDropout(
      p: 0.5, training: isTraining, generator: &generator)
    h = headBN2(headFC2(h)).relu().sampleDropout(
      p: 0.5, training: isTraining, generator: &generator)
    return head(h)
  }
}
