import Foundation

/// Pascal VOC's per-image annotation files (`Annotations/*.xml`): `filename`, `size`
/// (`width`, `height`) and `object`s with `name`, `difficult` and `bndbox`
/// (`xmin`, `ymin`, `xmax`, `ymax`).
///
/// VOC counts pixels from 1 and includes both ends, so by default a box becomes
/// `x = xmin - 1, y = ymin - 1, width = xmax - x, height = ymax - y` in continuous 0-based
/// coordinates, as Detectron2's VOC loader does; `oneBasedPixels: false` keeps the numbers as
/// they are (right for files whose tools write continuous coordinates, such as labelme's).
/// Category ids are 1-based positions in the category list; images get ids 1, 2, … in the
/// order given and annotations 1, 2, … across all files (no id 0, which pycocotools' matching
/// would treat as no match).
public enum VOCAnnotations {
  /// The 20 Pascal VOC classes in the devkit's order.
  public static let pascalClasses = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
  ]

  /// Reads VOC annotation files into one dataset; with `imagesDirectory` every `filename` must
  /// exist in it. Boxes must lie in their image up to `BoxBounds.tolerance`.
  public static func load(
    paths: [String], categories: [String] = pascalClasses, oneBasedPixels: Bool = true,
    imagesDirectory: String? = nil
  ) throws -> DetectionDataset {
    var images: [AnnotatedImage] = []
    var nextAnnotationID = 1
    for (i, path) in paths.enumerated() {
      let image = try parse(
        JSONFields.read(path), name: path, imageID: i + 1, categories: categories,
        firstAnnotationID: nextAnnotationID, oneBasedPixels: oneBasedPixels)
      nextAnnotationID += image.annotations.count
      if let folder = imagesDirectory {
        let file = URL(fileURLWithPath: folder).appendingPathComponent(image.fileName).path
        guard FileManager.default.fileExists(atPath: file) else {
          throw DetectionError.imageFileMissing(path: path, imagePath: file)
        }
      }
      images.append(image)
    }
    let list = categories.enumerated().map { DetectionCategory(id: $0 + 1, name: $1) }
    return DetectionDataset(categories: list, images: images)
  }

  /// Parses one annotation file's contents; `name` is for the errors.
  public static func parse(
    _ data: Data, name: String, imageID: Int, categories: [String] = pascalClasses,
    firstAnnotationID: Int = 1, oneBasedPixels: Bool = true
  ) throws -> AnnotatedImage {
    let root: XMLTreeNode
    do {
      root = try XMLTree.parse(data)
    } catch {
      throw DetectionError.malformed(path: name, reason: "not XML (\(error))")
    }
    func bad(_ what: String) -> DetectionError { .malformed(path: name, reason: what) }
    guard root.name == "annotation" else { throw bad("the root element is not <annotation>") }
    guard let size = root.child("size"),
      let width = size.child("width").flatMap({ Int($0.trimmed) }),
      let height = size.child("height").flatMap({ Int($0.trimmed) }), width > 0, height > 0
    else { throw bad("no <size> with positive integer <width> and <height>") }
    let fileName = root.child("filename")?.trimmed ?? ""

    var annotations: [BoxAnnotation] = []
    for (i, object) in root.children.filter({ $0.name == "object" }).enumerated() {
      let entry = "object \(i + 1)"
      guard let label = object.child("name")?.trimmed, !label.isEmpty else {
        throw bad("\(entry): no <name>")
      }
      guard let position = categories.firstIndex(of: label) else {
        throw DetectionError.unknownCategory(path: name, entry: entry, category: "\"\(label)\"")
      }
      guard let b = object.child("bndbox") else { throw bad("\(entry): no <bndbox>") }
      let corners = ["xmin", "ymin", "xmax", "ymax"].compactMap { key in
        b.child(key).flatMap { Double($0.trimmed) }.flatMap { $0.isFinite ? $0 : nil }
      }
      guard corners.count == 4 else {
        throw bad("\(entry): <bndbox> needs numeric <xmin>, <ymin>, <xmax> and <ymax>")
      }
      let shift = oneBasedPixels ? 1.0 : 0.0
      let box = BoundingBox(
        minX: corners[0] - shift, minY: corners[1] - shift, maxX: corners[2], maxY: corners[3])
      guard box.width >= 0, box.height >= 0 else {
        throw DetectionError.negativeBox(path: name, entry: entry, box: box)
      }
      guard BoxBounds.isInside(box, width: width, height: height) else {
        throw DetectionError.boxOutsideImage(
          path: name, entry: entry, box: box, width: width, height: height)
      }
      // An empty <difficult/> (as labelme writes it) means 0.
      let difficultText = object.child("difficult")?.trimmed ?? ""
      guard difficultText.isEmpty || difficultText == "0" || difficultText == "1" else {
        throw bad("\(entry): <difficult> is \"\(difficultText)\", not 0 or 1")
      }
      annotations.append(
        BoxAnnotation(
          id: firstAnnotationID + annotations.count, categoryID: position + 1, box: box,
          isDifficult: difficultText == "1"))
    }
    return AnnotatedImage(
      id: imageID, fileName: fileName, width: width, height: height, annotations: annotations)
  }
}
