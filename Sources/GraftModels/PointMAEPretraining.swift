import Foundation

/// Point-MAE's masked autoencoder (`Point_MAE` in the official `models/Point_MAE.py`) around a
/// `PointMAE` encoder: the groups of a cloud, a random `maskRatio` of them hidden, the encoder on
/// the visible ones (their tokens plus the position of their centres before every block, then
/// the final norm), a light decoder on [visible tokens, one `mask_token` per hidden group] with
/// its own position MLP of every centre, and a prediction head (a 1×1 convolution, D → 3·S) that
/// rebuilds each hidden group's S points relative to its centre; the loss is Chamfer-L2 between
/// the rebuilt and the true hidden groups (`PointOps.chamferDistanceL2`).
///
/// Init as the official code: the encoder's (`MaskTransformer._init_weights`: trunc-normal 0.02
/// Linears and convolutions, zero biases); the decoder blocks' Linears Xavier-uniform with zero
/// biases (`TransformerDecoder._init_weights`); `mask_token` trunc-normal 0.02; the decoder's
/// position MLP and the prediction head PyTorch's default (U(±1/√in)).
///
/// Deviations, for a CPU budget: the mini-PointNet runs on the visible groups only (the official
/// code embeds every group and then drops the hidden ones; only its BatchNorm statistics, taken
/// over the visible groups, differ); no stochastic depth (the official drop path 0.1); the
/// decoder's depth and heads are settings (official 4 and 6).
public final class PointMAEPretraining: Module {
  /// The encoder being pretrained (saved alone afterwards).
  public let encoder: PointMAE
  /// The token standing for every hidden group, [1, 1, D].
  public let maskToken: Tensor
  /// The decoder's position MLP, 3 → 128 → D with GELU.
  public let decoderPosEmbed: Sequential
  /// The decoder blocks.
  public let decoderBlocks: ModuleList<ViTBlock>
  /// The decoder's final LayerNorm.
  public let decoderNorm: LayerNorm
  /// D → 3·S: each hidden group's points.
  public let increaseDim: Linear
  /// Share of the groups hidden from the encoder.
  public let maskRatio: Float

  /// A fresh model: `encoder` of `config` (no head), a decoder of `decoderDepth` blocks with
  /// `decoderHeads` heads.
  public init(
    config: PointMAEConfig, decoderDepth: Int, decoderHeads: Int, maskRatio: Float,
    generator: inout RandomGenerator
  ) throws {
    precondition(config.numClasses == 0, "pretraining builds an encoder without a head")
    guard decoderDepth >= 1, decoderHeads >= 1, config.transDim % decoderHeads == 0 else {
      throw ConfigError(
        "decoder depth \(decoderDepth) and heads \(decoderHeads) must be positive, heads "
          + "dividing trans_dim \(config.transDim)")
    }
    guard maskRatio > 0, maskRatio < 1, Int(maskRatio * Float(config.numGroup)) >= 1,
      Int(maskRatio * Float(config.numGroup)) < config.numGroup
    else {
      throw ConfigError(
        "mask ratio \(maskRatio) must hide at least one of the \(config.numGroup) groups and "
          + "leave one visible")
    }
    let d = config.transDim
    encoder = try PointMAE(config: config, generator: &generator)
    maskToken = Tensor.truncatedNormal([1, 1, d], std: 0.02, generator: &generator)
    decoderPosEmbed = Sequential([
      Linear(3, 128, generator: &generator), Activation.gelu, Linear(128, d, generator: &generator),
    ])
    var blockConfig = config.blockConfig
    blockConfig.numHeads = decoderHeads
    let source = ParameterSource(generator: generator)
    decoderBlocks = ModuleList(
      (0..<decoderDepth).map { i in
        ViTBlock(index: i, config: blockConfig, source: source.scoped(String(i)))
      })
    generator = source.generator
    // Xavier-uniform Linears with zero biases, as `TransformerDecoder._init_weights`.
    for block in decoderBlocks {
      for linear in [block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2] {
        let bound = (6 / Float(linear.inFeatures + linear.outFeatures)).squareRoot()
        linear.weight.assign(
          Tensor.rand(linear.weight.shape, low: -bound, high: bound, generator: &generator))
        linear.bias?.assign(Tensor.zeros(linear.bias!.shape))
      }
    }
    decoderNorm = LayerNorm(d, eps: blockConfig.normEps)
    increaseDim = Linear(d, 3 * config.groupSize, generator: &generator)
    self.maskRatio = maskRatio
    super.init()
    registerModule("MAE_encoder", encoder)
    registerParameter("mask_token", maskToken)
    registerModule("decoder_pos_embed", decoderPosEmbed)
    let decoder = Module()
    decoder.registerModule("blocks", decoderBlocks)
    decoder.registerModule("norm", decoderNorm)
    registerModule("MAE_decoder", decoder)
    registerModule("increase_dim", increaseDim)
  }

  /// Groups hidden per cloud: `int(mask_ratio · G)`, as the official `_mask_center_rand`.
  public var hiddenGroups: Int { Int(maskRatio * Float(encoder.config.numGroup)) }

  /// The Chamfer-L2 reconstruction loss of `points` [B, N, 3] with a random mask per cloud
  /// drawn from `generator` (`hiddenGroups` groups hidden, uniformly without replacement).
  public func loss(_ points: Tensor, generator: inout RandomGenerator) -> Tensor {
    let groups = encoder.group(points)
    let (b, g, s) = (points.shape[0], encoder.config.numGroup, encoder.config.groupSize)
    let m = hiddenGroups
    var visible: [Int32] = []
    var hidden: [Int32] = []
    for _ in 0..<b {
      let order = generator.permutation(g)
      hidden += order.prefix(m).sorted().map { Int32($0) }
      visible += order.dropFirst(m).sorted().map { Int32($0) }
    }
    let visibleIndices = IndexTensor(shape: [b, g - m], values: visible)
    let hiddenIndices = IndexTensor(shape: [b, m], values: hidden)
    return reconstructionLoss(groups, visible: visibleIndices, hidden: hiddenIndices, size: s)
  }

  /// The loss for given visible and hidden group indices [B, V] and [B, M].
  func reconstructionLoss(
    _ groups: PointGroups, visible: IndexTensor, hidden: IndexTensor, size s: Int
  ) -> Tensor {
    let (b, m) = (hidden.shape[0], hidden.shape[1])
    let v = visible.shape[1]
    let d = encoder.config.transDim
    let centresVisible = PointOps.gather(groups.centres, visible)
    let centresHidden = PointOps.gather(groups.centres, hidden)
    var x = encoder.encoder(PointOps.gather(groups.neighbourhoods, visible))
    let positions = encoder.posEmbed(centresVisible)
    for block in encoder.blocks.blocks { x = block(x + positions) }
    x = encoder.norm(x)
    var y = Tensor.concat([x, maskToken.broadcast(to: [b, m, d])], axis: 1)
    let decoderPositions = Tensor.concat(
      [decoderPosEmbed(centresVisible), decoderPosEmbed(centresHidden)], axis: 1)
    for block in decoderBlocks { y = block(y + decoderPositions) }
    y = decoderNorm(y.narrow(1, start: v, length: m))
    let rebuilt = increaseDim(y).reshaped([b * m, s, 3])
    let truth = PointOps.gather(groups.neighbourhoods, hidden).reshaped([b * m, s, 3])
    return PointOps.chamferDistanceL2(rebuilt, truth)
  }
}
