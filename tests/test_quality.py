"""Degenerate captions, bootstrap intervals, drift, the baseline setting and the bf16 variant (CPU, offline)."""
import numpy as np
import pytest

from vlmbench.scoring.bootstrap import interval, paired_difference
from vlmbench.config import ConfigError, from_plain, load_config
from vlmbench.scoring.degenerate import baseline_flag, count_degenerate, kinds_of
from vlmbench.scoring.drift import drift
from vlmbench.scoring.metrics import MIN_CIDER_IMAGES, java_available
from vlmbench.scoring.quality import add_quality, cider_drop_holds, quality_table
from vlmbench.results.summary import add_deltas
from vlmbench.quantize.variants import compute_dtype, get_variant

needs_java = pytest.mark.skipif(not java_available(), reason="Java is needed for the official PTB tokenizer")


def _row(image_id, caption, tokens=5, status="ok"):
    return {"image_id": str(image_id), "caption": caption, "generated_tokens": str(tokens), "status": status}


# ---------------------------------------------------------------- degenerate captions
@pytest.mark.parametrize("caption, tokens, expected", [
    ("", 0, ["empty"]),
    ("   \t", 1, ["empty"]),
    ("!!!!!!!!", 8, ["repeated", "no_letter"]),
    ("the the the the", 4, ["repeated"]),
    ("aaaa", 4, ["repeated"]),
    ("1 2 3 .", 4, ["no_letter"]),
    ("a red circle on the left", 40, ["hit_max_new_tokens"]),
    ("a red circle on the left", 7, []),
    ("ein großer Baum", 5, []),
    ("!", 40, ["no_letter", "hit_max_new_tokens"]),
])
def test_each_degenerate_kind(caption, tokens, expected):
    assert kinds_of(caption, tokens, 40) == expected


def test_counts_shares_and_examples_per_kind():
    rows = [_row(1, ""), _row(2, "!!!!"), _row(3, "a dog", 40), _row(4, "a cat"), _row(5, "", status="failed")]
    counts = count_degenerate(rows, 40, examples=1)
    assert counts["captioned"] == 4
    assert (counts["empty"], counts["repeated"], counts["no_letter"], counts["hit_max_new_tokens"]) == (1, 1, 1, 1)
    assert counts["degenerate"] == 3 and counts["degenerate_pct"] == 75.0
    assert counts["examples"]["repeated"] == [{"image_id": 2, "caption": "!!!!"}]


def test_forced_length_is_not_called_degenerate():
    counts = count_degenerate([_row(1, "a dog", 8), _row(2, "a cat", 8)], 8, forced_length=True)
    assert counts["hit_max_new_tokens"] == 2 and counts["degenerate"] == 0 and "note" in counts


def test_no_captioned_image_gives_null_shares_with_reason():
    counts = count_degenerate([_row(1, "", status="failed")], 8)
    assert counts["degenerate_pct"] is None and counts["degenerate_pct_null_reason"] == "no captioned image"


def test_bad_baseline_is_flagged_above_the_threshold():
    counts = count_degenerate([_row(i, "!!!!" if i < 2 else "a dog") for i in range(20)], 40)
    assert counts["degenerate_pct"] == 10.0
    assert "WARNING: baseline 'fp16' has 2 degenerate captions of 20 (10.0% > quality.degenerate_max_pct 5%" in \
        baseline_flag("fp16", counts, 5.0)
    assert baseline_flag("fp16", counts, 10.0) is None


# ---------------------------------------------------------------- bootstrap
def test_fixed_seed_gives_a_fixed_interval():
    values = np.random.default_rng(1).gamma(2.0, 0.5, size=200)
    first, again = interval(values, 1000, 0.95, seed=42), interval(values, 1000, 0.95, seed=42)
    assert first == again
    assert first.point == pytest.approx(values.mean()) and first.low < first.point < first.high
    assert interval(values, 1000, 0.95, seed=7) != first
    # the numbers of numpy's PCG64 stream for seed 42: a change of resampling method shows up here
    assert (first.low, first.high) == pytest.approx((0.84837, 1.02338), abs=1e-5)


