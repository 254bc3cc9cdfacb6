import Foundation
import XCTest

@testable import GraftText

/// The caption fixture from Tools/make_caption_score_fixtures.py (pycocoevalcap's numbers).
private let captionFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  .appendingPathComponent("captions")

private func fixtureJSON(_ name: String) throws -> Any {
  let data = try Data(contentsOf: captionFixtures.appendingPathComponent(name))
  return try JSONSerialization.jsonObject(with: data)
}

final class CaptionScoreTests: XCTestCase {
  // MARK: - Against pycocoevalcap

  func testTokenizerMatchesPTBTokenizerOnEveryFixtureCaption() throws {
    let cases = try fixtureJSON("tokens.json") as! [[String: String]]
    XCTAssertGreaterThan(cases.count, 500)
    // The script tokenised them in one run, in this order.
    let normalized = CaptionTokenizer.normalize(batch: cases.map { $0["caption"]! })
    var mismatches: [String] = []
    for (c, got) in zip(cases, normalized) {
      let caption = c["caption"]!
      let expected = c["tokens"]!
      // Compare scalar by scalar: Swift's String equality would equate canonically equivalent
      // spellings that Python keeps apart.
      if !got.unicodeScalars.elementsEqual(expected.unicodeScalars) {
        mismatches.append(
          "\(caption.debugDescription): got \(got.debugDescription), "
            + "PTBTokenizer \(expected.debugDescription)")
      }
    }
    XCTAssertEqual(mismatches, [], mismatches.joined(separator: "\n"))
  }

  func testScoresMatchPycocoevalcap() throws {
    let expected = try fixtureJSON("expected.json") as! [String: Any]
    let input = try CaptionScoreInput.load(
      referencesPath: captionFixtures.appendingPathComponent("refs.json").path,
      hypothesesPath: captionFixtures.appendingPathComponent("hyps.json").path)
    XCTAssertEqual(input.videoIDs, expected["videos"] as! [String])
    XCTAssertEqual(input.unscoredVideos, expected["unscored_videos"] as! [String])

    let scores = input.score()
    for (name, value) in scores.named {
      let want = expected[name] as! Double
      XCTAssertEqual(value, want, accuracy: 1e-6, name)
      // The arithmetic follows the reference step by step; say so if it drifts at all.
      XCTAssertEqual(value, want, accuracy: 1e-12 * max(1, abs(want)), "\(name) beyond 1e-12")
    }

    let (hyps, refs) = CaptionMetrics.normalize(
      hypotheses: input.hypotheses, references: input.references)
    let rouge = zip(hyps, refs).map { CaptionMetrics.rougeL(candidate: $0, references: $1) }
    let cider = CaptionMetrics.cider(hypotheses: hyps, references: refs)
    let wantRouge = expected["rouge_l_per_video"] as! [Double]
    let wantCider = expected["cider_per_video"] as! [Double]
    XCTAssertEqual(rouge.count, wantRouge.count)
    XCTAssertEqual(cider.count, wantCider.count)
    for (k, (a, b)) in zip(rouge, wantRouge).enumerated() {
      XCTAssertEqual(a, b, accuracy: 1e-9, "ROUGE-L of \(input.videoIDs[k])")
    }
    for (k, (a, b)) in zip(cider, wantCider).enumerated() {
      XCTAssertEqual(a, b, accuracy: 1e-9, "CIDEr-D of \(input.videoIDs[k])")
    }
  }

  func testReferenceOnlyVideoChangesCIDErWhenIncluded() throws {
    // Leaving the reference-only video out is a decision with a visible effect: with it,
    // CIDEr's document frequencies and log(N) change. Guards against silently including it.
    let input = try CaptionScoreInput.load(
      referencesPath: captionFixtures.appendingPathComponent("refs.json").path,
      hypothesesPath: captionFixtures.appendingPathComponent("hyps.json").path)
    let expected = try fixtureJSON("expected.json") as! [String: Any]
    var widened = input
    widened.hypotheses.append("a man is playing a guitar")
    widened.references.append(["a man is playing a guitar", "a person plays music"])
    XCTAssertGreaterThan(abs(widened.score().cider - (expected["cider"] as! Double)), 1e-3)
  }

