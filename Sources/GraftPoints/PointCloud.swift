import GraftTensor

/// A per-point field a file carries beyond positions, normals, colour and intensity (a scanner's
/// `confidence`, PCL's `curvature`, a 33-bin `fpfh` histogram): kept so conversions do not lose it.
public struct PointAttribute: Sendable, Equatable {
  /// The field's name in the file.
  public var name: String
  /// Values per point (PCD's `COUNT`).
  public var components: Int
  /// `count × components` values, point-major. Integer and double fields are converted to
  /// Float.
  public var values: [Float]

  /// An attribute of `components` values per point.
  public init(name: String, components: Int = 1, values: [Float]) {
    self.name = name
    self.components = components
    self.values = values
  }
}

/// Where a cloud was acquired from, as PCD's `VIEWPOINT` states it: a translation and a rotation
/// quaternion (w, x, y, z).
public struct PointViewpoint: Sendable, Equatable {
  /// Translation x, y, z.
  public var translation: SIMD3<Double>
  /// Rotation quaternion w, x, y, z.
  public var rotation: SIMD4<Double>

  /// The identity viewpoint, `0 0 0 1 0 0 0`: what PCL writes by default.
  public static let identity = PointViewpoint(
    translation: .zero, rotation: SIMD4(1, 0, 0, 0))

  /// A viewpoint from its translation and its rotation (w, x, y, z).
  public init(translation: SIMD3<Double>, rotation: SIMD4<Double>) {
    self.translation = translation
    self.rotation = rotation
  }
}

/// A point cloud: positions and the optional per-point fields that files carry.
///
/// An organised cloud (PCL's image-like clouds, `height > 1`) keeps every grid cell, and its
/// missing points have NaN coordinates; `dense()` drops them (and counts them) where a dense cloud
/// is needed. Every other format holds only finite points.
public struct PointCloud: Sendable, Equatable {
  /// x, y, z of each point, interleaved: `[x0, y0, z0, x1, …]`.
  public var positions: [Float]
  /// Unit normals, interleaved like `positions`, when the file has them.
  public var normals: [Float]?
  /// 8-bit red, green, blue per point, interleaved, when the file has colour.
  public var colors: [UInt8]?
  /// 8-bit alpha per point, when the file has it (PCD `rgba`, PLY `alpha`).
  public var alpha: [UInt8]?
  /// Intensity per point, when the file has it.
  public var intensity: [Float]?
  /// Every other field, in file order.
  public var attributes: [PointAttribute]
  /// Columns of an organised cloud; `count` for an unorganised one.
  public var width: Int
  /// Rows of an organised cloud; 1 for an unorganised one.
  public var height: Int
  /// The acquisition viewpoint (PCD only; identity elsewhere).
  public var viewpoint: PointViewpoint

  /// An unorganised cloud of `positions.count / 3` points.
  public init(
    positions: [Float], normals: [Float]? = nil, colors: [UInt8]? = nil, alpha: [UInt8]? = nil,
    intensity: [Float]? = nil, attributes: [PointAttribute] = [],
    viewpoint: PointViewpoint = .identity
  ) {
    self.positions = positions
    self.normals = normals
    self.colors = colors
    self.alpha = alpha
    self.intensity = intensity
    self.attributes = attributes
    self.width = positions.count / 3
    self.height = 1
    self.viewpoint = viewpoint
  }

  /// Number of points (grid cells, for an organised cloud).
  public var count: Int { positions.count / 3 }

  /// Whether the cloud is an image-like grid (`height > 1`).
  public var isOrganized: Bool { height > 1 }

  /// The position of point `i`.
  public func point(_ i: Int) -> SIMD3<Float> {
    SIMD3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
  }

  /// Whether point `i` has three finite coordinates.
  public func isFinite(_ i: Int) -> Bool {
    positions[3 * i].isFinite && positions[3 * i + 1].isFinite && positions[3 * i + 2].isFinite
  }

  /// Points with a NaN or infinite coordinate (an organised cloud's missing points).
  public var missingCount: Int { (0..<count).reduce(0) { $0 + (isFinite($1) ? 0 : 1) } }

