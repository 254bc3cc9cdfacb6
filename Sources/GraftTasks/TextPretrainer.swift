import Foundation
import GraftTensor
import GraftText

/// Settings of `graft pretrain --modality text`: the tokenizer to train, the GPT-2-layout
/// decoder to build and its language-modelling recipe.
///
/// The defaults size the bundled decoder: an 8,192-token byte-level BPE, 4 blocks 192 wide
/// (6 heads), 256 positions — about 3.4 M parameters, 13.6 MB as float32 — trained with AdamW
/// (β 0.9, 0.999; weight decay 0.1 off biases and norms) and a cosine schedule after a linear
/// warm-up, with GPT-2's dropout of 0.1.
public struct TextPretrainConfig: Sendable, Equatable, OptionTable {
  /// Width D.
  public var nEmbd = 192
  /// Blocks.
  public var nLayer = 4
  /// Attention heads.
  public var nHead = 6
  /// Tokens per packed sequence (rows of `wpe`).
  public var nPositions = 256
  /// Dropout on the embeddings, attention probabilities and residual branches.
  public var dropout: Float = 0.1
  /// Tokens of the trained tokenizer (special token, 256 bytes, merges).
  public var vocabSize = 8192
  /// Pairs seen fewer times are not merged.
  public var minFrequency = 2
  /// Epochs over the packed training sequences (3: at the 1.9 s a step measured on two shared
  /// cores, 759 steps an epoch on the WordNet text, a run takes about 75 minutes).
  public var epochs = 3
  /// Sequences per step.
  public var batchSize = 16
  /// Linear warm-up, steps.
  public var warmupSteps = 100
  /// Peak learning rate.
  public var lr: Float = 1e-3
  /// Learning rate at the end of the cosine.
  public var minLR: Float = 1e-5
  /// Decoupled weight decay (not on biases and norms).
  public var weightDecay: Float = 0.1
  /// Seed of the initialisation, the shuffling and the dropout.
  public var seed: UInt64 = 0

  /// The defaults.
  public init() {}

  /// Every key `--set` takes.
  public static let options: [ConfigOption<TextPretrainConfig>] = [
    .int("model.n_embd", \.nEmbd, in: 1...4096, "width D"),
    .int("model.n_layer", \.nLayer, in: 1...96, "blocks"),
    .int("model.n_head", \.nHead, in: 1...128, "attention heads"),
    .int("model.n_positions", \.nPositions, in: 2...8192, "tokens per packed sequence"),
    .float("model.dropout", \.dropout, in: 0...0.9, "dropout (embeddings, attention, residual)"),
    .int("tokenizer.vocab_size", \.vocabSize, in: 257...1 << 20, "tokens of the trained BPE"),
    .int("tokenizer.min_frequency", \.minFrequency, atLeast: 0, "fewest occurrences merged"),
    .int("train.epochs", \.epochs, in: 1...100_000, "epochs over the training sequences"),
    .int("train.batch_size", \.batchSize, in: 1...4096, "sequences per step"),
    .int("train.warmup_steps", \.warmupSteps, atLeast: 0, "linear warm-up, steps"),
    ConfigOption("optim.lr", \.lr, "peak learning rate", expectation: "a number > 0") { $0 > 0 },
    ConfigOption("optim.min_lr", \.minLR, "floor of the cosine", expectation: "a number ≥ 0") {
      $0 >= 0
    },
    ConfigOption(
      "optim.weight_decay", \.weightDecay, "decoupled weight decay", expectation: "a number ≥ 0"
    ) { $0 >= 0 },
    ConfigOption("seed", \.seed, "seed of everything random"),
  ]

  /// Every setting by key, for the run's record.
  public var json: [String: String] {
    Dictionary(uniqueKeysWithValues: optionValues.map { ($0.key, $0.value) })
  }

  /// The decoder's settings for a tokenizer of `vocabSize` ids whose end of text is `eos`.
  public func modelConfig(vocabSize: Int, eos: Int?) -> GPT2Config {
    var c = GPT2Config()
    c.vocabSize = vocabSize
    c.nPositions = nPositions
    c.nEmbd = nEmbd
    c.nLayer = nLayer
    c.nHead = nHead
    (c.attnPdrop, c.residPdrop, c.embdPdrop) = (dropout, dropout, dropout)
    c.bosTokenID = eos
    c.eosTokenIDs = eos.map { [$0] } ?? []
    return c
  }
}

