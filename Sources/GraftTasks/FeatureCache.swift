import Foundation

// The feature cache: for a method whose backbone output never changes while it trains (no
// backbone gradient, no hook, no unfrozen tensor; `TuningMethod.backboneReads` says what it reads)
// and data whose transforms give each sample one fixed tensor (`SampleTransforms.cacheable`), the
// frozen backbone runs once over each split and what the method reads is stored in a file that
// later epochs and later runs map and read instead. A file is named by the hash of its key: the
// backbone's weights and settings hashes, what is stored and how, and the split's content (every
// transformed input tensor and label, hashed), so a changed backbone, dataset or transform gives
// another file and a stale one is never read.

/// `train.cache`: whether a run may use the feature cache.
public enum FeatureCacheMode: String, CaseIterable, Sendable, OptionValue {
  /// Used when the method and data allow it.
  case auto
  /// Never used: every epoch runs the backbone.
  case off
}

/// `train.cache_precision`: how the feature cache stores values.
public enum FeatureCachePrecision: String, CaseIterable, Sendable, OptionValue {
  /// 4 bytes a value: reads back exactly what the backbone computed.
  case fp32
  /// 2 bytes a value (bfloat16, rounded to nearest even): half the disk, 8-bit mantissas.
  case bf16

  /// Bytes per stored value.
  var bytes: Int { self == .fp32 ? 4 : 2 }
}

/// A feature-cache file that is not what it should be (wrong magic, header, key, size or
/// checksum).
public struct FeatureCacheError: Error, CustomStringConvertible, Sendable {
  /// The file.
  public var path: String
  /// What is wrong, in words.
  public var message: String
  /// `path: message`.
  public var description: String { "\(path): \(message)" }
}

/// One split's stored backbone outputs: a memory-mapped file of a JSON header and, per sample,
/// one record holding each stored field (features, tokens, embedding, block outputs) in order.
///
/// Layout: the 8 magic bytes `GRAFTFC2`, the header's length (UInt64, little-endian), the header
/// (JSON: key, sample count, precision, fields with their per-sample shapes, prefix rows, token
/// grid), zero padding to a multiple of 64 bytes, then `count` records, then the records'
/// `ContentHash` (UInt64, little-endian). Opening checks the magic, the header, the key, that
/// the file is exactly as long as the header says and the records' hash, so a truncated or
/// damaged file is refused rather than read (`GRAFTFC1` files had no hash: zeros written over
/// their records were read as features).
public final class FeatureCacheFile {
  /// The stored fields, in record order.
  public struct Field: Codable, Equatable, Sendable {
    /// `features`, `tokens`, `embedded` or `hidden.<block>`.
    public var name: String
    /// One sample's shape ([D] or [N, D]).
    public var shape: [Int]
    /// Elements per sample.
    var count: Int { shape.reduce(1, *) }
  }

  /// What the file's header records.
  public struct Header: Codable, Equatable, Sendable {
    /// The key text (`FeatureCacheFile.key`): the file is read only for this key.
    public var key: String
    /// Samples stored.
    public var count: Int
    /// `fp32` or `bf16`.
    public var precision: String
    /// The fields of every record.
    public var fields: [Field]
    /// The backbone's leading non-content rows.
    public var prefixTokens: Int
    /// The patch grid (frames, rows, columns) of the tokens, or nil for a plain sequence.
    public var grid: [Int]?

    /// Bytes of one record.
    var recordBytes: Int {
      fields.reduce(0) { $0 + $1.count } * (FeatureCachePrecision(rawValue: precision)?.bytes ?? 4)
    }
  }

  static let magic = Array("GRAFTFC2".utf8)

  /// The file.
  public let url: URL
  /// Its header.
  public let header: Header
  private let mapped: MappedFile
  private let dataStart: Int
  private let precision: FeatureCachePrecision

