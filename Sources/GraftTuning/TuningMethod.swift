import Foundation

// The method protocol of DESIGN.md as a base class: a tuning method is a module (its own
// tensors, named under its prefix) that is also the backbone's hooks, declares which backbone
// tensors it unfreezes and whether any gradient must reach the backbone, and maps the
// backbone's output to logits. The trainer, the checkpoint writer and the command line need
// nothing else.

/// A problem with a method name, an option or a checkpoint; the message says which and why.
public struct TuningError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The problem, in words.
  public var message: String
  /// Wraps `message`.
  public init(_ message: String) { self.message = message }
  /// The message.
  public var description: String { message }
}

/// A small trainable part attached to a frozen backbone.
///
/// Subclasses register their own tensors (and the classifier `head`) in their initialiser,
/// override the `BackboneHooks` points they use, and list backbone tensors to unfreeze in
/// `unfrozenPatterns`. After `init`, every backbone tensor is frozen except those the patterns
/// select (the backbone's own classifier heads always stay frozen: they are replaced by `head`).
///
/// Checkpoint names: the method's tensors are `<prefix>.<name>` (`vpt.prompt_embeddings`,
/// `lora.blocks.0.q.lora_A`, `vpt.head.weight`), unfrozen backbone tensors
/// `<prefix>.backbone.<timm name>` (`bitfit.backbone.blocks.0.attn.qkv.bias`). Checkpoints
/// also hold the method's `stateBuffers` (running statistics), which are not trained.
open class TuningMethod: Module, BackboneHooks {
  /// The frozen backbone (not a child module: its tensors are not the method's).
  public let backbone: VisionTransformer
  /// The registry name (`vpt-deep`) and the checkpoint prefix (`vpt`).
  public let name: String
  /// Prefix of the method's tensor names in checkpoints.
  public let prefix: String
  /// Number of classes the head predicts.
  public let classes: Int
  /// The new classifier on the final features, D → classes.
  public let head: Linear
  /// The resolved options (every key of the method, defaults filled in).
  public let options: MethodOptions
  /// Random stream for the method's own dropout; the trainer reseeds it each epoch.
  public var generator: RandomGenerator
  /// Whether the frozen backbone runs in training mode while the method trains (off by default;
  /// a ViT has no dropout, so this only matters for backbones with stochastic layers).
  public var backboneTrainMode = false

  /// A method named `name` with tensors under `prefix`, a `head` (registered as `head`).
  /// Subclasses call `finishSetUp()` once their own tensors are registered.
  public init(
    name: String, prefix: String, backbone: VisionTransformer, classes: Int, head: Linear,
    options: MethodOptions, generator: RandomGenerator
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
  /// backbone's own heads), and puts the backbone in eval mode.
  public func finishSetUp() {
    backbone.freeze()
    for pattern in unfrozenPatterns { backbone.setTrainable(matching: pattern, true) }
    backbone.setTrainable(matching: "head.*", false)
    backbone.setTrainable(matching: "head_dist.*", false)
    backbone.eval()
  }

  // MARK: What the method declares

  /// Backbone tensors trained too, as `NamePattern` globs over timm names.
  open var unfrozenPatterns: [String] { [] }
  /// False when no gradient must reach the backbone: it then runs with recording off and
  /// keeps no activations.
  open var needsBackboneGradient: Bool { true }
  /// True when `logits(_:)` reads every block's output (`BackboneOutput.hiddenStates`), as
  /// side networks (LST, UniPT) do; they get them without gradient when
  /// `needsBackboneGradient` is false.
  open var needsHiddenStates: Bool { false }

  // MARK: BackboneHooks (defaults change nothing)

  /// Rows the method keeps at the front of the final sequence.
  open var insertedPrefixTokens: Int { 0 }
  /// Whether the method overrides `attentionBranch`, `mlpBranch` or `linear`. True by default
  /// (always correct); methods that only touch the sequence between blocks say false, so the
  /// backbone's blocks run on fused ops that keep less for backward.
  open var usesBlockInternals: Bool { true }
  /// The sequence entering block 0.
  open func tokens(_ x: Tensor) -> Tensor { x }
  /// The sequence entering block `index`.
  open func beforeBlock(_ index: Int, _ x: Tensor) -> Tensor { x }
  /// The output of block `index`.
  open func afterBlock(_ index: Int, _ x: Tensor) -> Tensor { x }
  /// The attention residual branch of block `index`.
  open func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// The MLP residual branch of block `index`.
  open func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor { output }
  /// A linear layer inside a block.
  open func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor { output }

  // MARK: Forward

  /// Logits [B, classes] from the backbone's output: the head on the pooled features.
  open func logits(_ output: BackboneOutput) -> Tensor { head(output.features) }

  /// Logits [B, classes] of `pixels` [B, C, H, W]: the backbone with this method's hooks (with
  /// recording off when the method needs no backbone gradient), then `logits(_:)`.
  ///
  /// Open so that a method that also reads the pixels themselves (HST's side network has its own
  /// convolutional stem on the image) can keep them for its `logits(_:)`; an override must still
  /// return the logits of `pixels`.
  open func callAsFunction(_ pixels: Tensor) -> Tensor {
    let output: BackboneOutput
    if needsBackboneGradient {
      output = backbone.forward(pixels, hooks: self, hiddenStates: needsHiddenStates)
    } else {
      output = withNoGrad {
        backbone.forward(pixels, hooks: self, hiddenStates: needsHiddenStates)
      }
    }
    return logits(output)
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

  /// Backbone elements, not counting its own classifier heads (which the method replaces).
  public var backboneCount: Int {
    backbone.namedParameters().filter {
      !$0.name.hasPrefix("head.") && !$0.name.hasPrefix("head_dist.")
    }
    .reduce(0) { $0 + $1.tensor.count }
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

  /// Loads the checkpoint tensors (the trainable ones and `stateBuffers`) by name. Every such
  /// name must be present with its shape and nothing else may be: otherwise `StateDictError`
  /// (naming `source`), and nothing is changed.
  public func loadTrainableState(_ state: [String: Tensor], source: String? = nil) throws {
    let targets = checkpointTensors()
    let known = Set(targets.map(\.name))
    let missing = targets.map(\.name).filter { state[$0] == nil }
    let unexpected = state.keys.filter { !known.contains($0) }.sorted()
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
