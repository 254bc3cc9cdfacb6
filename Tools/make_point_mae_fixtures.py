#!/usr/bin/env python3
"""Writes Tests/GraftModelsTests/Fixtures/point_mae/: a tiny Point-MAE model folder built by the
OFFICIAL code, and the reference outputs Graft's PointMAE must reproduce.

    /work/venv/bin/python Tools/make_point_mae_fixtures.py --repo <Point-MAE checkout or git dir>

The reference model is `PointTransformer` from `models/Point_MAE.py` of Pang-Yatian/Point-MAE,
imported from the given checkout (or from a `git archive HEAD` of the given git directory,
unpacked into a temporary folder); nothing of it is copied into Graft. What only builds with CUDA
is replaced by plain-torch stand-ins with the CUDA behaviour, taken from
Tools/make_point_ops_fixture.py: pointnet2_ops' `furthest_point_sample` (start at point 0, skip
points within 1e-3 of the origin in squared norm, first maximum on ties) and `gather_operation`,
and KNN_CUDA's `KNN(k, transpose_mode=True)` (sorted ascending, ties to the lower index; it
returns distances, which `Group` ignores). The compiled Chamfer extension, matplotlib and
mpl_toolkits (imported by modules the model file imports, unused by the fine-tuning model) are
empty stubs. Needs torch, timm, numpy, safetensors, plyfile, easydict and termcolor.

The model: trans_dim 32, depth 2, 2 heads, 8 groups of 8 points, npoints 128, a 5-class
`cls_head_finetune`; seeded random weights, with LayerNorm and BatchNorm affine parameters away
from ones and zeros and non-trivial BatchNorm running statistics (and `num_batches_tracked`), in
evaluation mode. Its folder is written by Tools/convert_point_mae.py from the state dict saved
as an official fine-tuned checkpoint ({'base_model': {'module.' + name: …}}), and the converter
is checked on the pretrained layout too (MAE_encoder.* plus decoder tensors, no class token).

The input: two real clouds, the vertices of the Stanford Bunny scan (`bunny.ply`, 1,889 points)
and of Geomview's mushroom (`mushroom.off`, 226 points) from Tests/GraftPointsTests/Fixtures/
real, each normalised to the unit sphere (pc_normalize) and sampled to 128 points with the FPS
above, as the official evaluation loop's `misc.fps(points, npoints)` (`prepared`). No point of
either lies within the origin ball the FPS skips, so the model input `points` has the mushroom
moved to put the point FPS would pick second at the origin (the script checks that the skip
then changes its centres).

reference.safetensors holds `raw.bunny` [1889, 3], `raw.mushroom` [226, 3] (the vertices as
read), `prepared` [2, 128, 3] with the model's `prepared.features` and `prepared.logits`, and
`points` [2, 128, 3] (the model input) with `centres` [2, 8, 3], `features` [2, 64] (the
official `concat_f`) and `logits` [2, 5].
"""

import argparse
import importlib
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/GraftModelsTests/Fixtures/point_mae"
REAL = ROOT / "Tests/GraftPointsTests/Fixtures/real"
sys.path.insert(0, str(ROOT / "Tools"))

import convert_point_mae  # noqa: E402
import make_point_ops_fixture as point_ops  # noqa: E402

CONFIG = dict(trans_dim=32, depth=2, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
              cls_dim=5, drop_path_rate=0.0)
NPOINTS = 128


