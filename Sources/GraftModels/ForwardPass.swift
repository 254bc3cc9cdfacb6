import Foundation

/// One forward pass of a `SequenceBackbone`: its input and embedding, the hooks, the rows hooks
/// inserted, and what hooks keep for the method's head (`taps`). Created by `forward`; blocks call
/// its `linear`, `attentionBranch` and `mlpBranch`, which dispatch to the hooks and record which
/// points were reached, so a method can check that the backbone called every point it attaches
/// to.
public final class ForwardPass {
  /// The input of the pass.
  public let input: Tensor
  /// The embedding's output, before any hook.
  public let embedded: EmbeddedTokens
  /// The backbone's own leading non-content rows.
  public let prefixTokens: Int
  /// The hooks of the pass, if any.
  public let hooks: (any BackboneHooks)?
  /// The linear sites the hooks change (nil: any; empty when they do not attach to `.linear`).
  private let hookedSites: Set<LinearSite>?
  /// Rows of the current sequence that hooks inserted (empty when none).
  public private(set) var insertedRows: Range<Int>
  /// The positions of the inserted rows, [1 or B, insertedRows.count, D], when a hook gave any
  /// (IDPT's `prompt_pos`); rows inserted without positions get zeros.
  private var insertedPositions: Tensor?
  /// The attach points the backbone called during the pass.
  public private(set) var reachedPoints: AttachPoints = []
  /// The linear sites the backbone called during the pass.
  public private(set) var reachedSites: Set<LinearSite> = []
  /// Tensors the hooks keep for the method's head, by block index (HST's per-layer taps). They
  /// live as long as the pass, not in the method.
  public var taps: [Int: [Tensor]] = [:]
  /// Rows the sequence has now.
  private var rows: Int

  /// A pass over `input` embedded as `embedded`, with `hooks`.
  public init(
    input: Tensor, embedded: EmbeddedTokens, prefixTokens: Int, hooks: (any BackboneHooks)?
  ) {
    self.input = input
    self.embedded = embedded
    self.prefixTokens = prefixTokens
    self.hooks = hooks
    hookedSites = hooks?.attachPoints.contains(.linear) == true ? hooks?.hookedLinearSites : []
    rows = embedded.tokens.shape[1]
    insertedRows = prefixTokens..<prefixTokens
  }

  /// Whether the hooks change the layer at `site` (then the block calls `linear` for it and
  /// runs that half unfused).
  public func hooks(_ site: LinearSite) -> Bool { hookedSites?.contains(site) ?? true }

  /// The low-rank deltas the hooks add to the fused layer at `site` (recorded as reached when
  /// there are any).
  public func lowRankDeltas(_ site: LinearSite) -> [LowRankDelta] {
    guard let hooks else { return [] }
    let deltas = hooks.lowRankDeltas(site)
    if !deltas.isEmpty {
      reachedPoints.insert(.linear)
      reachedSites.insert(site)
    }
    return deltas
  }

  // MARK: Reported by hooks

  /// A hook inserted `count` rows starting at row `row` of the sequence, with `positions`
  /// [1 or B, count, D] for backbones that add positions before every block (nil: zeros).
  /// Insertions extend one contiguous range of inserted rows.
  public func recordInsertion(_ count: Int, at row: Int, positions: Tensor? = nil) {
    precondition(count >= 0 && row >= 0 && row <= rows, "insertion of \(count) rows at \(row)")
    let offset: Int
    if insertedRows.isEmpty {
      insertedRows = row..<(row + count)
      offset = 0
    } else {
      precondition(
        insertedRows.contains(row) || row == insertedRows.upperBound,
        "rows inserted at \(row) are not next to the inserted rows \(insertedRows)")
      offset = row - insertedRows.lowerBound
      insertedRows = insertedRows.lowerBound..<(insertedRows.upperBound + count)
    }
    if positions != nil || insertedPositions != nil, let width = embedded.positions?.shape[2] {
      let new = positions ?? Tensor.zeros([1, count, width])
      precondition(
        new.rank == 3 && new.shape[1] == count && new.shape[2] == width,
        "positions \(new.shape) for \(count) inserted rows of width \(width)")
      let old = insertedPositions ?? Tensor.zeros([1, insertedRows.count - count, width])
      let lead = Swift.max(old.shape[0], new.shape[0])
      let before = old.narrow(1, start: 0, length: offset)
      let after = old.narrow(1, start: offset, length: old.shape[1] - offset)
      insertedPositions = Tensor.concat(
        [before, new, after].map { $0.broadcast(to: [lead, $0.shape[1], width]) }, axis: 1)
    }
    rows += count
  }

