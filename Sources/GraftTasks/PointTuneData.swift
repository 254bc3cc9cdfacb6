import Foundation

extension PointCloud: TuneSample {
  /// Point-MAE's inputs (`PointTransforms`): training normalises, farthest-point-samples a
  /// shuffled pool, keeps `points` of it at random and scales and translates; evaluation
  /// normalises and farthest-point-samples `points` from point 0.
  public static func transforms(for input: BackboneInput) throws -> SampleTransforms<PointCloud> {
    guard case .points(let p) = input else {
      throw ConfigError("the data are point clouds, but the backbone takes images")
    }
    return SampleTransforms(
      train: PointTransforms.training(points: p.points, normals: p.normals),
      eval: PointTransforms.evaluation(points: p.points, normals: p.normals))
  }

  /// Point-MAE's voting view (`PointTransforms.voting`): a random farthest-point subset,
  /// scaled and translated.
  public static func votingTransform(for input: BackboneInput) throws -> SampleTransform<
    PointCloud
  >? {
    guard case .points(let p) = input else {
      throw ConfigError("the data are point clouds, but the backbone takes images")
    }
    return PointTransforms.voting(points: p.points, normals: p.normals)
  }

  /// A 64×64 picture of the cloud seen from the front (x right, y up), nearer points brighter
  /// and in front.
  public static func preview(_ sample: PointCloud) -> RGBImage? {
    PointCloudPicture.render(sample, side: 64)
  }
}

/// Orthographic pictures of point clouds for reports.
public enum PointCloudPicture {
  /// The cloud projected on the x–y plane into a `side`×`side` image on white, each point a dot
  /// shaded from light grey-blue (far, small z) to dark blue (near), nearest last.
  public static func render(_ cloud: PointCloud, side: Int) -> RGBImage? {
    let n = cloud.count
    guard n > 0, side > 2 else { return nil }
    let p = cloud.positions
    var finite: [Int] = []
    for i in 0..<n where p[3 * i].isFinite && p[3 * i + 1].isFinite && p[3 * i + 2].isFinite {
      finite.append(i)
    }
    guard !finite.isEmpty else { return nil }
    func range(_ axis: Int) -> (Float, Float) {
      let values = finite.map { p[3 * $0 + axis] }
      return (values.min()!, values.max()!)
    }
    let (x0, x1) = range(0)
    let (y0, y1) = range(1)
    let (z0, z1) = range(2)
    let extent = Swift.max(x1 - x0, y1 - y0, 1e-6)
    let scale = Float(side - 3) / extent
    let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2)
    var pixels = [UInt8](repeating: 255, count: side * side * 3)
    for i in finite.sorted(by: { p[3 * $0 + 2] < p[3 * $1 + 2] }) {
      let col = Int((p[3 * i] - cx) * scale + Float(side) / 2)
      let row = Int(Float(side) / 2 - (p[3 * i + 1] - cy) * scale)
      guard (0..<side).contains(col), (0..<side).contains(row) else { continue }
      let depth = z1 > z0 ? (p[3 * i + 2] - z0) / (z1 - z0) : 1
      let shade = UInt8(200 - 170 * depth)
      let o = (row * side + col) * 3
      pixels[o] = shade / 2
      pixels[o + 1] = shade / 2 + 20
      pixels[o + 2] = 255 - shade / 3
    }
    return RGBImage(width: side, height: side, pixels: pixels)
  }
}

