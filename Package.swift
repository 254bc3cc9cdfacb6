// swift-tools-version: 6.1
import PackageDescription

/// Release builds of the numeric code want FMAs and bounds-check-free loops.
let numericSettings: [SwiftSetting] = [
  .unsafeFlags(["-Ounchecked"], .when(configuration: .release))
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