/// Plain text to pretrain on: a training and a validation text. Documents are separated by
/// blank lines; each is followed by `<|endoftext|>` in the token stream.
public struct TextCorpus: Sendable {
  /// The training text.
  public var train: String
  /// The held-out text.
  public var validation: String

  /// A corpus of the two texts.
  public init(train: String, validation: String) {
    self.train = train
    self.validation = validation
  }

  /// Reads `train.txt` and `validation.txt` of `folder` (as `graft data prepare text` writes
  /// them). Throws `FileError` naming a missing, unreadable or empty file.
  public init(folder: URL) throws {
    func read(_ name: String) throws -> String {
      let url = folder.appendingPathComponent(name)
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw FileError(
          path: url.path, message: "no such file (graft data prepare text writes one)")
      }
      guard let data = try? MappedFile.contents(of: url) else {
        throw FileError(path: url.path, message: "cannot read")
      }
      let text = String(decoding: data, as: UTF8.self)
      guard text.contains(where: { !$0.isWhitespace }) else {
        throw FileError(path: url.path, message: "holds no text")
      }
      return text
    }
    self.init(train: try read("train.txt"), validation: try read("validation.txt"))
  }

  /// The documents of `text`: stretches between blank lines, trimmed of surrounding newlines.
  public static func documents(_ text: String) -> [String] {
    var out: [String] = []
    var current: [Substring] = []
    func flush() {
      if !current.isEmpty { out.append(current.joined(separator: "\n")) }
      current.removeAll()
    }
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.allSatisfy(\.isWhitespace) { flush() } else { current.append(line) }
    }
    flush()
    return out
  }

  /// The lines of `text`, each with its newline (what the tokenizer is trained on).
  public static func lines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: true).map { $0 + "\n" }
  }
}

/// GPT-2-style language-model pretraining (`graft pretrain --modality text`): a byte-level BPE
/// trained on the training text (or given), then a randomly initialised GPT-2-layout decoder
/// trained with the next-token loss on packed sequences of `n_positions` tokens; the validation
/// loss and perplexity are reported each epoch. The result is a Hugging Face model folder that
/// `GPT2.load(folder:)` and `transformers`' `GPT2LMHeadModel` read.
public final class TextPretrainer {
  /// The settings.
  public let config: TextPretrainConfig
  /// The decoder, once `run` has built it.
  public private(set) var model: GPT2?

  /// A pretrainer with `config`.
  public init(config: TextPretrainConfig) throws {
    guard config.nEmbd % config.nHead == 0 else {
      throw ConfigError(
        "model.n_embd \(config.nEmbd) is not divisible by model.n_head \(config.nHead)")
    }
    self.config = config
  }

  /// Whether `out` holds a pretraining run (a committed epoch).
  public static func holdsRun(_ out: URL) -> Bool {
    CheckpointStore(folder: out.appendingPathComponent("checkpoint")).hasCommittedEpoch
  }

