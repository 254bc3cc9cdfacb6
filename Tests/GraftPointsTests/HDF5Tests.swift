import CHDF5Shim
import Foundation
import Synchronization
import XCTest

@testable import GraftPoints

/// HDF5 files written in exactly the layouts of ModelNet40's `ply_data_*.h5` and ScanObjectNN's
/// `*_objectdataset*.h5` (no real copies of either are available to the tests).
final class HDF5Tests: XCTestCase {
  private let (clouds, points) = (3, 5)

  private func positions(_ offset: Float = 0) -> [Float] {
    (0..<(clouds * points * 3)).map { Float($0) * 0.125 - 4 + offset }
  }

  func testReadsModelNet40Layout() throws {
    let url = try temporaryFolder(self).appendingPathComponent("ply_data_train0.h5")
    let writer = try HDF5Writer()
    try writer.add("data", floats: positions(), shape: [clouds, points, 3])
    try writer.add(
      "faceId", integers: (0..<(clouds * points)).map { $0 }, shape: [clouds, points], type: .int32)
    try writer.add("label", integers: [7, 0, 39], shape: [clouds, 1], type: .uint8)
    try writer.add("normal", floats: positions(100), shape: [clouds, points, 3])
    try writer.write(to: url)

    let file = try HDF5File(contentsOf: url)
    let info = try XCTUnwrap(try file.info("label"))
    XCTAssertEqual(info.shape, [3, 1])
    XCTAssertTrue(info.isInteger)
    XCTAssertEqual(info.elementSize, 1)
    XCTAssertNil(try file.info("mask"))

    let set = try PointCloudSet.read(contentsOf: url)
    XCTAssertEqual(set.clouds, 3)
    XCTAssertEqual(set.pointsPerCloud, 5)
    XCTAssertEqual(set.positions, positions())
    XCTAssertEqual(set.normals, positions(100))
    XCTAssertEqual(set.labels, [7, 0, 39])
    XCTAssertEqual(set.tensor().shape, [3, 5, 3])
    XCTAssertEqual(set.cloud(1).positions, Array(positions()[15..<30]))
    XCTAssertEqual(set.cloud(1).normals, Array(positions(100)[15..<30]))

    let contents = try PointFile.read(url, cloudIndex: 2)
    XCTAssertEqual(contents.format, .hdf5)
    XCTAssertEqual(contents.clouds, 3)
    XCTAssertEqual(contents.label, 39)
    XCTAssertEqual(contents.fields, ["x", "y", "z", "nx", "ny", "nz"])
    assertPointError(.indexOutOfRange, path: url.path, "cloud 3") {
      try PointFile.read(url, cloudIndex: 3)
    }
  }

  /// Each file is read by a child process of its own that lives as long as the `HDF5File`: any
  /// number of describes and reads start no other, and the child is gone (reaped, not a zombie)
  /// once the file is released.
  func testOneChildProcessPerFileEndsWithIt() throws {
    let url = try temporaryFolder(self).appendingPathComponent("ply_data_train2.h5")
    let writer = try HDF5Writer()
    try writer.add("data", floats: positions(), shape: [clouds, points, 3], gzip: 1)
    try writer.add("label", integers: [5, 6, 7], shape: [clouds, 1], type: .uint8)
    try writer.write(to: url)
    let before = childProcesses()
    var file: HDF5File? = try HDF5File(contentsOf: url)
    let during = childProcesses()
    XCTAssertEqual(during.subtracting(before).count, 1, "\(before) → \(during)")
    for _ in 0..<20 {
      XCTAssertEqual(try file?.floats("data").values, positions())
      XCTAssertEqual(try file?.integers("label").values, [5, 6, 7])
      XCTAssertNil(try file?.info("normal"))
    }
    XCTAssertEqual(childProcesses(), during)
    file = nil
    XCTAssertEqual(childProcesses(), before)
  }

