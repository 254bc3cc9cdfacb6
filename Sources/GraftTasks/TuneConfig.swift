import Foundation
import GraftVideo
import Yams

/// Everything a tuning run is set by, under the keys `--set` and the YAML file use.
///
/// Resolution order: the method's recipe (`preset(for:)`), then a YAML file (nested mappings or
/// dotted keys), then each `--set key=value`. Unknown keys are errors, so a typo never passes
/// silently. `yaml` writes the resolved result back out. Every key is declared once, in
/// `options`, with its help; method keys (`method.*`) come from the method's typed config.
public struct TuneConfig: Equatable, Sendable, OptionTable {
  /// Method name (`--method`).
  public var method: String
  /// The method's options (`method.*`), as given (text); only the method's declared keys.
  public var methodOptions: [String: String] = [:]
  /// Seeds initialisation, shuffling and dropout (`seed`).
  public var seed: UInt64 = 0
  /// SGD with momentum or AdamW (`optim.name`).
  public var optimizer = OptimizerKind.adamw
  /// Peak learning rate (`optim.lr`).
  public var lr: Float = 1e-3
  /// Weight decay; never applied to biases, norms, tokens and prompts (`optim.weight_decay`).
  public var weightDecay: Float = 0
  /// SGD momentum (`optim.momentum`).
  public var momentum: Float = 0.9
  /// Cosine (linear warm-up then half-cosine to `min_lr`) or constant (`optim.schedule`).
  public var schedule = ScheduleKind.cosine
  /// Warm-up length in epochs (`optim.warmup_epochs`).
  public var warmupEpochs = 1
  /// Floor of the cosine decay (`optim.min_lr`).
  public var minLR: Float = 0
  /// Gradient-norm clipping, 0 for none (`optim.clip_grad`).
  public var clipGrad: Float = 0
  /// Epochs (`train.epochs`). A method's preset takes its recipe's (`Recipe.epochs`), the
  /// fewest of 10, 20 and 40 whose best validation top-1 is within one point (two images) of
  /// the best of the three, measured on Graft-1k's MNIST task (`Tools/converged_epochs.sh`:
  /// 800 training images, validation on 200, seed 0, each method at the learning rate and
  /// weight decay VTAB-1k's protocol chose for it at 10 epochs; * from the 10-epoch protocol
  /// itself, measured on Zen 4):
  ///
  /// | method | 10 | 20 | 40 | epochs |
  /// | --- | --- | --- | --- | --- |
  /// | linear | 69.0* | 70.5 | 70.5 | 100‡ |
  /// | mp | 81.0* | 82.5 | 82.5 | 20 |
  /// | mp+ | 82.5 | 83.5 | 84.0 | 20 |
  /// | lst | 76.5* | 75.5 | 76.5 | 20‡ |
  /// | unipt | 78.0 | 78.0 | 78.5 | 10 |
  /// | bitfit | 73.5 | 79.5 | 81.5 | 40 |
  /// | ln-tune | 77.0 | 78.0 | 79.0 | 20 |
  /// | adapter | 80.0 | 80.5 | 83.5 | 40 |
  /// | lora | 78.5* | 78.5 | 83.5 | 10† |
  /// | hst | 93.0 | 94.5 | 94.5 | 20 |
  /// | vpt-shallow | 69.5 | 70.5 | 70.5 | 40§ |
  /// | vpt-deep | 71.0* | 71.5 | 76.0 | 40 |
  /// | full | 86.5* | 88.0 | 89.0 | 20 |
  ///
  /// At the chosen length each curve is flat at its end: the doubled schedule gains at most
  /// one point. A validation split of 200 images resolves half a point per image and one seed
  /// spreads by a point or two, so the table separates schedules that still gain a few points
  /// (BitFit, the adapter, LoRA, VPT-deep) from those that do not; it holds each method's
  /// 10-epoch learning rate, and a longer schedule may prefer another, which the protocol's
  /// grid at these epochs chooses again. † LoRA's 40 epochs did not hold over seeds: under the
  /// protocol (lr 0.0125 chosen again at 40 epochs) two of three final runs stalled mid-run,
  /// their training loss rising by 0.4 and 0.6 for some fifteen epochs at the schedule's high
  /// rates, and the three tested 76.6, 82.9 and 71.8, where 10 epochs gave 82.8 ± 0.5; a
  /// schedule that converges for one seed only is not converged, so LoRA keeps 10.
  ///
  /// ‡ On all five Graft-1k tasks the protocol's chosen grid runs show whether a length is flat
  /// (`graft sweep`'s `val at end`: the best validation top-1 of the last quarter of epochs
  /// against the best before, `ProtocolResult.lateGain`). The MNIST rule gave the linear probe
  /// 20 epochs and LST 10, and both were still rising elsewhere: the probe on opencv-digits by
  /// 3.0 points at 20 epochs, on mnist by 3.5 and opencv-digits by 1.5 at 40; LST on
  /// opencv-digits and fmnist-rotation by 2.0 at 10. At 100 and 20 epochs every task is flat,
  /// and the protocol's test top-1 (three seeds, mean of the five tasks) rose from 83.1 to 84.1
  /// for the probe (mnist 71.7 → 73.9, opencv-digits 76.3 → 78.9, the others within 0.6) and
  /// from 87.1 to 88.4 for LST (every task up: mnist 75.5 → 78.2, opencv-digits 81.7 → 83.3).
  /// A cached linear epoch costs milliseconds. MP and UniPT were flat on all five at 20 and 10,
  /// and so were MP+, LN-tuning and full fine-tuning at 20, LoRA at 10, and BitFit, the adapter
  /// and VPT-deep at 40 on the four tasks besides MNIST.
  ///
  /// § The MNIST rule gave VPT-shallow 10 epochs, and under the protocol its chosen run was
  /// still rising on opencv-digits (+5.0 points). At 40 (the grid chosen again, three seeds) it
  /// was flat on the four tasks besides MNIST, and its test top-1 rose on every task: mnist
  /// 73.1 → 73.8, digits 92.9 → 93.6, opencv-digits 74.3 → 78.6, fmnist-rotation 83.1 → 83.6,
  /// fmnist-count 93.5 → 95.2 (the five-task mean 83.4 → 85.0, from below the linear probe's
  /// 84.1 to above it). On MNIST, at the rate 40 epochs chose (0.625, no weight decay), the
  /// chosen run's end still gained 2.5 points of validation; the same setting on another CPU
  /// (seed 0, train/val) peaked at 72.0 in epoch 32 of 40 (end gain +0.5, flat) and at 73.0 in
  /// epoch 44 of 100, its last quarter 70.0–71.0: within one point, so 40 holds by the MNIST
  /// rule above.
  /// Without a method (`TuneConfig(method:)`): 20.
  public var epochs = 20
  /// Training batch size (`train.batch_size`).
  public var batchSize = 32
  /// Evaluation batch size (`train.eval_batch_size`).
  public var evalBatchSize = 64
  /// Label smoothing of the loss (`train.label_smoothing`).
  public var labelSmoothing: Float = 0
  /// Run the frozen backbone in training mode (`train.backbone_train_mode`).
  public var backboneTrainMode = false
  /// How the frozen backbone keeps its matrices (`backbone.precision`): FP32, or BF16 with its
  /// products on oneDNN (FP32 activations, trained tensors and gradients; see
  /// `BackbonePrecision`). Where the CPU has no native BF16 the run says so and uses FP32.
  public var precision = BackbonePrecision.fp32
  /// What the backbone's blocks recompute in backward instead of keeping (`train.recompute`):
  /// the same gradients, less memory, one more GEMM per block and step for each piece.
  public var recompute = BlockRecompute.none
  /// Background decoding threads (`train.workers`).
  public var workers = 1
  /// Data-parallel runs: trainable gradients of more than this many MiB in all are allreduced
  /// in buckets of about this size, each started during the backward pass once its gradients
  /// are final (PyTorch DDP's `bucket_cap_mb`); smaller ones in one fused allreduce after the
  /// backward pass (`train.bucket_mb`).
  public var bucketMiB: Double = 25
  /// Use only this many training samples (seeded choice), 0 for all (`data.train_samples`).
  public var trainSamples = 0
  /// What a training step whose loss or gradient is not finite does (`train.nan_policy`).
  public var nanPolicy = NaNPolicy.stop
  /// Whether methods that need no backbone gradient read the frozen backbone's outputs from a
  /// feature cache after computing them once (`train.cache`; see `FeatureCache`).
  public var cache = FeatureCacheMode.auto
  /// The feature cache's folder; empty for `<data home>/feature-cache` (`train.cache_dir`).
  public var cacheDir = ""
  /// How the feature cache stores values (`train.cache_precision`).
  public var cachePrecision = FeatureCachePrecision.fp32
  /// Early stopping (`train.patience`): the run ends after this many epochs in a row without a
  /// better validation top-1 than its best epoch's; 0 (the default) trains every epoch. Either
  /// way the adapter evaluated on test is the best validation epoch's (`best_epoch` in
  /// `summary.json`), the "best val" selection VPT's and V-PETL Bench's code report; the cosine
  /// schedule keeps its length (`train.epochs`), so a stopped run saw a higher rate at its end.
  /// Needs a held-out validation split: refused with `data.train_on=train+val`.
  public var patience = 0
  /// What the run trains on (`data.train_on`): the training split (model selection on
  /// validation), or training and validation joined, VTAB-1k's final 800 + 200 protocol run
  /// once the hyperparameters are chosen, in which case the last epoch's adapter is evaluated.
  public var trainOn = TrainingSplits.train
  /// Test-time views whose logits are averaged for the voted test result, 1 for none
  /// (`eval.votes`; see `Voting`).
  public var votes = 1
  /// Frames sampled from each video clip (`data.frames`; video data only).
  public var frames = 8
  /// How evaluation picks a clip's frames: PLLaVA's rule or segment middles (`data.sampling`).
  public var sampling = ClipSampling.pllava
  /// How training picks a clip's frames (`data.train_sampling`): a random frame per segment,
  /// seeded per clip and epoch, by default.
  public var trainSampling = ClipSampling.random
  /// Side of the square images a detection run trains and evaluates at (`det.image_size`).
  public var detImageSize = 64
  /// Channels of every feature level entering the detection head (`det.neck`).
  public var detNeck = 64
  /// 3×3 conv + GroupNorm + ReLU layers in each FCOS tower (`det.convs`; FCOS's own is 4).
  public var detConvs = 2
  /// Learning rate of the pyramid (or HST's projections) and the FCOS head, 0 for `optim.lr`
  /// (`det.lr`; the method's own tensors keep `optim.lr`).
  public var detLR: Float = 0

