import XCTest

@testable import GraftTasks

/// The feature cache (`train.cache`): a cached run equals an uncached one up to float
/// reordering, a later run reuses the file, a changed backbone, dataset or transform never reads
/// a stale one, and a damaged file is rebuilt with a warning.
///
/// The cache is built in evaluation batches and read in shuffled training batches, and OpenBLAS
/// computes a GEMM's last rows (those past a multiple of its kernel's row block: 12 with the
/// AVX2 kernels) in another summation order than the rest, so a sample's features can differ in
/// their last bits with the batch it ran in; two epochs grew that to 1.3e-4 in MP's loss and one
/// changed prediction (its normalised covariances, on a Zen 3). These runs use batches of 48
/// samples of 5 tokens (240 rows: whole blocks for the x86 kernels), where every sample's
/// backbone outputs are the same bits in either run. What remains (4.7e-6 in MP's test loss on
/// the Zen 3, none for the linear probe) has a source not yet traced; each run alone repeats
/// bit for bit.
final class FeatureCacheTests: XCTestCase {
  /// A short digits run (2 epochs, 192 samples in batches of 48) with the cache in `cacheDir`, or
  /// off when nil; returns the summary, the per-epoch metrics, the run's `feature_cache.json` and
  /// the log.
  func run(
    _ method: String, cacheDir: URL?, backbone: TuneBackbone = tinyBackbone(),
    data: TuneData<RGBImage> = digits, extra: [String] = []
  ) throws -> (summary: TuneSummary, metrics: [[String: Any]], record: [String: Any], log: [String])
  {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var config = try TuneConfig.preset(for: method)
    var settings = [
      "train.epochs=2", "data.train_samples=192", "train.batch_size=48",
      "train.eval_batch_size=48", "train.workers=0", "optim.name=adamw", "optim.lr=0.01",
    ]
    if let cacheDir {
      settings.append("train.cache_dir=\(cacheDir.path)")
    } else {
      settings.append("train.cache=off")
    }
    if method == "lst" { settings.append("method.reduction=4") }
    for s in settings + extra { try config.set(assignment: s) }
    let trainer = try Trainer(backbone: backbone, config: config, classNames: data.classNames)
    var log: [String] = []
    let summary = try XCTUnwrap(trainer.run(data: data, folder: folder, log: { log.append($0) }))
    let metrics = try String(
      contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8
    )
    .split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    let record =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: folder.appendingPathComponent("feature_cache.json")))
      as! [String: Any]
    return (summary, metrics, record, log)
  }

  /// The status (`built`, `reused`, `rebuilt`) of each split in a run's record.
  func statuses(_ record: [String: Any]) -> [String: String] {
    let splits = record["splits"] as? [String: [String: Any]] ?? [:]
    return splits.mapValues { $0["status"] as? String ?? "" }
  }

  func assertSameResults(
    _ a: (summary: TuneSummary, metrics: [[String: Any]]),
    _ b: (summary: TuneSummary, metrics: [[String: Any]]), _ what: String
  ) {
    XCTAssertEqual(a.metrics.count, b.metrics.count, what)
    for (x, y) in zip(a.metrics, b.metrics) {
      for key in ["train_loss", "train_top1", "val_loss", "val_top1"] {
        XCTAssertEqual(
          x[key] as! Double, y[key] as! Double, accuracy: 1e-5,
          "\(what): epoch \(x["epoch"]!) \(key)")
      }
    }
    XCTAssertEqual(a.summary.test.loss, b.summary.test.loss, accuracy: 1e-5, what)
    XCTAssertEqual(a.summary.test.top1, b.summary.test.top1, accuracy: 1e-5, what)
    XCTAssertEqual(a.summary.bestEpoch, b.summary.bestEpoch, what)
  }

  /// The cached run of `method` equals the uncached one (losses and accuracies within 1e-5),
  /// and a second run reads the same files and ends the same.
  func cachedRunEqualsUncachedRun(_ method: String) throws {
    let cacheDir = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: cacheDir) }
    let plain = try run(method, cacheDir: nil)
    XCTAssertEqual(plain.record["used"] as? Bool, false, method)
    XCTAssertEqual(plain.record["reason"] as? String, "train.cache=off", method)
    let first = try run(method, cacheDir: cacheDir)
    XCTAssertEqual(first.record["used"] as? Bool, true, method)
    XCTAssertEqual(statuses(first.record), ["train": "built", "val": "built", "test": "built"])
    assertSameResults((plain.summary, plain.metrics), (first.summary, first.metrics), method)
    let second = try run(method, cacheDir: cacheDir)
    XCTAssertEqual(
      statuses(second.record), ["train": "reused", "val": "reused", "test": "reused"], method)
    assertSameResults((first.summary, first.metrics), (second.summary, second.metrics), method)
  }

  func testCachedLinearEqualsUncached() throws { try cachedRunEqualsUncachedRun("linear") }
  func testCachedMPEqualsUncached() throws { try cachedRunEqualsUncachedRun("mp") }
  func testCachedLSTEqualsUncached() throws { try cachedRunEqualsUncachedRun("lst") }
  func testCachedUniPTEqualsUncached() throws { try cachedRunEqualsUncachedRun("unipt") }

  /// A changed backbone, training subset or transform builds new files; the old ones stay
  /// unread.
  func testChangedBackboneDataOrTransformIsNotReused() throws {
    let cacheDir = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: cacheDir) }
    let first = try run("linear", cacheDir: cacheDir)
    XCTAssertEqual(statuses(first.record)["train"], "built")

    let otherWeights = try run("linear", cacheDir: cacheDir, backbone: tinyBackbone(seed: 2))
    XCTAssertEqual(
      statuses(otherWeights.record), ["train": "built", "val": "built", "test": "built"])

    // Another training subset of the same size: same count, other images.
    let otherData = try run("linear", cacheDir: cacheDir, extra: ["seed=5"])
    XCTAssertEqual(statuses(otherData.record)["train"], "built")
    XCTAssertEqual(statuses(otherData.record)["val"], "reused")

    // Another transform (normalisation) under the same weights and recorded settings hashes:
    // only the content of the inputs tells it apart, and it does.
    var shifted = tinyBackbone()
    guard case .image(var preprocessing) = shifted.input else { return XCTFail("not images") }
    preprocessing.mean = [0.4, 0.4, 0.4]
    shifted.input = .image(preprocessing)
    XCTAssertEqual(shifted.configHash, tinyBackbone().configHash)
    let otherTransform = try run("linear", cacheDir: cacheDir, backbone: shifted)
    XCTAssertEqual(
      statuses(otherTransform.record), ["train": "built", "val": "built", "test": "built"])
    let uncached = try run("linear", cacheDir: nil, backbone: shifted)
    assertSameResults(
      (uncached.summary, uncached.metrics), (otherTransform.summary, otherTransform.metrics),
      "changed transform")
  }

  /// FP32 features in the cache are not read by a BF16 run of the same backbone and data.
  func testFeatureCacheKeepsPrecisionsApart() throws {
    try XCTSkipUnless(BF16Support.isAvailable, BF16Support.unavailableReason ?? "")
    let cacheDir = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: cacheDir) }
    let first = try run("linear", cacheDir: cacheDir)
    XCTAssertEqual(statuses(first.record)["train"], "built")
    let bf16 = try run("linear", cacheDir: cacheDir, extra: ["backbone.precision=bf16"])
    XCTAssertEqual(
      statuses(bf16.record), ["train": "built", "val": "built", "test": "built"])
    let again = try run("linear", cacheDir: cacheDir, extra: ["backbone.precision=bf16"])
    XCTAssertEqual(statuses(again.record)["train"], "reused")
    XCTAssertNotEqual(bf16.summary.test.loss, first.summary.test.loss)
  }

  /// A truncated file and one with a damaged header are rebuilt with a warning, and the run
  /// ends as the first did.
  func testDamagedCacheIsRebuilt() throws {
    let cacheDir = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: cacheDir) }
    let first = try run("mp", cacheDir: cacheDir)
    let splits = first.record["splits"] as! [String: [String: Any]]
    let trainFile = splits["train"]!["file"] as! String
    let valFile = splits["val"]!["file"] as! String
    let train = try Data(contentsOf: URL(fileURLWithPath: trainFile))
    try train.prefix(train.count - 100).write(to: URL(fileURLWithPath: trainFile))
    var val = try Data(contentsOf: URL(fileURLWithPath: valFile))
    val[20] ^= 0xFF
    try val.write(to: URL(fileURLWithPath: valFile))
    // Zeros over a record's last bytes, the length kept: read as features before the checksum.
    let testFile = splits["test"]!["file"] as! String
    var test = try Data(contentsOf: URL(fileURLWithPath: testFile))
    test.replaceSubrange((test.count - 12)..<(test.count - 8), with: [0, 0, 0, 0])
    try test.write(to: URL(fileURLWithPath: testFile))
    let second = try run("mp", cacheDir: cacheDir)
    XCTAssertEqual(
      statuses(second.record), ["train": "rebuilt", "val": "rebuilt", "test": "rebuilt"])
    let warnings = second.log.filter { $0.hasPrefix("warning: feature cache") }
    XCTAssertEqual(warnings.count, 3, "\(second.log)")
    XCTAssertTrue(warnings.contains { $0.contains(trainFile) && $0.contains("truncated") })
    XCTAssertTrue(warnings.contains { $0.contains(testFile) && $0.contains("checksum") })
    assertSameResults((first.summary, first.metrics), (second.summary, second.metrics), "rebuilt")
  }

  /// A run killed while it built a cache file leaves `.NAME.tmp-PID-…` behind; the next run
  /// into the cache removes it once its process is gone and it has not changed for ten minutes,
  /// and leaves the partial file of a live process, or a fresh one, alone. Nothing removed such
  /// files before (73.5 MB for a 200-sample LST cache of the bundled backbone).
  func testPartialFilesOfKilledRunsAreRemoved() throws {
    let cacheDir = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: cacheDir) }
    let first = try run("linear", cacheDir: cacheDir)
    let splits = first.record["splits"] as! [String: [String: Any]]
    let folder = URL(fileURLWithPath: splits["train"]!["file"] as! String)
      .deletingLastPathComponent()
    // pid_max is at most 2^22 on Linux: these processes cannot exist.
    let abandoned = folder.appendingPathComponent(".train-x.graftfc.tmp-999999999-k3")
    let live = folder.appendingPathComponent(".train-y.graftfc.tmp-\(getpid())-k4")
    let fresh = folder.appendingPathComponent(".train-z.graftfc.tmp-999999998-k5")
    // Not a name AtomicFile writes (no random part): never removed.
    let other = folder.appendingPathComponent(".notes.tmp-999999997")
    let hourAgo = Date().addingTimeInterval(-3600)
    for url in [abandoned, live, fresh, other] {
      try Data(count: 4096).write(to: url)
      if url != fresh {
        try FileManager.default.setAttributes([.modificationDate: hourAgo], ofItemAtPath: url.path)
      }
    }
    let second = try run("linear", cacheDir: cacheDir)
    XCTAssertFalse(FileManager.default.fileExists(atPath: abandoned.path))
    XCTAssertTrue(FileManager.default.fileExists(atPath: live.path))
    XCTAssertTrue(FileManager.default.fileExists(atPath: fresh.path))
    XCTAssertTrue(FileManager.default.fileExists(atPath: other.path))
    XCTAssertTrue(
      second.log.contains { $0.contains("removed 1 partial file") }, "\(second.log)")
  }

  /// A cache folder that cannot be made (here a file stands where it would be; read-only and
  /// full disks fail the same way) costs the run its speed-up, not the run: a warning, the
  /// record says why, and the results are the uncached run's. It failed before, leaving a run
  /// folder without an adapter.
  func testACacheThatCannotBeWrittenIsAWarningNotAFailure() throws {
    let parent = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: parent) }
    try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
    let blocked = parent.appendingPathComponent("cache")
    try Data("a file, not a folder".utf8).write(to: blocked)
    let plain = try run("linear", cacheDir: nil)
    let blockedRun = try run("linear", cacheDir: blocked)
    let warnings = blockedRun.log.filter { $0.hasPrefix("warning: feature cache") }
    XCTAssertEqual(warnings.count, 1, "\(blockedRun.log)")
    XCTAssertTrue(warnings.first?.contains("without the cache") == true, "\(warnings)")
    XCTAssertNotNil(blockedRun.record["unwritable"], "\(blockedRun.record)")
    // Every split is recorded, each answered once (not hashed again every epoch).
    XCTAssertEqual(
      statuses(blockedRun.record),
      ["train": "not cached", "val": "not cached", "test": "not cached"])
    assertSameResults(
      (plain.summary, plain.metrics), (blockedRun.summary, blockedRun.metrics), "blocked")
  }

  /// Methods that change or train the backbone, and augmented data, never use the cache.
  func testRefusals() throws {
    let config = try TuneConfig.preset(for: "lora")
    let lora = try Trainer(backbone: tinyBackbone(), config: config, classNames: digits.classNames)
    XCTAssertEqual(
      FeatureCache.refusal(lora, cacheable: true), "lora changes or trains the backbone")
    let mpPlus = try Trainer(
      backbone: tinyBackbone(), config: TuneConfig.preset(for: "mp+"),
      classNames: digits.classNames)
    XCTAssertNotNil(FeatureCache.refusal(mpPlus, cacheable: true))
    let linear = try Trainer(
      backbone: tinyBackbone(), config: TuneConfig.preset(for: "linear"),
      classNames: digits.classNames)
    XCTAssertNil(FeatureCache.refusal(linear, cacheable: true))
    XCTAssertNotNil(FeatureCache.refusal(linear, cacheable: false))
    XCTAssertFalse(try PointCloud.transforms(for: .points(PointInput(points: 64))).cacheable)
  }

  /// A file of records larger than a page (whose mapped pages are handed back after each read)
  /// reads back every sample exactly in FP32, and within BF16's rounding in BF16, however often
  /// and in whatever order samples are read; a file asked for with another key is refused.
  /// Opening a file checks its records' checksum without keeping them resident: 64 MB of
  /// records leave at most a 16 MiB piece in the process's resident memory (hashing through
  /// the mapping at once left all 64, so a cached lst run peaked at its cache's size).
  func testTheChecksumDoesNotKeepTheFileResident() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("big.graftfc")
    let block = Tensor.zeros([16, 64, 256])  // 16 samples of 64 KiB
    var written = 0
    try FeatureCacheFile.write(to: url, key: "k", count: 1024, reads: [.tokens], precision: .fp32) {
      guard written < 1024 else { return nil }
      written += 16
      let pass = ForwardPass(
        input: block, embedded: EmbeddedTokens(tokens: block, layout: .sequence),
        prefixTokens: 0, hooks: nil)
      return BackboneOutput(
        tokens: block, features: Tensor.zeros([16, 0]), hiddenStates: [], prefixTokenCount: 0,
        pass: pass)
    }
    func residentBytes() throws -> Int {
      let fields = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8)
        .split(separator: " ")
      return Int(fields[1])! * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
    let before = try residentBytes()
    let file = try FeatureCacheFile(url: url, key: "k")
    let grown = try residentBytes() - before
    XCTAssertEqual(file.count, 1024)
    XCTAssertLessThan(grown, 24 << 20, "opening a 64 MiB file kept \(grown >> 20) MiB resident")
  }

  func testFileRoundTrip() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var g = RandomGenerator(seed: 7)
    let tokens = Tensor.randn([100, 8, 256], generator: &g)
    let features = Tensor.randn([100, 256], generator: &g)
    for precision in FeatureCachePrecision.allCases {
      let url = folder.appendingPathComponent("split-\(precision).graftfc")
      var next = 0
      try FeatureCacheFile.write(
        to: url, key: "k", count: 100, reads: [.features, .tokens], precision: precision
      ) {
        guard next < 100 else { return nil }
        let rows = Array(next..<min(next + 32, 100))
        next += rows.count
        let t = tokens.narrow(0, start: rows[0], length: rows.count).copy()
        let pass = ForwardPass(
          input: t, embedded: EmbeddedTokens(tokens: t, layout: .sequence), prefixTokens: 1,
          hooks: nil)
        return BackboneOutput(
          tokens: t, features: features.narrow(0, start: rows[0], length: rows.count).copy(),
          hiddenStates: [], prefixTokenCount: 1, pass: pass)
      }
      let file = try FeatureCacheFile(url: url, key: "k")
      XCTAssertEqual(file.count, 100)
      let tolerance: Float = precision == .fp32 ? 0 : 1.0 / 128
      for indices in [[3, 50, 3], [99, 0], [50]] {
        let out = file.output(indices)
        XCTAssertEqual(out.tokens.shape, [indices.count, 8, 256])
        XCTAssertEqual(out.prefixTokenCount, 1)
        for (row, index) in indices.enumerated() {
          let a = out.tokens.narrow(0, start: row, length: 1).scalars
          let b = tokens.narrow(0, start: index, length: 1).scalars
          let f = out.features.narrow(0, start: row, length: 1).scalars
          let e = features.narrow(0, start: index, length: 1).scalars
          let worst = zip(a + f, b + e).map { abs($0 - $1) / max(abs($1), 1) }.max()!
          XCTAssertLessThanOrEqual(worst, tolerance, "\(precision) sample \(index)")
        }
      }
      XCTAssertThrowsError(try FeatureCacheFile(url: url, key: "other"))
    }
  }

  /// The content hash depends on the bytes, not on how they were split between calls (cache
  /// records of an odd number of floats end mid-word), and one call gives what `run.json`
  /// fingerprints recorded before it could be split.
  func testContentHashIgnoresHowBytesAreSplit() {
    let bytes = (0..<203).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    var whole = ContentHash()
    bytes.withUnsafeBytes { whole.update($0) }
    for cuts in [[4], [3, 7, 100], [1, 2, 3, 4, 5, 6, 7, 8, 9], [200]] {
      var split = ContentHash()
      var start = 0
      for end in cuts + [bytes.count] {
        bytes[start..<end].withUnsafeBytes { split.update($0) }
        start = end
      }
      XCTAssertEqual(split.value64, whole.value64, "\(cuts)")
    }
    var other = ContentHash()
    (bytes.dropLast() + [bytes.last! ^ 1]).withUnsafeBytes { other.update($0) }
    XCTAssertNotEqual(other.value64, whole.value64)
    // The fingerprint of "method: linear\n" as run folders recorded it before the hash could
    // be split (the earlier graft's run.json for a tune_config.yaml agreed with this value's
    // formula, so old run folders still resume).
    XCTAssertEqual(RunConfigFile.fingerprint("method: linear\n"), "484e09a10b2b4c2e")
  }

  /// BF16 storage reads back each value within half a unit in the 8th bit.
  func testBF16RoundTrip() throws {
    XCTAssertEqual(BFloat16.bits(1), 0x3F80)
    XCTAssertEqual(Float(bitPattern: UInt32(BFloat16.bits(1 + 1 / 256)) << 16), 1)  // ties to even
    var g = RandomGenerator(seed: 3)
    for _ in 0..<1000 {
      let v = Tensor.randn([1], generator: &g).item * 10
      let back = Float(bitPattern: UInt32(BFloat16.bits(v)) << 16)
      XCTAssertLessThanOrEqual(abs(back - v), abs(v) / 256 + 1e-30)
    }
  }
}
