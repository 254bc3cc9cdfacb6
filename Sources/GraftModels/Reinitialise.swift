import Foundation
import GraftTensor

extension ModelLoader {
  /// Writes to `out` a model folder of the same architecture as the model `reference` names
  /// (a folder or a bundled name), its weights freshly initialised as training from scratch
  /// starts (seeded by `seed`): the "random weights" baseline of an ablation, loadable wherever
  /// the original is.
  ///
  /// A timm folder keeps its `config.json` as it is (preprocessing included) with a new
  /// `model.safetensors`; a Point-MAE folder is written by `PointMAE.save(folder:)`. Both files
  /// are written atomically. Throws `FileError` for a Google `.npz` (no folder to copy the
  /// configuration from), for `out` being the source folder or a folder that holds anything,
  /// or for what loading throws.
  public static func writeReinitialised(_ reference: String, to out: URL, seed: UInt64) throws {
    let loaded = try loadBackbone(reference)
    var generator = RandomGenerator(seed: seed)
    let source: URL
    switch loaded {
    case .vit(let model): source = model.source
    case .pointMAE(let model): source = model.source
    }
    guard out.standardizedFileURL.path != source.standardizedFileURL.path else {
      throw FileError(path: out.path, message: "is the model's own folder; give another --out")
    }
    // Another model's (or a pretraining run's) files would be left beside the new weights.
    let held = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
    guard held.isEmpty else {
      throw FileError(
        path: out.path,
        message: "holds files already (\(held.sorted().prefix(3).joined(separator: ", "))); "
          + "give a new or empty folder")
    }
    switch loaded {
    case .vit(let model):
      guard model.format == .timmFolder else {
        throw FileError(
          path: source.path, message: "only model folders can be re-initialised (this is an .npz)")
      }
      let fresh = try VisionTransformer(config: model.model.config, generator: &generator)
      try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
      try AtomicFile.write(
        try MappedFile.contents(of: source.appendingPathComponent("config.json")),
        to: out.appendingPathComponent("config.json"))
      try Safetensors.write(
        fresh.stateDict(), metadata: ["format": "pt"],
        to: out.appendingPathComponent("model.safetensors"))
    case .pointMAE(let model):
      try PointMAE(config: model.model.config, generator: &generator).save(folder: out)
    }
  }
}
