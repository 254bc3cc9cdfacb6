import Foundation

extension ONNXExport {
  /// P2P's image of the graph input `points` [B, N, 3] (`P2P.render` at the evaluation view):
  /// the geometry encoder (input Conv1d, an exact kNN graph in xyz by TopK of the negated squared
  /// distances, the edge convolution, GroupNorm, LeakyReLU, the max over neighbours, the
  /// projection), the orthographic projection to the 3×3 pixels of each point (ReduceMin/Max,
  /// Floor, Clip, integer centring), the scatter-add of the point features onto the canvas
  /// (ScatterElements with reduction add), the colouring (the BasicBlock with its BatchNorms at
  /// their running statistics, two 1×1 convolutions, sigmoid) and the normalisation; the name
  /// of the [B, C, H, W] pixels.
  static func p2pPixels(_ g: ONNXGraph, _ r: PointRenderShape) throws -> String {
    let p = "p2p.enc."
    let n = r.points
    let k = min(r.k, n)
    let batch = g.node("Slice", [g.node("Shape", ["points"]), g.ints([0]), g.ints([1])])
    /// A 1×1 convolution of [O, C, 1…] as a MatMul on the last axis (plus its bias).
    func pointwise(_ x: String, _ name: String) throws -> String {
      let w = try g.tensor(name + ".weight")
      let matrix = withNoGrad { w.reshaped([w.shape[0], -1]).transposed() }
      let product = g.node("MatMul", [x, g.initializer(name + ".weight_t", matrix)])
      guard g.state[name + ".bias"] != nil else { return product }
      return g.node("Add", [product, try g.weight(name + ".bias")])
    }
    /// A per-channel constant shaped [C, 1, 1], for [B, C, H, W].
    var constants = 0
    func channels(_ values: [Float]) -> String {
      constants += 1
      return g.initializer(
        "p2p.channels_\(constants)", Tensor(values, shape: [values.count, 1, 1]))
    }

    // Geometry encoder: point features f [B, N, t], neighbours in xyz [B, N, k].
    let f = try pointwise("points", p + "input_trans")
    let diff = g.node(
      "Sub",
      [
        g.node("Unsqueeze", ["points", g.ints([2])]), g.node("Unsqueeze", ["points", g.ints([1])]),
      ])
    let distances = g.node(
      "ReduceSum", [g.node("Mul", [diff, diff]), g.ints([-1])], [.int("keepdims", 0)])
    let topK = g.node(
      "TopK", [g.node("Neg", [distances]), g.ints([k])],
      [.int("axis", -1), .int("largest", 1), .int("sorted", 1)], outputs: 2)
    // W·[f_j − f_i; f_i] = W₁·f_j + (W₂ − W₁)·f_i.
    let w = try g.tensor(p + "graph_layer.0.weight")
    let (width, t) = (w.shape[0], w.shape[1] / 2)
    let (neighbourT, centreT) = withNoGrad {
      let m = w.reshaped([width, 2 * t])
      let w1 = m.narrow(1, start: 0, length: t)
      return (w1.transposed(), (m.narrow(1, start: t, length: t) - w1).transposed())
    }
    let fromNeighbour = g.node(
      "GatherND",
      [
        g.node("MatMul", [f, g.initializer(p + "graph_neighbour_t", neighbourT)]),
        g.node("Unsqueeze", [topK[1], g.ints([-1])]),
      ], [.int("batch_dims", 1)])
    let fromCentre = g.node(
      "Unsqueeze",
      [g.node("MatMul", [f, g.initializer(p + "graph_centre_t", centreT)]), g.ints([2])])
    let edges = g.node("Add", [fromNeighbour, fromCentre])  // [B, N, k, width]
    // GroupNorm: each sample's groups of consecutive channels over all N·k positions.
    let grouped = g.node(
      "Reshape", [edges, g.ints([0, n * k, r.groups, width / r.groups])])
    let mean = g.node("ReduceMean", [grouped], [.ints("axes", [1, 3]), .int("keepdims", 1)])
    let centred = g.node("Sub", [grouped, mean])
    let variance = g.node(
      "ReduceMean", [g.node("Mul", [centred, centred])],
      [.ints("axes", [1, 3]), .int("keepdims", 1)])
    let normed = g.node(
      "Div", [centred, g.node("Sqrt", [g.node("Add", [variance, g.floats([r.groupEps])])])])
    let affine = g.node(
      "Add",
      [
        g.node(
          "Mul",
          [
            g.node("Reshape", [normed, g.ints([0, n, k, width])]),
            try g.weight(p + "graph_layer.1.weight"),
          ]), try g.weight(p + "graph_layer.1.bias"),
      ])
    let pooled = g.node(
      "LeakyRelu",
      [g.node("ReduceMax", [affine], [.ints("axes", [2]), .int("keepdims", 0)])],
      [.float("alpha", 0.2)])
    let features = try pointwise(pooled, p + "proj_layer")  // [B, N, width]

    // Projection: the view frame's x (rows) and y (columns) of each point, as
    // `P2P.viewCoordinates` sums them ((m₀·x + m₁·y) + m₂·z, no fused multiply-add: a cell
    // boundary must fall where Graft's does).
    let xyz = (0..<3).map {
      g.node("Gather", ["points", g.ints([$0], scalar: true)], [.int("axis", 2)])
    }
    func turned(_ row: Int) -> String {
      let terms = (0..<3).map { g.node("Mul", [xyz[$0], g.floats([r.view[3 * row + $0]])]) }
      return g.node("Add", [g.node("Add", [terms[0], terms[1]]), terms[2]])
    }
    let (x, y) = (turned(0), turned(1))
    func reduce(_ op: String, _ v: String) -> String {
      g.node(op, [v], [.ints("axes", [1]), .int("keepdims", 1)])
    }
    let (minX, minY) = (reduce("ReduceMin", x), reduce("ReduceMin", y))
    let grid = g.node(
      "Div",
      [
        g.node(
          "Max",
          [
            g.node("Sub", [reduce("ReduceMax", x), minX]),
            g.node("Sub", [reduce("ReduceMax", y), minY]),
          ]),
        g.floats([Float(r.objSize - 3)]),
      ])
    let positive = g.node("Greater", [grid, g.floats([0])])
    /// ⌊(v − low) / grid⌋ clamped to 0…objSize − 3 (0 for a cloud with no extent), as int64.
    func cell(_ v: String, _ low: String) -> String {
      let q = g.node(
        "Where", [positive, g.node("Div", [g.node("Sub", [v, low]), grid]), g.floats([0])])
      let clipped = g.node(
        "Clip", [g.node("Floor", [q]), g.floats([0]), g.floats([Float(r.objSize - 3)])])
      return g.node("Cast", [clipped], [.int("to", 7)])
    }
    let (ix, iy) = (cell(x, minX), cell(y, minY))
    /// The splats' box centred in the object square, the square in the canvas.
    func start(_ index: String, canvasSide: Int) -> String {
      let extent = reduce("ReduceMax", index)
      let margin = g.node(
        "Div", [g.node("Sub", [g.ints([r.objSize - 3]), extent]), g.ints([2])])
      return g.node(
        "Add", [index, g.node("Add", [margin, g.ints([(canvasSide - r.objSize) / 2])])])
    }
    let (h, wide) = (r.canvas.height, r.canvas.width)
    let base = g.node(
      "Add",
      [g.node("Mul", [start(ix, canvasSide: h), g.ints([wide])]), start(iy, canvasSide: wide)])
    let offsets = (0..<3).flatMap { dx in (0..<3).map { dy in dx * wide + dy } }
    let pixelIndex = g.node("Add", [g.node("Unsqueeze", [base, g.ints([2])]), g.ints(offsets)])

    // Splat: each point's features added at its 9 pixels.
    let spread = g.node("Concat", [batch, g.ints([n * 9, width])], [.int("axis", 0)])
    let indices = g.node(
      "Expand", [g.node("Reshape", [pixelIndex, g.ints([0, n * 9, 1])]), spread])
    let updates = g.node(
      "Reshape",
      [
        g.node(
          "Expand",
          [
            g.node("Unsqueeze", [features, g.ints([2])]),
            g.node("Concat", [batch, g.ints([n, 9, width])], [.int("axis", 0)]),
          ]), g.ints([0, n * 9, width]),
      ])
    let empty = g.node(
      "ConstantOfShape", [g.node("Concat", [batch, g.ints([h * wide, width])], [.int("axis", 0)])])
    let splatted = g.node(
      "ScatterElements", [empty, indices, updates],
      [.int("axis", 1), .string("reduction", "add")])
    let canvas = g.node(
      "Transpose", [g.node("Reshape", [splatted, g.ints([0, h, wide, width])])],
      [.ints("perm", [0, 3, 1, 2])])

    // Colouring: BasicBlock → 1×1 conv → 1×1 conv → sigmoid, then the normalisation.
    let block = p + "img_block.0."
    func conv(_ x: String, _ name: String, pad: Int) throws -> String {
      var inputs = [x, try g.weight(name + ".weight")]
      if g.state[name + ".bias"] != nil { inputs.append(try g.weight(name + ".bias")) }
      return g.node("Conv", inputs, [.ints("pads", [pad, pad, pad, pad])])
    }
    func batchNorm2d(_ x: String, _ name: String, eps: Float) throws -> String {
      let (wt, b) = (try g.tensor(name + ".weight").scalars, try g.tensor(name + ".bias").scalars)
      let m = try g.tensor(name + ".running_mean").scalars
      let v = try g.tensor(name + ".running_var").scalars
      let scale = (0..<wt.count).map { wt[$0] / (v[$0] + eps).squareRoot() }
      let shift = (0..<wt.count).map { b[$0] - m[$0] * scale[$0] }
      return g.node("Add", [g.node("Mul", [x, channels(scale)]), channels(shift)])
    }
    let inner = g.node(
      "Relu",
      [try batchNorm2d(try conv(canvas, block + "conv1", pad: 1), block + "bn1", eps: r.blockEps.0)]
    )
    let blockOut = g.node(
      "Relu",
      [
        g.node(
          "Add",
          [
            try batchNorm2d(
              try conv(inner, block + "conv2", pad: 1), block + "bn2", eps: r.blockEps.1), canvas,
          ])
      ])
    let image = g.node(
      "Sigmoid",
      [try conv(try conv(blockOut, p + "img_block.1", pad: 0), p + "img_layer", pad: 0)])
    return g.node(
      "Add",
      [
        g.node("Mul", [image, channels(r.std.map { 1 / $0 })]),
        channels(zip(r.mean, r.std).map { -$0 / $1 }),
      ])
  }
}
