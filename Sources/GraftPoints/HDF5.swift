import CHDF5Shim
import Foundation

/// The shape and storage of one HDF5 dataset.
public struct HDF5DatasetInfo: Sendable, Equatable {
  /// Extent of each axis (`[]` for a scalar).
  public var shape: [Int]
  /// Whether the elements are floating point.
  public var isFloat: Bool
  /// Whether the elements are integers.
  public var isInteger: Bool
  /// Bytes per element in the file.
  public var elementSize: Int
  /// Whether the data is compressed (filtered).
  public var isFiltered: Bool
  /// Bytes the data occupies in the file.
  public var storageSize: Int

  /// Number of elements.
  public var count: Int { shape.reduce(1, *) }
}

/// An HDF5 file read through libhdf5, for reading whole numeric datasets at its root.
///
/// libhdf5 runs in a child process that lives as long as this object (one per file, answering
/// every describe and read), because libhdf5 1.10 crashes on some damaged files (a null pointer
/// inside `H5Fopen`); such a file gives a `PointFileError` naming it, and the caller lives on.
/// Keep it only while reading: the child shares this process's pages until either writes them.
/// Every dataset's claimed size is checked against the file's size before anything is
/// allocated, and a dataset that was never written (HDF5 would return fill values) is refused
/// rather than read as zeros.
public final class HDF5File {
  /// The file's path.
  public let path: String
  private let fileSize: Int
  /// The child process reading the file.
  private let reader: OpaquePointer
  /// Datasets already described (nil: looked up, none of that name), so that reading one after
  /// asking about it costs one request, not two.
  private var described: [String: HDF5DatasetInfo?] = [:]

