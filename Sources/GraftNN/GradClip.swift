/// Scales all gradients so their global 2-norm is at most `maxNorm`, as PyTorch's
/// `torch.nn.utils.clip_grad_norm_`: the norm is taken over every element of every gradient
/// (tensors without a gradient are skipped); when `maxNorm / (norm + 1e-6) < 1` each gradient is
/// multiplied by that factor in place. Returns the norm before clipping. A non-finite norm is
/// returned and leaves the gradients as they are, so the caller can skip the step.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
  precondition(maxNorm > 0, "clipGradNorm needs maxNorm > 0")
  var seen = Set<ObjectIdentifier>()
  let grads = parameters.filter { seen.insert(ObjectIdentifier($0)).inserted }.compactMap(\.grad)
  var total = 0.0
  for g in grads {
    let p = g.pointer
    for i in 0..<g.count { total += Double(p[i]) * Double(p[i]) }
  }
  let norm = total.squareRoot()
  let coefficient = Float(Double(maxNorm) / (norm + 1e-6))
  if norm.isFinite && coefficient < 1 {
    for g in grads {
      let p = g.pointer
      for i in 0..<g.count { p[i] *= coefficient }
    }
  }
  return Float(norm)
}

extension Optimizer {
  /// Clips the gradients of all this optimizer's parameters; see `clipGradNorm(_:maxNorm:)`.
  @discardableResult
  public func clipGradNorm(maxNorm: Float) -> Float {
    GraftNN.clipGradNorm(parameters, maxNorm: maxNorm)
  }
}
