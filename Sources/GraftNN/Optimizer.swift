// Parameter groups, the optimizer protocol, and the per-parameter state both optimizers share.

/// Parameters that share a learning rate and a weight decay (PyTorch's `param_groups` entry).
public struct ParameterGroup {
  /// Prefix of this group's keys in the optimizer state dict; the group's index when empty.
  public var name: String
  /// The tensors and their names (the names key the optimizer state).
  public let parameters: [(name: String, tensor: Tensor)]
  /// Base learning rate (before the optimizer's `learningRateScale`).
  public var lr: Float
  /// Weight decay (coupled L2 for SGD, decoupled for AdamW).
  public var weightDecay: Float

  /// A group of named tensors.
  public init(
    name: String = "", parameters: [(name: String, tensor: Tensor)], lr: Float,
    weightDecay: Float = 0
  ) {
    self.name = name
    self.parameters = parameters
    self.lr = lr
    self.weightDecay = weightDecay
  }

  /// True for tensors that conventionally get no weight decay: any tensor of rank ≤ 1 (biases,
  /// norm scales and shifts), and any whose dotted name ends in "bias" or contains "norm",
  /// "token" (cls/dist/register tokens), "pos_embed" or "prompt" (VPT prompts).
  ///
  /// The substring rule is deliberately broad, as timm's; pass another predicate to
  /// `defaultGroups` where a name such as `prompt_proj.weight` should decay.
  public static func isNoDecay(name: String, tensor: Tensor) -> Bool {
    tensor.rank <= 1 || name.hasSuffix("bias")
      || ["norm", "token", "pos_embed", "prompt"].contains { name.contains($0) }
  }

  /// Splits the trainable tensors of `named` into a "decay" group (weight decay
  /// `weightDecay`) and a "no_decay" group (weight decay 0), both at `lr`, by `noDecay`.
  /// Frozen tensors (`requiresGrad` false) are left out, as timm does. Both groups are always
  /// returned, possibly empty, so the state-dict layout does not depend on the model.
  public static func defaultGroups(
    named: [(name: String, tensor: Tensor)], lr: Float, weightDecay: Float,
    noDecay: (String, Tensor) -> Bool = ParameterGroup.isNoDecay
  ) -> [ParameterGroup] {
    let trainable = named.filter { $0.tensor.requiresGrad }
    return [
      ParameterGroup(
        name: "decay", parameters: trainable.filter { !noDecay($0.name, $0.tensor) }, lr: lr,
        weightDecay: weightDecay),
      ParameterGroup(
        name: "no_decay", parameters: trainable.filter { noDecay($0.name, $0.tensor) }, lr: lr,
        weightDecay: 0),
    ]
  }
}

/// A first-order optimizer over parameter groups. Parameters are updated in place, outside the
/// tape; parameters whose `grad` is nil are skipped (and their state left as it was).
public protocol Optimizer: AnyObject {
  /// The groups; `lr` and `weightDecay` may be changed, the parameters may not.
  var groups: [ParameterGroup] { get set }
  /// Multiplies every group's `lr` (a schedule sets it each step; 1 by default).
  var learningRateScale: Float { get set }
  /// Applies one update from the current gradients.
  func step()
  /// Drops every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`).
  func zeroGrad()
  /// A snapshot of the optimizer state as tensors, keyed `"<group>.<parameter>.<buffer>"`.
  func stateDict() -> [String: Tensor]
  /// Replaces the state with `dict` (as written by `stateDict`), after checking every key.
  func loadStateDict(_ dict: [String: Tensor]) throws
}

extension Optimizer {
  /// Every parameter of every group.
  public var parameters: [Tensor] { groups.flatMap { $0.parameters.map(\.tensor) } }

  /// Drops every parameter's gradient.
  public func zeroGrad() { for p in parameters { p.grad = nil } }

  /// Sets `learningRateScale` to `schedule`'s factor at `step`.
  public func apply(_ schedule: some LearningRateSchedule, step: Int) {
    learningRateScale = schedule.factor(at: step)
  }

  /// The learning rate group `index` uses now.
  public func effectiveLearningRate(group index: Int = 0) -> Float {
    groups[index].lr * learningRateScale
  }
}

/// Per-parameter buffers and step counts, laid out like the groups, with the state-dict
/// packing both optimizers share. Buffers are created at a parameter's first update.
final class OptimizerState {
  /// Buffer kinds each parameter gets, e.g. ["exp_avg", "exp_avg_sq"].
  let kinds: [String]
  /// Whether each parameter counts its own updates (saved as `<group>.<parameter>.step`).
  let tracksSteps: Bool
  /// [group][parameter] → one buffer per kind, or nil before the first update.
  var buffers: [[[Tensor]?]]
  /// [group][parameter] → updates applied so far.
  var steps: [[Int]]
  /// Key prefix of each group.
  let prefixes: [String]

