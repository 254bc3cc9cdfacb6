"""Checks `graft export` and `graft import` against timm and PEFT on small tuned runs.

Usage (after `swift build`; needs torch, timm, peft, onnx, onnxruntime, safetensors, pillow):
    python Tools/check_export.py [--graft .build/debug/graft] [--work /tmp/graft-export-check]

1. Tunes lora (q,v and q,v,fc1), bitfit, ln-tune, vpt-deep, adapter, mp (near and cn2) and mp+ for one epoch on the bundled vit-nano-fmnist (`graft tune --data digits`).
2. `graft export --to timm`: timm.create_model("local-dir:OUT", pretrained=True) against
   `graft predict --adapter RUN` on the same images (relative max error, target <= 1e-4).
   `graft export --to onnx` (vpt-deep, adapter, mp, mp+: ONNX only): onnxruntime on the same pixels against Graft.
3. `graft export --to peft` of the lora run: PeftModel.from_pretrained on timm's backbone against
   Graft.
4. A LoRA made by PEFT itself (r=4 on qkv and mlp.fc1, modules_to_save head, random B), saved
   with save_pretrained, `graft import`ed and predicted by Graft against PEFT.
Images are 28x28 PNGs, the model's input size, so preprocessing is ToTensor + Normalize only.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import timm
import torch
from PIL import Image
from safetensors.numpy import load_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKBONE = os.path.join(REPO, "Models", "vit-nano-fmnist")


def run(*cmd):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def images(folder, n=6):
    rng = np.random.default_rng(0)
    paths = []
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        # A smooth pattern plus noise, so features differ between images.
        y, x = np.mgrid[0:28, 0:28]
        base = 127 + 100 * np.sin(x / (2 + i) + y / (3 + i))
        pixels = np.clip(base[..., None] + rng.normal(0, 30, (28, 28, 3)), 0, 255)
        path = os.path.join(folder, f"img{i}.png")
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
        paths.append(path)
    return paths


def pixels(paths, cfg):
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    out = []
    for p in paths:
        a = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255)
        out.append((a.permute(2, 0, 1) - mean) / std)
    return torch.stack(out)


# The cloud sets are small (30 training clouds): without these settings one epoch is one step
# at a warm-up learning rate of 0, and the exported tensors would be their initial values.
CLOUD_STEPS = ["--set", "optim.warmup_epochs=0", "--set", "train.batch_size=8",
               "--set", "train.epochs=2"]


def clouds(folder, classes=("cube", "disc", "sphere"), per_class=10, n=300, seed=1):
    """A class-per-folder set of ASCII PLY clouds (a cube's surface, a flat disc, a sphere's
    surface), for tuning and predicting a P2P run."""
    rng = np.random.default_rng(seed)
    paths = []
    for split, count in (("train", per_class), ("val", 3), ("test", 3)):
        for shape in classes:
            os.makedirs(os.path.join(folder, split, shape), exist_ok=True)
            for i in range(count):
                v = rng.normal(size=(n, 3)).astype(np.float32)
                if shape == "sphere":
                    v /= np.linalg.norm(v, axis=1, keepdims=True)
                elif shape == "cube":
                    v = np.clip(v / 2, -1, 1)
                    axis = rng.integers(0, 3, size=n)
                    v[np.arange(n), axis] = np.sign(v[np.arange(n), axis]) + (v[np.arange(n), axis] == 0)
                else:
                    v = v * np.array([0.5, 0.5, 0.02], dtype=np.float32)
                path = os.path.join(folder, split, shape, f"{shape}{i}.ply")
                with open(path, "w") as fh:
                    fh.write(f"ply\nformat ascii 1.0\nelement vertex {n}\n"
                             "property float x\nproperty float y\nproperty float z\nend_header\n")
                    for row in v:
                        fh.write(f"{row[0]:.6f} {row[1]:.6f} {row[2]:.6f}\n")
                if split == "test":
                    paths.append(path)
    return paths


def graft_logits(graft, run_folder, paths, out):
    run(graft, "predict", "--adapter", run_folder, "--output", out, *paths)
    return load_file(out)["logits"]


def compare(name, ours, theirs):
    err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-6))
    ok = err <= 1e-4
    print(f"{name}: relative max error {err:.2e} ({'ok' if ok else 'FAIL'})", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--graft", default=os.path.join(REPO, ".build", "debug", "graft"))
    ap.add_argument("--work", default="/tmp/graft-export-check")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    args = ap.parse_args()
    g, w = args.graft, args.work
    os.makedirs(w, exist_ok=True)
    paths = images(os.path.join(w, "images"))
    cfg = json.load(open(os.path.join(BACKBONE, "config.json")))["pretrained_cfg"]
    x = pixels(paths, cfg)
    ok = True
    torch.set_grad_enabled(False)

    # (run name, method, extra settings): lora-mixed adapts q, v and fc1, so its PEFT folder
    # needs rank_pattern / alpha_pattern for attn.qkv (rank 2r) beside mlp.fc1 (rank r).
    runs = [("lora", "lora", []), ("lora-mixed", "lora", ["--set", "method.targets=q,v,fc1"]),
            ("bitfit", "bitfit", []), ("ln-tune", "ln-tune", []), ("vpt-deep", "vpt-deep", []),
            ("adapter", "adapter", []), ("mp", "mp", []),
            ("mp-cn2", "mp", ["--set", "method.cross=cn2"]), ("mp+", "mp+", []),
            ("lst", "lst", []), ("lst-layers", "lst", ["--set", "method.layers=1,3,4"]),
            ("unipt", "unipt", []), ("hst", "hst", []),
            ("hst-meta2", "hst", ["--set", "method.meta_tokens=2", "--set", "method.depths=1,2,0,3"]),
            ("idpt", "idpt", []),
            ("p2p", "p2p", ["--set", "method.points=256", "--set", "method.k=8"] + CLOUD_STEPS),
            ("points-linear", "linear", CLOUD_STEPS), ("points-full", "full", CLOUD_STEPS),
            ("points-bitfit", "bitfit", CLOUD_STEPS), ("points-ln-tune", "ln-tune", CLOUD_STEPS),
            ("points-lora", "lora", CLOUD_STEPS), ("points-vpt-deep", "vpt-deep", CLOUD_STEPS),
            ("points-vpt-shallow", "vpt-shallow", CLOUD_STEPS),
            ("points-adapter", "adapter", CLOUD_STEPS), ("points-idpt", "idpt", CLOUD_STEPS),
            ("points-mp", "mp", CLOUD_STEPS), ("points-mp+", "mp+", CLOUD_STEPS),
            ("points-lst", "lst", CLOUD_STEPS), ("points-unipt", "unipt", CLOUD_STEPS),
            ("p2p-default-k", "p2p", ["--set", "method.points=128",
                                      "--set", "method.mean=0.286,0.286,0.286",
                                      "--set", "method.std=0.353,0.353,0.353"] + CLOUD_STEPS),
            ("idpt-layer3", "idpt", ["--set", "method.prompt_layer=3", "--set", "method.k=8",
                                     "--set", "method.head=promptcls"])]
    if args.only:
        runs = [r for r in runs if r[0] in args.only.split(",")]
    cloud_paths = clouds(os.path.join(w, "clouds"))
    # Clouds for the bundled point backbone (1,024 points a cloud).
    big_cloud_paths = clouds(os.path.join(w, "clouds-1k"), n=1100, seed=2)
    for name, method, extra in runs:
        rf = os.path.join(w, name)
        on_points = name.startswith("points-")
        points = method == "p2p" or on_points
        if not os.path.exists(os.path.join(rf, "summary.json")):
            data = (os.path.join(w, "clouds-1k") if on_points
                    else os.path.join(w, "clouds") if points else "digits")
            backbone = "point-mae-furniture" if on_points else "vit-nano-fmnist"
            run(g, "tune", "--backbone", backbone, "--method", method, "--data",
                data, "--set", "train.epochs=1", *extra, "--out", rf, "--quiet")
        out = os.path.join(w, f"{name}-logits.safetensors")
        ours = graft_logits(g, rf, big_cloud_paths if on_points else cloud_paths if points else paths, out)
        if method not in ("vpt-deep", "adapter", "mp", "mp+", "lst", "unipt", "hst", "idpt", "p2p") and not on_points:  # no timm ViT holds them: ONNX only
            timm_dir = os.path.join(w, f"{name}-timm")
            run(g, "export", "--adapter", rf, "--to", "timm", timm_dir)
            model = timm.create_model("local-dir:" + timm_dir, pretrained=True).eval()
            ok &= compare(f"timm merged {name}", ours, model(x).numpy())
        onnx_file = os.path.join(w, f"{name}.onnx")
        run(g, "export", "--adapter", rf, "--to", "onnx", onnx_file)
        onnx.checker.check_model(onnx.load(onnx_file))
        sess = onnxruntime.InferenceSession(onnx_file)
        # P2P's graph takes the clouds as the run saw them (normalised, sampled), which
        # graft predict writes beside the logits.
        feed = {"points": load_file(out)["points"]} if points else {"pixels": x.numpy()}
        ok &= compare(f"onnxruntime {name}", ours, sess.run(None, feed)[0])

        if method == "lora" and not on_points:
            from peft import PeftModel
            peft_dir = os.path.join(w, f"{name}-peft")
            run(g, "export", "--adapter", rf, "--to", "peft", peft_dir)
            classes = ours.shape[1]
            base = timm.create_model("local-dir:" + BACKBONE, pretrained=True,
                                     num_classes=classes).eval()
            pm = PeftModel.from_pretrained(base, peft_dir).eval()
            ok &= compare(f"PEFT from graft export --to peft of {name}", ours, pm(x).numpy())

    # An adapter PEFT made: graft import, then Graft's logits against PEFT's.
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    base = timm.create_model("local-dir:" + BACKBONE, pretrained=True, num_classes=5).eval()
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "mlp.fc1"],
                                          modules_to_save=["head"]))
    for name, p in pm.named_parameters():
        if "lora_B" in name or "modules_to_save" in name:
            p.data.normal_(0, 0.05)
    pm.eval()
    src = os.path.join(w, "peft-made")
    pm.save_pretrained(src)
    imported = os.path.join(w, "peft-imported")
    run(g, "import", "--peft", src, "--backbone", "vit-nano-fmnist", "--out", imported)
    ours = graft_logits(g, imported, paths, os.path.join(w, "imported-logits.safetensors"))
    ok &= compare("graft import of a PEFT-made LoRA", ours, pm(x).numpy())
    print("all ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
