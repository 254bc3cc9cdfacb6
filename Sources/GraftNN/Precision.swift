import GraftTensor

/// How a frozen backbone keeps its weights (`backbone.precision`, `--precision`).
public enum BackbonePrecision: String, CaseIterable, Sendable, Codable {
  /// Float32 weights and products (the reference).
  case fp32
  /// Every frozen matrix in bfloat16, its products on oneDNN's BF16 matmul with FP32
  /// accumulation; activations, trained tensors and their gradients stay FP32.
  case bf16
}

extension Module {
  /// Gives every frozen matrix of this module (a 2-D parameter that does not train: the linear
  /// layers' weights) a BF16 copy that its products then use (`Tensor.storeInBF16`). Call it
  /// after the method has chosen what trains. Returns how many matrices now run in BF16: none
  /// on a CPU without native BF16 (`BF16Support.unavailableReason` says why).
  @discardableResult
  public func storeFrozenMatricesInBF16() -> Int {
    var count = 0
    for (_, tensor) in namedParameters() where tensor.storeInBF16() { count += 1 }
    return count
  }

  /// Drops every BF16 copy (`storeFrozenMatricesInBF16`): the module runs in FP32 again.
  public func dropBF16Copies() {
    for (_, tensor) in namedParameters() { tensor.dropBF16() }
  }
}