  /// Keys that change a run's memory and time but not its results, which a resumed run may
  /// change (a run that ran out of memory resumes with `train.recompute=all`, or an `lst` /
  /// `unipt` run with `method.keep_mib=0`).
  public static let resultNeutralKeys: Set<String> = ["train.recompute", "method.keep_mib"]

  /// The settings by which this configuration differs from `recorded` (a run's), leaving out
  /// `resultNeutralKeys`: empty when it may resume that run. Compared as settings, not text, so
  /// a key added since the run started (at its default) is no difference.
  public func resumeConflicts(with recorded: TuneConfig) throws -> [(
    key: String, recorded: String, now: String
  )] {
    zip(try recorded.resolved(), try resolved()).compactMap { then, now in
      then.value == now.value && then.key == now.key || Self.resultNeutralKeys.contains(now.key)
        ? nil : (now.key, then.value, now.value)
    }
  }

  /// Every key but `method.*`, with its help.
  public static let options: [ConfigOption<TuneConfig>] = [
    ConfigOption("seed", \.seed, "seeds initialisation, shuffling and dropout"),
    ConfigOption("optim.name", \.optimizer, "sgd (momentum) or adamw"),
    nonNegative("optim.lr", \.lr, "peak learning rate"),
    nonNegative(
      "optim.weight_decay", \.weightDecay, "weight decay (not on biases, norms, tokens, prompts)"),
    nonNegative("optim.momentum", \.momentum, "SGD momentum"),
    ConfigOption("optim.schedule", \.schedule, "cosine (warm-up then half-cosine) or constant"),
    .int("optim.warmup_epochs", \.warmupEpochs, in: 0...100_000, "linear warm-up, in epochs"),
    nonNegative("optim.min_lr", \.minLR, "floor of the cosine decay"),
    nonNegative("optim.clip_grad", \.clipGrad, "clip the gradient norm to this (0: off)"),
    .int("train.epochs", \.epochs, in: 1...100_000, "epochs"),
    .int("train.batch_size", \.batchSize, in: 1...65_536, "training batch size"),
    .int("train.eval_batch_size", \.evalBatchSize, in: 1...65_536, "evaluation batch size"),
    ConfigOption(
      "train.label_smoothing", \.labelSmoothing, "label smoothing of the cross-entropy",
      expectation: "a number in 0..<1", valid: { $0 >= 0 && $0 < 1 }),
    ConfigOption(
      "backbone.precision", \.precision,
      "fp32, or bf16: the frozen backbone's matrices in bfloat16 and their products (and its "
        + "attention's) on oneDNN's BF16 matmul, FP32 accumulation; trained tensors stay FP32 "
        + "(CPUs without AVX-512 BF16 run fp32 and say so)",
      expectation: "fp32 or bf16 (int8 is for inference: graft eval/embed --precision int8)",
      valid: { $0 != .int8 }),
    ConfigOption(
      "train.backbone_train_mode", \.backboneTrainMode,
      "run the frozen backbone in training mode (true/false)"),
    ConfigOption(
      "train.recompute", \.recompute,
      "what the backbone's blocks rebuild in backward instead of keeping: none (fastest), qkv "
        + "(the attention projection: 3 token widths fewer a block), mlp (the MLP's hidden "
        + "pre-activation: 4 fewer), all (both); the same gradients, one more GEMM a block each"),
    .int("train.workers", \.workers, in: 0...1024, "background image decoding threads"),
    ConfigOption(
      "train.bucket_mb", \.bucketMiB,
      "data-parallel runs (mpirun): gradients of more than this many MiB in all are allreduced "
        + "in buckets of this size, started during the backward pass (as PyTorch DDP's "
        + "bucket_cap_mb); smaller ones in one fused allreduce",
      expectation: "a positive number", valid: { $0 > 0 && $0 <= 1_048_576 }),
    ConfigOption(
      "train.nan_policy", \.nanPolicy,
      "a step whose loss or gradient is not finite: stop (the run, naming the step) or "
        + "skip-step (no update for that batch)"),
    ConfigOption(
      "train.cache", \.cache,
      "auto: linear, mp, lst and unipt on images compute the frozen backbone's outputs once and "
        + "read them from a cache in later epochs and runs; off: every epoch runs the backbone"),
    ConfigOption(
      "train.cache_dir", \.cacheDir,
      "folder of the feature cache (empty: <data home>/feature-cache)"),
    ConfigOption(
      "train.cache_precision", \.cachePrecision,
      "how the feature cache stores values: fp32 (equal to an uncached run up to float "
        + "reordering) or bf16 (half the disk, results change slightly)"),
    .int(
      "train.patience", \.patience, in: 0...100_000,
      "stop after this many epochs without a better validation top-1 (0: off); the best "
        + "validation epoch's adapter is evaluated on test"),
    ConfigOption(
      "data.train_on", \.trainOn,
      "train (select the epoch on validation) or train+val (VTAB-1k's final run: train on "
        + "both, evaluate the last epoch on test)"),
    .int(
      "data.train_samples", \.trainSamples, atLeast: 0,
      "use only this many training samples (seeded), 0 for all"),
    .int(
      "data.frames", \.frames, in: 1...VideoDecoding.maxFrameCount,
      "frames sampled from each video clip (video data)"),
    ConfigOption(
      "data.sampling", \.sampling,
      "how evaluation picks a clip's frames: pllava (PLLaVA's evaluation rule) or middle "
        + "(the middle frame of equal segments)",
      expectation: "pllava or middle", valid: { $0 != .random }),
    ConfigOption(
      "data.train_sampling", \.trainSampling,
      "how training picks a clip's frames: random (one frame per segment, seeded by the run's "
        + "seed, the epoch and the clip), pllava or middle"),
    .int(
      "eval.votes", \.votes, in: 1...100,
      "test-time views averaged for the voted test result (P2P: its official views, at most "
        + "40; other point methods: Point-MAE's random scale-and-translate views); 1: none"),
    .int(
      "det.image_size", \.detImageSize, in: 16...4096,
      "detection: side of the square images trained and evaluated (a multiple of the coarsest "
        + "feature stride)"),
    .int("det.neck", \.detNeck, in: 1...4096, "detection: channels of every level into the head"),
    .int("det.convs", \.detConvs, in: 1...16, "detection: conv layers in each FCOS tower"),
    nonNegative(
      "det.lr", \.detLR,
      "detection: learning rate of the pyramid and head (0: optim.lr; the method keeps optim.lr)"),
  ]

