import Foundation

/// Decodes one image file; the default will be `ImageCodec.decode(contentsOf:)` (PNG, JPEG).
/// Injected so that datasets do not depend on a particular codec, and tests can use a tiny one.
public typealias ImageDecoder = @Sendable (URL) throws -> RGBImage

/// A labelled classification dataset with random access, whatever its samples are: images
/// (`RGBImage`) today, point clouds and clips later; a loader's transform turns a sample into the
/// model's input tensor.
///
/// An item is a sample and a class index in `0..<classNames.count`. Labels are known without
/// decoding any sample, so samplers and loaders can read them for free. Datasets are immutable
/// values that worker threads may read concurrently.
public protocol Dataset<Sample>: Sendable {
  /// What one item is (an `RGBImage` for image datasets).
  associatedtype Sample
  /// Number of samples.
  var count: Int { get }
  /// Class names; a label is an index into this list.
  var classNames: [String] { get }
  /// The label of every sample, in index order.
  var labels: [Int] { get }
  /// The label of sample `index` (`0..<count`).
  func label(at index: Int) -> Int
  /// Decodes sample `index` (`0..<count`); errors name the file concerned.
  func sample(at index: Int) throws -> Sample
}

extension Dataset {
  /// The label of sample `index`, from `labels`.
  public func label(at index: Int) -> Int { labels[index] }

  /// Number of classes.
  public var classCount: Int { classNames.count }

  /// Sample `index` with its label.
  public func item(at index: Int) throws -> (sample: Sample, label: Int) {
    (try sample(at: index), label(at: index))
  }

  /// How many samples each class has, indexed by label.
  public var classCounts: [Int] {
    var counts = [Int](repeating: 0, count: classCount)
    for l in labels where l >= 0 && l < counts.count { counts[l] += 1 }
    return counts
  }
}

/// An image classification dataset: grey sources (IDX, pixel CSV) give RGB images whose three
/// channels are equal copies of the grey value.
extension Dataset where Sample == RGBImage {
  /// Decodes image `index`.
  public func image(at index: Int) throws -> RGBImage { try sample(at: index) }
}

/// Bounds on what a dataset file may ask for, checked before anything is allocated.
public enum DatasetLimits {
  /// The most classes a task may have: 131,072, six times ImageNet-21k's 21,843. A label is an
  /// index into the class list and the head gets one row per class, so a stray large label
  /// (2147483647 in a list file) would otherwise build a head of that many rows.
  public static let maxClasses = 131_072
}

/// Class names `"0"`, `"1"`, … for the labels `0...maxLabel` of formats that carry no names.
func numericClassNames(_ labels: [Int]) -> [String] {
  (0..<((labels.max() ?? -1) + 1)).map(String.init)
}

// MARK: - In memory

/// Images and labels already in memory (built in code, for instance a derived task).
public struct InMemoryDataset: Dataset {
  /// The images, one per sample.
  public let images: [RGBImage]
  /// The label of every sample.
  public let labels: [Int]
  /// Class names; defaults to `"0"`, `"1"`, … up to the largest label.
  public let classNames: [String]

  /// Pairs `images[i]` with `labels[i]`; every label must lie in `0..<classNames.count`.
  public init(images: [RGBImage], labels: [Int], classNames: [String]? = nil) throws {
    guard images.count == labels.count else {
      throw DatasetError(
        .mismatch, path: "", "\(images.count) images but \(labels.count) labels")
    }
    if classNames == nil, let big = labels.first(where: { $0 >= DatasetLimits.maxClasses }) {
      throw DatasetError(
        .invalidArgument, path: "", "label \(big) is beyond \(DatasetLimits.maxClasses) classes")
    }
    let names = classNames ?? numericClassNames(labels)
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= names.count }) {
      throw DatasetError(
        .invalidArgument, path: "",
        "label \(labels[bad]) of sample \(bad) is outside 0..<\(names.count)")
    }
    self.images = images
    self.labels = labels
    self.classNames = names
  }

  /// Number of samples.
  public var count: Int { images.count }

  /// Image `index`, as stored.
  public func sample(at index: Int) throws -> RGBImage { images[index] }
}

// MARK: - Files decoded on demand

/// Decodes `url` with `decoder`, reporting any failure as a `DatasetError` naming the file.
func decodeImage(_ url: URL, _ decoder: ImageDecoder) throws -> RGBImage {
  do {
    return try decoder(url)
  } catch let error as DatasetError {
    throw error
  } catch {
    let kind: DatasetError.Kind =
      FileManager.default.fileExists(atPath: url.path) ? .decodeFailed : .notFound
    throw DatasetError(kind, path: url.path, "cannot decode image: \(error)")
  }
}