  /// Opens the HDF5 file at `url`.
  public init(contentsOf url: URL) throws {
    path = url.path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw PointFileError(.fileNotFound, path: path, "no such file")
    }
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    guard !isDirectory.boolValue, let size = attributes?[.size] as? Int else {
      throw PointFileError(.readFailed, path: path, "not a readable file")
    }
    // libhdf5 would wait for ever on a FIFO, and reads a device as if it were a file.
    guard attributes?[.type] as? FileAttributeType == .typeRegular else {
      throw PointFileError(.readFailed, path: path, "not a regular file")
    }
    fileSize = size
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    var opened: OpaquePointer?
    let status = gh5_reader_open(path, &opened, &message)
    guard status == GH5_OK, let opened else { throw HDF5File.error(status, message, path: path) }
    reader = opened
  }

  deinit { gh5_reader_close(reader) }

  /// HDF5 objects open in this process (files, datasets, dataspaces, types): 0 when every
  /// `HDF5Writer` is gone (an `HDF5File` opens nothing here), which tests check.
  public static var openObjectCount: Int { Int(gh5_open_object_count()) }

  static func error(_ status: gh5_status, _ message: [CChar], path: String) -> PointFileError {
    let text = String(
      decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let kind: PointFileError.Kind =
      switch status {
      case GH5_NOT_HDF5: .badHeader
      case GH5_OPEN_FAILED: .readFailed
      case GH5_MISSING: .missingField
      case GH5_BAD_DATASET: .unsupported
      case GH5_READ_FAILED: .corruptData
      case GH5_OUT_OF_MEMORY: .tooLarge
      case GH5_CRASHED: .corruptData
      case GH5_SPAWN_FAILED: .readFailed
      case GH5_INVALID_ARGUMENT: .invalidWrite
      default: .writeFailed
      }
    return PointFileError(kind, path: path, text)
  }

  /// The dataset `name` at the file's root, or nil when there is none.
  public func info(_ name: String) throws -> HDF5DatasetInfo? {
    if let known = described[name] { return known }
    let found = try describe(name)
    described[name] = .some(found)
    return found
  }

  private func describe(_ name: String) throws -> HDF5DatasetInfo? {
    var raw = gh5_dataset_info()
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let status = gh5_reader_info(reader, name, &raw, &message)
    if status == GH5_MISSING { return nil }
    guard status == GH5_OK else { throw HDF5File.error(status, message, path: path) }
    let dims = withUnsafeBytes(of: raw.dims) { Array($0.bindMemory(to: UInt64.self)) }
    var shape = [Int]()
    for d in dims.prefix(Int(raw.rank)) {
      guard let v = Int(exactly: d) else {
        throw PointFileError(.tooLarge, path: path, "dataset '\(name)' has an axis of \(d)")
      }
      shape.append(v)
    }
    return HDF5DatasetInfo(
      shape: shape, isFloat: raw.type_class == Int32(GH5_CLASS_FLOAT.rawValue),
      isInteger: raw.type_class == Int32(GH5_CLASS_INTEGER.rawValue),
      elementSize: Int(raw.type_size),
      isFiltered: raw.filtered != 0, storageSize: Int(clamping: raw.storage_size))
  }

  /// The dataset `name`'s description, checked to be readable within the file's size; throws
  /// when it is missing.
  private func checkedInfo(_ name: String) throws -> HDF5DatasetInfo {
    guard let info = try info(name) else {
      throw PointFileError(.missingField, path: path, "no dataset '\(name)'")
    }
    func fail(_ kind: PointFileError.Kind, _ message: String) -> PointFileError {
      PointFileError(kind, path: path, "dataset '\(name)': \(message)")
    }
    guard info.isFloat || info.isInteger else { throw fail(.unsupported, "does not hold numbers") }
    // Only the standard widths: libhdf5 1.10 reads past its own buffers converting a float of an
    // odd width (a 7-byte float in a damaged file, found by Tools/fuzz.sh hdf5; the input is in
    // Fuzz/Regressions/hdf5), and no point-cloud set stores one.
    let widths = info.isFloat ? [4, 8] : [1, 2, 4, 8]
    guard widths.contains(info.elementSize) else {
      throw fail(
        .unsupported,
        "\(info.elementSize)-byte \(info.isFloat ? "floats" : "integers") (only "
          + widths.map(String.init).joined(separator: ", ") + " bytes are read)")
    }
    guard let bytes = checkedProduct(info.shape + [info.elementSize]) else {
      throw fail(.tooLarge, "shape \(info.shape) overflows")
    }
    if bytes == 0 { return info }
    guard info.storageSize > 0 else {
      throw fail(.truncated, "shape \(info.shape) but no data was ever stored")
    }
    guard info.storageSize <= fileSize else {
      throw fail(.truncated, "claims \(info.storageSize) bytes, the file has \(fileSize)")
    }
    // Uncompressed data occupies its full size; deflate cannot expand by more than about 1032×.
    if info.isFiltered {
      guard bytes / 1100 <= info.storageSize else {
        throw fail(
          .tooLarge, "\(info.storageSize) compressed bytes cannot hold shape \(info.shape)")
      }
    } else if info.storageSize < bytes {
      throw fail(
        .truncated, "shape \(info.shape) needs \(bytes) bytes, \(info.storageSize) are stored")
    }
    return info
  }

  /// The dataset `name` converted to Float, with its shape.
  public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
    let info = try checkedInfo(name)
    var values = [Float](repeating: 0, count: info.count)
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let status = values.withUnsafeMutableBufferPointer {
      gh5_reader_read_float(reader, name, $0.baseAddress, UInt64(info.count), &message)
    }
    guard status == GH5_OK else { throw HDF5File.error(status, message, path: path) }
    return (info.shape, values)
  }

  /// The dataset `name` as integers, with its shape. A float dataset is accepted when every
  /// value is integral.
  public func integers(_ name: String) throws -> (shape: [Int], values: [Int]) {
    let info = try checkedInfo(name)
    if info.isFloat {
      let (shape, values) = try floats(name)
      var out = [Int]()
      out.reserveCapacity(values.count)
      for v in values {
        guard v.isFinite, v == v.rounded(), let i = Int(exactly: v) else {
          throw PointFileError(.badValue, path: path, "dataset '\(name)': \(v) is not an integer")
        }
        out.append(i)
      }
      return (shape, out)
    }
    var values = [Int64](repeating: 0, count: info.count)
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let status = values.withUnsafeMutableBufferPointer {
      gh5_reader_read_int64(reader, name, $0.baseAddress, UInt64(info.count), &message)
    }
    guard status == GH5_OK else { throw HDF5File.error(status, message, path: path) }
    return (info.shape, values.map { Int($0) })
  }
}

