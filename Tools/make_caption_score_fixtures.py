#!/usr/bin/env python3
"""Caption-metric fixture for Tests/GraftTextTests (graft score captions).

Writes, under Tests/GraftTextTests/Fixtures/captions/:
  refs.json      MSR-VTT-style references ({"videos": [...], "sentences": [{"video_id",
                 "caption", "sen_id"}]}), including one video with references but no hypothesis
  hyps.json      one hypothesis per video ([{"video_id", "caption"}])
  expected.json  the COCO scores (pycocoevalcap: PTBTokenizer, then Bleu(4), Rouge(), Cider())
                 over the videos that have a hypothesis, in hyps.json's order, with the
                 per-video ROUGE-L and CIDEr-D
  tokens.json    every caption above plus extra tokenizer cases and 400 seeded random captions
                 (all in one tokenizer run, in this order), each with the caption as the
                 PTBTokenizer wrapper returns it (Stanford CoreNLP 3.4.1, lower-cased,
                 punctuation tokens dropped, joined by spaces)

Needs `pip install pycocoevalcap` and Java (the tokenizer runs CoreNLP's jar). Run from the
repository root:  Tools/.venv/bin/python Tools/make_caption_score_fixtures.py
"""

import json
import os
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "GraftTextTests",
                   "Fixtures", "captions")

# (video id, references, hypothesis). Varied on purpose: exact matches, partial overlaps,
# near-empty hypotheses, repeated words, punctuation, contractions, numbers, hyphens, case.
VIDEOS = [
    ("video0", ["a man is playing a guitar", "a man plays the guitar on stage",
                "someone is playing an acoustic guitar", "a musician performs a song"],
     "a man is playing a guitar"),
    ("video1", ["A woman is slicing an onion.", "A woman cuts an onion with a knife.",
                "Someone is chopping vegetables in the kitchen."],
     "A woman is cutting a tomato."),
    ("video2", ["two dogs are running in a park", "dogs run on the grass",
                "a pair of dogs chase each other", "two puppies play outside",
                "dogs are playing in a field"],
     "dogs dogs dogs dogs"),
    ("video3", ["a cat is sleeping on a sofa", "a cat naps on the couch",
                "the cat is lying on a sofa"],
     "."),
    ("video4", ["He doesn't want to go, does he?", "The boy won't leave the room.",
                "A kid can't decide; he's upset!", "The child refuses to go out."],
     "the boy doesn't want to leave"),
    ("video5", ["It's a car race on a track.", "Cars are racing -- fast!",
                "a race between 10 cars", "A Formula-1 race (live)."],
     "it's a race of cars"),
    ("video6", ["a 3-year-old girl is singing", "a little girl sings a song",
                "a young girl is singing into a microphone"],
     "a girl is singing a song"),
    ("video7", ["the recipe uses 1,000 grams of flour and 2.5 cups of milk",
                "a chef mixes flour with milk", "someone bakes a cake at 5:30 pm",
                "a person is baking"],
     "a person mixes 1,000 grams of flour"),
    ("video8", ["A black-and-white movie plays.", "an old black and white film",
                "a scene from a classic movie"],
     "a black-and-white film"),
    ("video9", ["\"Look at this,\" she says.", "A woman talks to the camera...",
                "a lady is speaking", "A woman explains something?!"],
     "a woman is talking to the camera"),
    ("video10", ["Mr. Smith reads the news.", "a news anchor reads the U.S. news",
                 "a man presents the news on tv"],
     "a man reads the news"),
    ("video11", ["they're dancing at a party", "people dance together",
                 "a group of people are dancing", "we'll see them dance",
                 "I'm watching people dance"],
     "people are dancing at a party"),
    ("video12", ["a man rides a bike down a hill", "a cyclist speeds downhill",
                 "a person is riding a bicycle"],
     "a"),
    ("video13", ["the soccer player kicks the ball", "a football game is being played",
                 "players run across the field", "a man scores a goal"],
     "a soccer player kicks a ball into the goal"),
    ("video14", ["a man's hat blows away in the wind", "the wind takes a man’s hat",
                 "a hat flies off someone's head"],
     "the wind blows a man's hat away"),
    ("video15", ["a person is typing on a laptop", "someone types on a computer keyboard",
                 "hands typing on a keyboard"],
     "someone is typing on a keyboard"),
    ("video16", ["a bird is flying over the ocean", "a seagull flies above the sea",
                 "a bird soars over water", "the bird is flying"],
     "a bird is flying over the sea"),
    ("video17", ["a woman is doing yoga", "a lady stretches on a mat",
                 "a woman exercises", "someone practices yoga at home"],
     "a man is playing a guitar"),
    ("video18", ["Children play with toys; the kids' toys are colorful.",
                 "kids are playing with toys",
                 "the children's toys are on the floor"],
     "kids play with colorful toys"),
    ("video19", ["a man is cooking pasta", "a chef boils spaghetti",
                 "someone is cooking in a kitchen", "a man cooks noodles"],
     "a man is cooking pasta in a kitchen in a kitchen"),
    ("video20", ["the sun sets over the mountains", "a sunset behind mountains",
                 "a time-lapse of a sunset"],
     "the sun sets behind the mountains"),
    ("video21", ["a train arrives at the station", "a subway train stops",
                 "people wait for a train", "a train pulls into a station"],
     "a train arrives at a station"),
]

