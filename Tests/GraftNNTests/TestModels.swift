import GraftNN

/// A two-block ViT-shaped model with timm's names, for the naming and grouping tests.
final class TinyAttention: Module {
  let qkv: Linear
  let proj: Linear

  init(dim: Int, generator: inout RandomGenerator) {
    qkv = Linear(dim, 3 * dim, generator: &generator)
    proj = Linear(dim, dim, generator: &generator)
    super.init()
    registerModule("qkv", qkv)
    registerModule("proj", proj)
  }
}

final class TinyBlock: Module {
  let norm1: LayerNorm
  let attn: TinyAttention
  let norm2: LayerNorm
  let mlp: MLP

  init(dim: Int, generator: inout RandomGenerator) {
    norm1 = LayerNorm(dim, eps: 1e-6)
    attn = TinyAttention(dim: dim, generator: &generator)
    norm2 = LayerNorm(dim, eps: 1e-6)
    mlp = MLP(dim, hidden: 2 * dim, generator: &generator)
    super.init()
    registerModule("norm1", norm1)
    registerModule("attn", attn)
    registerModule("norm2", norm2)
    registerModule("mlp", mlp)
  }
}

final class TinyViT: Module {
  let clsToken: Tensor
  let posEmbed: Tensor
  let patchEmbed: Linear
  let blocks: ModuleList<TinyBlock>
  let norm: LayerNorm
  let head: Linear

  /// dim 4, 2 tokens + cls, patches of 6 values, 2 blocks, 3 classes.
  init(seed: UInt64) {
    var rng = RandomGenerator(seed: seed)
    clsToken = Tensor.randn([1, 1, 4], std: 0.02, generator: &rng)
    posEmbed = Tensor.randn([1, 3, 4], std: 0.02, generator: &rng)
    patchEmbed = Linear(6, 4, generator: &rng)
    blocks = ModuleList((0..<2).map { _ in TinyBlock(dim: 4, generator: &rng) })
    norm = LayerNorm(4, eps: 1e-6)
    head = Linear(4, 3, generator: &rng)
    super.init()
    registerParameter("cls_token", clsToken)
    registerParameter("pos_embed", posEmbed)
    registerModule("patch_embed", patchEmbed)
    registerModule("blocks", blocks)
    registerModule("norm", norm)
    registerModule("head", head)
  }

  /// Expected dotted names, in PyTorch's order, written out by hand.
  static let expectedNames: [String] = {
    var names = ["cls_token", "pos_embed", "patch_embed.weight", "patch_embed.bias"]
    for b in 0..<2 {
      for layer in ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"] {
        names += ["blocks.\(b).\(layer).weight", "blocks.\(b).\(layer).bias"]
      }
    }
    return names + ["norm.weight", "norm.bias", "head.weight", "head.bias"]
  }()
}

/// Largest |a − b| over two equally long arrays.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
  return zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
}
