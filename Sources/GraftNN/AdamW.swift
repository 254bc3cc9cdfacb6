import Foundation

/// Adam with decoupled weight decay, as PyTorch's `torch.optim.AdamW` (no amsgrad).
///
/// For each parameter with a gradient `g`, at its `t`-th update:
///
///     p = p·(1 − lr·weightDecay)
///     m = m + (1 − β₁)·(g − m)
///     v = β₂·v + (1 − β₂)·g²
///     p = p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps)
///
/// State per parameter: `exp_avg` (m), `exp_avg_sq` (v) and `step` (t, a scalar).
public final class AdamW: Optimizer {
  /// The parameter groups.
  public var groups: [ParameterGroup] {
    didSet { OptimizerState.checkSameParameters(oldValue, groups) }
  }
  /// Multiplies every group's learning rate.
  public var learningRateScale: Float = 1
  /// Decay rate of the first moment. Double, as PyTorch's: `1 − β` is formed before rounding
  /// to Float, and with β₂ = 0.999 a Float β₂ would be off by 1.3e-5 relative in `1 − β₂`.
  public let beta1: Double
  /// Decay rate of the second moment.
  public let beta2: Double
  /// Added to the bias-corrected root of the second moment.
  public let eps: Float
  private let state: OptimizerState

  /// AdamW over `groups`, each with its own learning rate and weight decay.
  public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.999), eps: Float = 1e-8) {
    precondition(
      (0..<1).contains(betas.0) && (0..<1).contains(betas.1), "AdamW betas must lie in [0, 1)")
    precondition(eps >= 0, "AdamW eps must be ≥ 0")
    self.groups = groups
    (beta1, beta2) = betas
    self.eps = eps
    state = OptimizerState(groups: groups, kinds: ["exp_avg", "exp_avg_sq"], tracksSteps: true)
  }

  /// AdamW over one group of named parameters (PyTorch's defaults: lr 1e-3, decay 0.01).
  public convenience init(
    parameters: [(name: String, tensor: Tensor)], lr: Float = 1e-3,
    betas: (Double, Double) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0.01
  ) {
    self.init(
      groups: [ParameterGroup(parameters: parameters, lr: lr, weightDecay: weightDecay)],
      betas: betas, eps: eps)
  }

  /// One update of every parameter that has a gradient.
  public func step() {
    for (g, group) in groups.enumerated() {
      let lr = Double(group.lr * learningRateScale)
      let wd = Double(group.weightDecay)
      for (i, (name, p)) in group.parameters.enumerated() {
        guard let grad = p.grad else { continue }
        precondition(grad.count == p.count, "gradient of '\(name)' has shape \(grad.shape)")
        let buffers = state.ensureBuffers(g, i) {
          [Tensor(shape: p.shape), Tensor(shape: p.shape)]
        }
        state.steps[g][i] += 1
        let t = Double(state.steps[g][i])
        // Scalars in double, as PyTorch computes them in Python, then rounded once.
        let decay = Float(1 - lr * wd)
        let stepSize = Float(lr / (1 - Foundation.pow(beta1, t)))
        let correction2 = Float((1 - Foundation.pow(beta2, t)).squareRoot())
        let (w1, b2, w2, eps) = (Float(1 - beta1), Float(beta2), Float(1 - beta2), eps)
        let (pp, gp) = (p.pointer, grad.pointer)
        let (mp, vp) = (buffers[0].pointer, buffers[1].pointer)
        Parallel.forRange(p.count, grain: 8192) { r in
          for k in r {
            let gk = gp[k]
            let m = mp[k] + w1 * (gk - mp[k])
            let v = vp[k] * b2 + w2 * gk * gk
            mp[k] = m
            vp[k] = v
            let denom = v.squareRoot() / correction2 + eps
            pp[k] = pp[k] * decay - stepSize * m / denom
          }
        }
      }
    }
  }

  /// `exp_avg`, `exp_avg_sq` and `step` per parameter, keyed `"<group>.<parameter>.<kind>"`.
  public func stateDict() -> [String: Tensor] { state.stateDict(groups: groups) }

  /// Restores state written by `stateDict`.
  public func loadStateDict(_ dict: [String: Tensor]) throws {
    try state.load(dict, groups: groups)
  }
}
