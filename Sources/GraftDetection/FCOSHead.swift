// FCOS's head (Tian et al. 2019) in torchvision's form (torchvision/models/detection/fcos.py,
// `FCOSHead`, `FCOSClassificationHead`, `FCOSRegressionHead`) and its three losses.

import Foundation

/// One image's ground truth for the detector: corner boxes in input pixels and 0-based labels.
public struct FCOSTarget: Equatable, Sendable {
  /// Boxes, (x1, y1, x2, y2).
  public var boxes: [CornerBox]
  /// 0-based class of each box.
  public var labels: [Int]

  /// A target from parallel arrays.
  public init(boxes: [CornerBox], labels: [Int]) {
    precondition(
      boxes.count == labels.count, "FCOSTarget: \(boxes.count) boxes, \(labels.count) labels")
    self.boxes = boxes
    self.labels = labels
  }
}

/// The head's outputs over all levels' locations (level by level, row-major within a level).
public struct FCOSHeadOutputs {
  /// `[B, A, K]` class logits.
  public var classLogits: Tensor
  /// `[B, A, 4]` (l, t, r, b) in anchor units, non-negative.
  public var boxRegression: Tensor
  /// `[B, A, 1]` centre-ness logits.
  public var centerness: Tensor
}

/// The three FCOS losses, each summed over the batch and divided by max(1, foreground locations),
/// as torchvision.
public struct FCOSLosses {
  /// Sigmoid focal loss (α 0.25, γ 2) over every location and class.
  public var classification: Tensor
  /// GIoU loss of the decoded boxes at foreground locations.
  public var boxRegression: Tensor
  /// BCE of the centre-ness logits against FCOS's centre-ness at foreground locations.
  public var centerness: Tensor
  /// Number of foreground locations in the batch.
  public var foreground: Int

  /// The sum of the three, what torchvision's training loop minimises.
  public var total: Tensor { classification + boxRegression + centerness }
}

/// A 3×3 convolution (padding 1) with optional GroupNorm, the unit of FCOS's towers.
final class FCOSConv {
  let weight: Tensor
  let bias: Tensor
  let norm: (weight: Tensor, bias: Tensor, groups: Int)?

  init(_ inC: Int, _ outC: Int, groups: Int?, biasValue: Float, generator: inout RandomGenerator) {
    // torchvision: weights N(0, 0.01²), biases constant.
    weight = Tensor.randn([outC, inC, 3, 3], std: 0.01, generator: &generator).requiringGrad()
    bias = Tensor.full([outC], biasValue).requiringGrad()
    norm = groups.map {
      (Tensor.ones([outC]).requiringGrad(), Tensor.zeros([outC]).requiringGrad(), $0)
    }
  }

  func callAsFunction(_ x: Tensor) -> Tensor {
    let y = x.conv2d(weight: weight, bias: bias, padding: (1, 1))
    guard let norm else { return y }
    return y.groupNorm(groups: norm.groups, weight: norm.weight, bias: norm.bias)
  }

  func parameters(_ prefix: String) -> [(String, Tensor)] {
    var out = [("\(prefix).weight", weight), ("\(prefix).bias", bias)]
    if let norm {
      out += [("\(prefix).norm.weight", norm.weight), ("\(prefix).norm.bias", norm.bias)]
    }
    return out
  }
}

/// FCOS's head: a classification tower and a box tower shared by all levels (`numConvs` × 3×3
/// conv + GroupNorm + ReLU each), then a class-logit conv on the first and box-regression and
/// centre-ness convs on the second (centre-ness on the regression branch, as FCOS's later versions
/// and torchvision).
///
/// As torchvision: convolution weights N(0, 0.01²) with zero biases, the class bias
/// −log((1 − π)/π) with π = 0.01 so that training starts with every score near π, and the box
/// regression `relu(conv)` in units of the level's stride. Differences: GroupNorm uses
/// `min(32, C)` groups reduced to a divisor of C (torchvision fixes 32), `numConvs` may be fewer
/// than 4 for CPUs, and each level has a learnable scale on its regression (FCOS's `Scale`, 1 at
/// start so the initial head is torchvision's), with `exp` instead of ReLU as an option.
public final class FCOSHead {
  /// How regression outputs become non-negative distances.
  public enum BoxActivation: Sendable {
    /// `relu(scale·x)`, torchvision's.
    case relu
    /// `exp(scale·x)`, the FCOS paper's.
    case exp
  }

