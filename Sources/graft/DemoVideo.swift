import ArgumentParser
import Foundation
import GraftCaption
import GraftTensor

/// `graft demo video`: video captioning end to end in a few minutes (`graft bench captions`
/// with a short recipe), printed for a newcomer.
struct DemoVideo: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "video",
    abstract: "Caption the clip set with the bundled decoder, with and without the video.",
    discussion: """
      Prepares the captioned clip set on first use (graft data prepare clips), then trains \
      the PLLaVA captioner (frozen vit-nano-fmnist frames → projector → pooling → the bundled \
      decoder, tuned in full by default: with LoRA on this small decoder the captions do not \
      yet use the video) and the same recipe without the video (--arms), each in its \
      own process, as graft bench captions does (--epochs, default \(DemoVideo.defaultEpochs)). \
      Prints captions of a few test clips beside their references and the scores of both, then \
      how well a linear probe on the same pooled frame tokens tells the clips' actions apart, \
      and writes <out>/summary.json, <out>/report.html and <out>/action_probe.json. Finished \
      arms in <out> are reused; --fresh redoes them.
      """)

  /// Epochs of the demo's recipe, as `graft bench captions`: the two `full` arms take about
  /// 150 s of wall time at 15 epochs on two cores (README, Video against no video).
  static let defaultEpochs = 15

  /// Test clips printed.
  static let shown = 5

  @Option(help: "Output folder.")
  var out = "runs/demo-video"

  @Option(
    help: ArgumentHelp(
      "Language model: a folder, or a bundled name (GRAFT_MODELS, then Models/).",
      valueName: "folder"))
  var decoder = CaptionDecoder.bundledName

  @Option(help: "Passes over the training clips.")
  var epochs = DemoVideo.defaultEpochs

  @Option(help: "Comma-separated arms (a mode: lora, projector, full; optionally -no-video).")
  var arms = "full,full-no-video"

  @OptionGroup var settings: SetOptions

  @Flag(help: "Redo arms that finished earlier.")
  var fresh = false

  @OptionGroup var jsonFlag: JSONFlag

  func run() throws {
    let started = Date()
    let json = jsonFlag.json
    let clips = DataHome.folder("clips")
    if !FileManager.default.fileExists(
      atPath: clips.appendingPathComponent("annotations.json").path)
    {
      benchProgress("preparing the captioned clip set in \(clips.path)", json: json)
      _ = try ClipSetGenerator.prepare(
        root: clips, fashionMNIST: Graft1k.defaultFashionMNIST,
        mnistCSV: try DataFiles.dataFile("mnist5k/mnist_5k.csv.gz"),
        options: ClipSetGenerator.Options(), log: { benchProgress($0, json: json) })
    }
    var arguments = ["--decoder", decoder, "--data", clips.path, "--epochs", "\(epochs)"]
    for s in settings.overrides { arguments += ["--set", s] }
    let options = try CaptionArmOptions.parse(arguments)
    let outURL = URL(fileURLWithPath: out)
    let list = try arms.split(separator: ",").map {
      try CaptionArm.parse($0.trimmingCharacters(in: .whitespaces))
    }
    guard !list.isEmpty else { throw ValidationError("--arms is empty") }
    let (results, decoderFolder) = try options.runArms(
      list, out: outURL, fresh: fresh, title: "Graft demo: video captioning", json: json)
    // What the captioner's visual input holds of the action, for its "action named" count.
    benchProgress("action probe: a linear head on the captioner's pooled frame tokens", json: json)
    let set = try CaptionClips(path: clips)
    let probe = try ActionProbe.measure(
      set, backbone: TuneBackbone.load(options.backbone),
      config: options.methodConfig())
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(
      encoder.encode(probe) + Data("\n".utf8),
      to: outURL.appendingPathComponent("action_probe.json"))
    if json {
      let data = try MappedFile.contents(of: outURL.appendingPathComponent("summary.json"))
      var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
      object["action_probe"] = try JSONSerialization.jsonObject(with: encoder.encode(probe))
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
      return
    }
    print("Video captioning: \(options.backbone) frames → projector → pooled visual tokens → ")
    print(
      "\(decoderFolder.lastPathComponent); arms \(arms), \(epochs) epochs on the clip set's "
        + "training clips.")
    print("A -no-video arm is the same recipe with the frames zeroed: what it writes is the")
    print("captions' prior alone.\n")
    for e in set.entries(split: "test").prefix(Self.shown) {
      print("\(e.videoID)  (\(e.url.path))" + (e.label.map { ", action \($0)" } ?? ""))
      for r in results {
        let caption = r.captions.first { $0.videoID == e.videoID }?.caption ?? ""
        let mark = e.label.map { ActionMentions.action(of: caption) == $0 ? "  ✓" : "  ✗" } ?? ""
        print("  " + pad(r.arm + ":", 16) + caption + mark)
      }
      for ref in e.captions { print("  " + pad("reference:", 16) + ref) }
      print()
    }
    print("✓: the caption names the clip's action. Test scores (COCO caption metrics):\n")
    print(captionTable(results))
    print(
      "\nThe action in the visual input: a linear probe on the same pooled frame tokens (before "
        + "the projector)")
    print(
      "tells \(probe.testCorrect) of \(probe.testClips) test clips' actions apart "
        + "(chance 1 in \(probe.classes.count)); the captions above name it in "
        + results.map { "\($0.actionNamed) (\($0.arm))" }.joined(separator: ", ") + ".")
    print(
      String(
        format: "\n%.0f s in all; wrote %@, %@ and %@", Date().timeIntervalSince(started),
        outURL.appendingPathComponent("summary.json").path,
        outURL.appendingPathComponent("report.html").path,
        outURL.appendingPathComponent("action_probe.json").path))
  }
}
