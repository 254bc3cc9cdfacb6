import ArgumentParser
import Foundation
import GraftModels
import GraftText

/// `graft models`: the bundled models, and fresh-weight copies of a model for ablations.
struct ModelsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "models", abstract: "List the bundled models, or re-initialise one.",
    subcommands: [ModelsList.self, ModelsReinit.self], defaultSubcommand: ModelsList.self)
}

/// `graft models reinit MODEL --out DIR`.
struct ModelsReinit: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reinit",
    abstract: "Write a model folder of the same architecture with freshly initialised weights.",
    discussion: """
      The 'random weights' side of a pretraining ablation: tune the copy exactly as the original
      (same configuration, same preprocessing) to see what the pretrained weights are worth.
      Weights are initialised as training from scratch starts (timm's ViT init, Point-MAE's
      _init_weights), seeded by --seed.
      """)

  @Argument(help: "Model folder or bundled name.")
  var model: String

  @Option(help: "Folder to write (config.json and model.safetensors).")
  var out: String

  @Option(help: "Seed of the initialisation.")
  var seed: UInt64 = 0

  func run() throws {
    // The model folder as given, or the bundled one of that name.
    let config =
      ([URL(fileURLWithPath: model)]
      + ModelLoader.bundledModelDirectories().map {
        $0.appendingPathComponent(model)
      }).map { $0.appendingPathComponent("config.json") }
      .first { FileManager.default.fileExists(atPath: $0.path) }
    if let config, let object = try? GPT2Config.readObject(config),
      GPT2Config.describesLanguageModel(object)
    {
      throw ValidationError(
        "\(model) is a text decoder; reinit re-initialises image and point backbones (a fresh "
          + "decoder is what graft pretrain --modality text starts from)")
    }
    try ModelLoader.writeReinitialised(model, to: URL(fileURLWithPath: out), seed: seed)
    print("wrote \(out): \(model) with fresh weights (seed \(seed))")
  }
}