  /// Opens the cache file at `url` for `key`; throws `FeatureCacheError` naming the file when it
  /// is not a cache file, holds another key, or is longer or shorter than its header says.
  public init(url: URL, key: String) throws {
    func bad(_ message: String) -> FeatureCacheError {
      FeatureCacheError(path: url.path, message: message)
    }
    let file: MappedFile
    do {
      file = try MappedFile(path: url.path)
    } catch {
      throw bad("cannot read: \(error.message)")
    }
    let bytes = file.bytes
    guard bytes.count >= 16, Array(bytes[0..<8]) == Self.magic else {
      throw bad("not a Graft feature-cache file of this version (no GRAFTFC2 magic)")
    }
    var length: UInt64 = 0
    for i in 0..<8 { length |= UInt64(bytes[8 + i]) << (8 * UInt64(i)) }
    guard length <= UInt64(bytes.count - 16) else { throw bad("truncated inside its header") }
    let headerData = Data(bytes[16..<(16 + Int(length))])
    guard let header = try? JSONDecoder().decode(Header.self, from: headerData),
      let precision = FeatureCachePrecision(rawValue: header.precision), header.count >= 0,
      header.fields.allSatisfy({ f in f.shape.allSatisfy { $0 > 0 } })
    else { throw bad("its header is damaged") }
    guard header.key == key else { throw bad("it holds another key") }
    let start = Self.alignedStart(headerLength: Int(length))
    let end = start + header.count * header.recordBytes
    guard bytes.count == end + 8 else {
      throw bad(
        "\(bytes.count) bytes where its header says \(end + 8) (a truncated or damaged file)")
    }
    // Hashed through the mapping in 16 MiB pieces, each handed back after it is read: a whole
    // lst cache read at once put a run's peak RSS at the file's size (900 MiB on Graft-1k
    // mnist, not 140).
    var hash = ContentHash()
    for position in stride(from: start, to: end, by: 16 << 20) {
      let piece = position..<min(position + (16 << 20), end)
      hash.update(UnsafeRawBufferPointer(rebasing: bytes[piece]))
      if file.isMapped { Self.handBack(bytes, piece) }
    }
    var stored: UInt64 = 0
    for i in 0..<8 { stored |= UInt64(bytes[end + i]) << (8 * UInt64(i)) }
    guard hash.value64 == stored else {
      throw bad("its records do not match their checksum (the file was changed or damaged)")
    }
    self.url = url
    self.header = header
    self.mapped = file
    self.dataStart = start
    self.precision = precision
  }

  /// Where records start after a header of `headerLength` bytes.
  static func alignedStart(headerLength: Int) -> Int { (16 + headerLength + 63) / 64 * 64 }

  /// Samples stored.
  public var count: Int { header.count }

