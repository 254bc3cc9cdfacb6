// The named parameter tree: modules own parameters, buffers and child modules under local names,
// and the dotted path from the root is the PyTorch state-dict name (`blocks.3.attn.qkv.weight`).

/// A node of the model tree: named parameters, named buffers and named child modules.
///
/// Subclasses keep their tensors and children in stored properties (for a fast, typed forward
/// pass) and register each one once in their initialiser, so the tree can name them:
///
/// ```swift
/// final class Block: Module {
///   let norm: LayerNorm
///   let fc: Linear
///   init(dim: Int, generator: inout RandomGenerator) {
///     norm = LayerNorm(dim)
///     fc = Linear(dim, dim, generator: &generator)
///     super.init()
///     registerModule("norm", norm)
///     registerModule("fc", fc)
///   }
/// }
/// ```
///
/// Names follow `torch.nn.Module`: within a module its own parameters come first (in registration
/// order), then its buffers, then each child's names prefixed by the child's name and a dot.
open class Module {
  private var parameterSlots: [(name: String, tensor: Tensor)] = []
  private var bufferSlots: [(name: String, tensor: Tensor, persistent: Bool)] = []
  private var childSlots: [(name: String, module: Module)] = []

  /// True in training mode (the default), false after `eval()`; layers such as dropout read it.
  public private(set) var isTraining = true

  /// An empty module.
  public init() {}

  // MARK: Registration

  /// Registers `tensor` as a parameter under `name` (no dots) and returns it.
  ///
  /// The tensor must be a leaf; it becomes trainable (`requiresGrad`) unless `trainable` is false.
  @discardableResult
  public func registerParameter(_ name: String, _ tensor: Tensor, trainable: Bool = true)
    -> Tensor
  {
    checkNewName(name)
    precondition(tensor.isLeaf, "parameter '\(name)' must be a leaf tensor, not an op result")
    tensor.requiresGrad = trainable
    parameterSlots.append((name, tensor))
    return tensor
  }

  /// Registers `tensor` as a buffer: state that is not trained (running statistics, fixed
  /// position tables). A persistent buffer is part of the state dict.
  @discardableResult
  public func registerBuffer(_ name: String, _ tensor: Tensor, persistent: Bool = true) -> Tensor {
    checkNewName(name)
    precondition(tensor.isLeaf, "buffer '\(name)' must be a leaf tensor, not an op result")
    bufferSlots.append((name, tensor, persistent))
    return tensor
  }

  /// Registers `module` as a child under `name` (no dots) and returns it.
  @discardableResult
  public func registerModule<M: Module>(_ name: String, _ module: M) -> M {
    checkNewName(name)
    precondition(module !== self, "a module cannot be its own child ('\(name)')")
    childSlots.append((name, module))
    module.setTraining(isTraining)
    return module
  }

  private func checkNewName(_ name: String) {
    precondition(!name.isEmpty && !name.contains("."), "invalid local name '\(name)'")
    precondition(
      !parameterSlots.contains { $0.name == name } && !bufferSlots.contains { $0.name == name }
        && !childSlots.contains { $0.name == name },
      "'\(name)' is already registered in \(type(of: self))")
  }

  // MARK: Traversal

  /// Direct children with their local names, in registration order.
  public var children: [(name: String, module: Module)] { childSlots }

