"""BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE per variant agree with pycocoevalcap's own scorers called
directly on the same tokenized input; a metric that cannot be computed is null with its reason."""
import contextlib
import io

import pytest

from tests.results_factory import references, tiny_config
from vlmbench.results.summary import SummaryTokens
from vlmbench.scoring import caption_metrics as cm
from vlmbench.scoring.metrics import cider_from_tokens, java_available, tokenize_for_scoring

IMAGES = 12


@pytest.fixture(scope="module")
def scored():
    """Tokenized references of 12 images and two variants' tokenized captions (int8 changes five of them)."""
    refs = references(IMAGES)
    captions = {"fp16": {i: r[0] for i, r in refs.items()},
                "int8": {i: (f"A shape, number {i}." if i <= 5 else r[0]) for i, r in refs.items()}}
    ref_tokens, caption_tokens, done = tokenize_for_scoring({i: r[1:] for i, r in refs.items()}, captions, "ptb-python")
    return SummaryTokens(ref_tokens, caption_tokens, done.tokenizer)


def _entries(tokens):
    return {v: {"cider": cider_from_tokens(tokens.references, c)[0], "cider_ci": None} for v, c in tokens.captions.items()}


def test_bleu_rouge_and_cider_agree_with_pycocoevalcap_called_directly(scored, tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    metrics, info = cm.caption_metrics(_entries(scored), scored, tiny_config(tmp_path, IMAGES))
    assert info["images"] == IMAGES and info["tokenizer"] == "ptb-python"
    for variant, preds in scored.captions.items():
        with contextlib.redirect_stdout(io.StringIO()):
            bleu, _ = Bleu(4).compute_score(scored.references, preds)
        found = metrics[variant]
        assert [found[f"BLEU-{n}"] for n in range(1, 5)] == pytest.approx(bleu, abs=0, rel=1e-12)
        assert found["ROUGE-L"] == pytest.approx(Rouge().compute_score(scored.references, preds)[0], rel=1e-12)
        assert found["CIDEr-D"] == pytest.approx(Cider().compute_score(scored.references, preds)[0], rel=1e-12)
        assert found["ROUGE-L_ci"]["point"] == pytest.approx(found["ROUGE-L"])  # the interval is of the mean reported
        for n in range(1, 5):  # corpus BLEU recomputed from summed counts: its full-set value is pycocoevalcap's
            ci = found[f"BLEU-{n}_ci"]
            assert ci["point"] == pytest.approx(bleu[n - 1], rel=1e-9) and ci["low"] <= ci["point"] <= ci["high"]
        assert found["METEOR_ci"] is None and found["METEOR_ci_null_reason"] == "METEOR is null"
        assert found["METEOR"] is None and found["METEOR_null_reason"].startswith("quality.meteor is false")
    assert "not the mean of per-image scores" in cm._interval_reason("METEOR", 0.5)  # computed: still no interval
    assert metrics["int8"]["BLEU-4"] < metrics["fp16"]["BLEU-4"] and metrics["int8"]["ROUGE-L"] < metrics["fp16"]["ROUGE-L"]


@pytest.mark.skipif(not java_available(), reason="METEOR needs Java")
def test_meteor_agrees_with_pycocoevalcap_meteor_on_the_same_input(scored):
    """The one test that starts METEOR's JVM (5-20 s: it loads a 60 MB paraphrase table)."""
    with cm.JavaScorers(meteor_enabled=True) as java:
        found = {v: cm.score_variant(scored.references, preds, None, java)[0] for v, preds in scored.captions.items()}
        direct = {v: java._meteor.compute_score(scored.references, preds)[0] for v, preds in scored.captions.items()}
    for variant in scored.captions:
        assert found[variant]["METEOR"] == direct[variant] and 0 < direct[variant] <= 1
    assert found["int8"]["METEOR"] < found["fp16"]["METEOR"]


def test_spice_without_its_corenlp_jars_is_null_with_the_reason_and_nothing_is_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(cm.shutil, "which", lambda name: "/usr/bin/java")
    import pycocoevalcap.spice.spice as spice
    monkeypatch.setattr(spice, "__file__", str(tmp_path / "spice.py"))  # a pycocoevalcap whose spice/lib lacks them
    reason = cm.spice_unavailable_reason()
    assert "stanford-corenlp-3.6.0.jar" in reason and "does not" in reason and not (tmp_path / "lib").exists()


def test_no_java_leaves_meteor_and_spice_null_with_the_reason(monkeypatch):
    monkeypatch.setattr(cm.shutil, "which", lambda name: None)
    assert "java is not on the PATH" in cm.meteor_unavailable_reason(True)
    assert "java is not on the PATH" in cm.spice_unavailable_reason()


def test_a_failing_scorer_leaves_that_metric_null_and_the_others(scored, monkeypatch):
    def broken(self, refs, preds):
        raise BrokenPipeError("the JVM died")
    monkeypatch.setattr(cm, "meteor_unavailable_reason", lambda enabled: None)
    monkeypatch.setattr(cm.JavaScorers, "meteor", broken)
    with cm.JavaScorers(meteor_enabled=True) as java:
        values, _ = cm.score_variant(scored.references, scored.captions["fp16"], 2.0, java)
    assert values["METEOR"] is None and values["METEOR_null_reason"] == "scoring failed: BrokenPipeError: the JVM died"
    assert values["BLEU-4"] > 0 and values["ROUGE-L"] > 0 and values["CIDEr-D"] == 2.0


@pytest.mark.skipif(not java_available(), reason="needs a java that starts and exits")
def test_a_meteor_jvm_that_exits_leaves_meteor_null_with_the_reason_and_nothing_hangs(scored, monkeypatch):
    import pycocoevalcap.meteor.meteor as meteor_module
    monkeypatch.setattr(meteor_module, "METEOR_JAR", "no-such-meteor.jar")  # java starts, cannot open it, exits
    with cm.JavaScorers(meteor_enabled=True) as java:
        values, _ = cm.score_variant(scored.references, scored.captions["fp16"], 2.0, java)
        # the next variant: pycocoevalcap's Meteor kept its lock from the failed call, which hung this one
        after, _ = cm.score_variant(scored.references, scored.captions["fp16"], 2.0, java)
    assert values["METEOR"] is None and values["ROUGE-L"] > 0
    assert values["METEOR_null_reason"].startswith("scoring failed: RuntimeError: METEOR's JVM exited with status 1")
    assert after["METEOR"] is None and after["METEOR_null_reason"].startswith("METEOR stopped on an earlier variant")


def test_corpus_bleu_from_summed_counts_is_pycocoevalcaps_bleu_also_with_a_brevity_penalty(scored):
    """The statistic the BLEU interval resamples: on the whole set (and on a subset with short captions, where
    the brevity penalty applies) it equals Bleu(4) on those images."""
    from pycocoevalcap.bleu.bleu import Bleu
    short = {i: [" ".join(c[0].split()[:3])] for i, c in scored.captions["fp16"].items() if i % 2}
    for preds in (scored.captions["int8"], short):
        refs = {i: scored.references[i] for i in preds}
        with contextlib.redirect_stdout(io.StringIO()):
            expected, _ = Bleu(4).compute_score(refs, preds)
        assert list(cm.corpus_bleu(cm.bleu_statistics(refs, preds).sum(axis=0))) == pytest.approx(expected, rel=1e-9)
