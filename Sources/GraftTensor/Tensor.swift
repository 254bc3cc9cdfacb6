import Foundation

/// A Float32 tensor: row-major, contiguous, any rank, with reverse-mode autodiff.
///
/// A tensor is a cheap handle on a `TensorStorage`; `reshaped` shares storage, every other op
/// writes a new one. A tensor that `requiresGrad` is either a leaf (a parameter, an input marked by
/// hand) or the result of an op recorded on the tape; `backward()` fills the `grad` of leaves.
public final class Tensor {
  /// Extent of each axis; `[]` for a scalar.
  public let shape: [Int]
  /// The elements, row-major.
  public let storage: TensorStorage
  /// The recorded op that produced this tensor, if it needs a gradient.
  var gradFn: GradFn?
  private var leafRequiresGrad = false
  /// Gradient accumulated by `backward()` (leaves only).
  public var grad: Tensor?
  /// Optional name, for error messages and state dicts.
  public var name: String?

  /// Wraps existing storage; `shape` must cover exactly `storage.count` elements.
  public init(shape: [Int], storage: TensorStorage) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
    precondition(
      shape.reduce(1, *) == storage.count,
      "shape \(shape) needs \(shape.reduce(1, *)) elements, storage has \(storage.count)")
    self.shape = shape
    self.storage = storage
  }

  /// A new tensor of `shape`, zero-filled unless `zeroed` is false.
  public convenience init(shape: [Int], zeroed: Bool = true) {
    self.init(shape: shape, storage: TensorStorage(count: shape.reduce(1, *), zeroed: zeroed))
  }

  /// A tensor holding a copy of `values`.
  public convenience init(_ values: [Float], shape: [Int]) {
    precondition(
      values.count == shape.reduce(1, *),
      "\(values.count) values do not fill shape \(shape)")
    self.init(shape: shape, zeroed: false)
    values.withUnsafeBufferPointer { src in
      storage.pointer.update(from: src.baseAddress!, count: values.count)
    }
  }

  /// A 1-D tensor holding a copy of `values`.
  public convenience init(_ values: [Float]) { self.init(values, shape: [values.count]) }

  /// A rank-0 tensor.
  public convenience init(scalar: Float) { self.init([scalar], shape: []) }

  // MARK: Metadata

  /// Number of axes.
  @inlinable public var rank: Int { shape.count }
  /// Number of elements.
  @inlinable public var count: Int { storage.count }
  /// Bytes of element data.
  public var byteCount: Int { count * MemoryLayout<Float>.stride }
  /// First element's address (the storage is contiguous).
  @inlinable public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

  /// Resolves a possibly negative axis index, checking its range.
  public func axis(_ a: Int) -> Int {
    let r = a < 0 ? a + rank : a
    precondition(r >= 0 && r < Swift.max(rank, 1), "axis \(a) out of range for shape \(shape)")
    return r
  }

  /// Row-major strides in elements.
  public var strides: [Int] { Tensor.contiguousStrides(shape) }

  static func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
      s[i] = acc
      acc *= shape[i]
    }
    return s
  }

  // MARK: Autodiff flags

  /// True for a leaf marked trainable or for a recorded op result.
  public var requiresGrad: Bool {
    get { leafRequiresGrad || gradFn != nil }
    set {
      precondition(gradFn == nil, "requiresGrad can only be set on a leaf tensor")
      leafRequiresGrad = newValue
    }
  }

  /// True unless the tensor was produced by a recorded op.
  public var isLeaf: Bool { gradFn == nil }

  /// The same data cut off from the tape.
  public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

  /// Marks this leaf as trainable and returns it (for chaining).
  @discardableResult public func requiringGrad(_ on: Bool = true) -> Tensor {
    requiresGrad = on
    return self
  }

  /// Drops the accumulated gradient.
  public func zeroGrad() { grad = nil }

  // MARK: Element access (slow paths: tests, I/O, small tensors)

  /// All elements as an array.
  public var scalars: [Float] { Array(storage.buffer) }

  /// The only element of a one-element tensor.
  public var item: Float {
    precondition(count == 1, "item needs one element, shape is \(shape)")
    return pointer[0]
  }

  /// Element at a full index.
  public subscript(index: Int...) -> Float {
    get { pointer[flatIndex(index)] }
    set { pointer[flatIndex(index)] = newValue }
  }

  func flatIndex(_ index: [Int]) -> Int {
    precondition(index.count == rank, "index \(index) for shape \(shape)")
    var flat = 0
    for (i, (ix, n)) in zip(index, shape).enumerated() {
      precondition(ix >= 0 && ix < n, "index \(index) out of range for shape \(shape) at axis \(i)")
      flat = flat * n + ix
    }
    return flat
  }

  /// A new tensor with the same values and no tape history.
  public func copy() -> Tensor {
    let out = Tensor(shape: shape, zeroed: false)
    out.pointer.update(from: pointer, count: count)
    return out
  }

  /// Overwrites this tensor's elements with `other`'s (same element count), outside the tape.
  /// Used by optimizers and state-dict loading.
  public func assign(_ other: Tensor) {
    precondition(other.count == count, "assign: shape \(other.shape) into \(shape)")
    pointer.update(from: other.pointer, count: count)
  }
}

extension Tensor: CustomStringConvertible {
  /// The shape and the first eight values, for logs and test failures.
  public var description: String {
    let head = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
    return "Tensor(shape: \(shape), [\(head)\(count > 8 ? ", …" : "")])"
  }
}

// MARK: Creation

extension Tensor {
  /// All zeros.
  public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape) }

  /// All ones.
  public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

  /// Every element `value`.
  public static func full(_ shape: [Int], _ value: Float) -> Tensor {
    let t = Tensor(shape: shape, zeroed: false)
    t.pointer.update(repeating: value, count: t.count)
    return t
  }

  /// `start, start+step, …` below `end`, as PyTorch's `arange`.
  public static func arange(_ start: Float = 0, _ end: Float, step: Float = 1) -> Tensor {
    precondition(step != 0, "arange step must be non-zero")
    let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
    let t = Tensor(shape: [n], zeroed: false)
    for i in 0..<n { t.pointer[i] = start + Float(i) * step }
    return t
  }

  /// Standard normal samples scaled by `std` and shifted by `mean`.
  public static func randn(
    _ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator
  ) -> Tensor {
    let t = Tensor(shape: shape, zeroed: false)
    for i in 0..<t.count { t.pointer[i] = mean + std * generator.nextNormal() }
    return t
  }

  /// Uniform samples in `[low, high)`.
  public static func rand(
    _ shape: [Int], low: Float = 0, high: Float = 1, generator: inout RandomGenerator
  ) -> Tensor {
    let t = Tensor(shape: shape, zeroed: false)
    for i in 0..<t.count { t.pointer[i] = low + (high - low) * generator.nextFloat() }
    return t
  }

  /// Normal samples redrawn until they fall in `[a, b]` (absolute bounds, as timm's
  /// `trunc_normal_(std=0.02, a=-2, b=2)`).
  public static func truncatedNormal(
    _ shape: [Int], mean: Float = 0, std: Float = 1, a: Float = -2, b: Float = 2,
    generator: inout RandomGenerator
  ) -> Tensor {
    precondition(a < b, "truncatedNormal needs a < b")
    let t = Tensor(shape: shape, zeroed: false)
    for i in 0..<t.count {
      var v: Float
      repeat { v = mean + std * generator.nextNormal() } while v < a || v > b
      t.pointer[i] = v
    }
    return t
  }
}
