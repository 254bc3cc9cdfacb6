import Foundation

/// A convolution's tensors with PyTorch's names and shapes: `weight` [O, C, k…] (Conv1d
/// [O, C, 1], Conv2d [O, C, kh, kw]) and an optional `bias` [O], initialised as PyTorch's
/// default (kaiming-uniform with a = √5: U(±1/√fan-in) for both, fan-in = C·k…).
public final class P2PConv: Module {
  /// The kernel, [O, C, k…].
  public let weight: Tensor
  /// The bias, [O], if the convolution has one.
  public let bias: Tensor?

  /// A fresh convolution with kernel shape `shape` ([O, C, k…]).
  public init(_ shape: [Int], bias hasBias: Bool, generator: inout RandomGenerator) {
    let fanIn = shape.dropFirst().reduce(1, *)
    let bound = 1 / Float(fanIn).squareRoot()
    weight = Tensor.rand(shape, low: -bound, high: bound, generator: &generator)
    bias =
      hasBias ? Tensor.rand([shape[0]], low: -bound, high: bound, generator: &generator) : nil
    super.init()
    registerParameter("weight", weight)
    if let bias { registerParameter("bias", bias) }
  }

  /// The kernel as a matrix [O, C·k…], for a 1×1 convolution applied as a Linear on the last
  /// axis.
  var matrix: Tensor { weight.reshaped([weight.shape[0], -1]) }

  /// The 2-D convolution of `x` [B, C, H, W] with zero padding `padding` on every side.
  func conv2d(_ x: Tensor, padding: Int = 0) -> Tensor {
    x.conv2d(weight: weight, bias: bias, padding: (padding, padding))
  }
}

/// timm's ResNet `BasicBlock(width, width)` at stride 1 with no downsampling: conv3×3 (no bias)
/// → BatchNorm → ReLU → conv3×3 (no bias) → BatchNorm, plus the input, → ReLU. Tensors
/// `conv1.weight`, `bn1.*`, `conv2.weight`, `bn2.*`.
public final class P2PBasicBlock: Module {
  /// First 3×3 convolution.
  public let conv1: P2PConv
  /// BatchNorm after `conv1`.
  public let bn1: BatchNorm
  /// Second 3×3 convolution.
  public let conv2: P2PConv
  /// BatchNorm after `conv2`.
  public let bn2: BatchNorm

  /// A block of `width` channels with PyTorch's default initialisation (BatchNorms ones and
  /// zeros), as the official code builds it outside a ResNet.
  public init(width: Int, generator: inout RandomGenerator) {
    conv1 = P2PConv([width, width, 3, 3], bias: false, generator: &generator)
    bn1 = BatchNorm(width)
    conv2 = P2PConv([width, width, 3, 3], bias: false, generator: &generator)
    bn2 = BatchNorm(width)
    super.init()
    registerModule("conv1", conv1)
    registerModule("bn1", bn1)
    registerModule("conv2", conv2)
    registerModule("bn2", bn2)
  }

  /// The block on `x` [B, width, H, W].
  public func callAsFunction(_ x: Tensor) -> Tensor {
    let y = bn1(conv1.conv2d(x, padding: 1)).relu()
    return (bn2(conv2.conv2d(y, padding: 1)) + x).relu()
  }
}

/// P2P's point-to-pixel prompt (the official `ProjEnc`): the point-wise geometry encoder and the
/// geometry-aware colouring. Tensor names and shapes are the official `enc.*` ones.
public final class P2PEncoder: Module {
  /// Conv1d 3 → trans_dim on the coordinates (`input_trans`).
  public let inputTrans: P2PConv
  /// 1×1 Conv2d 2·trans_dim → graph_dim without bias on the edge features (`graph_layer.0`).
  public let graphConv: P2PConv
  /// GroupNorm(4, graph_dim) (`graph_layer.1`).
  public let graphNorm: GroupNorm
  /// Conv1d graph_dim → graph_dim (`proj_layer`).
  public let proj: P2PConv
  /// ResNet BasicBlock on the splatted canvas (`img_block.0`).
  public let block: P2PBasicBlock
  /// 1×1 Conv2d graph_dim → graph_dim (`img_block.1`).
  public let blockConv: P2PConv
  /// 1×1 Conv2d graph_dim → the image's channels (`img_layer`).
  public let imgLayer: P2PConv
  /// Neighbours of each point in the kNN graph (the official `local_size`).
  public let k: Int