def official_source(repo):
    """A folder holding the official `models/` and `utils/` packages."""
    repo = pathlib.Path(repo)
    if (repo / "models/Point_MAE.py").exists():
        return repo, None
    temp = tempfile.mkdtemp(prefix="point_mae_src_")
    archive = subprocess.run(["git", "--git-dir", str(repo), "archive", "HEAD"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", temp], input=archive, check=True)
    return pathlib.Path(temp), temp


def install_stubs():
    """CUDA-only and plotting modules replaced by plain-torch stand-ins and empty stubs."""
    def furthest_point_sample(xyz, number):
        return point_ops.fps(xyz.float(), number, skip=True)

    def gather_operation(features, idx):  # features [B, C, N], idx [B, M] -> [B, C, M]
        index = idx.long().unsqueeze(1).expand(-1, features.shape[1], -1)
        return torch.gather(features, 2, index)

    pointnet2_utils = types.ModuleType("pointnet2_ops.pointnet2_utils")
    pointnet2_utils.furthest_point_sample = furthest_point_sample
    pointnet2_utils.gather_operation = gather_operation
    pointnet2_ops = types.ModuleType("pointnet2_ops")
    pointnet2_ops.pointnet2_utils = pointnet2_utils

    class KNN(torch.nn.Module):
        def __init__(self, k, transpose_mode=False):
            super().__init__()
            assert transpose_mode, "Point-MAE calls KNN with transpose_mode=True"
            self.k = k

        def forward(self, ref, query):  # [B, N, 3], [B, M, 3] -> dist, idx [B, M, k]
            idx, squared = point_ops.knn(query, ref, self.k)
            return squared.sqrt(), idx.long()

    knn_cuda = types.ModuleType("knn_cuda")
    knn_cuda.KNN = KNN
    pyplot = types.ModuleType("matplotlib.pyplot")
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.pyplot = pyplot
    mplot3d = types.ModuleType("mpl_toolkits.mplot3d")
    mplot3d.Axes3D = object
    mpl_toolkits = types.ModuleType("mpl_toolkits")
    mpl_toolkits.mplot3d = mplot3d
    sys.modules.update({
        "pointnet2_ops": pointnet2_ops, "pointnet2_ops.pointnet2_utils": pointnet2_utils,
        "knn_cuda": knn_cuda, "chamfer": types.ModuleType("chamfer"),
        "matplotlib": matplotlib, "matplotlib.pyplot": pyplot,
        "mpl_toolkits": mpl_toolkits, "mpl_toolkits.mplot3d": mplot3d,
    })


def randomise(model, generator):
    """Seeded weights with every norm away from its identity and real running statistics."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight") and p.dim() == 1:  # LayerNorm / BatchNorm scale
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=generator))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            else:  # linear and convolution weights, tokens: fan-in scaled
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                std = 1.0 / fan_in ** 0.5 if p.dim() > 1 and p.shape[0] > 1 else 0.5
                p.copy_(std * torch.randn(p.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                c = module.num_features
                module.running_mean.copy_(0.3 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator) * 1.5)
                module.num_batches_tracked.fill_(1234)


def read_vertices():
    from plyfile import PlyData

    ply = PlyData.read(str(REAL / "bunny.ply"))
    v = ply["vertex"]
    bunny = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    lines = (REAL / "mushroom.off").read_text().split("\n")
    count = int(lines[1].split()[0])
    mushroom = np.array([[float(t) for t in l.split()[:3]] for l in lines[2:2 + count]],
                        dtype=np.float32)
    return bunny, mushroom


def prepare(vertices):
    """pc_normalize, then the official evaluation loop's misc.fps to NPOINTS."""
    cloud = torch.from_numpy(point_ops.pc_normalize(vertices))[None]
    picks = point_ops.fps(cloud, NPOINTS, skip=True)
    return point_ops.gather(cloud, picks)[0]


def check_converter(state, config, expected_folder):
    """Both official layouts through Tools/convert_point_mae.py."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="point_mae_convert_"))
    try:
        finetuned = work / "finetuned.pth"
        torch.save({"base_model": {"module." + k: v for k, v in state.items()}, "epoch": 3},
                   finetuned)
        convert_point_mae.main([str(finetuned), str(expected_folder), "--num-heads", "2",
                                "--group-size", "8", "--num-group", "8", "--npoints",
                                str(NPOINTS)])
        written = load_file(str(expected_folder / "model.safetensors"))
        assert written.keys() == state.keys(), sorted(set(written) ^ set(state))
        assert all(torch.equal(written[k], state[k]) for k in state)
        assert json.loads((expected_folder / "config.json").read_text()) == config

        encoder = {k: v for k, v in state.items()
                   if not k.startswith(("cls_token", "cls_pos", "cls_head_finetune."))}
        pretrained = {"MAE_encoder." + k: v for k, v in encoder.items()}
        pretrained.update({
            "mask_token": torch.zeros(1, 1, 32), "decoder_pos_embed.0.weight": torch.zeros(128, 3),
            "MAE_decoder.blocks.0.norm1.weight": torch.ones(32),
            "increase_dim.0.weight": torch.zeros(24, 32, 1),
        })
        torch.save({"base_model": pretrained}, work / "pretrained.pth")
        convert_point_mae.main([str(work / "pretrained.pth"), str(work / "pre"), "--num-heads",
                                "2", "--group-size", "8", "--num-group", "8"])
        pre = load_file(str(work / "pre/model.safetensors"))
        assert set(pre) == set(encoder) | {"cls_token", "cls_pos"}, sorted(pre)
        assert all(torch.equal(pre[k], encoder[k]) for k in encoder)
        assert pre["cls_token"].shape == (1, 1, 32) and 0 < pre["cls_token"].std() < 0.04
        pre_config = json.loads((work / "pre/config.json").read_text())
        assert pre_config["num_classes"] == 0 and pre_config["model_args"]["depth"] == 2
        assert pre_config["model_args"]["npoints"] == 1024
        print("converter: fine-tuned and pretrained layouts check")
    finally:
        shutil.rmtree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="Point-MAE checkout, or its git directory")
    args = parser.parse_args()
    source, temp = official_source(args.repo)
    try:
        install_stubs()
        sys.path.insert(0, str(source))
        from easydict import EasyDict

        point_mae = importlib.import_module("models.Point_MAE")
        torch.manual_seed(0)
        model = point_mae.PointTransformer(EasyDict(CONFIG)).eval()
    finally:
        if temp:
            shutil.rmtree(temp)
    generator = torch.Generator().manual_seed(16)
    randomise(model, generator)

    bunny, mushroom = read_vertices()
    prepared = torch.stack([prepare(bunny), prepare(mushroom)])
    # Neither normalised cloud has a point within the 1e-3 origin ball, where pointnet2_ops'
    # FPS skips points: the model input moves the mushroom so that the point FPS would pick
    # second (the farthest from point 0) lies at the origin, and checks that the skip changes
    # the centres.
    second = point_ops.fps(prepared[1:], 2, skip=False)[0, 1]
    points = prepared.clone()
    points[1] -= prepared[1, second].clone()
    skipped = point_ops.fps(points, CONFIG["num_group"], skip=True)
    plain = point_ops.fps(points, CONFIG["num_group"], skip=False)
    assert torch.equal(skipped[0], plain[0]) and not torch.equal(skipped[1], plain[1])

    def forward(x):
        with torch.no_grad():
            neighbourhood, centres = model.group_divider(x)
            tokens = model.encoder(neighbourhood)
            b = tokens.shape[0]
            h = torch.cat([model.cls_token.expand(b, -1, -1), tokens], dim=1)
            pos = torch.cat([model.cls_pos.expand(b, -1, -1), model.pos_embed(centres)], dim=1)
            h = model.norm(model.blocks(h, pos))
            features = torch.cat([h[:, 0], h[:, 1:].max(1)[0]], dim=-1)
            logits = model(x)
            assert torch.equal(model.cls_head_finetune(features), logits)
        return centres, features, logits

    centres, features, logits = forward(points)
    _, prepared_features, prepared_logits = forward(prepared)

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = {
        "architecture": "point_mae", "num_classes": CONFIG["cls_dim"],
        "model_args": {k: CONFIG[k] for k in ("trans_dim", "depth", "num_heads", "group_size",
                                              "num_group", "encoder_dims")} | {"npoints": NPOINTS},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    check_converter(state, config, OUT / "model")
    save_file({
        "raw.bunny": torch.from_numpy(bunny), "raw.mushroom": torch.from_numpy(mushroom),
        "prepared": prepared.contiguous(), "prepared.features": prepared_features.contiguous(),
        "prepared.logits": prepared_logits.contiguous(),
        "points": points.contiguous(), "centres": centres.contiguous(),
        "features": features.contiguous(), "logits": logits.contiguous(),
    }, str(OUT / "reference.safetensors"), metadata={"torch": torch.__version__})
    print(f"features {tuple(features.shape)} |max| {features.abs().max():.3f}, "
          f"logits {logits.tolist()}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
