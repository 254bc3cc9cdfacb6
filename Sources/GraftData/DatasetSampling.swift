import Foundation

/// The samples of `base` at `indices`, in that order (duplicates allowed).
public struct Subset<Sample>: Dataset {
  /// The dataset sampled from.
  public let base: any Dataset<Sample>
  /// Positions in `base`; sample `i` here is `base`'s sample `indices[i]`.
  public let indices: [Int]
  /// The label of every sample.
  public let labels: [Int]

  /// A view of `base` at `indices`; every index must lie in `0..<base.count`.
  public init(_ base: any Dataset<Sample>, indices: [Int]) throws {
    if let bad = indices.first(where: { $0 < 0 || $0 >= base.count }) {
      throw DatasetError(
        .invalidArgument, path: "", "subset index \(bad) is outside 0..<\(base.count)")
    }
    self.base = base
    self.indices = indices
    self.labels = indices.map { base.label(at: $0) }
  }

  /// Number of samples.
  public var count: Int { indices.count }
  /// `base`'s class names.
  public var classNames: [String] { base.classNames }
  /// The label of sample `index`.
  public func label(at index: Int) -> Int { labels[index] }
  /// `base`'s sample at `indices[index]`.
  public func sample(at index: Int) throws -> Sample { try base.sample(at: indices[index]) }
}

/// Few-shot sampling: `k` samples of every class, chosen by a seed.
public enum FewShot {
  /// Indices of `k` samples of each class of `dataset` (every class in `classNames`), sorted
  /// ascending. The same dataset, `k` and seed always give the same indices; each class's
  /// choice is uniform without replacement. Throws when a class has fewer than `k` samples.
  public static func sample(_ dataset: any Dataset, perClass k: Int, seed: UInt64) throws -> [Int] {
    guard k > 0 else {
      throw DatasetError(.invalidArgument, path: "", "few-shot k must be positive, got \(k)")
    }
    let byClass = indicesByClass(dataset)
    var generator = RandomGenerator(seed: seed)
    var chosen: [Int] = []
    for (label, members) in byClass.enumerated() {
      guard members.count >= k else {
        throw DatasetError(
          .tooFewSamples, path: "",
          "class \(label) ('\(dataset.classNames[label])') has \(members.count) samples, "
            + "fewer than the \(k) asked for")
      }
      chosen += generator.permutation(members.count).prefix(k).map { members[$0] }
    }
    return chosen.sorted()
  }

  /// `sample`'s indices as a dataset.
  public static func subset<Sample>(
    _ dataset: any Dataset<Sample>, perClass k: Int, seed: UInt64
  ) throws -> Subset<Sample> {
    try Subset(dataset, indices: sample(dataset, perClass: k, seed: seed))
  }
}

/// Seeded splits of a dataset's indices into training and validation parts.
public enum DatasetSplit {
  /// A uniformly random `validationCount` of the indices for validation, the rest for training;
  /// both lists sorted ascending and determined by the seed.
  public static func random(
    _ dataset: any Dataset, validationCount: Int, seed: UInt64
  ) throws -> (train: [Int], validation: [Int]) {
    guard validationCount >= 0, validationCount <= dataset.count else {
      throw DatasetError(
        .invalidArgument, path: "",
        "validation size \(validationCount) is outside 0...\(dataset.count)")
    }
    var generator = RandomGenerator(seed: seed)
    let order = generator.permutation(dataset.count)
    return (
      order[validationCount...].sorted(), order[..<validationCount].sorted()
    )
  }

  /// Stratified: `perClass` random samples of every class for validation, the rest for
  /// training; both lists sorted ascending and determined by the seed. Throws when a class has
  /// fewer than `perClass` samples.
  public static func stratified(
    _ dataset: any Dataset, validationPerClass perClass: Int, seed: UInt64
  ) throws -> (train: [Int], validation: [Int]) {
    guard perClass >= 0 else {
      throw DatasetError(.invalidArgument, path: "", "validation size \(perClass) per class")
    }
    let validation =
      perClass == 0 ? [] : try FewShot.sample(dataset, perClass: perClass, seed: seed)
    let held = Set(validation)
    return ((0..<dataset.count).filter { !held.contains($0) }, validation)
  }
}

/// Every class's sample indices, ascending, indexed by label.
func indicesByClass(_ dataset: any Dataset) -> [[Int]] {
  var byClass = [[Int]](repeating: [], count: dataset.classCount)
  for (i, l) in dataset.labels.enumerated() where l >= 0 && l < byClass.count {
    byClass[l].append(i)
  }
  return byClass
}

/// `base` with other class names (the list files of a VTAB-style task carry only numbers; a
/// `classes.txt` beside them names the classes).
public struct RenamedClasses<Sample>: Dataset {
  /// The dataset renamed.
  public let base: any Dataset<Sample>
  /// The new names, one per class of `base`.
  public let classNames: [String]

  /// `base` with `classNames`, which must have as many entries as `base` has classes.
  public init(_ base: any Dataset<Sample>, classNames: [String]) throws {
    guard classNames.count == base.classCount else {
      throw DatasetError(
        .mismatch, path: "",
        "\(classNames.count) class names for a dataset of \(base.classCount) classes")
    }
    self.base = base
    self.classNames = classNames
  }

  /// Number of samples.
  public var count: Int { base.count }
  /// The labels of `base`.
  public var labels: [Int] { base.labels }
  /// The sample of `base`.
  public func sample(at index: Int) throws -> Sample { try base.sample(at: index) }
}

/// Two datasets with the same classes, one after the other: sample `i` is `first`'s for
/// `i < first.count`, else `second`'s sample `i - first.count` (VTAB-1k's train800 + val200).
public struct ConcatenatedDataset<Sample>: Dataset {
  /// The leading part.
  public let first: any Dataset<Sample>
  /// The part after it.
  public let second: any Dataset<Sample>
  /// The label of every sample.
  public let labels: [Int]

  /// `first` then `second`; their class lists must be the same, in the same order (a label
  /// means one class throughout).
  public init(_ first: any Dataset<Sample>, _ second: any Dataset<Sample>) throws {
    guard first.classNames == second.classNames else {
      throw DatasetError(
        .mismatch, path: "",
        "cannot join datasets with different classes (\(first.classNames.count) and "
          + "\(second.classNames.count) classes, or another order)")
    }
    self.first = first
    self.second = second
    labels = first.labels + second.labels
  }

  /// Number of samples.
  public var count: Int { first.count + second.count }
  /// The shared class names.
  public var classNames: [String] { first.classNames }
  /// The sample at `index` of the joined order.
  public func sample(at index: Int) throws -> Sample {
    index < first.count
      ? try first.sample(at: index) : try second.sample(at: index - first.count)
  }
}
