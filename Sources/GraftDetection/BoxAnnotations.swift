import Foundation

/// An axis-aligned box in pixel coordinates, COCO's layout: the top-left corner and the size.
///
/// Coordinates are continuous: a box covering pixel columns 0…9 has `x = 0` and `width = 10`.
public struct BoundingBox: Equatable, Sendable {
  /// Left edge.
  public var x: Double
  /// Top edge.
  public var y: Double
  /// Width (not negative for a valid box).
  public var width: Double
  /// Height (not negative for a valid box).
  public var height: Double

  /// Makes a box from its top-left corner and size (COCO's `[x, y, w, h]`).
  public init(x: Double, y: Double, width: Double, height: Double) {
    self.x = x
    self.y = y
    self.width = width
    self.height = height
  }

  /// Makes a box from its corners.
  public init(minX: Double, minY: Double, maxX: Double, maxY: Double) {
    self.init(x: minX, y: minY, width: maxX - minX, height: maxY - minY)
  }

  /// Right edge.
  public var maxX: Double { x + width }
  /// Bottom edge.
  public var maxY: Double { y + height }
  /// `width * height`, the area COCO gives detections.
  public var area: Double { width * height }
}

/// One annotated object: a box, its category and COCO's/VOC's flags.
public struct BoxAnnotation: Equatable, Sendable {
  /// The annotation's id (COCO's `id`; for VOC files, the object's position in the file).
  public var id: Int
  /// The category id, one of the dataset's `categories`.
  public var categoryID: Int
  /// The box.
  public var box: BoundingBox
  /// COCO's `area` (the segment's area in COCO files, which the area ranges use); the box's
  /// area where the file has none.
  public var area: Double
  /// COCO's `iscrowd`: a region of many objects, matched without penalty.
  public var isCrowd: Bool
  /// VOC's `difficult`: neither counted nor penalised by VOC's AP.
  public var isDifficult: Bool

  /// Makes an annotation; `area` defaults to the box's area.
  public init(
    id: Int, categoryID: Int, box: BoundingBox, area: Double? = nil, isCrowd: Bool = false,
    isDifficult: Bool = false
  ) {
    self.id = id
    self.categoryID = categoryID
    self.box = box
    self.area = area ?? box.area
    self.isCrowd = isCrowd
    self.isDifficult = isDifficult
  }
}

/// An image and its boxes.
public struct AnnotatedImage: Equatable, Sendable {
  /// The image id (COCO's `id`).
  public var id: Int
  /// The image file, relative to the images folder (COCO's `file_name`).
  public var fileName: String
  /// Width in pixels.
  public var width: Int
  /// Height in pixels.
  public var height: Int
  /// The image's objects, in file order.
  public var annotations: [BoxAnnotation]

  /// Makes an annotated image.
  public init(id: Int, fileName: String, width: Int, height: Int, annotations: [BoxAnnotation]) {
    self.id = id
    self.fileName = fileName
    self.width = width
    self.height = height
    self.annotations = annotations
  }
}

/// A detection category.
public struct DetectionCategory: Equatable, Sendable {
  /// The id annotations refer to.
  public var id: Int
  /// The name.
  public var name: String

  /// Makes a category.
  public init(id: Int, name: String) {
    self.id = id
    self.name = name
  }
}

/// Box annotations of a set of images: what the COCO and VOC readers return.
public struct DetectionDataset: Equatable, Sendable {
  /// The categories, in file order.
  public var categories: [DetectionCategory]
  /// The images, in file order, each with its annotations.
  public var images: [AnnotatedImage]

  /// Makes a dataset.
  public init(categories: [DetectionCategory], images: [AnnotatedImage]) {
    self.categories = categories
    self.images = images
  }

  /// Every annotation, image by image.
  public var annotationCount: Int { images.reduce(0) { $0 + $1.annotations.count } }
}

/// One detection in COCO's result format (`image_id`, `category_id`, `bbox`, `score`).
public struct Detection: Equatable, Sendable {
  /// The image it was found in.
  public var imageID: Int
  /// The predicted category.
  public var categoryID: Int
  /// The predicted box.
  public var box: BoundingBox
  /// The confidence; higher first.
  public var score: Double

  /// Makes a detection.
  public init(imageID: Int, categoryID: Int, box: BoundingBox, score: Double) {
    self.imageID = imageID
    self.categoryID = categoryID
    self.box = box
    self.score = score
  }
}
