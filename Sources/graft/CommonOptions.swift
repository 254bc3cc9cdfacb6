import ArgumentParser

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
