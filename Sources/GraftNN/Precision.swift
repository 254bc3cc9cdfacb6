import GraftTensor

/// How a frozen backbone keeps its weights (`backbone.precision`, `--precision`).
public enum BackbonePrecision: String, CaseIterable, Sendable, Codable {
  /// Float32 weights and products (the reference).
  case fp32
  /// Every frozen matrix in bfloat16, its products on oneDNN's BF16 matmul with FP32
  /// accumulation; activations, trained tensors and their gradients stay FP32.
  case bf16
  /// Inference only: every frozen matrix in s8 with per-output-channel scales, each input row
  /// quantized on the fly (per-token scales), oneDNN's int8 matmul with int32 accumulation;
  /// attention's products in BF16 where the CPU has it.
  case int8
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

  /// Gives every frozen matrix an s8 copy for inference (`Tensor.storeInInt8`). Returns how
  /// many matrices now run in INT8: none on a CPU without native INT8
  /// (`Int8Support.unavailableReason`).
  @discardableResult
  public func storeFrozenMatricesInInt8() -> Int {
    var count = 0
    for (_, tensor) in namedParameters() where tensor.storeInInt8() { count += 1 }
    return count
  }

  /// Drops every BF16 and s8 copy: the module runs in FP32 again.
  public func dropLowPrecisionCopies() {
    for (_, tensor) in namedParameters() {
      tensor.dropBF16()
      tensor.dropInt8()
    }
  }
}

/// Puts `model`'s frozen matrices in `precision`: with bf16 (int8) where the CPU has native BF16
/// (VNNI), every frozen 2-D parameter gets its BF16 (s8) copy (call once the method has chosen
/// what trains; int8 only for inference); with fp32 any copies an earlier run in this process
/// gave them are dropped. Returns the precision in effect and, when it is not the one asked for,
/// why.
@discardableResult
public func applyPrecision(_ precision: BackbonePrecision, to model: Module) -> (
  BackbonePrecision, String?
) {
  model.dropLowPrecisionCopies()
  switch precision {
  case .fp32:
    return (.fp32, nil)
  case .bf16:
    if let reason = BF16Support.unavailableReason {
      return (.fp32, "bf16: \(reason); running FP32")
    }
    model.storeFrozenMatricesInBF16()
    return (.bf16, nil)
  case .int8:
    if let reason = Int8Support.unavailableReason {
      return (.fp32, "int8: \(reason); running FP32")
    }
    model.storeFrozenMatricesInInt8()
    return (.int8, nil)
  }
}
