import CKernels
import Foundation

/// Where an op's input gradient goes: into the node that produced the input, or into a leaf.
enum GradEdge {
  case node(GradFn)
  case leaf(Tensor)
}

/// One recorded operation: where its inputs' gradients go and how to compute them from the
/// output's gradient. Nodes are created only when grad mode is on and some input requires a
/// gradient, so a frozen forward pass records nothing and keeps no activations alive.
///
/// A node refers to the *nodes* of its inputs, not to the input tensors: an intermediate result
/// stays alive only if some backward actually reads it (it is then in `saved`). After backward
/// passes through a node, `release()` drops its closure and saved tensors at once.
final class GradFn {
  let name: String
  /// One per input, aligned with the gradients `backward` returns; nil where none is wanted.
  private(set) var edges: [GradEdge?]
  /// Input shapes, to check every gradient.
  private(set) var inputShapes: [[Int]]
  private(set) var backward: ((Tensor) -> [Tensor?])?
  /// Tensors kept for backward. Holding them here (not only through the closure's raw pointers)
  /// keeps them alive exactly as long as needed, and makes the byte count exact.
  private(set) var saved: [Tensor]
  private(set) var savedBytes: Int

  init(
    name: String, edges: [GradEdge?], inputShapes: [[Int]], saved: [Tensor],
    backward: @escaping (Tensor) -> [Tensor?]
  ) {
    self.name = name
    self.edges = edges
    self.inputShapes = inputShapes
    self.backward = backward
    self.saved = saved
    self.savedBytes = saved.reduce(0) { $0 + $1.byteCount }
    TapeStats.saved.add(savedBytes, ordering: .relaxed)
    TapeStats.nodes.add(1, ordering: .relaxed)
  }

  /// True once backward has gone through this node.
  var isReleased: Bool { backward == nil }

  /// Frees what backward needed; the node stays as an empty marker.
  func release() {
    guard backward != nil else { return }
    TapeStats.saved.subtract(savedBytes, ordering: .relaxed)
    TapeStats.nodes.subtract(1, ordering: .relaxed)
    backward = nil
    saved = []
    edges = []
    inputShapes = []
    savedBytes = 0
  }

  deinit { release() }
}

/// Whether ops record onto the tape. The flag is per thread (data-loader workers run tensor ops
/// in transforms while the trainer switches recording on and off); it starts on in every thread.
public enum GradMode {
  /// The calling thread's flag lives in C thread-local storage (`graft_grad_disabled`).
  static var enabled: Bool {
    get { graft_grad_disabled() == 0 }
    set { graft_set_grad_disabled(newValue ? 0 : 1) }
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
    let edges: [GradEdge?] = inputs.map { input in
      if let fn = input.gradFn { return .node(fn) }
      return input.requiresGrad ? .leaf(input) : nil
    }
    gradFn = GradFn(
      name: name, edges: edges, inputShapes: inputs.map(\.shape), saved: saving,
      backward: backward)
    return self
  }

  /// Name of the op that produced this tensor, or nil for a leaf.
  public var gradFnName: String? { gradFn?.name }

  /// Back-propagates from this tensor. A scalar (one element) seeds with 1; otherwise pass
  /// `gradient` of the same shape. Leaf gradients accumulate into `grad`. Each node's saved
  /// tensors are freed as soon as its gradient has been passed on, so a graph can be
  /// back-propagated once (as PyTorch without `retain_graph`).
  public func backward(_ gradient: Tensor? = nil) {
    backward(gradient, leafGradientIsFinal: nil)
  }

