import Foundation

extension ONNXExport {
  /// Methods whose runs on the point backbone (Point-MAE) are written: those whose tuned model is
  /// the backbone with changed weights and a new head.
  public static let pointMethods: Set<String> = [
    "linear", "full", "bitfit", "ln-tune", "lora", "vpt-shallow", "vpt-deep", "adapter", "idpt",
    "mp", "mp+", "lst", "unipt",
  ]

  /// Writes `loaded`, a run on a Point-MAE backbone, as the ONNX model `out`: input `points`
  /// [batch, N, 3] (the clouds as the run's evaluation transform leaves them; `graft predict
  /// --output` writes them), output `logits` [batch, classes]. LoRA's deltas are merged into
  /// the weights first.
  static func exportPointMAE(_ loaded: LoadedAdapter, model: PointMAE, run: URL, to out: URL)
    throws
  {
    let method = loaded.config.method
    guard pointMethods.contains(method) else {
      throw FileError(
        path: run.path,
        message: "--to onnx writes runs on the point backbone for "
          + pointMethods.sorted().joined(separator: ", ") + ", not \(method) yet")
    }
    guard let points = loaded.config.pointInput?.points else {
      throw FileError(path: run.path, message: "the run records no point input")
    }
    if let lora = loaded.method as? LoRA { lora.merge() }
    var state: [String: Tensor] = [:]
    var eps: [String: Float] = [:]
    for (name, t) in model.namedParameters() + model.namedBuffers()
    where !name.hasPrefix("cls_head_finetune.") {
      state[name] = t
    }
    for (name, stage) in [
      ("encoder.first_conv", model.encoder.firstConv),
      ("encoder.second_conv", model.encoder.secondConv),
    ] {
      eps[name + ".1"] = stage.norm.eps
    }
    state["head.weight"] = loaded.method.head.weight
    if let b = loaded.method.head.bias { state["head.bias"] = b }
    let extras = tokenMethodExtras(loaded.method)
    state.merge(extras.state) { $1 }
    let sides = sideMethodExtras(loaded.method, heads: model.config.numHeads)
    state.merge(sides.state) { $1 }
    let bytes = try pointMAEModel(
      state: state, config: model.config, points: points, classes: loaded.config.numClasses,
      batchNormEps: eps, prompts: extras.prompts, adapterScale: extras.adapterScale,
      instancePrompt: extras.instancePrompt, moments: sides.moments, side: sides.side)
    try AtomicFile.write(Data(bytes), to: out)
  }

