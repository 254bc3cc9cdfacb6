import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// How a fresh parameter is initialised (timm's `init_weights`).
enum ParameterInit {
  case truncatedNormal(std: Float)
  case normal(std: Float)
  case uniform(bound: Float)
  case constant(Float)
}

/// Where a model's parameters come from, scoped by name as candle's `VarBuilder::pp`: a model's
/// constructor asks its scope for each tensor (`take("cls_token", shape, init)`, or `buffer` for
/// state that is not trained, such as BatchNorm's running statistics) and each child
/// (`child("attn") { ViTAttention(…, source: $0) }`, `linear("qkv", …)`), then, after
/// `super.init()`, `registerEntries(into: self)` registers them under the same names in the same
/// order. Every state-dict name is written once, in the constructor that uses it.
///
/// Three modes share that code:
/// - `random`: fresh tensors drawn from one generator, in the order the constructor asks;
/// - `weights`: a checkpoint's tensors used in place (no copy); a name that is missing or of the
///   wrong shape is recorded (and stands in as zeros) and `stateDictError` reports them all, with
///   the checkpoint's names nobody asked for;
/// - `recording`: no values at all (read-only zero pages that cost no memory), only the names
///   and shapes the constructor asks for, in order: the model's expected state dict.
final class ParameterSource {
  /// What the scopes of one source share.
  private final class Shared {
    enum Mode {
      case random
      case weights([String: Tensor])
      case recording
    }
    let mode: Mode
    var generator: RandomGenerator
    /// Every name asked for, with its shape, in order.
    var requested: [(name: String, shape: [Int])] = []
    var missing: [String] = []
    var misshaped: [StateDictError.Mismatch] = []

    init(mode: Mode, generator: RandomGenerator) {
      self.mode = mode
      self.generator = generator
    }
  }

  private let shared: Shared
  /// The scope's name prefix, with its trailing dot (empty at the root).
  let prefix: String
  /// What this scope handed out, in order: parameters, buffers and child modules, by local name.
  private var entries: [(name: String, entry: Entry)] = []

  private enum Entry {
    case parameter(Tensor)
    case buffer(Tensor)
    case module(Module)
  }

  private init(shared: Shared, prefix: String) {
    self.shared = shared
    self.prefix = prefix
  }

  /// Fresh parameters drawn from `generator`.
  convenience init(generator: RandomGenerator) {
    self.init(shared: Shared(mode: .random, generator: generator), prefix: "")
  }

  /// A checkpoint's tensors, by full state-dict name.
  convenience init(weights: [String: Tensor]) {
    self.init(
      shared: Shared(mode: .weights(weights), generator: RandomGenerator(seed: 0)), prefix: "")
  }

  /// Names and shapes only.
  static func recording() -> ParameterSource {
    ParameterSource(
      shared: Shared(mode: .recording, generator: RandomGenerator(seed: 0)), prefix: "")
  }

  /// The random stream, advanced by every fresh parameter.
  var generator: RandomGenerator { shared.generator }

  /// Every name asked for so far, with its shape, in the order asked.
  var requested: [(name: String, shape: [Int])] { shared.requested }

  /// The scope `name` below this one (`blocks` then `3` gives `blocks.3.`).
  func scoped(_ name: String) -> ParameterSource {
    ParameterSource(shared: shared, prefix: prefix + name + ".")
  }

  /// The parameter `name` (within this scope) of `shape`, recorded for `registerEntries`.
  func take(_ name: String, _ shape: [Int], _ initialiser: ParameterInit) -> Tensor {
    let t = value(name, shape, initialiser)
    entries.append((name, .parameter(t)))
    return t
  }

  /// The persistent buffer `name` (within this scope) of `shape`: state that is part of the
  /// state dict but never trained (BatchNorm's running statistics), recorded for
  /// `registerEntries`. A checkpoint's buffer must be there with its shape, as a parameter must.
  func buffer(_ name: String, _ shape: [Int], _ initialiser: ParameterInit) -> Tensor {
    let t = value(name, shape, initialiser)
    entries.append((name, .buffer(t)))
    return t
  }

  /// The child module `name`, built by `build` on its own scope, recorded for `registerEntries`.
  func child<M: Module>(_ name: String, _ build: (ParameterSource) -> M) -> M {
    let module = build(scoped(name))
    entries.append((name, .module(module)))
    return module
  }

