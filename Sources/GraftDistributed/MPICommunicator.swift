import CMPIShim
import Foundation
import GraftTensor

/// The ranks of a job started by `mpirun` or `srun`, over Open MPI (MPI_COMM_WORLD).
///
/// Graft initialises MPI only when the launcher's environment announces more than one rank
/// (`MPILaunch.communicator()`); a plain start runs as one process without touching MPI. A
/// collective that fails (a rank died, the network broke) prints which rank and operation
/// failed and ends every rank through `MPI_Abort`, so no rank waits forever.
public final class MPICommunicator: Communicator, @unchecked Sendable {
  /// This process's rank in MPI_COMM_WORLD.
  public let rank: Int
  /// The number of ranks in MPI_COMM_WORLD.
  public let size: Int

  fileprivate init(rank: Int, size: Int) {
    self.rank = rank
    self.size = size
  }

  /// Sums `values` over every rank, in place (`MPI_Allreduce`).
  public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) {
    guard let base = values.baseAddress, values.count > 0 else { return }
    check("MPI_Allreduce (sum of \(values.count) floats)") {
      graft_mpi_allreduce_sum_f32(base, values.count)
    }
  }

  /// Sums `values` over every rank, in place (`MPI_Allreduce`).
  public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) {
    guard let base = values.baseAddress, values.count > 0 else { return }
    check("MPI_Allreduce (sum of \(values.count) doubles)") {
      graft_mpi_allreduce_sum_f64(base, values.count)
    }
  }

  /// Every rank's `values` concatenated in rank order (`MPI_Allgatherv`); `counts[r]` is rank r's
  /// count.
  public func allgather(_ values: UnsafeBufferPointer<Float>, counts: [Int]) -> [Float] {
    precondition(counts.count == size && counts[rank] == values.count, "allgather counts")
    guard counts.allSatisfy({ $0 <= Int(Int32.max) }), counts.reduce(0, +) <= Int(Int32.max)
    else {
      fail("MPI_Allgatherv", message: "more than 2^31 values to gather")
    }
    var out = [Float](repeating: 0, count: counts.reduce(0, +))
    let counts32 = counts.map { Int32($0) }
    // A rank with nothing to send still passes a valid pointer.
    var empty: Float = 0
    check("MPI_Allgatherv (\(out.count) floats)") {
      out.withUnsafeMutableBufferPointer { received in
        withUnsafeMutablePointer(to: &empty) { placeholder in
          graft_mpi_allgatherv_f32(
            values.baseAddress ?? UnsafePointer(placeholder), Int32(values.count),
            received.baseAddress ?? placeholder, counts32)
        }
      }
    }
    return out
  }

  /// Starts summing `values` over every rank (`MPI_Iallreduce`); see `Communicator`.
  public func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>)
    -> any PendingCollective
  {
    guard let base = values.baseAddress, values.count > 0 else { return CompletedCollective() }
    var request: UnsafeMutableRawPointer? = nil
    check("MPI_Iallreduce (sum of \(values.count) floats)") {
      graft_mpi_iallreduce_sum_f32(base, values.count, &request)
    }
    return MPIPendingCollective(communicator: self, request: request!, count: values.count)
  }

  /// Waits until every rank has called it (`MPI_Barrier`).
  public func barrier() {
    check("MPI_Barrier") { graft_mpi_barrier() }
  }

  /// Ends every rank of the job: after `message` (this rank's error) is printed, MPI_Abort.
  public func abort(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("graft: rank \(rank) of \(size): \(message)\n".utf8))
    graft_mpi_abort(code)
    exit(code)
  }

  /// Finalises MPI at the end of a successful run (every rank calls it).
  public func finalize() {
    let rc = graft_mpi_finalize()
    if rc != 0 { fail("MPI_Finalize", code: rc) }
  }

  /// Runs the MPI call `call`; a nonzero status ends every rank naming `what`.
  fileprivate func check(_ what: @autoclosure () -> String, _ call: () -> Int32) {
    let rc = call()
    if rc != 0 { fail(what(), code: rc) }
  }

  private func fail(_ what: String, code: Int32) -> Never {
    fail(what, message: MPILaunch.errorText(code))
  }

  private func fail(_ what: String, message: String) -> Never {
    abort("\(what) failed: \(message) (another rank may have ended); ending every rank")
  }
}

/// An `MPI_Iallreduce` in flight.
final class MPIPendingCollective: PendingCollective {
  private let communicator: MPICommunicator
  private var request: UnsafeMutableRawPointer?
  private let count: Int

  init(communicator: MPICommunicator, request: UnsafeMutableRawPointer, count: Int) {
    self.communicator = communicator
    self.request = request
    self.count = count
  }

  func poll() {
    guard let request else { return }
    var done: Int32 = 0
    communicator.check("MPI_Test (allreduce of \(count) floats)") {
      graft_mpi_test(request, &done)
    }
  }

  func wait() {
    guard let request else { return }
    self.request = nil
    communicator.check("MPI_Wait (allreduce of \(count) floats)") { graft_mpi_wait(request) }
  }

  deinit { wait() }
}

/// How Graft finds out that `mpirun` (or `srun`) started it.
public enum MPILaunch {
  /// The number of ranks the launcher's environment announces (Open MPI's
  /// `OMPI_COMM_WORLD_SIZE`, PMI's `PMI_SIZE`, or Slurm's `SLURM_NTASKS` under PMIx), or nil
  /// when none does.
  public static func announcedSize(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> Int? {
    if let s = environment["OMPI_COMM_WORLD_SIZE"] ?? environment["PMI_SIZE"] {
      return Int(s)
    }
    if environment["PMIX_RANK"] != nil, let s = environment["SLURM_NTASKS"] { return Int(s) }
    return nil
  }

  /// Whether the launcher announced more than one rank.
  public static var isDistributed: Bool { (announcedSize() ?? 1) > 1 }

  nonisolated(unsafe) private static var shared: MPICommunicator? = nil

  /// MPI's text for error `code`.
  static func errorText(_ code: Int32) -> String {
    var text = [CChar](repeating: 0, count: 512)
    graft_mpi_error_string(code, &text, Int32(text.count))
    let bytes = text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The job's communicator, initialising MPI on first use, when the launcher announced more than
  /// one rank; nil for a plain (or single-rank) start, which never initialises MPI.
  public static func communicator() throws -> MPICommunicator? {
    if let shared { return shared }
    guard isDistributed else { return nil }
    var (rank, size): (Int32, Int32) = (0, 0)
    let rc = graft_mpi_init(&rank, &size)
    guard rc == 0 else {
      throw MPIError("MPI_Init failed: \(errorText(rc))")
    }
    let comm = MPICommunicator(rank: Int(rank), size: Int(size))
    shared = comm
    return comm
  }
}

/// MPI could not start.
public struct MPIError: Error, CustomStringConvertible {
  /// What failed, and why.
  public let description: String
  init(_ description: String) { self.description = description }
}
