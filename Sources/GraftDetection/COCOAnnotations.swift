import Foundation

/// COCO's annotation files (`instances_*.json`): `images`, `annotations` with `bbox`
/// `[x, y, w, h]`, `category_id`, `iscrowd` and `area`, and `categories`.
///
/// Other keys (`info`, `licenses`, `segmentation`, …) are ignored. An annotation without `area`
/// gets its box's area and one without `iscrowd` is not a crowd (pycocotools requires both);
/// an `ignore` key is not read, since pycocotools' box evaluation replaces it by `iscrowd`.
/// A `difficult` key (written by converters from VOC) is read as VOC's flag.
public enum COCOAnnotations {
  /// Reads an annotation file: with `checkBoxes`, boxes must have a non-negative size and lie in
  /// their image up to `BoxBounds.tolerance`, and with `imagesDirectory` every image's
  /// `file_name` must exist in it.
  public static func load(path: String, imagesDirectory: String? = nil, checkBoxes: Bool = true)
    throws -> DetectionDataset
  {
    let dataset = try parse(JSONFields.read(path), name: path, checkBoxes: checkBoxes)
    if let folder = imagesDirectory {
      for image in dataset.images {
        let file = URL(fileURLWithPath: folder).appendingPathComponent(image.fileName).path
        guard FileManager.default.fileExists(atPath: file) else {
          throw DetectionError.imageFileMissing(path: path, imagePath: file)
        }
      }
    }
    return dataset
  }

  /// Parses an annotation file's contents; `name` is for the errors. Unknown categories, unknown
  /// images and duplicate ids are always errors; `checkBoxes` adds the box checks of `load`
  /// (scoring leaves them out, as pycocotools does, and then images need no size).
  public static func parse(_ data: Data, name: String, checkBoxes: Bool = true) throws
    -> DetectionDataset
  {
    guard let root = try JSONFields.parse(data, name: name) as? [String: Any] else {
      throw DetectionError.malformed(path: name, reason: "the top level is not a JSON object")
    }
    func list(_ key: String) throws -> [[String: Any]] {
      guard let raw = root[key] else {
        throw DetectionError.malformed(path: name, reason: "no \"\(key)\" list")
      }
      guard let entries = raw as? [Any] else {
        throw DetectionError.malformed(path: name, reason: "\"\(key)\" is not a list")
      }
      return try entries.enumerated().map { i, e in
        guard let object = e as? [String: Any] else {
          throw DetectionError.malformed(path: name, reason: "\(key)[\(i)] is not an object")
        }
        return object
      }
    }
    func bad(_ entry: String, _ what: String) -> DetectionError {
      .malformed(path: name, reason: "\(entry): \(what)")
    }

    var categories: [DetectionCategory] = []
    var categoryIDs = Set<Int>()
    for (i, c) in try list("categories").enumerated() {
      let entry = "categories[\(i)]"
      guard let id = JSONFields.integer(c["id"]) else { throw bad(entry, "no integer \"id\"") }
      guard categoryIDs.insert(id).inserted else {
        throw DetectionError.duplicateID(path: name, what: "categories", id: id)
      }
      categories.append(DetectionCategory(id: id, name: c["name"] as? String ?? String(id)))
    }

    var images: [AnnotatedImage] = []
    var imageIndex: [Int: Int] = [:]
    for (i, m) in try list("images").enumerated() {
      let entry = "images[\(i)]"
      guard let id = JSONFields.integer(m["id"]) else { throw bad(entry, "no integer \"id\"") }
      guard imageIndex[id] == nil else {
        throw DetectionError.duplicateID(path: name, what: "images", id: id)
      }
      let width = JSONFields.integer(m["width"])
      let height = JSONFields.integer(m["height"])
      if checkBoxes {
        guard let w = width, let h = height, w > 0, h > 0 else {
          throw bad(entry, "no positive integer \"width\" and \"height\"")
        }
      }
      imageIndex[id] = images.count
      images.append(
        AnnotatedImage(
          id: id, fileName: m["file_name"] as? String ?? "", width: width ?? 0,
          height: height ?? 0, annotations: []))
    }

    var annotationIDs = Set<Int>()
    for (i, a) in try list("annotations").enumerated() {
      let entry = "annotations[\(i)]"
      guard let id = JSONFields.integer(a["id"]) else { throw bad(entry, "no integer \"id\"") }
      guard annotationIDs.insert(id).inserted else {
        throw DetectionError.duplicateID(path: name, what: "annotations", id: id)
      }
      guard let imageID = JSONFields.integer(a["image_id"]) else {
        throw bad(entry, "no integer \"image_id\"")
      }
      guard let categoryID = JSONFields.integer(a["category_id"]) else {
        throw bad(entry, "no integer \"category_id\"")
      }
      guard let box = JSONFields.box(a["bbox"]) else {
        throw bad(entry, "\"bbox\" is not a list of four finite numbers [x, y, w, h]")
      }
      guard let index = imageIndex[imageID] else {
        throw DetectionError.unknownImage(path: name, entry: entry, imageID: imageID)
      }
      guard categoryIDs.contains(categoryID) else {
        throw DetectionError.unknownCategory(
          path: name, entry: entry, category: "id \(categoryID)")
      }
      var area: Double? = nil
      if a["area"] != nil {
        guard let v = JSONFields.number(a["area"]), v.isFinite else {
          throw bad(entry, "\"area\" is not a number")
        }
        area = v
      }
      if checkBoxes {
        guard box.width >= 0, box.height >= 0 else {
          throw DetectionError.negativeBox(path: name, entry: entry, box: box)
        }
        let image = images[index]
        guard BoxBounds.isInside(box, width: image.width, height: image.height) else {
          throw DetectionError.boxOutsideImage(
            path: name, entry: entry, box: box, width: image.width, height: image.height)
        }
      }
      images[index].annotations.append(
        BoxAnnotation(
          id: id, categoryID: categoryID, box: box, area: area,
          isCrowd: JSONFields.flag(a["iscrowd"]) ?? false,
          isDifficult: JSONFields.flag(a["difficult"]) ?? false))
    }
    return DetectionDataset(categories: categories, images: images)
  }
}
