/// Checks a differentiable function's backward pass against central finite differences.
///
/// The function's output is reduced to a scalar with fixed random weights, `L = Σ w·f(x)` (in
/// double precision), so every output element contributes. Each input element is perturbed by
/// ±`epsilon` and `(L⁺ − L⁻) / 2ε` is compared with the gradient `backward()` produced.
public struct GradientCheck {
  /// Largest |analytic − numeric| over all checked elements.
  public var maxAbsoluteError: Float = 0
  /// Largest |analytic − numeric| / max(|analytic|, |numeric|, `floor`).
  public var maxRelativeError: Float = 0
  /// Where the worst relative error occurred: input number and flat element index.
  public var worst: (input: Int, element: Int) = (0, 0)
  /// True when every element satisfied |a − n| ≤ atol + rtol·|n|.
  public var passed = true

  /// Runs the check on `inputs` (each is marked `requiresGrad`) for function `f`.
  ///
  /// Tolerances suit Float32 with `epsilon` around 1e-2…1e-3; functions with kinks (relu, max,
  /// clamp) must be probed away from them.
  public static func run(
    _ inputs: [Tensor], epsilon: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 2e-2,
    seed: UInt64 = 7, _ f: ([Tensor]) -> Tensor
  ) -> GradientCheck {
    for x in inputs {
      x.requiresGrad = true
      x.grad = nil
    }
    let probeShape = GradMode.withNoGrad { f(inputs).shape }
    var rng = RandomGenerator(seed: seed)
    let weights = Tensor.rand(probeShape, low: 0.5, high: 1.5, generator: &rng)
    func loss() -> Double {
      GradMode.withNoGrad {
        let y = f(inputs)
        var acc = 0.0
        for i in 0..<y.count { acc += Double(y.pointer[i]) * Double(weights.pointer[i]) }
        return acc
      }
    }
    let y = f(inputs)
    (y * weights).sum().backward()

    var result = GradientCheck()
    for (n, x) in inputs.enumerated() {
      let analytic = x.grad?.scalars ?? [Float](repeating: 0, count: x.count)
      for i in 0..<x.count {
        let original = x.pointer[i]
        x.pointer[i] = original + epsilon
        let plus = loss()
        x.pointer[i] = original - epsilon
        let minus = loss()
        x.pointer[i] = original
        let numeric = Float((plus - minus) / (2 * Double(epsilon)))
        let err = Swift.abs(analytic[i] - numeric)
        let rel = err / Swift.max(Swift.abs(analytic[i]), Swift.abs(numeric), 1e-3)
        result.maxAbsoluteError = Swift.max(result.maxAbsoluteError, err)
        if rel > result.maxRelativeError {
          result.maxRelativeError = rel
          result.worst = (n, i)
        }
        if err > atol + rtol * Swift.abs(numeric) { result.passed = false }
      }
    }
    return result
  }

  /// A one-line summary for test failure messages.
  public var summary: String {
    "max abs error \(maxAbsoluteError), max rel error \(maxRelativeError) at input \(worst.input) element \(worst.element)"
  }
}
