"""Writes tests/data/ptb_parity_captions.json: model-style captions and the official PTB tokens of each.

Why it exists: the Java-free tokenizer (vlmbench/scoring/ptb.py) must give the official tokenizer's tokens on
what captioning models write, which human COCO captions rarely contain. The captions are written
here by hand (base sentences in the style of Qwen2.5-VL and BLIP answers) and varied with a seeded
generator, one phenomenon per variation: curly quotes and apostrophes, en/em dashes, the ellipsis
character, double periods, several sentences, abbreviations, brackets, control and zero-width
characters, digits and units, hyphens, slashes, ampersands, percent, currency, accented and
non-Latin letters, runs of spaces, tabs and newlines, markdown-like emphasis, repeated characters, and
(UNICODE_SEQUENCES) soft hyphens, emoji sequences, U+FE0F and decomposed accents.
The "ptb" field is what pycocoevalcap's PTBTokenizer (Java) returned, punctuation dropped.

    python scripts/make_ptb_parity_set.py          # needs java on the PATH
"""
from __future__ import annotations

import json
import random
from pathlib import Path

BASE = [
    "A man riding a wave on top of a surfboard.",
    "A cat is sitting on a wooden table next to a laptop.",
    "Two dogs are playing with a frisbee in the park.",
    "A plate of food with broccoli, rice and chicken.",
    "A red double decker bus driving down a city street.",
    "A woman holding an umbrella in the rain.",
    "A group of people standing around a kitchen island.",
    "The image shows a giraffe standing next to a tall tree.",
    "A close-up of a pizza with pepperoni and cheese on a tray.",
    "A young boy swinging a baseball bat at a ball.",
    "In this image, there is a train stopped at a station platform.",
    "A bathroom with a white toilet, a sink and a mirror.",
    "An airplane flying through a clear blue sky.",
    "A person skiing down a snow-covered slope.",
    "A bowl of fruit containing apples, bananas and oranges.",
    "A stop sign on the corner of a street with trees behind it.",
    "Several sheep grazing in a green field on a sunny day.",
    "A man in a suit and tie is talking on a cell phone.",
    "A living room with a couch, a coffee table and a television.",
    "A teddy bear sitting on a bed with pillows.",
    "There are three zebras walking across a dry grassland.",
    "A little girl is eating a slice of cake at a birthday party.",
    "A black and white photo of a horse pulling a cart.",
    "A motorcycle parked on the side of the road near a building.",
    "A clock tower rises above the old buildings of the town.",
    "An elephant is spraying water on itself in a river.",
    "The kitchen has stainless steel appliances and wooden cabinets.",
    "A tennis player is about to hit the ball with her racket.",
    "A herd of cows standing in a muddy field.",
    "A desk with a computer monitor, a keyboard and a mouse.",
    "A boat floating on a calm lake with mountains in the background.",
    "A hot dog with mustard and ketchup on a paper plate.",
    "A skateboarder doing a trick on a ramp at a skate park.",
    "Two people sitting on a bench looking at the ocean.",
    "A fire hydrant painted yellow on a sidewalk.",
    "A bird perched on a branch of a tree.",
    "A vase of flowers on a windowsill.",
    "Kids flying kites on a beach on a windy afternoon.",
    "A large brown bear walking through tall grass.",
    "A sandwich cut in half with lettuce and tomato.",
]

