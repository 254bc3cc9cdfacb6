// Boxes, labels and scores drawn onto an image (`graft detect --draw`).

/// Draws detections onto an `RGBImage`: each box as a 2-pixel outline in its class's colour, and
/// above it (inside, when at the top edge) a filled tag with the label and score in a 3 × 5
/// pixel font at twice its size. Small images are first enlarged (nearest neighbour) so that
/// the shorter side is at least `minimumSide` and the text stays legible.
public enum DetectionDrawing {
  /// Ten distinct colours, by class index modulo 10 (matplotlib's tab10).
  public static let palette: [(UInt8, UInt8, UInt8)] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
  ]

  /// One box to draw: corners in the image's pixels, the class index (for the colour) and the
  /// tag's text.
  public struct Mark: Sendable {
    /// Corners in the image's pixels.
    public var box: BoundingBox
    /// The class index, which picks the colour from `palette`.
    public var classIndex: Int
    /// The tag written at the box's top-left corner.
    public var text: String

    /// A mark from its parts.
    public init(box: BoundingBox, classIndex: Int, text: String) {
      self.box = box
      self.classIndex = classIndex
      self.text = text
    }
  }

  /// `image` with `marks` drawn, enlarged by a whole factor so its shorter side reaches
  /// `minimumSide`.
  public static func draw(_ image: RGBImage, marks: [Mark], minimumSide: Int = 256) -> RGBImage {
    let factor = max(
      1,
      (minimumSide + min(image.width, image.height) - 1)
        / max(1, min(image.width, image.height)))
    var canvas = Canvas(enlarging: image, by: factor)
    for mark in marks {
      let colour = palette[((mark.classIndex % 10) + 10) % 10]
      let x0 = Int((mark.box.x * Double(factor)).rounded())
      let y0 = Int((mark.box.y * Double(factor)).rounded())
      let x1 = Int((mark.box.maxX * Double(factor)).rounded()) - 1
      let y1 = Int((mark.box.maxY * Double(factor)).rounded()) - 1
      for t in 0..<2 {
        canvas.fill(x0, y0 + t, x1, y0 + t, colour)
        canvas.fill(x0, y1 - t, x1, y1 - t, colour)
        canvas.fill(x0 + t, y0, x0 + t, y1, colour)
        canvas.fill(x1 - t, y0, x1 - t, y1, colour)
      }
      let text = mark.text.uppercased()
      let scale = 2
      let width = text.count * 4 * scale + scale
      let height = 5 * scale + 2 * scale
      let top = y0 - height >= 0 ? y0 - height : y0 + 2
      canvas.fill(x0, top, x0 + width - 1, top + height - 1, colour)
      var x = x0 + scale
      for character in text {
        canvas.glyph(character, x: x, y: top + scale, scale: scale, colour: (255, 255, 255))
        x += 4 * scale
      }
    }
    return canvas.image
  }

  /// Rows of each glyph, three bits each, top row first.
  static let glyphs: [Character: [UInt8]] = [
    "A": [2, 5, 7, 5, 5], "B": [6, 5, 6, 5, 6], "C": [3, 4, 4, 4, 3], "D": [6, 5, 5, 5, 6],
    "E": [7, 4, 6, 4, 7], "F": [7, 4, 6, 4, 4], "G": [3, 4, 5, 5, 3], "H": [5, 5, 7, 5, 5],
    "I": [7, 2, 2, 2, 7], "J": [1, 1, 1, 5, 2], "K": [5, 5, 6, 5, 5], "L": [4, 4, 4, 4, 7],
    "M": [5, 7, 7, 5, 5], "N": [6, 5, 5, 5, 5], "O": [2, 5, 5, 5, 2], "P": [6, 5, 6, 4, 4],
    "Q": [2, 5, 5, 6, 3], "R": [6, 5, 6, 5, 5], "S": [3, 4, 2, 1, 6], "T": [7, 2, 2, 2, 2],
    "U": [5, 5, 5, 5, 7], "V": [5, 5, 5, 5, 2], "W": [5, 5, 7, 7, 5], "X": [5, 5, 2, 5, 5],
    "Y": [5, 5, 2, 2, 2], "Z": [7, 1, 2, 4, 7], "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7],
    "2": [6, 1, 2, 4, 7], "3": [6, 1, 2, 1, 6], "4": [5, 5, 7, 1, 1], "5": [7, 4, 6, 1, 6],
    "6": [3, 4, 7, 5, 7], "7": [7, 1, 2, 2, 2], "8": [7, 5, 7, 5, 7], "9": [7, 5, 7, 1, 6],
    ".": [0, 0, 0, 0, 2], "-": [0, 0, 7, 0, 0], "/": [1, 1, 2, 4, 4], ":": [0, 2, 0, 2, 0],
    " ": [0, 0, 0, 0, 0],
  ]

  /// A mutable image that clips what is drawn outside it.
  struct Canvas {
    var image: RGBImage

    init(enlarging source: RGBImage, by factor: Int) {
      let (w, h) = (source.width * factor, source.height * factor)
      var pixels = [UInt8](repeating: 0, count: w * h * 3)
      for y in 0..<h {
        for x in 0..<w {
          let s = ((y / factor) * source.width + x / factor) * 3
          let d = (y * w + x) * 3
          pixels[d] = source.pixels[s]
          pixels[d + 1] = source.pixels[s + 1]
          pixels[d + 2] = source.pixels[s + 2]
        }
      }
      image = RGBImage(width: w, height: h, pixels: pixels)
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), both inclusive.
    mutating func fill(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
      let (w, h) = (image.width, image.height)
      let (left, right) = (max(0, x0), min(w - 1, x1))
      let (top, bottom) = (max(0, y0), min(h - 1, y1))
      // Empty (a degenerate box, or wholly outside): nothing to fill.
      guard left <= right, top <= bottom else { return }
      for y in top...bottom {
        for x in left...right {
          let i = (y * w + x) * 3
          image.pixels[i] = c.0
          image.pixels[i + 1] = c.1
          image.pixels[i + 2] = c.2
        }
      }
    }

    /// Draws `character` (blank when the font lacks it) with its top-left at (x, y).
    mutating func glyph(
      _ character: Character, x: Int, y: Int, scale: Int, colour: (UInt8, UInt8, UInt8)
    ) {
      let rows = DetectionDrawing.glyphs[character] ?? [0, 0, 0, 0, 0]
      for (r, bits) in rows.enumerated() {
        for c in 0..<3 where bits & (4 >> c) != 0 {
          fill(
            x + c * scale, y + r * scale, x + (c + 1) * scale - 1, y + (r + 1) * scale - 1,
            colour)
        }
      }
    }
  }
}
