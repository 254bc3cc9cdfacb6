import Foundation
import XCTest

@testable import GraftTensor

/// What `Tools/make_safetensors_fixture.py` recorded about the files it wrote.
private struct FixtureExpectations: Decodable {
  struct Entry: Decodable {
    let dtype: String
    let shape: [Int]
    let bits: [UInt32]?
    let ints: [Int]?
  }
  struct Input: Decodable {
    let shape: [Int]
    let bits: [UInt32]
  }
  let metadata: [String: String]
  let tensors: [String: Entry]
  let writer_metadata: [String: String]
  let writer_inputs: [String: Input]
}

final class SafetensorsTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-safetensors-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  private var fixtures: URL {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  }

  private func loadExpectations() throws -> FixtureExpectations {
    let data = try Data(contentsOf: fixtures.appendingPathComponent("python_tensors.json"))
    return try JSONDecoder().decode(FixtureExpectations.self, from: data)
  }

  // MARK: Files written by Python

  func testReadsEveryDTypeFromFileWrittenByPython() throws {
    let expected = try loadExpectations()
    let file = try SafetensorsFile(
      contentsOf: fixtures.appendingPathComponent("python_tensors.safetensors"))
    XCTAssertEqual(file.names, expected.tensors.keys.sorted())
    XCTAssertEqual(file.metadata, expected.metadata)
    for (name, entry) in expected.tensors {
      let info = try file.info(name)
      XCTAssertEqual(info.dtype.rawValue, entry.dtype, name)
      XCTAssertEqual(info.shape, entry.shape, name)
      let tensor = try file.tensor(name)
      XCTAssertEqual(tensor.shape, entry.shape, name)
      XCTAssertEqual(tensor.name, name)
      if let bits = entry.bits {
        XCTAssertEqual(tensor.scalars.map(\.bitPattern), bits, name)
      } else {
        let ints = try XCTUnwrap(entry.ints, name)
        XCTAssertEqual(try file.intArray(name), ints, name)
        XCTAssertEqual(tensor.scalars, ints.map(Float.init), name)
      }
    }
    // Both dtype sizes of the index tensors, a scalar and an empty tensor are covered.
    XCTAssertEqual(try file.info("i64_scalar").shape, [])
    XCTAssertEqual(try file.info("f32_empty").shape, [0, 3])
    XCTAssertEqual(try file.tensor("f32_empty").count, 0)
    XCTAssertEqual(
      Set(expected.tensors.values.map(\.dtype)), ["F32", "F16", "BF16", "F64", "I64", "I32"])
  }

  func testAlignedF32IsBorrowedFromTheMappingAndCopyOnWrite() throws {
    let url = fixtures.appendingPathComponent("python_tensors.safetensors")
    let original = try Data(contentsOf: url)
    let file = try SafetensorsFile(contentsOf: url)
    let a = try file.tensor("f32_matrix")
    let b = try file.tensor("f32_matrix")
    // Zero copy: both views are the same mapped bytes.
    XCTAssertEqual(a.pointer, b.pointer)
    let before = a[0, 0]
    a[0, 0] = before + 100
    XCTAssertEqual(b[0, 0], before + 100)
    // The mapping is private: the file on disk and a fresh mapping still hold the old value.
    XCTAssertEqual(try Data(contentsOf: url), original)
    XCTAssertEqual(try SafetensorsFile(contentsOf: url).tensor("f32_matrix")[0, 0], before)
    // Converted dtypes get fresh storage each time.
    let h1 = try file.tensor("f16_matrix")
    let h2 = try file.tensor("f16_matrix")
    XCTAssertNotEqual(h1.pointer, h2.pointer)
  }

  func testBorrowedTensorOutlivesTheFileObject() throws {
    let url = directory.appendingPathComponent("keep.safetensors")
    try Safetensors.write(["w": Tensor([1, 2, 3, 4], shape: [2, 2])], to: url)
    let tensor = try SafetensorsFile(contentsOf: url).tensor("w")
    // The SafetensorsFile is gone; the storage keeps the mapping alive.
    XCTAssertEqual(tensor.scalars, [1, 2, 3, 4])
  }

  // MARK: Writing

  func testWriterMatchesPythonPackageBytes() throws {
    let expected = try loadExpectations()
    var tensors: [String: Tensor] = [:]
    for (name, input) in expected.writer_inputs {
      tensors[name] = Tensor(input.bits.map(Float.init(bitPattern:)), shape: input.shape)
    }
    for dtype in [SafetensorsDType.f32, .f16, .bf16] {
      let reference = try Data(
        contentsOf: fixtures.appendingPathComponent(
          "python_writer_\(dtype.rawValue.lowercased()).safetensors"))
      let bytes = try Safetensors.serialize(
        tensors, metadata: expected.writer_metadata, dtype: dtype)
      XCTAssertEqual(bytes, reference, "serialize as \(dtype.rawValue)")
      let url = directory.appendingPathComponent("w_\(dtype.rawValue).safetensors")
      try Safetensors.write(tensors, metadata: expected.writer_metadata, dtype: dtype, to: url)
      XCTAssertEqual(try Data(contentsOf: url), reference, "write as \(dtype.rawValue)")
    }
  }

  func testRoundTripF32IsExact() throws {
    var rng = RandomGenerator(seed: 7)
    let tensors: [String: Tensor] = [
      "scalar": Tensor(scalar: -0.0),
      "vector": Tensor([1, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
      ),
      "matrix": Tensor.randn([5, 7], generator: &rng),
      "layers.0/attn \"q\"\n": Tensor.randn([2, 3, 4], generator: &rng),
      "rank4": Tensor.randn([2, 1, 3, 2], generator: &rng),
      "empty": Tensor(shape: [3, 0]),
      "é": Tensor([42]),
    ]
    let metadata = ["format": "pt", "quote\"s": "line\nbreak\t\u{01}", "ünï": "✓"]
    let url = directory.appendingPathComponent("round.safetensors")
    try Safetensors.write(tensors, metadata: metadata, to: url)
    let file = try SafetensorsFile(contentsOf: url)
    XCTAssertEqual(Set(file.names), Set(tensors.keys))
    XCTAssertEqual(file.metadata, metadata)
    let loaded = try file.tensors()
    for (name, tensor) in tensors {
      let back = try XCTUnwrap(loaded[name], name)
      XCTAssertEqual(back.shape, tensor.shape, name)
      XCTAssertEqual(back.scalars.map(\.bitPattern), tensor.scalars.map(\.bitPattern), name)
      XCTAssertEqual(try file.info(name).dtype, .f32)
    }
    // Python's writer would have padded the blob to 8 bytes, so every F32 tensor is borrowed.
    XCTAssertEqual(try file.tensor("matrix").pointer, loaded["matrix"]!.pointer)
  }

  func testHalfPrecisionWritesRoundToNearestEven() throws {
    let nan = Float.nan
    let values: [Float] = [
      1.00390625,  // 1 + 2^-8: BF16 tie, rounds down to the even 1.0; exact in F16
      1.01171875,  // 1 + 3·2^-8: BF16 tie, rounds up to the even 1.015625
      1.0 / 3.0,
      .greatestFiniteMagnitude,  // BF16 rounds up to inf; F16 overflows to inf
      -65520,  // F16 tie between 65504 and 65536 (= inf): even is inf
      1e-8,  // F16: below half the smallest subnormal (2^-24 ≈ 5.96e-8) → 0
      nan,
    ]
    // Hand-worked results: BF16 keeps 8 significant bits, F16 11 (and tops out at 65504).
    let bf16: [Float] = [
      1.0, 1.015625, 0.333984375, .infinity, -65536,
      Float(sign: .plus, exponent: -27, significand: 1.34375), nan,
    ]
    let f16: [Float] = [1.00390625, 1.01171875, 0.333251953125, .infinity, -.infinity, 0, nan]
    for (dtype, expected) in [(SafetensorsDType.bf16, bf16), (.f16, f16)] {
      let url = directory.appendingPathComponent("half_\(dtype.rawValue).safetensors")
      try Safetensors.write(["x": Tensor(values)], dtype: dtype, to: url)
      let file = try SafetensorsFile(contentsOf: url)
      XCTAssertEqual(try file.info("x").dtype, dtype)
      let back = try file.tensor("x").scalars
      for (i, (got, want)) in zip(back, expected).enumerated() {
        if want.isNaN {
          XCTAssertTrue(got.isNaN, "\(dtype.rawValue) element \(i): \(got)")
        } else {
          XCTAssertEqual(got, want, "\(dtype.rawValue) element \(i)")
        }
      }
    }
    XCTAssertEqual(BFloat16.bits(1e-8), 0x322C)
    XCTAssertEqual(BFloat16.bits(-.nan), 0xFFC0)
  }

  func testHeaderLayoutIsPaddedAndSorted() throws {
    let tensors = ["b": Tensor([1, 2, 3]), "a": Tensor([4]), "c": Tensor(shape: [0])]
    let bytes = try Safetensors.serialize(tensors, metadata: ["k": "v"])
    let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.1) << (8 * $1.0) }
    XCTAssertEqual(headerLength % 8, 0)
    let json =
      #"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
      + #""b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]},"#
      + #""c":{"dtype":"F32","shape":[0],"data_offsets":[16,16]}}"#
    let padding = headerLength - json.utf8.count
    XCTAssertTrue((0..<8).contains(padding), "padding \(padding)")
    XCTAssertEqual(
      String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self),
      json + String(repeating: " ", count: max(padding, 0)))
    XCTAssertEqual(bytes.count, 8 + headerLength + 16)
    XCTAssertEqual(
      Array(bytes.suffix(16)),
      [4, 1, 2, 3].flatMap { (v: Float) in
        withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init)
      })
  }

  func testUnalignedF32IsCopiedCorrectly() throws {
    // A header of odd length puts the blob at an odd address; the reader must copy, not borrow.
    let header = #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]} }"#
    XCTAssertEqual(header.utf8.count % 2, 1)
    let blob = [Float(1.5), -2].flatMap {
      withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init)
    }
    let url = try writeRaw("odd.safetensors", header: header, blob: blob)
    let file = try SafetensorsFile(contentsOf: url)
    let a = try file.tensor("x")
    XCTAssertEqual(a.scalars, [1.5, -2])
    XCTAssertNotEqual(a.pointer, try file.tensor("x").pointer)
  }

  func testOverwritingAMappedFileLeavesBorrowedTensorsIntact() throws {
    let url = directory.appendingPathComponent("model.safetensors")
    try Safetensors.write(["w": Tensor([1, 2, 3])], to: url)
    let old = try SafetensorsFile(contentsOf: url).tensor("w")
    try Safetensors.write(["w": Tensor([7, 8, 9])], to: url)
    XCTAssertEqual(old.scalars, [1, 2, 3])
    XCTAssertEqual(try SafetensorsFile(contentsOf: url).tensor("w").scalars, [7, 8, 9])
  }

  func testWriterRejectsBadRequests() throws {
    let url = directory.appendingPathComponent("bad_write.safetensors")
    assertThrows(.invalidWrite, containing: url.lastPathComponent) {
      try Safetensors.write(["x": Tensor([1])], dtype: .i64, to: url)
    }
    assertThrows(.invalidWrite, containing: "__metadata__") {
      try Safetensors.write(["__metadata__": Tensor([1])], to: url)
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
  }

  // MARK: Lookups

  func testUnknownNameAndNonIntegerIntArrayAreErrors() throws {
    let url = directory.appendingPathComponent("lookup.safetensors")
    try Safetensors.write(["w": Tensor([1, 2])], to: url)
    let file = try SafetensorsFile(contentsOf: url)
    assertThrows(.tensorNotFound, containing: "lookup.safetensors") { _ = try file.tensor("nope") }
    assertThrows(.tensorNotFound, containing: "'nope'") { _ = try file.intArray("nope") }
    assertThrows(.notIntegerTensor, containing: "lookup.safetensors") { _ = try file.intArray("w") }
    XCTAssertTrue(file.contains("w"))
    XCTAssertFalse(file.contains("nope"))
  }

  // MARK: Malformed files: each problem has its own error kind and names the file

  func testMissingFile() {
    let url = directory.appendingPathComponent("missing.safetensors")
    assertOpenFails(url, .fileNotFound)
  }

  func testDirectoryIsNotReadable() {
    assertOpenFails(directory, .readFailed)
  }

  func testEmptyFile() throws {
    let url = directory.appendingPathComponent("empty.safetensors")
    try Data().write(to: url)
    assertOpenFails(url, .emptyFile)
  }

  func testFileShorterThanHeaderLength() throws {
    let url = directory.appendingPathComponent("short.safetensors")
    try Data([1, 0, 0, 0, 0]).write(to: url)
    assertOpenFails(url, .fileTooShort)
  }

  func testHeaderLengthPastEndOfFile() throws {
    let header = #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
    let url = try writeRaw(
      "long_header.safetensors", header: header, blob: [0, 0, 0, 0],
      headerLength: UInt64(header.utf8.count + 5))
    assertOpenFails(url, .headerLengthOutOfRange)
    let huge = try writeRaw("huge_header.safetensors", header: "{}", blob: [], headerLength: .max)
    assertOpenFails(huge, .headerLengthOutOfRange)
  }

  func testInvalidJSON() throws {
    assertOpenFails(
      try writeRaw("json.safetensors", header: #"{"x": {"dtype": "F32""#), .invalidJSON)
    assertOpenFails(try writeRaw("zero.safetensors", header: ""), .invalidJSON)
    assertOpenFails(
      try writeRaw(
        "utf8.safetensors", headerBytes: Array(#"{""#.utf8) + [0xFF] + Array(#"":1}"#.utf8)),
      .invalidJSON)
    let entry = #"{"dtype":"F32","shape":[0],"data_offsets":[0,0]}"#
    let cases = [
      ("comma", #"{"a":\#(entry),}"#, "unexpected '}' at offset 54"),
      ("duplicate", #"{"a":\#(entry),"a":\#(entry)}"#, "duplicate key 'a'"),
      ("trailing", #"{"a":\#(entry)} x"#, "after the top-level value"),
      ("leadingzero", #"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#, "leading zero"),
      ("surrogate", #"{"\ud800":\#(entry)}"#, "unpaired surrogate"),
      ("control", "{\"a\tb\":\(entry)}", "control characters"),
      ("deep", String(repeating: "[", count: 100_000), "nested deeper"),
    ]
    for (name, header, detail) in cases {
      let error = assertOpenFails(try writeRaw("\(name).safetensors", header: header), .invalidJSON)
      XCTAssertTrue(
        error?.description.contains(detail) ?? false, "\(name): \(String(describing: error))")
    }
  }

  func testHeaderStringEscapesAreDecoded() throws {
    let header =
      #"{"__metadata__":{"k":"tab\there \"q\" \\ \/"},"#
      + #""caf\u00e9 \ud83d\ude00":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#
    let blob = withUnsafeBytes(of: Float(2.5).bitPattern.littleEndian, Array.init)
    let file = try SafetensorsFile(
      contentsOf: try writeRaw("escapes.safetensors", header: header, blob: blob))
    XCTAssertEqual(file.names, ["café 😀"])
    XCTAssertEqual(file.metadata, ["k": "tab\there \"q\" \\ /"])
    XCTAssertEqual(try file.tensor("café 😀").item, 2.5)
  }

  func testHeaderNotAnObjectOfEntries() throws {
    let cases = [
      ("array", "[1, 2]"),
      ("entry", #"{"x": 3}"#),
      ("nodtype", #"{"x":{"shape":[1],"data_offsets":[0,4]}}"#),
      ("negshape", #"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#),
      ("fracshape", #"{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#),
      ("offsets3", #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#),
      ("reversed", #"{"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#),
    ]
    for (name, header) in cases {
      let url = try writeRaw("\(name).safetensors", header: header, blob: [0, 0, 0, 0])
      assertOpenFails(url, .invalidHeader)
    }
  }

  func testUnknownDType() throws {
    let header = #"{"qweight":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}"#
    let url = try writeRaw("dtype.safetensors", header: header, blob: [0, 0])
    let error = assertOpenFails(url, .unknownDType)
    XCTAssertTrue(error?.description.contains("Q4_K") ?? false)
    XCTAssertTrue(error?.description.contains("qweight") ?? false)
  }

  func testDataSizeDoesNotMatchShape() throws {
    // Shape [2, 2] of F32 needs 16 bytes; the offsets give 12.
    let header = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#
    let url = try writeRaw(
      "size.safetensors", header: header, blob: [UInt8](repeating: 0, count: 16))
    let error = assertOpenFails(url, .dataSizeMismatch)
    XCTAssertTrue(error?.description.contains("'w'") ?? false)
    // A shape whose byte count overflows is the same error, not a crash.
    let big = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#
    assertOpenFails(
      try writeRaw("overflow.safetensors", header: big, blob: [0, 0, 0, 0]), .dataSizeMismatch)
  }

  func testOffsetsPastEndOfData() throws {
    // The header is consistent, but the file stops 4 bytes short of the tensor's end.
    let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
    let url = try writeRaw(
      "truncated.safetensors", header: header, blob: [UInt8](repeating: 0, count: 12))
    assertOpenFails(url, .offsetsOutOfRange)
  }

  func testOverlappingTensors() throws {
    let header =
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
      + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    let url = try writeRaw(
      "overlap.safetensors", header: header, blob: [UInt8](repeating: 0, count: 12))
    let error = assertOpenFails(url, .overlappingTensors)
    XCTAssertTrue(error?.description.contains("'a'") ?? false)
    XCTAssertTrue(error?.description.contains("'b'") ?? false)
    // An empty tensor inside another tensor's bytes shares nothing with it.
    let empty =
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
      + #""e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
    let ok = try writeRaw(
      "empty_inside.safetensors", header: empty, blob: [UInt8](repeating: 0, count: 8))
    XCTAssertEqual(try SafetensorsFile(contentsOf: ok).tensor("e").shape, [0])
  }

  func testMetadataThatIsNotStrings() throws {
    let header =
      #"{"__metadata__":{"epoch":3},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
    let url = try writeRaw("meta.safetensors", header: header, blob: [0, 0, 0, 0])
    assertOpenFails(url, .invalidMetadata)
    let list = #"{"__metadata__":["a"]}"#
    assertOpenFails(try writeRaw("meta_list.safetensors", header: list), .invalidMetadata)
  }

  // MARK: AtomicFile

  func testAtomicWriteReplacesWholeFileOrNothing() throws {
    let url = directory.appendingPathComponent("result.json")
    try AtomicFile.write(Data("old".utf8), to: url)
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "old")

    struct Interrupted: Error {}
    XCTAssertThrowsError(
      try AtomicFile.write(to: url) { output in
        try output.write(Data("new, partial".utf8))
        throw Interrupted()
      }
    ) { XCTAssertTrue($0 is Interrupted, "body errors pass through unchanged: \($0)") }
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "old")
    // The temporary file was removed.
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: directory.path), ["result.json"])

    try AtomicFile.write(to: url) { output in
      try output.write(Data("new ".utf8))
      try output.write(Data("content".utf8))
      XCTAssertEqual(output.bytesWritten, 11)
    }
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "new content")
  }

  func testAtomicWriteErrorNamesThePath() {
    let url = directory.appendingPathComponent("no/such/dir/out.bin")
    XCTAssertThrowsError(try AtomicFile.write(Data([1]), to: url)) { error in
      let error = error as? FileError
      XCTAssertNotNil(error)
      XCTAssertTrue(error?.description.contains(url.path) ?? false, "\(String(describing: error))")
    }
  }

  // MARK: Helpers

  /// Writes `8-byte length + header + blob`; `headerLength` overrides the real header length.
  private func writeRaw(
    _ name: String, header: String = "", headerBytes: [UInt8]? = nil, blob: [UInt8] = [],
    headerLength: UInt64? = nil
  ) throws -> URL {
    let headerData = headerBytes ?? Array(header.utf8)
    var bytes = withUnsafeBytes(
      of: (headerLength ?? UInt64(headerData.count)).littleEndian, Array.init)
    bytes += headerData + blob
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
  }

  /// Asserts that opening `url` throws `kind`, with a description naming the file.
  @discardableResult
  private func assertOpenFails(
    _ url: URL, _ kind: SafetensorsError.Kind, file: StaticString = #filePath, line: UInt = #line
  ) -> SafetensorsError? {
    var caught: SafetensorsError?
    assertThrows(kind, containing: url.lastPathComponent, file: file, line: line) {
      _ = try SafetensorsFile(contentsOf: url)
    } caught: {
      caught = $0
    }
    return caught
  }

  private func assertThrows(
    _ kind: SafetensorsError.Kind, containing text: String, file: StaticString = #filePath,
    line: UInt = #line, _ body: () throws -> Void,
    caught: (SafetensorsError) -> Void = { _ in }
  ) {
    do {
      try body()
      XCTFail("expected \(kind), nothing was thrown", file: file, line: line)
    } catch let error as SafetensorsError {
      XCTAssertEqual(error.kind, kind, error.description, file: file, line: line)
      XCTAssertTrue(
        error.description.contains(text), "'\(error)' should mention \(text)", file: file,
        line: line)
      caught(error)
    } catch {
      XCTFail("expected SafetensorsError.\(kind), got \(error)", file: file, line: line)
    }
  }
}
