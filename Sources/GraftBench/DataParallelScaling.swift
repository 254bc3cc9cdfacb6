import Foundation

/// What `graft bench mpi` measures and what it projects: per method, the bytes each rank
/// allreduces per step and the time per step with 1, 2 and 4 ranks on this machine, then the
/// expected speed-up on K machines.
public struct DataParallelScalingReport: Codable, Sendable {
  /// One method's measurements.
  public struct Row: Codable, Sendable {
    /// The method.
    public var method: String
    /// Trainable elements (float32 gradients allreduced).
    public var trainableParameters: Int
    /// Bytes each rank contributes to a step's allreduce (0 for one rank: no allreduce).
    public var allreduceBytesPerStep: Int
    /// Per rank count: seconds per step (rank 0's, all of it).
    public var stepSeconds: [String: Double]
    /// Per rank count above 1: seconds per step in the gradient allreduce (waiting for the
    /// slowest rank included).
    public var allreduceSeconds: [String: Double]
    /// Expected speed-up on K machines (`DataParallelScaling.speedup`) for each K of the
    /// report's `machines`, from the one-rank step and the allreduced bytes.
    public var projectedSpeedup: [String: Double]

    /// A row as stated.
    public init(
      method: String, trainableParameters: Int, allreduceBytesPerStep: Int,
      stepSeconds: [String: Double], allreduceSeconds: [String: Double],
      projectedSpeedup: [String: Double]
    ) {
      self.method = method
      self.trainableParameters = trainableParameters
      self.allreduceBytesPerStep = allreduceBytesPerStep
      self.stepSeconds = stepSeconds
      self.allreduceSeconds = allreduceSeconds
      self.projectedSpeedup = projectedSpeedup
    }

    enum CodingKeys: String, CodingKey {
      case method
      case trainableParameters = "trainable_parameters"
      case allreduceBytesPerStep = "allreduce_bytes_per_step"
      case stepSeconds = "step_seconds"
      case allreduceSeconds = "allreduce_seconds"
      case projectedSpeedup = "projected_speedup"
    }
  }

  /// The backbone (random weights).
  public var model: String
  /// The global batch.
  public var batch: Int
  /// Steps measured per run (after one warm-up step).
  public var steps: Int
  /// The network assumed for the projection.
  public var network: DataParallelScaling
  /// The machine counts projected.
  public var machines: [Int]
  /// One row per method.
  public var rows: [Row]
  /// The machine the measurements ran on.
  public var machine: MachineReport?

  /// The report as stated.
  public init(
    model: String, batch: Int, steps: Int, network: DataParallelScaling, machines: [Int],
    rows: [Row], machine: MachineReport?
  ) {
    self.model = model
    self.batch = batch
    self.steps = steps
    self.network = network
    self.machines = machines
    self.rows = rows
    self.machine = machine
  }
}

/// The time model of data-parallel training on K machines: each machine computes 1/K of the
/// global batch, then the gradients are summed by a ring allreduce, which sends and receives
/// 2(K−1)/K of the buffer per machine in 2(K−1) latency-bound rounds (as NCCL and Open MPI's
/// ring algorithm do for large buffers).
public struct DataParallelScaling: Codable, Sendable, Equatable {
  /// Link bandwidth per machine, gigabits per second.
  public var bandwidthGbit: Double
  /// One message's latency, microseconds.
  public var latencyMicroseconds: Double

  enum CodingKeys: String, CodingKey {
    case bandwidthGbit = "bandwidth_gbit"
    case latencyMicroseconds = "latency_us"
  }

  /// A network of `bandwidthGbit` Gbit/s links with `latencyMicroseconds` per message.
  public init(bandwidthGbit: Double, latencyMicroseconds: Double) {
    self.bandwidthGbit = bandwidthGbit
    self.latencyMicroseconds = latencyMicroseconds
  }

  /// Seconds for a ring allreduce of `bytes` over `machines` machines.
  public func allreduceSeconds(bytes: Int, machines: Int) -> Double {
    guard machines > 1 else { return 0 }
    let k = Double(machines)
    let transfer = 2 * (k - 1) / k * Double(bytes) * 8 / (bandwidthGbit * 1e9)
    return transfer + 2 * (k - 1) * latencyMicroseconds * 1e-6
  }

  /// Expected step time on `machines` machines when one machine takes `stepSeconds` for the
  /// whole global batch: its share of the compute plus the allreduce (not overlapped).
  public func stepSeconds(oneMachine stepSeconds: Double, bytes: Int, machines: Int) -> Double {
    stepSeconds / Double(max(machines, 1)) + allreduceSeconds(bytes: bytes, machines: machines)
  }

  /// Expected speed-up on `machines` machines over one.
  public func speedup(oneMachine stepSeconds: Double, bytes: Int, machines: Int) -> Double {
    stepSeconds / self.stepSeconds(oneMachine: stepSeconds, bytes: bytes, machines: machines)
  }
}