  /// Input channels of every level.
  public let channels: Int
  /// Number of classes K (no background class: sigmoid per class).
  public let numClasses: Int
  /// Number of levels, one regression scale each.
  public let numLevels: Int
  /// How regression outputs become distances.
  public let boxActivation: BoxActivation
  let classTower: [FCOSConv]
  let boxTower: [FCOSConv]
  let classLogits: FCOSConv
  let boxRegression: FCOSConv
  let centernessConv: FCOSConv
  /// Per-level regression scales, each `[1]`.
  public let scales: [Tensor]

  /// A head for `numLevels` levels of `channels`-channel maps.
  public init(
    channels: Int, numClasses: Int, numLevels: Int, numConvs: Int = 4,
    priorProbability: Float = 0.01, boxActivation: BoxActivation = .relu, seed: UInt64 = 0
  ) {
    precondition(channels > 0 && numClasses > 0 && numLevels > 0 && numConvs >= 0)
    self.channels = channels
    self.numClasses = numClasses
    self.numLevels = numLevels
    self.boxActivation = boxActivation
    var rng = RandomGenerator(seed: seed)
    let groups = FCOSHead.groupCount(channels)
    classTower = (0..<numConvs).map { _ in
      FCOSConv(channels, channels, groups: groups, biasValue: 0, generator: &rng)
    }
    boxTower = (0..<numConvs).map { _ in
      FCOSConv(channels, channels, groups: groups, biasValue: 0, generator: &rng)
    }
    classLogits = FCOSConv(
      channels, numClasses, groups: nil,
      biasValue: -Foundation.log((1 - priorProbability) / priorProbability), generator: &rng)
    boxRegression = FCOSConv(channels, 4, groups: nil, biasValue: 0, generator: &rng)
    centernessConv = FCOSConv(channels, 1, groups: nil, biasValue: 0, generator: &rng)
    scales = (0..<numLevels).map { _ in Tensor.ones([1]).requiringGrad() }
  }

  /// GroupNorm groups for `channels`: the largest divisor of it that is at most 32.
  public static func groupCount(_ channels: Int) -> Int {
    (1...min(32, channels)).last { channels % $0 == 0 }!
  }

  /// Every trainable tensor, with a dotted name.
  public var namedParameters: [(String, Tensor)] {
    var out: [(String, Tensor)] = []
    for (i, c) in classTower.enumerated() { out += c.parameters("cls_tower.\(i)") }
    for (i, c) in boxTower.enumerated() { out += c.parameters("bbox_tower.\(i)") }
    out += classLogits.parameters("cls_logits") + boxRegression.parameters("bbox_reg")
    out += centernessConv.parameters("bbox_ctrness")
    for (i, s) in scales.enumerated() { out.append(("scales.\(i)", s)) }
    return out
  }

