import Foundation

// Classification losses, fused with their backward passes.

extension Tensor {
  /// Mean cross-entropy of `logits` [N, C] against class indices `targets` (N), as PyTorch's
  /// `F.cross_entropy(logits, targets, label_smoothing:, ignore_index:)`.
  ///
  /// With smoothing ε each row's target is `(1 − ε)·onehot + ε/C`. Rows whose target equals
  /// `ignoreIndex` contribute nothing; the mean is over the others (NaN if none, as PyTorch).
  public func crossEntropy(targets: [Int], labelSmoothing: Float = 0, ignoreIndex: Int = -100)
    -> Tensor
  {
    precondition(rank == 2, "crossEntropy expects logits [N, C], got \(shape)")
    let (n, c) = (shape[0], shape[1])
    precondition(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows")
    for t in targets where t != ignoreIndex {
      precondition(t >= 0 && t < c, "crossEntropy: target \(t) outside 0..<\(c)")
    }
    let logProbs = GradMode.withNoGrad { logSoftmax(axis: 1) }
    let lp = logProbs.pointer
    let eps = labelSmoothing
    var total = 0.0
    var used = 0
    for i in 0..<n where targets[i] != ignoreIndex {
      let row = lp + i * c
      var rowSum: Float = 0
      if eps > 0 { for j in 0..<c { rowSum += row[j] } }
      total += Double(-(1 - eps) * row[targets[i]] - eps / Float(c) * rowSum)
      used += 1
    }
    let out = Tensor(scalar: Float(total / Double(used)))
    return out.recording("cross_entropy", [self], saving: [logProbs]) { g in
      let gi = Tensor(shape: [n, c])
      let scale = g.item / Float(used)
      let pd = gi.pointer
      for i in 0..<n where targets[i] != ignoreIndex {
        for j in 0..<c {
          let target = (j == targets[i] ? 1 - eps : 0) + eps / Float(c)
          pd[i * c + j] = (fastExp(lp[i * c + j]) - target) * scale
        }
      }
      return [gi]
    }
  }

  /// Mean cross-entropy against soft targets `probabilities` [N, C] (Mixup / CutMix labels):
  /// `mean_n Σ_c −p_nc · log softmax(x)_nc`.
  public func crossEntropy(probabilities: Tensor) -> Tensor {
    precondition(
      rank == 2 && probabilities.shape == shape,
      "crossEntropy: logits \(shape) vs target probabilities \(probabilities.shape)")
    return -(logSoftmax(axis: 1) * probabilities.detached()).sum() * (1 / Float(shape[0]))
  }

  /// Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1−p).
  /// Identity when not `training` or `p` is 0.
  public func dropout(p: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
    precondition(p >= 0 && p < 1, "dropout probability \(p) outside [0, 1)")
    guard training && p > 0 else { return self }
    let mask = Tensor(shape: shape, zeroed: false)
    let keep = 1 / (1 - p)
    for i in 0..<count { mask.pointer[i] = generator.nextFloat() >= p ? keep : 0 }
    let out = zipMap(self, mask, MulKernel())
    return out.recording("dropout", [self], saving: [mask]) { g in [zipMap(g, mask, MulKernel())] }
  }

  /// Rows of the table `weight` [V, D] picked by `indices`, shaped `indexShape + [D]`
  /// (PyTorch's `F.embedding`); the gradient scatter-adds into the picked rows.
  public static func embedding(_ weight: Tensor, indices: [Int], shape indexShape: [Int]) -> Tensor
  {
    precondition(weight.rank == 2, "embedding table must be [V, D], got \(weight.shape)")
    precondition(
      indices.count == indexShape.reduce(1, *), "embedding: indices do not fill \(indexShape)")
    return weight.indexSelect(0, indices).reshaped(indexShape + [weight.shape[1]])
  }
}
