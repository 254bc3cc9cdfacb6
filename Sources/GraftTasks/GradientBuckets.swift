import Foundation

/// The trainable gradients of a data-parallel run in buckets, allreduced while the backward pass
/// is still running, as PyTorch DDP's reducer does: parameters are grouped in reverse order
/// (the order in which a backward pass finishes their gradients, roughly) into buckets of about
/// `capacityBytes`; when every gradient of a bucket is final (`Tensor.backward`'s
/// `leafGradientIsFinal`), the bucket is packed and its allreduce started, in bucket order on
/// every rank, so the communication of the later layers overlaps the backward of the earlier.
/// `finish()` starts what is left, waits and writes the sums back into the gradients.
final class GradientBuckets {
  private let parameters: [Tensor]
  private let communicator: any Communicator
  /// Parameter indices per bucket.
  private let members: [[Int]]
  /// Bucket of each parameter (by identity).
  private let bucketOf: [ObjectIdentifier: Int]
  private let buffers: [UnsafeMutableBufferPointer<Float>]
  private var waitingFor: [Int] = []
  private var pending: [(any PendingCollective)?] = []
  private var nextToStart = 0

  /// Buckets over `parameters` (each at most `capacityBytes`, or one parameter larger than it).
  init(parameters: [Tensor], capacityBytes: Int, communicator: any Communicator) {
    self.parameters = parameters
    self.communicator = communicator
    var members: [[Int]] = []
    var current: [Int] = []
    var bytes = 0
    for index in parameters.indices.reversed() {
      let size = 4 * parameters[index].count
      if !current.isEmpty && bytes + size > capacityBytes {
        members.append(current)
        (current, bytes) = ([], 0)
      }
      current.append(index)
      bytes += size
    }
    if !current.isEmpty { members.append(current) }
    self.members = members
    var bucketOf: [ObjectIdentifier: Int] = [:]
    for (bucket, indices) in members.enumerated() {
      for i in indices { bucketOf[ObjectIdentifier(parameters[i])] = bucket }
    }
    self.bucketOf = bucketOf
    buffers = members.map { indices in
      let buffer = UnsafeMutableBufferPointer<Float>.allocate(
        capacity: indices.reduce(0) { $0 + parameters[$1].count })
      buffer.initialize(repeating: 0)
      return buffer
    }
  }

  deinit {
    for p in pending { p?.wait() }
    for b in buffers { b.deallocate() }
  }

  /// The number of buckets.
  var count: Int { members.count }

  /// Whether these buckets were built for `parameters`.
  func covers(_ parameters: [Tensor]) -> Bool {
    parameters.count == self.parameters.count
      && zip(parameters, self.parameters).allSatisfy { $0 === $1 }
  }

  /// Readies the buckets for a new step.
  func begin() {
    waitingFor = members.map(\.count)
    pending = Array(repeating: nil, count: members.count)
    nextToStart = 0
  }

  /// `leaf`'s gradient is final for this step: its bucket's allreduce starts once all its
  /// gradients are (and every earlier bucket's has started).
  func gradientIsFinal(_ leaf: Tensor) {
    guard let bucket = bucketOf[ObjectIdentifier(leaf)] else { return }
    waitingFor[bucket] -= 1
    while nextToStart < members.count && waitingFor[nextToStart] == 0 {
      start(nextToStart)
      nextToStart += 1
    }
    for p in pending { p?.poll() }
  }

  /// Starts the buckets not started yet (their gradients are final once backward returns: those
  /// never reached have none, and count as zeros), waits for all and writes the sums back.
  func finish() {
    while nextToStart < members.count {
      start(nextToStart)
      nextToStart += 1
    }
    for (bucket, indices) in members.enumerated() {
      pending[bucket]?.wait()
      pending[bucket] = nil
      var offset = 0
      for i in indices {
        let p = parameters[i]
        if let g = p.grad {
          (g.pointer).update(from: buffers[bucket].baseAddress! + offset, count: p.count)
        }
        offset += p.count
      }
    }
  }

  private func start(_ bucket: Int) {
    let buffer = buffers[bucket]
    var offset = 0
    for i in members[bucket] {
      let p = parameters[i]
      if let g = p.grad {
        (buffer.baseAddress! + offset).update(from: g.pointer, count: p.count)
      } else {
        (buffer.baseAddress! + offset).update(repeating: 0, count: p.count)
      }
      offset += p.count
    }
    pending[bucket] = communicator.startAllreduceSum(buffer)
  }
}
