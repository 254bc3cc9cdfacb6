#!/usr/bin/env python3
"""Writes Tests/GraftTensorTests/Fixtures/point_ops.safetensors: reference values for Graft's
point ops (PointOps in Sources/GraftTensor), computed in plain PyTorch on the CPU.

Rerun from the repository root with a Python that has torch, numpy and safetensors:

    /work/venv/bin/python Tools/make_point_ops_fixture.py

The references are written here from the published behaviour, not imported:

- fps(): pointnet2_ops' `furthest_point_sample` (CUDA kernel `furthest_point_sampling_kernel`):
  start at index 0; each step lowers every point's running distance to min(old, d) with
  d = (x - x1)^2 + (y - y1)^2 + (z - z1)^2 in float32, and picks the largest, the first maximum on
  ties (torch.argmax). With skip=True, points whose float32 x*x + y*y + z*z is <= the double 1e-3
  are never candidates, as in the kernel (if every point is skipped, index 0 every time).
- knn(): KNN_CUDA's `KNN(k, transpose_mode=True)(ref, query)` as Point-MAE's `Group` calls it:
  squared distance sum_c (q_c - p_c)^2 in float32, sorted ascending, stable (ties to the lower
  index). KNN_CUDA returns the square root; the fixture keeps the squared values.
- group(): Point-MAE's `Group.forward`: centres = xyz[fps(xyz, G, skip=True)],
  idx = knn(centres, xyz, S), neighbourhood = xyz[idx] - centre[:, :, None].
- ball_query(): pointnet2_ops' `ball_query`: the first nsample points with d < r^2 in index
  order, the rest filled with the first one found, all zeros when none is found.
- pc_normalize(): Point-MAE's ModelNet `pc_normalize` (centroid = mean, divide by the largest
  norm), computed in float64 and rounded once to float32.

Two clouds: "sphere" (B = 2, 512 points on a jittered unit sphere with a few points inside the
1e-3 squared-norm ball around the origin, so skipping them changes the FPS picks, and one whose
float32 squared norm rounds to float32(1e-3), which the kernel's double comparison keeps), and
"chair" (1,024 area-weighted samples of a box-built chair, the kind of cloud ModelNet gives,
normalised with pc_normalize, with 16 duplicated points so kNN meets exact ties).
"""

import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests/GraftTensorTests/Fixtures/point_ops.safetensors"
torch.manual_seed(0)
rng = np.random.default_rng(0)


def fps(xyz, m, skip):
    b, n, _ = xyz.shape
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    candidate = torch.ones(b, n, dtype=torch.bool)
    if skip:
        candidate = ~((x * x + y * y + z * z).double() <= 1e-3)
    dist = torch.full((b, n), float("inf"))
    out = torch.zeros(b, m, dtype=torch.int32)
    last = torch.zeros(b, dtype=torch.long)
    rows = torch.arange(b)
    for j in range(1, m):
        c = xyz[rows, last]
        dx = x - c[:, 0:1]
        dy = y - c[:, 1:2]
        dz = z - c[:, 2:3]
        dist = torch.minimum(dist, dx * dx + dy * dy + dz * dz)
        last = torch.where(candidate, dist, torch.tensor(-1.0)).argmax(dim=-1)
        out[:, j] = last.int()
    return out


def sqdist(query, points):
    # [B, M, N], summed over the channels in order, float32 throughout.
    d = torch.zeros(query.shape[0], query.shape[1], points.shape[1])
    for c in range(query.shape[2]):
        diff = query[:, :, None, c] - points[:, None, :, c]
        d = d + diff * diff
    return d


def knn(query, points, k):
    d = sqdist(query, points)
    dist, idx = torch.sort(d, dim=-1, stable=True)
    return idx[..., :k].int(), dist[..., :k]


def gather(points, idx):
    b = torch.arange(points.shape[0]).view(-1, *([1] * (idx.dim() - 1)))
    return points[b, idx.long()]


def group(xyz, g, s):
    centre_idx = fps(xyz, g, skip=True)
    centres = gather(xyz, centre_idx)
    idx, dist = knn(centres, xyz, s)
    return centres, gather(xyz, idx) - centres.unsqueeze(2), idx, dist


def ball_query(radius, nsample, xyz, centres):
    d = sqdist(centres, xyz)
    r2 = torch.tensor(radius, dtype=torch.float32) ** 2
    out = torch.zeros(*d.shape[:2], nsample, dtype=torch.int32)
    for b in range(d.shape[0]):
        for m in range(d.shape[1]):
            inside = torch.nonzero(d[b, m] < r2).flatten()[:nsample]
            if len(inside):
                out[b, m] = inside[0]
                out[b, m, : len(inside)] = inside
    return out