  /// The stored fields of the samples `indices`, each [indices.count] + the field's shape, by name.
  public func tensors(_ indices: [Int]) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    let recordBytes = header.recordBytes
    var offset = 0
    for field in header.fields {
      let n = field.count
      let t = Tensor(shape: [indices.count] + field.shape, zeroed: false)
      mapped.withBytes { bytes in
        let base = bytes.baseAddress! + dataStart + offset
        for (row, index) in indices.enumerated() {
          precondition(index >= 0 && index < header.count, "sample \(index) of \(header.count)")
          let source = base + index * recordBytes
          let target = t.pointer + row * n
          switch precision {
          case .fp32:
            target.update(from: source.assumingMemoryBound(to: Float.self), count: n)
          case .bf16:
            let halves = source.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { target[i] = Float(bitPattern: UInt32(halves[i]) << 16) }
          }
        }
      }
      out[field.name] = t
      offset += n * precision.bytes
    }
    // Hand back the pages of large records, so a run's peak RSS stays what it computes.
    if mapped.isMapped && recordBytes >= Self.pageSize {
      mapped.withBytes { bytes in
        for index in indices {
          let start = dataStart + index * recordBytes
          Self.handBack(bytes, start..<min(start + recordBytes, bytes.count))
        }
      }
    }
    return out
  }

  static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

  /// Drops the mapped pages of `range` (byte offsets into the mapping `bytes`, widened down to
  /// a page boundary) from this process: read pages count in its resident memory although the
  /// kernel could drop them, and a page read again comes back from the page cache.
  static func handBack(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
    guard let base = bytes.baseAddress, !range.isEmpty else { return }
    let first = (Int(bitPattern: base) + range.lowerBound) / pageSize * pageSize
    _ = madvise(
      UnsafeMutableRawPointer(bitPattern: first), Int(bitPattern: base) + range.upperBound - first,
      MADV_DONTNEED)
  }

  /// The backbone output of the samples `indices` as the backbone gave it, with only the stored
  /// parts filled in (the rest are empty [B, 0] tensors: the method never reads them).
  public func output(_ indices: [Int]) -> BackboneOutput {
    let t = tensors(indices)
    let empty = Tensor.zeros([indices.count, 0])
    let depth = header.fields.filter { $0.name.hasPrefix("hidden.") }.count
    let layout: TokenLayout =
      header.grid.map { .grid(frames: $0[0], rows: $0[1], columns: $0[2]) } ?? .sequence
    let embedded = EmbeddedTokens(tokens: t["embedded"] ?? empty, layout: layout)
    let pass = ForwardPass(
      input: empty, embedded: embedded, prefixTokens: header.prefixTokens, hooks: nil)
    return BackboneOutput(
      tokens: t["tokens"] ?? empty, features: t["features"] ?? empty,
      hiddenStates: (0..<depth).map { t["hidden.\($0)"]! },
      prefixTokenCount: header.prefixTokens, pass: pass)
  }

  /// The parts of `output` that `reads` names, as (field name, tensor [B, ...]) in record order.
  static func parts(of output: BackboneOutput, reads: BackboneReads) -> [(String, Tensor)] {
    var out: [(String, Tensor)] = []
    if reads.contains(.features) { out.append(("features", output.features)) }
    if reads.contains(.tokens) { out.append(("tokens", output.tokens)) }
    if reads.contains(.embedded) { out.append(("embedded", output.embedded)) }
    if reads.contains(.hiddenStates) {
      for (i, h) in output.hiddenStates.enumerated() { out.append(("hidden.\(i)", h)) }
    }
    return out
  }

  /// Writes, atomically, the cache file at `url` for `key`: `batches` yields the backbone outputs
  /// of consecutive samples (`count` in all) in order; `reads` selects what is stored.
  static func write(
    to url: URL, key: String, count: Int, reads: BackboneReads,
    precision: FeatureCachePrecision, batches: () throws -> BackboneOutput?
  ) throws {
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try AtomicFile.write(to: url) { out in
      var written = 0
      var fields: [Field]? = nil
      var scratch: [UInt16] = []
      var hash = ContentHash()
      while let output = try batches() {
        let parts = parts(of: output, reads: reads)
        let b = output.tokens.shape[0]
        if fields == nil {
          let f = parts.map { Field(name: $0.0, shape: Array($0.1.shape.dropFirst())) }
          fields = f
          var grid: [Int]? = nil
          if case .grid(let frames, let rows, let columns) = output.layout {
            grid = [frames, rows, columns]
          }
          let header = Header(
            key: key, count: count, precision: precision.rawValue, fields: f,
            prefixTokens: output.prefixTokenCount, grid: grid)
          let json = try JSONEncoder().encode(header)
          var head = Data(Self.magic)
          for i in 0..<8 { head.append(UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * i))) }
          head.append(json)
          head.append(Data(count: Self.alignedStart(headerLength: json.count) - head.count))
          try out.write(head)
        }
        for row in 0..<b {
          for (part, field) in zip(parts, fields!) {
            precondition(
              Array(part.1.shape.dropFirst()) == field.shape,
              "\(field.name) changed shape within a split")
            let source = part.1.pointer + row * field.count
            switch precision {
            case .fp32:
              let record = UnsafeRawBufferPointer(start: source, count: field.count * 4)
              hash.update(record)
              try out.write(record)
            case .bf16:
              scratch.removeAll(keepingCapacity: true)
              for i in 0..<field.count { scratch.append(BFloat16.bits(source[i])) }
              try scratch.withUnsafeBytes {
                hash.update($0)
                try out.write($0)
              }
            }
          }
        }
        written += b
      }
      guard written == count else {
        throw FeatureCacheError(
          path: url.path, message: "the backbone gave \(written) samples, expected \(count)")
      }
      var trailer = hash.value64.littleEndian
      try withUnsafeBytes(of: &trailer) { try out.write($0) }
    }
  }
}