  /// A non-negative real setting.
  private static func nonNegative(
    _ key: String, _ path: WritableKeyPath<TuneConfig, Float>, _ help: String
  ) -> ConfigOption<TuneConfig> {
    ConfigOption(key, path, help, expectation: "a number ≥ 0") { $0 >= 0 }
  }

  /// How video clips are read under these settings.
  public var videoInput: VideoInput {
    VideoInput(frames: frames, sampling: sampling, trainSampling: trainSampling)
  }

  /// Every key but `method.*`, with its meaning, for `graft methods` and `--help`.
  public static var keys: [(key: String, help: String)] { options.map { ($0.key, $0.help) } }

  /// A configuration with generic defaults for `method` (use `preset(for:)` for its recipe).
  public init(method: String) { self.method = method }

  /// `method`'s recipe (its config's `Recipe`: the optimizer, lr, weight decay and warm-up its
  /// paper trains with, scaled for small data; each method's documentation gives the evidence)
  /// over the generic defaults.
  public static func preset(for method: String) throws -> TuneConfig {
    let recipe = try MethodRegistry.descriptor(method).recipe
    var c = TuneConfig(method: method)
    (c.optimizer, c.lr, c.weightDecay, c.warmupEpochs, c.epochs) = (
      recipe.optimizer, recipe.lr, recipe.weightDecay, recipe.warmupEpochs, recipe.epochs
    )
    return c
  }