def pc_normalize(pc):
    pc = pc.astype(np.float64)
    pc = pc - pc.mean(axis=0)
    return (pc / np.sqrt((pc ** 2).sum(axis=1)).max()).astype(np.float32)


def sphere_cloud():
    v = rng.normal(size=(2, 512, 3))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    v *= 1 + 0.05 * rng.uniform(-1, 1, size=(2, 512, 1))
    v[:, [40, 200, 333]] = rng.uniform(-0.015, 0.015, size=(2, 3, 3))  # squared norm < 1e-3
    v = v.astype(np.float32)
    # A point whose float32 squared norm rounds to float32(1e-3): > the double 1e-3, so kept.
    target, x = np.float32(1e-3), np.float32(0.03)
    y0 = np.float32(np.sqrt(np.float64(target) - np.float64(x * x)))
    for k in range(-200, 200):
        y = np.float32(y0 + np.float32(k) * np.spacing(y0))
        if np.float32(x * x + np.float32(y * y)) == target:
            v[:, 100] = [x, y, 0]
            break
    else:
        raise SystemExit("no float32 point with squared norm float32(1e-3)")
    return torch.from_numpy(v)


def box_surface(lo, hi, count):
    lo, hi = np.array(lo, float), np.array(hi, float)
    size = hi - lo
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    face = rng.choice(6, size=count, p=np.repeat(areas, 2) / (2 * areas.sum()))
    p = lo + rng.uniform(size=(count, 3)) * size
    axis, side = face // 2, face % 2
    p[np.arange(count), axis] = np.where(side == 1, hi[axis], lo[axis])
    return p


def chair_cloud():
    parts = [  # y is up, as ModelNet
        ([-0.5, 0.45, -0.5], [0.5, 0.55, 0.5]),  # seat
        ([-0.5, 0.55, -0.5], [0.5, 1.5, -0.4]),  # back
    ] + [([x, 0, z], [x + 0.1, 0.45, z + 0.1]) for x in (-0.5, 0.4) for z in (-0.5, 0.4)]
    areas = []
    for lo, hi in parts:
        s = np.array(hi) - np.array(lo)
        areas.append(2 * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2]))
    counts = rng.multinomial(1024 - 16, np.array(areas) / sum(areas))
    cloud = np.concatenate([box_surface(lo, hi, c) for (lo, hi), c in zip(parts, counts)])
    cloud = cloud[rng.permutation(len(cloud))]
    cloud = np.concatenate([cloud, cloud[rng.choice(len(cloud), 16, replace=False)]])
    return cloud.astype(np.float32) * 3 + np.float32(0.7)  # off-centre, off-scale


def main():
    tensors = {}

    sphere = sphere_cloud()
    tensors["sphere.points"] = sphere
    tensors["sphere.fps"] = fps(sphere, 64, skip=False)
    tensors["sphere.fps_skip"] = fps(sphere, 64, skip=True)
    centres, hoods, idx, dist = group(sphere, 32, 16)
    tensors["sphere.centres"] = centres
    tensors["sphere.neighbourhoods"] = hoods
    tensors["sphere.knn_idx"] = idx
    tensors["sphere.knn_dist"] = dist

    raw = chair_cloud()
    normalized = pc_normalize(raw)
    chair = torch.from_numpy(normalized)[None]
    tensors["chair.raw"] = torch.from_numpy(raw)
    tensors["chair.normalized"] = chair[0]
    tensors["chair.fps"] = fps(chair, 64, skip=False)
    tensors["chair.fps_skip"] = fps(chair, 64, skip=True)
    centres, hoods, idx, dist = group(chair, 64, 32)
    tensors["chair.centres"] = centres
    tensors["chair.neighbourhoods"] = hoods
    tensors["chair.knn_idx"] = idx
    tensors["chair.knn_dist"] = dist
    tensors["chair.ball_idx"] = ball_query(0.2, 16, chair, centres)

    assert not torch.equal(tensors["sphere.fps"], tensors["sphere.fps_skip"]), "skip changes nothing"
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(OUT), metadata={"torch": torch.__version__})
    print(f"wrote {len(tensors)} tensors, {OUT.stat().st_size} bytes to {OUT}")


# Tools/make_point_mae_fixtures.py imports fps, knn and gather from here.
if __name__ == "__main__":
    main()
