import Foundation

/// Writes a `DetectionDataset` as a COCO annotation file (what `COCOAnnotations` reads back).
public enum COCOWriter {
  private struct File: Encodable {
    struct Image: Encodable {
      var id: Int
      var file_name: String
      var width: Int
      var height: Int
    }
    struct Annotation: Encodable {
      var id: Int
      var image_id: Int
      var category_id: Int
      var bbox: [Double]
      var area: Double
      var iscrowd: Int
      /// Only for VOC's difficult objects (absent otherwise), as `COCOAnnotations` reads it.
      var difficult: Int?
    }
    struct Category: Encodable {
      var id: Int
      var name: String
    }
    var info: [String: String]
    var images: [Image]
    var annotations: [Annotation]
    var categories: [Category]
  }

  /// The file's bytes: `info` (free-form strings), `images`, `annotations` (with `bbox`,
  /// `area`, `iscrowd`, and `difficult: 1` on VOC's difficult objects) and `categories`, keys
  /// sorted so equal datasets give equal bytes. A VOC dataset written so keeps what
  /// `graft score detections --metric voc` needs.
  public static func encode(_ dataset: DetectionDataset, info: [String: String] = [:]) throws
    -> Data
  {
    let file = File(
      info: info,
      images: dataset.images.map {
        .init(id: $0.id, file_name: $0.fileName, width: $0.width, height: $0.height)
      },
      annotations: dataset.images.flatMap { image in
        image.annotations.map {
          .init(
            id: $0.id, image_id: image.id, category_id: $0.categoryID,
            bbox: [$0.box.x, $0.box.y, $0.box.width, $0.box.height], area: $0.area,
            iscrowd: $0.isCrowd ? 1 : 0, difficult: $0.isDifficult ? 1 : nil)
        }
      },
      categories: dataset.categories.map { .init(id: $0.id, name: $0.name) })
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(file)
  }

  /// Writes the file atomically (readers see the old file or the whole new one).
  public static func write(_ dataset: DetectionDataset, info: [String: String] = [:], to url: URL)
    throws
  {
    try AtomicFile.write(encode(dataset, info: info), to: url)
  }
}