/// torchvision's `ImageFolder` layout: `root/<class>/<…>/<file>`, one folder per class.
///
/// Classes are the sorted names of the folders directly under `root`; a class's samples are the
/// files with an image extension anywhere below its folder, in the order torchvision lists them
/// (folders by path, then file names, both by Unicode code points), so labels and indices match
/// a PyTorch run on the same folder. Unlike torchvision, names starting with `.` (`.DS_Store`,
/// `.ipynb_checkpoints`) are skipped. Images are decoded on each `image(at:)` call.
public struct ImageFolderDataset: Dataset {
  /// torchvision's `IMG_EXTENSIONS`, compared without case.
  public static let defaultExtensions: Set<String> = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
  ]

  /// The folder holding one folder per class.
  public let root: URL
  /// Sorted class folder names.
  public let classNames: [String]
  /// The image file of every sample.
  public let files: [URL]
  /// The label of every sample (its class folder's index).
  public let labels: [Int]
  private let decoder: ImageDecoder

  /// Lists `root`; throws when it is missing, has no class folder, or a class folder holds no
  /// file with one of `extensions` (lower case, without the dot).
  public init(
    root: URL, extensions: Set<String> = defaultExtensions, decoder: @escaping ImageDecoder
  ) throws {
    let rootPath = root.path
    guard FileManager.default.fileExists(atPath: rootPath) else {
      throw DatasetError(.notFound, path: rootPath, "image folder does not exist")
    }
    guard DatasetFile.isDirectory(rootPath) else {
      throw DatasetError(.invalidArgument, path: rootPath, "is a file, expected a folder")
    }
    let classes = try Self.listing(rootPath).filter {
      DatasetFile.isDirectory(rootPath + "/" + $0)
    }
    guard !classes.isEmpty else {
      throw DatasetError(.empty, path: rootPath, "no class folders (expected root/<class>/<image>)")
    }
    var files: [URL] = []
    var labels: [Int] = []
    for (label, name) in classes.enumerated() {
      let classPath = rootPath + "/" + name
      var found: [(folder: String, file: String)] = []
      var visited: Set<[UInt8]> = []
      try Self.collect(classPath, extensions, &found, &visited)
      guard !found.isEmpty else {
        let list = extensions.sorted().joined(separator: ", ")
        throw DatasetError(.empty, path: classPath, "class folder has no image file (\(list))")
      }
      found.sort {
        $0.folder == $1.folder
          ? codePointPrecedes($0.file, $1.file) : codePointPrecedes($0.folder, $1.folder)
      }
      for f in found {
        files.append(URL(fileURLWithPath: f.folder + "/" + f.file))
        labels.append(label)
      }
    }
    self.root = root
    self.classNames = classes
    self.files = files
    self.labels = labels
    self.decoder = decoder
  }

  /// Number of samples.
  public var count: Int { files.count }

  /// Decodes sample `index`'s file.
  public func sample(at index: Int) throws -> RGBImage { try decodeImage(files[index], decoder) }

  /// Visible entries of a folder, sorted by code points.
  private static func listing(_ path: String) throws -> [String] {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      throw DatasetError(.io, path: path, "cannot list folder: \(error.localizedDescription)")
    }
    return names.filter { !$0.hasPrefix(".") }.sorted(by: codePointPrecedes)
  }

  /// Adds the image files below `folder`, following links but never a folder twice. Folders
  /// are compared by the bytes of their resolved path: as Swift strings, paths are equal under
  /// Unicode canonical equivalence, so two sibling folders named `é` in NFC and in NFD counted
  /// as one and the second one's images were silently dropped (device and inode numbers would
  /// do too, but some network and overlay file systems do not keep them unique).
  private static func collect(
    _ folder: String, _ extensions: Set<String>,
    _ found: inout [(folder: String, file: String)], _ visited: inout Set<[UInt8]>
  ) throws {
    let real = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
    guard visited.insert(Array(real.utf8)).inserted else { return }
    for name in try listing(folder) {
      let path = folder + "/" + name
      if DatasetFile.isDirectory(path) {
        try collect(path, extensions, &found, &visited)
      } else if let dot = name.lastIndex(of: "."),
        extensions.contains(name[name.index(after: dot)...].lowercased())
      {
        found.append((folder, name))
      }
    }
  }
}

