"""vlmbench reproduces a published CIDEr: the COCO caption evaluation demo's 1000 val2014 captions.

../shared/external-captions (README there) holds the demo's "fakecap" captions, their 5005
references and both after the official tokenizer. Published: CIDEr 0.600 (demo notebook), 0.5998
(multicaptioneval's README); pycocoevalcap 1.2 with the Java tokenizer measured 0.5997905.
"""
import json

import pytest

from vlmbench.scoring.metrics import cider, java_available, tokenize_ptb_java, tokenize_python

PUBLISHED_CIDER = 0.5997905185184199  # pycocoevalcap 1.2 + Java PTB tokenizer; published as 0.600 / 0.5998


@pytest.fixture(scope="module")
def external(shared):
    path = shared / "external-captions"
    if not path.is_dir():
        pytest.skip(f"{path} not found (set VLMBENCH_SHARED)")
    refs = {}
    for ann in json.loads((path / "multicaptioneval_en_captions_val2014.json").read_text())["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    results = json.loads((path / "coco-caption_captions_val2014_fakecap_results.json").read_text())
    tokenized_file = path / "multicaptioneval_en_captions_val2014_references_after_tokenization.json"
    tokenized = json.loads(tokenized_file.read_text())
    return refs, {r["image_id"]: r["caption"] for r in results}, {int(k): v for k, v in tokenized.items()}


@pytest.mark.skipif(not java_available(), reason="Java is needed for the official PTB tokenizer")
def test_java_path_reproduces_the_published_cider_exactly(external):
    refs, preds, tokenized = external
    result = cider(refs, preds, "ptb-java")
    assert result.tokenizer == "ptb-java" and len(result.per_image) == 1000
    assert result.score == pytest.approx(PUBLISHED_CIDER, abs=1e-12)
    assert round(result.score, 3) == 0.600 and round(result.score, 4) == 0.5998
    ids = sorted(preds)
    assert tokenize_ptb_java({i: refs[i] for i in ids}) == {i: tokenized[i] for i in ids}


def test_java_free_path_is_within_its_tolerance(external):
    refs, preds, tokenized = external
    ids = sorted(preds)
    ours = tokenize_python({i: refs[i] for i in ids})
    same = sum(a == b for i in ids for a, b in zip(ours[i], tokenized[i], strict=True))
    assert same == 5005, f"{same} of 5005 reference token lists identical"  # measured: 5005 of 5005
    score = cider(refs, preds, "ptb-python").score
    assert abs(score - PUBLISHED_CIDER) / PUBLISHED_CIDER < 0.001  # measured: 0.5997905185184199, identical