  // MARK: - Small cases worked by hand

  func testBLEUOfAnExactMatchIsOne() {
    let b = CaptionMetrics.bleu(
      hypotheses: ["a man is playing a guitar"],
      references: [["a man is playing a guitar", "someone plays music"]])
    for (k, v) in b.enumerated() { XCTAssertEqual(v, 1, accuracy: 1e-9, "BLEU-\(k + 1)") }
  }

  func testBLEUClosestLengthAndBrevityPenalty() {
    // Hypothesis "a cat" (2 words) against "a cat sat" (3) and "the a cat sat on it" (6):
    // closest reference length 3, unigram precision (2 + 1e-15)/(2 + 1e-9), bigram 1/1;
    // brevity penalty exp(1 - 3/2).
    let b = CaptionMetrics.bleu(
      hypotheses: ["a cat"], references: [["a cat sat", "the a cat sat on it"]])
    let ratio = (2 + 1e-15) / (3 + 1e-9)
    let bp = exp(1 - 1 / ratio)
    let p1 = (2 + 1e-15) / (2 + 1e-9)
    let p2 = (1 + 1e-15) / (1 + 1e-9)
    XCTAssertEqual(b[0], p1 * bp, accuracy: 1e-15)
    XCTAssertEqual(b[1], (p1 * p2).squareRoot() * bp, accuracy: 1e-15)
    // No trigram exists: the product falls to about 1e-15 / 1e-9.
    XCTAssertLessThan(b[2], 1e-1)
    // A tie in distance picks the shorter reference: lengths 1 and 3 around a hypothesis of 2.
    let tie = CaptionMetrics.bleu(hypotheses: ["a cat"], references: [["a", "a cat sat"]])
    XCTAssertEqual(tie[0], p1, accuracy: 1e-15)  // r = 1 < c = 2: no brevity penalty
  }

  func testBLEUClipsRepeatedWords() {
    // "the the the the" against "the cat": one "the" is credited, so BLEU-1 = 1/4 with the
    // brevity penalty not applying (4 > 2).
    let b = CaptionMetrics.bleu(hypotheses: ["the the the the"], references: [["the cat"]])
    XCTAssertEqual(b[0], (1 + 1e-15) / (4 + 1e-9), accuracy: 1e-15)
  }

  func testRougeLOfAKnownLCS() {
    // LCS("a b c d e", "a c e f") = 3 ("a c e"): P = 3/4, R = 3/5.
    let p = 3.0 / 4
    let r = 3.0 / 5
    let b2 = 1.2 * 1.2
    let want = (1 + b2) * p * r / (r + b2 * p)
    XCTAssertEqual(
      CaptionMetrics.rougeL(candidate: "a c e f", references: ["a b c d e"]), want,
      accuracy: 1e-15)
    XCTAssertEqual(CaptionMetrics.lcsLength(Array("abcde"), Array("acef")), 3)
    // Precision and recall are maximised separately over the references: P = 1 from the
    // second (3/3), R = 1 from the first (2/2), although neither alone gives F = 1.
    XCTAssertEqual(
      CaptionMetrics.rougeL(candidate: "a b c", references: ["a b", "a b c d e f"]), 1,
      accuracy: 1e-15)
    XCTAssertEqual(
      CaptionMetrics.rougeL(candidate: "x y", references: ["a b c d", "b a"]), 0)
  }

  func testRougeLTreatsAnEmptyCaptionAsOneEmptyToken() {
    // rouge.py splits on " ", so "" is [""]: it matches only an empty reference.
    XCTAssertEqual(CaptionMetrics.rougeL(candidate: "", references: ["a cat"]), 0)
    XCTAssertEqual(CaptionMetrics.rougeL(candidate: "", references: ["", "a cat"]), 1)
  }

