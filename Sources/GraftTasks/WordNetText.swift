import Foundation
import GraftTensor

/// English text for `graft pretrain --modality text` from WordNet 3.0 as Debian's
/// `wordnet-base` installs it (`/usr/share/wordnet`, WordNet 3.0 licence: use, copying and
/// distribution allowed with Princeton's notice kept): every synset of `data.noun`, `data.verb`,
/// `data.adj` and `data.adv` becomes one document, its words then its gloss (definition and
/// example sentences), e.g. `kill: the destruction of an enemy plane or ship or tank or missile;
/// "the pilot reported two kills during the mission"`.
public enum WordNetText {
  /// Where `wordnet-base` puts the database.
  public static let defaultDatabase = URL(fileURLWithPath: "/usr/share/wordnet")
  /// Where `graft data prepare text` writes by default.
  public static func defaultRoot() -> URL { DataHome.folder("text") }
  /// The database files read, in this order.
  public static let files = ["data.noun", "data.verb", "data.adj", "data.adv"]

  /// The document of one line of a WordNet `data.*` file, or nil for the licence header
  /// (lines starting with two spaces) and a line without a gloss. Throws `FileError`-ready
  /// messages as `ConfigError` for a line that is not a synset.
  public static func document(_ line: Substring) throws -> String? {
    if line.hasPrefix("  ") || line.allSatisfy(\.isWhitespace) { return nil }
    let parts = line.split(separator: "|", maxSplits: 1)
    let fields = parts[0].split(separator: " ")
    guard fields.count >= 4, let count = Int(fields[3], radix: 16), count >= 1,
      fields.count >= 4 + 2 * count
    else { throw ConfigError("not a WordNet synset line: '\(line.prefix(60))'") }
    var words: [String] = []
    for i in 0..<count {
      var w = Substring(fields[4 + 2 * i])
      // Adjective markers: (a), (p), (ip).
      if w.hasSuffix(")"), let open = w.lastIndex(of: "(") { w = w[..<open] }
      let word = w.replacingOccurrences(of: "_", with: " ")
      if !words.contains(word) { words.append(word) }
    }
    guard parts.count == 2 else { return nil }
    let gloss = parts[1].trimmingCharacters(in: .whitespaces)
    guard !gloss.isEmpty else { return nil }
    return words.joined(separator: ", ") + ": " + gloss
  }

  /// Writes `train.txt` and `validation.txt` (documents separated by blank lines; every
  /// `validationEvery`-th synset held out) and `LICENSE` (WordNet's notice) into `root`, each
  /// atomically. Throws `FileError` naming a missing or malformed database file.
  @discardableResult
  public static func prepare(
    database: URL = defaultDatabase, root: URL, validationEvery: Int = 50
  ) throws -> (train: Int, validation: Int) {
    var train: [String] = []
    var validation: [String] = []
    for name in files {
      let url = database.appendingPathComponent(name)
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw FileError(
          path: url.path, message: "no such file (apt install wordnet-base installs WordNet)")
      }
      guard let data = try? MappedFile.contents(of: url) else {
        throw FileError(path: url.path, message: "cannot read")
      }
      let text = String(decoding: data, as: UTF8.self)
      for (n, line) in text.split(separator: "\n").enumerated() {
        let document: String?
        do {
          document = try Self.document(line)
        } catch let e as ConfigError {
          throw FileError(path: url.path, message: "line \(n + 1): \(e.message)")
        }
        guard let document else { continue }
        if (train.count + validation.count) % validationEvery == validationEvery - 1 {
          validation.append(document)
        } else {
          train.append(document)
        }
      }
    }
    guard !train.isEmpty && !validation.isEmpty else {
      throw FileError(path: database.path, message: "no synsets with glosses")
    }
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    try AtomicFile.write(
      Data((train.joined(separator: "\n\n") + "\n").utf8),
      to: root.appendingPathComponent("train.txt"))
    try AtomicFile.write(
      Data((validation.joined(separator: "\n\n") + "\n").utf8),
      to: root.appendingPathComponent("validation.txt"))
    try AtomicFile.write(Data(notice.utf8), to: root.appendingPathComponent("LICENSE"))
    return (train.count, validation.count)
  }

  /// WordNet's licence notice, kept with every copy of text made from it.
  static let notice = """
    The text in this folder was extracted from WordNet 3.0 (Debian's wordnet-base) by
    graft data prepare text. WordNet's licence:

    WordNet Release 3.0 This software and database is being provided to you, the LICENSEE, by
    Princeton University under the following license. By obtaining, using and/or copying this
    software and database, you agree that you have read, understood, and will comply with these
    terms and conditions.: Permission to use, copy, modify and distribute this software and
    database and its documentation for any purpose and without fee or royalty is hereby granted,
    provided that you agree to comply with the following copyright notice and statements,
    including the disclaimer, and that the same appear on ALL copies of the software, database
    and documentation, including modifications that you make for internal use or for
    distribution. WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. THIS
    SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS
    OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
    UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT- ABILITY OR FITNESS FOR ANY
    PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL
    NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS. The name of
    Princeton University or Princeton may not be used in advertising or publicity pertaining to
    distribution of the software and/or database. Title to copyright in this software, database
    and any associated documentation shall at all times remain with Princeton University and
    LICENSEE agrees to preserve same.

    """
}
