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
  /// A bfloat16 copy of these values that products with a frozen weight use instead
  /// (`Tensor.storeInBF16`); set once, before the weight is used.
  var bf16: BF16Weights?
  /// An s8 copy with per-row scales that inference products use instead
  /// (`Tensor.storeInInt8`); set once, before the weight is used.
  var int8: Int8Weights?

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

  /// Hands back to the kernel the whole pages of borrowed values that are still exactly the
  /// file's (mapped from it and never written here), so they leave the resident set and are
  /// read again from the file only if something asks for them. Owned memory, written pages and
  /// anything `/proc/self/pagemap` cannot vouch for are left alone. Returns the bytes released.
  @discardableResult
  func releaseBorrowedPages() -> Int {
    guard !owned else { return 0 }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: pointer) + page - 1) / page * page
    let end = (Int(bitPattern: pointer) + count * MemoryLayout<Float>.stride) / page * page
    guard end > start else { return 0 }
    let pages = (end - start) / page
    // One 64-bit entry per page: bit 63 present, 62 swapped, 61 a page of a file (a private
    // mapping's page becomes anonymous once written).
    let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var entries = [UInt64](repeating: 0, count: pages)
    let wanted = pages * 8
    let got = entries.withUnsafeMutableBytes {
      pread(fd, $0.baseAddress, wanted, off_t(start / page * 8))
    }
    guard got == wanted else { return 0 }
    for entry in entries {
      let (present, swapped, filePage) = (entry >> 63 & 1, entry >> 62 & 1, entry >> 61 & 1)
      let clean = present == 1 ? filePage == 1 : swapped == 0
      if !clean { return 0 }
    }
    guard madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) == 0
    else { return 0 }
    return end - start
  }
}
