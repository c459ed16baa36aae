"""A Java-free PTB tokenizer that gives the same tokens as the official CIDEr pipeline.

Why it exists: pycocoevalcap tokenizes with Stanford CoreNLP 3.4.1's PTBTokenizer (Java,
`-preserveLines -lowerCase`) and then drops the tokens in its PUNCTUATIONS list. Without Java,
vlmbench must produce the same token lists, or CIDEr-D moves. nltk's Treebank tokenizer gets human
COCO captions mostly right but not what models write: curly apostrophes ("man’s" -> "man 's"), en
and em dashes, the ellipsis character, double periods ("tree.." lost "tree"), periods between
sentences, abbreviations ("st.", "mr."). This module re-implements the part of PTBLexer that caption
text reaches, as a longest-match scanner over ordered patterns (the JFlex rule that PTBLexer uses:
the longest match wins, ties go to the earlier pattern), with the lexer's normalisations.

Behaviour reproduced (checked against the jar, see tests/test_ptb.py and tests/data/):
- lower-casing happens on the output tokens; punctuation is dropped afterwards with pycocoevalcap's
  case-sensitive list, so brackets survive as `-lrb-`/`-rrb-`, `-lsb-`/`-rsb-`, `-lcb-`/`-rcb-`;
- clitics split ('s 'm 'd 're 've 'll n't, curly or straight, written "'s"; "cannot" -> "can not");
  a curly apostrophe inside a word stays ("o’clock"); a lone quote of any kind is dropped;
- en and em dashes and the horizontal bar become "--" (dropped); the figure dash is untokenizable
  there and separates words; "…" and runs of 3+ periods become "...";
- a period ends a word unless the word is a known abbreviation (ABBREVIATIONS), an acronym ("u.s.",
  "p.m."), "no." before a number, a single letter not followed by a sentence start (SENTENCE_STARTS,
  looked for across the line end too), or a word followed by ",;:" ("bat.," -> "bat." ",");
- "!!", "?!" stay tokens (only "!" and "?" are in the drop list); "€" -> "$", "£" -> "#",
  "¢" -> "cents", vulgar fractions -> "1/2"; control and zero-width characters separate tokens;
- Unicode as the jar reads it (stanfordnlp/CoreNLP#1281): a soft hyphen is removed from its word;
  characters beyond U+FFFF (emoji, skin tones, flags, the parts of ZWJ sequences) and combining marks
  outside the lexer's LETTER class (U+FE0F, the keycap U+20E3) are deleted and separate words; decomposed
  accents and the LETTER class's other marks stay in their word, undecomposed ("cafe\u0301").
Known differences (rare in captions): smileys, "x..y" inside a word, "y'all", "cat's-eye", a combining
mark after a digit, letters of scripts newer than the jar's Unicode (Python's counts them as letters).
"""
from __future__ import annotations

import re
import unicodedata

# pycocoevalcap's list (tokenizer/ptbtokenizer.py), compared with the lower-cased tokens as it does
PTB_PUNCTUATION = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                             "-", "--", "...", ";"})

# Abbreviations that keep their period in CoreNLP 3.4.1 (measured on the jar, case-insensitive)
ABBREVIATIONS = ("mr mrs ms dr prof st ave blvd rd jr sr co corp inc ltd vs etc cf al ft mt jan feb mar apr aug "
                 "sept sep oct nov dec mon tue wed thu fri gov gen capt lt col sgt rev hon pres messrs mme mlle "
                 "esq ph bros dept univ assn intl est ext sq tel "
                 "ala ariz calif colo conn ct dak fla ga ind kan kans ky md mich minn mo mont neb nev okla penn tenn "
                 "va vt wis wyo").split()
# US states whose abbreviation is also an English word keep their period only when capitalised ("Pa.", "PA.")
CAPITALISED_ABBREVIATIONS = "Ark Del Ill La Mass Miss Ore Pa Tex Wash".split()

# A single letter keeps its period ("j. smith") unless the next word (on this line or the next) is one of
# these, which the 3.4.1 lexer takes as the start of a new sentence (measured on the jar, case-sensitive)
SENTENCE_STARTS = ("A An The THE In At There This That These It He She We They Her Our Their What When But Or So "
                   "Some Two If As Shall However Since While After Here Now Such Once Then You Last Other").split()