  /// A fresh encoder: `transDim` point features, `graphDim` edge and canvas features (a multiple
  /// of 4, for the GroupNorm), `channels` image channels, `k` neighbours.
  public init(
    transDim: Int, graphDim: Int, channels: Int, k: Int, generator: inout RandomGenerator
  ) {
    self.k = k
    inputTrans = P2PConv([transDim, 3, 1], bias: true, generator: &generator)
    graphConv = P2PConv([graphDim, 2 * transDim, 1, 1], bias: false, generator: &generator)
    graphNorm = GroupNorm(groups: 4, channels: graphDim)
    proj = P2PConv([graphDim, graphDim, 1], bias: true, generator: &generator)
    block = P2PBasicBlock(width: graphDim, generator: &generator)
    blockConv = P2PConv([graphDim, graphDim, 1, 1], bias: true, generator: &generator)
    imgLayer = P2PConv([channels, graphDim, 1, 1], bias: true, generator: &generator)
    super.init()
    registerModule("input_trans", inputTrans)
    let graphLayer = Module()
    graphLayer.registerModule("0", graphConv)
    graphLayer.registerModule("1", graphNorm)
    registerModule("graph_layer", graphLayer)
    registerModule("proj_layer", proj)
    let imgBlock = Module()
    imgBlock.registerModule("0", block)
    imgBlock.registerModule("1", blockConv)
    registerModule("img_block", imgBlock)
    registerModule("img_layer", imgLayer)
  }

  /// Every edge's response before the max over neighbours, [B, graph_dim, N, k′] with
  /// k′ = min(k, N): for each point i and each of its k′ nearest points j in xyz (itself
  /// first), the edge feature [f_j − f_i, f_i] of the point features f = input_trans(xyz) →
  /// 1×1 convolution → GroupNorm.
  func edgeResponses(_ cloud: Tensor) -> Tensor {
    let (b, n) = (cloud.shape[0], cloud.shape[1])
    let neighbours = Swift.min(k, n)
    let f = cloud.linear(weight: inputTrans.matrix, bias: inputTrans.bias)  // [B, N, t]
    let t = f.shape[2]
    let (index, _) = withNoGrad {
      PointOps.knn(query: cloud.detached(), points: cloud.detached(), k: neighbours)
    }
    let fj = PointOps.gather(f, index)  // [B, N, k, t]
    let fi = f.unsqueezed(2).broadcast(to: [b, n, neighbours, t])
    // Channels first, so the 1×1 convolution is one GEMM per cloud and GroupNorm sees [B, C, …].
    let edges = Tensor.concat([fj - fi, fi], axis: 3).permuted([0, 3, 1, 2])
    return graphNorm(edges.conv2d(weight: graphConv.weight))
  }

  /// Per-point geometry features [B, N, graph_dim] of clouds [B, N, 3]: the edge responses'
  /// maximum over the neighbours → LeakyReLU(0.2) → proj_layer. (The official applies the
  /// LeakyReLU before the maximum; it is increasing, so the values and gradients are the same
  /// and it runs on k times fewer values.)
  public func pointFeatures(_ cloud: Tensor) -> Tensor {
    precondition(
      cloud.rank == 3 && cloud.shape[2] == 3 && cloud.shape[1] >= 1,
      "P2P: clouds \(cloud.shape) must be [B, N, 3]")
    let pooled = edgeResponses(cloud).max(axis: 3).leakyReLU(slope: 0.2)  // [B, C, N]
    return pooled.transposed(1, 2).linear(weight: proj.matrix, bias: proj.bias)
  }

  /// The colourful image in (0, 1), [B, channels, H, W], of a splatted canvas
  /// [B, graph_dim, H, W]: BasicBlock → 1×1 conv → 1×1 conv → sigmoid.
  public func colour(_ canvas: Tensor) -> Tensor {
    let x = blockConv.conv2d(block(canvas))
    return imgLayer.conv2d(x).sigmoid()
  }
}