def test_interval_width_shrinks_with_more_images():
    rng = np.random.default_rng(0)
    small, large = interval(rng.normal(1, 1, 100), seed=0), interval(rng.normal(1, 1, 10000), seed=0)
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_identical_pair_gives_a_zero_width_delta_interval():
    scores = {i: float(i % 7) / 3 for i in range(50)}
    delta = paired_difference(scores, dict(scores), seed=42)
    assert (delta.point, delta.low, delta.high) == (0.0, 0.0, 0.0) and not delta.excludes_zero


def test_paired_difference_sees_a_consistent_drop_that_unpaired_intervals_miss():
    rng = np.random.default_rng(3)
    base = {i: float(s) for i, s in enumerate(rng.gamma(2.0, 0.5, 300))}
    worse = {i: s - 0.05 for i, s in base.items()}
    delta = paired_difference(worse, base, seed=42)
    assert delta.high < 0 and delta.excludes_zero
    a, b = interval(list(worse.values()), seed=42), interval(list(base.values()), seed=42)
    assert a.high > b.low  # the two variants' own intervals overlap


def test_empty_scores_are_refused():
    with pytest.raises(ValueError, match="no per-image scores"):
        interval([])
    with pytest.raises(ValueError, match="share no scored image"):
        paired_difference({1: 1.0}, {2: 1.0})


# ---------------------------------------------------------------- drift
def _fake_score(ids):
    return float(len(ids))


# twelve captions of the kind a model writes (capitals, punctuation, clitics, brackets), none ending in a
# single letter and a period (the one place where the PTB lexer's look past the line end matters)
MODEL_CAPTIONS = ["A red circle on the left.", "Two blue squares at the top!", "a green star (small) in the middle",
                  "Three yellow triangles, side by side.", "A man's dog on a sofa...", "The cat isn't on the mat",
                  "a purple ring", "An orange cross -- near the edge", "a black heart; a white moon",
                  "\"A kite\" in the sky?", "A pink arrow pointing at St. Mark's", "a brown diamond on grey"]
OTHER_CAPTIONS = ["A red circle at the left.", "Two blue squares at the top!", "a green star in the middle",
                  "Three triangles.", "A dog on a sofa", "The cat is on the mat", "a purple ring", "a cross",
                  "a black heart and a moon", "a kite", "an arrow", "a diamond"]


def _drift_via_summary_tokens(rows, base_rows, tokenizer):
    from vlmbench.scoring.quality import drift_scorer
    from vlmbench.results.summary import tokenize_summary
    tokens = tokenize_summary({"v": rows, "base": base_rows}, {}, {}, tokenizer, {})
    return drift(rows, base_rows, drift_scorer(tokens, "v", "base"))


def test_drift_on_hand_made_caption_sets():
    base = [_row(1, "a red circle"), _row(2, "two blue squares"), _row(3, "a green star", 40), _row(4, "x")]
    variant = [_row(1, "a red circle "), _row(2, "two squares", 40), _row(3, "a big green star", 40),
               _row(4, "", status="failed")]
    out = drift(variant, base, _fake_score)
    assert out["images"] == 3
    assert out["identical_pct"] == pytest.approx(100 / 3)
    assert out["mean_words"] == pytest.approx(3.0) and out["baseline_mean_words"] == pytest.approx(3.0)
    assert out["mean_words_change"] == pytest.approx(0.0)


@pytest.mark.parametrize("images", [2, MIN_CIDER_IMAGES - 1])
def test_drift_cider_below_the_cider_minimum_is_null_with_the_reason(images):
    rows = _rows(MODEL_CAPTIONS[:images])
    out = drift(rows, rows, _fake_score)
    assert out["cider_vs_baseline"] is None and out["identical_pct"] == 100.0
    assert out["cider_vs_baseline_null_reason"].startswith(
        f"only {images} image(s) captioned by both this variant and the baseline; CIDEr-D needs at least "
        f"{MIN_CIDER_IMAGES}")


def test_drift_cider_at_the_cider_minimum_is_reported():
    rows = _rows(MODEL_CAPTIONS[:MIN_CIDER_IMAGES])
    assert drift(rows, rows, _fake_score)["cider_vs_baseline"] == MIN_CIDER_IMAGES


def test_drift_cider_against_baseline_captions_with_the_real_scorer():
    base = _rows(MODEL_CAPTIONS)
    same = _drift_via_summary_tokens(base, base, "ptb-python")
    other = _drift_via_summary_tokens(_rows(["two horses grazing in a field"] * 12), base, "ptb-python")
    assert same["identical_pct"] == 100.0 and same["cider_vs_baseline"] > 5
    assert other["identical_pct"] == 0.0 and other["cider_vs_baseline"] < 0.5


