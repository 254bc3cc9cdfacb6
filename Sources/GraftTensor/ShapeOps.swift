// Shape ops: reshape, broadcast, permute, narrow/slice, concat/stack/split, gather, pad.

/// Copies a `shape`-sized block between two strided layouts, adding into `dst` when
/// `accumulate`. The innermost axis is the hot loop; rows run in parallel when `dst` rows
/// cannot overlap.
func stridedCopy(
  src: UnsafePointer<Float>, srcStrides: [Int],
  dst: UnsafeMutablePointer<Float>, dstStrides: [Int],
  shape: [Int], accumulate: Bool = false
) {
  let total = shape.reduce(1, *)
  if total == 0 { return }
  guard let inner = shape.last else {
    if accumulate { dst[0] += src[0] } else { dst[0] = src[0] }
    return
  }
  let si = srcStrides.last!
  let di = dstStrides.last!
  let outer = Array(shape.dropLast())
  let rows = total / inner
  let body: (Range<Int>) -> Void = { range in
    for row in range {
      var rem = row
      var so = 0
      var doff = 0
      for d in stride(from: outer.count - 1, through: 0, by: -1) {
        let ix = rem % outer[d]
        rem /= outer[d]
        so += ix * srcStrides[d]
        doff += ix * dstStrides[d]
      }
      let s = src + so
      let t = dst + doff
      if accumulate {
        for j in 0..<inner { t[j * di] += s[j * si] }
      } else if si == 1 && di == 1 {
        t.update(from: s, count: inner)
      } else {
        for j in 0..<inner { t[j * di] = s[j * si] }
      }
    }
  }
  if accumulate && dstStrides.contains(0) {
    body(0..<rows)
  } else {
    Parallel.forRange(rows, grain: Swift.max(1, 65_536 / inner), body)
  }
}

