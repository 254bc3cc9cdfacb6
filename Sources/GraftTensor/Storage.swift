import Foundation

/// A reference-counted, 64-byte aligned block of `Float`s that one or more tensors view.
///
/// Storage is either owned (allocated here, freed on deinit) or borrowed from an owner that
/// keeps the memory alive (a memory-mapped safetensors file, for instance).
public final class TensorStorage: @unchecked Sendable {
  /// First element.
  public let pointer: UnsafeMutablePointer<Float>
  /// Number of elements.
  public let count: Int
  private let owner: AnyObject?
  private let owned: Bool

  /// Allocates `count` floats; zero-filled when `zeroed`.
  public init(count: Int, zeroed: Bool = true) {
    precondition(count >= 0, "negative storage size \(count)")
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    let raw = BufferPool.shared.take(bytes, zeroed: zeroed)
    pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    self.count = count
    owner = nil
    owned = true
    StorageStats.allocated(bytes: bytes)
  }

  /// Views memory that `owner` keeps alive; nothing is copied or freed here.
  public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
    self.pointer = pointer
    self.count = count
    self.owner = owner
    owned = false
  }

  deinit {
    if owned {
      StorageStats.freed(bytes: max(count, 1) * MemoryLayout<Float>.stride)
      BufferPool.shared.give(
        UnsafeMutableRawPointer(pointer), max(count, 1) * MemoryLayout<Float>.stride)
    }
  }

  /// The elements as a buffer.
  @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: pointer, count: count)
  }
}
