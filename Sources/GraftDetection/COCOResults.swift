import Foundation

/// COCO's result format for boxes: a list of `{"image_id", "category_id", "bbox", "score"}`.
public enum COCOResults {
  /// Reads a result file and checks it against the ground truth it will be scored on.
  public static func load(path: String, groundTruth: DetectionDataset) throws -> [Detection] {
    try parse(JSONFields.read(path), name: path, groundTruth: groundTruth)
  }

  /// Parses a result file's contents; `name` is for the errors.
  ///
  /// Like pycocotools' `loadRes`, a detection for an image the ground truth does not list is an
  /// error. A detection of a category the ground truth does not list is an error too, where
  /// pycocotools would drop it silently: it is almost always a label-mapping mistake.
  public static func parse(_ data: Data, name: String, groundTruth: DetectionDataset) throws
    -> [Detection]
  {
    guard let entries = try JSONFields.parse(data, name: name) as? [Any] else {
      throw DetectionError.malformed(path: name, reason: "the top level is not a JSON list")
    }
    let imageIDs = Set(groundTruth.images.map(\.id))
    let categoryIDs = Set(groundTruth.categories.map(\.id))
    return try entries.enumerated().map { i, e in
      let entry = "[\(i)]"
      func bad(_ what: String) -> DetectionError {
        .malformed(path: name, reason: "\(entry): \(what)")
      }
      guard let d = e as? [String: Any] else { throw bad("not an object") }
      guard let imageID = JSONFields.integer(d["image_id"]) else {
        throw bad("no integer \"image_id\"")
      }
      guard let categoryID = JSONFields.integer(d["category_id"]) else {
        throw bad("no integer \"category_id\"")
      }
      guard let box = JSONFields.box(d["bbox"]) else {
        throw bad("\"bbox\" is not a list of four finite numbers [x, y, w, h]")
      }
      guard let score = JSONFields.number(d["score"]), score.isFinite else {
        throw bad("no finite number \"score\"")
      }
      guard imageIDs.contains(imageID) else {
        throw DetectionError.unknownImage(path: name, entry: entry, imageID: imageID)
      }
      guard categoryIDs.contains(categoryID) else {
        throw DetectionError.unknownCategory(
          path: name, entry: entry, category: "id \(categoryID)")
      }
      return Detection(imageID: imageID, categoryID: categoryID, box: box, score: score)
    }
  }
}
