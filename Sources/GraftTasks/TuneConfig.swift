import Foundation
import Yams

/// A key of a tuning run's configuration, its value or file is wrong; the message says which.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The problem, in words.
  public var message: String
  /// Wraps `message`.
  public init(_ message: String) { self.message = message }
  /// The message.
  public var description: String { message }
}

/// Everything a tuning run is set by, under the keys `--set` and the YAML file use.
///
/// Resolution order: the method's recipe (`preset(for:)`), then a YAML file (nested mappings or
/// dotted keys), then each `--set key=value`. Unknown keys are errors, so a typo never passes
/// silently. `yaml` writes the resolved result back out.
public struct TuneConfig: Equatable, Sendable {
  /// Method name (`--method`).
  public var method: String
  /// The method's options (`method.*`), as text; only the method's declared keys.
  public var methodOptions: [String: String] = [:]
  /// Seeds initialisation, shuffling and dropout (`seed`).
  public var seed: UInt64 = 0
  /// `sgd` (momentum) or `adamw` (`optim.name`).
  public var optimizer = "adamw"
  /// Peak learning rate (`optim.lr`).
  public var lr: Float = 1e-3
  /// Weight decay; never applied to biases, norms, tokens and prompts (`optim.weight_decay`).
  public var weightDecay: Float = 0
  /// SGD momentum (`optim.momentum`).
  public var momentum: Float = 0.9
  /// `cosine` (linear warm-up then half-cosine to `min_lr`) or `constant` (`optim.schedule`).
  public var schedule = "cosine"
  /// Warm-up length in epochs (`optim.warmup_epochs`).
  public var warmupEpochs = 1
  /// Floor of the cosine decay (`optim.min_lr`).
  public var minLR: Float = 0
  /// Gradient-norm clipping, 0 for none (`optim.clip_grad`).
  public var clipGrad: Float = 0
  /// Epochs (`train.epochs`).
  public var epochs = 20
  /// Training batch size (`train.batch_size`).
  public var batchSize = 32
  /// Evaluation batch size (`train.eval_batch_size`).
  public var evalBatchSize = 64
  /// Label smoothing of the loss (`train.label_smoothing`).
  public var labelSmoothing: Float = 0
  /// Run the frozen backbone in training mode (`train.backbone_train_mode`).
  public var backboneTrainMode = false
  /// Background decoding threads (`train.workers`).
  public var workers = 1
  /// Use only this many training samples (seeded choice), 0 for all (`data.train_samples`).
  public var trainSamples = 0

  /// Every key but `method.*`, with its meaning, for `graft methods` and `--help`.
  public static let keys: [(key: String, help: String)] = [
    ("seed", "seeds initialisation, shuffling and dropout"),
    ("optim.name", "sgd (momentum) or adamw"),
    ("optim.lr", "peak learning rate"),
    ("optim.weight_decay", "weight decay (not on biases, norms, tokens, prompts)"),
    ("optim.momentum", "SGD momentum"),
    ("optim.schedule", "cosine (warm-up then half-cosine) or constant"),
    ("optim.warmup_epochs", "linear warm-up, in epochs"),
    ("optim.min_lr", "floor of the cosine decay"),
    ("optim.clip_grad", "clip the gradient norm to this (0: off)"),
    ("train.epochs", "epochs"),
    ("train.batch_size", "training batch size"),
    ("train.eval_batch_size", "evaluation batch size"),
    ("train.label_smoothing", "label smoothing of the cross-entropy"),
    ("train.backbone_train_mode", "run the frozen backbone in training mode (true/false)"),
    ("train.workers", "background image decoding threads"),
    ("data.train_samples", "use only this many training samples (seeded), 0 for all"),
  ]

  /// A configuration with generic defaults for `method` (use `preset(for:)` for its recipe).
  public init(method: String) { self.method = method }

