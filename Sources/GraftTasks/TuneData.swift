import Foundation

/// The train, validation and test splits of a classification task whose samples are `Sample`
/// (images: `ImageTuneData`; point clouds next).
public struct TuneData<Sample>: Sendable {
  /// Training samples.
  public var train: any Dataset<Sample>
  /// Validation samples (model selection).
  public var validation: any Dataset<Sample>
  /// Test samples (evaluated once, at the end).
  public var test: any Dataset<Sample>
  /// Class names, shared by the three splits.
  public var classNames: [String]
  /// Where the data came from and how it was split, for logs.
  public var description: String

  /// Wraps three splits; they must have the same class names in the same order (a label means
  /// the same class in every split). Splits listed separately by class name are first brought
  /// to the training split's classes with `matchedByName`.
  public init(
    train: any Dataset<Sample>, validation: any Dataset<Sample>, test: any Dataset<Sample>,
    description: String
  ) throws {
    for (name, split) in [("validation", validation), ("test", test)]
    where split.classNames != train.classNames {
      let extra = split.classNames.filter { !train.classNames.contains($0) }
      let missing = train.classNames.filter { !split.classNames.contains($0) }
      var problems: [String] = []
      if !extra.isEmpty { problems.append("has \(quotedList(extra)), which training lacks") }
      if !missing.isEmpty { problems.append("lacks \(quotedList(missing))") }
      if problems.isEmpty { problems.append("lists the classes in another order") }
      throw DatasetError(
        .mismatch, path: description,
        "the \(name) split \(problems.joined(separator: " and ")) (training: "
          + "\(quotedList(train.classNames)))")
    }
    // One class leaves nothing to tell apart: every prediction would be right.
    guard train.classNames.count >= 2 else {
      throw DatasetError(
        .tooFewSamples, path: description,
        "a classifier needs two classes or more; this data has "
          + (train.classNames.isEmpty ? "none" : "one, \(quotedList(train.classNames))"))
    }
    self.train = train
    self.validation = validation
    self.test = test
    classNames = train.classNames
    self.description = description
  }

  /// `split` relabelled to `classNames` (the training split's) by class name, for splits whose
  /// classes come from their own listing (image folders). A class `split` has but `classNames`
  /// lacks is an error naming it and `splitName`: nothing could learn it. A class of
  /// `classNames` that `split` lacks is allowed (an evaluation split may have no image of a rare
  /// class) and returned in `missing`, for the caller to report.
  public static func matchedByName(
    _ split: any Dataset<Sample>, classNames: [String], splitName: String
  ) throws -> (dataset: any Dataset<Sample>, missing: [String]) {
    guard split.classNames != classNames else { return (split, []) }
    var index: [String: Int] = [:]
    for (i, name) in classNames.enumerated() { index[name] = i }
    let extra = split.classNames.filter { index[$0] == nil }
    guard extra.isEmpty else {
      throw DatasetError(
        .mismatch, path: splitName,
        "class \(quotedList(extra)) is not a class of the training split "
          + "(\(quotedList(classNames))); class folders are matched by name")
    }
    let mapping = split.classNames.map { index[$0]! }
    let missing = classNames.filter { !split.classNames.contains($0) }
    return (try RelabeledDataset(split, classNames: classNames, mapping: mapping), missing)
  }

  /// Seed of every split made here: fixed, so a dataset splits the same way in every run
  /// whatever the run's seed.
  public static var splitSeed: UInt64 { DataFiles.splitSeed }

  /// `dataset` split at random (seed `splitSeed`) into test (`testFraction`), validation
  /// (`validationFraction`) and the rest for training; each held-out split gets at least one
  /// sample (an empty one would report 0 % as if measured), so a dataset needs three; a
  /// fraction of 0 holds out nothing.
  public static func split(
    _ dataset: any Dataset<Sample>, validationFraction: Double = 0.1, testFraction: Double = 0.2,
    description: String
  ) throws -> TuneData {
    guard dataset.count >= 3 else {
      throw DatasetError(
        .tooFewSamples, path: description,
        "\(dataset.count) samples are too few to hold out validation and test samples from "
          + "(at least 3; or give val and test splits of their own)")
    }
    // A fraction of 0 holds nothing out (the caller brings that split itself).
    func held(_ fraction: Double) -> Int {
      fraction > 0 ? Swift.max(1, Int((Double(dataset.count) * fraction).rounded())) : 0
    }
    let (testCount, valCount) = (held(testFraction), held(validationFraction))
    let (rest, test) = try DatasetSplit.random(dataset, validationCount: testCount, seed: splitSeed)
    let restSet = try Subset(dataset, indices: rest)
    let (train, val) = try DatasetSplit.random(
      restSet, validationCount: valCount, seed: splitSeed + 1)
    return try TuneData(
      train: Subset(dataset, indices: train.map { rest[$0] }),
      validation: Subset(dataset, indices: val.map { rest[$0] }),
      test: Subset(dataset, indices: test),
      description: description + " (split \(train.count)/\(val.count)/\(test.count), seed 0)")
  }
}