  /// The ONNX model bytes of Point-MAE (`PointMAE.swift`) with the timm-style head `head.*` on
  /// its pooled features: farthest point sampling as an ONNX `Loop` (pointnet2_ops' rule: point 0
  /// first, then the farthest by squared distance summed in x, y, z order, the first maximum on
  /// ties, points within 1e-3 of the origin never picked), the kNN groups by `TopK` of exact
  /// squared distances, the mini-PointNet with its BatchNorms at their running statistics, the
  /// position MLP, the blocks with the positions added before each, the final norm, and
  /// `concat[class token, max over the group tokens]`. `prompts` (VPT), `adapterScale` (the
  /// adapter) and `instancePrompt` (IDPT) as in `vitModel`; inserted rows get no position.
  static func pointMAEModel(
    state: [String: Tensor], config c: PointMAEConfig, points n: Int, classes: Int,
    batchNormEps eps: [String: Float], prompts: [Tensor] = [], adapterScale: Float? = nil,
    instancePrompt: InstancePromptShape? = nil, moments: MomentProbingShape? = nil,
    side: SideNetwork? = nil
  ) throws -> [UInt8] {
    let g = ONNXGraph(state: state)
    let d = c.transDim
    let (groups, size) = (c.numGroup, c.groupSize)
    let batch = g.node("Slice", [g.node("Shape", ["points"]), g.ints([0]), g.ints([1])])
    func axis(_ x: String, _ i: Int) -> String {
      g.node("Gather", [x, g.ints([i], scalar: true)], [.int("axis", 2)])
    }
    let (px, py, pz) = (axis("points", 0), axis("points", 1), axis("points", 2))
    func square(_ v: String) -> String { g.node("Mul", [v, v]) }
    /// ((a² + b²) + c²), Graft's order.
    func sumOfSquares(_ a: String, _ b: String, _ c: String) -> String {
      g.node("Add", [g.node("Add", [square(a), square(b)]), square(c)])
    }

    // Farthest point sampling: `groups` iterations carrying each point's distance to the
    // chosen set (−1 for points never picked) and the last pick.
    let skip = g.node(
      "LessOrEqual", [sumOfSquares(px, py, pz), g.floats([1e-3])])
    let minusOne = g.floats([-1])
    let startDistance = g.node("Where", [skip, minusOne, g.floats([Float.infinity])])
    let startPick = g.node(
      "ArgMax",
      [g.node("ConstantOfShape", [g.node("Concat", [batch, g.ints([1])], [.int("axis", 0)])])],
      [.int("axis", 1), .int("keepdims", 0)])
    let body = ONNXGraph(state: [:], prefix: "fps_")
    let picked = body.node("Identity", ["fps_last"])
    let centre = { (v: String) in
      body.node(
        "GatherElements", [v, body.node("Unsqueeze", ["fps_last", body.ints([1])])],
        [.int("axis", 1)])
    }
    let (dx, dy, dz) = (
      body.node("Sub", [px, centre(px)]), body.node("Sub", [py, centre(py)]),
      body.node("Sub", [pz, centre(pz)])
    )
    let squared = body.node(
      "Add",
      [
        body.node("Add", [body.node("Mul", [dx, dx]), body.node("Mul", [dy, dy])]),
        body.node("Mul", [dz, dz]),
      ])
    _ = body.node(
      "Where", [skip, minusOne, body.node("Min", ["fps_distance", squared])],
      output: "fps_distance_out")
    _ = body.node(
      "ArgMax", ["fps_distance_out"], [.int("axis", 1), .int("keepdims", 0)],
      output: "fps_last_out")
    _ = body.node("Identity", ["fps_cond"], output: "fps_cond_out")
    _ = body.node("Identity", [picked], output: "fps_pick")
    let bodyGraph = body.subgraph(
      "fps", inputs: [("fps_iteration", 7), ("fps_cond", 9), ("fps_distance", 1), ("fps_last", 7)],
      outputs: [
        ("fps_cond_out", 9), ("fps_distance_out", 1), ("fps_last_out", 7), ("fps_pick", 7),
      ],
      scalars: ["fps_iteration", "fps_cond", "fps_cond_out"])
    let loop = g.node(
      "Loop",
      [
        g.ints([groups], scalar: true),
        g.node("Cast", [g.ints([1], scalar: true)], [.int("to", 9)]),
        startDistance, startPick,
      ], [.graph("body", bodyGraph)], outputs: 3)
    let centreIndex = g.node(
      "Unsqueeze", [g.node("Transpose", [loop[2]], [.ints("perm", [1, 0])]), g.ints([-1])])
    let centres = g.node("GatherND", ["points", centreIndex], [.int("batch_dims", 1)])  // [B, G, 3]

    // Each centre's `size` nearest points (exact squared distances, ties to the lower index),
    // minus the centre.
    func pair(_ i: Int) -> String {
      g.node(
        "Sub",
        [
          g.node("Unsqueeze", [axis(centres, i), g.ints([-1])]),
          g.node("Unsqueeze", [axis("points", i), g.ints([1])]),
        ])
    }
    let distances = sumOfSquares(pair(0), pair(1), pair(2))  // [B, G, N]
    let nearest = g.node(
      "TopK", [g.node("Neg", [distances]), g.ints([size])],
      [.int("axis", -1), .int("largest", 1), .int("sorted", 1)], outputs: 2)
    let grouped = g.node(
      "GatherND", ["points", g.node("Unsqueeze", [nearest[1], g.ints([-1])])],
      [.int("batch_dims", 1)])
    let neighbourhoods = g.node("Sub", [grouped, g.node("Unsqueeze", [centres, g.ints([2])])])

    // The mini-PointNet: first_conv per point, the group maximum, second_conv on [max, point]
    // (its weight's first half on the maximum, once per group), the maximum over the group.
    func conv(_ x: String, _ name: String, columns: Range<Int>? = nil) throws -> String {
      let w = try g.tensor(name + ".weight")
      let m = withNoGrad { () -> Tensor in
        let full = w.reshaped([w.shape[0], -1])
        return (columns.map { full.narrow(1, start: $0.lowerBound, length: $0.count) } ?? full)
          .transposed()
      }
      let suffix = columns.map { "_\($0.lowerBound)" } ?? ""
      return g.node("MatMul", [x, g.initializer(name + ".weight_t" + suffix, m)])
    }
    func bias(_ x: String, _ name: String) throws -> String {
      g.node("Add", [x, try g.weight(name + ".bias")])
    }
    func norm(_ x: String, _ name: String) throws -> String {
      try batchNorm(g, x, name, eps: eps[name] ?? 1e-5)
    }
    let first = try bias(
      try conv(
        g.node(
          "Relu",
          [
            try norm(
              try bias(try conv(neighbourhoods, "encoder.first_conv.0"), "encoder.first_conv.0"),
              "encoder.first_conv.1")
          ]),
        "encoder.first_conv.3"), "encoder.first_conv.3")
    let half = try g.tensor("encoder.first_conv.3.weight").shape[0]
    let groupMax = g.node("ReduceMax", [first], [.ints("axes", [2]), .int("keepdims", 1)])
    let mixed = try bias(
      g.node(
        "Add",
        [
          try conv(first, "encoder.second_conv.0", columns: half..<(2 * half)),
          try conv(groupMax, "encoder.second_conv.0", columns: 0..<half),
        ]), "encoder.second_conv.0")
    let tokens = g.node(
      "ReduceMax",
      [
        try bias(
          try conv(
            g.node("Relu", [try norm(mixed, "encoder.second_conv.1")]), "encoder.second_conv.3"),
          "encoder.second_conv.3")
      ], [.ints("axes", [2]), .int("keepdims", 0)])  // [B, G, D]

    // Class token and positions, then the blocks with the positions added before each.
    let rows = g.node("Concat", [batch, g.ints([1, d])], [.int("axis", 0)])
    var x = g.node(
      "Concat", [g.node("Expand", [try g.weight("cls_token"), rows]), tokens], [.int("axis", 1)])
    let clsPos = g.node("Expand", [try g.weight("cls_pos"), rows])
    let groupPos = try dense(g, gelu(g, try dense(g, centres, "pos_embed.0")), "pos_embed.2")
    /// The positions of `x` with `inserted` rows after the class token: zeros there.
    func positions(inserted: Int) -> String {
      guard inserted > 0 else { return g.node("Concat", [clsPos, groupPos], [.int("axis", 1)]) }
      let zeros = g.node(
        "ConstantOfShape", [g.node("Concat", [batch, g.ints([inserted, d])], [.int("axis", 0)])])
      return g.node("Concat", [clsPos, zeros, groupPos], [.int("axis", 1)])
    }
    func insertPrompts(_ x: String, layer: Int, drop: Int) -> String {
      ONNXExport.insertPrompts(g, x, prompts, layer: layer, drop: drop, batch: batch, width: d)
    }
    var inserted = 0
    // What the side networks read: the sequence entering block 0, then every block's output.
    var hidden: [String] = []
    if !prompts.isEmpty {
      x = insertPrompts(x, layer: 0, drop: 0)
      inserted = prompts[0].shape[1]
    }
    for i in 0..<c.depth {
      if i > 0 && prompts.count > i {
        x = insertPrompts(x, layer: i, drop: prompts[i - 1].shape[1])
      }
      if let instancePrompt, instancePrompt.layer == i {
        // IDPT's beforeBlock: the prompt from the group rows, after the class token.
        x = try insertInstancePrompt(g, x, tokens: groups, instancePrompt)
        inserted += 1
      }
      if i == 0 { hidden.append(x) }
      x = try encoderBlock(
        g, g.node("Add", [x, positions(inserted: inserted)]), "blocks.blocks.\(i).",
        heads: c.numHeads, headDim: d / c.numHeads, eps: PointMAEConfig.normEps
      ) { branch, input in
        try mlpBranch(
          g, branch, input: input, block: i, adapterScale: adapterScale,
          psrp: moments?.plus == true)
      }
      hidden.append(x)
    }
    let normed = try layerNorm(g, x, "norm", eps: PointMAEConfig.normEps)
    if let instancePrompt {
      try idptHead(g, normed: normed, instancePrompt)
      return g.model(
        input: ("points", ["batch", "\(n)", "3"]), output: ("logits", ["batch", "\(classes)"]))
    }
    // LST's merged or UniPT's fused tokens replace the final ones before the pooling.
    let finalTokens =
      try side.map {
        try sideNetworkTokens(
          g, $0, hidden: hidden, normed: normed, blockEps: PointMAEConfig.normEps)
      } ?? normed
    let pooled = g.node(
      "Concat",
      [
        g.node("Gather", [finalTokens, g.ints([0], scalar: true)], [.int("axis", 1)]),
        g.node(
          "ReduceMax",
          [
            g.node(
              "Slice",
              [finalTokens, g.ints([1 + inserted]), g.ints([Int(Int32.max)]), g.ints([1])])
          ],
          [.ints("axes", [1]), .int("keepdims", 0)]),
      ], [.int("axis", 1)])
    let firstOrder = try dense(g, pooled, "head")
    if let moments {
      // Moment Probing: the mean of the first-order head and the second-order head on the final
      // group tokens.
      let patches = g.node("Slice", [normed, g.ints([1]), g.ints([Int(Int32.max)]), g.ints([1])])
      let second = try momentProbingHead(g, patches: patches, tokens: groups, moments)
      _ = g.node(
        "Mul", [g.node("Add", [firstOrder, second]), g.floats([0.5])], output: "logits")
    } else {
      _ = g.node("Identity", [firstOrder], output: "logits")
    }
    return g.model(
      input: ("points", ["batch", "\(n)", "3"]), output: ("logits", ["batch", "\(classes)"]))
  }
}