/// A run's use of the feature cache: which splits it read from which file, built or found. Made
/// by the trainer when the run may use the cache (`FeatureCache.session`); the run folder's
/// `feature_cache.json` records what it did.
final class FeatureCache {
  let method: TuningMethod
  let reads: BackboneReads
  let precision: FeatureCachePrecision
  /// The folder of this backbone's cache files.
  let folder: URL
  let batchSize: Int
  let workers: Int
  let weightsHash: String
  let configHash: String
  /// What the backbone computed in: BF16 features are not FP32 features.
  let backbonePrecision: BackbonePrecision
  let record: URL
  /// Messages for the run's log (what was built or reused, warnings), until `drain`.
  private var messages: [String] = []
  /// The opened file of each split, by split name.
  private var files: [String: FeatureCacheFile] = [:]
  /// What happened to each split, for `feature_cache.json`.
  private var report: [String: [String: Any]] = [:]
  /// Why the cache cannot be written, once a file could not be: the run goes on without it.
  private(set) var unwritable: String? = nil
  /// The splits that go without the cache for that reason (asked again every epoch: answered
  /// before their content is hashed, which would be one more pass over the data each time).
  private var notCached: Set<String> = []

  init(trainer: Trainer, reads: BackboneReads, folder: URL, runFolder: URL) {
    method = trainer.method
    self.reads = reads
    precision = trainer.config.cachePrecision
    self.folder = folder
    batchSize = trainer.config.evalBatchSize
    workers = trainer.config.workers
    weightsHash = trainer.backbone.weightsHash
    configHash = trainer.backbone.configHash
    backbonePrecision = trainer.backbonePrecision
    record = runFolder.appendingPathComponent(FeatureCache.recordFile)
  }

  private func log(_ message: String) { messages.append(message) }

  /// Gives the messages so far to `log`, once.
  func drain(_ log: (String) -> Void) {
    for m in messages { log(m) }
    messages.removeAll()
  }

  /// The run folder's record of the cache's use.
  static let recordFile = "feature_cache.json"

  /// Why `trainer`'s run cannot use the cache, or nil when it can (then `reads` says what to
  /// store).
  static func refusal(_ trainer: Trainer, cacheable: Bool) -> String? {
    let m = trainer.method
    if trainer.config.cache == .off { return "train.cache=off" }
    if m.needsBackboneGradient || !m.attachPoints.isEmpty || !m.linearSites.isEmpty
      || m.trainableTensors().contains(where: { $0.name.hasPrefix(m.prefix + ".backbone.") })
    {
      return "\(m.name) changes or trains the backbone"
    }
    guard let reads = m.backboneReads, !reads.isEmpty else {
      return "\(m.name) does not declare what it reads of the backbone's output"
    }
    if m.backboneTrainMode { return "train.backbone_train_mode is on" }
    if m.taskInput != .backbone { return "\(m.name) makes the backbone's input itself" }
    if !cacheable { return "the data's transforms are not fixed (augmentation or random views)" }
    return nil
  }

