"""Writes Tests/GraftTextTests/Fixtures/bpe_trainer: what the `tokenizers` library's BpeTrainer
makes of a small corpus with GPT-2's byte-level pre-tokenizer, for BPETrainer's parity test.

    Tools/.venv/bin/python Tools/make_bpe_trainer_fixture.py

The corpus is CORPUS below, written for this script (no outside source); it is saved as
corpus.txt. Each case trains a `models.BPE()` with `pre_tokenizers.ByteLevel(add_prefix_space=
False)` and `trainers.BpeTrainer(vocab_size, min_frequency, special_tokens, initial_alphabet=
ByteLevel.alphabet())` on the corpus's lines (each with its newline, as `train_from_iterator`
is given them), and saves `<case>.json` (the library's tokenizer.json). Deterministic: the
trainer breaks ties between equal pair counts by the pair's ids.
"""

import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "GraftTextTests", "Fixtures", "bpe_trainer")

CORPUS = """The lighthouse keeper climbed the stairs at dusk, as he had done every evening for
thirty-one years. The lamp needed oil, the lens needed cleaning, and the log book needed a line:
"Wind from the north-west, sea moderate, two ships passed."
On the island there were 12 sheep, 3 goats and one very old dog called Pepper.
Pepper didn't like the stairs. She'd wait at the bottom, her tail thumping on the stone floor.

In the morning the keeper walked along the shore. He collected driftwood, counted the gulls,
and wrote down the tides: high water at 06:40, low water at 12:55, high again at 19:10.
The supply boat came on Thursdays. It brought flour, tea, lamp oil, newspapers (a week old)
and, now and then, a letter from his sister in the city.

His sister wrote about trams and markets, about the price of bread and the noise of the
streets. He wrote back about the weather, the sheep and the light. "We're both keepers," she
once wrote, "you of a lamp and I of a shop." He kept that letter in the drawer of his desk.

When the storm of '87 came, the waves broke over the lower rocks and the spray reached the
gallery, 40 metres above the sea. The keeper stayed awake for two nights. The light never
went out. Afterwards the inspectors came, measured the cracks in the wall, and said the tower
would stand for another hundred years.

Winter evenings were long. He read by the stove: books about ships, about stars, about the
men who had built the tower in 1851. He learned the names of the constellations and the
stories behind them, and on clear nights he'd step out onto the gallery to find them again.
Orion, the Plough, Cassiopeia — old friends that came back every year.

In spring the sheep had lambs, 5 of them, and Pepper watched them with great suspicion.
The keeper painted the door green, fixed the gate, and planted potatoes in the walled garden.
Life on the island was simple, but it wasn't empty. There was always something to mend,
something to count, something to write down in the book.

Café, naïve, façade: the keeper's sister liked foreign words and sent him lists of them.
He practised them aloud to the dog, who didn't seem impressed.   Tabs	and  spaces   stay.
"""

CASES = {
    # name: (vocab_size, min_frequency, special tokens)
    "vocab400": (400, 0, ["<|endoftext|>"]),
    "vocab330_min3": (330, 3, ["<|endoftext|>", "<|pad|>"]),
    "minfreq_stops": (2000, 2, []),
}


def lines(text):
    return text.splitlines(keepends=True)


def train(vocab_size, min_frequency, specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines(CORPUS), trainer=trainer)
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write(CORPUS)
    for name, (size, minimum, specials) in CASES.items():
        tok = train(size, minimum, specials)
        tok.save(os.path.join(OUT, name + ".json"))
        print(name, tok.get_vocab_size(), "tokens")


if __name__ == "__main__":
    main()
