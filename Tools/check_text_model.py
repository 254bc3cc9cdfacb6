#!/usr/bin/env python3
"""Checks a model folder written by `graft pretrain --modality text`, independently of Graft.

    Tools/.venv/bin/python Tools/check_text_model.py OUT [--text-data DIR] [--fixture FILE]

1. Loads the folder as a Hugging Face user does: `transformers.GPT2LMHeadModel.from_pretrained`
   (config.json, model.safetensors; it fails on missing or unexpected weights) and
   `GPT2TokenizerFast.from_pretrained` (tokenizer.json), and checks that `tokenizers`'
   tokenizer.json and the vocab.json + merges.txt pair (`GPT2Tokenizer`, the slow Python one)
   encode the validation text to the same ids.
2. Recomputes the validation loss as Graft does (documents split at blank lines, each encoded
   and followed by <|endoftext|>, packed into sequences of n_positions, the remainder as one
   shorter sequence, the mean next-token loss over every predicted token) with transformers'
   logits, and prints it beside the loss Graft recorded in pretrain.json.
3. With --retrain-tokenizer, trains the `tokenizers` library's BpeTrainer on train.txt as Graft
   did (its lines, each with its newline; the run's tokenizer.vocab_size and
   tokenizer.min_frequency; <|endoftext|> first; GPT-2's byte alphabet) and compares the
   vocabulary and merges with the folder's tokenizer.json.
4. With --fixture, writes the ids of a few sentences and transformers' logits for them to a
   safetensors file; GraftTextTests compares GPT2's logits against it.
"""
import argparse
import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2LMHeadModel, GPT2Tokenizer, GPT2TokenizerFast

SENTENCES = [
    "The cat sat by the fire.",
    "A bird sang in the tree, and the dog barked at the gate.",
]


def documents(text):
    out, current = [], []
    for line in text.split("\n"):
        if line.strip() == "":
            if current:
                out.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--text-data", help="folder with validation.txt (default: the run's record)")
    ap.add_argument("--retrain-tokenizer", action="store_true")
    ap.add_argument("--fixture")
    args = ap.parse_args()
    folder = Path(args.folder)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    fast = GPT2TokenizerFast.from_pretrained(folder)
    lib = Tokenizer.from_file(str(folder / "tokenizer.json"))
    slow = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    n = model.config.n_positions
    eos = lib.token_to_id("<|endoftext|>")
    print(f"loaded {sum(p.numel() for p in model.parameters())} parameters, "
          f"vocabulary {lib.get_vocab_size()}, n_positions {n}")

    if args.text_data:
        text = (Path(args.text_data) / "validation.txt").read_text(encoding="utf-8")
        docs = documents(text)
        stream = []
        mismatched = 0
        for d in docs:
            ids = lib.encode(d).ids
            if slow.encode(d) != ids or fast.encode(d) != ids:
                mismatched += 1
            stream += ids + ([eos] if eos is not None else [])
        print(f"{len(docs)} validation documents, {len(stream)} tokens; "
              f"tokenizers / GPT2Tokenizer / GPT2TokenizerFast disagree on {mismatched}")
        total, predicted = 0.0, 0
        full = [stream[i * n:(i + 1) * n] for i in range(len(stream) // n)]
        rest = stream[len(full) * n:]
        batches = [full[i:i + 16] for i in range(0, len(full), 16)]
        if len(rest) >= 2:
            batches.append([rest])
        with torch.no_grad():
            for b in batches:
                ids = torch.tensor(b)
                loss = model(ids, labels=ids).loss.item()
                count = ids.shape[0] * (ids.shape[1] - 1)
                total += loss * count
                predicted += count
        mean = total / predicted
        record = json.loads((folder / "pretrain.json").read_text())
        graft = record["validation_loss"]
        print(f"validation loss: transformers {mean:.6f} (perplexity {math.exp(mean):.2f}), "
              f"Graft {graft:.6f}, difference {abs(mean - graft):.2e}")

    if args.retrain_tokenizer:
        settings = json.loads((folder / "pretrain.json").read_text())["settings"]
        text = (Path(args.text_data) / "train.txt").read_text(encoding="utf-8")
        ref = Tokenizer(models.BPE())
        ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=int(settings["tokenizer.vocab_size"]),
            min_frequency=int(settings["tokenizer.min_frequency"]),
            special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False)
        ref.train_from_iterator([l + "\n" for l in text.split("\n") if l], trainer=trainer)
        expected = json.loads(ref.to_str())["model"]
        written = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        print(f"retrained tokenizer: vocabulary equal {expected['vocab'] == written['vocab']} "
              f"({len(written['vocab'])} tokens), merges equal "
              f"{expected['merges'] == written['merges']} ({len(written['merges'])} merges)")

    ids = [lib.encode(s).ids for s in SENTENCES]
    length = min(len(i) for i in ids)
    ids = torch.tensor([i[:length] for i in ids])
    with torch.no_grad():
        logits = model(ids).logits
    print(f"logits of {tuple(ids.shape)} ids: max |logit| {logits.abs().max().item():.3f}")
    if args.fixture:
        save_file({"input_ids": ids.to(torch.int64), "logits": logits.contiguous()}, args.fixture)
        print(f"wrote {args.fixture}")


if __name__ == "__main__":
    main()
