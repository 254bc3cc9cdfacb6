import Foundation
import GraftData

// Feature extraction with a frozen model (what `graft embed` calls): run it over image files (or
// a ready-made pixel tensor) and save the pre-logits features, plus the logits when the model
// has a head. Every input is checked before
// the model sees it (the model itself only has preconditions), and the output is written
// atomically, so a failure leaves any earlier file as it was.

/// What `graft embed` reads.
public enum EmbeddingInput: Equatable, Sendable {
  /// Image files (PNG, JPEG, Netpbm), each preprocessed with the model's eval transform.
  case images([URL])
  /// A `.safetensors` file whose `pixels` tensor [B, C, H, W] is used as it is.
  case pixels(URL)

  /// Sorts command-line inputs: one `.safetensors` file alone means pixels, anything else is
  /// a list of images. Throws for no inputs, or a `.safetensors` among other inputs.
  public init(arguments: [String]) throws {
    guard !arguments.isEmpty else {
      throw FileError(
        path: "<inputs>", message: "no inputs: give image files or one .safetensors of pixels")
    }
    let tensors = arguments.filter { $0.lowercased().hasSuffix(".safetensors") }
    if tensors.isEmpty {
      self = .images(arguments.map { URL(fileURLWithPath: $0) })
    } else if arguments.count == 1 {
      self = .pixels(URL(fileURLWithPath: arguments[0]))
    } else {
      throw FileError(
        path: tensors[0],
        message:
          "a .safetensors input holds a whole batch of pixels and must be the only input "
          + "(got \(arguments.count) inputs)")
    }
  }

  /// The input files.
  public var files: [URL] {
    switch self {
    case .images(let urls): urls
    case .pixels(let url): [url]
    }
  }
}

/// The result of embedding a batch.
public struct EmbeddingResult {
  /// Pre-logits features, [B, D] (the final norm, then the model's pooling); [B, N, D] for a
  /// model without pooling.
  public var features: Tensor
  /// Classifier outputs [B, classes], when the model has a head.
  public var logits: Tensor?
}

/// What `Embedding.run` wrote.
public struct EmbeddingSummary {
  /// The output file.
  public var output: URL
  /// Number of embedded samples.
  public var count: Int
  /// Shape of `features`.
  public var featureShape: [Int]
  /// Shape of `logits`, when written.
  public var logitsShape: [Int]?
  /// The model's name (as in the file's metadata).
  public var model: String
  /// The loader's notes about the model.
  public var notes: [String]
}

/// Feature extraction with a frozen model (the library side of `graft embed`).
public enum Embedding {
  /// Samples per forward pass unless told otherwise (bounds memory for long image lists).
  public static let defaultBatchSize = 32

