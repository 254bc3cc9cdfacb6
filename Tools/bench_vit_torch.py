#!/usr/bin/env python3
"""The PyTorch + timm (and onnxruntime) side of `graft bench vit`.

Measures one configuration per process, so the peak RSS it reports is that configuration's own:
  Tools/.venv/bin/python Tools/bench_vit_torch.py --model vit_small_patch16_224 --batch 32 \
      --mode inference [--precision bf16] [--onnxruntime] [--threads 2] [--iters 3]
and prints one JSON object: {"torch_img_s": …, "torch_peak_rss_mib": …, "onnxruntime_img_s": … | null}.

Modes: `inference` (eval, no grad) and `train_full` (one full fine-tuning step: forward,
cross-entropy on fixed labels, backward, AdamW step). `--precision bf16` runs inference under
`torch.autocast("cpu", dtype=torch.bfloat16)` (oneDNN's BF16 kernels, as Graft's BF16 rows);
`--precision int8` quantizes every nn.Linear dynamically (`quantize_dynamic`, qint8).
Random weights, 224×224 input, like Graft's
side. Needs: pip install torch timm onnx onnxruntime (a venv under Tools/.venv, ignored by git).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(step, iters):
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--mode", choices=["inference", "train_full"], required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--onnxruntime", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    args = ap.parse_args()

    import torch
    import timm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False)
    x = torch.randn(args.batch, 3, 224, 224)
    result = {"torch_img_s": None, "torch_peak_rss_mib": None, "onnxruntime_img_s": None}

    if args.mode == "inference":
        model.eval()
        if args.precision == "int8":
            # Dynamic quantization of every nn.Linear (qint8 weights, activations quantized per
            # call), PyTorch's counterpart of Graft's int8 rows.
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8)

        def step():
            with torch.inference_mode(), torch.autocast(
                    "cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                model(x)

        step()  # warm-up
        seconds = timed(step, args.iters)
    else:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        labels = torch.randint(0, 1000, (args.batch,), generator=torch.Generator().manual_seed(0))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()

        step()  # warm-up
        seconds = timed(step, args.iters)
    result["torch_img_s"] = args.batch / seconds
    result["torch_peak_rss_mib"] = peak_rss_mib()

    if args.onnxruntime and args.mode == "inference" and args.precision == "fp32":
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(
                model, (x,), path, input_names=["pixels"], output_names=["logits"],
                dynamic_axes={"pixels": {0: "batch"}}, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {"pixels": x.numpy()}
            session.run(None, feed)
            seconds = timed(lambda: session.run(None, feed), args.iters)
            result["onnxruntime_img_s"] = args.batch / seconds

    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
