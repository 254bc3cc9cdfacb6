import Foundation

// A tuning method is a module (its own tensors, named under its prefix) that is also the
// backbone's hooks, declares the attach points it uses, which backbone tensors it unfreezes and
// whether any gradient must reach the backbone, and maps the backbone's output to logits. It
// sees the backbone only through `SequenceBackbone`, so the same method file serves every
// modality. The trainer, the checkpoint writer and the command line need nothing else.

/// What a method takes as the task's input, when it is not what its backbone takes.
public enum TaskInput: Equatable, Sendable {
  /// The backbone's own input (every method but P2P).
  case backbone
  /// Point clouds of `count` points, [B, count, 3], which the method turns into the
  /// backbone's input (P2P renders them as images for an image backbone).
  case points(count: Int)
}

/// The parts of a `BackboneOutput` a method's `logits(_:)` reads, for methods whose backbone
/// output never changes while they train (a feature cache stores only these).
public struct BackboneReads: OptionSet, Hashable, Sendable {
  /// The bit set.
  public let rawValue: Int
  /// Wraps a bit set.
  public init(rawValue: Int) { self.rawValue = rawValue }
  /// `features`: the pooled features.
  public static let features = BackboneReads(rawValue: 1)
  /// `tokens` (and so `patchTokens`): every token after the final norm.
  public static let tokens = BackboneReads(rawValue: 2)
  /// `embedded`: the sequence entering block 0.
  public static let embedded = BackboneReads(rawValue: 4)
  /// `hiddenStates`: every block's output.
  public static let hiddenStates = BackboneReads(rawValue: 8)
}

/// The default `keep_mib` of the side methods (`lst`, `unipt`): MiB of their layers'
/// activations a training step keeps before the remaining layers are recomputed in backward
/// (`Tensor.checkpoint(_:parameters:budget:_:)`).
public let defaultKeepMiB = 32

/// A small trainable part attached to a frozen backbone.
///
/// Subclasses register their own tensors (and the classifier `head`) in their initialiser,
/// override the `BackboneHooks` points they use and declare them in `attachPoints`, and list
/// backbone tensors to unfreeze in `unfrozenPatterns`. After `init`, every backbone tensor is
/// frozen except those the patterns select (the backbone's own classifier always stays frozen:
/// `head` replaces it).
///
/// Checkpoint names: the method's tensors are `<prefix>.<name>` (`vpt.prompt_embeddings`,
/// `lora.blocks.0.q.lora_A`, `vpt.head.weight`), unfrozen backbone tensors
/// `<prefix>.backbone.<backbone name>` (`bitfit.backbone.blocks.0.attn.qkv.bias`). Checkpoints
/// also hold the method's `stateBuffers` (running statistics), which are not trained.
open class TuningMethod: Module, BackboneHooks {
  /// The frozen backbone (not a child module: its tensors are not the method's).
  public let backbone: any SequenceBackbone
  /// The registry name (`vpt-deep`) and the checkpoint prefix (`vpt`).
  public let name: String
  /// Prefix of the method's tensor names in checkpoints.
  public let prefix: String
  /// Number of classes the head predicts.
  public let classes: Int
  /// The new classifier on the pooled features, featureWidth → classes.
  public let head: Linear
  /// Every option's resolved value as text, by key (what run folders record).
  public let options: [String: String]
  /// Random stream for the method's own dropout; the trainer reseeds it each epoch.
  public var generator: RandomGenerator
  /// Whether the frozen backbone runs in training mode while the method trains (off by default;
  /// a ViT has no dropout, so this only matters for backbones with stochastic layers).
  public var backboneTrainMode = false

  /// A method named `name` with tensors under `prefix`, a `head` (registered as `head`).
  /// Subclasses call `finishSetUp()` once their own tensors are registered.
  public init(
    name: String, prefix: String, backbone: any SequenceBackbone, classes: Int, head: Linear,
    options: [String: String], generator: RandomGenerator
  ) {
    self.backbone = backbone
    self.name = name
    self.prefix = prefix
    self.classes = classes
    self.head = head
    self.options = options
    self.generator = generator
    super.init()
    registerModule("head", head)
  }

  /// Freezes the backbone, then unfreezes what `unfrozenPatterns` selects (never the
  /// backbone's own classifier), and puts the backbone in eval mode.
  public func finishSetUp() {
    backbone.freeze()
    for pattern in unfrozenPatterns { backbone.setTrainable(matching: pattern, true) }
    for pattern in backbone.parameterPatterns(.classifier) {
      backbone.setTrainable(matching: pattern, false)
    }
    backbone.eval()
  }

  // MARK: What the method declares