  init(groups: [ParameterGroup], kinds: [String], tracksSteps: Bool) {
    self.kinds = kinds
    self.tracksSteps = tracksSteps
    buffers = groups.map { [[Tensor]?](repeating: nil, count: $0.parameters.count) }
    steps = groups.map { [Int](repeating: 0, count: $0.parameters.count) }
    prefixes = OptimizerState.checkedPrefixes(groups)
  }

  /// Group key prefixes (name, or index when unnamed), which must be unique, as must the
  /// parameter names within a group and the tensors across all groups.
  static func checkedPrefixes(_ groups: [ParameterGroup]) -> [String] {
    let prefixes = groups.enumerated().map {
      $0.element.name.isEmpty ? String($0.offset) : $0.element.name
    }
    precondition(
      Set(prefixes).count == prefixes.count, "duplicate parameter group names \(prefixes)")
    var tensors = Set<ObjectIdentifier>()
    for (prefix, group) in zip(prefixes, groups) {
      let names = group.parameters.map(\.name)
      precondition(Set(names).count == names.count, "duplicate parameter names in group \(prefix)")
      for (name, t) in group.parameters {
        precondition(
          tensors.insert(ObjectIdentifier(t)).inserted,
          "parameter '\(name)' appears twice in the optimizer")
      }
    }
    return prefixes
  }

  /// Checks that `new` groups hold the same tensors as `old` (only hyperparameters may change).
  static func checkSameParameters(_ old: [ParameterGroup], _ new: [ParameterGroup]) {
    precondition(
      old.count == new.count
        && zip(old, new).allSatisfy { a, b in
          a.name == b.name && a.parameters.count == b.parameters.count
            && zip(a.parameters, b.parameters).allSatisfy { $0.tensor === $1.tensor }
        },
      "an optimizer's groups may change lr and weightDecay, not their parameters")
  }

  /// The buffers for parameter `i` of group `g`, created by `initial` at its first update.
  func ensureBuffers(_ g: Int, _ i: Int, initial: () -> [Tensor]) -> [Tensor] {
    if let b = buffers[g][i] { return b }
    let b = initial()
    buffers[g][i] = b
    return b
  }

  func key(_ g: Int, _ name: String, _ kind: String) -> String {
    "\(prefixes[g]).\(name).\(kind)"
  }

  /// Copies of every buffer (and step count) under its key.
  func stateDict(groups: [ParameterGroup]) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (g, group) in groups.enumerated() {
      for (i, (name, _)) in group.parameters.enumerated() {
        guard let b = buffers[g][i] else { continue }
        for (kind, t) in zip(kinds, b) { out[key(g, name, kind)] = t.copy() }
        if tracksSteps { out[key(g, name, "step")] = Tensor(scalar: Float(steps[g][i])) }
      }
    }
    return out
  }

  /// Replaces all state by `dict`. A parameter has either all its keys or none (then it starts
  /// afresh); unknown keys, partial sets and wrong shapes throw before anything changes.
  func load(_ dict: [String: Tensor], groups: [ParameterGroup]) throws {
    var known = Set<String>()
    var missing: [String] = []
    var misshaped: [StateDictError.Mismatch] = []
    let allKinds = kinds + (tracksSteps ? ["step"] : [])
    for (g, group) in groups.enumerated() {
      for (name, tensor) in group.parameters {
        let keys = allKinds.map { key(g, name, $0) }
        known.formUnion(keys)
        let present = keys.filter { dict[$0] != nil }
        if !present.isEmpty && present.count < keys.count {
          missing += keys.filter { dict[$0] == nil }
        }
        for (kind, k) in zip(allKinds, keys) {
          guard let value = dict[k] else { continue }
          let expected = kind == "step" ? [] : tensor.shape
          if value.shape != expected {
            misshaped.append(.init(name: k, expected: expected, got: value.shape))
          }
        }
      }
    }
    let unexpected = dict.keys.filter { !known.contains($0) }.sorted()
    if !(missing.isEmpty && unexpected.isEmpty && misshaped.isEmpty) {
      throw StateDictError(missing: missing, unexpected: unexpected, misshaped: misshaped)
    }
    for (g, group) in groups.enumerated() {
      for (i, (name, _)) in group.parameters.enumerated() {
        if let kind = kinds.first, let first = dict[key(g, name, kind)] {
          buffers[g][i] = [first.copy()] + kinds.dropFirst().map { dict[key(g, name, $0)]!.copy() }
          steps[g][i] = tracksSteps ? max(0, Int(dict[key(g, name, "step")]!.item.rounded())) : 0
        } else {
          buffers[g][i] = nil
          steps[g][i] = 0
        }
      }
    }
  }
}

/// The optimizers a run can choose (`optim.name`).
public enum OptimizerKind: String, CaseIterable, Sendable {
  /// SGD with momentum.
  case sgd
  /// AdamW (decoupled weight decay).
  case adamw
}
