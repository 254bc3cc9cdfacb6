// The losses of anchor-free detectors, with torchvision's definitions, built from differentiable
// tensor ops so that their gradients come from the ops' backward passes.

/// How a per-element loss is reduced, as torchvision's `reduction` argument.
public enum LossReduction: Sendable {
  /// The per-element losses.
  case none
  /// Their sum.
  case sum
  /// Their mean.
  case mean

  func apply(_ t: Tensor) -> Tensor {
    switch self {
    case .none: t
    case .sum: t.sum()
    case .mean: t.mean()
    }
  }
}

/// Sigmoid focal loss, generalised IoU loss and binary cross-entropy on logits.
public enum DetectionLosses {
  /// `max(x, 0) − x·t + log(1 + e^−|x|)`, as `binary_cross_entropy_with_logits` (stable for large
  /// |x|); `targets` may be soft (centre-ness) and take no gradient.
  public static func binaryCrossEntropyWithLogits(
    _ logits: Tensor, targets: Tensor, reduction: LossReduction = .mean
  ) -> Tensor {
    precondition(logits.shape == targets.shape, "BCE: \(logits.shape) vs \(targets.shape)")
    let t = targets.detached()
    let loss = logits.relu() - logits * t + ((logits.abs() * -1).exp() + 1).log()
    return reduction.apply(loss)
  }

  /// `torchvision.ops.sigmoid_focal_loss`: `α_t·(1 − p_t)^γ·BCE(x, t)` with `p = σ(x)`,
  /// `p_t = p·t + (1 − p)·(1 − t)`, `α_t = α·t + (1 − α)·(1 − t)` (no α weight when α < 0).
  public static func sigmoidFocalLoss(
    _ logits: Tensor, targets: Tensor, alpha: Float = 0.25, gamma: Float = 2,
    reduction: LossReduction = .none
  ) -> Tensor {
    let t = targets.detached()
    let p = logits.sigmoid()
    let ce = binaryCrossEntropyWithLogits(logits, targets: t, reduction: .none)
    let pT = p * t + (1 - p) * (1 - t)
    var loss = ce * (1 - pT).pow(gamma)
    if alpha >= 0 { loss = (t * alpha + (1 - t) * (1 - alpha)) * loss }
    return reduction.apply(loss)
  }

  /// `torchvision.ops.generalized_box_iou_loss` for row-aligned `[N, 4]` corner boxes:
  /// `1 − IoU + (C − U)/C` with C the smallest enclosing box's area, U the union and `eps` in
  /// both denominators as torchvision.
  /// - Returns: `[N]` for `.none`, else a scalar.
  public static func generalizedBoxIoULoss(
    _ boxes: Tensor, _ targets: Tensor, reduction: LossReduction = .none, eps: Float = 1e-7
  ) -> Tensor {
    precondition(
      boxes.rank == 2 && boxes.shape[1] == 4 && boxes.shape == targets.shape,
      "GIoU loss: boxes \(boxes.shape) and targets \(targets.shape) must both be [N, 4]")
    let n = boxes.shape[0]
    func column(_ t: Tensor, _ i: Int) -> Tensor { t.slice(1, i..<(i + 1)).reshaped([n]) }
    let (x1, y1, x2, y2) = (column(boxes, 0), column(boxes, 1), column(boxes, 2), column(boxes, 3))
    let (gx1, gy1, gx2, gy2) = (
      column(targets, 0), column(targets, 1), column(targets, 2), column(targets, 3)
    )
    let iw = minimum(x2, gx2) - maximum(x1, gx1)
    let ih = minimum(y2, gy2) - maximum(y1, gy1)
    let overlaps = Tensor(
      zip(iw.scalars, ih.scalars).map { $0 > 0 && $1 > 0 ? 1 : 0 }, shape: [n])
    let inter = Tensor.where(overlaps, iw * ih, Tensor.zeros([n]))
    let union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
    let iou = inter / (union + eps)
    let enclosing = (maximum(x2, gx2) - minimum(x1, gx1)) * (maximum(y2, gy2) - minimum(y1, gy1))
    let loss = 1 - (iou - (enclosing - union) / (enclosing + eps))
    return reduction.apply(loss)
  }

  /// Elementwise larger of two same-shaped tensors; the gradient goes to the chosen one.
  static func maximum(_ a: Tensor, _ b: Tensor) -> Tensor {
    Tensor.where(
      Tensor(zip(a.scalars, b.scalars).map { $0 >= $1 ? 1 : 0 }, shape: a.shape), a, b)
  }

  /// Elementwise smaller of two same-shaped tensors; the gradient goes to the chosen one.
  static func minimum(_ a: Tensor, _ b: Tensor) -> Tensor {
    Tensor.where(
      Tensor(zip(a.scalars, b.scalars).map { $0 <= $1 ? 1 : 0 }, shape: a.shape), a, b)
  }
}
