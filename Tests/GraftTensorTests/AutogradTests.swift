import Dispatch
import XCTest

@testable import GraftTensor

final class AutogradTests: XCTestCase {
  func testGradientsAccumulateAcrossBackwardCalls() {
    let w = Tensor([1, 2, 3]).requiringGrad()
    (w * w).sum().backward()
    XCTAssertEqual(w.grad!.scalars, [2, 4, 6])
    (w * 3).sum().backward()
    XCTAssertEqual(w.grad!.scalars, [5, 7, 9])
    w.zeroGrad()
    XCTAssertNil(w.grad)
  }

  func testSharedSubexpressionGetsSummedGradient() {
    let x = Tensor([2]).requiringGrad()
    let y = x * x  // used twice below
    (y + y * x).sum().backward()  // d/dx (x² + x³) = 2x + 3x² = 16
    XCTAssertEqual(x.grad!.item, 16)
  }

  /// The hook DDP-style bucketing relies on: each leaf is reported once, when its gradient is
  /// final; a leaf used at several depths only after its earliest use is back-propagated.
  func testLeafGradientIsFinalFiresOnceWithTheFinalGradient() {
    let a = Tensor([1, 2]).requiringGrad()  // used near the output and near the input
    let b = Tensor([3, 4]).requiringGrad()  // used once, deep
    let c = Tensor([5, 6]).requiringGrad()  // used once, near the output
    let unused = Tensor([7]).requiringGrad()
    let hidden = (a * b).exp().log()
    let out = ((hidden + a) * c).sum()
    var reported: [(String, [Float])] = []
    let names = [ObjectIdentifier(a): "a", ObjectIdentifier(b): "b", ObjectIdentifier(c): "c"]
    out.backward(
      nil,
      leafGradientIsFinal: { leaf in
        reported.append((names[ObjectIdentifier(leaf)] ?? "?", leaf.grad!.scalars))
      })
    XCTAssertEqual(reported.map(\.0).sorted(), ["a", "b", "c"])
    XCTAssertEqual(reported.map(\.0).first, "c")
    for (name, grad) in reported {
      let final = [ObjectIdentifier(a): a, ObjectIdentifier(b): b, ObjectIdentifier(c): c]
        .first { names[$0.key] == name }!.value.grad!.scalars
      XCTAssertEqual(grad, final, name)
    }
    // d/da of ((a·b) + a)·c = (b + 1)·c
    for (i, v) in a.grad!.scalars.enumerated() {
      XCTAssertEqual(v, (b.scalars[i] + 1) * c.scalars[i], accuracy: 1e-4)
    }
    XCTAssertNil(unused.grad)
  }

  func testNoGradScopeAndFrozenInputsRecordNothing() {
    let frozen = randomTensor([64, 64], seed: 1)
    let before = TapeStats.savedBytes
    let nodesBefore = TapeStats.liveNodes
    let y = (frozen.matmul(frozen).gelu() * frozen).softmax()
    XCTAssertNil(y.gradFnName)
    XCTAssertEqual(TapeStats.savedBytes, before)
    XCTAssertEqual(TapeStats.liveNodes, nodesBefore)

    let w = randomTensor([64, 64], seed: 2).requiringGrad()
    let inScope = withNoGrad { frozen.matmul(w).gelu() }
    XCTAssertFalse(inScope.requiresGrad)
    XCTAssertEqual(TapeStats.savedBytes, before)

    let recorded = frozen.matmul(w).gelu()
    XCTAssertTrue(recorded.requiresGrad)
    XCTAssertGreaterThan(TapeStats.savedBytes, before)
    recorded.sum().backward()
    // Backward releases the graph and with it every saved activation.
    XCTAssertEqual(TapeStats.savedBytes, before)
    XCTAssertEqual(TapeStats.liveNodes, nodesBefore)
  }

  func testDetachStopsGradient() {
    let x = Tensor([3]).requiringGrad()
    let y = x * x.detached()
    y.sum().backward()
    XCTAssertEqual(x.grad!.item, 3)
  }

  func testNonScalarBackwardTakesSeed() {
    let x = Tensor([1, 2]).requiringGrad()
    (x * 2).backward(Tensor([1, 10]))
    XCTAssertEqual(x.grad!.scalars, [2, 20])
  }

  func testDeepChainDoesNotOverflowTheStack() {
    let x = Tensor([1]).requiringGrad()
    var y = x
    for _ in 0..<20_000 { y = y + 1 }
    y.sum().backward()
    XCTAssertEqual(x.grad!.item, 1)
  }
}

final class GradModeThreadTests: XCTestCase {
  func testNoGradScopeIsPerThread() {
    let done = DispatchSemaphore(value: 0)
    withNoGrad {
      XCTAssertFalse(GradMode.isEnabled)
      DispatchQueue.global().async {
        // Another thread still records while this one is in a no-grad scope.
        XCTAssertTrue(GradMode.isEnabled)
        let w = Tensor([1, 2]).requiringGrad()
        XCTAssertTrue((w * 2).requiresGrad)
        done.signal()
      }
      done.wait()
    }
    XCTAssertTrue(GradMode.isEnabled)
  }

  /// The flag is the thread's own, not a slot that other code in the process can write: a
  /// release build linking FFmpeg's libraries once read it as off on the main thread, and
  /// nothing trained (Tools/release_smoke.sh checks that case on the release binary).
  func testForeignThreadSpecificDataLeavesRecordingOn() {
    var keys: [pthread_key_t] = []
    for _ in 0..<64 {
      var key = pthread_key_t()
      XCTAssertEqual(pthread_key_create(&key, nil), 0)
      XCTAssertEqual(pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1)), 0)
      keys.append(key)
    }
    XCTAssertTrue(GradMode.isEnabled)
    XCTAssertTrue((Tensor([1, 2]).requiringGrad() * 2).requiresGrad)
    for key in keys { pthread_key_delete(key) }
    XCTAssertTrue(GradMode.isEnabled)
  }
}