@pytest.mark.parametrize("tokenizer", ["ptb-python", pytest.param("ptb-java", marks=needs_java)])
def test_drift_from_the_summary_tokens_equals_drift_tokenized_on_its_own(tokenizer):
    """The old path: one tokenizer call per variant (metrics.cider on the raw captions)."""
    from vlmbench.scoring.metrics import cider
    rows, base = _rows(OTHER_CAPTIONS) + [_row(20, "failed", status="failed")], _rows(MODEL_CAPTIONS)
    old = drift(rows, base, lambda ids: cider({i: [MODEL_CAPTIONS[i]] for i in ids},
                                              {i: OTHER_CAPTIONS[i] for i in ids}, tokenizer).score)
    new = _drift_via_summary_tokens(rows, base, tokenizer)
    assert new == old and 0.5 < new["cider_vs_baseline"] < 5


def test_drift_against_empty_baseline_captions_is_null_with_reason():
    out = drift(_rows(["a dog"] * 12), _rows(["", " "] * 6), _fake_score)
    assert out["cider_vs_baseline"] is None
    assert "every baseline caption is empty" in out["cider_vs_baseline_null_reason"]


def test_drift_without_summary_tokens_is_null_with_the_reason():
    from vlmbench.scoring.quality import drift_scorer
    from vlmbench.results.summary import SummaryTokens
    rows = _rows(MODEL_CAPTIONS)
    failed = drift(rows, rows, drift_scorer(SummaryTokens(failure="tokenizing failed (boom)"), "v", "base"))
    assert failed["cider_vs_baseline"] is None
    assert failed["cider_vs_baseline_null_reason"] == "scoring failed: TokenizerError: tokenizing failed (boom)"
    assert "no tokenized captions" in drift(rows, rows, drift_scorer(None, "v", "b"))["cider_vs_baseline_null_reason"]


def test_drift_without_shared_images_is_null_with_reason():
    out = drift([_row(1, "a")], [_row(2, "b")], _fake_score)
    assert out["identical_pct"] is None and "no image captioned by both" in out["identical_pct_null_reason"]


# ---------------------------------------------------------------- baseline setting, bf16 variant
def test_bf16_variant_and_dtypes_never_lie():
    assert compute_dtype(get_variant("bf16"), "fp16") == "bf16"
    assert compute_dtype(get_variant("fp16"), "bf16") == "fp16"
    assert compute_dtype(get_variant("int8"), "bf16") == "bf16"
    assert not get_variant("bf16").quantized


def test_baseline_defaults_to_fp16_and_is_validated():
    assert load_config().baseline_variant == "fp16"
    with pytest.raises(ConfigError, match="config key 'baseline' names 'bf16', which is not in variants"):
        from_plain({"baseline": "bf16"})
    with pytest.raises(ConfigError, match="unknown variant"):
        from_plain({"variants": ["fp16", "bf17"]})
    cfg = from_plain({"variants": ["bf16", "int8"], "baseline": "bf16", "precision": {"language_model": "bf16"}})
    assert cfg.baseline_variant == "bf16"
    assert cfg.fingerprint == from_plain({"variants": ["bf16", "int8"], "precision": {"language_model": "bf16"},
                                          "baseline": None}).fingerprint


def test_a_contradictory_precision_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"'precision.language_model' is 'bf16', but the baseline variant 'fp16' "
                                          r"always runs in fp16.*variants: \[bf16, int8, int8_vit\], baseline: bf16"):
        from_plain({"precision": {"language_model": "bf16"}})
    from_plain({"precision": {"language_model": "bf16"}, "variants": ["fp16", "bf16"]})  # nothing quantized: fine


def test_new_keys_leave_the_fingerprint_alone():
    base = load_config()
    assert from_plain({**base.to_dict(), "baseline": "fp16", "quality": {"bootstrap_samples": 200},
                       "thresholds": {"cider_decision": "interval"}}).fingerprint == base.fingerprint
    with pytest.raises(ConfigError, match="thresholds.cider_decision"):
        from_plain({"thresholds": {"cider_decision": "maybe"}})


