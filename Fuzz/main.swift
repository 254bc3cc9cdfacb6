// libFuzzer driver for every parser Graft owns (built only by Tools/fuzz.sh, with GRAFT_FUZZ=1
// and -sanitize=fuzzer). The parser is chosen by the GRAFT_FUZZ_TARGET environment variable;
// each input must end in a value or a thrown error, never a crash, a trap, a leak or a hang.

import Foundation
import GraftData
import GraftDetection
import GraftModels
import GraftPoints
import GraftTasks
import GraftTensor
import GraftText
import GraftVideo

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
  "idx": { data in
    // A 4-byte big-endian length, the images file, then the labels file (MNIST's IDX pair).
    guard data.count >= 4 else { return }
    let bytes = [UInt8](data)
    let split = min(
      bytes.count - 4,
      Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3]))
    let images = try scratch(Data(bytes[4..<4 + split]), suffix: "-images.idx")
    let labels = try scratch(Data(bytes[(4 + split)...]), suffix: "-labels.idx")
    let set = try IDXDataset(images: images, labels: labels)
    for i in 0..<min(set.count, 4) { _ = try set.sample(at: i) }
  },
  "csv": { data in
    let set = try PixelCSVDataset(url: scratch(data, suffix: ".csv"), width: 2, height: 2)
    for i in 0..<min(set.count, 4) { _ = try set.sample(at: i) }
  },
  "bpe-files": { data in
    // vocab.json and merges.txt, separated by the first NUL byte.
    let (vocab, merges) = halves(data)
    let vocabURL = try scratch(vocab, suffix: "-vocab.json")
    let mergesURL = try scratch(merges, suffix: "-merges.txt")
    let tokenizer = try BPETokenizer(vocabJSON: vocabURL, mergesTXT: mergesURL)
    _ = tokenizer.decode(tokenizer.encode("Hello  world, it's 2026!"))
  },
  "hdf5": { data in
    let file = try HDF5File(contentsOf: scratch(data, suffix: ".h5"))
    _ = try file.info("data")
    _ = try file.floats("data")
    _ = try file.integers("label")
  },
  "lzf": { data in
    // The first two bytes give the decoded size; the rest is the compressed stream.
    guard data.count >= 2 else { return }
    let count = Int(data[data.startIndex]) << 8 | Int(data[data.startIndex + 1])
    let stream = [UInt8](data.dropFirst(2))
    _ = try stream.withUnsafeBytes { try LZF.decompress($0, count: count) }
  },
  "coco": { data in
    let dataset = try COCOAnnotations.parse(data, name: "fuzz.json")
    _ = try COCOWriter.encode(dataset)
  },
  "coco-eval": { data in
    // Ground truth and detections, separated by the first NUL byte; scored as COCO does.
    let (gt, dt) = halves(data)
    let truth = try COCOAnnotations.parse(gt, name: "gt.json", checkBoxes: false)
    let detections = try COCOResults.parse(dt, name: "dt.json", groundTruth: truth)
    _ = COCOBoxEvaluation.evaluate(groundTruth: truth, detections: detections)
  },
  "voc": { data in
    _ = try VOCAnnotations.parse(data, name: "fuzz.xml", imageID: 1)
  },
  "caption-scores": { data in
    // References and hypotheses, separated by the first NUL byte.
    let (refs, hyps) = halves(data)
    let input = try CaptionScoreInput.parse(
      references: refs, referencesName: "refs.json", hypotheses: hyps,
      hypothesesName: "hyps.json")
    _ = input.score()
  },
  "tokenizer-json": { data in
    let tokenizer = try BPETokenizer(tokenizerJSON: scratch(data, suffix: ".json"))
    let ids = tokenizer.encode("Hello  world, it's 2026! Ünïcödé\n\tend<|endoftext|>")
    _ = tokenizer.decode(ids)
  },
  "bpe": { data in
    // Byte-level BPE loses nothing: decoding the encoding gives back the text.
    let text = String(decoding: data, as: UTF8.self)
    let back = BPEFixture.tokenizer.decode(BPEFixture.tokenizer.encode(text))
    precondition(back == text, "BPE round trip changed \(text.debugDescription)")
  },
  "gpt2-config": { data in
    try GPT2Config.read(scratch(data, suffix: ".json")).validate()
  },
  "clips": { data in _ = try CaptionedClipSet(contentsOf: scratch(data, suffix: ".json")) },
  "video": { data in
    let reader = try VideoReader(url: scratch(data, suffix: ".vid"), threads: 1, maxPixels: 1 << 20)
    _ = try reader.info()
    for _ in 0..<3 {
      guard try reader.nextFrame() != nil else { break }
      _ = try reader.rgb()
    }
  },
]