  /// A reading process that dies between requests (killed here, as the kernel's OOM killer
  /// would) makes that read and every later one a named error, not a hang or a crash.
  func testReadingProcessThatDiesGivesNamedErrors() throws {
    let (url, file, child, before) = try openWithReadingProcess("ply_data_train3.h5")
    XCTAssertEqual(try file.floats("data").values, positions())
    XCTAssertEqual(kill(pid_t(child), SIGKILL), 0)
    for _ in 0..<2 {
      assertPointError(.corruptData, path: url.path, "SIGKILL") { try file.floats("data") }
    }
    XCTAssertEqual(childProcesses(), before)
  }

  /// A damaged file on which libhdf5 allocates without end (found by the fuzzer; about
  /// 370 MB a second, 20 GB when it was found: its `data` has shape [2] and chunks of
  /// [2, 16, 3]) is refused from its layout; a valid file whose 192 bytes of data sit in one
  /// compressed chunk of 400 MB (`Tools/make_hdf5_oversized_chunk.py`) reaches the reading
  /// process's memory limit, a named error. Both within seconds, and no reading process ever
  /// held a gigabyte.
  func testChunksThatNeedUnboundedMemoryFailFast() throws {
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    let growing = here.appendingPathComponent(
      "../../Fuzz/Regressions/hdf5/unbounded-memory-growth.h5"
    ).standardized
    let oversized = here.appendingPathComponent("Fixtures/hdf5/oversized-chunk.h5")
    let start = Date()
    // As the fuzz target reads it.
    assertPointError(.corruptData, path: growing.path, "chunks do not match its shape") {
      let file = try HDF5File(contentsOf: growing)
      _ = try file.floats("data")
    }
    do {
      let file = try HDF5File(contentsOf: oversized)
      XCTAssertEqual(try file.info("data")?.shape, [1, 16, 3])
      XCTAssertEqual(try file.integers("label").values, [4])
      assertPointError(.corruptData, path: oversized.path, "reading process's memory limit") {
        try file.floats("data")
      }
    }  // The file is released here, and its reading process reaped.
    XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    var usage = rusage()
    XCTAssertEqual(getrusage(RUSAGE_CHILDREN.rawValue, &usage), 0)
    // ru_maxrss is in KiB: the largest child this test process has reaped.
    XCTAssertLessThan(usage.ru_maxrss, 1 << 20, "a reading process held \(usage.ru_maxrss) KiB")
  }

  /// The reading process runs under an address-space limit, a CPU-time limit and no core
  /// files, raised for a read to what its data needs (and no further).
  func testReadingProcessRunsUnderLimits() throws {
    let (_, file, child, _) = try openWithReadingProcess("limits.h5")
    func softLimit(_ name: String) throws -> String {
      let limits = try String(contentsOfFile: "/proc/\(child)/limits", encoding: .utf8)
      let line = try XCTUnwrap(limits.split(separator: "\n").first { $0.hasPrefix(name) })
      return String(line.dropFirst(name.count).split(separator: " ")[0])
    }
    let opened = try XCTUnwrap(UInt64(try softLimit("Max address space")))
    XCTAssertEqual(try softLimit("Max core file size"), "0")
    let cpu = try XCTUnwrap(Int(try softLimit("Max cpu time")))
    XCTAssertTrue((60...70).contains(cpu), "\(cpu) s")
    // After a read the limit covers that read's data, twice (the reply's buffer and a
    // converted copy), on top of what the child had when it opened the file.
    XCTAssertEqual(try file.floats("data").values, positions())
    let afterRead = try XCTUnwrap(UInt64(try softLimit("Max address space")))
    XCTAssertEqual(afterRead - opened, UInt64(2 * positions().count * 4))
  }

