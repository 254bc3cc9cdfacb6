import Foundation
import GraftModels
import XCTest

/// What `Tools/make_npz_fixtures.py` recorded (from NumPy) about each member of
/// `dtypes_zip64.npz`.
private struct DTypeExpectations: Decodable {
  struct Entry: Decodable {
    let descr: String
    let shape: [Int]
    let fortran_order: Bool
    let version: [Int]
    let bits: [UInt32]?
    let ints: [Int]?
  }
  let members: [String: Entry]
}

/// The npz fixtures written by `Tools/make_npz_fixtures.py`.
func npzFixture(_ name: String) -> URL {
  Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    .appendingPathComponent("npz").appendingPathComponent(name)
}

/// Builds `.npy` bytes and stored zip archives by hand, for archives NumPy would never write.
enum TestArchive {
  /// A `.npy` version 1 file: magic, header dict padded with spaces and a newline to a multiple
  /// of 64 bytes, then `data`.
  static func npy(
    descr: String, shape: [Int], fortran: Bool = false, data: [UInt8],
    magic: [UInt8] = [0x93] + Array("NUMPY".utf8), headerText: String? = nil
  ) -> [UInt8] {
    let shapeText =
      shape.count == 1
      ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header =
      headerText
      ?? "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let length = header.utf8.count
    return magic + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(header.utf8) + data
  }

  static func floats(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
  }

  /// One zip member. `method` and `flags` are written as given (the data is always stored as
  /// is); `crc` overrides the computed CRC-32; `declaredSize` overrides both sizes.
  struct Member {
    var name: String
    var data: [UInt8]
    var method: UInt16 = 0
    var flags: UInt16 = 0
    var crc: UInt32? = nil
    var declaredSize: UInt32? = nil
    var localName: String? = nil
  }

  /// A zip archive (no ZIP64) of `members`, each stored.
  static func zip(_ members: [Member]) -> [UInt8] {
    var out: [UInt8] = []
    var directory: [UInt8] = []
    func u16(_ v: Int, _ buf: inout [UInt8]) { buf += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: UInt32, _ buf: inout [UInt8]) {
      buf += [0, 8, 16, 24].map { UInt8(v >> $0 & 0xFF) }
    }
    for m in members {
      let offset = UInt32(out.count)
      let crc = m.crc ?? crc32(m.data)
      let size = m.declaredSize ?? UInt32(m.data.count)
      let name = Array(m.name.utf8)
      let localName = Array((m.localName ?? m.name).utf8)
      u32(0x0403_4B50, &out)
      u16(20, &out)
      u16(Int(m.flags), &out)
      u16(Int(m.method), &out)
      u16(0, &out)
      u16(0x21, &out)
      u32(crc, &out)
      u32(size, &out)
      u32(size, &out)
      u16(localName.count, &out)
      u16(0, &out)
      out += localName + m.data

      u32(0x0201_4B50, &directory)
      u16(20, &directory)
      u16(20, &directory)
      u16(Int(m.flags), &directory)
      u16(Int(m.method), &directory)
      u16(0, &directory)
      u16(0x21, &directory)
      u32(crc, &directory)
      u32(size, &directory)
      u32(size, &directory)
      u16(name.count, &directory)
      for _ in 0..<4 { u16(0, &directory) }  // extra, comment, disk, internal attributes
      u32(0, &directory)
      u32(offset, &directory)
      directory += name
    }
    let directoryOffset = UInt32(out.count)
    out += directory
    u32(0x0605_4B50, &out)
    u16(0, &out)
    u16(0, &out)
    u16(members.count, &out)
    u16(members.count, &out)
    u32(UInt32(directory.count), &out)
    u32(directoryOffset, &out)
    u16(0, &out)
    return out
  }

  /// CRC-32 (IEEE, reflected, as zip uses), bit by bit.
  static func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }
}