  /// Backbone tensors trained too, as `NamePattern` globs over the backbone's names (ask the
  /// backbone: `backbone.parameterPatterns(.norms)`).
  open var unfrozenPatterns: [String] { [] }
  /// False when no gradient must reach the backbone: it then runs with recording off and
  /// keeps no activations.
  open var needsBackboneGradient: Bool { true }
  /// True when `logits(_:)` reads every block's output (`BackboneOutput.hiddenStates`), as
  /// side networks (LST, UniPT) do; they get them without gradient when
  /// `needsBackboneGradient` is false.
  open var needsHiddenStates: Bool { false }
  /// The attach points the method's hooks use (none: it only reads the output). A block half
  /// runs fused unless this contains `.linear` and `linearSites` has one of its layers, and
  /// every pass checks that the backbone reached each declared point.
  open var attachPoints: AttachPoints { [] }
  /// Linear sites the method changes: every pass checks that the backbone called each.
  open var linearSites: [LinearSite] { [] }
  /// `linearSites`: a block half with none of them runs fused.
  open var hookedLinearSites: Set<LinearSite>? {
    attachPoints.contains(.linear) ? Set(linearSites) : []
  }
  /// What `logits(_:)` reads of the backbone's output, or nil when the method does not say (the
  /// default). With no backbone gradient, no hook and no unfrozen tensor, the backbone's output
  /// is then a fixed function of the input, which a feature cache may store.
  open var backboneReads: BackboneReads? { nil }
  /// What the method takes from the task: the backbone's input unless it says otherwise.
  open var taskInput: TaskInput { .backbone }

  /// The backbone's input made from the task's `input` (the input itself unless `taskInput`
  /// says otherwise; P2P's rendering of point clouds as images).
  open func backboneInput(_ input: Tensor) -> Tensor { input }

  // MARK: BackboneHooks (defaults change nothing)

