import Foundation
import GraftText
import XCTest

final class GenerationTests: XCTestCase {
  struct Case: Decodable {
    var prompt: [Int]
    var num_beams: Int
    var length_penalty: Float
    var max_new_tokens: Int
    var eos_token_id: Int
    var early_stopping: Bool
    var output: [Int]
  }

  func testGreedyAndBeamSearchMatchTransformers() throws {
    let model = try GPT2.load(folder: textFixtures.appendingPathComponent("gpt2-tiny"))
    let data = try Data(
      contentsOf: textFixtures.appendingPathComponent("gpt2_generation.json"))
    let cases = try JSONDecoder().decode([Case].self, from: data)
    XCTAssertGreaterThanOrEqual(cases.filter { $0.num_beams > 1 }.count, 5)
    for c in cases {
      let options = GenerationOptions(
        maxNewTokens: c.max_new_tokens, numBeams: c.num_beams, lengthPenalty: c.length_penalty,
        // The model's own end of text (0) comes from its config.
        eosTokenIDs: c.eos_token_id == 0 ? nil : [c.eos_token_id],
        earlyStopping: c.early_stopping)
      let generated = try model.generate(.ids([c.prompt]), options: options)
      XCTAssertEqual(
        c.prompt + generated, c.output,
        "\(c.num_beams) beams, length penalty \(c.length_penalty), eos \(c.eos_token_id)")
    }
  }

  func testEmbeddingsPromptAndOptionErrors() throws {
    let model = try GPT2.load(folder: textFixtures.appendingPathComponent("gpt2-tiny"))
    let prompt = [[33, 446, 287, 422]]
    let embedded = withNoGrad { model.tokenEmbeddings(prompt) }
    for beams in [1, 3] {
      let options = GenerationOptions(maxNewTokens: 6, numBeams: beams)
      XCTAssertEqual(
        try model.generate(.embeddings(embedded), options: options),
        try model.generate(.ids(prompt), options: options), "\(beams) beams")
    }
    // Without an end-of-text token that occurs, greedy decoding runs to the limit.
    XCTAssertEqual(
      try model.generate(.ids(prompt), options: GenerationOptions(maxNewTokens: 7, eosTokenIDs: []))
        .count, 7)
    XCTAssertThrowsError(
      try model.generate(.ids(prompt), options: GenerationOptions(maxNewTokens: 46))
    ) { e in
      XCTAssertTrue("\(e)".contains("the model has 48"), "\(e)")
    }
    XCTAssertThrowsError(try model.generate(.ids([[1], [2]])))
    XCTAssertThrowsError(try model.generate(.ids([[1]]), options: GenerationOptions(numBeams: 0)))
  }
}