final class NumpyArchiveTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-npz-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  private func write(_ bytes: [UInt8], _ name: String) throws -> URL {
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
  }

  /// Runs `body`, which must throw a `NumpyArchiveError` of `kind` whose description contains
  /// every string in `mentions`.
  private func assertFails(
    _ kind: NumpyArchiveError.Kind, mentioning mentions: [String] = [],
    file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) {
    do {
      try body()
      XCTFail("expected a \(kind) error", file: file, line: line)
    } catch let error as NumpyArchiveError {
      XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
      for text in mentions {
        XCTAssertTrue(
          error.description.contains(text), "'\(error)' does not mention '\(text)'", file: file,
          line: line)
      }
    } catch {
      XCTFail("unexpected error \(error)", file: file, line: line)
    }
  }

  // MARK: Archives written by NumPy

  func testReadsEveryDTypeFromZip64ArchiveWrittenByNumPy() throws {
    let data = try Data(contentsOf: npzFixture("dtypes_zip64.json"))
    let expected = try JSONDecoder().decode(DTypeExpectations.self, from: data).members
    let archive = try NumpyArchive(contentsOf: npzFixture("dtypes_zip64.npz"))
    XCTAssertEqual(Set(archive.names), Set(expected.keys))
    XCTAssertEqual(archive.names.first, "f4", "archive order")
    for (name, entry) in expected {
      let info = try archive.info(name)
      XCTAssertEqual(info.descr, entry.descr, name)
      XCTAssertEqual(info.shape, entry.shape, name)
      XCTAssertEqual(info.fortranOrder, entry.fortran_order, name)
      XCTAssertEqual(info.formatVersion, entry.version[0], name)
      XCTAssertEqual(info.compression, .stored, name)
      XCTAssertEqual(info.member, name + ".npy")
      if let bits = entry.bits {
        let tensor = try archive.array(name)
        XCTAssertEqual(tensor.shape, entry.shape, name)
        XCTAssertEqual(tensor.name, name)
        XCTAssertEqual(tensor.scalars.map(\.bitPattern), bits, name)
        assertFails(.notIntegerArray, mentioning: [name + ".npy"]) {
          _ = try archive.intArray(name)
        }
      } else if let ints = entry.ints {
        XCTAssertEqual(try archive.intArray(name), ints, name)
        let tensor = try archive.array(name)
        XCTAssertEqual(tensor.shape, entry.shape, name)
        XCTAssertEqual(tensor.scalars, ints.map { Float($0) }, name)
      } else {
        XCTAssertNil(info.dtype, name)
        assertFails(.unsupportedDType, mentioning: [name + ".npy", entry.descr]) {
          _ = try archive.array(name)
        }
      }
    }
    XCTAssertEqual(try archive.info("f4_big_endian").bigEndian, true)
    XCTAssertEqual(try archive.info("u1").dtype, .uint8)
    XCTAssertEqual(try archive.arrays().count, expected.count - 1, "all but the complex one")
    XCTAssertNoThrow(try archive.verifyChecksums())
  }

  func testDeflatedMembersMatchTheirSource() throws {
    // The big_vision fixture was written with savez_compressed; arrays whose timm counterpart is
    // the same tensor must read back exactly as timm's state dict holds them.
    let archive = try NumpyArchive(contentsOf: npzFixture("bigvision_vit.npz"))
    let reference = try SafetensorsFile(
      contentsOf: npzFixture("bigvision_vit_reference.safetensors"))
    for name in archive.names {
      XCTAssertEqual(try archive.info(name).compression, .deflated, name)
    }
    let same = [
      "params/embedding/bias": "patch_embed.proj.bias", "params/pos_embedding": "pos_embed",
      "params/Transformer/encoder_norm/scale": "norm.weight",
      "params/MAPHead_0/probe": "attn_pool.latent",
    ]
    for (npzName, timmName) in same {
      let tensor = try archive.array(npzName)
      let expected = try reference.tensor(timmName)
      XCTAssertEqual(tensor.shape, expected.shape, npzName)
      XCTAssertEqual(tensor.scalars, expected.scalars, npzName)
    }
    XCTAssertNoThrow(try archive.verifyChecksums())
  }

  func testStoredAlignedFloat32IsBorrowedAndCopyOnWrite() throws {
    // A member's data starts 30 + name length + 64 (the .npy header) after its local header:
    // "ab.npy" at 0 → data at 100 (aligned); "abc.npy" at 108 → data at 209 (unaligned).
    let first = TestArchive.npy(descr: "<f4", shape: [2], data: TestArchive.floats([1.5, -2]))
    let second = TestArchive.npy(descr: "<f4", shape: [2], data: TestArchive.floats([3, 4.25]))
    let url = try write(
      TestArchive.zip([.init(name: "ab.npy", data: first), .init(name: "abc.npy", data: second)]),
      "aligned.npz")
    let archive = try NumpyArchive(contentsOf: url)
    XCTAssertEqual(archive.names, ["ab", "abc"])

    let a1 = try archive.array("ab")
    let a2 = try archive.array("ab")
    XCTAssertEqual(a1.scalars, [1.5, -2])
    XCTAssertEqual(a1.pointer, a2.pointer, "aligned stored F32 borrows the mapping")
    let b1 = try archive.array("abc")
    let b2 = try archive.array("abc")
    XCTAssertEqual(b1.scalars, [3, 4.25])
    XCTAssertNotEqual(b1.pointer, b2.pointer, "unaligned data is copied")

    a1.pointer[0] = 99
    XCTAssertEqual(try archive.array("ab").scalars, [99, -2], "this process sees its write")
    let reopened = try NumpyArchive(contentsOf: url)
    XCTAssertEqual(try reopened.array("ab").scalars, [1.5, -2], "the file is unchanged")
  }

  func testSingleNpyFileIsAOneArrayArchive() throws {
    // Fortran order: the data [1, 2, 3, 4, 5, 6] of shape (2, 3) is column-major, so row 0 is
    // 1, 3, 5 and row 1 is 2, 4, 6.
    var data: [UInt8] = []
    for v in [1, 2, 3, 4, 5, 6] as [Int64] {
      withUnsafeBytes(of: v.littleEndian) { data += $0 }
    }
    let url = try write(
      TestArchive.npy(descr: "<i8", shape: [2, 3], fortran: true, data: data), "weights.npy")
    let archive = try NumpyArchive(contentsOf: url)
    XCTAssertEqual(archive.names, ["weights"])
    XCTAssertEqual(try archive.intArray("weights"), [1, 3, 5, 2, 4, 6])
    let tensor = try NumpyArchive.readArray(contentsOf: url)
    XCTAssertEqual(tensor.shape, [2, 3])
    XCTAssertEqual(tensor.scalars, [1, 3, 5, 2, 4, 6])
    XCTAssertNoThrow(try archive.verifyChecksums(), "a bare .npy has no CRC to check")
  }

  // MARK: Malformed files

  func testMissingEmptyAndForeignFiles() throws {
    assertFails(.fileNotFound, mentioning: ["nope.npz"]) {
      _ = try NumpyArchive(contentsOf: self.directory.appendingPathComponent("nope.npz"))
    }
    let empty = try write([], "empty.npz")
    assertFails(.emptyFile, mentioning: ["empty.npz"]) { _ = try NumpyArchive(contentsOf: empty) }
    let text = try write(Array("just some text, not an archive\n".utf8), "text.npz")
    assertFails(.notAnArchive, mentioning: ["text.npz"]) { _ = try NumpyArchive(contentsOf: text) }
    assertFails(.readFailed) { _ = try NumpyArchive(contentsOf: self.directory) }
  }

  func testTruncatedArchives() throws {
    let whole = try [UInt8](Data(contentsOf: npzFixture("google_vit.npz")))
    let half = try write(Array(whole[..<(whole.count / 2)]), "half.npz")
    assertFails(.truncated, mentioning: ["half.npz", "truncated"]) {
      _ = try NumpyArchive(contentsOf: half)
    }
    // A member whose directory entry claims more bytes than the file holds.
    let npy = TestArchive.npy(descr: "<f4", shape: [2], data: TestArchive.floats([1, 2]))
    let url = try write(
      TestArchive.zip([.init(name: "x.npy", data: npy, declaredSize: 100_000)]), "short.npz")
    assertFails(.truncated, mentioning: ["short.npz", "x.npy"]) {
      _ = try NumpyArchive(contentsOf: url)
    }
    // A .npy header that promises more elements than the member holds.
    let shortData = TestArchive.npy(descr: "<f4", shape: [3], data: TestArchive.floats([1, 2]))
    let url2 = try write(TestArchive.zip([.init(name: "y.npy", data: shortData)]), "data.npz")
    assertFails(.truncated, mentioning: ["y.npy", "12 bytes", "has 8"]) {
      _ = try NumpyArchive(contentsOf: url2)
    }
    let longData = TestArchive.npy(descr: "<f4", shape: [1], data: TestArchive.floats([1, 2]))
    let url3 = try write(TestArchive.zip([.init(name: "z.npy", data: longData)]), "long.npz")
    assertFails(.dataSizeMismatch, mentioning: ["z.npy"]) { _ = try NumpyArchive(contentsOf: url3) }
  }

  func testMalformedNpyMembersNameTheMember() throws {
    let floats = TestArchive.floats([1, 2])
    let cases: [(String, [UInt8], NumpyArchiveError.Kind, String)] = [
      (
        "magic.npy",
        TestArchive.npy(descr: "<f4", shape: [2], data: floats, magic: Array("NOTNPY".utf8)),
        .invalidNpy, "magic"
      ),
      (
        "keys.npy",
        TestArchive.npy(
          descr: "", shape: [], data: floats, headerText: "{'descr': '<f4', 'shape': (2,), }"),
        .invalidNpy, "fortran_order"
      ),
      (
        "syntax.npy",
        TestArchive.npy(
          descr: "", shape: [], data: floats,
          headerText: "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) "),
        .invalidNpy, "header"
      ),
      (
        "negative.npy",
        TestArchive.npy(
          descr: "", shape: [], data: floats,
          headerText: "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }"),
        .invalidNpy, "shape"
      ),
    ]
    for (name, bytes, kind, mention) in cases {
      let url = try write(TestArchive.zip([.init(name: name, data: bytes)]), "bad-\(name).npz")
      assertFails(kind, mentioning: ["bad-\(name).npz", "member '\(name)'", mention]) {
        _ = try NumpyArchive(contentsOf: url)
      }
    }
  }

  func testUnsupportedZipFeaturesAndInconsistencies() throws {
    let npy = TestArchive.npy(descr: "<f4", shape: [2], data: TestArchive.floats([1, 2]))
    let cases: [(TestArchive.Member, NumpyArchiveError.Kind, String)] = [
      (.init(name: "enc.npy", data: npy, flags: 1), .unsupportedArchive, "encrypted"),
      (.init(name: "bz.npy", data: npy, method: 12), .unsupportedArchive, "method 12"),
      (.init(name: "a.npy", data: npy, localName: "b.npy"), .invalidArchive, "local header"),
    ]
    for (member, kind, mention) in cases {
      let url = try write(TestArchive.zip([member]), "zip-\(member.name).npz")
      assertFails(kind, mentioning: [member.name, mention]) {
        _ = try NumpyArchive(contentsOf: url)
      }
    }
    let duplicate = try write(
      TestArchive.zip([.init(name: "w.npy", data: npy), .init(name: "w.npy", data: npy)]),
      "dup.npz")
    assertFails(.duplicateMember, mentioning: ["w.npy"]) {
      _ = try NumpyArchive(contentsOf: duplicate)
    }
    // Non-.npy members are skipped, as NumPy would hand them out as raw bytes.
    let mixed = try write(
      TestArchive.zip([
        .init(name: "README", data: Array("hi".utf8)), .init(name: "v.npy", data: npy),
      ]),
      "mixed.npz")
    let archive = try NumpyArchive(contentsOf: mixed)
    XCTAssertEqual(archive.names, ["v"])
    assertFails(.memberNotFound, mentioning: ["README"]) { _ = try archive.array("README") }
  }

  func testStoredChecksumIsCheckedOnRead() throws {
    let npy = TestArchive.npy(descr: "<f4", shape: [2], data: TestArchive.floats([1, 2]))
    let url = try write(
      TestArchive.zip([.init(name: "c.npy", data: npy, crc: TestArchive.crc32(npy) ^ 1)]),
      "crc.npz")
    let archive = try NumpyArchive(contentsOf: url)
    assertFails(.checksumMismatch, mentioning: ["crc.npz", "c.npy", "CRC-32"]) {
      _ = try archive.array("c")
    }
    assertFails(.checksumMismatch, mentioning: ["crc.npz", "c.npy"]) {
      try archive.verifyChecksums()
    }
  }

  func testFlippedBitInAStoredMemberIsRefused() throws {
    // NumPy's reader (zipfile) refuses a stored member whose bytes no longer match its CRC-32;
    // so must Graft, although it uses stored data in place.
    let original = try [UInt8](Data(contentsOf: npzFixture("dtypes_zip64.npz")))
    // Both members have a 128-byte .npy header; flip a bit of an element.
    var bytes = original
    bytes[dataOffset(original, member: "f4.npy") + 128 + 5] ^= 0x10
    var ints = original
    ints[dataOffset(original, member: "i4.npy") + 128] ^= 0x01
    let archive = try NumpyArchive(contentsOf: try write(bytes, "flipped.npz"))
    assertFails(.checksumMismatch, mentioning: ["flipped.npz", "member 'f4.npy'", "CRC-32"]) {
      _ = try archive.array("f4")
    }
    XCTAssertEqual(try archive.array("f8").shape, [2, 5], "other members still read")
    let intArchive = try NumpyArchive(contentsOf: try write(ints, "flipped_int.npz"))
    assertFails(.checksumMismatch, mentioning: ["member 'i4.npy'"]) {
      _ = try intArchive.intArray("i4")
    }
  }

  /// The bytes of the compressed fixture, and the offset of `member`'s central directory entry.
  private func compressedFixture(entryFor member: String) throws -> ([UInt8], Int) {
    let bytes = try [UInt8](Data(contentsOf: npzFixture("bigvision_vit.npz")))
    let name = Array(member.utf8)
    for i in 0..<(bytes.count - 46 - name.count)
    where bytes[i] == 0x50 && bytes[i + 1] == 0x4B && bytes[i + 2] == 1 && bytes[i + 3] == 2
      && Array(bytes[(i + 46)..<(i + 46 + name.count)]) == name
    {
      return (bytes, i)
    }
    XCTFail("no directory entry for \(member)")
    return (bytes, 0)
  }

  /// Where `member`'s data starts in zip `bytes`: after its local header (found by signature and
  /// name; NumPy's ZIP64 directory keeps the header offset in an extra field), name and extra.
  private func dataOffset(_ bytes: [UInt8], member: String) -> Int {
    let name = Array(member.utf8)
    for i in 0..<(bytes.count - 30 - name.count)
    where bytes[i] == 0x50 && bytes[i + 1] == 0x4B && bytes[i + 2] == 3 && bytes[i + 3] == 4
      && Array(bytes[(i + 30)..<(i + 30 + name.count)]) == name
    {
      let extraLength = Int(bytes[i + 28]) | Int(bytes[i + 29]) << 8
      return i + 30 + name.count + extraLength
    }
    XCTFail("no local header for \(member)")
    return 0
  }

  func testDeflatedChecksumMismatch() throws {
    let member = "params/embedding/bias.npy"
    var (bytes, entry) = try compressedFixture(entryFor: member)
    bytes[entry + 16] ^= 0x01  // the recorded CRC-32
    let url = try write(bytes, "badcrc.npz")
    let archive = try NumpyArchive(contentsOf: url)
    assertFails(.checksumMismatch, mentioning: ["badcrc.npz", member, "CRC-32"]) {
      _ = try archive.array("params/embedding/bias")
    }
    XCTAssertNoThrow(try archive.array("params/embedding/kernel"), "other members still read")
    assertFails(.checksumMismatch, mentioning: [member]) { try archive.verifyChecksums() }
  }

  func testCorruptDeflateData() throws {
    let member = "params/embedding/kernel.npy"
    var (bytes, entry) = try compressedFixture(entryFor: member)
    // Local header offset is the directory entry's last field; damage the middle of the data.
    let local = bytes[(entry + 42)..<(entry + 46)].reversed().reduce(0) { $0 << 8 | Int($1) }
    let nameLength = Int(bytes[local + 26]) | Int(bytes[local + 27]) << 8
    let extraLength = Int(bytes[local + 28]) | Int(bytes[local + 29]) << 8
    let start = local + 30 + nameLength + extraLength
    for i in (start + 2000)..<(start + 2400) { bytes[i] = ~bytes[i] }
    let url = try write(bytes, "corrupt.npz")
    let archive = try NumpyArchive(contentsOf: url)
    do {
      _ = try archive.array("params/embedding/kernel")
      XCTFail("corrupt data was read")
    } catch let error as NumpyArchiveError {
      XCTAssertTrue([.corruptData, .checksumMismatch].contains(error.kind), "\(error)")
      XCTAssertTrue(error.description.contains(member), "\(error)")
    }
  }

  func testLookupErrors() throws {
    let archive = try NumpyArchive(contentsOf: npzFixture("google_vit.npz"))
    assertFails(.memberNotFound, mentioning: ["google_vit.npz", "missing"]) {
      _ = try archive.array("missing")
    }
    XCTAssertFalse(archive.contains("missing"))
    XCTAssertTrue(archive.contains("embedding/kernel"))
    XCTAssertEqual(try archive.info("embedding/kernel").shape, [8, 8, 3, 32])
  }
}