/// `p2p`: Point-to-Pixel Prompting (Wang, Yu, Rao et al., NeurIPS 2022; wangzy22/P2P,
/// `models/p2p.py`, `models/layers/encoder.py`, `util/rotate.py`, `tool/train.py`,
/// `tool/test.py`): point clouds drawn as images for a frozen image model.
///
/// **Task input.** Point clouds [B, N, 3] (`taskInput` is `.points(count: points)`), which
/// `backboneInput(_:)` renders into the pixels [B, C, H, W] of the backbone's input size:
/// 1. *Point-wise geometry encoder*, on the cloud as given (un-rotated): Conv1d 3 → `trans_dim`
///    on xyz; kNN with k = `k` in xyz (each point its own first neighbour); the edge feature
///    [f_j − f_i, f_i] → 1×1 conv 2·`trans_dim` → `graph_dim` without bias → GroupNorm(4) →
///    LeakyReLU(0.2) → max over the neighbours; Conv1d `graph_dim` → `graph_dim`
///    (`P2PEncoder.pointFeatures`).
/// 2. *Geometry-preserving projection* of the cloud turned by a view (`View`): the view frame's
///    x and y, dropping z (orthographic). With grid = max(x-range, y-range) / (`obj_size` − 3),
///    point p lands on pixel ⌊(p − min) / grid⌋ (x down the rows, y across the columns, as the
///    official `x·obj_size + y`); its feature is added to the 3×3 pixels around it (scatter-add:
///    features meeting on a pixel are summed), and the object's box of splats is centred in an
///    `obj_size` square, itself centred in the H × W canvas (zero padding around it).
/// 3. *Geometry-aware colouring*: a ResNet BasicBlock(`graph_dim`), a 1×1 conv `graph_dim` →
///    `graph_dim`, a 1×1 conv `graph_dim` → C, sigmoid (the "colourful image",
///    `colouredImage`), then `(x − mean) / std` with the `mean` and `std` options. They default
///    to ImageNet's, as the official code (and timm's ImageNet models); a backbone trained with
///    other statistics wants its own (the bundled `vit-nano-fmnist`:
///    `method.mean=0.286,0.286,0.286`, `method.std=0.353,0.353,0.353`), though the trained
///    colouring can absorb the difference. A method sees the model, not its preprocessing, so it
///    cannot read them itself.
///
/// **Views.** Training mode (`isTraining`): each cloud gets its own random view, θ ∈
/// [0.04, 1.94]π about the up axis and elevation φ ∈ [−0.4, −0.2]π (the official
/// `tool/train.py`), and the turned copy is scaled per axis by U(2/3, 3/2) (the official
/// `PointcloudScaleAndTranslate`, applied to the projected copy only), all drawn from
/// `generator`. Evaluation: `evaluationView` for every cloud, by default `P2P.fixedView`
/// (θ = 0.1π, φ = −0.35π: the first of the official validation views). `P2P.votingViews` are
/// the official `tool/test.py`'s 40 views for test-time voting (average the logits of
/// `logits(points:view:)` over them).
///
/// **Backbone and head.** Any backbone with `.imageGrid` (an `ImageBackbone`); the canvas is its
/// `imageSize`. The head is a new Linear on its pooled features (PyTorch's default init, as the
/// official `nn.Linear`). Trainable: the encoder and colouring (`p2p.enc.*`), the head, and the
/// backbone's norms and prefix tokens (`backbone.parameterPatterns(.norms)` and
/// `.prefixTokens`: for a ViT every `norm*` scale and shift and the `cls_token`, as the
/// official `update_type: norm` with its learnable `cls_token`). With the defaults the encoder
/// has 3·t + t + 2t·g + 2g + g² + g + 18g² + 4g + g² + g + g·C + C elements (t = 8, g = 64,
/// C = 3: 83,683 ≈ 0.084M); on ViT-B/16 with 15 classes the method trains 134,386
/// (encoder 83,683, norms 38,400, class token 768, head 11,535).
///
/// **Recipe.** The official ScanObjectNN configs: AdamW, lr 5e-4, weight decay 0.05, cosine
/// (timm's, to 1e-6), no warm-up, batch 64, 300 epochs (Graft keeps its run settings for batch
/// and epochs). The official loss smooths labels with ε = 0.2 spread over the C − 1 other
/// classes; Graft's `train.label_smoothing` spreads ε over all C, so 0.2·C / (C − 1) reproduces
/// it exactly (0.2143 for 15 classes) and 0.2 is close. It is a run setting, not part of the
/// recipe.
///
/// **Deviations from the official code.**
/// - Frames: Graft's clouds are y-up (as Point-MAE loads ModelNet and ScanObjectNN); the
///   official loaders turn them z-up by (x, y, z) → (−z, −x, y) before anything else. The method
///   does that turn inside its view matrix (`View.matrix`), so its views are the official ones;
///   the encoder reads the cloud as given (a fixed turn its first Conv1d absorbs).
/// - Canvas: the official renders 192 in 224 (ScanObjectNN; 224 in 224 for ModelNet40). Here the
///   canvas is the backbone's input size and `obj_size` defaults to the same proportion of
///   padding: H − 2·round(16·H / 224) (192 for 224, 24 for 28, 6 for 8). Centring uses
///   ⌊(obj_size − extent) / 2⌋ for the splats' extent, equal to the official formula for even
///   sizes and valid for odd ones too (where the official one gives half-pixel offsets).
///   Non-square canvases pad each axis on its own.
/// - A cloud with no x or y extent (a single point) is drawn at the centre instead of dividing
///   by a zero grid.
/// - The official training translation (±0.2 per axis) is not drawn: the projection subtracts
///   the minimum, so it cannot change the image. The per-axis scale is drawn.
/// - Sampling: the official takes 2048 of 2400 farthest points at random for training (and FPS
///   for testing) inside its loop; here the data pipeline delivers `points` points per cloud,
///   and the default is 1024 (Point-MAE's ModelNet size) rather than ScanObjectNN's 2048: the
///   kNN graph and the edge tensor [B, g, N, k] grow with N, and on the bundled backbone's
///   24×24 square 1024 points' 3×3 splats already land about 16 times on each pixel.
/// - Validation: the official averages single-view accuracy over 8 views; Graft's evaluation
///   uses the fixed view, and voting uses the 40 test views.
/// - kNN ties go to the lower index (the official `topk` leaves them unspecified).
/// - The AdamW weight decay skips norms, biases and tokens (Graft's rule for every method; the
///   official decays every trainable tensor).
/// - A ViT's register or distillation tokens train with its class token (they are its prefix
///   tokens; the official trains `cls_token` only, on models without them).
/// - BatchNorm keeps no `num_batches_tracked`. The HorNet MLP head is not offered (no HorNet
///   backbone here).
///
/// Tensors: `p2p.enc.input_trans.*`, `p2p.enc.graph_layer.0.weight`, `p2p.enc.graph_layer.1.*`,
/// `p2p.enc.proj_layer.*`, `p2p.enc.img_block.0.{conv1, bn1, conv2, bn2}.*`,
/// `p2p.enc.img_block.1.*`, `p2p.enc.img_layer.*`, `p2p.head.*`, `p2p.backbone.<norms>`,
/// `p2p.backbone.cls_token`; the BasicBlock's running statistics are state buffers.
public final class P2P: TuningMethod {
  /// P2P's options. Recipe: AdamW lr 5e-4, wd 0.05, cosine, no warm-up (the official configs).
  public struct Config: MethodConfig {
    /// Points per cloud the task delivers.
    public var points = 1024
    /// Neighbours of each point in the encoder's kNN graph (the official `local_size`).
    public var k = 32
    /// Point feature width after the first Conv1d (the official `trans_dim`).
    public var transDim = 8
    /// Edge and canvas feature width (the official `graph_dim` and `imgblock_dim`).
    public var graphDim = 64
    /// Side of the square the object is drawn in, inside the canvas.
    public var objSize = AutoOr<Int>.auto
    /// Per-channel mean of the backbone's input normalisation.
    public var mean: [Float] = [0.485, 0.456, 0.406]
    /// Per-channel standard deviation of the backbone's input normalisation.
    public var std: [Float] = [0.229, 0.224, 0.225]