  /// Trains on `corpus` and writes the model folder to `out`. `tokenizer`: a `tokenizer.json`
  /// to use instead of training one. With `resume`, continues from `out/checkpoint` (same
  /// settings and tokenizer required). With `stopAfter`, returns nil after that many epochs of
  /// this call. Throws `ConfigError` for a corpus too short for one sequence, `BPETrainerError`
  /// for tokenizer settings that cannot be trained, `FileError` for a bad tokenizer file.
  @discardableResult
  public func run(
    corpus: TextCorpus, out: URL, tokenizer tokenizerFile: URL? = nil, resume: Bool = false,
    stopAfter: Int? = nil, progress: ProgressReporter? = nil
  ) throws -> (validationLoss: Double, seconds: Double)? {
    let trainDocuments = TextCorpus.documents(corpus.train)
    let validationDocuments = TextCorpus.documents(corpus.validation)
    guard !trainDocuments.isEmpty else {
      throw ConfigError("the training text is empty: nothing to pretrain on")
    }
    guard !validationDocuments.isEmpty else {
      throw ConfigError("the validation text is empty: nothing to report a loss on")
    }
    let checkpoints = out.appendingPathComponent("checkpoint")
    let store = CheckpointStore(folder: checkpoints)
    // Checked before anything is created, so a wrong --out is left as it was.
    if resume && !store.hasCommittedEpoch {
      throw ConfigError(
        "\(out.path): nothing to resume (no completed epoch of graft pretrain in checkpoint/)")
    }
    let vocabulary: BPEVocabulary
    if resume {
      vocabulary = try BPEVocabulary(tokenizerJSON: out.appendingPathComponent("tokenizer.json"))
    } else if let tokenizerFile {
      vocabulary = try BPEVocabulary(tokenizerJSON: tokenizerFile)
    } else {
      progress?.log("training a \(config.vocabSize)-token byte-level BPE")
      vocabulary = try BPETrainer(
        vocabSize: config.vocabSize, minFrequency: config.minFrequency
      ).train(TextCorpus.lines(corpus.train))
    }
    let tokenizer = try vocabulary.tokenizer()
    let eos = tokenizer.id(of: "<|endoftext|>")

    let lock = try RunFolder.Lock(out, what: "a graft pretrain run")
    defer { lock.release() }
    AtomicFile.removeTemporaryFiles(in: out)
    try store.removeLeftovers()
    if !resume { try vocabulary.write(folder: out) }

    var generator = RandomGenerator(seed: SeedMix.mix(config.seed, 0x696E_6974))  // "init"
    let modelConfig = config.modelConfig(vocabSize: vocabulary.tokens.count, eos: eos)
    let model = try GPT2(config: modelConfig, generator: &generator)
    self.model = model
    var hash = FNV1a64()
    vocabulary.tokenizerJSON().withUnsafeBytes { hash.update($0) }
    var record = config.json
    record["tokenizer"] = hash.tagged
    let settings = try jsonLine(record)
    let optimizer = AdamW(
      groups: ParameterGroup.defaultGroups(
        named: model.namedParameters(), lr: config.lr, weightDecay: config.weightDecay))
    var startEpoch = 0
    var metricLines: [String] = []
    var seconds = 0.0
    var lastValidation = Double.nan
    if resume, let files = try store.latest()?.folder {
      let resumed = try PretrainResume(
        folder: files, settings: settings, model: model, optimizer: optimizer, out: out)
      (startEpoch, metricLines, seconds) = (resumed.epoch, resumed.metricLines, resumed.seconds)
      lastValidation = resumed.state["validation_loss"] as? Double ?? .nan
      progress?.log("resuming after epoch \(startEpoch) of \(config.epochs)")
    }

    let trainStream = Self.stream(trainDocuments, tokenizer, eos: eos)
    let validationStream = Self.stream(validationDocuments, tokenizer, eos: eos)
    let n = config.nPositions
    let blocks = trainStream.count / n
    guard blocks >= 1 else {
      throw ConfigError(
        "the training text is \(trainStream.count) tokens, fewer than one sequence of "
          + "model.n_positions \(n); lower model.n_positions or give more text")
    }
    guard validationStream.count >= 2 else {
      throw ConfigError("the validation text is \(validationStream.count) token: too short")
    }
    let steps = (blocks + config.batchSize - 1) / config.batchSize
    let schedule = CosineSchedule(
      baseLR: config.lr, warmupSteps: min(config.warmupSteps, config.epochs * steps),
      totalSteps: config.epochs * steps, minLR: config.minLR)
    progress?.totalSteps = (config.epochs - startEpoch) * steps
    progress?.log(
      "\(trainStream.count) training tokens (\(blocks) sequences of \(n)), "
        + "\(validationStream.count) validation tokens, \(model.parameterCount) parameters")

    for (index, epoch) in (startEpoch..<config.epochs).enumerated() {
      if let stopAfter, index >= stopAfter { return nil }
      let started = Date()
      progress?.beginPhase("epoch \(epoch + 1)/\(config.epochs)", steps: steps)
      var shuffle = RandomGenerator(seed: SeedMix.mix(config.seed, 0x7368_7566, UInt64(epoch)))
      let order = shuffle.permutation(blocks)
      var lossSum = 0.0
      var seen = 0
      var step = epoch * steps
      for s in 0..<steps {
        let rows = order[(s * config.batchSize)..<min((s + 1) * config.batchSize, blocks)]
        let ids = rows.map { Array(trainStream[($0 * n)..<(($0 + 1) * n)]) }
        optimizer.learningRateScale = schedule.factor(at: step)
        model.train()
        model.dropoutGenerator = RandomGenerator(
          seed: SeedMix.mix(config.seed, 0x6472_6F70, UInt64(step)))  // "drop"
        let loss = GPT2.languageModelingLoss(logits: model.logits(.ids(ids)), labels: ids)
        loss.backward()
        optimizer.step()
        optimizer.zeroGrad()
        let value = Double(loss.item)
        guard value.isFinite else {
          throw ConfigError(
            "epoch \(epoch + 1), step \(step): the loss is \(value); lower optim.lr")
        }
        lossSum += value * Double(ids.count)
        seen += ids.count
        step += 1
        progress?.step(samples: ids.count, loss: lossSum / Double(seen))
      }
      let trainTime = Date().timeIntervalSince(started)
      lastValidation = validationLoss(model, validationStream)
      seconds += Date().timeIntervalSince(started)
      let trainLoss = lossSum / Double(max(seen, 1))
      let line: [String: Any] = [
        "epoch": epoch + 1, "train_loss": trainLoss, "validation_loss": lastValidation,
        "validation_perplexity": exp(lastValidation), "train_seconds": trainTime,
        "tokens_per_second": Double(seen * n) / max(trainTime, 1e-9),
      ]
      metricLines.append(try jsonLine(line))
      progress?.log(
        String(
          format:
            "epoch %d/%d  train loss %.4f  validation loss %.4f (perplexity %.1f)  %.0f tok/s",
          epoch + 1, config.epochs, trainLoss, lastValidation, exp(lastValidation),
          Double(seen * n) / max(trainTime, 1e-9)))
      // The epoch's weights, optimizer and state, committed as one unit (`CheckpointStore`).
      try PretrainResume.commit(
        epoch: epoch + 1, metricLines: metricLines, settings: settings, seconds: seconds,
        figures: ["validation_loss": lastValidation], model: model, optimizer: optimizer,
        store: store, out: out)
    }
    progress?.finish()

    // The model folder: config.json and model.safetensors beside the tokenizer files.
    model.eval()
    try model.save(folder: out)
    let summary: [String: Any] = [
      "settings": config.json, "validation_loss": lastValidation,
      "validation_perplexity": exp(lastValidation), "seconds": seconds,
      "train_tokens": trainStream.count, "validation_tokens": validationStream.count,
      "parameters": model.parameterCount, "peak_rss_bytes": peakResidentBytes(),
      "cpu_seconds": processCPUSeconds(), "graft_version": GraftVersion.string,
    ]
    let summaryData = try JSONSerialization.data(
      withJSONObject: summary, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    try AtomicFile.write(
      summaryData + Data("\n".utf8), to: out.appendingPathComponent("pretrain.json"))
    return (lastValidation, seconds)
  }

  /// The token stream of `documents`: each encoded, then `eos` when there is one.
  static func stream(_ documents: [String], _ tokenizer: BPETokenizer, eos: Int?) -> [Int] {
    var out: [Int] = []
    for d in documents {
      out += tokenizer.encode(d)
      if let eos { out.append(eos) }
    }
    return out
  }

  /// The mean next-token loss over `stream` in evaluation mode: full sequences of
  /// `n_positions` in batches, then the remainder (two tokens or more) as one shorter sequence.
  private func validationLoss(_ model: GPT2, _ stream: [Int]) -> Double {
    model.eval()
    let n = config.nPositions
    var sequences = (0..<(stream.count / n)).map { Array(stream[($0 * n)..<(($0 + 1) * n)]) }
    var total = 0.0
    var predicted = 0
    func run(_ batch: [[Int]]) {
      let loss = withNoGrad {
        GPT2.languageModelingLoss(logits: model.logits(.ids(batch)), labels: batch)
      }
      let count = batch.count * (batch[0].count - 1)
      total += Double(loss.item) * Double(count)
      predicted += count
    }
    while !sequences.isEmpty {
      let batch = Array(sequences.prefix(config.batchSize))
      sequences.removeFirst(batch.count)
      run(batch)
    }
    let rest = stream.count % n
    if rest >= 2 { run([Array(stream.suffix(rest))]) }
    return total / Double(max(predicted, 1))
  }
}
