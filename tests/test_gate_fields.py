"""The gate compares like with like: a baseline made with other result fields is refused unless allowed (issue 8.5)."""
import json

import pytest

from tests.results_factory import tiny_config, write_results
from vlmbench.config import ConfigError, load_config
from vlmbench.results.report import BaselineMismatch, check_baseline_compatible, gate, report


def _summary(cfg, cider=1.0):
    entry = {"cider": cider, "cider_images": 100, "latency_s_mean": 1.0, "throughput_img_s": 4.0}
    return {"model_id": cfg.model_id, "config": cfg.to_dict(), "variants": {"fp16": dict(entry), "int8": dict(entry)}}


def _write(tmp_path, summary):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(summary))
    return str(path)


@pytest.mark.parametrize("override, field", [
    ({"inference": {"micro_batch_size": 1}}, "inference.micro_batch_size: 1 -> 8"),
    ({"inference": {"prompt": "Caption this."}}, "inference.prompt: 'Caption this.' -> 'Describe this image"),
    ({"inference": {"img_size": 448}}, "inference.img_size: 448 -> 1024"),
    ({"model": {"revision": "abc123"}}, "model.revision: 'abc123' -> None"),
    ({"model": {"identity": "local:0123456789abcdef"}}, "model.identity: 'local:0123456789abcdef' -> None"),
])
def test_a_baseline_with_other_result_fields_is_refused_naming_them(tmp_path, override, field):
    run_cfg = load_config(overrides={"thresholds": {"default": {"throughput_drop_pct": 10}}})
    base_cfg = load_config(overrides=override)
    with pytest.raises(BaselineMismatch, match="different result fields") as caught:
        check_baseline_compatible(_summary(run_cfg), _summary(base_cfg))
    assert field in str(caught.value) and "thresholds.allow_differences" in str(caught.value)
    verdict = gate(_summary(run_cfg), _write(tmp_path, _summary(base_cfg)), run_cfg)
    assert verdict.failed and verdict.text.startswith("baseline refused") and field in verdict.text


def test_an_allowed_difference_is_compared_and_recorded(tmp_path):
    base_cfg = load_config(overrides={"inference": {"micro_batch_size": 1}})
    run_cfg = load_config(overrides={"inference": {"micro_batch_size": 8}, "thresholds": {
        "default": {"throughput_drop_pct": 10}, "allow_differences": ["inference.micro_batch_size"]}})
    verdict = gate(_summary(run_cfg), _write(tmp_path, _summary(base_cfg)), run_cfg)
    assert not verdict.failed, verdict.text
    assert verdict.allowed_differences == ["inference.micro_batch_size: 1 -> 8"]
    assert "(allowed difference) inference.micro_batch_size: 1 -> 8" in verdict.text
    # allowing one field does not allow another
    other = load_config(overrides={"inference": {"micro_batch_size": 1, "prompt": "Caption this."}})
    refused = gate(_summary(run_cfg), _write(tmp_path, _summary(other)), run_cfg)
    assert refused.failed and "inference.prompt" in refused.text and "inference.micro_batch_size: 1" not in refused.text


def test_the_summary_records_what_was_allowed(tmp_path):
    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    base_cfg = tiny_config(base_dir, 12, inference={"micro_batch_size": 1})
    write_results(base_cfg, base_dir)
    report(base_dir, base_cfg, 0.0, None, "nltk-treebank")
    baseline = str(sorted(base_dir.glob("summary_*.json"))[-1])
    run_cfg = tiny_config(run_dir, 12, thresholds={"allow_differences": ["inference.micro_batch_size"]})
    write_results(run_cfg, run_dir)
    summary, verdict = report(run_dir, run_cfg, 0.0, baseline, "nltk-treebank")
    assert not verdict.failed
    assert summary["regression_gate"]["allowed_differences"] == ["inference.micro_batch_size: 1 -> 2"]
    refused, verdict = report(run_dir, tiny_config(run_dir, 12), 0.0, baseline, "nltk-treebank")
    assert verdict.failed and "inference.micro_batch_size: 1 -> 2" in verdict.text


def test_allowed_differences_must_name_result_fields():
    with pytest.raises(ConfigError, match="names 'inference.micro_batch', which is not a result field. Did you mean "
                                          "'inference.micro_batch_size'"):
        load_config(overrides={"thresholds": {"allow_differences": ["inference.micro_batch"]}})
    with pytest.raises(ConfigError, match="'results_dir', which is not a result field"):
        load_config(overrides={"thresholds": {"allow_differences": ["results_dir"]}})


def test_vlmbench_report_allows_a_named_difference(tmp_path, capsys):
    from vlmbench.cli import main
    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    base_cfg = tiny_config(base_dir, 12, inference={"micro_batch_size": 1})
    write_results(base_cfg, base_dir)
    report(base_dir, base_cfg, 0.0, None, "nltk-treebank")
    baseline = str(sorted(base_dir.glob("summary_*.json"))[-1])
    write_results(tiny_config(run_dir, 12), run_dir)
    assert main([str(run_dir), "--baseline", baseline, "--tokenizer", "nltk-treebank"]) == 1
    assert "inference.micro_batch_size: 1 -> 2" in capsys.readouterr().out
    assert main([str(run_dir), "--baseline", baseline, "--tokenizer", "nltk-treebank",
                 "--allow-difference", "inference.micro_batch_size"]) == 0
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out  # vlmbench-report writes the page too
    page = (run_dir / "report.html").read_text()
    assert f"baseline summary: {baseline};" in page and "allowed difference: inference.micro_batch_size: 1 -&gt; 2" in page
    assert main([str(run_dir), "--baseline", baseline, "--allow-difference", "inference.micro_batch"]) == 2
    assert "Did you mean 'inference.micro_batch_size'" in capsys.readouterr().err


def _scored_with(summary: dict, tokenizer) -> dict:
    return {**summary, "cider_scoring": {"tokenizer": tokenizer}}


def test_a_baseline_scored_with_the_other_tokenizer_is_refused_unless_allowed(tmp_path):
    """CIDEr-D depended on whether Java was installed, and the gate never looked (issue 17.4)."""
    run_cfg = load_config(overrides={"thresholds": {"default": {"cider_drop_abs": 0.1}}})
    run, base = _scored_with(_summary(run_cfg), "ptb-java"), _scored_with(_summary(run_cfg), "ptb-python")
    verdict = gate(run, _write(tmp_path, base), run_cfg)
    assert verdict.failed and verdict.text.startswith("baseline refused")
    assert "cider_scoring.tokenizer: 'ptb-python' -> 'ptb-java'" in verdict.text
    assert "vlmbench-report DIR --tokenizer ptb-java" in verdict.text
    allowing = load_config(overrides={"thresholds": {"default": {"cider_drop_abs": 0.1},
                                                     "allow_differences": ["cider_scoring.tokenizer"]}})
    allowed = gate(run, _write(tmp_path, base), allowing)
    assert not allowed.failed and allowed.allowed_differences == ["cider_scoring.tokenizer: 'ptb-python' -> 'ptb-java'"]


@pytest.mark.parametrize("baseline_tokenizer", ["nltk-treebank", None])
def test_the_same_tokenizer_by_its_old_name_or_an_unrecorded_one_is_not_refused(baseline_tokenizer):
    cfg = load_config()
    run = _scored_with(_summary(cfg), "ptb-python")
    assert check_baseline_compatible(run, _scored_with(_summary(cfg), baseline_tokenizer)) == []