    /// The defaults.
    public init() {}
    /// The keys.
    public static let options: [ConfigOption<Config>] = [
      .int(
        "points", \.points, in: 1...1_000_000,
        "points per cloud the task delivers (the official 2048 for ScanObjectNN; 1024 for CPUs)"),
      .int("k", \.k, in: 1...1024, "neighbours of each point in the encoder's kNN graph"),
      .int("trans_dim", \.transDim, in: 1...4096, "point feature width after the first Conv1d"),
      .int(
        "graph_dim", \.graphDim, in: 4...4096,
        "edge and canvas feature width (a multiple of 4: GroupNorm's groups)"),
      ConfigOption(
        "obj_size", \.objSize,
        "side of the square the object is drawn in (auto: the official 192-in-224 proportion "
          + "of the backbone's input size)"),
      ConfigOption(
        "mean", \.mean,
        "per-channel mean of the backbone's input normalisation (default ImageNet's)"),
      ConfigOption(
        "std", \.std,
        "per-channel standard deviation of the backbone's input normalisation (default "
          + "ImageNet's)"),
    ]
    /// AdamW, lr 5e-4, wd 0.05, no warm-up.
    public static let recipe = Recipe(.adamw, lr: 5e-4, weightDecay: 0.05, warmupEpochs: 0)

