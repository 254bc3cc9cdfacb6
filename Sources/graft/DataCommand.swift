import ArgumentParser
import Foundation
import GraftDetection
import GraftTasks
import GraftVideo

/// `graft data`: prepares and lists datasets.
struct DataCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data", abstract: "Prepare and list datasets.",
    subcommands: [Prepare.self, List.self])

  /// `graft data prepare graft1k|furniture`.
  struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Build a dataset: the Graft-1k tasks, or the furniture point clouds.",
      discussion: """
        graft1k: writes each task from the real images in Data/ and Fashion-MNIST as PNG files \
        with VTAB-1k list files (train800.txt, val200.txt, train800val200.txt, test.txt) and \
        classes.txt under --root (default $GRAFT_DATA_HOME/graft1k or ~/.cache/graft/graft1k). \
        Use a task with 'graft tune --data graft1k/<task>'.

        furniture: samples point clouds (2048 points with normals) from the real meshes of \
        Debian's sweethome3d-furniture (apt install sweethome3d-furniture), classes from the \
        catalogs' categories, split by mesh into train/val/test, as a class-per-folder tree of \
        PLY files under --root (default $GRAFT_DATA_HOME/furniture or ~/.cache/graft/furniture).

        clips: --clips short H.264 clips (2 s, 64x64, 16 fps, written through libavcodec) in \
        which Fashion-MNIST test items and MNIST digits slide, rise, fall, appear, disappear, \
        turn or swap places, each with its action label and 3-5 captions, split 70/10/20 by \
        --seed, with MSR-VTT-style annotations.json, under --root (default \
        $GRAFT_DATA_HOME/clips or ~/.cache/graft/clips).

        canvas-det: --images 128x128 grey canvases (--canvas) with 1-6 Fashion-MNIST test items \
        and MNIST digits (Data/mnist5k) at random sizes (12-120 pixels) and positions, some \
        overlapping, each boxed by its nonzero pixels, in 20 categories; every item pool is \
        split 70/10/20 by --seed so no test canvas shows a training item. Writes \
        images/{train,val,test}/NNNNN.png and annotations/{train,val,test}.json (COCO) under \
        --root (default $GRAFT_DATA_HOME/canvas-det or ~/.cache/graft/canvas-det).

        text: English text for graft pretrain --modality text from WordNet 3.0 (Debian's \
        wordnet-base, apt install wordnet-base; --wordnet for another copy of its data files): \
        each synset's words and gloss (definition and examples) as one document, every 50th held \
        out, written as train.txt, validation.txt and LICENSE (WordNet's notice) under --root \
        (default $GRAFT_DATA_HOME/text or ~/.cache/graft/text).
        """)

    @Argument(help: "The dataset to prepare: graft1k, furniture, clips, canvas-det or text.")
    var benchmark: String

    @Option(help: "Only this Graft-1k task (repeatable); default all.")
    var task: [String] = []

    @Option(help: "Folder to write the tasks (graft1k) or the set (furniture) in.")
    var root: String?

    @Option(help: "Folder of Fashion-MNIST's IDX files (graft1k).")
    var fashionMnist = Graft1k.defaultFashionMNIST.path

    @Option(help: "Folder of the Sweet Home 3D .sh3f libraries (furniture).")
    var libraries = Furniture.defaultLibraries.path

    @Option(help: "Points sampled from each mesh (furniture).")
    var points = 2048

    @Option(help: "Smallest class kept, in meshes (furniture).")
    var minimumMeshes = 15

    @Option(help: "Folder of WordNet's data.* files (text).")
    var wordnet = WordNetText.defaultDatabase.path

    @Option(help: "Number of clips (clips).")
    var clips = 240

    @Option(help: "Seed of the clips' items, actions, captions and splits (clips, canvas-det).")
    var seed: UInt64 = 0

    @Option(help: "Number of canvases in all splits (canvas-det).")
    var images = 1000

    @Option(help: "Canvas side in pixels (canvas-det).")
    var canvas = 128

    @OptionGroup var quietFlag: QuietFlag
    var quiet: Bool { quietFlag.quiet }

    /// Sizes are checked first: a negative count used to crash, a huge one to abort on memory.
    func validate() throws {
      let bounds: [(String, Int, ClosedRange<Int>)] = [
        ("--clips", clips, 1...100_000), ("--images", images, 1...1_000_000),
        ("--canvas", canvas, 64...4096), ("--points", points, 1...1_000_000),
      ]
      for (flag, value, range) in bounds where !range.contains(value) {
        throw ValidationError(
          "\(flag) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
      }
    }

    func run() throws {
      switch benchmark {
      case "clips":
        let rootURL = root.map { URL(fileURLWithPath: $0) } ?? DataHome.folder("clips")
        var options = ClipSetGenerator.Options()
        options.clips = clips
        options.seed = seed
        let set = try ClipSetGenerator.prepare(
          root: rootURL, fashionMNIST: URL(fileURLWithPath: fashionMnist),
          mnistCSV: try DataFiles.dataFile("mnist5k/mnist_5k.csv.gz"), options: options,
          log: { if !quiet { print($0) } })
        if !quiet {
          print(
            "clips: \(set.videos.count) clips, \(set.sentences.count) captions at "
              + rootURL.appendingPathComponent("annotations.json").path)
        }
      case "canvas-det": try prepareCanvasDetection()
      case "graft1k": try prepareGraft1k()
      case "text":
        let rootURL = root.map { URL(fileURLWithPath: $0) } ?? WordNetText.defaultRoot()
        let counts = try WordNetText.prepare(
          database: URL(fileURLWithPath: wordnet), root: rootURL)
        if !quiet {
          print(
            "text: \(counts.train) training and \(counts.validation) validation documents "
              + "(WordNet glosses) at \(rootURL.path)")
        }
      case "furniture":
        let rootURL = root.map { URL(fileURLWithPath: $0) } ?? Furniture.defaultRoot()
        let summary = try Furniture.prepare(
          libraries: URL(fileURLWithPath: libraries), root: rootURL, points: points,
          minimumMeshes: minimumMeshes, log: { if !quiet { print($0) } })
        if !quiet {
          for (label, name) in summary.classNames.enumerated() {
            let counts = Furniture.splits.map { "\($0) \(summary.counts[$0]![label])" }
            print("  \(name): \(counts.joined(separator: ", "))")
          }
          print("furniture: prepared at \(rootURL.path)")
        }
      default:
        throw ValidationError(
          "unknown dataset '\(benchmark)' (known: graft1k, furniture, clips, canvas-det, text)")
      }
    }

    private func prepareCanvasDetection() throws {
      guard images > 0, canvas >= 64 else {
        throw ValidationError("canvas-det needs --images > 0 and --canvas >= 64")
      }
      let rootURL = root.map { URL(fileURLWithPath: $0) } ?? DataHome.folder("canvas-det")
      // Fashion-MNIST's test split only (the bundled backbone trained on its training split).
      let fashion = try IDXDataset(directory: URL(fileURLWithPath: fashionMnist), train: false)
      let digits = try PixelCSVDataset(
        url: try DataFiles.dataFile("mnist5k/mnist_5k.csv.gz"), width: 28, height: 28)
      func grey(_ image: RGBImage) -> [UInt8] {
        (0..<(image.width * image.height)).map { image.pixels[$0 * 3] }
      }
      let fashionItems = try (0..<fashion.count).map {
        CanvasDetection.Item(
          pixels: grey(try fashion.sample(at: $0)), categoryID: fashion.labels[$0] + 1)
      }
      let digitItems = try (0..<digits.count).map {
        CanvasDetection.Item(
          pixels: grey(try digits.sample(at: $0)), categoryID: digits.labels[$0] + 11)
      }
      var options = CanvasDetection.Options()
      options.images = images
      options.size = canvas
      options.seed = seed
      let sets = try CanvasDetection.prepare(
        root: rootURL, pools: [fashionItems, digitItems], options: options,
        log: { if !quiet { print($0) } })
      if !quiet {
        for (split, set) in zip(CanvasDetection.splits, sets) {
          print("  \(split): \(set.images.count) images, \(set.annotationCount) boxes")
        }
        print("canvas-det: prepared at \(rootURL.path)")
      }
    }

    private func prepareGraft1k() throws {
      let names = task.isEmpty ? Graft1k.tasks.map(\.name) : task
      for name in names { _ = try Graft1k.task(name) }
      let rootURL = root.map { URL(fileURLWithPath: $0) } ?? Graft1k.defaultRoot()
      let progress = ProgressReporter(style: .automatic(quiet: quiet), totalSteps: names.count)
      progress.beginPhase("graft1k", steps: names.count)
      for name in names {
        let started = Date()
        try Graft1k.prepare(
          name, root: rootURL, fashionMNIST: URL(fileURLWithPath: fashionMnist))
        progress.step()
        progress.log(
          String(
            format: "%@: prepared in %.1f s at %@", name, Date().timeIntervalSince(started),
            rootURL.appendingPathComponent(name).path))
      }
      progress.finish()
    }
  }

  /// `graft data list`.
  struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the datasets Graft knows and whether they are prepared.")

    @Option(help: "Folder of the prepared Graft-1k tasks.")
    var root: String?

    @Option(help: "Folder of the prepared furniture set.")
    var furnitureRoot: String?

    func run() throws {
      let rootURL = root.map { URL(fileURLWithPath: $0) } ?? Graft1k.defaultRoot()
      print("name                    classes  prepared  what")
      for t in Graft1k.tasks {
        let ready = Graft1k.isPrepared(t.name, root: rootURL)
        print(
          "graft1k/\(t.name)".padding(toLength: 24, withPad: " ", startingAt: 0)
            + String(t.classNames.count).padding(toLength: 9, withPad: " ", startingAt: 0)
            + (ready ? "yes" : "no").padding(toLength: 10, withPad: " ", startingAt: 0)
            + t.summary)
      }
      let digits = DataFiles.digitsLocations().contains {
        FileManager.default.fileExists(atPath: $0.path)
      }
      print(
        "digits".padding(toLength: 24, withPad: " ", startingAt: 0) + "10       "
          + (digits ? "yes" : "no ").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "the committed UCI digits, split 70/10/20")
      let fmnist = FileManager.default.fileExists(
        atPath: Graft1k.defaultFashionMNIST.appendingPathComponent("t10k-labels-idx1-ubyte.gz")
          .path)
      print(
        "fashion-mnist".padding(toLength: 24, withPad: " ", startingAt: 0) + "10       "
          + (fmnist ? "yes" : "no ").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "\(Graft1k.defaultFashionMNIST.path) (apt install dataset-fashion-mnist)")
      let furnitureURL =
        furnitureRoot.map { URL(fileURLWithPath: $0) } ?? Furniture.defaultRoot()
      let furnitureReady = Furniture.isPrepared(root: furnitureURL)
      let furnitureClasses =
        furnitureReady
        ? (try? String(
          contentsOf: furnitureURL.appendingPathComponent("classes.txt"), encoding: .utf8))
          .map { String($0.split(separator: "\n").count) } ?? "?" : "-"
      let libraries = FileManager.default.fileExists(atPath: Furniture.defaultLibraries.path)
      print(
        "furniture".padding(toLength: 24, withPad: " ", startingAt: 0)
          + furnitureClasses.padding(toLength: 9, withPad: " ", startingAt: 0)
          + (furnitureReady ? "yes" : "no").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "point clouds of real furniture meshes ("
          + (libraries ? "graft data prepare furniture" : "apt install sweethome3d-furniture")
          + ")")
      // canvas-det writes test.json last, so its presence means the set is complete.
      let canvasURL = DataHome.folder("canvas-det")
      let canvasReady = FileManager.default.fileExists(
        atPath: canvasURL.appendingPathComponent("annotations/test.json").path)
      print(
        "canvas-det".padding(toLength: 24, withPad: " ", startingAt: 0) + "20       "
          + (canvasReady ? "yes" : "no").padding(toLength: 10, withPad: " ", startingAt: 0)
          + "detection canvases, COCO JSON at \(canvasURL.path) (graft data prepare canvas-det)")
      print("prepared tasks live in \(rootURL.path)")
      print("the furniture set lives in \(furnitureURL.path)")
    }
  }
}