extension TuneData {
  /// The splits with validation joined to training (`data.train_on=train+val`): training is
  /// the training samples then the validation ones (VTAB-1k's 800 + 200 → 1,000), validation
  /// stays as it is (now seen in training, so its figures no longer select anything) and test
  /// is untouched.
  public func joiningValidation() throws -> TuneData {
    var out = self
    out.train = try ConcatenatedDataset(train, validation)
    out.description += " (training on train + validation: \(train.count) + \(validation.count))"
    return out
  }
}

extension TuneData {
  /// The splits of a `train/` (`val/`, `test/`) tree of class folders of `kind` files
  /// ("image", "video"): `train` is `root/train` opened, each evaluation split present is
  /// opened by `open` and matched to train's classes by folder name (never by position; classes
  /// it lacks become a note in the description), and a split that is absent is cut from
  /// `train` (10 % validation, 20 % test, seed `splitSeed`).
  static func withEvaluationFolders(
    train: any Dataset<Sample>, root url: URL, kind: String,
    open: (URL) throws -> any Dataset<Sample>
  ) throws -> TuneData {
    var notes: [String] = []
    func evaluationSplit(_ name: String) throws -> (any Dataset<Sample>)? {
      let folder = url.appendingPathComponent(name)
      guard FileManager.default.fileExists(atPath: folder.path) else { return nil }
      let (matched, missing) = try matchedByName(
        open(folder), classNames: train.classNames, splitName: folder.path)
      if !missing.isEmpty { notes.append("\(name)/ has no \(kind) of \(quotedList(missing))") }
      return matched
    }
    let val = try evaluationSplit("val")
    let test = try evaluationSplit("test")
    let note = notes.isEmpty ? "" : " (note: \(notes.joined(separator: "; ")))"
    if let val, let test {
      return try TuneData(
        train: train, validation: val, test: test,
        description: "\(kind) folders \(url.path)" + note)
    }
    var data = try split(
      train, validationFraction: val == nil ? 0.1 : 0, testFraction: test == nil ? 0.2 : 0,
      description: "\(kind) folder \(url.path)/train")
    if let val { data.validation = val }
    if let test { data.test = test }
    data.description += note
    return data
  }
}

/// A task of images.
public typealias ImageTuneData = TuneData<RGBImage>

/// Where the repository's data files are found.
public enum DataFiles {
  /// Seed of every split `TuneData` makes.
  public static let splitSeed: UInt64 = 0

  /// Where a file of the repository's `Data/` folder is looked for, in order: each folder of
  /// `$GRAFT_DATA` (colon-separated), `Data/` in the current folder, and `Data/` in the
  /// repository holding the executable.
  public static func dataLocations(_ relative: String) -> [URL] {
    var out: [URL] = []
    if let d = ProcessInfo.processInfo.environment["GRAFT_DATA"] {
      for entry in d.split(separator: ":") {
        out.append(URL(fileURLWithPath: String(entry)).appendingPathComponent(relative))
      }
    }
    out.append(
      URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        .appendingPathComponent("Data").appendingPathComponent(relative))
    if let exe = Bundle.main.executableURL {
      var dir = exe.resolvingSymlinksInPath().deletingLastPathComponent()
      while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path)
        {
          out.append(dir.appendingPathComponent("Data").appendingPathComponent(relative))
          break
        }
        dir = dir.deletingLastPathComponent()
      }
    }
    return out
  }

  /// The first existing `dataLocations(relative)`, or an error listing where it looked.
  public static func dataFile(_ relative: String) throws -> URL {
    let places = dataLocations(relative)
    guard let url = places.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
      throw DatasetError(
        .notFound, path: "Data/" + relative,
        "not found (looked in \(places.map(\.path).joined(separator: ", ")); set GRAFT_DATA)")
    }
    return url
  }

  /// Where `digits` is looked for (`dataLocations("digits/digits.csv")`).
  public static func digitsLocations() -> [URL] { dataLocations("digits/digits.csv") }
}

extension TuneData where Sample == RGBImage {
  /// The committed UCI digits (8×8 grey, values 0–16): 70 % train, 10 % validation, 20 % test.
  public static func digits(csv url: URL) throws -> TuneData {
    let all = try PixelCSVDataset(url: url, width: 8, height: 8, maxValue: 16)
    return try split(all, description: "digits \(url.path)")
  }

