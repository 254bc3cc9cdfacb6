// swift-tools-version: 6.1
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
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: [
    .systemLibrary(
      name: "CBLAS",
      pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]
    ),
    .target(
      name: "GraftTensor",
      dependencies: ["CBLAS"],
      swiftSettings: numericSettings,
      linkerSettings: [.linkedLibrary("m")]
    ),
    .target(
      name: "GraftNN",
      dependencies: ["GraftTensor"],
      swiftSettings: numericSettings
    ),
    .executableTarget(
      name: "graft",
      dependencies: [
        "GraftTensor", "GraftNN", "CBLAS",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .testTarget(
      name: "GraftTensorTests", dependencies: ["GraftTensor"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(name: "GraftNNTests", dependencies: ["GraftNN", "GraftTensor"]),
  ]
)
