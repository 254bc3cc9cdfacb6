#!/usr/bin/env python3
"""The PyTorch side of `graft bench video`: clips/s of decode + encode + pool.

For each batch: every clip is decoded forward with PyAV (FFmpeg, its automatic threading) to
PLLaVA's frame indices (get_index), each chosen frame converted to RGB (`to_ndarray(format=
"rgb24")`), through timm's eval transform of vit_small_patch16_224 (resize 248 bicubic, centre
crop 224, mean/std 0.5), all frames of the batch through a random-weight vit_small_patch16_224
up to the second-to-last block, the class token dropped, and the [B, T, 14, 14, D] tokens pooled
by AdaptiveAvgPool3d to (T, 7, 7). One warm-up batch, then --iterations batches in a plain loop;
clips/s is over the whole loop.
Prints one JSON line: {"clips_s": ..., "peak_rss_mib": ...}.

Needs torch, timm, numpy, Pillow and av (PyAV): `pip install torch timm av`.
"""

import argparse
import json
import resource
import time

import av
import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image


def get_index(num_frames, num_segments):
    seg_size = float(num_frames - 1) / num_segments
    start = int(seg_size / 2)
    return [start + int(np.round(seg_size * idx)) for idx in range(num_segments)]


def decode(path, frames):
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = stream.frames
        if count <= 0:
            count = sum(1 for _ in container.demux(stream) if _.size > 0)
            container.seek(0)
        wanted = get_index(count, frames)
        last = max(wanted)
        picked = {}
        for i, frame in enumerate(container.decode(stream)):
            if i > last:
                break
            if i in wanted:
                picked[i] = Image.fromarray(frame.to_ndarray(format="rgb24"))
        return [picked[i] for i in wanted]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    transform = timm.data.create_transform(
        input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.9, mean=(0.5,) * 3, std=(0.5,) * 3)

    def step():
        images = []
        for _ in range(args.batch):
            images += decode(args.video, args.frames)
        pixels = torch.stack([transform(im) for im in images])
        with torch.inference_mode():
            x = model.norm_pre(model._pos_embed(model.patch_embed(pixels)))
            for block in model.blocks[:-1]:
                x = block(x)
            tokens = x[:, model.num_prefix_tokens:].reshape(args.batch, args.frames, 14, 14, -1)
            pooled = F.adaptive_avg_pool3d(tokens.permute(0, 4, 1, 2, 3), (args.frames, 7, 7))
        return pooled

    step()
    iterations = max(1, args.iterations)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    seconds = (time.perf_counter() - start) / iterations
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"clips_s": args.batch / seconds, "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