  /// Reads the task `spec` names:
  /// - `graft1k/<task>`: a Graft-1k task (prepared on first use, see `Graft1k`);
  /// - `digits`: the committed digits CSV (see `digits(csv:)`); a `.csv` path: the same format;
  /// - a VTAB-1k folder (`train800.txt`, `val200.txt`, `test.txt`);
  /// - an image folder with `train/` (and optionally `val/`, `test/`) class subfolders; missing
  ///   splits are cut from `train/` (10 % validation, 20 % test, seed 0);
  /// - a folder of IDX files (MNIST layout): `train-*` split 90/10, `t10k-*` for test;
  /// - any other image folder of class subfolders: split 70/10/20.
  public static func load(_ spec: String) throws -> TuneData {
    let fm = FileManager.default
    if spec.hasPrefix("graft1k/") {
      return try Graft1k.load(String(spec.dropFirst("graft1k/".count)))
    }
    if spec == "digits" {
      guard let url = DataFiles.digitsLocations().first(where: { fm.fileExists(atPath: $0.path) })
      else {
        throw DatasetError(
          .invalidArgument, path: "digits",
          "Data/digits/digits.csv not found (looked in "
            + DataFiles.digitsLocations().map(\.path).joined(separator: ", ") + "; set GRAFT_DATA)")
      }
      return try digits(csv: url)
    }
    let url = URL(fileURLWithPath: spec)
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else {
      throw DatasetError(.invalidArgument, path: url.path, "no such file or folder")
    }
    if !isDir.boolValue {
      guard url.pathExtension.lowercased() == "csv" || url.path.hasSuffix(".csv.gz") else {
        throw DatasetError(
          .invalidArgument, path: url.path, "not a dataset (a folder, 'digits' or a digits .csv)")
      }
      return try digits(csv: url)
    }
    func has(_ name: String) -> Bool {
      fm.fileExists(atPath: url.appendingPathComponent(name).path)
    }
    if has("train800.txt") || has("train800val200.txt") {
      let lists = VTABSplit.allCases.filter { has($0.fileName) }
      var maxLabel = 0
      for split in lists {
        maxLabel = max(maxLabel, try VTABListDataset(root: url, split: split).labels.max() ?? 0)
      }
      let classes = maxLabel + 1
      let train = try VTABListDataset(root: url, split: .train800, classCount: classes)
      let val = try VTABListDataset(root: url, split: .val200, classCount: classes)
      let test = try VTABListDataset(root: url, split: .test, classCount: classes)
      let namesURL = url.appendingPathComponent("classes.txt")
      guard fm.fileExists(atPath: namesURL.path) else {
        return try TuneData(
          train: train, validation: val, test: test, description: "VTAB-1k \(url.path)")
      }
      // Optional class names, one per line, in label order.
      // Split on any line end ("\r\n" is one Character, not "\n").
      let names = try String(contentsOf: namesURL, encoding: .utf8)
        .split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      guard names.count == classes else {
        throw DatasetError(
          .mismatch, path: namesURL.path,
          "\(names.count) class names, but the lists have \(classes) classes")
      }
      return try TuneData(
        train: RenamedClasses(train, classNames: names),
        validation: RenamedClasses(val, classNames: names),
        test: RenamedClasses(test, classNames: names), description: "VTAB-1k \(url.path)")
    }
    if has("train") {
      return try withEvaluationFolders(
        train: ImageFolderDataset(root: url.appendingPathComponent("train")), root: url,
        kind: "image", open: { try ImageFolderDataset(root: $0) })
    }
    let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
    if names.contains(where: { $0.hasPrefix("train-images") }) {
      let train = try IDXDataset(directory: url, train: true)
      let test = try IDXDataset(directory: url, train: false)
      let (t, v) = try DatasetSplit.random(
        train, validationCount: train.count / 10, seed: splitSeed)
      return try TuneData(
        train: Subset(train, indices: t), validation: Subset(train, indices: v), test: test,
        description: "IDX \(url.path) (validation: 10 % of train, seed 0)")
    }
    return try split(ImageFolderDataset(root: url), description: "image folder \(url.path)")
  }
}

/// `'a', 'b'`: names for messages.
func quotedList(_ names: [String]) -> String {
  names.map { "'\($0)'" }.joined(separator: ", ")
}

/// A dataset whose labels are mapped onto another class list (an image-folder split brought to
/// the training split's classes by name).
struct RelabeledDataset<Sample>: Dataset {
  /// The dataset relabelled.
  let base: any Dataset<Sample>
  /// The class list the labels index.
  let classNames: [String]
  /// Every sample's new label.
  let labels: [Int]

  /// `base` with label `l` read as `mapping[l]`, an index into `classNames`.
  init(_ base: any Dataset<Sample>, classNames: [String], mapping: [Int]) throws {
    guard mapping.count == base.classCount, mapping.allSatisfy({ classNames.indices.contains($0) })
    else {
      throw DatasetError(.mismatch, path: "", "a class mapping that does not fit the classes")
    }
    self.base = base
    self.classNames = classNames
    self.labels = base.labels.map { mapping[$0] }
  }

  /// Number of samples.
  var count: Int { base.count }
  /// The sample of `base`.
  func sample(at index: Int) throws -> Sample { try base.sample(at: index) }
}
