extension Sequence {
  /// The first element whose `key` an earlier element already had, nil when every key is
  /// distinct: the check behind every "given twice" error (methods, arms, targets, ids).
  public func firstRepeated<Key: Hashable>(by key: (Element) throws -> Key) rethrows -> Element? {
    var seen = Set<Key>()
    for element in self where !seen.insert(try key(element)).inserted { return element }
    return nil
  }
}

extension Sequence where Element: Hashable {
  /// The first element that an earlier one equals, nil when all are distinct.
  public var firstRepeated: Element? { firstRepeated(by: { $0 }) }
}
