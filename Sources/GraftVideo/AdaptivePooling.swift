import GraftTensor

/// PLLaVA's parameter-free pooling of frame tokens: adaptive average pooling over (time, rows,
/// columns) with PyTorch's `AdaptiveAvgPool3d` bins.
public enum AdaptivePooling {
  /// The input positions averaged into each of `output` cells along an axis of `input`:
  /// PyTorch's `start = floor(i·In/Out)`, `end = ceil((i+1)·In/Out)` (bins overlap when `Out`
  /// does not divide `In`, and repeat when `Out > In`).
  public static func bins(input: Int, output: Int) -> [Range<Int>] {
    precondition(input >= 1 && output >= 1, "adaptive pooling of \(input) to \(output)")
    return (0..<output).map { i in
      let start = i * input / output
      let end = ((i + 1) * input + output - 1) / output
      return start..<end
    }
  }

  /// Averages `x` [B, T, H, W, D] over adaptive bins to [B, t, h, w, D] (`shape` = (t, h, w)),
  /// as `AdaptiveAvgPool3d((t, h, w))` on the tokens rearranged to [B, D, T, H, W] and back.
  /// Forward only: the frozen encoder's tokens need no gradient.
  public static func averagePool3D(_ x: Tensor, to shape: (Int, Int, Int)) -> Tensor {
    precondition(x.shape.count == 5, "averagePool3D takes [B, T, H, W, D], got \(x.shape)")
    let (b, t, h, w, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
    let (bt, bh, bw) = (
      bins(input: t, output: shape.0), bins(input: h, output: shape.1),
      bins(input: w, output: shape.2)
    )
    let out = Tensor(shape: [b, shape.0, shape.1, shape.2, d])
    let src = x.pointer
    let dst = out.pointer
    for n in 0..<b {
      for (oi, ti) in bt.enumerated() {
        for (oj, hj) in bh.enumerated() {
          for (ok, wk) in bw.enumerated() {
            let cell = dst + (((n * shape.0 + oi) * shape.1 + oj) * shape.2 + ok) * d
            for ft in ti {
              for fy in hj {
                for fx in wk {
                  let row = src + (((n * t + ft) * h + fy) * w + fx) * d
                  for c in 0..<d { cell[c] += row[c] }
                }
              }
            }
            let scale = 1 / Float(ti.count * hj.count * wk.count)
            for c in 0..<d { cell[c] *= scale }
          }
        }
      }
    }
    return out
  }
}
