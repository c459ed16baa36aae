"""CIDEr, with the official implementation, over one image set common to all variants.

Why it exists: CIDEr-D's document frequencies come from the set being scored, so two variants are
comparable only on the same images. This module picks that set, tokenizes with the official PTB
tokenizer (Java, bundled with pycocoevalcap) or, without Java, a Java-free re-implementation of it
(`vlmbench.ptb`), and scores with pycocoevalcap's `Cider`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass

from vlmbench.ptb import PTB_PUNCTUATION, tokenize_lines  # noqa: F401  (PTB_PUNCTUATION re-exported)

# The official pipeline lower-cases (PTBTokenizer -lowerCase) before it drops PTB_PUNCTUATION, whose
# bracket entries are upper case: brackets survive as the tokens -lrb-/-rrb- (and -lsb-, -lcb-, ...).
PYTHON_TOKENIZER = "ptb-python"
TOKENIZER_ALIASES = {"nltk-treebank": PYTHON_TOKENIZER}  # the name of the Java-free path before vlmbench.ptb


@dataclass
class CiderResult:
    score: float
    per_image: dict
    tokenizer: str


def java_available() -> bool:
    return shutil.which("java") is not None


# characters Java may treat as line ends: one would shift every later caption onto the wrong image
_LINE_BREAKS = str.maketrans({c: " " for c in "\r\n\x0b\x0c\x85\u2028\u2029"})


def tokenize_ptb_java(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """pycocoevalcap's PTBTokenizer, with line-break characters made spaces and alignment checked."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    clean = {k: [{"caption": c.translate(_LINE_BREAKS)} for c in v] for k, v in captions.items()}
    result = PTBTokenizer().tokenize(clean)
    if any(len(result.get(k, [])) != len(v) for k, v in captions.items()):
        raise RuntimeError("the PTB tokenizer returned a different number of captions than it was given")
    return result


def tokenize_python(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """The Java-free tokenizer (vlmbench.ptb) on captions in pycocoevalcap's order: one call, one file."""
    lines = [c for v in captions.values() for c in v]
    tokens = iter(tokenize_lines(lines))
    return {k: [next(tokens) for _ in v] for k, v in captions.items()}


tokenize_nltk = tokenize_python  # the old name


def tokenize(captions: dict[int, list[str]], prefer: str = "auto") -> tuple[dict[int, list[str]], str]:
    """Tokenized captions and the tokenizer's name ('ptb-java' or 'ptb-python').

    `prefer`: 'auto' (Java when `java` is on the PATH), 'ptb-java', 'ptb-python' (or its old name
    'nltk-treebank').
    """
    prefer = TOKENIZER_ALIASES.get(prefer, prefer)
    if prefer == "ptb-java" or (prefer == "auto" and java_available()):
        return tokenize_ptb_java(captions), "ptb-java"
    return tokenize_python(captions), PYTHON_TOKENIZER


def cider(references: dict[int, list[str]], predictions: dict[int, str], prefer: str = "auto") -> CiderResult:
    """CIDEr-D of `predictions` (one caption per image) against `references`, on the predictions' images."""
    from pycocoevalcap.cider.cider import Cider
    ids = sorted(predictions)
    if not ids:
        raise ValueError("no predictions to score")
    refs, name = tokenize({i: list(references[i]) for i in ids}, prefer)
    preds, _ = tokenize({i: [predictions[i]] for i in ids}, prefer)
    score, scores = Cider().compute_score(refs, preds)
    return CiderResult(float(score), {i: float(s) for i, s in zip(ids, scores)}, name)


def common_image_set(ok_ids_by_variant: dict[str, set[int]]) -> set[int]:
    """The images every variant captioned successfully."""
    sets = list(ok_ids_by_variant.values())
    return set.intersection(*sets) if sets else set()
