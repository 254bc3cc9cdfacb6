import XCTest

@testable import GraftTensor

final class OpenBLASKernelTests: XCTestCase {
  let dynamic = "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64"

  func testFallbackKernelIsReplacedByTheCPUsBest() {
    XCTAssertEqual(
      OpenBLASKernel.replacement(corename: "Prescott", config: dynamic, environment: [:], level: 4),
      "SkylakeX")
    XCTAssertEqual(
      OpenBLASKernel.replacement(corename: "Prescott", config: dynamic, environment: [:], level: 3),
      "Haswell")
    XCTAssertNil(
      OpenBLASKernel.replacement(corename: "Prescott", config: dynamic, environment: [:], level: 0))
  }

  func testARecognisedCPUKeepsItsKernel() {
    for corename in ["Haswell", "SkylakeX", "Cooperlake", "Zen"] {
      XCTAssertNil(
        OpenBLASKernel.replacement(corename: corename, config: dynamic, environment: [:], level: 4))
    }
  }

  func testTheUsersChoiceAndTheOptOutAreRespectedAndNothingLoops() {
    for environment in [
      ["OPENBLAS_CORETYPE": "Prescott"], ["GRAFT_OPENBLAS_PICK": "0"],
      ["GRAFT_OPENBLAS_PICKED": "SkylakeX"],
    ] {
      XCTAssertNil(
        OpenBLASKernel.replacement(
          corename: "Prescott", config: dynamic, environment: environment, level: 4),
        "\(environment)")
    }
    // An empty OPENBLAS_CORETYPE is as good as unset.
    XCTAssertEqual(
      OpenBLASKernel.replacement(
        corename: "Prescott", config: dynamic, environment: ["OPENBLAS_CORETYPE": ""], level: 4),
      "SkylakeX")
  }

  func testAStaticallyTargetedLibraryIsLeftAlone() {
    // Without DYNAMIC_ARCH the variable does nothing: re-executing would only waste a start.
    XCTAssertNil(
      OpenBLASKernel.replacement(
        corename: "Prescott", config: "OpenBLAS 0.3.21 NO_AFFINITY Prescott", environment: [:],
        level: 4))
  }

  func testTheRunningKernelIsReported() {
    XCTAssertFalse(OpenBLASKernel.current.isEmpty)
  }
}
