import Foundation

/// BLEU-1…4, ROUGE-L and CIDEr-D of a set of generated captions, as the COCO caption evaluation
/// code (the `pycocoevalcap` package: `Bleu(4)`, `Rouge()`, `Cider()`) computes them.
public struct CaptionScores: Equatable, Sendable {
  /// Corpus BLEU-1, BLEU-2, BLEU-3, BLEU-4.
  public var bleu: [Double]
  /// ROUGE-L (β = 1.2), the mean over videos.
  public var rougeL: Double
  /// CIDEr-D (σ = 6, ×10), the mean over videos.
  public var cider: Double

  /// Scores from their parts.
  public init(bleu: [Double], rougeL: Double, cider: Double) {
    self.bleu = bleu
    self.rougeL = rougeL
    self.cider = cider
  }

  /// The scores under the names `graft score captions --json` prints.
  public var named: [(String, Double)] {
    [
      ("bleu_1", bleu[0]), ("bleu_2", bleu[1]), ("bleu_3", bleu[2]), ("bleu_4", bleu[3]),
      ("rouge_l", rougeL), ("cider", cider),
    ]
  }
}

/// The three COCO scorers on captions that are already normalised (`CaptionTokenizer`), one
/// hypothesis and one or more references per video, videos in the order given.
///
/// The arithmetic follows pycocoevalcap's definitions step by step, in its order of operations,
/// so results agree with it to the last bits (the only known source of a difference is
/// NumPy's own `log`, which may round differently from the C library's in the last bit):
/// - BLEU (`bleu_scorer.py`): n-gram matches clipped by the most of any one reference, summed
///   over the corpus with the guess counts; the reference length of each video is the one
///   closest to the hypothesis length (the shorter on a tie); precisions as
///   `(correct + 1e-15) / (guess + 1e-9)`, multiplied up cumulatively and raised to 1/n; brevity
///   penalty `exp(1 - 1/ratio)` when `ratio = (c + 1e-15) / (r + 1e-9) < 1`.
/// - ROUGE-L (`rouge.py`): per video, the largest LCS precision and the largest LCS recall over
///   the references (each maximised on its own), `F = (1 + β²)PR / (R + β²P)` with β = 1.2, and
///   0 when either is 0; the mean over videos. Tokens are split on single spaces, so an empty
///   caption counts as one empty token, as there.
/// - CIDEr-D (`cider_scorer.py`): TF-IDF vectors of 1- to 4-grams with document frequencies
///   counted over the videos' reference sets and `log(number of videos)` as the reference
///   length; per reference, the cosine similarity with the hypothesis' weights clipped by the
///   reference's, times the Gaussian `e^(-Δ²/2σ²)` with σ = 6, where Δ is the difference in
///   bigram counts (the code counts the length of a caption that way); averaged over n-gram
///   orders and references, ×10; the mean over videos.
/// Means are NumPy's pairwise sums divided by the count.
public enum CaptionMetrics {
  /// BLEU's smoothing constants as `bleu_scorer.py` has them.
  static let small = 1e-9
  static let tiny = 1e-15
  /// ROUGE-L's recall weight.
  public static let rougeBeta = 1.2
  /// CIDEr-D's length-penalty width.
  public static let ciderSigma = 6.0

  /// Scores raw captions: normalises them with `CaptionTokenizer`, then runs the three scorers.
  /// `hypotheses` and `references` must have the same count, one hypothesis and at least one
  /// reference per video.
  public static func score(hypotheses: [String], references: [[String]]) -> CaptionScores {
    let (hyps, refs) = normalize(hypotheses: hypotheses, references: references)
    return scoreNormalized(hypotheses: hyps, references: refs)
  }

  /// Normalises captions as the COCO pipeline does: all references in video order as one
  /// tokenizer run, all hypotheses as another (`CaptionTokenizer.tokens(batch:)`).
  public static func normalize(hypotheses: [String], references: [[String]])
    -> (hypotheses: [String], references: [[String]])
  {
    let hyps = CaptionTokenizer.normalize(batch: hypotheses)
    var flat = CaptionTokenizer.normalize(batch: references.flatMap { $0 })[...]
    let refs = references.map { set in
      let these = Array(flat.prefix(set.count))
      flat = flat.dropFirst(set.count)
      return these
    }
    return (hyps, refs)
  }

  /// The three scorers on captions already normalised (tokens joined by single spaces).
  public static func scoreNormalized(hypotheses: [String], references: [[String]])
    -> CaptionScores
  {
    precondition(hypotheses.count == references.count, "one hypothesis per video")
    precondition(references.allSatisfy { !$0.isEmpty }, "every video needs a reference")
    return CaptionScores(
      bleu: bleu(hypotheses: hypotheses, references: references),
      rougeL: mean(zip(hypotheses, references).map { rougeL(candidate: $0, references: $1) }),
      cider: mean(cider(hypotheses: hypotheses, references: references)))
  }