    /// GroupNorm's four groups must divide `graph_dim`; the deviations must be positive.
    public func validate() throws {
      guard graphDim % 4 == 0 else {
        throw ConfigError("method.graph_dim = \(graphDim) is not a multiple of 4 (GroupNorm(4))")
      }
      guard std.allSatisfy({ $0 > 0 }) else {
        throw ConfigError(
          "method.std = \(std.map(\.optionText).joined(separator: ",")) "
            + "must be positive")
      }
    }
  }

  /// The registry entry.
  public static let descriptor = MethodDescriptor(
    name: "p2p",
    summary: "point clouds drawn as images (geometry encoder, 3×3 splats, colouring) for an "
      + "image backbone; its norms, class token and a head",
    config: Config.self, requires: .imageGrid, takesPointClouds: true
  ) { backbone, classes, config, generator in
    try P2P(backbone: backbone, classes: classes, config: config, generator: &generator)
  }

  /// A viewing direction: θ about the up axis, then elevation φ, in radians (the official
  /// `rotate_theta_phi` angles).
  public struct View: Equatable, Sendable {
    /// Azimuth about the up axis, radians.
    public var theta: Float
    /// Elevation, radians (the official ranges are negative: the view from above).
    public var phi: Float

    /// The view (θ, φ) in radians.
    public init(theta: Float, phi: Float) {
      self.theta = theta
      self.phi = phi
    }

    /// The view (θ·π, φ·π): angles in units of π, as the official arrays write them.
    public init(thetaPi: Double, phiPi: Double) {
      self.init(theta: Float(thetaPi * Double.pi), phi: Float(phiPi * Double.pi))
    }

    /// The 3×3 matrix, row-major, that takes a Graft cloud's (x, y, z) (y up) to the view
    /// frame: the official loaders' z-up turn (x, y, z) → (−z, −x, y), then the official
    /// `rotate_theta_phi`: R(−θ about z) · R(−φ about (sin θ, −cos θ, 0)), both by Rodrigues'
    /// formula. Computed in double precision.
    public var matrix: [Float] {
      func rotation(_ angle: Double, _ v: (Double, Double, Double)) -> [Double] {
        // c·I + (1 − c)·v·vᵀ + s·[v]×
        let (c, s) = (cos(angle), sin(angle))
        let v: [Double] = [v.0, v.1, v.2]
        let cross: [Double] = [0, -v[2], v[1], v[2], 0, -v[0], -v[1], v[0], 0]
        var r = [Double](repeating: 0, count: 9)
        for i in 0..<3 {
          for j in 0..<3 {
            let identity: Double = i == j ? c : 0
            r[3 * i + j] = identity + (1 - c) * v[i] * v[j] + s * cross[3 * i + j]
          }
        }
        return r
      }
      func product(_ a: [Double], _ b: [Double]) -> [Double] {
        var r = [Double](repeating: 0, count: 9)
        for i in 0..<3 {
          for j in 0..<3 {
            for k in 0..<3 { r[3 * i + j] += a[3 * i + k] * b[3 * k + j] }
          }
        }
        return r
      }
      let (t, p) = (Double(theta), Double(phi))
      let zUp: [Double] = [0, 0, -1, -1, 0, 0, 0, 1, 0]
      let turn = product(rotation(-t, (0, 0, 1)), rotation(-p, (sin(t), -cos(t), 0)))
      return product(turn, zUp).map { Float($0) }
    }
  }