def test_deltas_compare_against_the_named_baseline():
    entries = {"bf16": {"cider": 1.0}, "fp16": {"cider": 0.5}, "int8": {"cider": 0.9}}
    add_deltas(entries, "bf16")
    assert "delta_vs_bf16" not in entries["bf16"]
    assert entries["fp16"]["delta_vs_bf16"]["cider"]["abs"] == pytest.approx(-0.5)
    assert entries["int8"]["delta_vs_bf16"]["cider"]["rel_pct"] == pytest.approx(-10.0)


def test_bf16_variant_loads_in_bf16_whatever_precision_says():
    from tests.conftest import TINY
    from vlmbench.config import ExperimentConfig, build
    from vlmbench.models.loading import build_processor, load_variant_model, weights_dir
    import torch
    cfg = build(ExperimentConfig, {**TINY, "variants": ["fp16", "bf16"]})
    source = weights_dir(cfg, build_processor(cfg), "cpu")
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        model = load_variant_model(cfg, get_variant(name), source, "cpu")
        assert {p.dtype for p in model.parameters()} == {dtype}


# ---------------------------------------------------------------- the summary's quality section
def _rows(captions, tokens=5):
    return [_row(i, c, tokens) for i, c in enumerate(captions)]


def test_quality_section_and_table():
    cfg = from_plain({"variants": ["fp16", "int8"], "quality": {"bootstrap_samples": 200}})
    base_scores = {str(i): float(i % 3) for i in range(6)}
    entries = {"fp16": {"cider_per_image": base_scores},
               "int8": {"cider_per_image": {k: v - 0.5 for k, v in base_scores.items()}}}
    rows = {"fp16": _rows(["!!!!"] + ["a dog"] * 5), "int8": _rows(["a cat"] * 6)}
    info = add_quality(entries, rows, cfg, None)
    assert info["baseline"] == "fp16" and "WARNING: baseline 'fp16'" in info["baseline_warning"]
    assert entries["int8"]["cider_delta_ci"]["point"] == pytest.approx(-0.5)
    assert entries["int8"]["cider_delta_ci"]["low"] == entries["int8"]["cider_delta_ci"]["high"]  # a constant shift
    assert entries["int8"]["drift"]["identical_pct"] == 0.0
    assert entries["fp16"]["drift"]["is_baseline"] and entries["fp16"]["degenerate"]["repeated"] == 1
    for name in rows:  # counted once, by vlmbench.scoring.degenerate, and shown with drift
        assert entries[name]["drift"]["hit_max_new_tokens_pct"] == entries[name]["degenerate"]["hit_max_new_tokens_pct"]
    table = quality_table({"quality": info, "variants": entries})
    assert "| int8 | " in table and "-0.5 [-0.5, -0.5] *" in table and "**WARNING: baseline" in table


@pytest.mark.parametrize("decision, shift, breached", [("point", -0.01, True), ("interval", -0.01, False),
                                                       ("interval", -0.5, True)])
def test_gate_cider_decision_point_or_interval(decision, shift, breached):
    cfg = from_plain({"thresholds": {"cider_decision": decision}, "quality": {"bootstrap_samples": 200}})
    rng = np.random.default_rng(5)
    before = {str(i): float(s) for i, s in enumerate(rng.gamma(2.0, 0.5, 200))}
    noise = rng.normal(0, 0.5, 200)
    now = {k: v + shift + n for (k, v), n in zip(before.items(), noise)}
    holds, why = cider_drop_holds({"cider_per_image": now}, {"cider_per_image": before}, cfg)
    assert holds == breached
    assert ("CI of the change" in why) == (decision == "interval")


def test_interval_plot_is_written(tmp_path):
    from vlmbench.results.report import write_interval_plot
    ci = {"point": 1.0, "low": 0.9, "high": 1.1, "confidence": 0.95, "bootstrap_samples": 200}
    summary = {"quality": {"baseline": "fp16"}, "variants": {
        "fp16": {"cider_ci": ci}, "int8": {"cider_ci": ci, "cider_delta_ci": {**ci, "point": -0.1, "low": -0.2,
                                                                              "high": 0.0}}}}
    assert write_interval_plot(summary, tmp_path) == ["cider_intervals.png"]
    assert (tmp_path / "cider_intervals.png").stat().st_size > 1000
    assert write_interval_plot({"variants": {"fp16": {"cider_ci": None}}}, tmp_path) == []


