import ArgumentParser
import Foundation

/// `graft demo points`: the bundled point backbone adapted to the furniture set.
struct DemoPoints: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "points",
    abstract: "Adapt the bundled point backbone to the furniture set with six methods.",
    discussion: """
      Trains each method with its preset recipe (\(DemoPoints.defaultSettings.joined(separator: ", "))) \
      in its own process; P2P draws the clouds for the bundled image backbone. Writes \
      <out>/<method>/ run folders, <out>/summary.json and <out>/report.html (the charts, the \
      test clouds with predicted and true labels, P2P's images). Needs 'graft data prepare \
      furniture' first. Finished runs are reused; --fresh redoes them.
      """)

  /// What the demo changes in every method's preset: two epochs and five votes keep the six
  /// runs within five minutes on two cores (full fine-tuning, which trains the backbone's
  /// patch encoder, takes about 45 s an epoch; see `BenchGraft3D.defaultSettings`).
  /// No warm-up: the recipes' one or two warm-up epochs would be most of a two-epoch run
  /// (IDPT, warm-up 2, stayed at chance on the validation split: 7.5 %).
  static let defaultSettings = ["train.epochs=2", "eval.votes=5", "optim.warmup_epochs=0"]

  @Option(help: "Run folder.")
  var out = "runs/demo-points"

  @Option(help: "Point backbone: bundled name or Point-MAE folder.")
  var backbone = "point-mae-furniture"

  @Option(help: "Image backbone P2P draws the clouds for.")
  var imageBackbone = "vit-nano-fmnist"

  @Option(help: "Task (a --data reference of point clouds).")
  var task = "furniture"

  @Option(help: "Comma-separated methods.")
  var methods = "linear,vpt-deep,idpt,lora,full,p2p"

  @OptionGroup var jobsOption: JobsOption

  @OptionGroup var settings: SetOptions

  @Flag(help: "Redo runs that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  @OptionGroup var quietFlag: QuietFlag

  func run() throws {
    try PointSweep(
      backbone: backbone, imageBackbone: imageBackbone,
      methods: methods.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) },
      tasks: [task], settings: Self.defaultSettings + settings.overrides, seeds: [],
      out: URL(fileURLWithPath: out), fresh: fresh, quiet: quietFlag.quiet, json: jsonFlag.json,
      jobs: jobsOption.jobs
    ).run(title: "Graft demo: \(backbone) on \(task)")
  }
}