  /// The official `tool/test.py`'s 40 voting views: θ ∈ {0, 0.2, …, 1.8}π for each
  /// φ ∈ {−0.4, −0.3333, −0.2667, −0.2}π, φ-major (its `meshgrid` order).
  public static let votingViews: [View] = (0..<4).flatMap { i in
    (0..<10).map { j in
      View(thetaPi: Double(j) * 0.2, phiPi: -0.4 + Double(i) * 0.2 / 3)
    }
  }

  /// The fixed evaluation view: θ = 0.1π, φ = −0.35π, the first view of the official validation
  /// (`tool/train.py`), inside the training ranges.
  public static let fixedView = View(thetaPi: 0.1, phiPi: -0.35)

  /// Azimuths drawn in training, units of π.
  public static let trainingTheta: ClosedRange<Double> = 0.04...1.94
  /// Elevations drawn in training, units of π.
  public static let trainingPhi: ClosedRange<Double> = -0.4...(-0.2)
  /// Per-axis scales of the projected copy drawn in training.
  public static let trainingScale: ClosedRange<Float> = (2.0 / 3.0)...(3.0 / 2.0)

  /// The encoder and colouring.
  public let encoder: P2PEncoder
  /// Points per cloud the task delivers.
  public let points: Int
  /// The canvas: the backbone's input size.
  public let canvas: Size2D
  /// Side of the square the object is drawn in.
  public let objSize: Int
  /// Per-channel mean and standard deviation of the backbone's input.
  public let normalisation: (mean: [Float], std: [Float])
  /// The view used outside training (voting sets it per pass).
  public var evaluationView = P2P.fixedView

  /// `objSize` by default for a canvas: the official 192-in-224 padding, scaled and rounded to
  /// whole pixels on each side.
  public static func defaultObjectSize(for canvas: Size2D) -> Int {
    let side = Swift.min(canvas.height, canvas.width)
    return side - 2 * Int((Double(side) * 16 / 224).rounded())
  }

  /// P2P on `backbone`, which must be an `ImageBackbone`.
  public init(
    backbone: any SequenceBackbone, classes: Int, config: Config = Config(),
    generator: inout RandomGenerator
  ) throws {
    guard let image = backbone as? any ImageBackbone else {
      throw ConfigError(
        "method 'p2p' draws images for an image backbone; \(backbone.familyName) is not one")
    }
    let c = image.inputChannels
    guard config.mean.count == c, config.std.count == c else {
      throw ConfigError(
        "method.mean and method.std need \(c) values (the backbone's input channels), got "
          + "\(config.mean.count) and \(config.std.count)")
    }
    canvas = image.imageSize
    let side = Swift.min(canvas.height, canvas.width)
    switch config.objSize {
    case .auto: objSize = P2P.defaultObjectSize(for: canvas)
    case .value(let s): objSize = s
    }
    guard (4...side).contains(objSize) else {
      throw ConfigError(
        "method.obj_size = \(objSize) must lie in 4...\(side) (the canvas is "
          + "\(canvas.height)×\(canvas.width))")
    }
    points = config.points
    normalisation = (config.mean, config.std)
    encoder = P2PEncoder(
      transDim: config.transDim, graphDim: config.graphDim, channels: c, k: config.k,
      generator: &generator)
    let head = Linear(backbone.featureWidth, classes, generator: &generator)
    super.init(
      name: "p2p", prefix: "p2p", backbone: backbone, classes: classes, head: head,
      options: config.resolved, generator: generator)
    registerModule("enc", encoder)
    finishSetUp()
  }

  /// Point clouds of `points` points.
  public override var taskInput: TaskInput { .points(count: points) }

  /// The backbone's norms and prefix tokens.
  public override var unfrozenPatterns: [String] {
    backbone.parameterPatterns(.norms) + backbone.parameterPatterns(.prefixTokens)
  }