  /// `method`'s default grid for `graft sweep` (its recipe's `lrGrid` × `weightDecayGrid`).
  public static func defaultGrid(for method: String) throws -> [GridAxis] {
    let recipe = try MethodRegistry.descriptor(method).recipe
    return [
      GridAxis(key: "optim.lr", values: recipe.lrGrid),
      GridAxis(key: "optim.weight_decay", values: recipe.weightDecayGrid),
    ]
  }

  // MARK: Setting keys

  /// Sets `key` (dotted) to `value` (text). Unknown keys and bad values throw.
  public mutating func set(_ key: String, _ value: String) throws {
    if key.hasPrefix("method.") {
      let option = String(key.dropFirst("method.".count))
      let descriptor = try MethodRegistry.descriptor(method)
      let declared = descriptor.options.map(\.key)
      guard declared.contains(option) else {
        throw ConfigError(
          "unknown key '\(key)': method '\(method)' "
            + (declared.isEmpty
              ? "takes no options"
              : "takes \(declared.map { "method." + $0 }.joined(separator: ", "))"))
      }
      try descriptor.check(option: option, value: value)
      methodOptions[option] = value.trimmingCharacters(in: .whitespaces)
      return
    }
    guard let option = Self.option(key) else {
      let known = Self.options.map(\.key) + ["method.*"]
      throw ConfigError("unknown key '\(key)' (known: \(known.joined(separator: ", ")))")
    }
    try option.set(&self, from: value)
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
  /// only if it agrees with this one. `source` names the file in errors. A key given twice
  /// (in one mapping, or once nested and once dotted) is an error: YAML parsers differ on which
  /// value wins, so a run must not depend on it. So is a key that is not a plain name. This
  /// form reads the file at `path` (`--config`): a missing file, a folder, a device or a file
  /// that is not UTF-8 text is a `ConfigError` naming it.
  public mutating func apply(yamlFile path: String) throws {
    let data: Data
    do {
      data = try MappedFile.contents(of: URL(fileURLWithPath: path))
    } catch {
      throw ConfigError("\(error) (--config takes a YAML file)")
    }
    guard let text = String(validating: data, as: UTF8.self) else {
      throw ConfigError("\(path): not UTF-8 text (--config takes a YAML file)")
    }
    try apply(yaml: text, source: path)
  }

  /// Applies YAML `text` read from `source` (named in errors), as `apply(yamlFile:)`.
  public mutating func apply(yaml text: String, source: String) throws {
    let root: Any?
    do {
      // Yams keeps the last of duplicate keys; the composed tree still has them all.
      if let node = try Yams.compose(yaml: text) { try Self.checkNoDuplicateKeys(node, source) }
      root = try Yams.load(yaml: text)
    } catch let e as ConfigError {
      throw e
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
    var seen = Set<String>()
    for (key, _) in flat where !seen.insert(key).inserted {
      throw ConfigError("\(source): key '\(key)' is given twice (nested and dotted)")
    }
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

  /// Throws when a mapping of `node` (at any depth) has a key twice, or a key that is not a
  /// scalar.
  private static func checkNoDuplicateKeys(_ node: Node, _ source: String, path: String = "")
    throws
  {
    switch node {
    case .mapping(let mapping):
      var seen = Set<String>()
      for (key, value) in mapping {
        // A mapping or a list as a key (`? {a: 1}`): settings have names (and Yams 5.0 traps
        // on such keys when it builds a dictionary).
        guard let name = key.scalar?.string else {
          throw ConfigError(
            "\(source): a key under '\(path.isEmpty ? "(top level)" : path)' is not a plain name")
        }
        let full = path.isEmpty ? name : "\(path).\(name)"
        guard seen.insert(name).inserted else {
          throw ConfigError("\(source): key '\(full)' is given twice")
        }
        try checkNoDuplicateKeys(value, source, path: full)
      }
    case .sequence(let sequence):
      for item in sequence { try checkNoDuplicateKeys(item, source, path: path) }
    default:
      break
    }
  }

  // MARK: Writing

  /// Every key with its value, sorted, method options included (defaults filled in).
  public func resolved() throws -> [(key: String, value: String)] {
    let options = try MethodRegistry.descriptor(method).resolve(methodOptions)
    let all = optionValues + options.map { ("method." + $0.key, $0.value) }
    return all.sorted { $0.key < $1.key }
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

/// The splits a run trains on (`data.train_on`).
public enum TrainingSplits: String, CaseIterable, Sendable, OptionValue {
  /// The training split; validation selects the best epoch.
  case train
  /// Training and validation joined (`TuneData.joiningValidation()`); the last epoch is kept,
  /// since no held-out split is left to select on.
  case trainAndValidation = "train+val"
}

/// What the trainer does with a step whose loss or gradient is not finite (NaN or infinite).
public enum NaNPolicy: String, CaseIterable, Sendable, OptionValue {
  /// Stop the run with a `DivergenceError` naming the step and the last good checkpoint;
  /// nothing of the failed epoch is written.
  case stop
  /// Skip the step (no update for that batch, as mixed-precision loss scalers do) and go on;
  /// each epoch's metrics count the skipped steps, and an epoch with no finite step stops.
  case skipStep = "skip-step"
}

extension BackbonePrecision: OptionValue {}