  /// A reading process whose parent dies (killed, crashed) leaves too, even while it is stuck
  /// inside a call that never returns: here opening a FIFO nobody writes to, standing in for
  /// libhdf5 looping on a damaged file or a read from a hung network disk. It outlived its
  /// parent by hours before.
  func testReadingProcessLeavesWhenItsParentDies() throws {
    let fifo = try temporaryFolder(self).appendingPathComponent("stuck.h5").path
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    let path = strdup(fifo)
    defer { free(path) }
    // The parent: a fork of this process that opens a reader, which never answers, then is
    // killed. Only C calls run in it.
    let parent = fork()
    if parent == 0 {
      var reader: OpaquePointer?
      _ = gh5_reader_open(path, &reader, nil)
      _exit(0)
    }
    XCTAssertGreaterThan(parent, 0)
    var reading: Int?
    for _ in 0..<200 where reading == nil {
      reading = processes(childrenOf: Int(parent)).first
      if reading == nil { usleep(10_000) }
    }
    let child = try XCTUnwrap(reading, "the parent started no reading process")
    XCTAssertEqual(kill(parent, SIGKILL), 0)
    var status: Int32 = 0
    XCTAssertEqual(waitpid(parent, &status, 0), parent)
    var gone = false
    for _ in 0..<300 where !gone {
      gone = !FileManager.default.fileExists(atPath: "/proc/\(child)/stat") || isZombie(child)
      if !gone { usleep(10_000) }
    }
    if !gone { kill(pid_t(child), SIGKILL) }
    XCTAssertTrue(gone, "the reading process \(child) outlived its parent by 3 s")
  }

  /// Writes a ModelNet-layout file named `name` and opens it; returns the file, the pid of the
  /// reading process it started and this process's children before it.
  private func openWithReadingProcess(_ name: String) throws -> (URL, HDF5File, Int, Set<Int>) {
    let url = try temporaryFolder(self).appendingPathComponent(name)
    let writer = try HDF5Writer()
    try writer.add("data", floats: positions(), shape: [clouds, points, 3])
    try writer.write(to: url)
    let before = childProcesses()
    let file = try HDF5File(contentsOf: url)
    return (url, file, try XCTUnwrap(childProcesses().subtracting(before).first), before)
  }

  private func isZombie(_ pid: Int) -> Bool { statFields(pid)?.first == "Z" }

