#!/usr/bin/env python3
"""Writes Tests/GraftTextTests/Fixtures: a small GPT-2-style byte-level BPE tokenizer trained with
the `tokenizers` library, the library's encodings and decodings of test strings, and a
random-weight `transformers.GPT2LMHeadModel` folder with its logits and generations.

    Tools/.venv/bin/python Tools/make_text_fixtures.py

Needs torch, transformers, tokenizers and safetensors. The training text is CORPUS below, written
for this script (no outside source). Deterministic: a fixed torch seed, and the BPE trainer is
deterministic for a given text.
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "GraftTextTests",
                   "Fixtures")
EOT = "<|endoftext|>"

# Varied English prose, numbers, punctuation and a little non-Latin text, so that merges form
# across all the pre-tokenizer's classes.
CORPUS = """
A man is slicing a tomato on a wooden board in a small kitchen. The knife is sharp and the
tomato is ripe, so the slices fall cleanly to one side. Someone laughs off camera.
Two children are playing football in a park; one of them kicks the ball over the fence and
they both run after it. It's late in the afternoon and the light is golden.
A woman plays the piano while a dog sleeps under the bench. She doesn't stop when the phone
rings, and the dog doesn't wake up either. We've seen this video before, haven't we?
The weather report says it'll rain tomorrow: 12 mm in the morning, 3 mm after noon, and
temperatures between 8 and 14 degrees. They'd better bring umbrellas!
In 1969, 600 million people watched the landing on the Moon. In 2024 a video of a cat
jumping into a box was watched 3,500,000 times in a single week.
"Where are you going?" he asked. "To the market," she said, "to buy bread, cheese & olives."
The recipe needs 250 g of flour, 2 eggs, 100 ml of milk and a pinch of salt... Mix well,
then let the batter rest for 30 minutes (or longer, if you can wait).
A person is riding a bicycle down a steep hill. Another person follows on a skateboard, and a
third one films them both with a phone held at arm's length.
The orchestra tunes its instruments; the conductor raises her baton; silence falls.
Cooking, cleaning, singing, dancing, running, swimming, driving, talking, writing, reading.
The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.
Prices: $4.99, 12.50 EUR, 7% off, item #42, version 3.1.4, call 555-0100 before 9:30 a.m.
Café, naïve, résumé, façade, jalapeño, Zürich, São Paulo, Kraków, Ålesund, smörgåsbord.
日本語の文章と中文的句子 and a few emoji: 🎉 👍 🙂 🚲 🍅.
Tabs	separate	columns	here, and    runs   of spaces   appear    too.
Lines end here
and start again here.

