// Between the dataset types (COCO/VOC annotations, COCO results) and the detector's.

extension FCOSTarget {
  /// An image's training target: boxes in the detector's pixels and labels as positions in
  /// `categories`.
  ///
  /// As torchvision's detection references: crowd regions are left out (COCO scores them as
  /// ignorable, they are no object to learn), and so are boxes without width or height.
  /// - Parameters:
  ///   - scale: multiplies x and y, from the image's pixels to the detector's input (for a resized
  ///     image).
  /// - Returns: nil when an annotation's category is not in `categories`.
  public init?(
    _ image: AnnotatedImage, categories: [DetectionCategory], scale: (x: Double, y: Double) = (1, 1)
  ) {
    var boxes: [CornerBox] = []
    var labels: [Int] = []
    for a in image.annotations where !a.isCrowd && a.box.width > 0 && a.box.height > 0 {
      guard let label = categories.firstIndex(where: { $0.id == a.categoryID }) else { return nil }
      boxes.append(
        CornerBox(
          Float(a.box.x * scale.x), Float(a.box.y * scale.y), Float(a.box.maxX * scale.x),
          Float(a.box.maxY * scale.y)))
      labels.append(label)
    }
    self.init(boxes: boxes, labels: labels)
  }
}

extension FCOSDetections {
  /// The detections in COCO's result format for `imageID`: labels mapped back to category ids,
  /// boxes divided by `scale` (the factor the image was resized by) and written as [x, y, w, h].
  public func cocoDetections(
    imageID: Int, categories: [DetectionCategory], scale: (x: Double, y: Double) = (1, 1)
  ) -> [Detection] {
    zip(boxes, zip(scores, labels)).map { box, scored in
      let (x1, y1) = (Double(box[0]) / scale.x, Double(box[1]) / scale.y)
      let (x2, y2) = (Double(box[2]) / scale.x, Double(box[3]) / scale.y)
      return Detection(
        imageID: imageID, categoryID: categories[scored.1].id,
        box: BoundingBox(minX: x1, minY: y1, maxX: x2, maxY: y2), score: Double(scored.0))
    }
  }
}
