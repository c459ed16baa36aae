"""CIDEr, with the official implementation, over one image set common to all variants.

Why it exists: CIDEr-D's document frequencies come from the set being scored, so two variants are
comparable only on the same images. This module picks that set, tokenizes with the official PTB
tokenizer (Java, bundled with pycocoevalcap) or, without Java, a Java-free re-implementation of it
(`vlmbench.scoring.ptb`), and scores with pycocoevalcap's `Cider`.

Scoring never takes the summary down with it: a Java that does not run, a read-only
pycocoevalcap install or any other tokenizer fault makes `tokenize` fall back to the Java-free
tokenizer with the reason recorded (`Tokenized.fallback_reason`); callers turn a fault in scoring
itself into a null CIDEr with the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from vlmbench.scoring.ptb import PTB_PUNCTUATION, tokenize_lines  # noqa: F401  (PTB_PUNCTUATION re-exported)

# The official pipeline lower-cases (PTBTokenizer -lowerCase) before it drops PTB_PUNCTUATION, whose
# bracket entries are upper case: brackets survive as the tokens -lrb-/-rrb- (and -lsb-, -lcb-, ...).
PYTHON_TOKENIZER = "ptb-python"
TOKENIZER_ALIASES = {"nltk-treebank": PYTHON_TOKENIZER}  # the name of the Java-free path before vlmbench.scoring.ptb

# pycocoevalcap's own command line (pycocoevalcap/tokenizer/ptbtokenizer.py), the input file appended
PTB_CLASS_AND_FLAGS = ["edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
PTB_TIMEOUT_S = 900  # 25,014 COCO captions take a few seconds; a hung JVM must not hang the summary

# The smallest common image set on which a CIDEr-D is reported (otherwise null with the reason).
# CIDEr-D weighs each n-gram by idf = log(N / df) with N the number of images scored and df the
# number of images whose references contain it (Vedantam et al., CVPR 2015, eq. 2): with N = 1 every
# idf is 0 and every caption scores 0; with small N the idf takes only N distinct values and one
# image's references reweigh every other image. Measured on COCO val2017 (a human caption against
# 4 other references, nltk tokenizer, 200 random image sets per size; all 5000 images: 0.886), mean
# (sd) of the score: 1.07 (0.49) on 2 images, 1.04 (0.31) on 5, 1.05 (0.21) on 10, 1.01 (0.15) on
# 20, 1.00 (0.11) on 50, 0.99 (0.07) on 100. Below 10 images the spread is about a third of the score or
# more, larger than the gaps between quantized variants one wants to see; from 10 on it is a fifth
# and shrinks. Scores on small sets stay biased (+10-20%) and are never comparable with published ones.
MIN_CIDER_IMAGES = 10

# Significant digits of a CIDEr-D wherever one is shown (terminal tables, summary_latest.md, report.html with
# its Pareto lines and gallery): one rounding, so that one score never reads differently in two places.
CIDER_DIGITS = 3


def cider_text(value: Optional[float]) -> str:
    """A CIDEr-D (or a difference of two) as the outputs show it, CIDER_DIGITS significant digits; 'n/a' for null."""
    return "n/a" if value is None else f"{value:.{CIDER_DIGITS}g}"


class TokenizerError(RuntimeError):
    """The PTB tokenizer (Java) did not give one tokenized line per caption."""


@dataclass
class CiderResult:
    score: float
    per_image: dict
    tokenizer: str
    fallback_reason: Optional[str] = None


@dataclass
class Tokenized:
    """Tokenized captions, the tokenizer that made them, and why the preferred one was not used."""
    captions: dict
    tokenizer: str
    fallback_reason: Optional[str] = None


def java_available() -> bool:
    return shutil.which("java") is not None


# characters Java may treat as line ends: one would shift every later caption onto the wrong image
_LINE_BREAKS = str.maketrans({c: " " for c in "\r\n\x0b\x0c\x85\u2028\u2029"})


def ptb_jar() -> Path:
    """The Stanford CoreNLP jar bundled with pycocoevalcap (only read, never written next to)."""
    from pycocoevalcap.tokenizer import ptbtokenizer
    return Path(ptbtokenizer.__file__).resolve().parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR


def _run_ptb(lines: list[str]) -> list[str]:
    """PTB-tokenized lines, one per input line; the input file lives in the temporary folder, not the jar's."""
    handle, name = tempfile.mkstemp(prefix="vlmbench-ptb-", suffix=".txt")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("\n".join(lines))
        done = subprocess.run(["java", "-cp", str(ptb_jar()), *PTB_CLASS_AND_FLAGS, name], capture_output=True,
                              cwd=tempfile.gettempdir(), timeout=PTB_TIMEOUT_S)
    finally:
        os.remove(name)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise TokenizerError(f"java exited with status {done.returncode}: {' | '.join(detail[:3]) or 'no output'}")
    return done.stdout.decode("utf-8").split("\n")