  /// The backbone input of clouds [B, N, 3]: random views (and scales) in training mode, else
  /// `evaluationView`.
  public override func backboneInput(_ input: Tensor) -> Tensor {
    precondition(
      input.rank == 3 && input.shape[2] == 3, "P2P: clouds \(input.shape) must be [B, N, 3]")
    let b = input.shape[0]
    guard isTraining else {
      return render(input, views: Array(repeating: evaluationView, count: b))
    }
    // In a data-parallel step, the whole global batch's views are drawn and this rank's kept,
    // so K ranks see what one process sees.
    guard let shard = DataParallel.current, shard.count == b else {
      let (views, scales) = drawTrainingViews(b)
      return render(input, views: views, scales: scales)
    }
    let (views, scales) = drawTrainingViews(shard.total)
    let mine = shard.offset..<(shard.offset + b)
    return render(input, views: Array(views[mine]), scales: Array(scales[mine]))
  }

  /// `count` training views and per-axis scales drawn from `generator`, as the official loop
  /// draws them: every θ, then every φ, then each cloud's three scales.
  func drawTrainingViews(_ count: Int) -> (views: [View], scales: [SIMD3<Float>]) {
    func draw(_ range: ClosedRange<Double>) -> Double {
      range.lowerBound + (range.upperBound - range.lowerBound) * Double(generator.nextFloat())
    }
    let thetas = (0..<count).map { _ in draw(P2P.trainingTheta) }
    let phis = (0..<count).map { _ in draw(P2P.trainingPhi) }
    let (lo, hi) = (P2P.trainingScale.lowerBound, P2P.trainingScale.upperBound)
    let scales = (0..<count).map { _ in
      SIMD3<Float>((0..<3).map { _ in lo + (hi - lo) * generator.nextFloat() })
    }
    return (zip(thetas, phis).map { View(thetaPi: $0, phiPi: $1) }, scales)
  }

  /// Logits of clouds [B, N, 3] seen from `view` (whatever the mode): one term of test-time
  /// voting.
  public func logits(points clouds: Tensor, view: View) -> Tensor {
    logits(
      backboneOutput(render(clouds, views: Array(repeating: view, count: clouds.shape[0]))))
  }

  /// The colourful image in (0, 1), [B, C, H, W], of clouds [B, N, 3] seen from `views` (one
  /// per cloud), the turned copies scaled per axis by `scales` when given.
  public func colouredImage(_ clouds: Tensor, views: [View], scales: [SIMD3<Float>]? = nil)
    -> Tensor
  {
    let features = encoder.pointFeatures(clouds)  // [B, N, g]
    let turned = P2P.viewCoordinates(clouds, views: views, scales: scales)
    let pixels = P2P.pixelIndices(turned, objSize: objSize, canvas: canvas)
    return encoder.colour(P2P.splat(features, pixels: pixels, canvas: canvas))
  }

  /// The backbone input: `colouredImage` normalised by the `mean` and `std` options.
  public func render(_ clouds: Tensor, views: [View], scales: [SIMD3<Float>]? = nil) -> Tensor {
    let image = colouredImage(clouds, views: views, scales: scales)
    let c = normalisation.mean.count
    let scale = Tensor(normalisation.std.map { 1 / $0 }, shape: [1, c, 1, 1])
    let shift = Tensor(
      zip(normalisation.mean, normalisation.std).map { -$0 / $1 }, shape: [1, c, 1, 1])
    return image * scale + shift
  }

  // MARK: Projection

  /// The canvas [B, C, H, W] of point features [B, N, C] added at their pixels [B, N, S]
  /// (`pixelIndices`); pixels no point reaches are zero.
  public static func splat(_ features: Tensor, pixels: IndexTensor, canvas: Size2D) -> Tensor {
    let (b, c) = (features.shape[0], features.shape[2])
    let splatted = PointOps.scatterAdd(features, pixels, count: canvas.area)
    return splatted.reshaped([b, canvas.height, canvas.width, c]).permuted([0, 3, 1, 2])
  }