extension Tensor {
  /// The same elements under a new shape (one extent may be -1). Shares storage.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    var s = newShape
    if let hole = s.firstIndex(of: -1) {
      let known = s.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
      precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
      s[hole] = count / known
    }
    precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
    if s == shape { return self }
    let out = Tensor(shape: s, storage: storage)
    let original = shape
    return out.recording("reshape", [self]) { g in [g.reshaped(original)] }
  }

  /// Collapses axes `start...end` into one.
  public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
    let a = axis(start)
    let b = axis(end)
    let merged = shape[a...b].reduce(1, *)
    return reshaped(Array(shape[..<a]) + [merged] + Array(shape[(b + 1)...]))
  }

  /// Inserts an axis of extent 1 at `axis` (negative counts from the end of the new shape).
  public func unsqueezed(_ axis: Int) -> Tensor {
    let a = axis < 0 ? axis + rank + 1 : axis
    precondition(a >= 0 && a <= rank, "unsqueeze axis \(axis) for shape \(shape)")
    var s = shape
    s.insert(1, at: a)
    return reshaped(s)
  }

  /// Removes an axis of extent 1.
  public func squeezed(_ axis: Int) -> Tensor {
    let a = self.axis(axis)
    precondition(shape[a] == 1, "squeeze axis \(axis) has extent \(shape[a]) in \(shape)")
    var s = shape
    s.remove(at: a)
    return reshaped(s)
  }

  /// Materialises this tensor broadcast to `target` (NumPy rules); backward sums back.
  public func broadcast(to target: [Int]) -> Tensor {
    if target == shape { return self }
    precondition(
      Tensor.broadcastShape(shape, target) == target, "cannot broadcast \(shape) to \(target)")
    let out = Tensor(shape: target, zeroed: false)
    stridedCopy(
      src: pointer, srcStrides: Tensor.broadcastStrides(shape, to: target),
      dst: out.pointer, dstStrides: Tensor.contiguousStrides(target), shape: target)
    let original = shape
    return out.recording("expand", [self]) { g in [g.sumTo(original)] }
  }

  /// Sums this tensor down to `target`, the reverse of broadcasting (gradients of broadcast ops).
  public func sumTo(_ target: [Int]) -> Tensor {
    if target == shape { return self }
    let lead = rank - target.count
    precondition(lead >= 0, "sumTo: \(shape) has fewer axes than \(target)")
    var axes = Array(0..<lead)
    for (i, n) in target.enumerated() where n == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
    let summed = axes.isEmpty ? self : sum(axes: axes, keepDims: true)
    return summed.reshaped(target)
  }

  /// Reorders axes: result axis i is input axis `order[i]`.
  public func permuted(_ order: [Int]) -> Tensor {
    let order = order.map { axis($0) }
    precondition(order.count == rank && Set(order).count == rank, "bad permutation \(order)")
    if order == Array(0..<rank) { return self }
    let outShape = order.map { shape[$0] }
    let out = Tensor(shape: outShape, zeroed: false)
    let st = strides
    stridedCopy(
      src: pointer, srcStrides: order.map { st[$0] }, dst: out.pointer,
      dstStrides: Tensor.contiguousStrides(outShape), shape: outShape)
    var inverse = [Int](repeating: 0, count: rank)
    for (i, o) in order.enumerated() { inverse[o] = i }
    return out.recording("permute", [self]) { g in [g.permuted(inverse)] }
  }

  /// Swaps two axes (last two by default).
  public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
    var order = Array(0..<rank)
    order.swapAt(axis(a), axis(b))
    return permuted(order)
  }

  /// `length` entries of `axis` starting at `start`.
  public func narrow(_ axis: Int, start: Int, length: Int) -> Tensor {
    slice(axis, start..<(start + length))
  }

  /// Entries `range` (stepping by `step`) along `axis`.
  public func slice(_ axis: Int, _ range: Range<Int>, step: Int = 1) -> Tensor {
    let a = self.axis(axis)
    precondition(
      range.lowerBound >= 0 && range.upperBound <= shape[a] && step >= 1,
      "slice \(range) step \(step) out of bounds for axis \(a) of \(shape)")
    var outShape = shape
    outShape[a] = (range.count + step - 1) / step
    if outShape == shape { return self }
    let out = Tensor(shape: outShape, zeroed: false)
    var src = strides
    let offset = range.lowerBound * src[a]
    src[a] *= step
    stridedCopy(
      src: pointer + offset, srcStrides: src, dst: out.pointer,
      dstStrides: Tensor.contiguousStrides(outShape), shape: outShape)
    let inShape = shape
    return out.recording("slice", [self]) { g in
      let gi = Tensor(shape: inShape)
      stridedCopy(
        src: g.pointer, srcStrides: Tensor.contiguousStrides(outShape), dst: gi.pointer + offset,
        dstStrides: src, shape: outShape)
      return [gi]
    }
  }

  /// Joins tensors along `axis`; all other extents must agree.
  public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
    precondition(!parts.isEmpty, "concat of no tensors")
    let a = parts[0].axis(axis)
    var outShape = parts[0].shape
    outShape[a] = 0
    for p in parts {
      var s = p.shape
      precondition(
        p.rank == outShape.count, "concat: ranks differ, \(p.shape) vs \(parts[0].shape)")
      s[a] = 0
      var o = outShape
      o[a] = 0
      precondition(s == o, "concat along \(a): \(p.shape) does not match \(parts[0].shape)")
      outShape[a] += p.shape[a]
    }
    let out = Tensor(shape: outShape, zeroed: false)
    let dstStrides = Tensor.contiguousStrides(outShape)
    var offsets: [Int] = []
    var at = 0
    for p in parts {
      offsets.append(at)
      stridedCopy(
        src: p.pointer, srcStrides: p.strides, dst: out.pointer + at * dstStrides[a],
        dstStrides: dstStrides, shape: p.shape)
      at += p.shape[a]
    }
    // Capture extents and flags, not the parts (which would stay alive with the node).
    let pieces = parts.map { (wanted: $0.requiresGrad, length: $0.shape[a]) }
    return out.recording("concat", parts) { g in
      zip(pieces, offsets).map { p, o in p.wanted ? g.narrow(a, start: o, length: p.length) : nil }
    }
  }

  /// Stacks same-shaped tensors along a new axis.
  public static func stack(_ parts: [Tensor], axis: Int = 0) -> Tensor {
    precondition(!parts.isEmpty, "stack of no tensors")
    return concat(parts.map { $0.unsqueezed(axis) }, axis: axis)
  }

  /// Splits along `axis` into pieces of the given sizes (which must add up to the extent).
  public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
    let a = self.axis(axis)
    precondition(sizes.reduce(0, +) == shape[a], "split sizes \(sizes) do not cover \(shape[a])")
    var at = 0
    return sizes.map { n in
      defer { at += n }
      return narrow(a, start: at, length: n)
    }
  }

  /// Picks entries `indices` along `axis` (PyTorch's `index_select`); backward scatter-adds.
  public func indexSelect(_ axis: Int, _ indices: [Int]) -> Tensor {
    let a = self.axis(axis)
    let n = shape[a]
    for i in indices {
      precondition(i >= 0 && i < n, "index \(i) out of range 0..<\(n) on axis \(a)")
    }
    let outer = shape[..<a].reduce(1, *)
    let inner = shape[(a + 1)...].reduce(1, *)
    var outShape = shape
    outShape[a] = indices.count
    let out = Tensor(shape: outShape, zeroed: false)
    let (src, dst) = (pointer, out.pointer)
    let k = indices.count
    for o in 0..<outer {
      for (j, i) in indices.enumerated() {
        (dst + (o * k + j) * inner).update(from: src + (o * n + i) * inner, count: inner)
      }
    }
    let inShape = shape
    return out.recording("index_select", [self]) { g in
      let gi = Tensor(shape: inShape)
      let (gs, gd) = (g.pointer, gi.pointer)
      for o in 0..<outer {
        for (j, i) in indices.enumerated() {
          let s = gs + (o * k + j) * inner
          let d = gd + (o * n + i) * inner
          for t in 0..<inner { d[t] += s[t] }
        }
      }
      return [gi]
    }
  }

  /// PyTorch's `gather`: `out[..., j, ...] = self[..., index[..., j, ...], ...]` along `axis`,
  /// where `index` has this tensor's rank and extents no larger on the other axes.
  public func gather(_ axis: Int, _ index: [Int], shape indexShape: [Int]) -> Tensor {
    let a = self.axis(axis)
    precondition(indexShape.count == rank, "gather index rank \(indexShape.count) != \(rank)")
    precondition(
      index.count == indexShape.reduce(1, *), "gather index count does not fit its shape")
    let st = strides
    let out = Tensor(shape: indexShape, zeroed: false)
    var flat = [Int](repeating: 0, count: index.count)
    let idxStrides = Tensor.contiguousStrides(indexShape)
    for (pos, ix) in index.enumerated() {
      precondition(ix >= 0 && ix < shape[a], "gather index \(ix) out of range 0..<\(shape[a])")
      var rem = pos
      var off = 0
      for d in 0..<rank {
        let c = rem / idxStrides[d]
        rem %= idxStrides[d]
        if d != a {
          precondition(c < shape[d], "gather index shape \(indexShape) exceeds \(shape)")
        }
        off += (d == a ? ix : c) * st[d]
      }
      flat[pos] = off
      out.pointer[pos] = pointer[off]
    }
    let inShape = shape
    return out.recording("gather", [self]) { g in
      let gi = Tensor(shape: inShape)
      for (pos, off) in flat.enumerated() { gi.pointer[off] += g.pointer[pos] }
      return [gi]
    }
  }

  /// Constant padding: `padding[i]` = (before, after) for axis i; missing leading axes get none.
  public func padded(_ padding: [(Int, Int)], value: Float = 0) -> Tensor {
    precondition(padding.count <= rank, "padding for \(padding.count) axes on shape \(shape)")
    let full = [(Int, Int)](repeating: (0, 0), count: rank - padding.count) + padding
    for (b, e) in full { precondition(b >= 0 && e >= 0, "negative padding \(full)") }
    let outShape = zip(shape, full).map { $0 + $1.0 + $1.1 }
    let out = Tensor.full(outShape, value)
    let dst = Tensor.contiguousStrides(outShape)
    let offset = zip(full, dst).reduce(0) { $0 + $1.0.0 * $1.1 }
    stridedCopy(
      src: pointer, srcStrides: strides, dst: out.pointer + offset, dstStrides: dst, shape: shape)
    let inShape = shape
    return out.recording("pad", [self]) { g in
      let gi = Tensor(shape: inShape, zeroed: false)
      stridedCopy(
        src: g.pointer + offset, srcStrides: dst, dst: gi.pointer,
        dstStrides: Tensor.contiguousStrides(inShape), shape: inShape)
      return [gi]
    }
  }
}