  /// Registers what this scope handed out (parameters, buffers and children, in order, under
  /// their local names) on `module`, the module this scope was built for.
  func registerEntries(into module: Module) {
    for (name, entry) in entries {
      switch entry {
      case .parameter(let t): module.registerParameter(name, t)
      case .buffer(let t): module.registerBuffer(name, t)
      case .module(let m): module.registerModule(name, m)
      }
    }
  }

  /// The tensor `name` (within this scope) of `shape`, not recorded as an entry.
  private func value(_ name: String, _ shape: [Int], _ initialiser: ParameterInit) -> Tensor {
    let full = prefix + name
    shared.requested.append((full, shape))
    switch shared.mode {
    case .recording:
      return Tensor(shape: shape, storage: ZeroPages.storage(count: shape.reduce(1, *)))
    case .weights(let weights):
      guard let t = weights[full] else {
        shared.missing.append(full)
        return Tensor(shape: shape, storage: ZeroPages.storage(count: shape.reduce(1, *)))
      }
      guard t.shape == shape else {
        shared.misshaped.append(.init(name: full, expected: shape, got: t.shape))
        return Tensor(shape: shape, storage: ZeroPages.storage(count: shape.reduce(1, *)))
      }
      // A leaf view of the same storage: checkpoint memory is used in place.
      return t.isLeaf ? t : t.detached()
    case .random:
      switch initialiser {
      case .truncatedNormal(let std):
        return Tensor.truncatedNormal(shape, std: std, generator: &shared.generator)
      case .normal(let std):
        return Tensor.randn(shape, std: std, generator: &shared.generator)
      case .uniform(let bound):
        return Tensor.rand(shape, low: -bound, high: bound, generator: &shared.generator)
      case .constant(let v):
        return Tensor.full(shape, v)
      }
    }
  }

  /// A timm-initialised child linear layer `in → out` named `name` (trunc-normal 0.02, zero
  /// bias); `Linear` names its own tensors `weight` and `bias`, as PyTorch does.
  func linear(_ name: String, _ inputs: Int, _ outputs: Int, bias: Bool = true) -> Linear {
    child(name) { scope in
      let w = scope.value("weight", [outputs, inputs], .truncatedNormal(std: 0.02))
      let b = bias ? scope.value("bias", [outputs], .constant(0)) : nil
      return Linear(weight: w, bias: b)
    }
  }

  /// A child LayerNorm named `name` (ones and zeros when fresh).
  func layerNorm(_ name: String, _ dim: Int, eps: Float) -> LayerNorm {
    child(name) { scope in
      let norm = LayerNorm(dim, eps: eps)
      let weight = scope.value("weight", [dim], .constant(1))
      let bias = scope.value("bias", [dim], .constant(0))
      if case .weights = shared.mode {
        // LayerNorm allocates its own vectors; these are D floats each, so copying is free.
        norm.weight!.assign(weight)
        norm.bias!.assign(bias)
      }
      return norm
    }
  }

  /// With checkpoint weights: the names that were missing or mis-shaped and the checkpoint's
  /// names that nothing asked for, as one error naming `source`; nil when everything fits.
  func stateDictError(source: String?) -> StateDictError? {
    guard case .weights(let weights) = shared.mode else { return nil }
    let asked = Set(shared.requested.map(\.name))
    let unexpected = weights.keys.filter { !asked.contains($0) }.sorted()
    guard !shared.missing.isEmpty || !unexpected.isEmpty || !shared.misshaped.isEmpty else {
      return nil
    }
    return StateDictError(
      missing: shared.missing, unexpected: unexpected, misshaped: shared.misshaped,
      source: source)
  }
}

/// Read-only anonymous mappings: zeros that cost no memory until read (and little then: every
/// page maps the kernel's one zero page). Stand-ins for tensors whose values are never used.
private final class ZeroPages {
  let address: UnsafeMutableRawPointer
  let bytes: Int

  private init(address: UnsafeMutableRawPointer, bytes: Int) {
    self.address = address
    self.bytes = bytes
  }

  deinit { munmap(address, bytes) }

  /// Storage of `count` zero floats backed by such a mapping (ordinary zeros if mapping fails).
  static func storage(count: Int) -> TensorStorage {
    let bytes = Swift.max(count, 1) * MemoryLayout<Float>.stride
    guard
      let p = mmap(nil, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
      p != MAP_FAILED
    else { return TensorStorage(count: count) }
    let owner = ZeroPages(address: p, bytes: bytes)
    return TensorStorage(
      borrowing: p.bindMemory(to: Float.self, capacity: Swift.max(count, 1)), count: count,
      owner: owner)
  }
}