# A video with references but no hypothesis: left out of the scores (COCO scores the ids of
# the results), so graft must leave it out of CIDEr's document frequencies too.
REFERENCE_ONLY = ("video99", ["a man is playing a guitar", "a person plays music"])

# More captions for the tokenizer alone: what English captions contain.
TOKENIZER_CASES = [
    "A man (in red) is talking.",
    "He don't know; it's fine, isn't it? I'm sure they're ok & we'll see.",
    "\"Quoted\" words and 'single quotes' here...",
    "A black-and-white dog -- running - fast!",
    "It costs $5.50 or 10% of 1,000 dogs at 5:30 pm, 1/2 of 3.5.",
    "Mr. Smith and Dr. Jones in the U.S. etc.",
    "cannot gonna wanna gotta can't won't ain't",
    "Children's toys; the boys' toys; James' car.",
    "a {brace} [bracket] x*y c\\d @home #tag ~tilde ^caret = + |",
    "2nd 3rd 1990s '90s 10am 3D 4x4 mp3 e-mail re-enter co-op",
    "...and ?? !! ?! hello...world a.b.c. U.K. e.g. i.e. a.m.",
    "   leading spaces   and\ttabs  ",
    "Don't DON'T Can't I'd we've you'll She'D",
    "a man’s hat and “curly” quotes ‘single’ don’t — em-dash – en-dash café naïve",
    "a man is playing guitar.a woman sings",
    "the cat's toy is the dogs'. 'tis rock 'n' roll 'hello' he said",
    "a 3-year-old kid and 2-3 people at 9-5 in 20-30 mph",
    "numbers 1.5 .5 5. 1,000,000 -5 +5 5-year 5x 12:00:00 3rd-place",
    "well...yes wait... ok.. ok . . .",
    "A. B. c. x. plan b. I. he is a.",
    "no. 5 fig. 3 no. the no.1 choice",
    "ok!? what?! really!!! huh?",
    "I'll he'll they'd wouldn't shouldn't couldn't mustn't haven't hasn't aren't weren't wasn't",
    "let's here's there's what's who's that's where's how's",
    "'em 'cause 'til y'all o'clock gimme lemme",
    "foo-bar-baz -foo foo- --foo foo-- a--b a---b a ---- b",
    "a+b a=b 50/50 and/or AT&T a&b # 5",
    "it 's a dog and he do n't care , they 're here",
    "3 1/2 inches and ½ cup",
    "The colour of the centre is grey.",
    "a man.... ok!!! yes… no",
    "Jan. 5 in Calif. and ark. vs. Ark. at St. Louis",
    "emoji 😀 and ✓ and 5°C and ×2",
    "a woman is cutting a tomato",
    "",
    "A DOG RUNS FAST.",
    "a 2.5-inch screw at 5:30pm with a 3.5mm jack, 1.5x speed, a u.s.-based x-ray's e-mail.",
    "the dog., the cat.; 5., co-op.: and it's., fine",
    "with a. She said a. Th and a. Abc",
    "smiling :) and ;-) ok:) (ok;) :D",
    "they'reof we'llwell kids'self-driving that's2nd",
    "’90s ’em rock’n’roll ’Mr",
    "#re-enter ## ___ ** @user's a_b _a",
    "CANNOT GONNA Gonna cannotx gonnabe",
    "Y'ALL y'all O'Neill's Hawai'i",
    "the 1/2-inch pipe, 3/4 cup, 2-1/2 inches and \"3 1/2\" feet",
    "..5 ...4x4 I… a…",
    "US$ 5 and TV$",
    "THEY'RE HE'S YOU'RE it'S don'T",
    "a\x01b c\x7fd e \x02 f",
]


# Random captions from caption words, contractions, numbers, hyphenated words, abbreviations
# and sentence punctuation (seeded), so the tokenizer test covers combinations nobody wrote.
RANDOM_WORDS = ("a man woman is are playing the guitar dog dogs cat kids children people car "
                "cars in on at with of and to his her their video shows someone talking about "
                "cooking kitchen food red black white small big running walking ball game team "
                "player song music stage camera news anchor girl boy baby").split()
RANDOM_CONTRACTIONS = ["don't", "doesn't", "isn't", "aren't", "can't", "won't", "it's", "he's",
                       "she's", "they're", "we're", "I'm", "you've", "we'll", "I'd", "that's",
                       "there's", "let's", "man's", "dogs'", "kids'", "James'", "o'clock", "'90s",
                       "'em", "y'all", "rock'n'roll", "ain't", "cannot", "gonna", "wanna",
                       "Don't", "IT'S", "shouldn't've"]