  /// Clouds [B, N, 3] in the view frame of each cloud's view (`View.matrix`), each axis then
  /// multiplied by the cloud's scale when given. Not recorded on the tape.
  public static func viewCoordinates(
    _ clouds: Tensor, views: [View], scales: [SIMD3<Float>]? = nil
  ) -> Tensor {
    precondition(
      clouds.rank == 3 && clouds.shape[2] == 3, "P2P: clouds \(clouds.shape) must be [B, N, 3]")
    let (b, n) = (clouds.shape[0], clouds.shape[1])
    precondition(views.count == b, "P2P: \(views.count) views for \(b) clouds")
    precondition(scales.map { $0.count == b } ?? true, "P2P: one scale per cloud")
    let out = Tensor(shape: clouds.shape, zeroed: false)
    let (src, dst) = (clouds.pointer, out.pointer)
    for c in 0..<b {
      let m = views[c].matrix
      let s = scales?[c] ?? SIMD3<Float>(repeating: 1)
      for j in 0..<n {
        let p = src + (c * n + j) * 3
        let q = dst + (c * n + j) * 3
        for r in 0..<3 {
          q[r] = (m[3 * r] * p[0] + m[3 * r + 1] * p[1] + m[3 * r + 2] * p[2]) * s[r]
        }
      }
    }
    return out
  }

  /// The 9 canvas pixels (row-major indices into H × W) each point of view-frame clouds
  /// [B, N, 3] is splatted on, [B, N, 9] in the official offset order (row offset −1, 0, 1
  /// outer, column offset inner): the point's pixel ⌊(p − min) / grid⌋ on the view's x (rows)
  /// and y (columns), grid = max(x-range, y-range) / (`objSize` − 3), shifted by one so the 3×3
  /// splats start at 0, the splats' box centred in the `objSize` square, the square centred in
  /// the canvas.
  public static func pixelIndices(_ view: Tensor, objSize: Int, canvas: Size2D) -> IndexTensor {
    precondition(view.rank == 3 && view.shape[2] >= 2, "P2P: view coordinates \(view.shape)")
    precondition(
      objSize >= 4 && objSize <= Swift.min(canvas.height, canvas.width),
      "P2P: obj_size \(objSize) on a \(canvas) canvas")
    let (b, n, stride) = (view.shape[0], view.shape[1], view.shape[2])
    let (top, left) = ((canvas.height - objSize) / 2, (canvas.width - objSize) / 2)
    let p = view.pointer
    var out = [Int32](repeating: 0, count: b * n * 9)
    do {
      var ix = [Int](repeating: 0, count: n)
      var iy = [Int](repeating: 0, count: n)
      for c in 0..<b {
        let cloud = p + c * n * stride
        var (minX, maxX, minY, maxY) = (
          Float.infinity, -Float.infinity, Float.infinity, -Float.infinity
        )
        for j in 0..<n {
          minX = Swift.min(minX, cloud[j * stride])
          maxX = Swift.max(maxX, cloud[j * stride])
          minY = Swift.min(minY, cloud[j * stride + 1])
          maxY = Swift.max(maxY, cloud[j * stride + 1])
        }
        let grid = Swift.max(maxX - minX, maxY - minY) / Float(objSize - 3)
        var (extentX, extentY) = (0, 0)
        for j in 0..<n {
          func cell(_ v: Float, _ low: Float) -> Int {
            guard grid > 0 else { return 0 }
            return Swift.min(Swift.max(Int(((v - low) / grid).rounded(.down)), 0), objSize - 3)
          }
          ix[j] = cell(cloud[j * stride], minX)
          iy[j] = cell(cloud[j * stride + 1], minY)
          extentX = Swift.max(extentX, ix[j])
          extentY = Swift.max(extentY, iy[j])
        }
        // The splats cover 0...extent + 2 on each axis: centre those extent + 3 pixels.
        let offX = top + (objSize - extentX - 3) / 2
        let offY = left + (objSize - extentY - 3) / 2
        for j in 0..<n {
          for dx in 0..<3 {
            for dy in 0..<3 {
              let row = ix[j] + dx + offX
              let column = iy[j] + dy + offY
              out[(c * n + j) * 9 + dx * 3 + dy] = Int32(row * canvas.width + column)
            }
          }
        }
      }
    }
    return IndexTensor(shape: [b, n, 9], values: out)
  }
}
