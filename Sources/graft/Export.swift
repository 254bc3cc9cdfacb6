import ArgumentParser
import Foundation
import GraftTasks

/// `graft export`: a tuned run folder in PyTorch's formats.
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Export a tuned run folder: a merged timm model folder, or PEFT's LoRA folder.",
    discussion: """
      --to timm: config.json + model.safetensors with the method folded into the weights and the
      new head (linear, full, bitfit, ln-tune, lora); timm.create_model("local-dir:OUT",
      pretrained=True) gives the run's logits. --to peft: PEFT's LoRA folder for a lora run
      (q/v slices as one rank-2r LoRA on attn.qkv); load it with PeftModel.from_pretrained on
      timm.create_model(<backbone>, num_classes=<classes>). --to onnx: an ONNX graph (opset 17)
      of the merged model, input `pixels` (preprocessed), output `logits`; so far for the methods
      --to timm takes, on a plain class-token ViT.
      """)

  @Option(help: "Run folder of graft tune (or graft import).")
  var adapter: String

  @Option(help: "Format: timm, peft or onnx (OUT is then a .onnx file).")
  var to: String

  @Argument(help: "Output folder (created if missing; files replaced atomically).")
  var out: String

  func run() throws {
    let run = URL(fileURLWithPath: adapter)
    let output = URL(fileURLWithPath: out)
    if let note = AdapterCheckpoint.unfinishedNote(run) {
      FileHandle.standardError.write(Data("note: \(note)\n".utf8))
    }
    switch to {
    case "timm":
      try TimmExport.export(run: run, to: output)
    case "peft":
      try PEFTLoRA.export(run: run, to: output)
    case "onnx":
      try ONNXExport.export(run: run, to: output)
    default:
      throw ValidationError("--to must be timm, peft or onnx, not '\(to)'")
    }
    print("wrote \(output.path) (\(to))")
  }
}