extension TuneData where Sample == PointCloud {
  /// Reads the point-cloud task `spec` names:
  /// - `furniture`: the prepared furniture set (`graft data prepare furniture`), its train, val
  ///   and test splits;
  /// - a ModelNet40 folder (`modelnet40_normal_resampled`), ModelNet / ScanObjectNN HDF5 files or
  ///   a folder of them, a tree of class folders per split, or one of class folders holding a
  ///   split folder each (`PointDatasets`): its `train` and `test` splits, validation its `val`
  ///   split when there is one, else 10 % of train (seed 0);
  /// - a tree of class folders without splits: split 70/10/20 (seed 0);
  /// - `furniture-so3`: the furniture splits under fixed random rotations (`Graft3D`).
  public static func load(_ spec: String) throws -> TuneData<PointCloud> {
    if spec == "furniture-so3" { return try Graft3D.rotatedFurniture() }
    if spec == "furniture" {
      let root = Furniture.defaultRoot()
      guard Furniture.isPrepared(root: root) else {
        throw DatasetError(
          .notFound, path: root.path,
          "the furniture set is not prepared: run 'graft data prepare furniture'")
      }
      return try TuneData(
        train: Furniture.dataset(split: "train", root: root),
        validation: Furniture.dataset(split: "val", root: root),
        test: Furniture.dataset(split: "test", root: root),
        description: "furniture \(root.path)")
    }
    let url = URL(fileURLWithPath: spec)
    let layout = try PointDatasets.layout(of: url, split: "train")
    if layout == .classFolders
      || (layout == .hdf5 && !FileManager.default.isDirectory(url.path)
        && !url.lastPathComponent.hasSuffix("_files.txt"))
    {
      return try split(
        PointDatasets.open(url, split: "train"), description: "point clouds \(url.path)")
    }
    let train = try PointDatasets.open(url, split: "train")
    // A split exists where the same layout finds it (`train/` and `test/` folders: a missing
    // `val/` must not fall back to reading the split folders themselves as classes).
    func exists(_ split: String) -> Bool {
      (try? PointDatasets.layout(of: url, split: split)) == layout
    }
    guard exists("test") else {
      // Only a training split: validation and test are cut from it, as for image folders.
      return try split(train, description: "point clouds \(url.path), split 'train'")
    }
    let test = try PointDatasets.open(url, split: "test")
    if exists("val"), let val = try? PointDatasets.open(url, split: "val"), val.count > 0 {
      return try TuneData(
        train: train, validation: val, test: test, description: "point clouds \(url.path)")
    }
    let (t, v) = try DatasetSplit.random(
      train, validationCount: train.count / 10, seed: DataFiles.splitSeed)
    return try TuneData(
      train: Subset(train, indices: t), validation: Subset(train, indices: v), test: test,
      description: "point clouds \(url.path) (validation: 10 % of train, seed 0)")
  }
}

extension FileManager {
  /// Whether `path` is a folder.
  fileprivate func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
  }
}

/// A task's data of whichever kind its backbone takes.
public enum AnyTuneData {
  /// Images.
  case images(TuneData<RGBImage>)
  /// Point clouds.
  case points(TuneData<PointCloud>)
  /// Video clips, for an image backbone run frame by frame.
  case videos(TuneData<ClipSample>)

  /// Loads `spec` as the data `input` takes; video data (`VideoTuneData.isVideoData`) for an
  /// image input are clips read as `video` says.
  public static func load(
    _ spec: String, for input: BackboneInput, video: VideoInput = VideoInput()
  )
    throws -> AnyTuneData
  {
    switch input {
    case .image:
      if try VideoTuneData.isVideoData(spec) {
        return .videos(try VideoTuneData.load(spec, input: video))
      }
      return .images(try TuneData<RGBImage>.load(spec))
    case .points:
      guard try !VideoTuneData.isVideoData(spec) else {
        throw ConfigError(
          "\(spec) holds video clips, but this run takes point clouds (a point backbone, or a "
            + "method such as p2p that takes point clouds); video runs need an image backbone "
            + "and a method that takes its images")
      }
      do {
        return .points(try TuneData<PointCloud>.load(spec))
      } catch let error as DatasetError {
        // Say why point data were expected: an image task given to a point run is the usual
        // mistake.
        throw DatasetError(
          error.kind, path: error.path, line: error.line,
          error.message + " (this run takes point clouds)")
      }
    }
  }

  /// Class names shared by the splits.
  public var classNames: [String] {
    switch self {
    case .images(let d): d.classNames
    case .points(let d): d.classNames
    case .videos(let d): d.classNames
    }
  }

  /// Where the data came from, for logs.
  public var description: String {
    switch self {
    case .images(let d): d.description
    case .points(let d): d.description
    case .videos(let d): d.description
    }
  }
}

extension Trainer {
  /// `run(data:…)` on data of either kind.
  public func run(
    data: AnyTuneData, folder: URL, dataReference: String = "", resume: Bool = false,
    stopAfter: Int? = nil, log: (String) -> Void = { _ in }
  ) throws -> TuneSummary? {
    switch data {
    case .images(let d):
      try run(
        data: d, folder: folder, dataReference: dataReference, resume: resume,
        stopAfter: stopAfter, log: log)
    case .points(let d):
      try run(
        data: d, folder: folder, dataReference: dataReference, resume: resume,
        stopAfter: stopAfter, log: log)
    case .videos(let d):
      try run(
        data: d, folder: folder, dataReference: dataReference, resume: resume,
        stopAfter: stopAfter, log: log)
    }
  }
}
