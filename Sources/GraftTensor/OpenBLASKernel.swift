import CBLAS
import CKernels
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Which OpenBLAS kernel a process runs, and the fix for CPUs that OpenBLAS does not recognise.
///
/// A `DYNAMIC_ARCH` OpenBLAS (Debian's) picks its kernels from the CPU's family and model when the
/// library loads. A CPU newer than the library (Debian 12's 0.3.21 on an Emerald Rapids Xeon,
/// model 207, for one) falls back to the generic `Prescott` kernel, whose sgemm is about 2.4×
/// slower than the AVX-512 one on the same machine (`graft pretrain --modality points`: 11 vs 26
/// clouds/s). The kernel can only be chosen before the library loads, through
/// `OPENBLAS_CORETYPE`, so the `graft` command re-executes itself once with the variable set
/// when the fallback was taken and the CPU supports a better kernel. A user's own
/// `OPENBLAS_CORETYPE` is always respected, and `GRAFT_OPENBLAS_PICK=0` turns the pick off.
public enum OpenBLASKernel {
  /// The kernel OpenBLAS runs in this process (`openblas_get_corename`), e.g. `Haswell`.
  public static var current: String { String(cString: openblas_get_corename()) }

  /// Set in the re-executed process (to the kernel picked), so it never re-executes again.
  static let pickedVariable = "GRAFT_OPENBLAS_PICKED"

  /// The `OPENBLAS_CORETYPE` to re-execute with, or nil to keep the running kernel.
  ///
  /// - Parameters:
  ///   - corename: what `openblas_get_corename` reports in this process.
  ///   - config: what `openblas_get_config` reports (the variable only works with DYNAMIC_ARCH).
  ///   - environment: the process environment.
  ///   - level: the CPU's x86-64 level from `graft_kernels_level` (4: AVX-512, 3: AVX2 + FMA).
  public static func replacement(
    corename: String, config: String, environment: [String: String], level: Int
  ) -> String? {
    if let set = environment["OPENBLAS_CORETYPE"], !set.isEmpty { return nil }
    if environment["GRAFT_OPENBLAS_PICK"] == "0" { return nil }
    // Already re-executed once: never loop, whatever the library did with the variable.
    if environment[pickedVariable] != nil { return nil }
    guard config.uppercased().contains("DYNAMIC_ARCH") else { return nil }
    // The generic fallbacks OpenBLAS takes for a CPU it does not know.
    let fallbacks: Set<String> = [
      "prescott", "core2", "nehalem", "katmai", "northwood", "barcelona",
    ]
    guard fallbacks.contains(corename.lowercased()) else { return nil }
    switch level {
    case 4: return "SkylakeX"
    case 3: return "Haswell"
    default: return nil
    }
  }

  /// The user's `OPENBLAS_CORETYPE` when it names a kernel whose instructions this CPU lacks
  /// (an AVX-512 kernel below x86-64 level 4, an AVX2 one below level 3), else nil. OpenBLAS
  /// takes the name without checking, and the first product dies of an illegal instruction
  /// (the README's SkylakeX benchmark commands, copied onto an AVX2 machine, crashed every run).
  public static func unusableRequest(environment: [String: String], level: Int) -> String? {
    guard let set = environment["OPENBLAS_CORETYPE"], !set.isEmpty else { return nil }
    let avx512: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
    let avx2: Set<String> = ["haswell", "zen", "skylake", "excavator"]
    let name = set.lowercased()
    if avx512.contains(name) && level < 4 { return set }
    if avx2.contains(name) && level < 3 { return set }
    return nil
  }

  /// Re-executes this program with a better `OPENBLAS_CORETYPE` when OpenBLAS fell back to a
  /// generic kernel, or without the user's when this CPU cannot run it (with a note); returns
  /// (doing nothing) otherwise or when re-executing fails. Call it first thing in `main`,
  /// before any thread or file is opened.
  public static func reexecWithBetterKernelIfNeeded() {
    #if os(Linux)
      let environment = ProcessInfo.processInfo.environment
      if environment[pickedVariable] == nil,
        let unusable = unusableRequest(environment: environment, level: Int(graft_kernels_level()))
      {
        FileHandle.standardError.write(
          Data(
            ("note: OPENBLAS_CORETYPE=\(unusable) needs instructions this CPU lacks (AVX-512 or "
              + "AVX2); ignoring it and letting OpenBLAS choose\n").utf8))
        unsetenv("OPENBLAS_CORETYPE")
        setenv(pickedVariable, "none", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        return
      }
      guard
        let kernel = replacement(
          corename: current, config: String(cString: openblas_get_config()),
          environment: environment, level: Int(graft_kernels_level()))
      else { return }
      setenv("OPENBLAS_CORETYPE", kernel, 1)
      setenv(pickedVariable, kernel, 1)
      execv("/proc/self/exe", CommandLine.unsafeArgv)
      // execv only returns on failure: carry on with the running kernel.
      unsetenv("OPENBLAS_CORETYPE")
      unsetenv(pickedVariable)
    #endif
  }
}