/// The list files of a VTAB-1k task folder, as the VPT, NOAH and other PETL repositories lay it
/// out.
public enum VTABSplit: String, Sendable, CaseIterable {
  /// `train800.txt`: the 800 training images used while tuning hyperparameters.
  case train800
  /// `val200.txt`: the 200 validation images used while tuning hyperparameters.
  case val200
  /// `train800val200.txt`: all 1,000 training images, for the final run.
  case train800val200
  /// `test.txt`: the test set.
  case test

  /// The list file's name.
  public var fileName: String { rawValue + ".txt" }
}

/// A list file of `relative/path label` lines, as in the PETL repositories' VTAB-1k folders
/// (`<task>/train800.txt`, `val200.txt`, `train800val200.txt`, `test.txt`).
///
/// Each line is an image path relative to `root` (an absolute path is used as is), whitespace,
/// and a non-negative integer label. Those repositories split lines on single spaces, so their
/// paths never contain spaces; here the label is the last field and the path everything before
/// it, which reads the same files and also paths with spaces. Blank lines are skipped; `\r\n`
/// line ends are accepted. The file has no class names: they are `"0"`, `"1"`, … up to
/// `classCount` (by default the largest label plus one; pass the task's class count so that
/// every split agrees even when a small split misses the last classes).
public struct VTABListDataset: Dataset {
  /// The folder paths are relative to.
  public let root: URL
  /// The list file read.
  public let listFile: URL
  /// `"0"`, `"1"`, … (the list files carry no names).
  public let classNames: [String]
  /// The image file of every sample.
  public let files: [URL]
  /// The label of every sample.
  public let labels: [Int]
  private let decoder: ImageDecoder

  /// Reads `<root>/<split>.txt`.
  public init(
    root: URL, split: VTABSplit, classCount: Int? = nil, decoder: @escaping ImageDecoder
  ) throws {
    try self.init(
      listFile: root.appendingPathComponent(split.fileName), root: root,
      classCount: classCount, decoder: decoder)
  }

  /// Reads any list file in the same format, with paths relative to `root`.
  public init(
    listFile: URL, root: URL, classCount: Int? = nil, decoder: @escaping ImageDecoder
  ) throws {
    let listPath = listFile.path
    let bytes = try DatasetFile.readBytes(listFile)
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw DatasetError(.invalidFormat, path: listPath, "list file is not UTF-8 text")
    }
    var files: [URL] = []
    var labels: [Int] = []
    var lineNumber = 0
    // `\.isNewline`, not "\n": Swift reads "\r\n" as one Character, so a list written on
    // Windows would otherwise be a single line.
    for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
      lineNumber += 1
      let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      guard let gap = line.lastIndex(where: { $0 == " " || $0 == "\t" }) else {
        throw DatasetError(
          .invalidFormat, path: listPath, line: lineNumber,
          "expected 'relative/path label', found '\(line)'")
      }
      let path = line[..<gap].trimmingCharacters(in: .whitespaces)
      let field = line[line.index(after: gap)...]
      guard let label = Int(field), label >= 0 else {
        throw DatasetError(
          .invalidFormat, path: listPath, line: lineNumber,
          "label '\(field)' is not a non-negative integer")
      }
      if let classCount, label >= classCount {
        throw DatasetError(
          .invalidFormat, path: listPath, line: lineNumber,
          "label \(label) is outside 0..<\(classCount)")
      }
      guard label < DatasetLimits.maxClasses else {
        throw DatasetError(
          .invalidFormat, path: listPath, line: lineNumber,
          "label \(label) is beyond Graft's \(DatasetLimits.maxClasses) classes (labels are "
            + "class indices 0, 1, …)")
      }
      files.append(
        path.hasPrefix("/")
          ? URL(fileURLWithPath: path) : root.appendingPathComponent(path))
      labels.append(label)
    }
    guard !files.isEmpty else {
      throw DatasetError(.empty, path: listPath, "list file has no 'path label' line")
    }
    self.root = root
    self.listFile = listFile
    self.files = files
    self.labels = labels
    self.classNames = (0..<(classCount ?? (labels.max()! + 1))).map(String.init)
    self.decoder = decoder
  }

  /// Number of samples.
  public var count: Int { files.count }

  /// Decodes sample `index`'s file.
  public func sample(at index: Int) throws -> RGBImage { try decodeImage(files[index], decoder) }
}