/// An integer element type for `HDF5Writer`.
public enum HDF5IntegerType: Sendable {
  /// uint8, as ModelNet40's `label` [N, 1].
  case uint8
  /// int32, as ModelNet40's `faceId`.
  case int32
  /// int64.
  case int64
}

/// Builds an HDF5 file in memory (libhdf5's core driver) and writes it atomically.
public final class HDF5Writer {
  private let handle: Int64

  /// An empty file.
  public init() throws {
    var h: Int64 = -1
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let status = gh5_create_memory(&h, &message)
    guard status == GH5_OK else { throw HDF5File.error(status, message, path: "<memory>") }
    handle = h
  }

  deinit { gh5_close(handle) }

  /// HDF5 objects open in this process (files, datasets, dataspaces, types): 0 when every
  /// `HDF5File` and `HDF5Writer` is gone, which tests check after good and damaged files.
  public static var openObjectCount: Int { Int(gh5_open_object_count()) }

  private func add(
    _ name: String, type: gh5_type, shape: [Int], count: Int, gzip: Int,
    _ data: UnsafeRawPointer?
  ) throws {
    guard !shape.isEmpty, shape.count <= Int(GH5_MAX_RANK), shape.allSatisfy({ $0 >= 0 }),
      shape.reduce(1, *) == count
    else {
      throw PointFileError(
        .invalidWrite, path: "<memory>", "dataset '\(name)': \(count) values for shape \(shape)")
    }
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let dims = shape.map { UInt64($0) }
    let status = gh5_write(
      handle, name, type, Int32(shape.count), dims, data, Int32(gzip), &message)
    guard status == GH5_OK else { throw HDF5File.error(status, message, path: "<memory>") }
  }

  /// Adds the float32 dataset `name` of `shape`; `gzip` 1...9 deflates it.
  public func add(_ name: String, floats values: [Float], shape: [Int], gzip: Int = 0) throws {
    try values.withUnsafeBytes {
      try add(name, type: GH5_F32, shape: shape, count: values.count, gzip: gzip, $0.baseAddress)
    }
  }

  /// Adds the integer dataset `name` of `shape`, stored as `type`.
  public func add(
    _ name: String, integers values: [Int], shape: [Int], type: HDF5IntegerType, gzip: Int = 0
  ) throws {
    switch type {
    case .uint8:
      let v = try values.map { x -> UInt8 in
        guard let b = UInt8(exactly: x) else {
          throw PointFileError(
            .invalidWrite, path: "<memory>", "dataset '\(name)': \(x) is not a uint8")
        }
        return b
      }
      try v.withUnsafeBytes {
        try add(name, type: GH5_U8, shape: shape, count: v.count, gzip: gzip, $0.baseAddress)
      }
    case .int32:
      let v = try values.map { x -> Int32 in
        guard let b = Int32(exactly: x) else {
          throw PointFileError(
            .invalidWrite, path: "<memory>", "dataset '\(name)': \(x) is not an int32")
        }
        return b
      }
      try v.withUnsafeBytes {
        try add(name, type: GH5_I32, shape: shape, count: v.count, gzip: gzip, $0.baseAddress)
      }
    case .int64:
      let v = values.map { Int64($0) }
      try v.withUnsafeBytes {
        try add(name, type: GH5_I64, shape: shape, count: v.count, gzip: gzip, $0.baseAddress)
      }
    }
  }

  /// The file's bytes.
  public func bytes() throws -> [UInt8] {
    var pointer: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: Int(GH5_MESSAGE_CAPACITY))
    let status = gh5_image(handle, &pointer, &size, &message)
    guard status == GH5_OK, let pointer else {
      throw HDF5File.error(status, message, path: "<memory>")
    }
    defer { gh5_free(pointer) }
    return Array(UnsafeBufferPointer(start: pointer, count: size))
  }

  /// Writes the file to `url` atomically.
  public func write(to url: URL) throws {
    try writeFileBytes(bytes(), to: url)
  }
}