  /// The cache of `trainer`'s run in `runFolder`, or nil (with the reason recorded in the run
  /// folder) when the run cannot use one.
  static func session(_ trainer: Trainer, cacheable: Bool, runFolder: URL) throws
    -> FeatureCache?
  {
    if let why = refusal(trainer, cacheable: cacheable) {
      try writeRecord(["used": false, "reason": why], to: runFolder)
      return nil
    }
    let root =
      trainer.config.cacheDir.isEmpty
      ? DataHome.url().appendingPathComponent("feature-cache")
      : URL(fileURLWithPath: trainer.config.cacheDir)
    let folder = root.appendingPathComponent(
      trainer.backbone.weightsHash.replacingOccurrences(of: ":", with: "-"))
    let cache = FeatureCache(
      trainer: trainer, reads: trainer.method.backboneReads!, folder: folder,
      runFolder: runFolder)
    let (oldFiles, oldBytes) = olderFormatFiles(in: folder)
    if oldFiles > 0 {
      cache.log(
        String(
          format:
            "note: feature cache: %d file(s) of an earlier format (%.1f MB) in %@ are no longer "
            + "read; delete them to reclaim the disk",
          oldFiles, Double(oldBytes) / 1e6, folder.path))
    }
    let abandoned = AtomicFile.removeAbandonedTemporaries(in: folder)
    if !abandoned.isEmpty {
      cache.log(
        String(
          format: "feature cache: removed %d partial file(s) that killed runs left (%.1f MB)",
          abandoned.count, Double(abandoned.reduce(0) { $0 + $1.bytes }) / 1e6))
    }
    try cache.writeRecord()
    return cache
  }

  /// The cache files in `folder` that this version never reads (`GRAFTFC1`: no checksum; the
  /// key changed with it, so their names are never asked for again), and their bytes.
  static func olderFormatFiles(in folder: URL) -> (count: Int, bytes: Int) {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    var (count, bytes) = (0, 0)
    for name in names where name.hasSuffix(".graftfc") && !name.hasPrefix(".") {
      let path = folder.appendingPathComponent(name).path
      var st = stat()
      guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
      let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
      guard fd >= 0 else { continue }
      var magic = [UInt8](repeating: 0, count: 8)
      let n = pread(fd, &magic, 8, 0)
      close(fd)
      if n == 8 && magic == Array("GRAFTFC1".utf8) {
        count += 1
        bytes += Int(st.st_size)
      }
    }
    return (count, bytes)
  }

  private static func writeRecord(_ object: [String: Any], to runFolder: URL) throws {
    try AtomicFile.write(
      Data((try jsonLine(object) + "\n").utf8),
      to: runFolder.appendingPathComponent(recordFile))
  }

  private func writeRecord() throws {
    var object: [String: Any] = [
      "used": true, "folder": folder.path, "precision": precision.rawValue, "splits": report,
    ]
    if let unwritable { object["unwritable"] = unwritable }
    try Self.writeRecord(object, to: record.deletingLastPathComponent())
  }

  /// Stops building files for this run: the cache folder cannot be created or written (read
  /// only, full, a file in its place). The cache only saves time, so the run goes on through
  /// the backbone, with a warning, instead of failing (it failed, leaving a run folder without
  /// an adapter).
  private func giveUpWriting(_ why: String, split: String) throws {
    if unwritable == nil {
      log(
        "warning: feature cache: \(why); this run goes on without the cache (each epoch "
          + "through the backbone)")
    }
    unwritable = unwritable ?? why
    notCached.insert(split)
    report[split] = ["status": "not cached", "reason": unwritable!]
    try writeRecord()
  }

  /// The names of what `reads` stores, for the key.
  private var readNames: String {
    [
      (BackboneReads.features, "features"), (.tokens, "tokens"), (.embedded, "embedded"),
      (.hiddenStates, "hidden"),
    ]
    .filter { reads.contains($0.0) }.map(\.1).joined(separator: "+")
  }

