import XCTest

@testable import GraftBench

final class DataParallelScalingTests: XCTestCase {
  /// A ring allreduce of 100 MB over 4 machines on 10 Gbit/s links moves 1.5 × 100 MB per
  /// machine: 0.12 s, plus 6 latencies.
  func testRingAllreduceTime() {
    let net = DataParallelScaling(bandwidthGbit: 10, latencyMicroseconds: 50)
    XCTAssertEqual(net.allreduceSeconds(bytes: 100_000_000, machines: 1), 0)
    XCTAssertEqual(
      net.allreduceSeconds(bytes: 100_000_000, machines: 4), 0.12 + 6 * 50e-6, accuracy: 1e-12)
  }

  /// Small gradients scale almost linearly; a full model's gradients cap the speed-up.
  func testSpeedupFallsWithTheBytesAllreduced() {
    let net = DataParallelScaling(bandwidthGbit: 10, latencyMicroseconds: 50)
    let lora = net.speedup(oneMachine: 2.0, bytes: 4 * 300_000, machines: 64)
    let full = net.speedup(oneMachine: 2.0, bytes: 4 * 22_000_000, machines: 64)
    XCTAssertGreaterThan(lora, 45)
    XCTAssertLessThan(lora, 64)
    XCTAssertLessThan(full, 20)
    XCTAssertEqual(net.speedup(oneMachine: 2.0, bytes: 1_000, machines: 1), 1)
  }
}
