import ArgumentParser
import Foundation
import GraftModels
import GraftText
import GraftVideo

/// `graft embed`: features (and logits) of images or pixels, or of point clouds, with a frozen
/// model; token ids and logits of a text with a language model.
struct Embed: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Save a frozen model's features (and logits) for images, pixels, point clouds or a text.",
    discussion: """
      --model takes a timm model folder (config.json + model.safetensors), a Point-MAE model \
      folder (config.json with "architecture": "point_mae" + model.safetensors; \
      Tools/convert_point_mae.py makes one from an official .pth), a Google ViT .npz \
      checkpoint (name its timm architecture with --arch, for example \
      vit_base_patch16_224.augreg_in21k_ft_in1k), or the name of a bundled model (looked up \
      in the folders of $GRAFT_MODELS, then in Models/ of the repository).

      For an image model, inputs are image files (PNG, JPEG, PPM/PGM), each preprocessed with \
      the model's eval transform, or one .safetensors file whose 'pixels' tensor [B, 3, H, W] \
      is used as it is.

      For a point model, inputs are point-cloud or mesh files (PCD, PLY, OFF, OBJ, ModelNet \
      .txt, .npy, or HDF5 sets, every cloud of which is embedded): a mesh is sampled over its \
      surface (10,000 points, seed 0), then each cloud is normalised to the unit sphere and \
      sampled to the model's npoints by farthest point sampling (pointnet2_ops' convention, \
      as Point-MAE's evaluation). Or one .safetensors file whose 'points' tensor [B, N, 3] is \
      used as it is.

      The output holds 'features' [B, D] (final norm, then the model's pooling; [B, 2·D] for \
      Point-MAE: class token and max over the groups), 'logits' [B, C] when the model has a \
      head, and for a point model 'centres' [B, groups, 3]. It is written atomically: on any \
      error an existing file is left as it was.

      With --frames T, inputs are video files (any container and codec the installed FFmpeg \
      decodes) embedded PLLaVA's way with an image model: T frames sampled per video \
      (--sampling pllava: PLLaVA's evaluation rule), each through the model's eval transform \
      and the backbone (all frames of a batch of --batch-size videos as one batch), the output \
      of block --layer (default -2, the second-to-last) with the prefix tokens dropped, then \
      adaptive average pooling over (T, h, w) to --pool t,h,w (PyTorch's AdaptiveAvgPool3d \
      bins; default T and half the patch grid, rounded up). The output holds 'frames' \
      [B, T, 3, H, W] (preprocessed pixels), 'tokens' [B, T, h, w, D], 'pooled' \
      [B, t, h', w', D] and 'indices' [B, T] (I64, the frames taken).

      With --text, --model is a GPT-2-layout language model folder as Hugging Face saves it \
      (config.json with "model_type": "gpt2", model.safetensors, and tokenizer.json or \
      vocab.json + merges.txt): the text is tokenized with the folder's byte-level BPE and the \
      output holds 'ids' [1, L] (I64) and 'logits' [1, L, V].
      """
  )

  @Option(help: "Model folder, .npz checkpoint or bundled model name.")
  var model: String

  @Option(help: "timm architecture of an .npz checkpoint.")
  var arch: String?

  @Option(name: .shortAndLong, help: "Output .safetensors file.")
  var output: String

  @Option(help: "Samples per forward pass.")
  var batchSize = Embedding.defaultBatchSize

  @Option(
    help: ArgumentHelp(
      "fp32, bf16 or int8: the model's matrices on oneDNN (image and point models).",
      discussion:
        "bf16 runs every matrix product (and attention's) on oneDNN's BF16 matmul with FP32 "
        + "accumulation, activations FP32 between ops: about twice the products' speed where "
        + "the CPU has AVX-512 BF16, features within about 1e-2 of FP32. int8 keeps the "
        + "matrices in s8 (per-channel scales) and quantizes each input row on the fly "
        + "(per-token scales) for oneDNN's int8 matmul (AVX-512 VNNI). Where the CPU lacks the "
        + "instructions it says so and runs FP32."))
  var precision = BackbonePrecision.fp32

  @OptionGroup var quietFlag: QuietFlag
  var quiet: Bool { quietFlag.quiet }

  @OptionGroup var imageLimit: ImageLimitOptions

  @Option(help: "Frames per video: the inputs are videos (see below).")
  var frames: Int?

  // `.unconditional`: a negative block (`--layer -2`, as the README writes it) is the value, not
  // another flag.
  @Option(
    parsing: .unconditional,
    help: "With --frames: the block whose output gives the tokens (negative: from the end).")
  var layer = -2

  @Option(help: "With --frames: pooled shape t,h,w.")
  var pool: String?

  @Option(help: "With --frames: pllava, middle or random.")
  var sampling = "pllava"

  @Option(help: "Text to run through a language model (--model a language model folder).")
  var text: String?

  @Argument(
    help: """
      Image or point-cloud files, or one .safetensors with a 'pixels' or 'points' tensor; \
      videos with --frames.
      """)
  var inputs: [String] = []

  func validate() throws {
    guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    if precision != .fp32 && (text != nil || frames != nil) {
      throw ValidationError(
        "--precision \(precision.rawValue) runs image and point models (not --text or --frames)")
    }
    if text != nil {
      guard inputs.isEmpty && frames == nil else {
        throw ValidationError("--text takes no input files and no --frames")
      }
      return
    }
    guard !inputs.isEmpty else {
      throw ValidationError(
        "give image (or point-cloud) files or one .safetensors of pixels (or points)")
    }
  }

  /// `--pool t,h,w` as numbers.
  private func poolShape() throws -> (Int, Int, Int)? {
    guard let pool else { return nil }
    let parts = pool.split(separator: ",").compactMap {
      Int($0.trimmingCharacters(in: .whitespaces))
    }
    guard parts.count == 3, parts.allSatisfy({ $0 >= 1 }) else {
      throw ValidationError("--pool takes three positive sizes t,h,w, got '\(pool)'")
    }
    return (parts[0], parts[1], parts[2])
  }

  func run() throws {
    imageLimit.apply()
    let stderr = FileHandle.standardError
    let folder = URL(fileURLWithPath: model)
    if let text {
      guard TextEmbedding.isLanguageModel(folder) else {
        throw ValidationError(
          "--text needs a language model folder (config.json with \"model_type\": \"gpt2\"); "
            + "\(model) is not one")
      }
      let summary = try TextEmbedding.run(
        model: folder, text: text, output: URL(fileURLWithPath: output))
      print("\(output): ids [1, \(summary.ids.count)], logits \(summary.logitsShape)")
      return
    }
    if TextEmbedding.isLanguageModel(folder) {
      throw ValidationError("\(model) is a language model: give --text")
    }
    if let frames {
      guard frames >= 1 else { throw ValidationError("--frames must be at least 1") }
      guard let rule = FrameSampling(name: sampling) else {
        throw ValidationError("--sampling must be pllava, middle or random")
      }
      let summary = try VideoEmbedding.run(
        model: model, videos: inputs.map { URL(fileURLWithPath: $0) }, frames: frames,
        layer: layer, pool: try poolShape(), sampling: rule, batchSize: batchSize,
        output: URL(fileURLWithPath: output)
      ) { done, total in
        if !quiet { stderr.write(Data("\r  embedded \(done)/\(total) videos".utf8)) }
      }
      if !quiet { stderr.write(Data("\n".utf8)) }
      for warning in summary.warnings { stderr.write(Data("warning: \(warning)\n".utf8)) }
      print(
        "\(output): frames \(summary.framesShape), tokens \(summary.tokensShape), "
          + "pooled \(summary.pooledShape)")
      return
    }
    let summary = try Embedding.run(
      model: model, arch: arch, inputs: inputs, output: output, batchSize: batchSize,
      precision: precision
    ) { done, total in
      if !quiet { stderr.write(Data("\r  embedded \(done)/\(total)".utf8)) }
    }
    if !quiet { stderr.write(Data("\n".utf8)) }
    for note in summary.notes { stderr.write(Data("note: \(note)\n".utf8)) }
    var line = "\(summary.output.path): features \(summary.featureShape)"
    if let logits = summary.logitsShape { line += ", logits \(logits)" }
    if let centres = summary.centresShape { line += ", centres \(centres)" }
    print(line + " (\(summary.model))")
  }
}