  /// The cache file of split `name` (`dataset` through `transform`), opened, or built first
  /// when there is none for its content or the one there is damaged; nil when it would have
  /// to be built and the cache cannot be written (`unwritable`).
  func file<Sample>(
    _ name: String, dataset: any Dataset<Sample>, transform: @escaping SampleTransform<Sample>
  ) throws -> FeatureCacheFile? {
    if let open = files[name] { return open }
    if notCached.contains(name) { return nil }
    let started = Date()
    let loader = DataLoader(
      dataset: dataset, batchSize: batchSize, shuffle: false, workers: workers,
      transform: transform)
    // The split's content as the backbone sees it: every input tensor and label.
    var hash = ContentHash()
    do {
      let batches = loader.batches(epoch: 0)
      defer { batches.close() }
      while let batch = try batches.next() {
        hash.update(
          UnsafeRawBufferPointer(start: batch.inputs.pointer, count: batch.inputs.byteCount))
        batch.labels.map(Int64.init).withUnsafeBytes { hash.update($0) }
      }
    }
    let key = [
      "graft feature cache 2", "weights \(weightsHash)", "backbone config \(configHash)",
      "stores \(readNames)", "precision \(precision.rawValue)",
      "backbone precision \(backbonePrecision.rawValue)", "samples \(dataset.count)",
      "content \(hash.hex)",
    ].joined(separator: "; ")
    let url = folder.appendingPathComponent(
      "\(name)-\(readNames)-\(FNV1a64.text(key).dropFirst("fnv1a64:".count)).graftfc")
    var status = "reused"
    var file: FeatureCacheFile? = nil
    if FileManager.default.fileExists(atPath: url.path) {
      do {
        file = try FeatureCacheFile(url: url, key: key)
      } catch {
        log("warning: feature cache \(error); rebuilding it")
        status = "rebuilt"
      }
    } else {
      status = "built"
    }
    if file == nil {
      if let unwritable {
        try giveUpWriting(unwritable, split: name)
        return nil
      }
      do {
        try RunFolder.createFolder(folder)
      } catch {
        try giveUpWriting("\(error)", split: name)
        return nil
      }
      method.setTraining(false)
      let batches = loader.batches(epoch: 0)
      defer { batches.close() }
      do {
        try FeatureCacheFile.write(
          to: url, key: key, count: dataset.count, reads: reads, precision: precision
        ) {
          guard let batch = try batches.next() else { return nil }
          return method.backboneOutput(batch.inputs)
        }
      } catch let error as FileError where error.path == url.path {
        // Writing the file failed (no space, read only); the data's own errors name other
        // files and end the run.
        try giveUpWriting("\(error)", split: name)
        return nil
      }
      file = try FeatureCacheFile(url: url, key: key)
    }
    let opened = file!
    files[name] = opened
    let bytes = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
    report[name] = [
      "status": status, "file": url.path, "samples": opened.count, "bytes": bytes,
      "seconds": Date().timeIntervalSince(started),
    ]
    try writeRecord()
    log(
      String(
        format: "feature cache: %@ %@ (%d samples, %.1f MB) in %.1f s", status, name,
        opened.count, Double(bytes) / 1e6, Date().timeIntervalSince(started)))
    return opened
  }

  /// The metrics and logits of `method` over split `name`, from the cache (as `evaluate`);
  /// nil when the split is not cached and cannot be (`unwritable`).
  func evaluate<Sample>(
    _ name: String, dataset: any Dataset<Sample>, transform: @escaping SampleTransform<Sample>
  ) throws -> (result: EvaluationResult, logits: Tensor)? {
    guard let file = try file(name, dataset: dataset, transform: transform) else { return nil }
    method.setTraining(false)
    var acc = EvaluationResult.Accumulator(classes: method.classes)
    var all: [Tensor] = []
    for start in stride(from: 0, to: file.count, by: batchSize) {
      let indices = Array(start..<min(start + batchSize, file.count))
      let logits = withNoGrad { method.logits(file.output(indices)) }
      acc.add(logits: logits, labels: indices.map { dataset.label(at: $0) })
      all.append(logits)
    }
    let logits = all.isEmpty ? Tensor.zeros([0, method.classes]) : Tensor.concat(all, axis: 0)
    return (acc.result, logits)
  }
}