  /// Loads `model` (see `ModelLoader.load`), embeds `inputs` (see `EmbeddingInput`) in batches
  /// of `batchSize`, and writes `features` (and `logits` when the model has a head) to `output`
  /// as safetensors, atomically, with metadata: `graft_version`, `model`, `model_source`,
  /// `model_format`, `architecture`, `input_kind`, `inputs` (a JSON list of the inputs as
  /// given), `global_pool`, and for images `preprocessing` (timm's keys, JSON).
  ///
  /// The output path is checked first (its folder must exist; it must not be a folder, an
  /// input or the model), so mistakes fail before any work. Throws `FileError`
  /// (for the model too) or the readers' errors, each naming the file; nothing is written then.
  /// `progress` is called after each batch with (done, total).
  @discardableResult
  public static func run(
    model reference: String, arch: String? = nil, inputs arguments: [String], output: String,
    batchSize: Int = defaultBatchSize, searchPaths: [URL]? = nil,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> EmbeddingSummary {
    let input = try EmbeddingInput(arguments: arguments)
    let outputURL = URL(fileURLWithPath: output)
    try checkOutput(outputURL, against: input.files + [URL(fileURLWithPath: reference)])
    try checkExist(input.files)
    let loaded = try ModelLoader.load(reference, arch: arch, searchPaths: searchPaths)
    let result = try embed(loaded, input, batchSize: batchSize, progress: progress)

    var tensors = ["features": result.features]
    if let logits = result.logits { tensors["logits"] = logits }
    var metadata = [
      "graft_version": GraftVersion.string,
      "model": loaded.name,
      "model_source": loaded.source.path,
      "model_format": loaded.format.rawValue,
      "architecture": loaded.architecture.name
        + (loaded.architecture.tag.map { "." + $0 } ?? ""),
      "global_pool": loaded.model.config.globalPool.rawValue,
      "inputs": jsonList(arguments),
    ]
    switch input {
    case .images:
      metadata["input_kind"] = "images"
      if let p = loaded.preprocessing {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        metadata["preprocessing"] = String(decoding: try encoder.encode(p), as: UTF8.self)
      }
    case .pixels:
      metadata["input_kind"] = "pixels"
    }
    try Safetensors.write(tensors, metadata: metadata, to: outputURL)
    return EmbeddingSummary(
      output: outputURL, count: result.features.shape[0], featureShape: result.features.shape,
      logitsShape: result.logits?.shape, model: loaded.name, notes: loaded.notes)
  }

  /// Runs `loaded.model` over `input`, `batchSize` samples at a time, without recording
  /// gradients. Pixels and preprocessed images are checked against the model (channels; the
  /// size must be `img_size`, or with `dynamic_img_size` a multiple of the patch) before it
  /// runs. Throws `FileError` (or `ImageError`/`DatasetError`/`SafetensorsError`) naming
  /// the file.
  public static func embed(
    _ loaded: LoadedModel, _ input: EmbeddingInput, batchSize: Int = defaultBatchSize,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> EmbeddingResult {
    guard batchSize >= 1 else {
      throw FileError(path: "<batch size>", message: "must be at least 1, got \(batchSize)")
    }
    var features: [Tensor] = []
    var logits: [Tensor] = []
    func run(_ pixels: Tensor) {
      let (f, l) = withNoGrad { () -> (Tensor, Tensor?) in
        let out = loaded.model.forward(pixels, hiddenStates: false)
        return (out.features, loaded.hasHead ? loaded.model.logits(out) : nil)
      }
      features.append(f)
      if let l { logits.append(l) }
    }
    switch input {
    case .pixels(let url):
      let pixels = try readPixels(url, for: loaded.model)
      let total = pixels.shape[0]
      for start in stride(from: 0, to: total, by: batchSize) {
        let n = Swift.min(batchSize, total - start)
        run(pixels.narrow(0, start: start, length: n))
        progress?(start + n, total)
      }
    case .images(let urls):
      guard let config = loaded.preprocessing else {
        throw FileError(
          path: loaded.source.path,
          message:
            "the model takes \(loaded.model.config.inChans)-channel input, not RGB images; "
            + "give a .safetensors of pixels instead")
      }
      try checkSize(
        [urls.count, 3, config.height, config.width], for: loaded.model,
        path: loaded.source.path, what: "the preprocessing's input size")
      let transform = EvalTransform(config: config)
      for start in stride(from: 0, to: urls.count, by: batchSize) {
        let chunk = urls[start..<Swift.min(start + batchSize, urls.count)]
        let images = try chunk.map { try ImageCodec.decodeAnyFormat(contentsOf: $0) }
        run(transform.batch(images))
        progress?(start + chunk.count, urls.count)
      }
    }
    return EmbeddingResult(
      features: Tensor.concat(features, axis: 0),
      logits: logits.isEmpty ? nil : Tensor.concat(logits, axis: 0))
  }

  /// The `pixels` tensor of `url`, checked against `model`.
  public static func readPixels(_ url: URL, for model: VisionTransformer) throws -> Tensor {
    let file = try SafetensorsFile(contentsOf: url)
    guard file.contains("pixels") else {
      var names = file.names.prefix(8).joined(separator: ", ")
      if file.names.isEmpty { names = "none" }
      if file.names.count > 8 { names += ", … (\(file.names.count) in all)" }
      throw FileError(
        path: url.path, message: "no 'pixels' tensor [B, 3, H, W] (tensors: \(names))")
    }
    let shape = try file.info("pixels").shape
    try checkSize(shape, for: model, path: url.path, what: "'pixels'")
    return try file.tensor("pixels")
  }

  /// Throws unless `shape` is a batch the model accepts.
  private static func checkSize(
    _ shape: [Int], for model: VisionTransformer, path: String, what: String
  ) throws {
    let c = model.config
    func fail(_ message: String) -> FileError {
      FileError(path: path, message: "\(what) has shape \(shape): \(message)")
    }
    guard shape.count == 4 else { throw fail("expected [B, \(c.inChans), H, W]") }
    guard shape[0] >= 1 else { throw fail("no samples") }
    guard shape[1] == c.inChans else {
      throw fail("the model takes \(c.inChans) channels, not \(shape[1])")
    }
    let size = Size2D(shape[2], shape[3])
    if c.dynamicImgSize {
      guard size.height >= c.patchSize.height, size.width >= c.patchSize.width,
        size.height % c.patchSize.height == 0, size.width % c.patchSize.width == 0
      else {
        throw fail("height and width must be positive multiples of the patch \(c.patchSize)")
      }
    } else if size != c.imgSize {
      throw fail("the model takes \(c.imgSize) inputs (its img_size; not dynamic), not \(size)")
    }
  }

  /// Throws unless `output` can be written without clobbering an input or the model.
  private static func checkOutput(_ output: URL, against inputs: [URL]) throws {
    let fm = FileManager.default
    let path = output.path
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
      throw FileError(path: path, message: "the output is a folder; give a file name")
    }
    let folder = output.deletingLastPathComponent()
    guard fm.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue
    else {
      throw FileError(
        path: path, message: "the output's folder \(folder.path) does not exist")
    }
    let target = output.resolvingSymlinksInPath().standardizedFileURL.path
    for input in inputs where input.resolvingSymlinksInPath().standardizedFileURL.path == target {
      throw FileError(
        path: path, message: "the output would overwrite an input; choose another file name")
    }
  }

  /// Throws for the first input that does not exist, before any work is done.
  private static func checkExist(_ files: [URL]) throws {
    let fm = FileManager.default
    for url in files {
      var isDirectory: ObjCBool = false
      guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
        throw FileError(path: url.path, message: "no such file")
      }
      if isDirectory.boolValue {
        throw FileError(path: url.path, message: "is a folder, not an image file")
      }
    }
  }

  /// `values` as a JSON array of strings.
  private static func jsonList(_ values: [String]) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    let data = (try? encoder.encode(values)) ?? Data("[]".utf8)
    return String(decoding: data, as: UTF8.self)
  }
}
