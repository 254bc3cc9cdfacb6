import ArgumentParser
import Foundation
import GraftTasks

/// `graft import`: a PEFT LoRA adapter for a timm ViT as a Graft run folder.
struct Import: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Import a Hugging Face PEFT LoRA adapter for a timm ViT as a Graft run folder.",
    discussion: """
      The folder then works with graft eval and graft predict. q/k/v parts of a block-diagonal
      LoRA on attn.qkv become Graft's q/k/v targets; other modules' ranks are padded to the
      largest with zeros and differing scales folded into lora_B (both exact).
      """)

  @Option(help: "PEFT adapter folder (adapter_config.json + adapter_model.safetensors).")
  var peft: String

  @Option(help: "The timm model the adapter was trained on: a folder or a bundled name.")
  var backbone: String

  @Option(help: "Run folder to write.")
  var out: String

  @Option(help: "Class names, comma-separated, in the head's order (default 0, 1, …).")
  var classes: String?

  func run() throws {
    let names = classes.map { $0.split(separator: ",").map(String.init) }
    let n = try PEFTLoRA.importAdapter(
      peft: URL(fileURLWithPath: peft), backbone: backbone, classNames: names,
      to: URL(fileURLWithPath: out))
    print("wrote \(out) (lora, \(n) classes)")
  }
}
