import ArgumentParser
import Foundation
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

/// Keeps a command from writing over what it reads: an output path that is one of its input
/// files, is a folder it reads (a run, a clip set, a sweep), or would replace a file inside
/// one, is an error before anything runs. A new file inside such a folder is fine.
enum OutputGuard {
  /// Canonical form of `path`, links resolved, so two spellings of one file compare equal.
  static func canonical(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
  }

  /// Throws a `ValidationError` naming `flag` when `output` is one of `inputs`, is one of
  /// `folders`, or is a file that exists inside one of them.
  static func check(_ output: String, flag: String, inputs: [String] = [], folders: [String] = [])
    throws
  {
    let out = canonical(output)
    if let input = inputs.first(where: { canonical($0) == out }) {
      throw ValidationError("\(flag) \(output) is the input \(input): write it elsewhere")
    }
    for folder in folders {
      let inside = canonical(folder)
      if out == inside {
        throw ValidationError("\(flag) \(output) is \(folder), which this command reads")
      }
      if out.hasPrefix(inside.hasSuffix("/") ? inside : inside + "/"),
        FileManager.default.fileExists(atPath: out)
      {
        throw ValidationError(
          "\(flag) \(output) would replace a file of \(folder), which this command reads: "
            + "write it elsewhere")
      }
    }
  }
}
