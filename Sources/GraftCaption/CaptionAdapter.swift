import Foundation

/// `adapter_config.json` of a captioning run: the options and what the adapter is bound to,
/// by hash: the image backbone (as every method's run folder) and the decoder.
public struct CaptionAdapterConfig: Codable, Equatable, Sendable {
  /// `pllava`.
  public var method: String
  /// Version of this folder's layout.
  public var formatVersion: Int
  /// Graft's version at training time.
  public var graftVersion: String
  /// How to load the image backbone: an absolute folder path or a bundled name.
  public var baseModel: String
  /// The backbone's architecture.
  public var baseModelArchitecture: String
  /// `fnv1a64:…` of the backbone's weights.
  public var baseModelHash: String
  /// `fnv1a64:…` of the backbone's architecture and preprocessing.
  public var baseModelConfigHash: String
  /// The decoder's folder (absolute).
  public var decoder: String
  /// `fnv1a64:…` of the decoder's `model.safetensors`.
  public var decoderHash: String
  /// `fnv1a64:…` of the decoder's `config.json` and tokenizer files.
  public var decoderConfigHash: String
  /// The options (`method.*`), defaults filled in.
  public var hyperparameters: [String: String]
  /// The frames' preprocessing.
  public var preprocessing: ImagePreprocessConfig
  /// How the run was trained (epochs, batch size, learning rate, …), for the record.
  public var training: [String: String]

  /// The current layout version.
  public static let currentFormat = 1

  enum CodingKeys: String, CodingKey {
    case method
    case formatVersion = "format_version"
    case graftVersion = "graft_version"
    case baseModel = "base_model_name_or_path"
    case baseModelArchitecture = "base_model_architecture"
    case baseModelHash = "base_model_hash"
    case baseModelConfigHash = "base_model_config_hash"
    case decoder = "decoder_name_or_path"
    case decoderHash = "decoder_hash"
    case decoderConfigHash = "decoder_config_hash"
    case hyperparameters, preprocessing, training
  }
}

/// A captioner rebuilt from a run folder.
public struct LoadedCaptioner {
  /// The captioner with its trained tensors, in evaluation mode.
  public var captioner: PLLaVACaptioner
  /// The folder's configuration.
  public var config: CaptionAdapterConfig
}

/// Captioning run folders, laid out as every method's (`AdapterCheckpoint`):
/// `adapter_config.json` and `adapter_model.safetensors` holding only the trained tensors.
public enum CaptionAdapter {
  /// Writes `captioner`'s trained tensors, then the configuration, each atomically (the
  /// configuration last, so a folder with one has its tensors).
  public static func save(
    _ captioner: PLLaVACaptioner, backbone: TuneBackbone, decoder: CaptionDecoder,
    training: [String: String] = [:], to folder: URL
  ) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    guard let preprocessing = backbone.preprocessing else {
      throw CaptionError(.unsupportedBackbone, "\(backbone.reference) does not take images")
    }
    try Safetensors.write(
      captioner.adapterState(), metadata: ["format": "pt", "method": "pllava"],
      to: folder.appendingPathComponent(AdapterCheckpoint.weightsFile))
    let config = CaptionAdapterConfig(
      method: "pllava", formatVersion: CaptionAdapterConfig.currentFormat,
      graftVersion: GraftVersion.string, baseModel: backbone.reference,
      baseModelArchitecture: backbone.architecture, baseModelHash: backbone.weightsHash,
      baseModelConfigHash: backbone.configHash, decoder: decoder.reference,
      decoderHash: decoder.weightsHash, decoderConfigHash: decoder.configHash,
      hyperparameters: captioner.config.resolved, preprocessing: preprocessing,
      training: training)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try AtomicFile.write(
      encoder.encode(config) + Data("\n".utf8),
      to: folder.appendingPathComponent(AdapterCheckpoint.configFile))
  }

  /// Reads a captioning run's `adapter_config.json`. Throws `CaptionError.badAdapter` for a
  /// missing or unreadable file, or one of another method.
  public static func readConfig(_ folder: URL) throws -> CaptionAdapterConfig {
    let url = folder.appendingPathComponent(AdapterCheckpoint.configFile)
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw CaptionError(
        .badAdapter, "\(folder.path): no \(AdapterCheckpoint.configFile) (not a run folder)")
    }
    let config: CaptionAdapterConfig
    do {
      config = try JSONDecoder().decode(CaptionAdapterConfig.self, from: data)
    } catch {
      throw CaptionError(.badAdapter, "\(url.path): not a captioning run's configuration: \(error)")
    }
    guard config.method == "pllava" else {
      throw CaptionError(.badAdapter, "\(url.path): method '\(config.method)' is not pllava")
    }
    guard config.formatVersion <= CaptionAdapterConfig.currentFormat else {
      throw CaptionError(
        .badAdapter,
        "\(url.path): format_version \(config.formatVersion) is newer than this "
          + "graft reads")
    }
    return config
  }

  /// Loads the run in `folder` on `backbone` and `decoder` (by default loaded from the recorded
  /// references). Throws `CaptionError.backboneMismatch` or `.decoderMismatch` when their hashes
  /// differ from the recorded ones, `.badAdapter` for tensors that do not fit.
  public static func load(
    _ folder: URL, backbone given: TuneBackbone? = nil, decoder givenDecoder: CaptionDecoder? = nil
  ) throws -> LoadedCaptioner {
    let config = try readConfig(folder)
    let backbone = try given ?? TuneBackbone.load(config.baseModel)
    guard backbone.weightsHash == config.baseModelHash,
      backbone.configHash == config.baseModelConfigHash
    else {
      throw CaptionError(
        .backboneMismatch,
        "\(folder.path): the adapter was trained on image backbone '\(config.baseModel)' "
          + "(\(config.baseModelHash), \(config.baseModelConfigHash)), but '\(backbone.reference)' "
          + "has \(backbone.weightsHash), \(backbone.configHash); refusing a different backbone")
    }
    let decoder =
      try givenDecoder ?? CaptionDecoder.load(folder: URL(fileURLWithPath: config.decoder))
    guard decoder.weightsHash == config.decoderHash,
      decoder.configHash == config.decoderConfigHash
    else {
      throw CaptionError(
        .decoderMismatch,
        "\(folder.path): the adapter was trained on decoder '\(config.decoder)' "
          + "(\(config.decoderHash), \(config.decoderConfigHash)), but '\(decoder.reference)' "
          + "has \(decoder.weightsHash), \(decoder.configHash); refusing a different decoder")
    }
    let options = try PLLaVAConfig.parse(config.hyperparameters)
    var generator = RandomGenerator(seed: 0)
    let captioner = try PLLaVACaptioner(
      config: options, backbone: backbone, decoder: decoder, generator: &generator)
    let url = folder.appendingPathComponent(AdapterCheckpoint.weightsFile)
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw CaptionError(.badAdapter, "\(folder.path): no \(AdapterCheckpoint.weightsFile)")
    }
    try captioner.loadAdapterState(try SafetensorsFile(contentsOf: url).tensors(), source: url.path)
    captioner.eval()
    return LoadedCaptioner(captioner: captioner, config: config)
  }
}