  /// The fields of `/proc/<pid>/stat` after the command's closing parenthesis (state, then the
  /// parent's pid, …), or nil when there is no such process.
  private func statFields(_ pid: Int) -> [Substring]? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return nil }
    return stat[stat.index(after: close)...].split(separator: " ")
  }

  /// This process's children, from every `/proc/<pid>/stat` whose parent is this process
  /// (zombies included: a child not yet reaped still has an entry).
  private func childProcesses() -> Set<Int> { processes(childrenOf: Int(getpid())) }

  /// The processes whose parent is `parent`.
  private func processes(childrenOf me: Int) -> Set<Int> {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    var children = Set<Int>()
    for entry in entries {
      guard let pid = Int(entry), let fields = statFields(pid) else { continue }
      if fields.count > 1, Int(fields[1]) == me { children.insert(pid) }
    }
    return children
  }

  /// Reads run in child processes; from several threads at once, while others build files
  /// in memory through libhdf5 in this process (the shim's lock keeps a child from starting
  /// while libhdf5 is mid-call here), every read gives the file's values. Writers alive at the
  /// same time each get a file of their own (they shared one name, and the second failed).
  func testReadsFromSeveralThreadsWhileOthersWrite() throws {
    let url = try temporaryFolder(self).appendingPathComponent("ply_data_train1.h5")
    do {
      let writer = try HDF5Writer()
      try writer.add("data", floats: positions(), shape: [clouds, points, 3], gzip: 2)
      try writer.add("label", integers: [3, 1, 4], shape: [clouds, 1], type: .uint8)
      try writer.write(to: url)
    }
    let expected = positions()
    let others = (0..<4).map { positions(Float($0)) }
    let shape = [clouds, points, 3]
    let results = Mutex<[String]>([])
    DispatchQueue.concurrentPerform(iterations: 8) { worker in
      for round in 0..<4 {
        do {
          if worker % 2 == 0 {
            let set = try PointCloudSet.read(contentsOf: url)
            guard set.positions == expected, set.labels == [3, 1, 4] else {
              results.withLock { $0.append("worker \(worker) round \(round): wrong values") }
              continue
            }
          } else {
            let w = try HDF5Writer()
            try w.add("data", floats: others[round], shape: shape)
            _ = try w.bytes()
          }
        } catch {
          results.withLock { $0.append("worker \(worker) round \(round): \(error)") }
        }
      }
    }
    XCTAssertEqual(results.withLock { $0 }, [])
    XCTAssertEqual(HDF5File.openObjectCount, 0)
  }

  func testReadsScanObjectNNLayoutCompressed() throws {
    let url = try temporaryFolder(self).appendingPathComponent(
      "training_objectdataset_augmentedrot_scale75.h5")
    let writer = try HDF5Writer()
    try writer.add("data", floats: positions(), shape: [clouds, points, 3], gzip: 4)
    try writer.add("label", integers: [14, 2, 9], shape: [clouds], type: .int64)
    try writer.add(
      "mask", integers: (0..<(clouds * points)).map { $0 % 2 }, shape: [clouds, points],
      type: .int64)
    try writer.write(to: url)
    XCTAssertTrue(try XCTUnwrap(try HDF5File(contentsOf: url).info("data")).isFiltered)
    let set = try PointCloudSet.read(contentsOf: url)
    XCTAssertEqual(set.positions, positions())
    XCTAssertNil(set.normals)
    XCTAssertEqual(set.labels, [14, 2, 9])
  }

  func testWritesBothLayoutsThroughPointCloudSet() throws {
    let folder = try temporaryFolder(self)
    let set = PointCloudSet(
      clouds: clouds, pointsPerCloud: points, positions: positions(), labels: [1, 2, 3])
    for layout in [PointCloudSet.LabelLayout.modelNet, .scanObjectNN] {
      let url = folder.appendingPathComponent("set.h5")
      try set.write(to: url, labels: layout)
      XCTAssertEqual(try PointCloudSet.read(contentsOf: url), set)
      let shape = try XCTUnwrap(try HDF5File(contentsOf: url).info("label")).shape
      XCTAssertEqual(shape, layout == .modelNet ? [3, 1] : [3])
    }
  }

  func testMalformedFilesThrowNamedErrors() throws {
    let folder = try temporaryFolder(self)
    func file(_ name: String, _ build: (HDF5Writer) throws -> Void) throws -> URL {
      let url = folder.appendingPathComponent(name)
      let writer = try HDF5Writer()
      try build(writer)
      try writer.write(to: url)
      return url
    }
    let noData = try file("nodata.h5") {
      try $0.add("points", floats: [0, 0, 0], shape: [1, 1, 3])
    }
    assertPointError(.missingField, path: noData.path, "no 'data' dataset") {
      try PointCloudSet.read(contentsOf: noData)
    }
    let flat = try file("flat.h5") { try $0.add("data", floats: [0, 0, 0, 0], shape: [1, 1, 4]) }
    assertPointError(.unsupported, path: flat.path, "not [N, P, 3]") {
      try PointCloudSet.read(contentsOf: flat)
    }
    let labels = try file("labels.h5") {
      try $0.add("data", floats: positions(), shape: [clouds, points, 3])
      try $0.add("label", integers: [1, 2], shape: [2], type: .int64)
    }
    assertPointError(.countMismatch, path: labels.path, "3 clouds need") {
      try PointCloudSet.read(contentsOf: labels)
    }
    let normals = try file("normals.h5") {
      try $0.add("data", floats: positions(), shape: [clouds, points, 3])
      try $0.add("normal", floats: [0, 0, 1], shape: [1, 1, 3])
    }
    assertPointError(.sizeMismatch, path: normals.path, "'normal' has shape") {
      try PointCloudSet.read(contentsOf: normals)
    }
    var nan = positions()
    nan[20] = .nan
    let nanFile = try file("nan.h5") {
      try $0.add("data", floats: nan, shape: [clouds, points, 3])
    }
    assertPointError(.nonFiniteValue, path: nanFile.path, "cloud 1") {
      try PointCloudSet.read(contentsOf: nanFile)
    }

    // Not HDF5 at all, and a real file cut short.
    let text = folder.appendingPathComponent("text.h5")
    try Data(text: "not hdf5\n").write(to: text)
    assertPointError(.badHeader, path: text.path, "not an HDF5 file") {
      try PointCloudSet.read(contentsOf: text)
    }
    let good = try file("good.h5") {
      try $0.add("data", floats: positions(), shape: [clouds, points, 3])
    }
    let bytes = try Data(contentsOf: good)
    for cut in [bytes.count - 100, bytes.count / 2, 600, 40] {
      let cutURL = folder.appendingPathComponent("cut\(cut).h5")
      try bytes.prefix(cut).write(to: cutURL)
      XCTAssertThrowsError(try PointCloudSet.read(contentsOf: cutURL), "cut at \(cut)") {
        XCTAssertTrue($0 is PointFileError, "\($0)")
        XCTAssertTrue("\($0)".hasPrefix(cutURL.path), "\($0)")
      }
    }
    // A FIFO (libhdf5 would wait for a writer for ever) and a device.
    let fifo = folder.appendingPathComponent("fifo.h5")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    assertPointError(.readFailed, path: fifo.path, "not a regular file") {
      try PointCloudSet.read(contentsOf: fifo)
    }
    assertPointError(.readFailed, path: "/dev/zero", "not a regular file") {
      try HDF5File(contentsOf: URL(fileURLWithPath: "/dev/zero"))
    }
    assertPointError(.fileNotFound, path: folder.appendingPathComponent("none.h5").path) {
      try PointCloudSet.read(contentsOf: folder.appendingPathComponent("none.h5"))
    }
    assertPointError(.invalidWrite, "4 values for shape [1, 3]") {
      try HDF5Writer().add("data", floats: [1, 2, 3, 4], shape: [1, 3])
    }
    // Every file, dataset, dataspace and type the reads above opened (on success and on every
    // error path, the fuzzer's damaged superblock among them) is closed again.
    let damaged = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../Fuzz/Regressions/hdf5/damaged-superblock-leak.h5")
      .standardized
    XCTAssertTrue(FileManager.default.fileExists(atPath: damaged.path), damaged.path)
    _ = try? PointCloudSet.read(contentsOf: damaged)
    // A file for which libhdf5 asks malloc for 10^18 bytes (found by the fuzzer): a named
    // error, not a crash.
    let huge = damaged.deletingLastPathComponent()
      .appendingPathComponent("huge-cache-allocation.h5")
    XCTAssertThrowsError(try PointCloudSet.read(contentsOf: huge)) {
      XCTAssertTrue("\($0)".hasPrefix(huge.path), "\($0)")
    }
    // A float of 7 bytes, on which libhdf5's conversion reads past its buffer (found by the
    // fuzzer): refused from the dataset's type, before anything is read.
    let oddWidth = damaged.deletingLastPathComponent().appendingPathComponent("odd-float-width.h5")
    assertPointError(.unsupported, path: oddWidth.path, "7-byte floats") {
      try PointCloudSet.read(contentsOf: oddWidth)
    }
    // A file on which libhdf5 itself dereferences a null pointer inside H5Fopen (found by the
    // fuzzer): libhdf5 runs in a child process, so this is a named error and the tests go on.
    let crashing = damaged.deletingLastPathComponent()
      .appendingPathComponent("null-pointer-in-open.h5")
    assertPointError(.corruptData, path: crashing.path, "libhdf5 crashed reading the file") {
      try PointCloudSet.read(contentsOf: crashing)
    }
    XCTAssertEqual(HDF5File.openObjectCount, 0)
  }
}