  func testCIDErOfOneVideoIsZeroAndLengthPenaltyUsesBigrams() {
    // With one video, log(N) = 0 and every reference n-gram has df = 1, so all weights are 0.
    XCTAssertEqual(
      CaptionMetrics.cider(hypotheses: ["a cat"], references: [["a cat"]]), [0])
    // Two videos; video 0's hypothesis equals its only reference and shares nothing with
    // video 1: each order's cosine is 1, so the score is 10 exactly.
    let c = CaptionMetrics.cider(
      hypotheses: ["a red cat sleeps", "x"], references: [["a red cat sleeps"], ["dogs run"]])
    XCTAssertEqual(c[0], 10, accuracy: 1e-12)
    // The Gaussian penalty: "x" against its references "x" (cosine 1 on unigrams, none on
    // longer n-grams) and "x y" (unigram cosine 1/sqrt(2), lengths differ by one, so
    // e^(-1/72)); averaged over 4 orders and 2 references, x10.
    let d = CaptionMetrics.cider(hypotheses: ["x", "q"], references: [["x", "x y"], ["z w"]])
    let want = 10 * ((1 + (1 / 2.0.squareRoot()) * exp(-1.0 / 72)) / 4) / 2
    XCTAssertEqual(d[0], want, accuracy: 1e-12)
    XCTAssertEqual(d[1], 0)
  }

  func testNumPyPairwiseMean() {
    // 1e16 and sixteen ones: a running sum loses every 1 (NumPy: np.sum gives
    // 1.0000000000000016e+16, its eight accumulators keep them).
    let v = [1e16] + [Double](repeating: 1, count: 16)
    var running = 0.0
    for x in v { running += x }
    XCTAssertEqual(running, 1e16)
    XCTAssertEqual(CaptionMetrics.pairwiseSum(v[...]), 1.0000000000000016e+16)
    XCTAssertEqual(CaptionMetrics.mean(v), 588_235_294_117_648.0)
    XCTAssertEqual(CaptionMetrics.mean([1, 2, 3, 4]), 2.5)
  }

  // MARK: - Tokenizer cases

  func testTokenizerContractionsPunctuationNumbersHyphens() {
    XCTAssertEqual(
      CaptionTokenizer.tokens("I don't know, it's OK."),
      [
        "i", "do", "n't", "know", "it", "'s", "ok",
      ])
    XCTAssertEqual(
      CaptionTokenizer.tokens("They can't; we won't!"),
      [
        "they", "ca", "n't", "we", "wo", "n't",
      ])
    XCTAssertEqual(
      CaptionTokenizer.tokens("A 3-year-old (girl) has 1,000 toys -- at 5:30."),
      ["a", "3-year-old", "-lrb-", "girl", "-rrb-", "has", "1,000", "toys", "at", "5:30"])
    XCTAssertEqual(
      CaptionTokenizer.tokens("Mr. Bean in the U.S. ?!"),
      [
        "mr.", "bean", "in", "the", "u.s.", "?!",
      ])
    XCTAssertEqual(CaptionTokenizer.tokens("   "), [])
  }

  func testSingleLetterPeriodDependsOnTheNextCaption() {
    // The jar reads the wrapper's captions as lines of one file and looks past a line's end:
    // "with a." keeps its period unless the next caption starts with a word such as "The".
    XCTAssertEqual(
      CaptionTokenizer.normalize(batch: ["with a.", "The dog", "with a.", "the dog", "with a."]),
      ["with a", "the dog", "with a.", "the dog", "with a."])
    XCTAssertEqual(
      CaptionTokenizer.normalize(batch: ["a. The cat", "a. Abc"]), ["a the cat", "a. abc"])
    XCTAssertEqual(CaptionTokenizer.normalize("with a."), "with a.")
  }

  // MARK: - Input files