  /// The recipe of `method`'s paper, scaled for small data (fewer epochs, proportionally shorter
  /// warm-up):
  /// - `linear`: SGD momentum 0.9, lr 0.1, no decay, cosine (linear probing practice, MAE/DINO).
  /// - `full`: AdamW lr 1e-4, wd 0.05, cosine, warm-up 2 (DeiT/timm fine-tuning).
  /// - `bitfit`, `ln-tune`: AdamW lr 1e-2, no decay, cosine, warm-up 1. BitFit and LN-tuning
  ///   use 1e-3 over many more steps; in 10 epochs of 800 images that underfits (Graft-1k
  ///   validation top-1, mnist / fmnist-rotation: BitFit 51.5 / 74.5 at 1e-3, 67.0 / 90.0 at
  ///   1e-2, 73.5 / 89.5 at 3e-2; LN-tuning 64.0 / 81.5 at 3e-3, 71.5 / 89.0 at 1e-2), so the
  ///   lr was chosen on validation, taking 1e-2 where 3e-2 was within noise.
  /// - `vpt-*`: SGD momentum 0.9, wd 1e-4, cosine, warm-up 2, lr 0.25 at the default batch of 32.
  ///   VPT tunes the lr per task on the validation split from a grid of base rates {50, 25, 10,
  ///   5, 2.5, 1, 0.5, 0.25, 0.1, 0.05} scaled by batch/256; 0.25 here is a base rate of 2.0,
  ///   chosen on Graft-1k mnist's validation split (val 70.0% against 65.5% at 0.1, 68.0% at
  ///   0.3125 and underfitting at 0.03125, the base default 0.25 scaled to batch 32).
  /// - `lora`: AdamW lr 5e-3, wd 0.01, cosine, warm-up 1 (PEFT's ViT image-classification
  ///   example; 1e-3 underfits small data in a short run: 63% against 78% test on Graft-1k
  ///   mnist in 10 epochs).
  /// - `adapter`: AdamW lr 1e-2, wd 0.05, cosine, warm-up 2 (AdaptFormer's 1e-3 underfits the
  ///   same way: validation 61.0 / 85.0 at 1e-3, 80.0 / 91.0 at 1e-2, 80.0 / 91.5 at 3e-2).
  /// - `mp`, `mp+`: AdamW lr 5e-4, wd 0.05, cosine, warm-up 2 (Moment Probing: lr 1e-4 for 30
  ///   ImageNet epochs at batch 256 or 100 FGVC epochs at batch 64; small data gives far fewer
  ///   steps to a head trained from scratch, so 5× that, below the 1e-3 of the adapters here).
  /// - `lst`: AdamW lr 3e-3 (the paper's), wd 0.01, cosine, warm-up 1 (the paper warms up
  ///   500 steps / 10% on GLUE / VL; its VL script's wd 0.03 is for a 20-epoch multitask run,
  ///   0.01 suits small data and a new side network; gates and norms are not decayed).
  /// - `unipt`: AdamW lr 5e-4, wd 0.01, cosine, warm-up 1 (VSE∞'s 5e-4; issue #3's tips put it
  ///   at 5–20× the fine-tuning lr, here 5× `full`'s 1e-4, and wd at 1e-4 to 1e-2, the upper end
  ///   for small backbones).
  /// - `hst`: AdamW lr 1e-2, wd 5e-4, cosine, warm-up 2 (HST's VTAB-1k recipe: 10 warm-up epochs
  ///   of 100, so 2 of the default 20; the paper's batch is 64, 2×32, with the same lr).
  public static func preset(for method: String) throws -> TuneConfig {
    _ = try MethodRegistry.descriptor(method)
    var c = TuneConfig(method: method)
    switch method {
    case "linear":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("sgd", 0.1, 0, 1)
    case "full":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 1e-4, 0.05, 2)
    case "bitfit", "ln-tune":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 1e-2, 0, 1)
    case "adapter":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 1e-2, 0.05, 2)
    case "vpt-shallow", "vpt-deep":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("sgd", 0.25, 1e-4, 2)
    case "lora":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 5e-3, 0.01, 1)
    case "mp", "mp+":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 5e-4, 0.05, 2)
    case "lst":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 3e-3, 0.01, 1)
    case "unipt":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 5e-4, 0.01, 1)
    case "hst":
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 1e-2, 5e-4, 2)
    default:
      (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs) = ("adamw", 1e-3, 0.05, 2)
    }
    return c
  }

  // MARK: Setting keys

  /// Sets `key` (dotted) to `value` (text). Unknown keys and bad values throw.
  public mutating func set(_ key: String, _ value: String) throws {
    let v = value.trimmingCharacters(in: .whitespaces)
    func number<T: LosslessStringConvertible>(_: T.Type) throws -> T {
      guard let x = T(v) else { throw ConfigError("\(key) = '\(value)' is not a \(T.self)") }
      return x
    }
    func positive(_ x: Int) throws -> Int {
      guard x >= 1 else { throw ConfigError("\(key) = \(x) must be at least 1") }
      return x
    }
    func nonNegative(_ x: Float) throws -> Float {
      guard x >= 0, x.isFinite else { throw ConfigError("\(key) = \(x) must be ≥ 0") }
      return x
    }
    if key.hasPrefix("method.") {
      let option = String(key.dropFirst("method.".count))
      let declared = try MethodRegistry.descriptor(method).options.map(\.key)
      guard declared.contains(option) else {
        throw ConfigError(
          "unknown key '\(key)': method '\(method)' "
            + (declared.isEmpty
              ? "takes no options"
              : "takes \(declared.map { "method." + $0 }.joined(separator: ", "))"))
      }
      methodOptions[option] = v
      return
    }
    switch key {
    case "seed": seed = try number(UInt64.self)
    case "optim.name":
      guard ["sgd", "adamw"].contains(v) else {
        throw ConfigError("optim.name '\(v)': sgd or adamw")
      }
      optimizer = v
    case "optim.lr": lr = try nonNegative(number(Float.self))
    case "optim.weight_decay": weightDecay = try nonNegative(number(Float.self))
    case "optim.momentum": momentum = try nonNegative(number(Float.self))
    case "optim.schedule":
      guard ["cosine", "constant"].contains(v) else {
        throw ConfigError("optim.schedule '\(v)': cosine or constant")
      }
      schedule = v
    case "optim.warmup_epochs":
      warmupEpochs = try number(Int.self)
      if warmupEpochs < 0 { throw ConfigError("optim.warmup_epochs must be ≥ 0") }
    case "optim.min_lr": minLR = try nonNegative(number(Float.self))
    case "optim.clip_grad": clipGrad = try nonNegative(number(Float.self))
    case "train.epochs": epochs = try positive(number(Int.self))
    case "train.batch_size": batchSize = try positive(number(Int.self))
    case "train.eval_batch_size": evalBatchSize = try positive(number(Int.self))
    case "train.label_smoothing":
      labelSmoothing = try nonNegative(number(Float.self))
      if labelSmoothing >= 1 { throw ConfigError("train.label_smoothing must be < 1") }
    case "train.backbone_train_mode":
      guard let b = Bool(v.lowercased()) else {
        throw ConfigError("\(key) = '\(v)': true or false")
      }
      backboneTrainMode = b
    case "train.workers":
      workers = try number(Int.self)
      if workers < 0 { throw ConfigError("train.workers must be ≥ 0") }
    case "data.train_samples":
      trainSamples = try number(Int.self)
      if trainSamples < 0 { throw ConfigError("data.train_samples must be ≥ 0") }
    default:
      let known = Self.keys.map(\.key) + ["method.*"]
      throw ConfigError("unknown key '\(key)' (known: \(known.joined(separator: ", ")))")
    }
  }

  /// Applies a `key=value` override (`--set`).
  public mutating func set(assignment: String) throws {
    guard let eq = assignment.firstIndex(of: "=") else {
      throw ConfigError("--set '\(assignment)' is not key=value")
    }
    try set(
      String(assignment[..<eq]).trimmingCharacters(in: .whitespaces),
      String(assignment[assignment.index(after: eq)...]))
  }

  /// Applies a YAML document: nested mappings (`optim: {lr: 0.01}`) or dotted keys
  /// (`optim.lr: 0.01`); lists become comma-separated values. `method` may name the method
  /// only if it agrees with this one. `source` names the file in errors.
  public mutating func apply(yaml text: String, source: String) throws {
    let root: Any?
    do {
      root = try Yams.load(yaml: text)
    } catch {
      throw ConfigError("\(source): not valid YAML: \(error)")
    }
    guard let root else { return }
    var flat: [(String, String)] = []
    func walk(_ prefix: String, _ node: Any) throws {
      if let map = node as? [AnyHashable: Any] {
        for (k, v) in map { try walk(prefix.isEmpty ? "\(k)" : "\(prefix).\(k)", v) }
      } else if let map = node as? [String: Any] {
        for (k, v) in map { try walk(prefix.isEmpty ? k : "\(prefix).\(k)", v) }
      } else if let list = node as? [Any] {
        flat.append((prefix, list.map { "\($0)" }.joined(separator: ",")))
      } else {
        flat.append((prefix, "\(node)"))
      }
    }
    guard root is [AnyHashable: Any] || root is [String: Any] else {
      throw ConfigError("\(source): the top level must be a mapping of keys")
    }
    try walk("", root)
    for (key, value) in flat.sorted(by: { $0.0 < $1.0 }) {
      if key == "method" || key == "method.name" {
        guard value == method else {
          throw ConfigError("\(source): method '\(value)' differs from --method \(method)")
        }
        continue
      }
      do {
        try set(key, value)
      } catch let e as ConfigError {
        throw ConfigError("\(source): \(e.message)")
      }
    }
  }

  // MARK: Writing

  /// Every key with its value, sorted, method options included (defaults filled in).
  public func resolved() throws -> [(key: String, value: String)] {
    let options = try MethodOptions(
      method: method, declared: MethodRegistry.descriptor(method).options, given: methodOptions)
    var out: [(String, String)] = [
      ("seed", String(seed)), ("optim.name", optimizer), ("optim.lr", "\(lr)"),
      ("optim.weight_decay", "\(weightDecay)"), ("optim.momentum", "\(momentum)"),
      ("optim.schedule", schedule), ("optim.warmup_epochs", String(warmupEpochs)),
      ("optim.min_lr", "\(minLR)"), ("optim.clip_grad", "\(clipGrad)"),
      ("train.epochs", String(epochs)), ("train.batch_size", String(batchSize)),
      ("train.eval_batch_size", String(evalBatchSize)),
      ("train.label_smoothing", "\(labelSmoothing)"),
      ("train.backbone_train_mode", String(backboneTrainMode)),
      ("train.workers", String(workers)), ("data.train_samples", String(trainSamples)),
    ]
    for (k, v) in options.values { out.append(("method." + k, v)) }
    return out.sorted { $0.0 < $1.0 }
  }

  /// The resolved configuration as YAML (dotted keys, values quoted), which `apply(yaml:)`
  /// reads back to an equal configuration.
  public func yaml() throws -> String {
    var lines = ["method: \(quoted(method))"]
    for (k, v) in try resolved() { lines.append("\(k): \(quoted(v))") }
    return lines.joined(separator: "\n") + "\n"
  }

  private func quoted(_ s: String) -> String {
    "\""
      + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      + "\""
  }
}