# Characters beyond [:letter:] that the lexer's LETTER class adds (CoreNLP's PTBLexer.flex; checked on the
# 3.4.1 jar): the soft hyphen, which it then removes from the word ("pic\u00adture" -> "picture"), and
# modifier letters, combining diacritics (decomposed accents: "cafe\u0301" stays one word, undecomposed)
# and the vowel signs and points of Greek, Cyrillic, Armenian, Hebrew, Arabic, Syriac, Thaana, N'Ko,
# Devanagari, Bengali, Gurmukhi, Gujarati, Tamil, Telugu, Malayalam, Thai and Lao.
JAR_LETTERS = ("\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f\u0370-\u037d\u0384\u0385"
               "\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff\u0510-\u0525\u055a-\u055f\u0591-\u05bd"
               "\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef"
               "\u06fa-\u06ff\u070f\u0711\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903"
               "\u093c\u093e-\u094e\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8\u09cb-\u09cd"
               "\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82\u0bbe-\u0bc2"
               "\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a"
               "\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd"
               "\u1885\u1886")  # letters in the Unicode of the jar's JFlex, marks (Mn) since Unicode 9
_JAR_LETTER = re.compile("[%s]" % JAR_LETTERS)
SOFT_HYPHEN = "\u00ad"

_CHAR_MAP = {"\u2012": " ", "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ",
             "\u2026": " ... ", "\u20ac": "$", "\u00a3": "#", "\u00a2": " cents ", "\u00bc": "1/4", "\u00bd": "1/2",
             "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_SINGLE = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-", '"': "''",
           "\u201c": "``", "\u201d": "''", "\u00ab": "``", "\u00bb": "''", "\u2018": "`", "\u2019": "'",
           "\u2039": "`", "\u203a": "'"}
_APOS = "'\u2019\u2018"
_SPECIAL_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                  "wanna": ("wan", "na"), "gimme": ("gim", "me"), "lemme": ("lem", "me"),
                  "'tis": ("'t", "is"), "'twas": ("'t", "was")}
_CLITIC = re.compile(r"(?i)^(.+?)(n[%s]t|[%s](?:s|m|d|re|ve|ll))$" % (_APOS, _APOS))



def _not_alnum(ranges: str) -> str:
    """The characters of a character-class body (`a-z` ranges allowed) that `[^\\W_]` does not match,
    as a class body. Keeping the two alternatives of _ALNUM disjoint keeps the regex linear: with a
    character that both match (Thai vowels), `(?:a|b)+` backtracked exponentially on a long word
    (40 repeats of one Thai word took minutes; seen on an H200 run's random-weight captions)."""
    chars, i = [], 0
    while i < len(ranges):
        if i + 2 < len(ranges) and ranges[i + 1] == "-":
            chars.extend(chr(c) for c in range(ord(ranges[i]), ord(ranges[i + 2]) + 1))
            i += 3
        else:
            chars.append(ranges[i])
            i += 1
    return "".join(re.escape(c) for c in chars if not re.match(r"[^\W_]", c))


_ALNUM = r"(?:[^\W_]|[%s])+" % _not_alnum(JAR_LETTERS)  # letters and digits, with the lexer's extra letters
_WORD = _ALNUM + r"(?:(?:[-/%s]|\.(?=[^\W\d_]))" % _APOS + _ALNUM + r")*"
# (name, pattern) in priority order for ties; the longest match at a position wins
_PATTERNS = [(name, re.compile(pattern)) for name, pattern in (
    ("sgml", r"</?[A-Za-z][^<>\s]*>"),
    ("abbrev", r"(?:(?i:" + "|".join(ABBREVIATIONS) + r")|" + "|".join(f"{w[0]}(?i:{w[1:]})" for w in
                                                                   CAPITALISED_ABBREVIATIONS) + r")\."),
    ("initial", r"[A-Za-z]\.(?!\s+(?:" + "|".join(SENTENCE_STARTS) + r")(?![^\W_]))"),
    ("number_abbrev", r"(?i:nos?)\.(?=\s*\d)"),
    ("hashtag", r"#[^\W\d_][^\W_]*"),
    ("email", r"(?:[^\W_]+(?:\.[^\W_]+)*)?@[^\W\d_][^\W_]*(?:\.[^\W_]+)*"),
    ("symbol_run", r"\*+|_+|#+|@+"),
    ("acronym", r"[A-Za-z](?:\.[A-Za-z])+\.?"),
    ("number", r"[-+]?(?:\d+(?:[.,:/]\d+)*|\.\d+)"),
    ("apos_word", r"'(?i:tis|twas)(?![^\W_])|[%s](?:\d+[sS]?|n[%s])(?![^\W_])" % (_APOS, _APOS)),
    ("amp", r"[A-Z]+&[A-Z]+"),
    ("word", _WORD),
    ("word_dot", _WORD + r"\.(?=[,;:])"),  # "bat.," -> "bat." ","
    ("dashes", r"-{2,}"),
    ("dots", r"\.+"),
    ("marks", r"[!?]+"),
    ("other", r"\S"),
)]