def test_a_degenerate_baseline_is_flagged_in_the_terminal_and_the_table(tmp_path, monkeypatch):
    import vlmbench.results.report as report_module
    cfg = from_plain({"variants": ["fp16", "int8"], "quality": {"bootstrap_samples": 200}})
    entries = {"fp16": {"images_captioned": 4, "images_failed": 0}, "int8": {"images_captioned": 4, "images_failed": 0}}
    rows = {"fp16": _rows(["!!!!", "", "a dog", "a cat"]), "int8": _rows(["a dog"] * 4)}
    summary = {"variants": entries, "config": cfg.to_dict(), "quality": add_quality(entries, rows, cfg, None)}
    monkeypatch.setattr(report_module, "build_summary", lambda *a, **k: summary)
    monkeypatch.setattr(report_module, "load_references", lambda *args: {})
    _, verdict = report_module.report(tmp_path, cfg, 0.0, None)
    assert "WARNING: baseline 'fp16' has 2 degenerate captions of 4 (50.0%" in verdict.text.splitlines()[-2]
    assert "**WARNING: baseline 'fp16'" in (tmp_path / "summary_latest.md").read_text()


def test_random_weights_are_degenerate_by_construction_not_a_reason_to_change_the_baseline(tmp_path, monkeypatch):
    """model.weights: random never ends a caption, so every one hits max_new_tokens: the flag says that this is
    expected and means nothing about quality, and does not send the user to bf16 (that advice is for real weights)."""
    import vlmbench.results.report as report_module
    from tests.conftest import TINY, merge
    random = from_plain(merge(TINY, {"variants": ["fp16", "int8"], "inference": {"max_new_tokens": 4},
                                     "quality": {"bootstrap_samples": 200}}))
    pretrained = from_plain({"variants": ["fp16", "int8"], "inference": {"max_new_tokens": 4},
                             "quality": {"bootstrap_samples": 200}})
    rows = {name: _rows(["token soup words"] * 4, tokens=4) for name in ("fp16", "int8")}  # all at max_new_tokens
    infos = {}
    for cfg in (random, pretrained):
        entries = {name: {"images_captioned": 4, "images_failed": 0} for name in rows}
        infos[cfg.model.weights] = add_quality(entries, rows, cfg, None), entries
    info, entries = infos["random"]
    warning = info["baseline_warning"]
    assert info["baseline_warning_kind"] == "random_weights"
    assert warning.startswith("note: baseline 'fp16' has 4 degenerate captions of 4 (100.0%")
    assert "random weights (model.weights: random), which caption nothing meaningful" in warning
    assert "degenerate by construction" in warning and "bf16" not in warning and "suspect" not in warning
    real = infos["pretrained"][0]
    assert real["baseline_warning_kind"] == "degenerate_baseline" and "the bf16 variant as baseline" in real["baseline_warning"]
    summary = {"variants": entries, "config": random.to_dict(), "quality": info}
    monkeypatch.setattr(report_module, "build_summary", lambda *a, **k: summary)
    monkeypatch.setattr(report_module, "load_references", lambda *args: {})
    _, verdict = report_module.report(tmp_path, random, 0.0, None)
    assert verdict.text.splitlines()[-1] == warning and "!" * 78 not in verdict.text  # said, not shouted
    assert "bf16" not in (tmp_path / "summary_latest.md").read_text()
    assert "degenerate by construction" in (tmp_path / "report.html").read_text()


def test_a_failing_quality_section_leaves_the_summary(monkeypatch):
    import vlmbench.scoring.quality as quality
    monkeypatch.setattr(quality, "count_degenerate", lambda *a, **k: 1 / 0)
    info = quality.add_quality_or_reason({"fp16": {}}, {"fp16": _rows(["a dog"])}, load_config(), None)
    assert info == {"baseline": "fp16", "quality_null_reason": "ZeroDivisionError: division by zero"}


def test_delta_reason_says_when_the_baseline_did_not_run():
    """`-k int8_vit` leaves fp16 without chunks: the delta's reason says so, not 'no per-image scores'."""
    from vlmbench.config import load_config
    from vlmbench.scoring.quality import add_intervals
    entries = {"int8_vit": {"cider_per_image": {"1": 1.0, "2": 0.5}}}
    add_intervals(entries, "fp16", load_config())
    assert entries["int8_vit"]["cider_delta_ci"] is None
    assert entries["int8_vit"]["cider_delta_ci_null_reason"] == "baseline 'fp16' has no finished chunk in this results folder"