ABBREVIATED = [
    "A street sign for St. James St. on a pole.",
    "A sign that says Dr. Smith's office.",
    "Mr. and Mrs. Jones posing for a photo.",
    "A poster for a show at 8 p.m. on Sat. night.",
    "A train leaving at 7 a.m. from the station.",
    "Fruits, vegetables, bread etc. on a table.",
    "A sign for the U.S. Post Office.",
    "A truck with the logo of Acme Co. and Smith Inc. on the side.",
    "A banner reading Team A vs. Team B.",
    "Animals, e.g. cats and dogs, sleeping on a rug.",
    "A building on Main St. next to a bank.",
    "A truck parked on 5th Ave. in the snow.",
    "A shop sign reading No. 7 with a clock.",
    "A sign saying approx. 5 km to the beach.",
    "A label reading Jan. 12, 2015 on a jar.",
    "A photo of Prof. Brown and Capt. Lee.",
    "A man holding a sign that says Gen. Store.",
    "A sticker of the U.K. flag on a laptop.",
    "A box of 12 oz. coffee cups, i.e. small ones.",
    "A painting signed by J. R. Smith Jr. in the corner.",
]

NUMERIC = [
    "A price tag showing $3.50 for a pound of apples.",
    "A sign with 50% off on all items.",
    "A clock showing the time 10:30 on a wall.",
    "A scoreboard reading 3-2 in the second half.",
    "A bottle of 1.5 liters of water on a table.",
    "A cake with 1,000 sprinkles and 2 candles.",
    "A speed limit sign that says 25 mph.",
    "A jersey with the number #23 on the back.",
    "A recipe card calling for 1/2 cup of sugar and ½ teaspoon of salt.",
    "A thermometer showing 20°C on a sunny day.",
    "A TV with a 4K display and a 1080p label.",
    "A room of 3x4 meters with a 2nd floor window.",
    "A sign reading €5 per hour for parking.",
    "A price of £10 written on a chalkboard.",
    "A 2-year-old child with a 10-speed bike.",
]

SYMBOLS = [
    "A sign for Tom & Jerry's diner.",
    "A logo of AT&T on a building.",
    "A black/white cat on a sofa.",
    "A menu with burgers and/or fries.",
    "A sign that reads \"STOP\" at an intersection.",
    "A shirt that says 'I love NY' on it.",
    "An email address user@example.com on a sign.",
    "A website www.example.com printed on a truck.",
    "A board with 2+2=4 written in chalk.",
    "A sign with an arrow -> pointing left.",
    "A #hashtag written on a wall.",
    "A t-shirt with a * star * on it.",
    "A sign with the word *OPEN* in red.",
    "A bar with a | between two words.",
]

UNICODE = [
    "A café with outdoor seating in Zürich.",
    "A sign reading Straße in a German town.",
    "A naïve painting of a smiling sun.",
    "A poster with the word 東京 on it.",
    "A Pokémon toy on a shelf.",
    "A jalapeño pizza on a wooden board.",
    "A crème brûlée with a spoon.",
    "A sign that says Ελλάδα near a beach.",
    "A street in Москва covered in snow.",
    "A menu in español with tacos.",
]