  /// A hook removed `count` inserted rows starting at row `row`.
  public func recordRemoval(_ count: Int, at row: Int) {
    precondition(
      row >= insertedRows.lowerBound && row + count <= insertedRows.upperBound,
      "rows \(row)..<\(row + count) removed are not among the inserted rows \(insertedRows)")
    if let kept = insertedPositions {
      let offset = row - insertedRows.lowerBound
      let before = kept.narrow(1, start: 0, length: offset)
      let after = kept.narrow(1, start: offset + count, length: kept.shape[1] - offset - count)
      insertedPositions = Tensor.concat([before, after], axis: 1)
    }
    insertedRows = insertedRows.lowerBound..<(insertedRows.upperBound - count)
    if insertedRows.isEmpty {
      insertedRows = prefixTokens..<prefixTokens
      insertedPositions = nil
    }
    rows -= count
  }

  /// Rows before the content tokens: the prefix tokens plus inserted rows that lie before the
  /// content (the usual case: VPT's prompts after the class token, HST's meta tokens before it).
  public var leadingRows: Int {
    insertedRows.lowerBound <= prefixTokens ? prefixTokens + insertedRows.count : prefixTokens
  }

  // MARK: Called by the backbone

  /// The embedded sequence through the `tokens` hook.
  func enterBlocks(_ x: Tensor) -> Tensor {
    guard let hooks else { return x }
    reachedPoints.insert(.tokens)
    return checked(hooks.tokens(x, pass: self), "tokens")
  }

  /// The input of block `index` through the `beforeBlock` hook.
  func enterBlock(_ index: Int, _ x: Tensor) -> Tensor {
    guard let hooks else { return x }
    reachedPoints.insert(.beforeBlock)
    return checked(hooks.beforeBlock(index, x, pass: self), "beforeBlock(\(index))")
  }

  /// The output of block `index` through the `afterBlock` hook.
  func leaveBlock(_ index: Int, _ x: Tensor) -> Tensor {
    guard let hooks else { return x }
    reachedPoints.insert(.afterBlock)
    return checked(hooks.afterBlock(index, x, pass: self), "afterBlock(\(index))")
  }

  /// A linear layer's output through the `linear` hook (blocks call this for every linear layer).
  public func linear(_ site: LinearSite, input: Tensor, output: Tensor) -> Tensor {
    reachedPoints.insert(.linear)
    reachedSites.insert(site)
    return hooks?.linear(site, input: input, output: output) ?? output
  }

  /// The attention branch of block `index` through its hook.
  public func attentionBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    reachedPoints.insert(.residualBranches)
    return hooks?.attentionBranch(index, input: input, output: output) ?? output
  }

  /// The MLP branch of block `index` through its hook.
  public func mlpBranch(_ index: Int, input: Tensor, output: Tensor) -> Tensor {
    reachedPoints.insert(.residualBranches)
    return hooks?.mlpBranch(index, input: input, output: output) ?? output
  }

  /// The embedding's per-token positions laid out for the current sequence `x` (zero rows where
  /// hooks inserted rows), or nil when the backbone has none.
  public func positions(for x: Tensor) -> Tensor? {
    guard let positions = embedded.positions else { return nil }
    precondition(x.shape[1] == rows, "sequence of \(x.shape[1]) rows, the pass expects \(rows)")
    guard !insertedRows.isEmpty else { return positions }
    let start = insertedRows.lowerBound
    let width = positions.shape[2]
    let inserted = insertedPositions ?? Tensor.zeros([1, insertedRows.count, width])
    let lead = Swift.max(positions.shape[0], inserted.shape[0])
    let before = positions.narrow(1, start: 0, length: start)
    let after = positions.narrow(1, start: start, length: positions.shape[1] - start)
    return Tensor.concat(
      [before, inserted, after].map { $0.broadcast(to: [lead, $0.shape[1], width]) }, axis: 1)
  }

  /// `x` after a hook, checked against the rows the hooks reported.
  private func checked(_ x: Tensor, _ point: String) -> Tensor {
    precondition(
      x.rank == 3 && x.shape[1] == rows,
      "the \(point) hook returned \(x.shape); \(rows) rows expected (report inserted or removed "
        + "rows with recordInsertion / recordRemoval)")
    return x
  }
}