  // MARK: - Tokens

  /// Interns tokens by their Unicode scalars (Python compares strings by code point, Swift's
  /// `String` by canonical equivalence).
  struct Vocabulary {
    var ids: [[UInt32]: Int] = [:]

    mutating func id(_ token: [UInt32]) -> Int {
      if let i = ids[token] { return i }
      let i = ids.count
      ids[token] = i
      return i
    }

    /// Python's `str.split()`: runs of white space separate, none at the ends.
    mutating func splitWhitespace(_ s: String) -> [Int] {
      var out: [Int] = []
      var cur: [UInt32] = []
      for u in s.unicodeScalars {
        if isPythonSpace(u) {
          if !cur.isEmpty { out.append(id(cur)) }
          cur = []
        } else {
          cur.append(u.value)
        }
      }
      if !cur.isEmpty { out.append(id(cur)) }
      return out
    }

    /// Python's `str.split(" ")`: every single space separates, empty pieces kept.
    mutating func splitSpaces(_ s: String) -> [Int] {
      var out: [Int] = []
      var cur: [UInt32] = []
      for u in s.unicodeScalars {
        if u == " " {
          out.append(id(cur))
          cur = []
        } else {
          cur.append(u.value)
        }
      }
      out.append(id(cur))
      return out
    }

    private func isPythonSpace(_ u: Unicode.Scalar) -> Bool {
      u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
    }
  }

  /// N-gram counts of orders 1…n, each order's n-grams in order of first occurrence (the
  /// order Python's dictionary iterates in, which fixes the order of CIDEr's float sums).
  struct NGramCounts {
    var grams: [[[Int]]]
    var counts: [[[Int]: Int]]

    init(_ words: [Int], n: Int) {
      grams = Array(repeating: [], count: n)
      counts = Array(repeating: [:], count: n)
      for k in 1...n where words.count >= k {
        for i in 0...(words.count - k) {
          let g = Array(words[i..<(i + k)])
          if let c = counts[k - 1][g] {
            counts[k - 1][g] = c + 1
          } else {
            counts[k - 1][g] = 1
            grams[k - 1].append(g)
          }
        }
      }
    }
  }

  // MARK: - BLEU

  /// Corpus BLEU-1…`n` with the closest-reference length rule.
  public static func bleu(hypotheses: [String], references: [[String]], n: Int = 4) -> [Double] {
    var vocab = Vocabulary()
    var testTotal = 0
    var refTotal = 0
    var guess = [Int](repeating: 0, count: n)
    var correct = [Int](repeating: 0, count: n)
    for (hyp, refs) in zip(hypotheses, references) {
      var maxCounts = [[Int]: Int]()
      var refLengths: [Int] = []
      for r in refs {
        let words = vocab.splitWhitespace(r)
        refLengths.append(words.count)
        let c = NGramCounts(words, n: n)
        for order in c.counts {
          for (g, k) in order { maxCounts[g] = max(maxCounts[g] ?? 0, k) }
        }
      }
      let words = vocab.splitWhitespace(hyp)
      let testLength = words.count
      // Closest reference length; on a tie the shorter (Python's min over (|l - c|, l)).
      let closest = refLengths.min { a, b in
        (abs(a - testLength), a) < (abs(b - testLength), b)
      }!
      testTotal += testLength
      refTotal += closest
      let c = NGramCounts(words, n: n)
      for k in 0..<n {
        guess[k] += max(0, testLength - k)
        for (g, count) in c.counts[k] { correct[k] += min(maxCounts[g] ?? 0, count) }
      }
    }
    var scores: [Double] = []
    var product = 1.0
    for k in 0..<n {
      product *= (Double(correct[k]) + tiny) / (Double(guess[k]) + small)
      scores.append(pow(product, 1.0 / Double(k + 1)))
    }
    let ratio = (Double(testTotal) + tiny) / (Double(refTotal) + small)
    if ratio < 1 {
      let penalty = exp(1 - 1 / ratio)
      for k in 0..<n { scores[k] *= penalty }
    }
    return scores
  }

  // MARK: - ROUGE-L

  /// Length of the longest common subsequence of two token sequences.
  public static func lcsLength<T: Equatable>(_ a: [T], _ b: [T]) -> Int {
    guard !a.isEmpty && !b.isEmpty else { return 0 }
    var previous = [Int](repeating: 0, count: b.count + 1)
    var row = previous
    for x in a {
      for (j, y) in b.enumerated() {
        row[j + 1] = x == y ? previous[j] + 1 : max(previous[j + 1], row[j])
      }
      swap(&row, &previous)
    }
    return previous[b.count]
  }