RANDOM_NUMBERS = ["2", "10", "3.5", "1,000", "5:30", "1/2", "3 1/2", "-5", "+5", "2nd", "3rd",
                  "1990s", "10%", "$5", "$5.50", "5pm", "3-year-old", "2-3", "4x4", "mp3", "100",
                  "0.5", ".5", "5.", "7-11", "24/7", "#1", "No. 1", "no.", "fig. 3", "12:00:00"]
RANDOM_HYPHENATED = ["black-and-white", "e-mail", "well-known", "re-enter", "co-op", "x-ray",
                     "t-shirt", "self-driving", "high-five", "one-on-one"]
RANDOM_ABBREVIATIONS = ["Mr.", "Mrs.", "Dr.", "St.", "U.S.", "e.g.", "i.e.", "a.m.", "p.m.",
                        "etc.", "vs.", "Jr.", "Inc.", "Co.", "Jan.", "Calif.", "ark.", "Ark.",
                        "Mt.", "Ft.", "a.", "B.", "x.", "lb.", "min.", "approx.", "ph.d.", "U.K.",
                        "TV.", "dept."]
RANDOM_CAPITALS = ["A", "The", "Someone", "He", "She", "They", "It", "I", "We", "You", "Two",
                   "Three", "People", "Mr", "Dr", "US", "USA", "TV", "NBA", "OK"]


def random_caption(rng):
    pieces = []
    for _ in range(rng.randint(3, 14)):
        r = rng.random()
        if r < 0.6:
            w = rng.choice(RANDOM_WORDS)
        elif r < 0.72:
            w = rng.choice(RANDOM_CONTRACTIONS)
        elif r < 0.82:
            w = rng.choice(RANDOM_NUMBERS)
        elif r < 0.9:
            w = rng.choice(RANDOM_HYPHENATED)
        elif r < 0.95:
            w = rng.choice(RANDOM_ABBREVIATIONS)
        else:
            w = rng.choice(RANDOM_CAPITALS)
        if rng.random() < 0.08:
            w += rng.choice([",", ";", ":", "!", "?", "...", "."])
        if rng.random() < 0.03:
            w = "(" + w + ")"
        if rng.random() < 0.03:
            w = '"' + w + '"'
        pieces.append(w)
    s = " ".join(pieces)
    if rng.random() < 0.5:
        s = s[0].upper() + s[1:]
    if rng.random() < 0.6:
        s += rng.choice([".", ".", ".", "!", "?", "...", ""])
    if rng.random() < 0.1:
        s = s.upper()
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    hyp_videos = VIDEOS
    sentences = []
    for vid, refs, _ in hyp_videos + [(REFERENCE_ONLY[0], REFERENCE_ONLY[1], None)]:
        for r in refs:
            sentences.append({"video_id": vid, "caption": r, "sen_id": len(sentences)})
    refs_json = {
        "videos": [{"video_id": v, "split": "test"} for v, _, _ in hyp_videos]
        + [{"video_id": REFERENCE_ONLY[0], "split": "test"}],
        "sentences": sentences,
    }
    hyps_json = [{"video_id": v, "caption": h} for v, _, h in hyp_videos]

    tokenizer = PTBTokenizer()
    # Every caption as its own key, so each comes back tokenised on its own.
    all_captions = [s["caption"] for s in sentences] + [h for _, _, h in hyp_videos]
    all_captions += TOKENIZER_CASES
    rng = random.Random(0)
    all_captions += [random_caption(rng) for _ in range(400)]
    keyed = {i: [{"caption": c}] for i, c in enumerate(all_captions)}
    tokenized = tokenizer.tokenize(keyed)
    tokens = [{"caption": c, "tokens": tokenized[i][0]} for i, c in enumerate(all_captions)]

    # The COCO pipeline over the videos with a hypothesis, in hyps.json's order.
    gts = {v: [{"caption": r} for r in refs] for v, refs, _ in hyp_videos}
    res = {v: [{"caption": h}] for v, _, h in hyp_videos}
    gts = tokenizer.tokenize(gts)
    res = tokenizer.tokenize(res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    expected = {
        "bleu_1": bleu[0], "bleu_2": bleu[1], "bleu_3": bleu[2], "bleu_4": bleu[3],
        "rouge_l": float(rouge), "cider": float(cider),
        "videos": [v for v, _, _ in hyp_videos],
        "rouge_l_per_video": [float(x) for x in rouge_per],
        "cider_per_video": [float(x) for x in cider_per],
        "unscored_videos": [REFERENCE_ONLY[0]],
    }

    for name, obj in [("refs.json", refs_json), ("hyps.json", hyps_json),
                      ("expected.json", expected), ("tokens.json", tokens)]:
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print(json.dumps({k: expected[k] for k in
                      ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"]}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