  /// The sequence entering block 0.
  open func tokens(_ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// The sequence entering block `index`.
  open func beforeBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// The output of block `index`.
  open func afterBlock(_ index: Int, _ x: Tensor, pass: ForwardPass) -> Tensor { x }
  /// The attention residual branch of block `index`.
  open func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// The MLP residual branch of block `index`.
  open func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// A linear layer inside a block.
  open func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor { output }
  /// No deltas on fused layers.
  open func lowRankDeltas(_ site: LinearSite) -> [LowRankDelta] { [] }

  // MARK: Forward

  /// Logits [B, classes] from the backbone's output: the head on the pooled features.
  open func logits(_ output: BackboneOutput) -> Tensor { head(output.features) }

  /// The backbone's output for `input` with this method's hooks (with recording off when the
  /// method needs no backbone gradient), checked for the attach points the method declares.
  public func backboneOutput(_ input: Tensor) -> BackboneOutput {
    let output: BackboneOutput
    if needsBackboneGradient {
      output = backbone.forward(input, hooks: self, hiddenStates: needsHiddenStates)
    } else {
      output = withNoGrad {
        backbone.forward(input, hooks: self, hiddenStates: needsHiddenStates)
      }
    }
    let problems = attachmentProblems(output.pass)
    precondition(
      problems.isEmpty,
      "\(name) on \(backbone.familyName): \(problems.joined(separator: "; "))")
    return output
  }

  /// What the pass did not reach of what the method declares: attach points the backbone
  /// never called, linear sites it never offered. Empty when the method is fully attached.
  public func attachmentProblems(_ pass: ForwardPass) -> [String] {
    var problems: [String] = []
    let missed = attachPoints.subtracting(pass.reachedPoints)
    if !missed.isEmpty { problems.append("the backbone never called the \(missed) hook") }
    let sites = linearSites.filter { !pass.reachedSites.contains($0) }
    if !sites.isEmpty {
      problems.append(
        "the backbone never offered the linear sites \(sites.map(\.description).joined(separator: ", "))"
      )
    }
    return problems
  }

  /// Logits [B, classes] of the task's `input` (pixels [B, C, H, W] for an image backbone): the
  /// backbone, with this method's hooks, on `backboneInput(input)`, then `logits(_:)`.
  /// Video clips [B, T, C, H, W] on an image backbone go through `clipLogits(_:)`.
  public func callAsFunction(_ input: Tensor) -> Tensor {
    if input.shape.count == 5, taskInput == .backbone, backbone is any ImageBackbone {
      return clipLogits(input)
    }
    return logits(backboneOutput(backboneInput(input)))
  }

  /// Logits [B, classes] of video clips [B, T, C, H, W] on an image backbone: the T frames are
  /// folded into the batch, so all B·T frames run through the backbone with this method's hooks
  /// as one batch of images, and each clip's logits are the mean of its frames' logits. Every
  /// method's logits are affine in the features its head reads (a `Linear`, or MP's average of
  /// two), so this is the head on the mean over frames of the method's per-frame features.
  public func clipLogits(_ clips: Tensor) -> Tensor {
    precondition(clips.shape.count == 5, "clips are [B, T, C, H, W], got \(clips.shape)")
    let (b, t) = (clips.shape[0], clips.shape[1])
    let frames = clips.reshaped([b * t] + Array(clips.shape.dropFirst(2)))
    let perFrame = logits(backboneOutput(frames))
    return perFrame.reshaped([b, t, perFrame.shape[1]]).mean(axis: 1)
  }

  /// Sets training mode on the method, and on the backbone only if `backboneTrainMode`.
  public func setTraining(_ on: Bool) {
    train(on)
    backbone.train(on && backboneTrainMode)
  }

  // MARK: Parameters and checkpoints

  /// Every trainable tensor with its checkpoint name: the method's own, then the unfrozen
  /// backbone tensors.
  public func trainableTensors() -> [(name: String, tensor: Tensor)] {
    namedParameters(prefix: prefix).filter { $0.tensor.requiresGrad }
      + backbone.namedParameters(prefix: prefix + ".backbone").filter { $0.tensor.requiresGrad }
  }

  /// Number of trainable elements.
  public var trainableCount: Int { trainableTensors().reduce(0) { $0 + $1.tensor.count } }

  /// Backbone elements, not counting its own classifier (which the method replaces).
  public var backboneCount: Int {
    let classifier = backbone.parameterPatterns(.classifier)
    return backbone.namedParameters().filter { p in
      !classifier.contains { NamePattern.matches(p.name, $0) }
    }
    .reduce(0) { $0 + $1.tensor.count }
  }

  /// The registered modules that map features to this task's classes (`head`, and MP's
  /// second classifier): their shapes and meaning depend on the class list, so a run started
  /// from another task's adapter (`graft tune --init-from`) leaves them fresh.
  open var classifierModules: [String] { ["head"] }

  /// Whether the checkpoint tensor `name` belongs to one of `classifierModules`.
  public func isClassifierTensor(_ name: String) -> Bool {
    classifierModules.contains { name.hasPrefix(prefix + "." + $0 + ".") }
  }

  /// State that is not trained but that the method's output depends on, with checkpoint names
  /// (`<prefix>.<name>`): by default the persistent buffers of the method's own modules
  /// (BatchNorm running statistics, `hst.head_norm.running_mean`). They change while training
  /// (outside the optimizer), so checkpoints save and load them with the trainable tensors; they
  /// are never given to the optimizer nor counted in `trainableCount`.
  open var stateBuffers: [(name: String, tensor: Tensor)] {
    let persistent = Set(stateDictNames.map { prefix + "." + $0 })
    return namedBuffers(prefix: prefix).filter { persistent.contains($0.name) }
  }

  /// What a checkpoint holds: `trainableTensors()` then `stateBuffers`.
  public func checkpointTensors() -> [(name: String, tensor: Tensor)] {
    trainableTensors() + stateBuffers
  }

  /// Copies of the checkpoint tensors (the trainable ones and `stateBuffers`), by name.
  public func trainableState() -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (name, tensor) in checkpointTensors() { out[name] = tensor.copy() }
    return out
  }

  /// Loads the checkpoint tensors (the trainable ones and `stateBuffers`) by name, those whose
  /// name passes `include` (all by default): each such name must be present with its shape, and
  /// no other name that passes `include` may be (names that do not are ignored): otherwise
  /// `StateDictError` (naming `source`), and nothing is changed.
  public func loadTrainableState(
    _ state: [String: Tensor], source: String? = nil,
    where include: (String) -> Bool = { _ in true }
  ) throws {
    let targets = checkpointTensors().filter { include($0.name) }
    let known = Set(targets.map(\.name))
    let missing = targets.map(\.name).filter { state[$0] == nil }
    let unexpected = state.keys.filter { include($0) && !known.contains($0) }.sorted()
    var misshaped: [StateDictError.Mismatch] = []
    for (name, t) in targets {
      if let v = state[name], v.shape != t.shape {
        misshaped.append(.init(name: name, expected: t.shape, got: v.shape))
      }
    }
    guard missing.isEmpty, unexpected.isEmpty, misshaped.isEmpty else {
      throw StateDictError(
        missing: missing, unexpected: unexpected, misshaped: misshaped, source: source)
    }
    withNoGrad {
      for (name, t) in targets { t.assign(state[name]!) }
    }
  }

  /// The default head: timm's classifier init (trunc-normal 0.02 weight, zero bias).
  public static func timmHead(_ width: Int, _ classes: Int, generator: inout RandomGenerator)
    -> Linear
  {
    Linear(
      weight: Tensor.truncatedNormal([classes, width], std: 0.02, generator: &generator),
      bias: Tensor.zeros([classes]))
  }
}
