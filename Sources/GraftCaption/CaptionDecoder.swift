import Foundation

/// A language model folder as a captioner uses it: the GPT-2-layout decoder, its tokenizer,
/// and the hashes a run folder binds to.
public struct CaptionDecoder {
  /// The decoder.
  public var model: GPT2
  /// Its tokenizer.
  public var tokenizer: BPETokenizer
  /// How to load it again: the folder's absolute path.
  public var reference: String
  /// `fnv1a64:…` of `model.safetensors`.
  public var weightsHash: String
  /// `fnv1a64:…` of `config.json` and the tokenizer files: what besides the weights decides the
  /// decoder's output.
  public var configHash: String

  /// Wraps the parts.
  public init(
    model: GPT2, tokenizer: BPETokenizer, reference: String, weightsHash: String,
    configHash: String
  ) {
    self.model = model
    self.tokenizer = tokenizer
    self.reference = reference
    self.weightsHash = weightsHash
    self.configHash = configHash
  }

  /// The files besides the weights whose bytes enter `configHash`, those present.
  static let configFiles = ["config.json", "tokenizer.json", "vocab.json", "merges.txt"]

  /// The decoder Graft bundles (`Models/gpt2-wordnet`, pretrained by `graft pretrain
  /// --modality text`), the default of `graft bench captions` and `graft demo video`.
  public static let bundledName = "gpt2-wordnet"

  /// The folder `reference` names: an existing folder, or a bare name (no `/`) looked up as
  /// a bundled model (each folder of `GRAFT_MODELS`, then the repository's `Models/`). Throws
  /// `CaptionError.missingDecoder` listing the places looked in.
  public static func resolve(
    _ reference: String, searchPaths: [URL] = ModelLoader.bundledModelDirectories()
  ) throws -> URL {
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: reference, isDirectory: &isFolder) {
      return URL(fileURLWithPath: reference)
    }
    if !reference.contains("/") && !reference.hasPrefix(".") && !reference.hasPrefix("~") {
      for directory in searchPaths {
        let candidate = directory.appendingPathComponent(reference)
        if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isFolder),
          isFolder.boolValue
        {
          return candidate
        }
      }
      let places =
        searchPaths.isEmpty
        ? "there is no model folder to look in (\(ModelLoader.searchPathVariable) is unset and "
          + "the executable is not inside a Graft checkout with Models/)"
        : "looked in "
          + searchPaths.map { $0.appendingPathComponent(reference).path }.joined(separator: ", ")
      throw CaptionError(
        .missingDecoder,
        "\(reference): no such language model folder nor bundled decoder; \(places) (set "
          + "\(ModelLoader.searchPathVariable), or give --decoder a folder)")
    }
    throw CaptionError(
      .missingDecoder, "\(URL(fileURLWithPath: reference).path): no such language model folder")
  }

  /// Loads a Hugging Face model folder (`config.json`, `model.safetensors`, `tokenizer.json` or
  /// `vocab.json` + `merges.txt`). Throws `CaptionError.missingDecoder` for a folder that does
  /// not exist or has no weights, and the decoder's or tokenizer's own errors for bad files.
  public static func load(folder: URL) throws -> CaptionDecoder {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder),
      isFolder.boolValue
    else {
      throw CaptionError(
        .missingDecoder,
        "\(folder.path): no such language model folder (config.json, "
          + "model.safetensors and a tokenizer)")
    }
    let weights = folder.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weights.path) else {
      throw CaptionError(.missingDecoder, "\(folder.path): no model.safetensors")
    }
    let model = try GPT2.load(folder: folder)
    let tokenizer = try BPETokenizer.load(folder: folder)
    var hash = FNV1a64()
    for name in configFiles {
      let url = folder.appendingPathComponent(name)
      guard let data = FileManager.default.contents(atPath: url.path) else { continue }
      Data((name + "\n").utf8).withUnsafeBytes { hash.update($0) }
      data.withUnsafeBytes { hash.update($0) }
    }
    return CaptionDecoder(
      model: model, tokenizer: tokenizer, reference: folder.standardizedFileURL.path,
      weightsHash: try FNV1a64.file(weights), configHash: hash.tagged)
  }
}
