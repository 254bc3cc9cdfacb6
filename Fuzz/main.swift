// libFuzzer driver for every parser Graft owns (built only by Tools/fuzz.sh, with GRAFT_FUZZ=1
// and -sanitize=fuzzer). The parser is chosen by the GRAFT_FUZZ_TARGET environment variable;
// each input must end in a value or a thrown error, never a crash, a trap, a leak or a hang.

import Foundation
import GraftData
import GraftModels
import GraftPoints
import GraftTasks
import GraftTensor

/// The parsers, by target name.
let targets: [String: @Sendable (Data) throws -> Void] = [
  "safetensors": { data in
    let file = try SafetensorsFile(contentsOf: scratch(data))
    for (_, t) in try file.tensors() { _ = t.count }
  },
  "npz": { data in
    let archive = try NumpyArchive(contentsOf: scratch(data, suffix: ".npz"))
    try archive.verifyChecksums()
    for name in archive.names { _ = try archive.array(name).count }
  },
  "npy": { data in _ = try NumpyArchive.readArray(contentsOf: scratch(data, suffix: ".npy")) },
  "image": { data in _ = try ImageCodec.decode(data: data, name: "fuzz") },
  "pnm": { data in _ = try PNMCodec.decode([UInt8](data), path: "fuzz") },
  "yaml": { data in
    var config = try TuneConfig.preset(for: "lora")
    try config.apply(yaml: String(decoding: data, as: UTF8.self), source: "fuzz.yaml")
    _ = try config.yaml()
  },
  "timm-config": { data in
    let folder = scratchFolder()
    try data.write(to: folder.appendingPathComponent("config.json"))
    _ = try TimmModelFolder.readConfig(folder.appendingPathComponent("config.json")).vitConfig()
  },
  "pcd": { data in _ = try PCD.decode(data) },
  "ply": { data in _ = try PLY.decode(data) },
  "off": { data in _ = try OFF.decode(data) },
  "obj": { data in _ = try OBJ.decode(data) },
  "modelnet": { data in _ = try ModelNetText.decode(data) },
  "point-npy": { data in _ = try PointNpy.decode(data) },
]

/// This process's scratch folder in memory.
func scratchFolder() -> URL {
  let url = URL(fileURLWithPath: "/dev/shm/graft-fuzz-\(getpid())")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// `data` written to this process's scratch file (for readers that take a path).
func scratch(_ data: Data, suffix: String = ".bin") throws -> URL {
  let url = scratchFolder().appendingPathComponent("input" + suffix)
  try data.write(to: url)
  return url
}

let selected: @Sendable (Data) throws -> Void = {
  let name = ProcessInfo.processInfo.environment["GRAFT_FUZZ_TARGET"] ?? ""
  guard let parse = targets[name] else {
    FileHandle.standardError.write(
      Data(
        "set GRAFT_FUZZ_TARGET to one of \(targets.keys.sorted().joined(separator: ", "))\n".utf8))
    exit(2)
  }
  return parse
}()

/// One input (libFuzzer's `LLVMFuzzerTestOneInput`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
  let data = Data(bytes: bytes, count: count)
  do {
    try selected(data)
  } catch {
    _ = "\(error)"  // every error must describe itself
  }
  return 0
}

/// libFuzzer's driver, called from this executable's own `main` (SwiftPM names the entry point
/// of an executable target, so libFuzzer's `main` cannot be used).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzOne))