A man and a woman are talking in a car; the car is parked near the sea and gulls fly by.
A chef is cutting onions, garlic and peppers, then frying them in a large pan with oil.
A group of people is dancing at a wedding while a band plays an old song.
Someone is explaining how to fix a flat tyre on a bicycle, step by step, with close-ups.
""" * 3

TEXTS = [
    "Hello world",
    "A man is slicing a tomato.",
    "I'm sure you're right; it's what we've said, they'll see, he'd know, don't worry.",
    "IT'S LOUD, I'M HERE, 'quoted' and rock'n'roll",
    "Café naïve résumé Zürich São Paulo Kraków",
    "e\u0301 (combining accent) vs \u00e9",
    "日本語の文章と中文的句子",
    "emoji: 🎉👍🏽 🙂 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "a  b   c    d",
    "tabs\tand\t\ttabs",
    "new\nline\n\nand\r\nwindows",
    "trailing spaces   ",
    "   leading spaces",
    " single leading space",
    "\n\n\n",
    "   ",
    "",
    "3.14159 and 1,000,000 and 2024-01-01 at 09:30",
    "numbers12345letters and x² ½ Ⅻ ٣٤ ۵",
    "Hello, world!!! ... ?! (really) [yes] {no} <tag> @user #hash $5 %",
    "Hello<|endoftext|>World",
    "<|endoftext|>",
    " <|endoftext|> spaces around <|endoftext|> ",
    "A<|endoftext|><|endoftext|>B",
    "nbsp\u00a0here and ideographic\u3000space and thin\u2009one",
    "mixed: word's 'tis o'clock ''double'' '",
    "punctuation—dashes–and “curly quotes” and ‘single’ and … ellipsis",
    "zero\u200bwidth and soft\u00adhyphen",
    "控制 \x00 nul \x07 bell \x7f del",
    "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ",
    # Long pieces: one word of 900 letters, a run of 300 spaces.
    "tomato" * 150,
    " " * 300 + "x" + "\t" * 40,
]


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=2, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CORPUS], trainer=trainer)
    return tok


def main():
    if os.path.isdir(OUT):
        for name in os.listdir(OUT):
            if name != "README.md":
                p = os.path.join(OUT, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    os.makedirs(OUT, exist_ok=True)
    tok_dir = os.path.join(OUT, "tokenizer")
    os.makedirs(tok_dir)
    tok = train_tokenizer()
    tok.save(os.path.join(tok_dir, "tokenizer.json"))
    tok.model.save(tok_dir)  # vocab.json and merges.txt

    # The other file form must give the same ids in the library too.
    other = Tokenizer(models.BPE.from_file(os.path.join(tok_dir, "vocab.json"),
                                           os.path.join(tok_dir, "merges.txt")))
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other.decoder = decoders.ByteLevel()
    other.add_special_tokens([EOT])

    byte_level = {c: b for b, c in zip(range(256), [None] * 256)}
    alphabet = bytes_to_unicode()
    vocab = tok.get_vocab()
    cases = []
    for text in TEXTS:
        enc = tok.encode(text)
        assert other.encode(text).ids == enc.ids, text
        cases.append({
            "text": text,
            "ids": enc.ids,
            "tokens": enc.tokens,
            "decoded": tok.decode(enc.ids, skip_special_tokens=False),
            "decoded_skipping_special": tok.decode(enc.ids, skip_special_tokens=True),
        })
    # Id sequences that are not whole UTF-8: lone lead bytes, truncated sequences, a stray
    # continuation byte, bytes that are never UTF-8.
    def byte_id(b):
        return vocab[alphabet[b]]
    raw = [[0xF0], [0xF0, 0x9F], [0xF0, 0x9F, 0x8E], [0xC3], [0x80], [0xFF, 0xFE], [0xE2, 0x82],
           [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xF4, 0x90, 0x80, 0x80]]
    decode_cases = []
    for seq in raw:
        ids = [vocab["A"]] + [byte_id(b) for b in seq] + [vocab["A"]]
        decode_cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with open(os.path.join(OUT, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"special_tokens": [EOT], "encode": cases, "decode": decode_cases}, f,
                  ensure_ascii=False, indent=1)

    # A tiny random GPT-2. Biases and norms are drawn too (not left at zeros and ones) so that
    # every tensor's loading is checked.
    torch.manual_seed(0)
    eot = vocab[EOT]
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=48, n_embd=32, n_layer=2,
                        n_head=4, activation_function="gelu_new", bos_token_id=eot,
                        eos_token_id=eot, initializer_range=0.2)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.1)
            elif ".ln_" in name or "ln_f" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    model_dir = os.path.join(OUT, "gpt2-tiny")
    model.save_pretrained(model_dir, safe_serialization=True)
    shutil.copy(os.path.join(tok_dir, "tokenizer.json"), model_dir)
    for extra in ["generation_config.json"]:
        p = os.path.join(model_dir, extra)
        if os.path.exists(p):
            os.remove(p)

    texts = ["A man is slicing a tomato on a board.", "Two children are playing"]
    ids = [tok.encode(t).ids for t in texts]
    length = max(len(i) for i in ids)
    pad = eot
    input_ids = torch.tensor([i + [pad] * (length - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (length - len(i)) for i in ids])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        masked = model(input_ids=input_ids, attention_mask=mask).logits
    # The language-modelling loss (labels shifted inside, padding ignored as -100) and its
    # gradients, for training through the decoder.
    labels = input_ids.masked_fill(mask == 0, -100)
    out = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {
        "input_ids": input_ids.to(torch.int64),
        "attention_mask": mask.to(torch.int64),
        "logits": logits.contiguous(),
        "masked_logits": masked.contiguous(),
        "labels": labels.to(torch.int64),
        "loss": out.loss.detach().reshape(1),
        "grad.transformer.h.0.attn.c_attn.weight":
            model.transformer.h[0].attn.c_attn.weight.grad.contiguous(),
        "grad.transformer.wte.weight": model.transformer.wte.weight.grad.contiguous(),
        "grad.transformer.h.1.ln_2.weight": model.transformer.h[1].ln_2.weight.grad.contiguous(),
    }
    model.zero_grad()
    save_file(tensors, os.path.join(OUT, "gpt2_logits.safetensors"))

    # Greedy and beam search as `generate` runs them (KV cache, early_stopping False unless
    # said). Token 566 is frequent in this model's output, so with it as end of text the beams
    # finish at different lengths and the length penalty decides between them.
    settings = [
        ("The weather report says", 1, 1.0, 16, eot, False),
        ("Two children are playing", 1, 1.0, 12, eot, False),
        ("A woman plays the piano", 1, 1.0, 12, 566, False),
        ("The weather report says", 3, 1.0, 12, eot, False),
        ("The weather report says", 4, 0.5, 12, eot, False),
        ("The weather report says", 3, 1.0, 10, 566, False),
        ("The weather report says", 2, 2.0, 10, 566, False),
        ("The weather report says", 3, 1.0, 10, 566, True),
        ("Two children are playing", 3, 1.0, 12, eot, False),
        ("A woman plays the piano", 4, 0.0, 12, 566, False),
        ("A man is slicing a tomato on a board.", 5, 1.5, 8, 449, False),
        # Cases where the stopping heuristic ends the search before the length limit (with
        # early_stopping="never" the library returns another sequence).
        ("Two children are playing", 4, 1.0, 16, 583, False),
        ("Two children are playing", 3, 2.0, 16, 566, False),
        ("A man is slicing a tomato on a board.", 2, 1.0, 16, 493, False),
    ]
    cases = []
    with torch.no_grad():
        for text, beams, penalty, new_tokens, eos, early in settings:
            prompt = tok.encode(text).ids
            out = model.generate(
                torch.tensor([prompt]), do_sample=False, num_beams=beams,
                length_penalty=penalty, max_new_tokens=new_tokens, eos_token_id=eos,
                pad_token_id=eot, early_stopping=early)
            cases.append({"prompt": prompt, "num_beams": beams, "length_penalty": penalty,
                          "max_new_tokens": new_tokens, "eos_token_id": eos,
                          "early_stopping": early, "output": out[0].tolist()})
    with open(os.path.join(OUT, "gpt2_generation.json"), "w") as f:
        json.dump(cases, f, indent=1)
    import transformers, tokenizers
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__,
          "torch", torch.__version__)


def bytes_to_unicode():
    """GPT-2's byte-to-unicode map, as in OpenAI's encoder.py."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


if __name__ == "__main__":
    main()
