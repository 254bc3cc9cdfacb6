import ArgumentParser
import Foundation
import GraftTasks

/// What `graft pretrain` trains.
enum PretrainModality: String, ExpressibleByArgument, CaseIterable {
  /// A ViT, supervised on Fashion-MNIST.
  case images
  /// A Point-MAE encoder, masked autoencoding on the furniture meshes.
  case points
  /// A byte-level BPE and a GPT-2-layout decoder, language modelling on plain text.
  case text
}

/// `graft pretrain`: supervised pretraining of a small ViT on Fashion-MNIST, or Point-MAE's
/// masked autoencoding on real meshes.
struct Pretrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Pretrain a ViT on Fashion-MNIST (images), a Point-MAE on meshes (points) or a GPT-2-layout "
      + "decoder on text (text).",
    discussion: """
      Reads the IDX files of Fashion-MNIST (train-images-idx3-ubyte[.gz] and the others) from \
      --data, by default /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). \
      The defaults are the recipe of the bundled Models/vit-nano-fmnist. Keys for --set: \
      \(PretrainConfig.keys.joined(separator: ", ")).

      --out gets config.json and model.safetensors (loadable by graft and by timm), \
      metrics.jsonl, pretrain.json and checkpoint/ (written atomically each epoch; continue an \
      interrupted run with --resume).

      --modality points: Point-MAE's masked autoencoding on the training meshes of the prepared \
      furniture set (graft data prepare furniture), re-read from --libraries and sampled afresh \
      every epoch; the validation meshes give the reported reconstruction loss. Keys for --set: \
      \(PointPretrainConfig.options.map(\.key).joined(separator: ", ")). --out gets a Point-MAE \
      model folder (config.json, model.safetensors) with metrics.jsonl and pretrain.json.

      --modality text: trains a GPT-2-style byte-level BPE on train.txt of --text-data (default \
      $GRAFT_DATA_HOME/text, written by graft data prepare text), or takes --tokenizer, then a \
      randomly initialised GPT-2-layout decoder on packed sequences of model.n_positions tokens; \
      validation.txt gives the loss and perplexity of each epoch. Keys for --set: \
      \(TextPretrainConfig.options.map(\.key).joined(separator: ", ")). --out gets a Hugging Face \
      model folder (config.json, model.safetensors, tokenizer.json, vocab.json, merges.txt) that \
      transformers' GPT2LMHeadModel loads, with metrics.jsonl, pretrain.json and checkpoint/.
      """)

  @Option(help: "What to pretrain: images (a ViT), points (a Point-MAE) or text (a GPT-2).")
  var modality = PretrainModality.images

  @Option(help: "Folder with train.txt and validation.txt (--modality text).")
  var textData: String?

  @Option(help: "A tokenizer.json to use instead of training one (--modality text).")
  var tokenizer: String?

  @Option(help: "Prepared furniture set (--modality points).")
  var furnitureRoot: String?

  @Option(help: "Sweet Home 3D furniture libraries (--modality points).")
  var libraries = Furniture.defaultLibraries.path

  @Option(help: "Folder of Fashion-MNIST's IDX files.")
  var data = "/usr/share/datasets/fashion-mnist"

  @Option(help: "Model folder to write.")
  var out: String

  @OptionGroup var settings: SetOptions
  var overrides: [String] { settings.overrides }

  @Flag(help: "Continue the interrupted run in --out.")
  var resume = false

  @OptionGroup var quietFlag: QuietFlag
  var quiet: Bool { quietFlag.quiet }

  func run() throws {
    if modality == .points { return try runPoints() }
    if modality == .text { return try runText() }
    var config = PretrainConfig()
    try applyOverrides(to: &config)
    let outURL = URL(fileURLWithPath: out)
    if !resume && Pretrainer.holdsRun(outURL) {
      throw ValidationError("\(out) already holds a run; continue it with --resume")
    }
    if resume && !Pretrainer.holdsRun(outURL) {
      throw ValidationError("\(out): nothing to resume (no completed epoch in \(out)/checkpoint)")
    }
    let folder = URL(fileURLWithPath: data)
    let train = try IDXDataset(directory: folder, train: true, classNames: fashionMNISTClassNames)
    let test = try IDXDataset(directory: folder, train: false, classNames: fashionMNISTClassNames)
    let pretrainer = try Pretrainer(config: config, classNames: fashionMNISTClassNames)
    let used = config.trainSamples > 0 ? min(config.trainSamples, train.count) : train.count
    let steps =
      config.epochs
      * (used >= 2 * config.batchSize
        ? used / config.batchSize : (used + config.batchSize - 1) / config.batchSize)
    let progress = ProgressReporter(style: .automatic(quiet: quiet), totalSteps: steps)
    progress.log(
      "pretraining \(pretrainer.model.parameterCount) parameters on \(used) images of \(data)")
    guard
      let result = try pretrainer.run(
        train: train, test: test, out: outURL, resume: resume, progress: progress)
    else { return }
    print(
      String(
        format: "test top-1 %.4f after %d epochs, %.0f s; wrote %@", result.testTop1,
        config.epochs, result.seconds, out))
  }

  /// Each `--set KEY=VALUE` applied to `config`, in order.
  private func applyOverrides<Config: OptionTable>(to config: inout Config) throws {
    for assignment in overrides {
      guard let eq = assignment.firstIndex(of: "=") else {
        throw ValidationError("--set \(assignment): expected KEY=VALUE")
      }
      try config.set(
        String(assignment[..<eq]), String(assignment[assignment.index(after: eq)...]))
    }
  }

  /// Point-MAE's masked autoencoding on the furniture meshes.
  private func runPoints() throws {
    var config = PointPretrainConfig()
    try applyOverrides(to: &config)
    let outURL = URL(fileURLWithPath: out)
    if !resume && Pretrainer.holdsRun(outURL) {
      throw ValidationError("\(out) already holds a run; continue it with --resume")
    }
    let root = furnitureRoot.map { URL(fileURLWithPath: $0) } ?? Furniture.defaultRoot()
    let libraryURL = URL(fileURLWithPath: libraries)
    let train = try Furniture.meshes(split: "train", root: root, libraries: libraryURL)
    let val = try Furniture.meshes(split: "val", root: root, libraries: libraryURL)
    let pretrainer = try PointPretrainer(config: config)
    let steps =
      config.epochs
      * (train.meshes.count >= 2 * config.batchSize
        ? train.meshes.count / config.batchSize
        : (train.meshes.count + config.batchSize - 1) / config.batchSize)
    let progress = ProgressReporter(
      style: .automatic(quiet: quiet), totalSteps: steps, unit: "clouds")
    progress.log(
      "pretraining \(pretrainer.model.encoder.parameterCount) encoder parameters on "
        + "\(train.meshes.count) meshes (\(val.meshes.count) for validation)")
    guard
      let result = try pretrainer.run(
        train: MeshDataset(
          meshes: train.meshes, labels: train.labels, classNames: train.classNames),
        validation: MeshDataset(
          meshes: val.meshes, labels: val.labels, classNames: val.classNames),
        out: outURL, resume: resume, progress: progress)
    else { return }
    print(
      String(
        format: "validation chamfer-L2 %.5f after %d epochs, %.0f s; wrote %@",
        result.validationLoss, config.epochs, result.seconds, out))
  }

  /// Language-model pretraining of a GPT-2-layout decoder on plain text.
  private func runText() throws {
    var config = TextPretrainConfig()
    try applyOverrides(to: &config)
    let outURL = URL(fileURLWithPath: out)
    if !resume && TextPretrainer.holdsRun(outURL) {
      throw ValidationError("\(out) already holds a run; continue it with --resume")
    }
    let folder = textData.map { URL(fileURLWithPath: $0) } ?? WordNetText.defaultRoot()
    let corpus = try TextCorpus(folder: folder)
    let pretrainer = try TextPretrainer(config: config)
    let progress = ProgressReporter(
      style: .automatic(quiet: quiet), totalSteps: 1, unit: "seq")
    progress.log("pretraining on the text of \(folder.path)")
    guard
      let result = try pretrainer.run(
        corpus: corpus, out: outURL, tokenizer: tokenizer.map { URL(fileURLWithPath: $0) },
        resume: resume, progress: progress)
    else { return }
    print(
      String(
        format: "validation loss %.4f (perplexity %.1f) after %d epochs, %.0f s; wrote %@",
        result.validationLoss, exp(result.validationLoss), config.epochs, result.seconds, out))
  }
}
