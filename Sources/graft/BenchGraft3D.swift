import ArgumentParser
import Foundation
import GraftTasks

/// `graft bench graft3d`: every method that fits on the Graft-3D tasks.
struct BenchGraft3D: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graft3d",
    abstract:
      "Every method on the Graft-3D point-cloud tasks (overall and mean per-class accuracy).",
    discussion: """
      Tasks (from the real furniture meshes; 'graft data prepare furniture' first): \
      \(Graft3D.tasks.joined(separator: ", ")) (the same clouds under fixed random SO(3) \
      rotations). Every method but HST runs on the point backbone; P2P on the image backbone. \
      Each run uses its method's preset recipe (\(BenchGraft3D.defaultSettings.joined(separator: ", "))) \
      in its own process (so each peak RSS is its own), once per seed: the test splits have 133 \
      clouds, so one seed misleads. Writes <out>/<task>/<method>/seed-<s>/ run folders, \
      <out>/summary.json and <out>/report.html. Finished runs are reused; --fresh redoes them. \
      --quick: one seed, two epochs, five votes.
      """)

  /// What the benchmark changes in every method's preset. The bundled backbone's patch
  /// encoder (a mini-PointNet over 64 × 32 points, about 1.5 GFLOP a cloud) costs far more than
  /// its six blocks: an epoch of the 406 training clouds takes about 11 s of two cores for a
  /// method without backbone gradient through it and 45 s for full fine-tuning, and 10 votes
  /// on the 133 test clouds about 18 s. Ten epochs, because fewer measure the recipes' start
  /// rather than the methods: on the furniture validation split IDPT passes the linear probe's
  /// best only at epoch 5 (README, "Below the linear probe"); a seed of the 13 methods on one
  /// task takes about 40 minutes on two idle cores. Point-MAE's 10 votes.
  /// No warm-up: the recipes' one or two warm-up epochs would be a fifth of so short a run
  /// (see `DemoPoints.defaultSettings`).
  static let defaultSettings = ["train.epochs=10", "eval.votes=10", "optim.warmup_epochs=0"]
  /// What `--quick` uses instead.
  static let quickSettings = ["train.epochs=2", "eval.votes=5", "optim.warmup_epochs=0"]
  /// Seeds of a full run: three, since one seed misleads on 133 test clouds (the spread over
  /// seeds is in the table); `--seeds` takes more.
  static let defaultSeeds: [UInt64] = [0, 1, 2]

  @Option(help: "Run folder.")
  var out = "runs/graft3d"

  @Option(help: "Point backbone: bundled name or Point-MAE folder.")
  var backbone = "point-mae-furniture"

  @Option(help: "Image backbone P2P draws the clouds for.")
  var imageBackbone = "vit-nano-fmnist"

  @Option(help: "Comma-separated methods (default: every method that fits).")
  var methods: String?

  @Option(help: "Comma-separated tasks (default: all).")
  var tasks: String?

  @Option(help: "Comma-separated seeds (default 0,1,2; --quick: 0).")
  var seeds: String?

  @Flag(help: "One seed, two epochs, five votes (a smoke run).")
  var quick = false

  @OptionGroup var jobsOption: JobsOption

  @OptionGroup var settings: SetOptions

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  @OptionGroup var quietFlag: QuietFlag

  /// The issue's list: every method that fits a point backbone (HST needs an image grid; MP+
  /// is MP with PSRP, left to `--methods`), and P2P on the image backbone.
  static let defaultMethods = [
    "linear", "full", "bitfit", "ln-tune", "vpt-shallow", "vpt-deep", "lora", "adapter", "mp",
    "lst", "unipt", "idpt", "p2p",
  ]

  func run() throws {
    let list = { (s: String) in
      s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    let seedList = try seeds.map(parseSeeds) ?? (quick ? [0] : Self.defaultSeeds)
    let base = quick ? Self.quickSettings : Self.defaultSettings
    try PointSweep(
      backbone: backbone, imageBackbone: imageBackbone,
      methods: methods.map(list) ?? Self.defaultMethods, tasks: tasks.map(list) ?? Graft3D.tasks,
      settings: base + settings.overrides, seeds: seedList, out: URL(fileURLWithPath: out),
      fresh: fresh, quiet: quietFlag.quiet, json: jsonFlag.json, jobs: jobsOption.jobs
    ).run(title: "Graft-3D: \(backbone)")
  }
}
