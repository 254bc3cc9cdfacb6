import Foundation

/// Graft-3D: the point-cloud tasks of `graft bench graft3d`, all built from the real furniture
/// meshes (`graft data prepare furniture`).
///
/// - `furniture`: the prepared set as it is (upright clouds; 406 train, 133 val, 133 test, 10
///   classes).
/// - `furniture-so3`: the same clouds, each turned by its own uniformly random rotation (SO(3),
///   `RandomRotation`), fixed per cloud and split, so no split shares an orientation with
///   another and the up axis carries no information. Training augmentation does not rotate:
///   a method must learn the classes from arbitrarily oriented examples (the "rotated"
///   protocol of point-cloud benchmarks, on real meshes).
public enum Graft3D {
  /// The tasks, as `--data` references.
  public static let tasks = ["furniture", "furniture-so3"]

  /// The `furniture-so3` splits: the furniture splits under fixed random rotations.
  public static func rotatedFurniture(root: URL = Furniture.defaultRoot()) throws -> TuneData<
    PointCloud
  > {
    guard Furniture.isPrepared(root: root) else {
      throw DatasetError(
        .notFound, path: root.path,
        "the furniture set is not prepared: run 'graft data prepare furniture'")
    }
    func split(_ name: String, _ salt: UInt64) throws -> RotatedPointDataset {
      RotatedPointDataset(try Furniture.dataset(split: name, root: root), seed: salt)
    }
    return try TuneData(
      train: split("train", 1), validation: split("val", 2), test: split("test", 3),
      description: "furniture under random SO(3) rotations \(root.path)")
  }
}

/// A point-cloud dataset whose sample `i` is the base's turned by a uniformly random rotation
/// drawn from `(seed, i)` (the same rotation every time it is read); normals turn with the
/// points.
public struct RotatedPointDataset: Dataset {
  /// The clouds before rotation.
  public let base: any Dataset<PointCloud>
  /// Seeds the rotations.
  public let seed: UInt64

  /// `base` under rotations seeded by `seed`.
  public init(_ base: any Dataset<PointCloud>, seed: UInt64) {
    self.base = base
    self.seed = seed
  }

  /// Number of samples.
  public var count: Int { base.count }
  /// The base's class names.
  public var classNames: [String] { base.classNames }
  /// The base's labels.
  public var labels: [Int] { base.labels }

  /// The rotation of sample `index`.
  public func rotation(at index: Int) -> PointTransform {
    var g = RandomGenerator(seed: SeedMix.mix(seed, 0x726F_7461, UInt64(index)))  // "rota"
    return RandomRotation().sampleMatrix(generator: &g)
  }

  /// Sample `index`, turned.
  public func sample(at index: Int) throws -> PointCloud {
    var cloud = try base.sample(at: index)
    let r = rotation(at: index)
    func turn(_ values: [Float]) -> [Float] {
      let n = values.count / 3
      let t = r.applied(to: Tensor(values, shape: [n, 3]))
      return Array(UnsafeBufferPointer(start: t.pointer, count: t.count))
    }
    cloud.positions = turn(cloud.positions)
    if let normals = cloud.normals { cloud.normals = turn(normals) }
    return cloud
  }
}
