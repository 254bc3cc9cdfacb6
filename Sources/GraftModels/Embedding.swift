import Foundation
import GraftData
import GraftPoints

// Feature extraction with a frozen model (what `graft embed` calls): run it over image files (or
// a ready-made pixel tensor), or over point-cloud and mesh files (or a ready-made point tensor)
// for a point model, and save the pre-logits features, plus the logits when the model has a
// head. Every input is checked before the model sees it (the model itself only has
// preconditions), and the output is written atomically, so a failure leaves any earlier file as
// it was.

/// What `graft embed` reads, for an image model (a point model reads the same arguments as
/// `PointEmbeddingInput`).
public enum EmbeddingInput: Equatable, Sendable {
  /// Image files (PNG, JPEG, Netpbm), each preprocessed with the model's eval transform.
  case images([URL])
  /// A `.safetensors` file whose `pixels` tensor [B, C, H, W] is used as it is.
  case pixels(URL)

  /// Sorts command-line inputs: one `.safetensors` file alone means a tensor (pixels, or points
  /// for a point model), anything else is a list of files. Throws for no inputs, or a
  /// `.safetensors` among other inputs.
  public init(arguments: [String]) throws {
    guard !arguments.isEmpty else {
      throw FileError(
        path: "<inputs>",
        message:
          "no inputs: give image (or point-cloud) files or one .safetensors of pixels (or points)"
      )
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
          "a .safetensors input holds a whole batch of pixels or points and must be the only "
          + "input (got \(arguments.count) inputs)")
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

/// What `graft embed` reads for a point model.
public enum PointEmbeddingInput: Equatable, Sendable {
  /// Point-cloud or mesh files in any format GraftPoints reads (every cloud of an HDF5 set),
  /// each normalised to the unit sphere and sampled to the model's `npoints` by FPS.
  case clouds([URL])
  /// A `.safetensors` file whose `points` tensor [B, N, 3] is used as it is.
  case points(URL)

  /// The same arguments read for a point model: files are clouds, a tensor file holds points.
  public init(_ input: EmbeddingInput) {
    switch input {
    case .images(let urls): self = .clouds(urls)
    case .pixels(let url): self = .points(url)
    }
  }
}

/// The result of embedding a batch.
public struct EmbeddingResult {
  /// Pre-logits features, [B, D] (the final norm, then the model's pooling); [B, N, D] for a
  /// model without pooling; [B, 2·D] for Point-MAE.
  public var features: Tensor
  /// Classifier outputs [B, classes], when the model has a head.
  public var logits: Tensor?
  /// A point model's group centres [B, G, 3]; nil for an image model.
  public var centres: Tensor? = nil
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
  /// Shape of `centres`, when written (point models).
  public var centresShape: [Int]? = nil
  /// The model's name (as in the file's metadata).
  public var model: String
  /// The loader's notes about the model.
  public var notes: [String]
}

/// Feature extraction with a frozen model (the library side of `graft embed`).
public enum Embedding {
  /// Samples per forward pass unless told otherwise (bounds memory for long image lists).
  public static let defaultBatchSize = 32

  /// Loads `model` (see `ModelLoader.loadBackbone`), embeds `inputs` (see `EmbeddingInput`;
  /// for a point model `PointEmbeddingInput`) in batches of `batchSize`, and writes `features`
  /// (and `logits` when the model has a head; and `centres` [B, G, 3] for a point model) to
  /// `output` as safetensors, atomically, with metadata: `graft_version`, `model`,
  /// `model_source`, `model_format`, `architecture`, `input_kind` (`images`, `pixels`,
  /// `clouds` or `points`), `inputs` (a JSON list of the inputs as given), for images
  /// `global_pool` and `preprocessing` (timm's keys, JSON), for clouds `preprocessing` (JSON:
  /// mesh samples, normalisation, FPS to `npoints`), for point models `npoints`, `num_group`
  /// and `group_size`.
  ///
  /// The output path is checked first (its folder must exist; it must not be a folder, an
  /// input or the model), so mistakes fail before any work. Throws `FileError`
  /// (for the model too) or the readers' errors, each naming the file; nothing is written then.
  /// `progress` is called after each batch with (done, total).
  @discardableResult
  public static func run(
    model reference: String, arch: String? = nil, inputs arguments: [String], output: String,
    batchSize: Int = defaultBatchSize, precision: BackbonePrecision = .fp32,
    searchPaths: [URL]? = nil, progress: ((Int, Int) -> Void)? = nil
  ) throws -> EmbeddingSummary {
    let input = try EmbeddingInput(arguments: arguments)
    let outputURL = URL(fileURLWithPath: output)
    try checkOutput(outputURL, against: input.files + [URL(fileURLWithPath: reference)])
    try checkExist(input.files)
    let backbone = try ModelLoader.loadBackbone(reference, arch: arch, searchPaths: searchPaths)
    var notes = backbone.notes
    // Nothing trains here: every matrix is frozen.
    let model: Module =
      switch backbone {
      case .vit(let loaded): loaded.model
      case .pointMAE(let loaded): loaded.model
      }
    model.freeze()
    let (ranIn, precisionNote) = applyPrecision(precision, to: model)
    if let precisionNote { notes.append("--precision \(precisionNote)") }
    var metadata = [
      "graft_version": GraftVersion.string,
      "model": backbone.name,
      "model_source": backbone.source.path,
      "model_format": backbone.format.rawValue,
      "architecture": backbone.architectureName,
      "inputs": jsonList(arguments),
      "precision": ranIn.rawValue,
    ]
    let result: EmbeddingResult
    switch backbone {
    case .vit(let loaded):
      result = try embed(loaded, input, batchSize: batchSize, progress: progress)
      metadata["global_pool"] = loaded.model.config.globalPool.rawValue
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
    case .pointMAE(let loaded):
      let points = PointEmbeddingInput(input)
      result = try embed(loaded, points, batchSize: batchSize, progress: progress)
      let c = loaded.model.config
      metadata["npoints"] = String(c.npoints)
      metadata["num_group"] = String(c.numGroup)
      metadata["group_size"] = String(c.groupSize)
      switch points {
      case .clouds:
        metadata["input_kind"] = "clouds"
        metadata["preprocessing"] =
          "{\"mesh_samples\":\(meshSamples(for: c)),\"normalize\":\"unit_sphere\","
          + "\"sample\":\"fps\",\"npoints\":\(c.npoints)}"
      case .points:
        metadata["input_kind"] = "points"
      }
    }

    var tensors = ["features": result.features]
    if let logits = result.logits { tensors["logits"] = logits }
    if let centres = result.centres { tensors["centres"] = centres }
    try Safetensors.write(tensors, metadata: metadata, to: outputURL)
    return EmbeddingSummary(
      output: outputURL, count: result.features.shape[0], featureShape: result.features.shape,
      logitsShape: result.logits?.shape, centresShape: result.centres?.shape,
      model: backbone.name, notes: notes)
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
        throw FileError(path: url.path, message: "is a folder, not an input file")
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

// MARK: - Point models

extension Embedding {
  /// Points a mesh is sampled to before FPS: ModelNet40's resampled 10,000, or `npoints` if more.
  public static func meshSamples(for config: PointMAEConfig) -> Int {
    Swift.max(10_000, config.npoints)
  }

  /// Runs `loaded.model` over `input`, `batchSize` clouds at a time, without recording
  /// gradients; the result has `centres` [B, G, 3].
  ///
  /// Cloud and mesh files are read with GraftPoints (a mesh is sampled over its surface to
  /// `meshSamples(for:)` points, seed 0; NaN points are dropped; an HDF5 set gives every cloud
  /// it holds), normalised to the unit sphere (`pc_normalize`) and sampled to the model's
  /// `npoints` by FPS with pointnet2_ops' convention (start at point 0, skip points within 1e-3
  /// of the origin: the official `misc.fps` of the evaluation loop). A `points` tensor is used
  /// as it is. Throws `FileError` naming the file for a cloud with fewer than `npoints` points,
  /// a `points` tensor of the wrong shape or with non-finite values, and the readers' errors.
  public static func embed(
    _ loaded: LoadedPointModel, _ input: PointEmbeddingInput, batchSize: Int = defaultBatchSize,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> EmbeddingResult {
    guard batchSize >= 1 else {
      throw FileError(path: "<batch size>", message: "must be at least 1, got \(batchSize)")
    }
    let model = loaded.model
    var features: [Tensor] = []
    var logits: [Tensor] = []
    var centres: [Tensor] = []
    func run(_ points: Tensor) {
      withNoGrad {
        let out = model.forward(points, hiddenStates: false)
        features.append(out.features)
        if loaded.hasHead { logits.append(model.logits(out)) }
        if case .points(let c) = out.layout { centres.append(c) }
      }
    }
    switch input {
    case .points(let url):
      let points = try readPoints(url, for: model)
      let total = points.shape[0]
      for start in stride(from: 0, to: total, by: batchSize) {
        let n = Swift.min(batchSize, total - start)
        run(points.narrow(0, start: start, length: n))
        progress?(start + n, total)
      }
    case .clouds(let urls):
      // Read file by file (an HDF5 set holds many clouds) and run whenever a batch is full.
      var pending: [Tensor] = []
      var done = 0
      var total = urls.count
      for url in urls {
        let clouds = try preparedClouds(url, for: model.config)
        total += clouds.count - 1
        pending += clouds
        while pending.count >= batchSize {
          run(Tensor.stack(Array(pending.prefix(batchSize)), axis: 0))
          pending.removeFirst(batchSize)
          done += batchSize
          progress?(done, total)
        }
      }
      if !pending.isEmpty {
        run(Tensor.stack(pending, axis: 0))
        done += pending.count
        progress?(done, total)
      }
    }
    return EmbeddingResult(
      features: Tensor.concat(features, axis: 0),
      logits: logits.isEmpty ? nil : Tensor.concat(logits, axis: 0),
      centres: Tensor.concat(centres, axis: 0))
  }

  /// The clouds of the file at `url` as the model's input rows, each [npoints, 3]: read,
  /// dense, normalised to the unit sphere, FPS-sampled (see `embed(_:_:batchSize:progress:)`).
  public static func preparedClouds(_ url: URL, for config: PointMAEConfig) throws -> [Tensor] {
    var clouds: [PointCloud] = []
    if PointFileKind.forExtension(of: url) == .h5 {
      let set = try PointCloudSet.read(contentsOf: url)
      clouds = (0..<set.clouds).map { set.cloud($0) }
    } else {
      clouds = [try PointFile.readCloud(url, points: meshSamples(for: config), seed: 0)]
    }
    guard !clouds.isEmpty else { throw FileError(path: url.path, message: "holds no clouds") }
    return try clouds.enumerated().map { index, cloud in
      let dense = cloud.dense().cloud
      let name = clouds.count > 1 ? "\(url.path) (cloud \(index))" : url.path
      guard dense.count >= config.npoints else {
        let dropped = cloud.count - dense.count
        throw FileError(
          path: name,
          message:
            "\(dense.count) points\(dropped > 0 ? " (after dropping \(dropped) NaN points)" : "")"
            + "; the model samples \(config.npoints) (its npoints) by FPS, so it needs at least "
            + "that many")
      }
      let points = Tensor(dense.positions, shape: [dense.count, 3]).normalizedToUnitSphere()
      let picks = PointOps.farthestPointSample(
        points, count: config.npoints, skipNearOrigin: true)
      return PointOps.gather(points.unsqueezed(0), picks.reshaped([1, config.npoints]))
        .squeezed(0)
    }
  }

  /// The `points` tensor [B, N, 3] of `url`, checked against `model` (N at least the groups and
  /// the group size; every value finite).
  public static func readPoints(_ url: URL, for model: PointMAE) throws -> Tensor {
    let file = try SafetensorsFile(contentsOf: url)
    guard file.contains("points") else {
      var names = file.names.prefix(8).joined(separator: ", ")
      if file.names.isEmpty { names = "none" }
      if file.names.count > 8 { names += ", … (\(file.names.count) in all)" }
      throw FileError(
        path: url.path, message: "no 'points' tensor [B, N, 3] (tensors: \(names))")
    }
    let shape = try file.info("points").shape
    let c = model.config
    func fail(_ message: String) -> FileError {
      FileError(path: url.path, message: "'points' has shape \(shape): \(message)")
    }
    guard shape.count == 3, shape[2] == 3 else { throw fail("expected [B, N, 3]") }
    guard shape[0] >= 1 else { throw fail("no clouds") }
    let least = Swift.max(c.numGroup, c.groupSize)
    guard shape[1] >= least else {
      throw fail(
        "the model takes clouds of at least \(least) points (\(c.numGroup) groups of "
          + "\(c.groupSize); it was trained on \(c.npoints))")
    }
    let points = try file.tensor("points")
    guard points.scalars.allSatisfy(\.isFinite) else {
      throw FileError(path: url.path, message: "'points' holds NaN or infinite values")
    }
    return points
  }
}