  /// This module (named `prefix`) and every descendant, depth first, with dotted names.
  public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
    var out: [(name: String, module: Module)] = []
    var seen = Set<ObjectIdentifier>()
    visit(prefix: prefix) { name, module in
      if seen.insert(ObjectIdentifier(module)).inserted { out.append((name, module)) }
    }
    return out
  }

  /// Calls `body` on this module and every descendant (shared modules once per path).
  private func visit(prefix: String, _ body: (String, Module) -> Void) {
    body(prefix, self)
    for (name, child) in childSlots {
      child.visit(prefix: Module.join(prefix, name), body)
    }
  }

  static func join(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : prefix + "." + name
  }

  /// Every parameter with its dotted name, in registration order (own parameters, then each
  /// child's). A tensor shared by several modules appears once, under its first name.
  public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
    var out: [(name: String, tensor: Tensor)] = []
    var seen = Set<ObjectIdentifier>()
    visit(prefix: prefix) { path, module in
      for (name, tensor) in module.parameterSlots
      where seen.insert(ObjectIdentifier(tensor)).inserted {
        out.append((Module.join(path, name), tensor))
      }
    }
    return out
  }

  /// The parameters alone, in `namedParameters()` order.
  public func parameters() -> [Tensor] { namedParameters().map(\.tensor) }

  /// The parameters that currently require a gradient, with their names.
  public func trainableParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
    namedParameters(prefix: prefix).filter { $0.tensor.requiresGrad }
  }

  /// Every buffer with its dotted name (persistent or not), in registration order.
  public func namedBuffers(prefix: String = "") -> [(name: String, tensor: Tensor)] {
    var out: [(name: String, tensor: Tensor)] = []
    var seen = Set<ObjectIdentifier>()
    visit(prefix: prefix) { path, module in
      for (name, tensor, _) in module.bufferSlots
      where seen.insert(ObjectIdentifier(tensor)).inserted {
        out.append((Module.join(path, name), tensor))
      }
    }
    return out
  }

  /// The parameter named `name` (a dotted path from this module), if any.
  public func parameter(named name: String) -> Tensor? {
    namedParameters().first { $0.name == name }?.tensor
  }

  /// Number of parameter elements (shared tensors counted once).
  public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

  /// Number of parameter elements that require a gradient.
  public var trainableParameterCount: Int {
    namedParameters().reduce(0) { $0 + ($1.tensor.requiresGrad ? $1.tensor.count : 0) }
  }

  // MARK: Modes and trainable flags

  /// Sets training mode on this module and all descendants; returns self.
  @discardableResult
  public func train(_ on: Bool = true) -> Self {
    setTraining(on)
    return self
  }

  /// Switches this module and all descendants to evaluation mode; returns self.
  @discardableResult
  public func eval() -> Self { train(false) }

  private func setTraining(_ on: Bool) {
    visit(prefix: "") { _, module in module.isTraining = on }
  }

  /// Sets `requiresGrad` to `on` on every parameter whose dotted name matches the glob `pattern`
  /// (see `NamePattern`) and returns how many matched, so a mistyped pattern can be caught.
  @discardableResult
  public func setTrainable(matching pattern: String, _ on: Bool) -> Int {
    var matched = 0
    for (name, tensor) in namedParameters() where NamePattern.matches(name, pattern) {
      tensor.requiresGrad = on
      matched += 1
    }
    return matched
  }

  /// Marks every parameter frozen (no gradient).
  public func freeze() { for p in parameters() { p.requiresGrad = false } }

  /// Marks every parameter trainable.
  public func unfreeze() { for p in parameters() { p.requiresGrad = true } }

  /// Drops the gradients of all parameters.
  public func zeroGrad() { for p in parameters() { p.grad = nil } }

  // MARK: State dict

  /// Every entry a state dict holds, in order, including each name of a shared tensor (as
  /// PyTorch): parameters then persistent buffers, module by module.
  private func stateEntries() -> [(name: String, tensor: Tensor, isParameter: Bool)] {
    var out: [(name: String, tensor: Tensor, isParameter: Bool)] = []
    visit(prefix: "") { path, module in
      for (name, tensor) in module.parameterSlots {
        out.append((Module.join(path, name), tensor, true))
      }
      for (name, tensor, persistent) in module.bufferSlots where persistent {
        out.append((Module.join(path, name), tensor, false))
      }
    }
    return out
  }

  /// The state dict names in order (parameters and persistent buffers).
  public var stateDictNames: [String] { stateEntries().map(\.name) }

  /// Parameters and persistent buffers by dotted name. The values share storage with the module
  /// (as PyTorch's `state_dict()`); `copy()` them for a snapshot. With `trainableOnly`, only the
  /// parameters that require a gradient (what a PEFT checkpoint stores).
  public func stateDict(trainableOnly: Bool = false) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (name, tensor, isParameter) in stateEntries() {
      if trainableOnly && !(isParameter && tensor.requiresGrad) { continue }
      out[name] = tensor.detached()
    }
    return out
  }

  /// Copies the values of `dict` into this module's tensors, by name, outside the tape.
  ///
  /// Every problem is found before anything is written: names the module has and `dict` lacks
  /// (missing), names `dict` has and the module lacks (unexpected), and names whose shapes
  /// differ (mis-shaped). As in PyTorch, mis-shaped entries always throw; missing and unexpected
  /// ones throw only when `strict`, and are otherwise skipped and returned. When it throws,
  /// nothing has been modified.
  @discardableResult
  public func loadStateDict(_ dict: [String: Tensor], strict: Bool = true) throws
    -> StateDictLoadResult
  {
    let entries = stateEntries()
    let known = Set(entries.map(\.name))
    let missing = entries.map(\.name).filter { dict[$0] == nil }
    let unexpected = dict.keys.filter { !known.contains($0) }.sorted()
    var misshaped: [StateDictError.Mismatch] = []
    for (name, tensor, _) in entries {
      if let value = dict[name], value.shape != tensor.shape {
        misshaped.append(.init(name: name, expected: tensor.shape, got: value.shape))
      }
    }
    if !misshaped.isEmpty || (strict && !(missing.isEmpty && unexpected.isEmpty)) {
      throw StateDictError(missing: missing, unexpected: unexpected, misshaped: misshaped)
    }
    for (name, tensor, _) in entries {
      guard let value = dict[name], value.pointer != tensor.pointer else { continue }
      tensor.assign(value)
    }
    return StateDictLoadResult(missing: missing, unexpected: unexpected)
  }
}

