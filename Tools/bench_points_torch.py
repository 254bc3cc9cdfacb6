#!/usr/bin/env python3
"""The PyTorch side of `graft bench points`: Point-MAE-small and its geometry ops.

Measures one configuration per process, so the peak RSS it reports is that configuration's own:

  Tools/.venv/bin/python Tools/bench_points_torch.py --mode inference --repo <Point-MAE> \
      [--batch 32] [--classes 40] [--threads 2] [--iters 3]
  Tools/.venv/bin/python Tools/bench_points_torch.py --mode train_full --repo <Point-MAE> …
  Tools/.venv/bin/python Tools/bench_points_torch.py --mode ops [--iters 5] [--quick]

`inference` and `train_full` print {"torch_clouds_s": …, "torch_peak_rss_mib": …}; `ops` prints
{"ops": {name: milliseconds, …}, "torch_peak_rss_mib": …}.

The model is `PointTransformer` from the OFFICIAL `models/Point_MAE.py` (Pang-Yatian/Point-MAE),
built exactly as Tools/make_point_mae_fixtures.py builds it: that script is imported, its
`official_source` unpacks the checkout (or git directory) given by `--repo` and its
`install_stubs` replaces the CUDA-only pieces by their plain-torch stand-ins from
Tools/make_point_ops_fixture.py (pointnet2_ops' FPS and gather, KNN_CUDA's kNN). Point-MAE-small:
trans_dim 384, depth 12, 6 heads, 64 groups of 32 points, encoder_dims 384, a `--classes` head
(ModelNet40's 40), drop path 0 (Graft's side has none either), random weights (the official
init), random normal clouds [B, 1024, 3] and fixed random labels.

- `inference`: eval mode under `torch.inference_mode()`, the official `forward` (grouping
  included).
- `train_full`: train mode (BatchNorm batch statistics, head dropout), the official
  `nn.CrossEntropyLoss`, backward, AdamW with the official fine-tuning recipe (lr 5e-4, weight
  decay 0.05 except on 1-d tensors and biases: the repository's `add_weight_decay`), zero_grad
  (set_to_none).
- `ops`, timed alone with the stand-ins the model uses: FPS 1024 → 64 on a batch of 32 clouds
  (`fps_b32_1024_64`), FPS 100,000 → 2,048 on one cloud (`fps_1_100k_2048`), kNN of the 64 FPS
  centres among the 1,024 points, k = 32, batch 32 (`knn_b32_64x1024_k32`; the stand-in is a full
  stable sort of the distances), the same distances with `torch.topk` instead of the sort
  (`knn_topk_b32_64x1024_k32`, the faster way plain torch has), and Point-MAE's whole `Group`
  (`group_b32_1024_64x32`). No repository needed.

One warm-up call, then the median of `--iters` timed calls. Needs torch, timm, numpy, safetensors,
easydict and termcolor (the venv Tools/make_point_mae_fixtures.py uses).
"""
import argparse
import importlib
import json
import pathlib
import resource
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tools"))

POINT_MAE_SMALL = dict(trans_dim=384, depth=12, num_heads=6, group_size=32, num_group=64,
                       encoder_dims=384, drop_path_rate=0.0)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_seconds(body, iters, warm_up=None):
    (warm_up or body)()
    times = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_model(repo, classes):
    """The official PointTransformer with the fixture script's stand-ins."""
    import make_point_mae_fixtures as fixtures
    from easydict import EasyDict

    source, temp = fixtures.official_source(repo)
    try:
        fixtures.install_stubs()
        sys.path.insert(0, str(source))
        point_mae = importlib.import_module("models.Point_MAE")
        return point_mae.PointTransformer(EasyDict(POINT_MAE_SMALL, cls_dim=classes))
    finally:
        if temp:
            shutil.rmtree(temp)


def official_decay_groups(model, weight_decay):
    """Point-MAE's `add_weight_decay` (tools/builder.py): no decay on 1-d tensors and biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if len(p.shape) == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def run_model(args, torch):
    torch.manual_seed(0)
    model = build_model(args.repo, args.classes)
    points = torch.randn(args.batch, args.points, 3)
    labels = torch.randint(0, args.classes, (args.batch,),
                           generator=torch.Generator().manual_seed(0))
    if args.mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode():
                model(points)
    else:
        model.train()
        optimizer = torch.optim.AdamW(official_decay_groups(model, 0.05), lr=5e-4)

        def step():
            loss = model.loss_ce(model(points), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    seconds = median_seconds(step, args.iters)
    return {"torch_clouds_s": args.batch / seconds, "torch_peak_rss_mib": peak_rss_mib()}


def run_ops(args, torch):
    import make_point_ops_fixture as point_ops

    generator = torch.Generator().manual_seed(0)
    clouds = torch.randn(32, 1024, 3, generator=generator)
    large = torch.randn(1, 100_000, 3, generator=generator)
    centres = point_ops.gather(clouds, point_ops.fps(clouds, 64, skip=True))

    def knn_topk(query, points, k):
        d = point_ops.sqdist(query, points)
        dist, idx = torch.topk(d, k, dim=-1, largest=False, sorted=True)
        return idx.int(), dist

    ops = {
        "fps_b32_1024_64": lambda: point_ops.fps(clouds, 64, skip=True),
        "fps_1_100k_2048": lambda: point_ops.fps(large, 2048, skip=True),
        "knn_b32_64x1024_k32": lambda: point_ops.knn(centres, clouds, 32),
        "knn_topk_b32_64x1024_k32": lambda: knn_topk(centres, clouds, 32),
        "group_b32_1024_64x32": lambda: point_ops.group(clouds, 64, 32),
    }
    times = {}
    with torch.inference_mode():
        for name, body in ops.items():
            # The 100k FPS takes seconds per call: one timed call, after a short warm-up run.
            large_fps = name.startswith("fps_1_")
            iters = 1 if args.quick or large_fps else args.iters
            warm_up = (lambda: point_ops.fps(large, 16, skip=True)) if large_fps else None
            times[name] = 1000 * median_seconds(body, iters, warm_up)
    return {"ops": times, "torch_peak_rss_mib": peak_rss_mib()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["inference", "train_full", "ops"], required=True)
    ap.add_argument("--repo", help="Point-MAE checkout or its git directory (model modes)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one timed call per op")
    args = ap.parse_args()
    if args.mode != "ops" and not args.repo:
        ap.error("--repo (the official Point-MAE source) is needed for the model modes")

    import torch

    torch.set_num_threads(args.threads)
    result = run_ops(args, torch) if args.mode == "ops" else run_model(args, torch)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