def tokenize_ptb_java(captions: dict) -> dict:
    """pycocoevalcap's PTB tokenization, with line-break characters made spaces and alignment checked.

    Same command line and punctuation removal as pycocoevalcap's PTBTokenizer, but the input file is
    written to `tempfile.gettempdir()`, so a read-only pycocoevalcap install works.
    Raises TokenizerError when Java fails or returns a different number of lines.
    """
    keys = [k for k, v in captions.items() for _ in v]
    lines = _run_ptb([c.translate(_LINE_BREAKS) for v in captions.values() for c in v])
    if len(lines) < len(keys) or any(line.strip() for line in lines[len(keys):]):
        raise TokenizerError(f"the PTB tokenizer returned {len(lines)} lines for {len(keys)} captions")
    result: dict = {k: [] for k in captions}
    for key, line in zip(keys, lines):
        result[key].append(" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION))
    return result


def tokenize_python(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """The Java-free tokenizer (vlmbench.scoring.ptb) on captions in pycocoevalcap's order: one call, one file."""
    lines = [c for v in captions.values() for c in v]
    tokens = iter(tokenize_lines(lines))
    return {k: [next(tokens) for _ in v] for k, v in captions.items()}


tokenize_nltk = tokenize_python  # the old name


def tokenize(captions: dict, prefer: str = "auto") -> Tokenized:
    """Tokenized captions: 'ptb-java' when asked or (auto) when java is on the PATH, else 'ptb-python'
    (also asked for by its old name 'nltk-treebank').

    With prefer='auto' any failure of the Java tokenizer falls back to the Java-free one with the reason
    recorded; with prefer='ptb-java' it is raised (TokenizerError, OSError), since the official one was demanded.
    """
    prefer = TOKENIZER_ALIASES.get(prefer, prefer)
    if prefer == PYTHON_TOKENIZER or (prefer == "auto" and not java_available()):
        return Tokenized(tokenize_python(captions), PYTHON_TOKENIZER)
    try:
        return Tokenized(tokenize_ptb_java(captions), "ptb-java")
    except Exception as exc:  # a stub java, no JVM, a read-only or broken pycocoevalcap, a timeout
        if prefer == "ptb-java":
            raise
        reason = f"PTB tokenizer (Java) failed, {PYTHON_TOKENIZER} used instead: {type(exc).__name__}: {exc}"
        return Tokenized(tokenize_python(captions), PYTHON_TOKENIZER, reason)


def tokenize_for_scoring(references: dict[int, list[str]], predictions: dict[str, dict[int, str]],
                         prefer: str = "auto", unscored: Optional[dict[str, dict[int, str]]] = None,
                         ) -> tuple[dict, dict[str, dict], Tokenized]:
    """References and every variant's predictions tokenized in one call, so all share one tokenizer.

    `predictions` maps variant -> image id -> caption; the references of all predicted images are
    tokenized. `unscored` (variant -> image id -> caption, ids not in that variant's `predictions`)
    joins the same call without references: captions that only drift compares. They come first in
    the tokenizer's input, because the PTB lexer looks past a line end (vlmbench.scoring.ptb.ptb_tokens), so
    every scored caption keeps the neighbour, and the tokens, it has without them.
    Returns (references, tokenized captions by variant (predictions and unscored), the Tokenized record).
    """
    unscored = unscored or {}
    ids = sorted({i for preds in predictions.values() for i in preds})
    captions = {("unscored", v, i): [c] for v, preds in unscored.items() for i, c in preds.items()}
    captions |= {("ref", i): list(references.get(i, ())) for i in ids}
    captions |= {(variant, i): [c] for variant, preds in predictions.items() for i, c in preds.items()}
    done = tokenize(captions, prefer)
    refs = {i: done.captions[("ref", i)] for i in ids}
    preds = {v: {i: done.captions[("unscored", v, i)] for i in p} for v, p in unscored.items()}
    for variant, p in predictions.items():
        preds.setdefault(variant, {}).update({i: done.captions[(variant, i)] for i in p})
    return refs, preds, done


def cider_from_tokens(refs: dict[int, list[str]], preds: dict[int, list[str]]) -> tuple[float, dict]:
    """CIDEr-D (pycocoevalcap's Cider) of tokenized predictions; (score, per-image scores)."""
    from pycocoevalcap.cider.cider import Cider
    ids = sorted(preds)
    if not ids:
        raise ValueError("no predictions to score")
    unreferenced = [i for i in ids if not refs.get(i)]
    if unreferenced:
        raise ValueError(f"{len(unreferenced)} image(s) have no reference captions (first: {unreferenced[:5]})")
    score, scores = Cider().compute_score({i: refs[i] for i in ids}, {i: preds[i] for i in ids})
    return float(score), {i: float(s) for i, s in zip(ids, scores)}


def cider(references: dict[int, list[str]], predictions: dict[int, str], prefer: str = "auto") -> CiderResult:
    """CIDEr-D of `predictions` (one caption per image) against `references`, on the predictions' images."""
    if not predictions:
        raise ValueError("no predictions to score")
    refs, preds, done = tokenize_for_scoring(references, {"": predictions}, prefer)
    score, per_image = cider_from_tokens(refs, preds[""])
    return CiderResult(score, per_image, done.tokenizer, done.fallback_reason)


def common_image_set(ok_ids_by_variant: dict[str, set[int]]) -> set[int]:
    """The images every variant captioned successfully."""
    sets = list(ok_ids_by_variant.values())
    return set.intersection(*sets) if sets else set()


def too_few_images_reason(n_images: int, captioned_by: str = "every variant") -> Optional[str]:
    """Why CIDEr-D is not reported on `n_images` common images (None when there are enough).

    `captioned_by` names who captioned them ("every variant"; drift: "this variant and the baseline").
    """
    if n_images >= MIN_CIDER_IMAGES:
        return None
    return (f"only {n_images} image(s) captioned by {captioned_by}; CIDEr-D needs at least {MIN_CIDER_IMAGES} "
            "(its idf comes from the scored set: on fewer images the score is biased and unstable)")