  private func parse(_ refs: String, _ hyps: String) throws -> CaptionScoreInput {
    try CaptionScoreInput.parse(
      references: Data(refs.utf8), referencesName: "refs.json",
      hypotheses: Data(hyps.utf8), hypothesesName: "hyps.json")
  }

  private func assertError(
    _ expected: CaptionScoreInputError, _ refs: String, _ hyps: String,
    line: UInt = #line
  ) {
    XCTAssertThrowsError(try parse(refs, hyps), line: line) { error in
      XCTAssertEqual(error as? CaptionScoreInputError, expected, line: line)
    }
  }

  func testInputPairsVideosAndIgnoresOtherKeys() throws {
    let input = try parse(
      #"{"videos": [{"video_id": "v1"}], "info": 3, "sentences": ["#
        + #"{"video_id": "v1", "caption": "a b", "sen_id": 0},"#
        + #"{"video_id": 7, "caption": "c d"}, {"video_id": "v1", "caption": "e f"},"#
        + #"{"video_id": "v9", "caption": "g"}]}"#,
      #"[{"video_id": "7", "caption": "c"}, {"video_id": "v1", "caption": "a"}]"#)
    XCTAssertEqual(input.videoIDs, ["7", "v1"])
    XCTAssertEqual(input.hypotheses, ["c", "a"])
    XCTAssertEqual(input.references, [["c d"], ["a b", "e f"]])
    XCTAssertEqual(input.unscoredVideos, ["v9"])
  }

  func testInputErrorsAreNamed() throws {
    let refs = #"{"sentences": [{"video_id": "v1", "caption": "a b"}]}"#
    assertError(
      .hypothesisWithoutReferences(path: "hyps.json", references: "refs.json", videoID: "v2"), refs,
      #"[{"video_id": "v1", "caption": "a"}, {"video_id": "v2", "caption": "b"}]"#)
    assertError(
      .duplicateHypothesis(path: "hyps.json", videoID: "v1"), refs,
      #"[{"video_id": "v1", "caption": "a"}, {"video_id": "v1", "caption": "b"}]"#)
    assertError(.noHypotheses(path: "hyps.json"), refs, "[]")
    // Every message names the file it is about.
    XCTAssertTrue(
      "\(CaptionScoreInputError.duplicateHypothesis(path: "h.json", videoID: "v1"))"
        .hasPrefix("h.json: "))
    XCTAssertThrowsError(try parse("{not json", "[]")) { error in
      guard case .notJSON(let path, _)? = error as? CaptionScoreInputError else {
        return XCTFail("\(error)")
      }
      XCTAssertEqual(path, "refs.json")
    }
    XCTAssertThrowsError(try parse(#"{"annotations": []}"#, "[]")) { error in
      guard case .badLayout(let path, let reason)? = error as? CaptionScoreInputError else {
        return XCTFail("\(error)")
      }
      XCTAssertEqual(path, "refs.json")
      XCTAssertTrue(reason.contains("sentences"), reason)
    }
    XCTAssertThrowsError(try parse(refs, #"[{"video_id": "v1"}]"#)) { error in
      guard case .badLayout(let path, let reason)? = error as? CaptionScoreInputError else {
        return XCTFail("\(error)")
      }
      XCTAssertEqual(path, "hyps.json")
      XCTAssertTrue(reason.contains("caption") && reason.contains("[0]"), reason)
    }
  }

  func testMissingFileIsNamed() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "graft-capscore-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let refs = dir.appendingPathComponent("refs.json")
    try Data(#"{"sentences": []}"#.utf8).write(to: refs)
    let missing = dir.appendingPathComponent("hyps.json").path
    XCTAssertThrowsError(
      try CaptionScoreInput.load(referencesPath: refs.path, hypothesesPath: missing)
    ) { error in
      XCTAssertEqual(error as? CaptionScoreInputError, .fileMissing(path: missing))
      XCTAssertEqual("\(error)", "\(missing): no such file")
    }
  }
}