/// A fast 64-bit content hash of many bytes: FNV-1a over 8-byte words (then the tail bytes),
/// with the length mixed in at the end. Tells contents apart; does not resist tampering. Only
/// the bytes count, not how they were split between `update` calls: a record of an odd number
/// of floats leaves 4 bytes that wait for the next call's.
struct ContentHash {
  private var value: UInt64 = 0xcbf2_9ce4_8422_2325
  private var length: UInt64 = 0
  /// The bytes after the last whole word (fewer than 8), little-endian, and how many.
  private var pending: UInt64 = 0
  private var pendingCount = 0

  private static func mix(_ h: UInt64, _ word: UInt64) -> UInt64 {
    let m = (h ^ word) &* 0x0000_0100_0000_01b3
    return m ^ (m >> 29)
  }

  mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
    var h = value
    var i = 0
    // Complete a word begun by the last call.
    while pendingCount > 0 && pendingCount < 8 && i < bytes.count {
      pending |= UInt64(bytes[i]) << (8 * UInt64(pendingCount))
      pendingCount += 1
      i += 1
    }
    if pendingCount == 8 {
      h = Self.mix(h, pending)
      (pending, pendingCount) = (0, 0)
    }
    while i + 8 <= bytes.count {
      h = Self.mix(h, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
      i += 8
    }
    while i < bytes.count {
      pending |= UInt64(bytes[i]) << (8 * UInt64(pendingCount))
      pendingCount += 1
      i += 1
    }
    value = h
    length &+= UInt64(bytes.count)
  }

  /// The hash, with the tail bytes and the length mixed in.
  var value64: UInt64 {
    var h = value
    for b in 0..<pendingCount {
      h = (h ^ ((pending >> (8 * UInt64(b))) & 0xFF)) &* 0x0000_0100_0000_01b3
    }
    return (h ^ length) &* 0x0000_0100_0000_01b3
  }

  /// `value64` as 16 hex digits.
  var hex: String {
    let text = String(value64, radix: 16)
    return String(repeating: "0", count: 16 - text.count) + text
  }
}

/// The training batches of one epoch: decoded and run through the backbone, or read from the
/// feature cache (the same samples in the same batches either way).
final class TrainingBatches<Sample> {
  /// One batch: its labels, and its logits computed when asked.
  struct Item {
    let labels: [Int]
    let logits: () -> Tensor
  }

  private let method: TuningMethod
  private var iterator: BatchIterator<Sample>? = nil
  private var plan: [[Int]] = []
  private var file: FeatureCacheFile? = nil
  private let dataset: any Dataset<Sample>
  private var position = 0

  /// Epoch `epoch` of `loader` for `method`, through `cache` when there is one.
  init(loader: DataLoader<Sample>, epoch: Int, method: TuningMethod, cache: FeatureCache?) throws {
    self.method = method
    dataset = loader.dataset
    if let cache, loader.dataset.count > 0,
      let cached = try cache.file("train", dataset: loader.dataset, transform: loader.transform)
    {
      file = cached
      plan = loader.batchIndices(epoch: epoch)
      // `file` put the method in eval mode to build; the epoch trains.
      method.setTraining(true)
    } else {
      iterator = loader.batches(epoch: epoch)
      // A split the cache could not write may have left the method in eval mode too.
      if cache != nil { method.setTraining(true) }
    }
  }

  /// The next batch, or nil after the last.
  func next() throws -> Item? {
    if let iterator {
      guard let batch = try iterator.next() else { return nil }
      let method = self.method
      return Item(labels: batch.labels, logits: { method(batch.inputs) })
    }
    guard position < plan.count, let file else { return nil }
    let indices = plan[position]
    position += 1
    let method = self.method
    return Item(
      labels: indices.map { dataset.label(at: $0) },
      logits: { method.logits(file.output(indices)) })
  }

  /// Stops the decoding workers of an uncached epoch.
  func close() { iterator?.close() }
}