  /// The field names a writer emits for this cloud, in order (PCD's naming).
  public var fieldNames: [String] {
    var names = ["x", "y", "z"]
    if normals != nil { names += ["normal_x", "normal_y", "normal_z"] }
    if colors != nil { names.append(alpha != nil ? "rgba" : "rgb") }
    if intensity != nil { names.append("intensity") }
    names += attributes.map(\.name)
    return names
  }

  /// Smallest and largest coordinates over the finite points; nil when there are none.
  public var bounds: (min: SIMD3<Float>, max: SIMD3<Float>)? {
    var lo = SIMD3<Float>(repeating: .infinity)
    var hi = SIMD3<Float>(repeating: -.infinity)
    var any = false
    for i in 0..<count where isFinite(i) {
      let p = point(i)
      lo = pointwiseMin(lo, p)
      hi = pointwiseMax(hi, p)
      any = true
    }
    return any ? (lo, hi) : nil
  }

  /// The points at `indices`, in that order, with all their fields; the result is unorganised.
  public func selecting(_ indices: [Int]) -> PointCloud {
    func pick<T>(_ values: [T], _ k: Int) -> [T] {
      var out = [T]()
      out.reserveCapacity(indices.count * k)
      for i in indices { out.append(contentsOf: values[(i * k)..<(i * k + k)]) }
      return out
    }
    var result = PointCloud(
      positions: pick(positions, 3), normals: normals.map { pick($0, 3) },
      colors: colors.map { pick($0, 3) }, alpha: alpha.map { pick($0, 1) },
      intensity: intensity.map { pick($0, 1) },
      attributes: attributes.map {
        PointAttribute(
          name: $0.name, components: $0.components, values: pick($0.values, $0.components))
      }, viewpoint: viewpoint)
    result.width = indices.count
    return result
  }

  /// The cloud without its points that have a non-finite coordinate, as an unorganised cloud,
  /// and how many were dropped. A cloud with none is returned as it is (organisation kept).
  public func dense() -> (cloud: PointCloud, dropped: Int) {
    let kept = (0..<count).filter { isFinite($0) }
    if kept.count == count { return (self, 0) }
    return (selecting(kept), count - kept.count)
  }

  /// Positions as a `[count, 3]` tensor, or `[count, 6]` with the normals after them when
  /// `withNormals` is true and the cloud has normals.
  public func tensor(withNormals: Bool = false) -> Tensor {
    guard withNormals, let normals else { return Tensor(positions, shape: [count, 3]) }
    var values = [Float]()
    values.reserveCapacity(count * 6)
    for i in 0..<count {
      values.append(contentsOf: positions[(3 * i)..<(3 * i + 3)])
      values.append(contentsOf: normals[(3 * i)..<(3 * i + 3)])
    }
    return Tensor(values, shape: [count, 6])
  }

  /// Checks that every field has one entry per point and the grid covers the points; writers
  /// call this so an inconsistent cloud is refused rather than written.
  public func validate(path: String) throws {
    func check(_ ok: Bool, _ what: String) throws {
      if !ok { throw PointFileError(.invalidWrite, path: path, what) }
    }
    try check(
      positions.count % 3 == 0, "positions hold \(positions.count) values, not x y z triples")
    let n = count
    try check(normals.map { $0.count == 3 * n } ?? true, "normals do not cover \(n) points")
    try check(colors.map { $0.count == 3 * n } ?? true, "colours do not cover \(n) points")
    try check(alpha.map { $0.count == n } ?? true, "alpha does not cover \(n) points")
    try check(alpha == nil || colors != nil, "alpha without colours")
    try check(intensity.map { $0.count == n } ?? true, "intensity does not cover \(n) points")
    for a in attributes {
      try check(
        a.components >= 1 && a.values.count == a.components * n,
        "attribute '\(a.name)' does not cover \(n) points")
      try check(PointCloud.isPlainName(a.name), "attribute name '\(a.name)' is not a plain word")
    }
    try check(
      width >= 0 && height >= 1 && width * height == n, "\(width) × \(height) is not \(n) points")
  }

  /// Whether `name` can be a field name in every header format (letters, digits, `_`).
  static func isPlainName(_ name: String) -> Bool {
    !name.isEmpty
      && name.utf8.allSatisfy {
        ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) || $0 == 95
      }
  }
}
