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

  /// A requested kernel this CPU cannot run is named (then dropped with a note, where it
  /// crashed every product with an illegal instruction); one it can run is the user's choice.
  func testAKernelTheCPUCannotRunIsNamed() {
    func request(_ name: String, level: Int) -> String? {
      OpenBLASKernel.unusableRequest(environment: ["OPENBLAS_CORETYPE": name], level: level)
    }
    XCTAssertEqual(request("SkylakeX", level: 3), "SkylakeX")
    XCTAssertEqual(request("cooperlake", level: 3), "cooperlake")
    XCTAssertEqual(request("Haswell", level: 2), "Haswell")
    XCTAssertNil(request("SkylakeX", level: 4))
    XCTAssertNil(request("Haswell", level: 3))
    XCTAssertNil(request("Prescott", level: 1))
    XCTAssertNil(OpenBLASKernel.unusableRequest(environment: [:], level: 1))
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
