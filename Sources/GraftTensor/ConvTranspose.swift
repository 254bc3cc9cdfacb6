// Transposed 2-D convolution (PyTorch's `conv_transpose2d`), built from differentiable ops so that
// its backward pass is the composition of theirs.

extension Tensor {
  /// Transposed convolution of `[N, C, H, W]` with `weight` `[C, O, kh, kw]` (PyTorch's layout for
  /// `ConvTranspose2d`, groups 1, dilation 1).
  ///
  /// Computed as PyTorch defines it: zeros inserted between input pixels (`stride − 1` of them),
  /// a border of `k − 1 − padding` zeros (plus `outputPadding` at the bottom and right), then an
  /// ordinary convolution with the kernel flipped and its channel axes swapped. The zero-filled
  /// input costs about stride² more arithmetic than a direct scatter; the sizes it serves (ViTDet's
  /// 2×2 stride-2 upsampling on small maps) keep that cheap.
  ///
  /// - Parameters:
  ///   - weight: `[C, O, kh, kw]`.
  ///   - bias: `[O]`.
  ///   - stride: spacing of the input pixels in the output, (height, width).
  ///   - padding: rows/columns removed from each side of the full output; at most `k − 1`.
  ///   - outputPadding: rows/columns added at the bottom/right; less than the stride.
  /// - Returns: `[N, O, Ho, Wo]` with `Ho = (H − 1)·sh − 2·ph + kh + oph` (and so for W).
  public func convTranspose2d(
    weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
    padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0)
  ) -> Tensor {
    precondition(rank == 4, "convTranspose2d: input \(shape) must be [N, C, H, W]")
    precondition(
      weight.rank == 4 && weight.shape[0] == shape[1],
      "convTranspose2d: weight \(weight.shape) must be [C = \(shape[1]), O, kh, kw]")
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    let (kh, kw) = (weight.shape[2], weight.shape[3])
    precondition(
      stride.0 >= 1 && stride.1 >= 1 && padding.0 >= 0 && padding.1 >= 0
        && padding.0 <= kh - 1 && padding.1 <= kw - 1 && outputPadding.0 >= 0
        && outputPadding.1 >= 0 && outputPadding.0 < stride.0 && outputPadding.1 < stride.1,
      "convTranspose2d: stride \(stride) ≥ 1, 0 ≤ padding \(padding) ≤ kernel − 1 and "
        + "0 ≤ outputPadding \(outputPadding) < stride")
    var x = self
    if stride != (1, 1) {
      // [N, C, H, 1, W, 1] padded to [N, C, H, sh, W, sw]: each pixel followed by zeros.
      x = reshaped([n, c, h, 1, w, 1])
        .padded([(0, stride.0 - 1), (0, 0), (0, stride.1 - 1)])
        .reshaped([n, c, h * stride.0, w * stride.1])
        .slice(2, 0..<((h - 1) * stride.0 + 1))
        .slice(3, 0..<((w - 1) * stride.1 + 1))
    }
    let (ph, pw) = (kh - 1 - padding.0, kw - 1 - padding.1)
    x = x.padded([(ph, ph + outputPadding.0), (pw, pw + outputPadding.1)])
    let flipped = weight.permuted([1, 0, 2, 3])
      .indexSelect(2, Array((0..<kh).reversed()))
      .indexSelect(3, Array((0..<kw).reversed()))
    return x.conv2d(weight: flipped, bias: bias)
  }
}
