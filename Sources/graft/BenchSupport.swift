import ArgumentParser
import Foundation

// What the `graft bench` commands share: the reference-run options, progress lines, report
// output, child processes and table formatting.

/// `--python` and `--no-reference`: the PyTorch / onnxruntime side of a benchmark.
struct ReferenceOptions: ParsableArguments {
  @Option(help: "Python with torch and timm for the reference rows.")
  var python: String?

  @Flag(help: "Skip the PyTorch / onnxruntime reference.")
  var noReference = false

  /// `--python`, else `Tools/.venv/bin/python` when it exists, else `python3` from the PATH.
  func resolvedPython() -> String? {
    if let python { return python }
    let venv = repositoryRoot().appendingPathComponent("Tools/.venv/bin/python").path
    if FileManager.default.isExecutableFile(atPath: venv) { return venv }
    return "/usr/bin/env"
  }
}

/// A progress line on standard error, unless the output is JSON.
func benchProgress(_ line: String, json: Bool) {
  if !json { FileHandle.standardError.write(Data("  \(line)\n".utf8)) }
}

/// `report` as one line of sorted-key JSON, or the table `table` prints.
func printReport<R: Encodable>(_ report: R, json: Bool, table: () -> Void) throws {
  guard json else { return table() }
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  print(String(decoding: try encoder.encode(report), as: UTF8.self))
}

/// A `--seeds` list ("0,1,2"): one or more distinct unsigned integers.
func parseSeeds(_ text: String) throws -> [UInt64] {
  let list = try text.split(separator: ",").map { item -> UInt64 in
    guard let v = UInt64(item.trimmingCharacters(in: .whitespaces)) else {
      throw ValidationError("--seeds: '\(item)' is not a seed")
    }
    return v
  }
  guard !list.isEmpty, Set(list).count == list.count else {
    throw ValidationError("--seeds: give one or more distinct seeds, e.g. 0,1,2")
  }
  return list
}

/// The running executable (for re-running itself as a child process).
func selfExecutable() -> String {
  (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
    ?? CommandLine.arguments[0]
}

/// The repository the executable was built in (`.build/<config>/graft` → three levels up), or
/// the working directory.
func repositoryRoot() -> URL {
  let exe = URL(fileURLWithPath: selfExecutable()).resolvingSymlinksInPath()
  var dir = exe.deletingLastPathComponent()
  for _ in 0..<4 {
    if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
      return dir
    }
    dir = dir.deletingLastPathComponent()
  }
  return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}

/// Runs a child process and decodes the last line of its standard output as JSON. Its standard
/// error is shown as it comes with `showsStandardError`; otherwise it is kept aside (in a
/// temporary file, so a chatty child never blocks on a full pipe) and its last lines are part
/// of the error when the child fails, so the reason is never lost.
func runJSON<T: Decodable>(
  executable: String, arguments: [String], showsStandardError: Bool = false
) throws -> T {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = executable == "/usr/bin/env" ? ["python3"] + arguments : arguments
  // A child graft stops when this benchmark is gone (`ParentWatch`).
  process.environment = ParentWatch.childEnvironment()
  let output = Pipe()
  process.standardOutput = output
  var messages: URL? = nil
  if !showsStandardError {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-child-\(getpid())-\(UUID().uuidString).err")
    if FileManager.default.createFile(atPath: url.path, contents: nil),
      let handle = FileHandle(forWritingAtPath: url.path)
    {
      process.standardError = handle
      messages = url
    } else {
      process.standardError = FileHandle.nullDevice
    }
  }
  defer { if let messages { try? FileManager.default.removeItem(at: messages) } }
  try process.run()
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  guard process.terminationStatus == 0,
    let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last
  else {
    var why = showsStandardError ? "; its messages are above" : ""
    if let messages, let text = try? String(contentsOf: messages, encoding: .utf8) {
      let last = text.split(separator: "\n").suffix(5).joined(separator: "\n  ")
      if !last.isEmpty { why = ":\n  " + last }
    }
    throw RunsFailed(
      description:
        "\(executable) \(arguments.joined(separator: " ")) failed (status "
        + "\(process.terminationStatus))" + why)
  }
  return try JSONDecoder().decode(T.self, from: Data(line.utf8))
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
  let fill = String(repeating: " ", count: max(0, width - s.count))
  return right ? fill + s : s + fill
}
