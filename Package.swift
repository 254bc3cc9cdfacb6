// swift-tools-version: 6.1
import Foundation
import PackageDescription

/// Release builds of the numeric code: no bounds or overflow checks in the hot loops, and on
/// x86-64 the AVX2 + FMA baseline (x86-64-v3, every x86 CPU since about 2015) so SIMD code and
/// `addingProduct` compile to vector FMAs instead of calls to `fmaf`.
#if arch(x86_64)
  let releaseFlags = ["-Ounchecked", "-target-cpu", "haswell"]
#else
  let releaseFlags = ["-Ounchecked"]
#endif
let numericSettings: [SwiftSetting] = [
  .unsafeFlags(releaseFlags, .when(configuration: .release))
]

let package = Package(
  name: "Graft",
  products: [
    .executable(name: "graft", targets: ["graft"]),
    .library(name: "GraftTensor", targets: ["GraftTensor"]),
    .library(name: "GraftNN", targets: ["GraftNN"]),
    .library(name: "GraftData", targets: ["GraftData"]),
    .library(name: "GraftModels", targets: ["GraftModels"]),
    .library(name: "GraftTuning", targets: ["GraftTuning"]),
    .library(name: "GraftTasks", targets: ["GraftTasks"]),
    .library(name: "GraftBench", targets: ["GraftBench"]),
    .library(name: "GraftPoints", targets: ["GraftPoints"]),
    .library(name: "GraftVideo", targets: ["GraftVideo"]),
    .library(name: "GraftText", targets: ["GraftText"]),
    .library(name: "GraftDetection", targets: ["GraftDetection"]),
    .library(name: "GraftCaption", targets: ["GraftCaption"]),
    .library(name: "GraftDistributed", targets: ["GraftDistributed"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
  ],
  targets: [
    .systemLibrary(
      name: "CBLAS",
      pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]
    ),
    .systemLibrary(
      name: "CZlib",
      pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]
    ),
    // libpng and libjpeg behind C functions that return error codes (libjpeg reports errors by
    // longjmp, which Swift cannot catch).
    // oneDNN's BF16 matrix product behind C functions that return status codes (Debian's
    // libdnnl-dev ships no pkg-config file; the headers are on the default path). libgomp is
    // named because the shim sets OpenMP's per-thread thread count.
    .target(
      name: "CDNNLShim",
      linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]
    ),
    .target(
      name: "CImageCodecs",
      linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]
    ),
    // FFmpeg's libraries, each found through its pkg-config file (include and library paths
    // wherever the distribution puts them).
    .systemLibrary(
      name: "CAVFormat", pkgConfig: "libavformat", providers: [.apt(["libavformat-dev"])]),
    .systemLibrary(
      name: "CAVCodec", pkgConfig: "libavcodec", providers: [.apt(["libavcodec-dev"])]),
    .systemLibrary(
      name: "CSwscale", pkgConfig: "libswscale", providers: [.apt(["libswscale-dev"])]),
    .systemLibrary(name: "CAVUtil", pkgConfig: "libavutil", providers: [.apt(["libavutil-dev"])]),
    // FFmpeg's libraries behind C functions that return status codes (video decoding).
    .target(name: "CVideo", dependencies: ["CAVFormat", "CAVCodec", "CSwscale", "CAVUtil"]),
    // Video files to frames, frame sampling, the frame encoder and PLLaVA's pooling.
    .target(
      name: "GraftVideo",
      dependencies: ["GraftModels", "GraftData", "CVideo"],
      swiftSettings: numericSettings
    ),
    // Text for captioning: byte-level BPE, the GPT-2-layout decoder, caption metrics.
    .target(
      name: "GraftText",
      dependencies: ["GraftModels"],
      swiftSettings: numericSettings
    ),
    // Video captioning as PLLaVA does it: frozen frame encoder, trained projector, pooling, a
    // frozen GPT-2-layout decoder with LoRA; its trainer and run folders.
    .target(
      name: "GraftCaption",
      dependencies: ["GraftVideo", "GraftText", "GraftTuning", "GraftTasks"],
      swiftSettings: numericSettings
    ),
    // Box annotations (COCO JSON, VOC XML), box-aware augmentation, COCO's and VOC's scores.
    .target(
      name: "GraftDetection",
      dependencies: ["GraftData"],
      swiftSettings: numericSettings
    ),
    // libhdf5 (Debian's serial build; `hdf5.pc` is only an alternatives link to it).
    .systemLibrary(
      name: "CHDF5",
      pkgConfig: "hdf5-serial",
      providers: [.apt(["libhdf5-dev"])]
    ),
    // libhdf5 behind C functions that return status codes, with HDF5's own error printing off.
    .target(name: "CHDF5Shim", dependencies: ["CHDF5"]),
    // Open MPI's C library (data-parallel training across processes and machines).
    .systemLibrary(
      name: "CMPI",
      pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev"])]
    ),
    // MPI behind C functions that return status codes (errors returned, not fatal in MPI).
    .target(name: "CMPIShim", dependencies: ["CMPI"]),
    // The MPI communicator and launch detection for `mpirun -np K graft tune`.
    .target(name: "GraftDistributed", dependencies: ["GraftTensor", "CMPIShim"]),
    // GELU, exp and softmax loops with an AVX-512 variant chosen at run time (target_clones).
    .target(name: "CKernels"),
    .target(
      name: "GraftTensor",
      dependencies: ["CBLAS", "CKernels", "CDNNLShim"],
      swiftSettings: numericSettings,
      linkerSettings: [.linkedLibrary("m")]
    ),
    .target(
      name: "GraftNN",
      dependencies: ["GraftTensor"],
      swiftSettings: numericSettings
    ),
    .target(
      name: "GraftData",
      dependencies: ["GraftTensor", "CImageCodecs", "CZlib"],
      swiftSettings: numericSettings
    ),
    .target(
      name: "GraftModels",
      dependencies: ["GraftNN", "GraftData", "GraftPoints", "CZlib"],
      swiftSettings: numericSettings
    ),
    .target(
      name: "GraftTuning",
      dependencies: ["GraftModels"],
      swiftSettings: numericSettings
    ),
    .target(
      name: "GraftTasks",
      dependencies: [
        "GraftTuning", "GraftData", "GraftPoints", "GraftVideo", "GraftText", "GraftDetection",
        .product(name: "Yams", package: "Yams"),
      ],
      swiftSettings: numericSettings
    ),
    // The speed and memory measurements behind `graft bench` (kept out of the library modules).
    .target(
      name: "GraftBench",
      dependencies: ["GraftTasks", "CBLAS", "CKernels"],
      swiftSettings: numericSettings
    ),
    // Point-cloud and mesh files, kept out of GraftData so image work does not rebuild it; the
    // point-cloud datasets adopt GraftData's `Dataset` protocol.
    .target(
      name: "GraftPoints",
      dependencies: ["GraftTensor", "GraftData", "CHDF5Shim"],
      swiftSettings: numericSettings
    ),
    .executableTarget(
      name: "graft",
      dependencies: [
        "GraftTensor", "GraftNN", "GraftData", "GraftModels", "GraftTuning", "GraftTasks",
        "GraftBench", "GraftPoints", "GraftVideo", "GraftText", "GraftDetection", "GraftCaption",
        "GraftDistributed", "CBLAS",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .testTarget(
      name: "GraftTensorTests", dependencies: ["GraftTensor"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(name: "GraftNNTests", dependencies: ["GraftNN", "GraftTensor"]),
    .testTarget(
      name: "GraftDataTests", dependencies: ["GraftData"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftModelsTests", dependencies: ["GraftModels", "GraftData", "GraftPoints"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftTuningTests", dependencies: ["GraftTuning"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftTasksTests",
      dependencies: ["GraftTasks", "GraftModels", "GraftPoints", "GraftText", "GraftDetection"]),
    .testTarget(name: "GraftBenchTests", dependencies: ["GraftBench"]),
    .testTarget(name: "GraftDistributedTests", dependencies: ["GraftDistributed", "GraftTasks"]),
    .testTarget(
      name: "GraftVideoTests",
      dependencies: ["GraftVideo", "GraftModels", "GraftNN", "GraftTasks", "GraftTuning"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftTextTests", dependencies: ["GraftText"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftDetectionTests", dependencies: ["GraftDetection", "GraftData"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftCaptionTests", dependencies: ["GraftCaption"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "GraftPointsTests", dependencies: ["GraftPoints", "GraftData", "CHDF5Shim"],
      resources: [.copy("Fixtures")]
    ),
  ]
)

// libFuzzer targets for every parser (Fuzz/main.swift; run by Tools/fuzz.sh). Only with
// GRAFT_FUZZ set, so that `swift build`, the tests and CI never build them: they need
// `-sanitize=fuzzer`, which supplies libFuzzer.
if ProcessInfo.processInfo.environment["GRAFT_FUZZ"] != nil {
  package.targets.append(
    .executableTarget(
      name: "graft-fuzz",
      dependencies: [
        "GraftTensor", "GraftData", "GraftModels", "GraftTasks", "GraftPoints", "GraftDetection",
        "GraftText", "GraftVideo",
      ],
      path: "Fuzz",
      exclude: ["Regressions", "lsan.supp"]))
}