/// What a non-strict `loadStateDict` skipped.
public struct StateDictLoadResult: Equatable, Sendable {
  /// Names the module has that the dict lacked (left unchanged).
  public var missing: [String]
  /// Names the dict had that the module lacks (ignored).
  public var unexpected: [String]
}

/// A state dict that does not fit: every missing, unexpected and mis-shaped name.
public struct StateDictError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A name present on both sides with different shapes.
  public struct Mismatch: Equatable, Sendable {
    /// The dotted name.
    public var name: String
    /// The shape the module (or optimizer) holds.
    public var expected: [Int]
    /// The shape the dict offered.
    public var got: [Int]

    /// A mismatch of `name`: `expected` held, `got` offered.
    public init(name: String, expected: [Int], got: [Int]) {
      self.name = name
      self.expected = expected
      self.got = got
    }
  }

  /// Names expected but absent, in module order.
  public var missing: [String]
  /// Names offered but unknown, sorted.
  public var unexpected: [String]
  /// Names with the wrong shape, in module order.
  public var misshaped: [Mismatch]
  /// Where the dict came from (a file path), when the caller knows.
  public var source: String?

  /// An error listing the given problems.
  public init(
    missing: [String] = [], unexpected: [String] = [], misshaped: [Mismatch] = [],
    source: String? = nil
  ) {
    self.missing = missing
    self.unexpected = unexpected
    self.misshaped = misshaped
    self.source = source
  }

  /// All problems, one kind per line, every name listed.
  public var description: String {
    var lines = [
      "state dict\(source.map { " \($0)" } ?? "") does not fit: \(missing.count) missing, "
        + "\(unexpected.count) unexpected, \(misshaped.count) mis-shaped"
    ]
    if !missing.isEmpty { lines.append("  missing: " + missing.joined(separator: ", ")) }
    if !unexpected.isEmpty { lines.append("  unexpected: " + unexpected.joined(separator: ", ")) }
    for m in misshaped {
      lines.append("  mis-shaped: \(m.name) expected \(m.expected) got \(m.got)")
    }
    return lines.joined(separator: "\n")
  }
}

/// Glob patterns over dotted parameter names.
///
/// `*` matches any run of characters, dots included (`blocks.*.norm*.*` matches
/// `blocks.11.norm2.bias`); `?` matches exactly one character; everything else matches itself.
/// The whole name must match: `*bias` matches `head.bias` but `bias` does not.
public enum NamePattern {
  /// True when `name` matches `pattern` in full.
  public static func matches(_ name: String, _ pattern: String) -> Bool {
    let s = Array(name.utf8)
    let p = Array(pattern.utf8)
    let star = UInt8(ascii: "*")
    let any = UInt8(ascii: "?")
    var (i, j) = (0, 0)
    // Greedy scan; on a mismatch retry from the most recent star, letting it eat one more byte.
    var lastStar: Int?
    var resume = 0
    while i < s.count {
      if j < p.count && (p[j] == any || p[j] == s[i]) && p[j] != star {
        i += 1
        j += 1
      } else if j < p.count && p[j] == star {
        lastStar = j
        resume = i
        j += 1
      } else if let k = lastStar {
        resume += 1
        i = resume
        j = k + 1
      } else {
        return false
      }
    }
    while j < p.count && p[j] == star { j += 1 }
    return j == p.count
  }
}

/// A module that maps one tensor to one tensor; what `Sequential` chains.
public protocol UnaryModule: Module {
  /// The forward pass.
  func callAsFunction(_ x: Tensor) -> Tensor
}

/// An indexed list of child modules named "0", "1", … (PyTorch's `nn.ModuleList`).
public final class ModuleList<Element: Module>: Module, RandomAccessCollection {
  /// The children, in order.
  public private(set) var modules: [Element] = []

  /// A list holding `modules`.
  public init(_ modules: [Element] = []) {
    super.init()
    for m in modules { append(m) }
  }

  /// Adds `module` under the next index.
  public func append(_ module: Element) {
    registerModule(String(modules.count), module)
    modules.append(module)
  }

  /// Always 0.
  public var startIndex: Int { 0 }
  /// The number of children.
  public var endIndex: Int { modules.count }
  /// The child at `index`.
  public subscript(index: Int) -> Element { modules[index] }
}

/// Children applied one after another, named "0", "1", … (PyTorch's `nn.Sequential`).
public final class Sequential: Module, UnaryModule {
  /// The layers, in order.
  public let layers: [any UnaryModule]

  /// Chains `layers`.
  public init(_ layers: [any UnaryModule]) {
    self.layers = layers
    super.init()
    for (i, layer) in layers.enumerated() { registerModule(String(i), layer) }
  }

  /// Applies each layer in turn.
  public func callAsFunction(_ x: Tensor) -> Tensor {
    layers.reduce(x) { $1($0) }
  }
}