/// `data` cut at its first NUL byte (the second half is empty when there is none).
func halves(_ data: Data) -> (Data, Data) {
  guard let cut = data.firstIndex(of: 0) else { return (data, Data()) }
  return (data[..<cut], data[(cut + 1)...])
}

/// The tokenizer the `bpe` target encodes with (GraftText's test fixture, a byte-level BPE
/// over all 256 bytes), from `GRAFT_FUZZ_TOKENIZER` (set by Tools/fuzz.sh); loaded on first use.
enum BPEFixture {
  static let tokenizer: BPETokenizer = {
    let path = ProcessInfo.processInfo.environment["GRAFT_FUZZ_TOKENIZER"] ?? ""
    do {
      return try BPETokenizer(tokenizerJSON: URL(fileURLWithPath: path))
    } catch {
      FileHandle.standardError.write(Data("bpe: cannot load GRAFT_FUZZ_TOKENIZER: \(error)\n".utf8))
      exit(2)
    }
  }()
}

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

if CommandLine.arguments.count == 4, CommandLine.arguments[1] == "--write-seeds" {
  do {
    let folder = URL(fileURLWithPath: CommandLine.arguments[3])
    try writeSeeds(target: CommandLine.arguments[2], to: folder)
    exit(0)
  } catch {
    FileHandle.standardError.write(Data("cannot write seeds: \(error)\n".utf8))
    exit(1)
  }
}

let selected: @Sendable (Data) throws -> Void = {
  // A lower pixel bound than Pillow's (512 × 512; the seeds are smaller) keeps mutated image
  // headers from asking for megabytes on every run; the check itself is the same code.
  ImageCodec.maxPixels = 1 << 18
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

/// Seeds for the targets that have no fixture files: small HDF5 files as ModelNet's and
/// ScanObjectNN's (`data` [n, points, 3] float32, `label` [n, 1] integers, plain and deflated),
/// and LZF streams (`lzf`'s two-byte size, then the compressed bytes).
func writeSeeds(target: String, to folder: URL) throws {
  switch target {
  case "hdf5":
    for (i, (type, gzip)) in [(HDF5IntegerType.uint8, 0), (.int32, 4), (.int64, 0)].enumerated() {
      let writer = try HDF5Writer()
      let points: [Float] = (0..<96).map { i in Float(i % 7) / 4 - 0.5 }
      try writer.add("data", floats: points, shape: [2, 16, 3], gzip: gzip)
      try writer.add("label", integers: [3, 1], shape: [2, 1], type: type, gzip: gzip)
      try Data(writer.bytes()).write(to: folder.appendingPathComponent("seed\(i).h5"))
    }
  case "lzf":
    for (i, text) in ["abcabcabcabcabcabc", String(repeating: "points ", count: 40), "x"]
      .enumerated()
    {
      let bytes = Array(text.utf8)
      let packed = bytes.withUnsafeBytes { LZF.compress($0) }
      let header = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)]
      try Data(header + packed).write(to: folder.appendingPathComponent("seed\(i).lzf"))
    }
  default: break
  }
}

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzOne))