  /// The head on each level's `[B, C, H_l, W_l]` map, outputs flattened over all locations.
  public func callAsFunction(_ features: [Tensor]) -> FCOSHeadOutputs {
    precondition(
      features.count == numLevels, "FCOSHead: \(features.count) maps for \(numLevels) levels")
    var cls: [Tensor] = []
    var reg: [Tensor] = []
    var ctr: [Tensor] = []
    func flat(_ t: Tensor) -> Tensor {
      let (b, c) = (t.shape[0], t.shape[1])
      return t.permuted([0, 2, 3, 1]).reshaped([b, t.shape[2] * t.shape[3], c])
    }
    for (level, x) in features.enumerated() {
      precondition(
        x.rank == 4 && x.shape[1] == channels, "FCOSHead: map \(x.shape), C = \(channels)")
      let c = classTower.reduce(x) { $1($0).relu() }
      let r = boxTower.reduce(x) { $1($0).relu() }
      cls.append(flat(classLogits(c)))
      let scaled = boxRegression(r) * scales[level]
      reg.append(flat(boxActivation == .relu ? scaled.relu() : scaled.exp()))
      ctr.append(flat(centernessConv(r)))
    }
    return FCOSHeadOutputs(
      classLogits: Tensor.concat(cls, axis: 1), boxRegression: Tensor.concat(reg, axis: 1),
      centerness: Tensor.concat(ctr, axis: 1))
  }

  /// FCOS's losses for outputs over `levels`' locations, as torchvision's `FCOSHead.compute_loss`
  /// with targets from `FCOSAssigner`.
  public static func loss(
    _ outputs: FCOSHeadOutputs, levels: FCOSLevels, targets: [FCOSTarget],
    assigner: FCOSAssigner = FCOSAssigner()
  ) -> FCOSLosses {
    let anchors = levels.anchors
    let matched = targets.map {
      assigner.assign(anchors: anchors, counts: levels.counts, boxes: $0.boxes)
    }
    return loss(outputs, anchors: anchors, targets: targets, matched: matched)
  }

  /// The losses for a given assignment (`matched[image][location]`, −1 for background).
  public static func loss(
    _ outputs: FCOSHeadOutputs, anchors: [CornerBox], targets: [FCOSTarget], matched: [[Int]]
  ) -> FCOSLosses {
    let (b, a, k) = (
      outputs.classLogits.shape[0], outputs.classLogits.shape[1], outputs.classLogits.shape[2]
    )
    precondition(
      targets.count == b && matched.count == b && anchors.count == a,
      "FCOS loss: \(b) images, \(targets.count) targets, \(anchors.count) anchors for \(a)")
    var classTargets = [Float](repeating: 0, count: b * a * k)
    var foreground: [Int] = []
    var boxTargets: [Float] = []
    var centernessTargets: [Float] = []
    for image in 0..<b {
      for (loc, j) in matched[image].enumerated() where j >= 0 {
        let box = targets[image].boxes[j]
        classTargets[(image * a + loc) * k + targets[image].labels[j]] = 1
        foreground.append(image * a + loc)
        boxTargets += [box[0], box[1], box[2], box[3]]
        centernessTargets.append(
          FCOSBoxCoder.centerness(FCOSBoxCoder.encode(box, anchor: anchors[loc])))
      }
    }
    let normaliser = Float(max(1, foreground.count))
    let cls = DetectionLosses.sigmoidFocalLoss(
      outputs.classLogits, targets: Tensor(classTargets, shape: [b, a, k]), reduction: .sum)
    guard !foreground.isEmpty else {
      let zero = Tensor(scalar: 0)
      return FCOSLosses(
        classification: cls / normaliser, boxRegression: zero, centerness: zero, foreground: 0)
    }
    let f = foreground.count
    let predicted = FCOSBoxCoder.decode(outputs.boxRegression, anchors: anchors)
      .reshaped([b * a, 4]).indexSelect(0, foreground)
    let giou = DetectionLosses.generalizedBoxIoULoss(
      predicted, Tensor(boxTargets, shape: [f, 4]), reduction: .sum)
    let ctr = DetectionLosses.binaryCrossEntropyWithLogits(
      outputs.centerness.reshaped([b * a]).indexSelect(0, foreground),
      targets: Tensor(centernessTargets, shape: [f]), reduction: .sum)
    return FCOSLosses(
      classification: cls / normaliser, boxRegression: giou / normaliser,
      centerness: ctr / normaliser, foreground: f)
  }
}
