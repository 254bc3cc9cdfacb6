import Foundation

/// One recorded operation: the inputs that need a gradient and how to map the output's gradient
/// to theirs. Nodes are created only when grad mode is on and some input requires a gradient, so
/// a frozen forward pass records nothing and keeps no activations alive.
final class GradFn {
  let name: String
  /// Inputs aligned with the gradients `backward` returns; nil where no gradient is wanted.
  let inputs: [Tensor?]
  let backward: (Tensor) -> [Tensor?]
  /// Tensors kept for backward. Holding them here (not only through the closure's raw pointers)
  /// keeps them alive exactly as long as the node, and makes the byte count exact.
  let saved: [Tensor]
  let savedBytes: Int

  init(
    name: String, inputs: [Tensor?], saved: [Tensor], backward: @escaping (Tensor) -> [Tensor?]
  ) {
    self.name = name
    self.inputs = inputs
    self.backward = backward
    self.saved = saved
    self.savedBytes = saved.reduce(0) { $0 + $1.byteCount }
    TapeStats.saved.add(savedBytes, ordering: .relaxed)
    TapeStats.nodes.add(1, ordering: .relaxed)
  }

  deinit {
    TapeStats.saved.subtract(savedBytes, ordering: .relaxed)
    TapeStats.nodes.subtract(1, ordering: .relaxed)
  }
}

/// Whether ops record onto the tape. The flag is per thread (data-loader workers run tensor ops
/// in transforms while the trainer switches recording on and off); it starts on in every thread.
public enum GradMode {
  /// Thread-specific slot: unset (nil) means recording is on.
  private static let disabledKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
    return key
  }()

  static var enabled: Bool {
    get { pthread_getspecific(disabledKey) == nil }
    set { pthread_setspecific(disabledKey, newValue ? nil : UnsafeRawPointer(bitPattern: 1)) }
  }

  /// True while ops record their backward.
  public static var isEnabled: Bool { enabled }

  /// Runs `body` with recording off: nothing it computes keeps activations or gets gradients.
  public static func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let previous = enabled
    enabled = false
    defer { enabled = previous }
    return try body()
  }

  /// Runs `body` with recording on (inside a no-grad scope, for instance).
  public static func withGrad<T>(_ body: () throws -> T) rethrows -> T {
    let previous = enabled
    enabled = true
    defer { enabled = previous }
    return try body()
  }
}

/// Runs `body` without recording; shorthand for `GradMode.withNoGrad`.
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
  try GradMode.withNoGrad(body)
}

extension Tensor {
  /// Records `backward` for this freshly computed tensor when any of `inputs` needs a gradient.
  ///
  /// `saving` lists every tensor the closure reads in backward: the node keeps them alive and
  /// counts their bytes. The closure returns one gradient per input, in order, or nil for inputs
  /// that need none.
  @discardableResult
  func recording(
    _ name: String, _ inputs: [Tensor], saving: [Tensor] = [],
    _ backward: @escaping (Tensor) -> [Tensor?]
  ) -> Tensor {
    guard GradMode.enabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
    gradFn = GradFn(
      name: name, inputs: inputs.map { $0.requiresGrad ? $0 : nil }, saved: saving,
      backward: backward)
    return self
  }

  /// Name of the op that produced this tensor, or nil for a leaf.
  public var gradFnName: String? { gradFn?.name }

  /// Back-propagates from this tensor. A scalar (one element) seeds with 1; otherwise pass
  /// `gradient` of the same shape. Leaf gradients accumulate into `grad`; the graph is released.
  public func backward(_ gradient: Tensor? = nil) {
    precondition(requiresGrad, "backward() on a tensor that does not require a gradient")
    let seed: Tensor
    if let g = gradient {
      precondition(g.shape == shape, "backward gradient shape \(g.shape) != \(shape)")
      seed = g
    } else {
      precondition(count == 1, "backward() without a gradient needs a scalar, shape is \(shape)")
      seed = Tensor.ones(shape)
    }
    let order = topologicalOrder()
    var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
    GradMode.withNoGrad {
      for node in order.reversed() {
        guard let g = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
        if let fn = node.gradFn {
          let grads = fn.backward(g)
          precondition(grads.count == fn.inputs.count, "\(fn.name): wrong number of gradients")
          for (input, grad) in zip(fn.inputs, grads) {
            guard let input, let grad else { continue }
            precondition(
              grad.shape == input.shape,
              "\(fn.name): gradient shape \(grad.shape) for input of shape \(input.shape)")
            let key = ObjectIdentifier(input)
            if let existing = pending[key] {
              pending[key] = existing + grad
            } else {
              pending[key] = grad
            }
          }
          node.gradFn = nil  // release saved activations as soon as they are used
        } else if node.leafRequiresGradFlag {
          node.accumulateGrad(g)
        }
      }
    }
  }

  var leafRequiresGradFlag: Bool { requiresGrad && gradFn == nil }

  /// Adds `g` into `grad`, owning a private copy so in-place updates never alias another tensor.
  func accumulateGrad(_ g: Tensor) {
    if let existing = grad {
      let p = existing.pointer
      let q = g.pointer
      for i in 0..<count { p[i] += q[i] }
    } else {
      grad = g.copy().reshaped(shape)
    }
  }

  /// Nodes reachable from self through recorded ops, inputs before outputs.
  private func topologicalOrder() -> [Tensor] {
    var order: [Tensor] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(Tensor, Bool)] = [(self, false)]
    while let (node, expanded) = stack.popLast() {
      if expanded {
        order.append(node)
        continue
      }
      guard visited.insert(ObjectIdentifier(node)).inserted else { continue }
      stack.append((node, true))
      if let fn = node.gradFn {
        for case let input? in fn.inputs where !visited.contains(ObjectIdentifier(input)) {
          stack.append((input, false))
        }
      }
    }
    return order
  }
}
