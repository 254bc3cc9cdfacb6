import ArgumentParser
import Foundation
import GraftTasks

/// `graft pretrain`: supervised pretraining of a small ViT on Fashion-MNIST.
struct Pretrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Pretrain a ViT from scratch on Fashion-MNIST and write a timm model folder.",
    discussion: """
      Reads the IDX files of Fashion-MNIST (train-images-idx3-ubyte[.gz] and the others) from \
      --data, by default /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). \
      The defaults are the recipe of the bundled Models/vit-nano-fmnist. Keys for --set: \
      \(PretrainConfig.keys.joined(separator: ", ")).

      --out gets config.json and model.safetensors (loadable by graft and by timm), \
      metrics.jsonl, pretrain.json and checkpoint/ (written atomically each epoch; continue an \
      interrupted run with --resume).
      """)

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
    var config = PretrainConfig()
    for assignment in overrides {
      guard let eq = assignment.firstIndex(of: "=") else {
        throw ValidationError("--set \(assignment): expected KEY=VALUE")
      }
      try config.set(
        String(assignment[..<eq]), String(assignment[assignment.index(after: eq)...]))
    }
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
}
