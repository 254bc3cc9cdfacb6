import ArgumentParser
import GraftData

// Flags and options several commands share, declared once.

/// `--json`: machine-readable output.
struct JSONFlag: ParsableArguments {
  @Flag(help: "Print JSON instead of a table or text.")
  var json = false
}

/// `--quiet`: no progress output on standard error.
struct QuietFlag: ParsableArguments {
  @Flag(help: "No progress messages.")
  var quiet = false
}

/// `--set KEY=VALUE`, repeatable: configuration overrides applied last.
struct SetOptions: ParsableArguments {
  @Option(name: .customLong("set"), help: "KEY=VALUE override (repeatable).")
  var overrides: [String] = []
}

/// `--max-pixels N`: the largest image (width × height) decoded; larger ones are errors.
struct ImageLimitOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Refuse images of more pixels than this (default: Pillow's MAX_IMAGE_PIXELS).",
      valueName: "pixels"))
  var maxPixels = ImageCodec.defaultMaxPixels

  func validate() throws {
    guard maxPixels >= 1 else { throw ValidationError("--max-pixels must be at least 1") }
  }

  /// Sets the decoders' limit (before any image is decoded).
  func apply() { ImageCodec.maxPixels = maxPixels }
}