# Unicode that models and OCR-heavy captions emit and the 3.4.1 lexer treats its own way (stanfordnlp/CoreNLP#1281):
# soft hyphens (removed from the word), emoji with U+FE0F, skin tones, flags, keycaps and zero-width-joiner
# sequences (characters beyond U+FFFF and the variation selector are deleted), decomposed accents and the
# combining marks of other scripts (part of the word, or deleted, depending on the lexer's LETTER class).
UNICODE_SEQUENCES = [
    "A pic\u00adture of a soft\u00adhyphen\u00ad sign.",
    "A co\u00adoperative store on Main St\u00ad. in town.",
    "A \u00ad\u00ad sign with a soft\u00ad-hyphenated word.",
    "A heart \u2764\ufe0f drawn on a wall.",
    "A red \u2764\ufe0f\u2764\ufe0f heart pair.",
    "A smiling \u263a\ufe0f face and a \u263a\ufe0e text face.",
    "A snowflake \u2744\ufe0f on a window.",
    "A family \U0001F468\u200d\U0001F469\u200d\U0001F467 emoji on a sign.",
    "A woman\u200d\u2640\ufe0f runner and a man\u200d\u2642\ufe0f cyclist.",
    "A \U0001F469\u200d\U0001F4BB at a desk.",
    "A rainbow flag \U0001F3F3\ufe0f\u200d\U0001F308 on a pole.",
    "A thumbs up \U0001F44D\U0001F3FD emoji.",
    "A flag \U0001F1FA\U0001F1F8 next to a flag \U0001F1EC\U0001F1E7.",
    "A keycap 1\ufe0f\u20e3 and a #\ufe0f\u20e3 sign.",
    "A dog \U0001F415 in the park \U0001F333.",
    "emoji\U0001F600face on a mug.",
    "(\U0001F600) in brackets.",
    "Hello\U0001F44B. A wave.",
    "A \U0001D400\U0001D401 math bold sign.",
    "A cafe\u0301 with outdoor seating.",
    "A CAFE\u0301 SIGN IN CAPITALS.",
    "A nai\u0308ve painting of a sun.",
    "Cre\u0300me bru\u0302le\u0301e with a spoon.",
    "A Poke\u0301mon toy and a jalapen\u0303o pizza.",
    "A street in Sa\u0303o Paulo and Zu\u0308rich.",
    "Tie\u0302\u0301ng Vie\u0323\u0302t on a board.",
    "A sign reading A\u030angstro\u0308m.",
    "x\u0301y and \u0301alone marks.",
    "A sign in \u0939\u093f\u0928\u094d\u0926\u0940 on a wall.",
    "A sign in \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627 on a door.",
    "A sign in \u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd near a shop.",
    "A menu in \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 on a table.",
    "A sign with x\u1ab0y and x\u1dc0y marks.",
    "A word with a combining half mark x\ufe20y.",
    "A Tibetan \u0f40\u0f71 sign and a Myanmar \u1000\u1039 sign.",
    "A word\u200dword and word\u200cword.",
    "A cat\u2060dog with a word joiner.",
    "A sign \u2122 and \u00ae logo with \u2764 love.",
]

CONTRACTIONS = [
    "It's a dog that's sitting on a man's lap.",
    "They're playing frisbee, aren't they?",
    "A woman who's holding her child's hand.",
    "I can't tell what's in the box.",
    "The dog isn't wearing a collar.",
    "A boy's bike and the girls' scooters.",
    "There's a cat that won't move from the couch.",
    "You'll see a man who'd like some pizza.",
    "We've got a train that's late.",
    "A cat, which cannot reach the shelf.",
    "A sign that says 'tis the season.",
    "A poster from the '90s on a wall.",
    "A rock 'n' roll band on a stage.",
    "A clock that shows five o'clock.",
    "A photo of O'Brien's pub.",
]


def curly(text: str, rng: random.Random) -> str:
    text = text.replace("'", "\u2019")
    if '"' in text:
        first, _, rest = text.partition('"')
        text = first + "\u201c" + rest.replace('"', "\u201d", 1)
    return text


def quote_word(text: str, rng: random.Random) -> str:
    words = text.split()
    i = rng.randrange(1, len(words))
    style = rng.choice([("\u201c", "\u201d"), ("\u2018", "\u2019"), ('"', '"'), ("'", "'"), ("\u00ab", "\u00bb")])
    words[i] = style[0] + words[i].rstrip(".,") + style[1] + ("." if words[i].endswith(".") else "")
    return " ".join(words)


def dash(text: str, rng: random.Random) -> str:
    words = text.rstrip(".").split()
    i = rng.randrange(2, len(words))
    mark = rng.choice(["\u2013", "\u2014", " \u2013 ", " \u2014 ", " - ", " -- ", "--", "\u2012", "\u2015"])
    return " ".join(words[:i]) + mark + " ".join(words[i:]) + "."


def ellipsis(text: str, rng: random.Random) -> str:
    mark = rng.choice(["\u2026", " \u2026", "...", " ...", "....", "\u2026 and more"])
    return text.rstrip(".") + mark


