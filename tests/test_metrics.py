"""CIDEr agrees with pycocoevalcap called directly; the Java-free tokenizer agrees with the official one."""
import json
import random

import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vlmbench.scoring.metrics import cider, common_image_set, java_available, tokenize_nltk

needs_java = pytest.mark.skipif(not java_available(), reason="Java is needed for the official PTB tokenizer")


@pytest.fixture(scope="module")
def references(coco_sample):
    data = json.loads((coco_sample / "annotations" / "captions_val2017.json").read_text())
    refs = {}
    for ann in data["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    return refs


def _official(refs, preds):
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs[i]] for i in preds})
    res = tok.tokenize({i: [{"caption": preds[i]}] for i in preds})
    return Cider().compute_score(gts, res)[0]


def _predictions(references, ids, shuffle):
    preds = {i: references[i][0] for i in ids}
    if shuffle:
        values = list(preds.values())
        random.Random(0).shuffle(values)
        preds = dict(zip(ids, values))
    return preds, {i: references[i][1:] for i in ids}


@needs_java
@pytest.mark.parametrize("shuffle", [False, True])
def test_cider_matches_pycocoevalcap(references, shuffle):
    ids = sorted(references)[:300]
    preds, refs = _predictions(references, ids, shuffle)
    ours = cider(refs, preds, prefer="ptb-java")
    assert ours.tokenizer == "ptb-java"
    assert ours.score == pytest.approx(_official(refs, preds), rel=1e-9)
    assert (ours.score > 0.5) != shuffle  # a human caption scores high, a shuffled one near zero


def test_cider_on_one_image_is_zero_by_construction(references):
    """pycocoevalcap's document frequencies come from the scored set: one image alone scores 0."""
    i = sorted(references)[0]
    assert cider({i: references[i][1:]}, {i: references[i][0]}, prefer="nltk-treebank").score == 0.0


@needs_java
def test_java_free_tokenizer_agrees_with_the_official_one(references):
    from vlmbench.scoring.metrics import tokenize_ptb_java
    captions = {i: list(refs) for i, refs in references.items()}
    official, fallback = tokenize_ptb_java(captions), tokenize_nltk(captions)
    pairs = [(a, b) for i in captions for a, b in zip(official[i], fallback[i])]
    assert len(pairs) == 25014
    identical = sum(a.split() == b.split() for a, b in pairs) / len(pairs)
    assert identical >= 0.9999, f"only {identical:.2%} identical token lists"  # measured: 25,014 of 25,014
    ids = sorted(references)[:500]
    preds, refs = _predictions(references, ids, shuffle=False)
    java, python = cider(refs, preds, "ptb-java").score, cider(refs, preds, "ptb-python").score
    assert abs(java - python) / java < 0.001


@needs_java
def test_line_breaks_inside_captions_do_not_shift_images(references):
    ids = sorted(references)[:20]
    preds, refs = _predictions(references, ids, shuffle=False)
    broken = dict(preds)
    broken[ids[3]] = preds[ids[3]].replace(" ", "\u2028", 1)
    broken[ids[5]] = preds[ids[5]] + "\r"
    assert cider(refs, broken, "ptb-java").score == pytest.approx(cider(refs, preds, "ptb-java").score, rel=0.05)


def test_common_image_set():
    assert common_image_set({"a": {1, 2, 3}, "b": {2, 3, 4}}) == {2, 3}
    assert common_image_set({}) == set()
