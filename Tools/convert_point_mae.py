#!/usr/bin/env python3
"""Converts an official Point-MAE checkpoint (.pth) into a Graft model folder: config.json and
model.safetensors with the state-dict names of Point-MAE's fine-tuning model (`PointTransformer`
in `models/Point_MAE.py` of Pang-Yatian/Point-MAE), which `graft embed --model FOLDER` and
`graft tune --backbone FOLDER` load.

    python Tools/convert_point_mae.py CHECKPOINT.pth OUT_FOLDER [--num-heads 6]
        [--group-size 32] [--num-group 64] [--npoints 1024] [--seed 0]

Layouts read (as the official `PointTransformer.load_model_from_ckpt` reads them):

- fine-tuned: `torch.save({'base_model': model.state_dict(), ...})` from `runner_finetune`,
  keys `cls_token`, `encoder.…`, `blocks.blocks.N.…`, `cls_head_finetune.…`, with the `module.`
  prefix of DistributedDataParallel or a `base_model.` prefix;
- pretrained: the same dict from `runner_pretrain`, keys `MAE_encoder.…` (the encoder the
  fine-tuning model starts from) plus the decoder's `MAE_decoder.…`, `mask_token`,
  `decoder_pos_embed.…` and `increase_dim.…`, which are dropped. It has no `cls_token`,
  `cls_pos` or classifier: as the official fine-tuning does, the two tokens start from
  trunc_normal(std=0.02) (seeded by --seed; a note is printed) and the folder has no head
  (num_classes 0).

A flat state dict (no 'base_model' entry) is read the same way. Sizes are inferred from the
tensors: trans_dim (cls_token / norm), depth (the block indices), encoder_dims, num_classes (the
classifier's last layer). What the weights cannot tell is given by flags with the official
defaults: num_heads (default trans_dim / 64: 6 for the 384-wide models), group_size 32,
num_group 64, npoints 1024. Any other tensor stops the conversion with its name.

Needs torch and safetensors.
"""

import argparse
import json
import pathlib
import re
import sys

import torch
from safetensors.torch import save_file

# Tensors of the pretraining model that the fine-tuning encoder does not have.
DECODER_PREFIXES = ("MAE_decoder.", "decoder_pos_embed.", "increase_dim.")
DECODER_NAMES = ("mask_token",)
ENCODER_PREFIXES = ("cls_token", "cls_pos", "encoder.", "pos_embed.", "blocks.blocks.", "norm.")
HEAD_PREFIX = "cls_head_finetune."


def state_dict_of(checkpoint):
    """The state dict inside an official checkpoint (or the checkpoint itself if flat)."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("base_model"), dict):
        return checkpoint["base_model"]
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        return checkpoint["model"]
    if isinstance(checkpoint, dict) and all(torch.is_tensor(v) for v in checkpoint.values()):
        return checkpoint
    raise SystemExit("not a Point-MAE checkpoint: no 'base_model' state dict and not a flat one")


def convert(state, num_heads=None, group_size=32, num_group=64, npoints=1024, seed=0):
    """(tensors, config, notes) of a Graft Point-MAE folder from an official state dict."""
    tensors, dropped, unknown, notes = {}, [], [], []
    for name, value in state.items():
        key = name[len("module."):] if name.startswith("module.") else name
        if key.startswith("MAE_encoder."):
            key = key[len("MAE_encoder."):]
        elif key.startswith("base_model."):
            key = key[len("base_model."):]
        if key.startswith(DECODER_PREFIXES) or key in DECODER_NAMES:
            dropped.append(key)
        elif key.startswith(ENCODER_PREFIXES) or key.startswith(HEAD_PREFIX):
            tensors[key] = value.detach().clone().contiguous()
        else:
            unknown.append(name)
    if unknown:
        raise SystemExit("tensors that are not Point-MAE's: " + ", ".join(sorted(unknown)))
    if "norm.weight" not in tensors or "encoder.first_conv.0.weight" not in tensors:
        raise SystemExit("no Point-MAE encoder in the checkpoint (norm.weight, encoder.… missing)")

    trans_dim = tensors["norm.weight"].shape[0]
    blocks = {int(m.group(1)) for k in tensors if (m := re.match(r"blocks\.blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    if blocks != set(range(depth)):
        raise SystemExit(f"block indices {sorted(blocks)} are not 0..{depth - 1}")
    encoder_dims = tensors["encoder.second_conv.3.weight"].shape[0]
    generator = torch.Generator().manual_seed(seed)
    for token in ("cls_token", "cls_pos"):
        if token not in tensors:
            t = torch.empty(1, 1, trans_dim)
            torch.nn.init.trunc_normal_(t, std=0.02, generator=generator)
            tensors[token] = t
            notes.append(f"{token} is not in the checkpoint (a pretrained encoder): "
                         f"trunc_normal(std=0.02), seed {seed}, as the official fine-tuning starts it")
    head = sorted(k for k in tensors if k.startswith(HEAD_PREFIX))
    num_classes = tensors[HEAD_PREFIX + "8.weight"].shape[0] if head else 0
    if head and HEAD_PREFIX + "8.weight" not in tensors:
        raise SystemExit("cls_head_finetune is not Point-MAE's (no cls_head_finetune.8)")
    if num_heads is None:
        num_heads = max(1, trans_dim // 64)
    if trans_dim % num_heads:
        raise SystemExit(f"trans_dim {trans_dim} is not divisible by --num-heads {num_heads}")
    config = {
        "architecture": "point_mae",
        "num_classes": num_classes,
        "model_args": {
            "trans_dim": trans_dim, "depth": depth, "num_heads": num_heads,
            "group_size": group_size, "num_group": num_group, "encoder_dims": encoder_dims,
            "npoints": npoints,
        },
    }
    if dropped:
        notes.append(f"dropped {len(dropped)} pretraining-only tensors (decoder, mask token)")
    return tensors, config, notes


def write_folder(folder, tensors, config, metadata=None):
    """Writes config.json and model.safetensors into `folder` (created if needed)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt", **(metadata or {})})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="official Point-MAE .pth (fine-tuned or pretrained)")
    parser.add_argument("out", help="model folder to write")
    parser.add_argument("--num-heads", type=int, default=None, help="default trans_dim / 64")
    parser.add_argument("--group-size", type=int, default=32)
    parser.add_argument("--num-group", type=int, default=64)
    parser.add_argument("--npoints", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0, help="for cls_token/cls_pos when absent")
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    tensors, config, notes = convert(
        state_dict_of(checkpoint), args.num_heads, args.group_size, args.num_group, args.npoints,
        args.seed)
    write_folder(args.out, tensors, config, {"source": pathlib.Path(args.checkpoint).name})
    for note in notes:
        print("note:", note, file=sys.stderr)
    print(f"wrote {len(tensors)} tensors and config {json.dumps(config['model_args'])} "
          f"(num_classes {config['num_classes']}) to {args.out}")


if __name__ == "__main__":
    main()