  /// `backward(gradient)`; `leafGradientIsFinal`, when given, is called for each leaf as soon
  /// as every op of the graph that uses it has passed its gradient back (the leaf's `grad` will
  /// not change again in this call), as PyTorch's post-accumulate-grad hooks, on which DDP
  /// overlaps its allreduce with the rest of the backward pass. Leaves whose users are never
  /// reached are not reported.
  public func backward(_ gradient: Tensor?, leafGradientIsFinal: ((Tensor) -> Void)?) {
    precondition(requiresGrad, "backward() on a tensor that does not require a gradient")
    let seed: Tensor
    if let g = gradient {
      precondition(g.shape == shape, "backward gradient shape \(g.shape) != \(shape)")
      seed = g
    } else {
      precondition(count == 1, "backward() without a gradient needs a scalar, shape is \(shape)")
      seed = Tensor.ones(shape)
    }
    guard let root = gradFn else {
      accumulateGrad(seed)
      return
    }
    precondition(
      !root.isReleased,
      "backward() through \(root.name) a second time: its saved tensors were already freed")
    var order: [GradFn?] = Tensor.topologicalOrder(from: root)
    var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
    // With a hook: how many edges of the graph still lead to each leaf.
    var leafUses: [ObjectIdentifier: Int] = [:]
    if leafGradientIsFinal != nil {
      for case let fn? in order {
        for case .leaf(let leaf)? in fn.edges { leafUses[ObjectIdentifier(leaf), default: 0] += 1 }
      }
    }
    GradMode.withNoGrad {
      for position in stride(from: order.count - 1, through: 0, by: -1) {
        guard let fn = order[position] else { continue }
        order[position] = nil
        guard let g = pending.removeValue(forKey: ObjectIdentifier(fn)) else { continue }
        guard let backward = fn.backward else {
          preconditionFailure(
            "backward() through \(fn.name) a second time: its saved tensors were already freed")
        }
        let grads = backward(g)
        precondition(grads.count == fn.edges.count, "\(fn.name): wrong number of gradients")
        for (i, (edge, grad)) in zip(fn.edges, grads).enumerated() {
          if let leafGradientIsFinal, case .leaf(let leaf)? = edge {
            if let grad {
              precondition(
                grad.shape == fn.inputShapes[i],
                "\(fn.name): gradient shape \(grad.shape) for input of shape \(fn.inputShapes[i])")
              leaf.accumulateGrad(grad)
            }
            let key = ObjectIdentifier(leaf)
            leafUses[key]! -= 1
            if leafUses[key] == 0 { leafGradientIsFinal(leaf) }
            continue
          }
          guard let edge, let grad else { continue }
          precondition(
            grad.shape == fn.inputShapes[i],
            "\(fn.name): gradient shape \(grad.shape) for input of shape \(fn.inputShapes[i])")
          switch edge {
          case .leaf(let leaf):
            leaf.accumulateGrad(grad)
          case .node(let input):
            let key = ObjectIdentifier(input)
            pending[key] = pending[key].map { $0 + grad } ?? grad
          }
        }
        fn.release()  // free saved activations as soon as they are used
      }
    }
  }

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

  /// Nodes reachable from `root`, inputs before outputs (iterative: graphs can be deep).
  private static func topologicalOrder(from root: GradFn) -> [GradFn?] {
    var order: [GradFn?] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(GradFn, Bool)] = [(root, false)]
    while let (fn, expanded) = stack.popLast() {
      if expanded {
        order.append(fn)
        continue
      }
      guard visited.insert(ObjectIdentifier(fn)).inserted else { continue }
      stack.append((fn, true))
      for case .node(let input)? in fn.edges where !visited.contains(ObjectIdentifier(input)) {
        stack.append((input, false))
      }
    }
    return order
  }
}

/// What the tape holds for one kind of op: how many nodes, and the bytes of the tensors they
/// keep for backward (a tensor shared by several nodes counted once).
public struct TapeEntry: Codable, Equatable, Sendable {
  /// The op's name (`layer_norm_linear`, `attention_projection`, …).
  public var op: String
  /// Live nodes of that op.
  public var nodes: Int
  /// Bytes of the saved tensors these nodes are the first to hold.
  public var bytes: Int
}

extension Tensor {
  /// The backward function of the op that produced this tensor, on its own: it maps an output
  /// gradient to the input gradients with no tape walk and no accumulation into leaves (for
  /// timing one op's backward, as `graft bench ops` does). Nil for a leaf or a freed node.
  public var opBackward: ((Tensor) -> [Tensor?])? { gradFn?.backward }
}

extension Tensor {
  /// The tape behind this tensor, per op, largest first: what backward from here keeps alive (as
  /// `torch.autograd.graph.saved_tensors_hooks` would show in PyTorch). Tensors in `excluding`
  /// (a model's parameters, which exist anyway) are left out; a tensor saved by several nodes
  /// counts once.
  public func tapeReport(excluding: [Tensor] = []) -> [TapeEntry] {
    guard let root = gradFn else { return [] }
    var seen = Set(excluding.map { ObjectIdentifier($0.storage) })
    var entries: [String: TapeEntry] = [:]
    for case let fn? in Tensor.topologicalOrder(from: root) where !fn.isReleased {
      var entry = entries[fn.name] ?? TapeEntry(op: fn.name, nodes: 0, bytes: 0)
      entry.nodes += 1
      for tensor in fn.saved where seen.insert(ObjectIdentifier(tensor.storage)).inserted {
        entry.bytes += tensor.byteCount
      }
      entries[fn.name] = entry
    }
    return entries.values.sorted { ($0.bytes, $0.op) > ($1.bytes, $1.op) }
  }
}
