import Foundation

/// Why an annotation, detection or image file could not be used. Every case names the file.
public enum DetectionError: Error, Equatable, CustomStringConvertible {
  /// The file does not exist.
  case fileMissing(path: String)
  /// The file exists but could not be read.
  case unreadable(path: String, reason: String)
  /// The file is not JSON or not XML, or is laid out wrongly (says which entry and which key).
  case malformed(path: String, reason: String)
  /// A box reaches outside its image by more than `BoxBounds.tolerance` pixels.
  case boxOutsideImage(path: String, entry: String, box: BoundingBox, width: Int, height: Int)
  /// A box with a negative width or height.
  case negativeBox(path: String, entry: String, box: BoundingBox)
  /// An annotation or detection whose category the categories do not list.
  case unknownCategory(path: String, entry: String, category: String)
  /// An annotation or detection whose image the images do not list.
  case unknownImage(path: String, entry: String, imageID: Int)
  /// Two images, annotations or categories with one id.
  case duplicateID(path: String, what: String, id: Int)
  /// An image the annotations list that is not in the images folder.
  case imageFileMissing(path: String, imagePath: String)

  /// The message, naming the file and the entry.
  public var description: String {
    switch self {
    case .fileMissing(let path): return "\(path): no such file"
    case .unreadable(let path, let reason): return "\(path): cannot read it (\(reason))"
    case .malformed(let path, let reason): return "\(path): \(reason)"
    case .boxOutsideImage(let path, let entry, let b, let w, let h):
      return
        "\(path): \(entry): box [x \(b.x), y \(b.y), w \(b.width), h \(b.height)] reaches "
        + "outside its \(w)×\(h) image by more than \(BoxBounds.tolerance) pixel"
    case .negativeBox(let path, let entry, let b):
      return "\(path): \(entry): box with negative size (w \(b.width), h \(b.height))"
    case .unknownCategory(let path, let entry, let category):
      return "\(path): \(entry): category \(category) is not among the categories"
    case .unknownImage(let path, let entry, let id):
      return "\(path): \(entry): image_id \(id) is not among the ground truth's images"
    case .duplicateID(let path, let what, let id):
      return "\(path): two \(what) have id \(id)"
    case .imageFileMissing(let path, let imagePath):
      return "\(path): image \(imagePath) does not exist"
    }
  }
}

/// How far a box may reach past its image before the readers refuse it.
///
/// pycocotools checks no bounds at all, and Detectron2 clips boxes to the image. Annotation tools
/// round and VOC counts pixels from 1 (a box to the last column ends at `width + 1` in 0-based
/// continuous terms when converted naively), so the readers accept boxes up to one pixel past
/// each edge, keep them as written, and refuse anything further: such a box is a wrong file or
/// wrong image size, not rounding.
public enum BoxBounds {
  /// One pixel, past any edge.
  public static let tolerance = 1.0

  /// Whether `box` lies within a `width`×`height` image up to the tolerance.
  public static func isInside(_ box: BoundingBox, width: Int, height: Int) -> Bool {
    box.x >= -tolerance && box.y >= -tolerance && box.maxX <= Double(width) + tolerance
      && box.maxY <= Double(height) + tolerance
  }
}