def normalize(text: str) -> str:
    """The lexer's character normalisations; what it cannot tokenize separates words (a space here)."""
    out = []
    for ch in text:
        ch = _CHAR_MAP.get(ch, ch)
        if len(ch) == 1 and ch not in " \t" and _untokenizable(ch):
            ch = " "
        out.append(ch)
    return "".join(out)


def _untokenizable(ch: str) -> bool:
    """Characters the 3.4.1 lexer deletes, so that they separate words (measured on the jar): control,
    format and separator characters (the zero-width joiner of emoji sequences too), combining marks
    outside JAR_LETTERS (the variation selector U+FE0F of "\u2764\ufe0f", the keycap U+20E3), and every
    character beyond U+FFFF (emoji, skin tones, flags, mathematical letters: its JFlex scanner reads UTF-16
    units and matches no surrogate). The soft hyphen is a letter there (JAR_LETTERS)."""
    if ord(ch) > 0xFFFF:
        return True
    category = unicodedata.category(ch)
    return (category[0] in "CZM") and not _JAR_LETTER.match(ch)


_PLAIN_WORD = re.compile(r"[^\W\d_]+(?=\s|$)")  # letters up to a space: no other pattern can match longer


def _longest_match(text: str, pos: int) -> tuple[str, str]:
    plain = _PLAIN_WORD.match(text, pos)
    if plain:
        return "word", plain.group()
    best_name, best = "other", text[pos]
    for name, pattern in _PATTERNS:
        match = pattern.match(text, pos)
        if match and len(match.group()) > len(best):
            best_name, best = name, match.group()
    return best_name, best


def _emit(kind: str, token: str) -> list[str]:
    """The PTB tokens (before lower-casing) of one scanned piece; soft hyphens removed, as the lexer does."""
    return [t for t in (t.replace(SOFT_HYPHEN, "") for t in _emit_raw(kind, token)) if t]


def _emit_raw(kind: str, token: str) -> list[str]:
    if kind in ("word", "apos_word") and token.lower() in _SPECIAL_WORDS:
        return list(_SPECIAL_WORDS[token.lower()])
    if kind == "word_dot":
        return _emit_raw("word", token[:-1])[:-1] + [_emit_raw("word", token[:-1])[-1] + "."]
    if kind == "word":
        clitic = _CLITIC.match(token)
        return [clitic.group(1), re.sub("[%s]" % _APOS, "'", clitic.group(2))] if clitic else [token]
    if kind == "dashes":
        return ["--"]
    if kind == "dots":
        return ["..."] if len(token) >= 3 else ["."] * len(token)
    if kind == "other":
        return [_SINGLE.get(token, token)]
    return [token]


def ptb_tokens(text: str, following: str = "") -> list[str]:
    """PTB tokens of one caption, lower-cased, before punctuation is dropped.

    `following` is the next caption of the same tokenizer call (pycocoevalcap writes them one per
    line into one file): the lexer looks past the line end, so "Team B." keeps its period before a
    line starting "Street ..." and loses it before one starting "A ..." (see SENTENCE_STARTS).
    """
    text = normalize(text)
    end, pos, tokens = len(text), 0, []
    if following:
        text += "\n" + normalize(following).lstrip()[:12]
    while pos < end:
        if text[pos].isspace():
            pos += 1
            continue
        kind, piece = _longest_match(text, pos)
        tokens += _emit(kind, piece)
        pos += len(piece)
    return [t.lower() for t in tokens]


def tokenize_line(text: str, following: str = "") -> str:
    """What pycocoevalcap's PTBTokenizer makes of one caption: tokens joined by spaces, punctuation dropped."""
    return " ".join(t for t in ptb_tokens(text, following) if t not in PTB_PUNCTUATION)


def tokenize_lines(lines: list[str]) -> list[str]:
    """tokenize_line for each caption of one tokenizer call, in the order pycocoevalcap writes them."""
    return [tokenize_line(line, lines[i + 1] if i + 1 < len(lines) else "") for i, line in enumerate(lines)]
