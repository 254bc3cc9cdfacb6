/// Stochastic gradient descent as PyTorch's `torch.optim.SGD`.
///
/// For each parameter with a gradient `g`:
///
///     d = g + weightDecay·p                       (coupled L2 decay)
///     b = d                   at the first update (momentum ≠ 0)
///     b = momentum·b + (1 − dampening)·d          afterwards
///     d = d + momentum·b      (Nesterov)   or   d = b
///     p = p − lr·d
///
/// State: one `momentum_buffer` per parameter when momentum is non-zero.
public final class SGD: Optimizer {
  /// The parameter groups.
  public var groups: [ParameterGroup] {
    didSet { OptimizerState.checkSameParameters(oldValue, groups) }
  }
  /// Multiplies every group's learning rate.
  public var learningRateScale: Float = 1
  /// Momentum factor (0 disables the buffer).
  public let momentum: Float
  /// Fraction of each new gradient left out of the buffer.
  public let dampening: Float
  /// Nesterov momentum.
  public let nesterov: Bool
  private let state: OptimizerState

  /// SGD over `groups`, each with its own learning rate and weight decay.
  public init(
    groups: [ParameterGroup], momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false
  ) {
    precondition(momentum >= 0, "SGD momentum must be ≥ 0, got \(momentum)")
    precondition(
      !nesterov || (momentum > 0 && dampening == 0),
      "Nesterov momentum needs momentum > 0 and zero dampening")
    self.groups = groups
    self.momentum = momentum
    self.dampening = dampening
    self.nesterov = nesterov
    state = OptimizerState(
      groups: groups, kinds: momentum == 0 ? [] : ["momentum_buffer"], tracksSteps: false)
  }

  /// SGD over one group of named parameters.
  public convenience init(
    parameters: [(name: String, tensor: Tensor)], lr: Float, momentum: Float = 0,
    dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false
  ) {
    self.init(
      groups: [ParameterGroup(parameters: parameters, lr: lr, weightDecay: weightDecay)],
      momentum: momentum, dampening: dampening, nesterov: nesterov)
  }

  /// One update of every parameter that has a gradient.
  public func step() {
    for (g, group) in groups.enumerated() {
      let lr = group.lr * learningRateScale
      let wd = group.weightDecay
      for (i, (name, p)) in group.parameters.enumerated() {
        guard let grad = p.grad else { continue }
        precondition(grad.count == p.count, "gradient of '\(name)' has shape \(grad.shape)")
        let (pp, gp) = (p.pointer, grad.pointer)
        if momentum == 0 {
          Parallel.forRange(p.count, grain: 16_384) { r in
            for k in r {
              let d = wd == 0 ? gp[k] : gp[k] + wd * pp[k]
              pp[k] -= lr * d
            }
          }
          continue
        }
        let fresh = state.buffers[g][i] == nil
        let bp = state.ensureBuffers(g, i) { [Tensor(shape: p.shape)] }[0].pointer
        let (m, keep, nesterov) = (momentum, 1 - dampening, nesterov)
        Parallel.forRange(p.count, grain: 16_384) { r in
          for k in r {
            var d = wd == 0 ? gp[k] : gp[k] + wd * pp[k]
            let b = fresh ? d : m * bp[k] + keep * d
            bp[k] = b
            d = nesterov ? d + m * b : b
            pp[k] -= lr * d
          }
        }
      }
    }
  }

  /// The momentum buffers, keyed `"<group>.<parameter>.momentum_buffer"`.
  public func stateDict() -> [String: Tensor] { state.stateDict(groups: groups) }

  /// Restores momentum buffers written by `stateDict`.
  public func loadStateDict(_ dict: [String: Tensor]) throws {
    try state.load(dict, groups: groups)
  }
}