  /// ROUGE-L of one candidate against its references (β = 1.2; precision and recall each
  /// maximised over the references).
  public static func rougeL(candidate: String, references: [String]) -> Double {
    var vocab = Vocabulary()
    let c = vocab.splitSpaces(candidate)
    var bestPrecision = -Double.infinity
    var bestRecall = -Double.infinity
    for r in references {
      let t = vocab.splitSpaces(r)
      let lcs = Double(lcsLength(t, c))
      bestPrecision = max(bestPrecision, lcs / Double(c.count))
      bestRecall = max(bestRecall, lcs / Double(t.count))
    }
    guard bestPrecision != 0 && bestRecall != 0 else { return 0 }
    let b2 = rougeBeta * rougeBeta
    return ((1 + b2) * bestPrecision * bestRecall) / (bestRecall + b2 * bestPrecision)
  }

  // MARK: - CIDEr-D

  /// CIDEr-D of each video (×10), with document frequencies from these videos' references.
  public static func cider(hypotheses: [String], references: [[String]], n: Int = 4)
    -> [Double]
  {
    var vocab = Vocabulary()
    let hyps = hypotheses.map { NGramCounts(vocab.splitWhitespace($0), n: n) }
    let refs = references.map { $0.map { NGramCounts(vocab.splitWhitespace($0), n: n) } }
    var documentFrequency = [[Int]: Double]()
    for set in refs {
      var seen = Set<[Int]>()
      for r in set {
        for order in r.grams { seen.formUnion(order) }
      }
      for g in seen { documentFrequency[g, default: 0] += 1 }
    }
    let refLength = log(Double(references.count))
    // The code raises NumPy's `e` (Python's `math.e`) to a power rather than calling `exp`.
    let e = 2.718281828459045

    struct Vector {
      var weights: [[[Int]: Double]]
      var grams: [[[Int]]]
      var norms: [Double]
      var length: Int
    }
    func vector(_ c: NGramCounts) -> Vector {
      var weights = [[[Int]: Double]](repeating: [:], count: n)
      var norms = [Double](repeating: 0, count: n)
      for k in 0..<n {
        for g in c.grams[k] {
          let df = log(max(1.0, documentFrequency[g] ?? 0))
          let w = Double(c.counts[k][g]!) * (refLength - df)
          weights[k][g] = w
          norms[k] += w * w
        }
      }
      // The code's "length" is the number of bigrams.
      let length = c.counts.count > 1 ? c.counts[1].values.reduce(0, +) : 0
      return Vector(
        weights: weights, grams: c.grams, norms: norms.map { $0.squareRoot() },
        length: length)
    }

    var scores: [Double] = []
    for (h, set) in zip(hyps, refs) {
      let vh = vector(h)
      var sum = [Double](repeating: 0, count: n)
      for r in set {
        let vr = vector(r)
        let delta = Double(vh.length - vr.length)
        let penalty = pow(e, -(delta * delta) / (2 * ciderSigma * ciderSigma))
        for k in 0..<n {
          var val = 0.0
          for g in vh.grams[k] {
            let a = vh.weights[k][g]!
            let b = vr.weights[k][g] ?? 0
            val += min(a, b) * b
          }
          if vh.norms[k] != 0 && vr.norms[k] != 0 { val /= vh.norms[k] * vr.norms[k] }
          val *= penalty
          sum[k] += val
        }
      }
      var score = mean(sum)
      score /= Double(set.count)
      score *= 10
      scores.append(score)
    }
    return scores
  }

  // MARK: - Means

  /// NumPy's `mean` of a float64 array: its pairwise sum (eight accumulators in blocks of up
  /// to 128) divided by the count.
  public static func mean(_ values: [Double]) -> Double {
    (0.0 + pairwiseSum(values[...])) / Double(values.count)
  }

  static func pairwiseSum(_ a: ArraySlice<Double>) -> Double {
    let n = a.count
    let base = a.startIndex
    if n < 8 {
      var sum = 0.0
      for x in a { sum += x }
      return sum
    }
    if n <= 128 {
      var r = Array(a[base..<(base + 8)])
      var i = 8
      while i < n - n % 8 {
        for j in 0..<8 { r[j] += a[base + i + j] }
        i += 8
      }
      var sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
      while i < n {
        sum += a[base + i]
        i += 1
      }
      return sum
    }
    var half = n / 2
    half -= half % 8
    return pairwiseSum(a[base..<(base + half)]) + pairwiseSum(a[(base + half)...])
  }
}
