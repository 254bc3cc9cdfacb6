#!/usr/bin/env python3
"""The PyTorch + timm side of `graft bench tune`: one tuning method's training step.

Measures one method per process, so the peak RSS it reports is that method's own:
  Tools/.venv/bin/python Tools/bench_tune_torch.py --method full --model vit_small_patch16_224 \
      --batch 32 [--classes 1000] [--threads 2] [--iters 3]
and prints one JSON object: {"torch_img_s": …, "torch_peak_rss_mib": …}.

The step is the one Graft's trainer takes: forward, cross-entropy on fixed random labels,
backward, optimizer step, zero_grad (set_to_none). One warm-up step, then the median of `--iters`
timed steps. Random weights (timm's init), random normal 224×224 images, a `--classes` head
(1000, timm's default, as on Graft's side). Each method uses Graft's recipe optimizer
(`TuneConfig.preset`):

- `full`: the timm model with its 1000-class head, every parameter trainable; AdamW lr 1e-4,
  weight decay 0.05 on weights, none on biases/norms/tokens (timm's
  `param_groups_weight_decay`, the same split as Graft's decay / no-decay groups).
- `linear`: the frozen backbone (`num_classes=0`, eval mode) computes the pooled features under
  `torch.no_grad()`, so it keeps no activations; a new `nn.Linear(D, classes)` head trains; SGD
  momentum 0.9, lr 0.1, no weight decay.
- `vpt-deep`: a minimal VPT-deep (Jia et al. 2022): 10 learned prompt tokens per block, inserted
  after the class token before block 0 and replacing the previous block's prompt outputs before
  every later block; prompts initialised uniform ±sqrt(6 / (3·16·16 + D)) as in the paper's code.
  The backbone's parameters are frozen (requires_grad False) but gradients flow through every
  block to the prompts; the class token after the final norm feeds a new Linear head. No prompt
  dropout (Graft's default 0). SGD momentum 0.9, lr 0.25, weight decay 1e-4 on the head weight only
  (Graft never decays biases or prompts).

Needs: pip install torch timm (a venv under Tools/.venv, ignored by git).
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["full", "linear", "vpt-deep"], required=True)
    ap.add_argument("--model", default="vit_small_patch16_224")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=10)
    args = ap.parse_args()

    import torch
    import timm
    from timm.optim import param_groups_weight_decay

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    labels = torch.randint(
        0, args.classes, (args.batch,), generator=torch.Generator().manual_seed(0))

    if args.method == "full":
        model = timm.create_model(args.model, pretrained=False, num_classes=args.classes)
        model.train()
        opt = torch.optim.AdamW(param_groups_weight_decay(model, 0.05), lr=1e-4)
        forward = model
    else:
        backbone = timm.create_model(args.model, pretrained=False, num_classes=0)
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        head = torch.nn.Linear(backbone.num_features, args.classes)
        if args.method == "linear":
            opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=0)

            def forward(images):
                with torch.no_grad():
                    features = backbone(images)
                return head(features)
        else:
            depth = len(backbone.blocks)
            width = backbone.embed_dim
            patch = backbone.patch_embed.patch_size
            bound = math.sqrt(6.0 / (3 * patch[0] * patch[1] + width))
            prompts = torch.nn.Parameter(torch.empty(depth, args.prompts, width))
            torch.nn.init.uniform_(prompts, -bound, bound)
            opt = torch.optim.SGD(
                [
                    {"params": [head.weight], "weight_decay": 1e-4},
                    {"params": [prompts, head.bias], "weight_decay": 0.0},
                ],
                lr=0.25, momentum=0.9)
            n = args.prompts

            def forward(images):
                t = backbone.patch_embed(images)
                t = backbone._pos_embed(t)
                t = backbone.norm_pre(t)
                b = t.shape[0]
                for i, block in enumerate(backbone.blocks):
                    p = prompts[i].unsqueeze(0).expand(b, -1, -1)
                    rest = t[:, 1:] if i == 0 else t[:, 1 + n:]
                    t = block(torch.cat([t[:, :1], p, rest], dim=1))
                t = backbone.norm(t)
                return head(t[:, 0])

    def step():
        loss = torch.nn.functional.cross_entropy(forward(x), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    json.dump(
        {
            "torch_img_s": args.batch / statistics.median(times),
            "torch_peak_rss_mib": peak_rss_mib(),
        },
        sys.stdout)
    print()


if __name__ == "__main__":
    main()