def double_period(text: str, rng: random.Random) -> str:
    words = text.rstrip(".").split()
    if rng.random() < 0.5:
        return " ".join(words) + rng.choice(["..", ". .", ".."])
    i = rng.randrange(2, len(words))
    return " ".join(words[:i]) + ".. " + " ".join(words[i:]) + "."


def two_sentences(text: str, rng: random.Random) -> str:
    other = rng.choice(BASE)
    joiner = rng.choice([" ", "  ", ". ", " "])
    return text.rstrip(".") + "." + joiner.rstrip(".") + other[0].lower() * 0 + other if joiner != ". " else \
        text.rstrip(".") + ". " + other


def lower_start(text: str, rng: random.Random) -> str:
    return (text[0].lower() + text[1:]).rstrip(".") + rng.choice(["", ".", " .", "!", "!!", "?", "?!", ";", ":"])


def brackets(text: str, rng: random.Random) -> str:
    words = text.rstrip(".").split()
    i = rng.randrange(1, len(words) - 1)
    open_, close = rng.choice([("(", ")"), ("[", "]"), ("{", "}"), (" (", ") "), ("(", ")")])
    return " ".join(words[:i]) + " " + open_ + " ".join(words[i:i + 2]) + close + " " + " ".join(words[i + 2:]) + "."


def control(text: str, rng: random.Random) -> str:
    ch = rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\u200b", "\ufeff", "\u00a0", "\u2009", "\u3000", "\x01"])
    words = text.split()
    i = rng.randrange(1, len(words))
    return " ".join(words[:i]) + rng.choice([ch, " " + ch, ch + " "]) + " ".join(words[i:])


def whitespace(text: str, rng: random.Random) -> str:
    words = text.split()
    seps = [rng.choice([" ", "  ", "\t", " \t ", "\n", "   ", "\r\n"]) for _ in words[1:]]
    pad = rng.choice(["", " ", "\t", "\n"])
    return pad + words[0] + "".join(s + w for s, w in zip(seps, words[1:])) + pad


def shout(text: str, rng: random.Random) -> str:
    return text.upper() if rng.random() < 0.5 else text.title()


def emphasis(text: str, rng: random.Random) -> str:
    words = text.split()
    i = rng.randrange(1, len(words))
    mark = rng.choice(["**", "*", "_", "__", "`"])
    words[i] = mark + words[i].rstrip(".,") + mark
    return " ".join(words)


def list_like(text: str, rng: random.Random) -> str:
    return rng.choice(["1. ", "- ", "* ", "Caption: ", "Answer: ", "#1 "]) + text


TRANSFORMS = [curly, quote_word, dash, ellipsis, double_period, two_sentences, lower_start, brackets, control,
              whitespace, shout, emphasis, list_like]


def captions(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    fixed = ABBREVIATED + NUMERIC + SYMBOLS + UNICODE + CONTRACTIONS
    out = list(BASE) + fixed + [curly(t, rng) for t in CONTRACTIONS + SYMBOLS[:6]]
    for transform in TRANSFORMS:
        for text in rng.sample(BASE, 12) + rng.sample(fixed, 8):
            out.append(transform(text, rng))
    out += ["", " ", "!!!!!!!!", "a a a a a a", "...", "\u2026", "1 2 3 4", "(", "--"]
    out += UNICODE_SEQUENCES  # appended last and drawing nothing from rng: the captions above stay the same
    return list(dict.fromkeys(out))


def main() -> None:
    from vlmbench.scoring.metrics import tokenize_ptb_java
    texts = captions()
    official = tokenize_ptb_java({i: [t] for i, t in enumerate(texts)})
    rows = [{"caption": t, "ptb": official[i][0]} for i, t in enumerate(texts)]
    path = Path(__file__).resolve().parents[1] / "tests" / "data" / "ptb_parity_captions.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=0) + "\n")
    print(f"{len(rows)} captions written to {path}")


if __name__ == "__main__":
    main()
