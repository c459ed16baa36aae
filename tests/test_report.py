"""The regression gate, the markdown table and the plots, on summaries built by hand."""
import copy
import json
import re

import pytest

from vlmbench.config import load_config
from vlmbench.results.report import BaselineMismatch, breaches, check_baseline_compatible, gate, markdown_table, write_plots


@pytest.fixture
def offline_hub(monkeypatch):
    """The seed config names a Hub model: `vlmbench-report` looks its identity up, which took ~24 s of
    network retries per test on a machine without network. The Hub offline, the lookup fails at once,
    as it does on such a machine, and the report says why."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


def _summary(**int8):
    cfg = load_config()
    fp16 = {"cider": 1.00, "latency_s_mean": 2.0, "latency_s_p50": 2.0, "throughput_img_s": 4.0,
            "peak_vram_mib": 16000.0, "model_size_mb": 7500.0, "energy_j_per_image": 70.0, "avg_power_w": 280.0,
            "images_captioned": 10, "images_failed": 0,
            "census": {"vision": {"linear": 2, "int8": 0}, "language_model": {"linear": 3, "int8": 0}}}
    variant = {**fp16, "census": {"vision": {"linear": 2, "int8": 2}, "language_model": {"linear": 3, "int8": 3}},
               **int8}
    return {"model_id": cfg.model_id, "config": cfg.to_dict(), "variants": {"fp16": fp16, "int8": variant}}


THRESHOLDS = {"thresholds": {"default": {"cider_drop_abs": 0.05, "cider_drop_pct": 10, "latency_increase_pct": 20,
                                         "throughput_drop_pct": 20, "peak_vram_increase_pct": 10,
                                         "energy_increase_pct": 15}}}


@pytest.mark.parametrize("change, expected", [
    ({"cider": 0.94}, "int8: cider = 0.94 vs baseline 1 (-0.06), threshold cider_drop_abs = 0.05"),
    ({"cider": 0.85}, "threshold cider_drop_pct = 10.0"),
    ({"latency_s_mean": 2.5}, "int8: latency_s_mean = 2.5 vs baseline 2 (+25%), threshold latency_increase_pct = 20.0"),
    ({"throughput_img_s": 3.0}, "int8: throughput_img_s = 3 vs baseline 4 (-25%), threshold throughput_drop_pct = 20.0"),
    ({"peak_vram_mib": 18000.0}, "peak_vram_mib = 1.8e+04 vs baseline 1.6e+04 (+12.5%), threshold peak_vram_increase_pct"),
    ({"energy_j_per_image": 84.0}, "energy_j_per_image = 84 vs baseline 70 (+20%), threshold energy_increase_pct"),
])
def test_each_threshold_kind_breaches(change, expected):
    cfg = load_config(overrides=THRESHOLDS)
    found = breaches(_summary(**change), _summary(), cfg)
    assert any(expected in line for line in found), found


def test_within_thresholds_passes_and_improvements_never_fail(tmp_path):
    cfg = load_config(overrides=THRESHOLDS)
    better = _summary(cider=1.2, latency_s_mean=1.0, throughput_img_s=9.0, peak_vram_mib=1.0, energy_j_per_image=1.0)
    assert breaches(better, _summary(), cfg) == []
    path = tmp_path / "base.json"
    path.write_text(json.dumps(_summary()))
    verdict = gate(_summary(cider=0.99), str(path), cfg)
    assert not verdict.failed and "passed: 12 checks against" in verdict.text and verdict.checks == 12
    failing = gate(_summary(cider=0.5), str(path), cfg)
    assert failing.failed and "regression gate FAILED" in failing.text and "cider_drop_abs" in failing.text


def test_per_variant_thresholds_override_the_default():
    cfg = load_config(overrides={**THRESHOLDS, "thresholds": {**THRESHOLDS["thresholds"],
                                                              "per_variant": {"int8": {"latency_increase_pct": 200}}}})
    assert breaches(_summary(latency_s_mean=3.0), _summary(), cfg) == []


def test_baseline_of_another_model_or_dataset_is_refused(tmp_path):
    other_model = _summary()
    other_model["model_id"] = "someone/else"
    with pytest.raises(BaselineMismatch, match="baseline is for model 'someone/else'"):
        check_baseline_compatible(_summary(), other_model)
    other_data = copy.deepcopy(_summary())
    other_data["config"]["dataset"]["limit"] = 100
    with pytest.raises(BaselineMismatch, match="limit: 100 -> 5000"):
        check_baseline_compatible(_summary(), other_data)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(other_data))
    verdict = gate(_summary(), str(path), load_config())
    assert verdict.failed and "baseline refused" in verdict.text
    assert gate(_summary(), str(tmp_path / "missing.json"), load_config()).failed


def test_table_and_plots(tmp_path):
    summary = _summary(model_size_mb=None, model_size_mb_null_reason="disabled in config")
    table = markdown_table(summary)
    assert "| int8 | 1 | 2 | 4 | 16000 | n/a |" in table and "vision:2/2 language_model:3/3" in table
    assert "n/a size (MB) of int8: disabled in config" in table  # fp16 has its size
    summary.update(experiment_name="exp", cider_scoring={"common_images": 10, "tokenizer": "ptb-java"})
    for entry in summary["variants"].values():
        entry["device_name"], entry["latency_images"] = "NVIDIA H100", 6
    assert markdown_table(summary).splitlines()[0] == (
        "exp (Qwen/Qwen2.5-VL-3B-Instruct) on NVIDIA H100: CIDEr-D on the 10 images every variant captioned "
        "(ptb-java tokenizer); "
        "latency = one image alone, p50 over 6 image(s) per variant; throughput at micro-batch 8, image reading "
        "and preprocessing included")
    assert "timed on a CPU" not in markdown_table(summary)
    summary["variants"]["int8"]["device_name"] = "cpu"
    assert "note: timed on a CPU, whose cores other work shares" in markdown_table(summary)
    written = write_plots(summary, tmp_path)
    assert "cider.png" in written and "tradeoff_cider_vs_energy_j_per_image.png" in written
    assert all((tmp_path / name).stat().st_size > 1000 for name in written)


def test_deltas_say_why_they_are_missing():
    from vlmbench.results.summary import delta
    assert delta(3.0, 4.0, "fp16") == {"abs": -1.0, "rel_pct": -25.0}
    assert delta(None, 4.0, "fp16")["null_reason"] == "null in this variant: no reason recorded"
    assert delta(None, 4.0, "fp16", "no CUDA device")["null_reason"] == "null in this variant: no CUDA device"
    assert delta(3.0, None, "fp16", None, "disabled in config")["null_reason"] == "null in fp16: disabled in config"
    zero = delta(0.5, 0.0, "fp16")
    assert zero["abs"] == 0.5 and zero["rel_pct"] is None and zero["null_reason"] == "fp16's value is 0"


def test_report_command_explains_an_unusable_folder(tmp_path, capsys, offline_hub):
    from vlmbench.cli import main
    assert main([str(tmp_path)]) == 2
    assert "holds no experiment_config_*.yaml" in capsys.readouterr().err
    from vlmbench.results.records import write_config_snapshot
    write_config_snapshot(tmp_path, load_config(), "20260101T000000")
    assert main([str(tmp_path)]) == 2
    assert "references.json is missing" in capsys.readouterr().err


def _two_experiment_folder(tmp_path):
    """A folder with chunk 0 of fp16 from experiment A and chunk 0 of int8 from experiment B (seed 1)."""
    from tests.test_records import _rows
    from vlmbench.results.records import chunk_csv_path, write_chunk_csv, write_config_snapshot, write_json
    a, b = load_config().with_engine("cpu"), load_config(overrides={"seed": 1}).with_engine("cpu")  # as a run resolves them
    snap_a = write_config_snapshot(tmp_path, a, "20260101T000000")
    snap_b = write_config_snapshot(tmp_path, b, "20260101T000001")
    write_chunk_csv(chunk_csv_path(tmp_path, "fp16", 0), _rows([1, 2], fingerprint=a.fingerprint))
    write_chunk_csv(chunk_csv_path(tmp_path, "int8", 0), _rows([1, 2], fingerprint=b.fingerprint, variant="int8"))
    write_json(tmp_path / "references.json", {"1": ["a cat on a mat"], "2": ["a dog on a log"]})
    return a, b, snap_a, snap_b


def test_report_lists_ignored_experiments_and_missing_chunks(tmp_path, capsys, offline_hub):
    from vlmbench.cli import main
    _, b, snap_a, snap_b = _two_experiment_folder(tmp_path)
    assert main([str(tmp_path), "--config", str(snap_a), "--tokenizer", "nltk-treebank"]) == 0
    out = capsys.readouterr().out
    assert (f"ignored 1 CSV(s) of experiment {b.fingerprint} (int8_batch_0.csv); report them with: "
            f"vlmbench-report {tmp_path} --config {snap_b}") in out
    assert "fp16: chunks [1, 2, 3, 4] missing (1 of 5 done)" in out
    assert "variants with no finished chunk: int8, int8_vit" in out


def test_a_full_disk_during_the_report_keeps_the_summary_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """ENOSPC on every PNG: the summary JSON and table are written, each plot failure is one line."""
    import errno
    import os
    from vlmbench.results.report import report
    a, _, _, _ = _two_experiment_folder(tmp_path)
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".png." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    _, verdict = report(tmp_path, a, 0.0, None, "nltk-treebank")
    assert verdict.failed and "Traceback" not in verdict.text
    assert re.search(rf"could not write \w+\.png in {re.escape(str(tmp_path / 'plots'))}: No space left on device",
                     verdict.text)
    assert "finished chunks are kept" in verdict.text
    written = json.loads(sorted(tmp_path.glob("summary_*.json"))[-1].read_text())
    assert written["variants"]["fp16"]["images_captioned"] == 2 and written["plots"] == []
    assert (tmp_path / "summary_latest.md").is_file()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".tmp.png")]
    assert list((tmp_path / "plots").iterdir()) == []


def test_finish_run_never_raises(tmp_path):
    from types import SimpleNamespace
    from vlmbench.results.report import finish_run
    session = SimpleNamespace(results_dir=tmp_path, cfg=load_config(), started_at=0.0)  # no references.json
    verdict = finish_run(session, None)
    assert verdict.failed and "Finished chunks are kept" in verdict.text and f"vlmbench-report {tmp_path}" in verdict.text


def test_report_config_of_a_folder_whose_references_are_another_experiments(tmp_path, capsys, offline_hub):
    from vlmbench.cli import main
    _, _, snap_a, _ = _two_experiment_folder(tmp_path)
    (tmp_path / "references.json").write_text(json.dumps({"7": ["x"]}))
    assert main([str(tmp_path), "--config", str(snap_a), "--tokenizer", "nltk-treebank"]) == 0
    summary = json.loads(sorted(tmp_path.glob("summary_*.json"))[-1].read_text())
    assert summary["variants"]["fp16"]["cider"] is None
    assert "belongs to another experiment" in summary["variants"]["fp16"]["cider_null_reason"]


def test_git_commit_named_by_the_environment_wins_over_a_copied_git_folder(monkeypatch):
    """The lent GPU machine's copy carried another commit's .git: the explicit variable must win."""
    from vlmbench.results.summary import git_commit
    monkeypatch.setenv("VLMBENCH_GIT_COMMIT", "f92158ae64c367a080e77e399388ccd1287933f4")
    assert git_commit() == {"git_commit": "f92158ae64c367a080e77e399388ccd1287933f4"}
    monkeypatch.delenv("VLMBENCH_GIT_COMMIT")
    assert len(git_commit()["git_commit"]) == 40  # this checkout's HEAD


def test_vlmbench_report_on_a_mistyped_folder_says_it_is_not_a_folder(tmp_path, capsys):
    from vlmbench.cli import main
    missing = tmp_path / "resluts"
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"vlmbench-report: {missing} is not a folder; pass the results folder of a run" in err
    assert not missing.exists()


def test_na_lines_name_the_variants_unless_the_reason_is_everyones():
    from vlmbench.results.report import null_lines
    variants = {"fp16": {"energy_j_per_image_null_reason": "no CUDA device", "load_s_null_reason": "differs (2; 3)"},
                "int8": {"energy_j_per_image_null_reason": "no CUDA device"}}
    assert null_lines(variants) == ["energy (J/img): no CUDA device", "load (s) of fp16: differs (2; 3)"]


def test_tokens_per_caption_of_a_variant_that_captioned_nothing_is_null_with_the_reason():
    """It was the mean of [0] then: 0 tokens per caption, a number no caption had."""
    from vlmbench.results.summary import tokens_per_caption
    assert tokens_per_caption([{"status": "ok", "generated_tokens": "4"}, {"status": "failed", "generated_tokens": ""},
                               {"status": "ok", "generated_tokens": "7"}]) == {"generated_tokens_mean": 5.5}
    failed = tokens_per_caption([{"status": "failed", "generated_tokens": ""}])
    assert failed == {"generated_tokens_mean": None, "generated_tokens_mean_null_reason": "no image was captioned"}
    summary = _summary()
    summary["variants"]["int8"].update(failed)
    assert "n/a tokens/caption of int8: no image was captioned" in markdown_table(summary)


def test_na_lines_use_the_headers_the_reader_sees_and_group_what_shares_a_reason():
    """Users read 'n/a cider_ci: ...', 'n/a latency_s_p50: ...' and 'n/a cpu_threads: ...', one key a line: the
    lines name the columns as the tables head them, one line per reason (and set of variants), in table order."""
    from vlmbench.results.labels import column_labels
    from vlmbench.results.report import null_lines
    gpu = "no CUDA device (run on CPU)"
    untimed = "no image was timed alone (measure.latency_images: 0?)"
    entry = {"avg_power_w_null_reason": gpu, "energy_j_per_image_null_reason": gpu, "idle_power_w_null_reason": gpu,
             "latency_s_mean_null_reason": untimed, "latency_s_p50_null_reason": untimed,
             "latency_s_p90_null_reason": untimed, "cpu_threads_null_reason": "not set on a cuda run (torch's default)",
             "cider_ci_null_reason": "too few images", "idle_share_null_reason": "chunk_generate_s missing in a chunk"}
    variants = {"fp16": dict(entry), "int8": {**entry, "cider_delta_ci_null_reason": "baseline has no scores"}}
    labels = column_labels({"quality": {"confidence": 0.9, "baseline": "fp16"}})
    assert null_lines(variants, labels) == [
        "latency p50 (s), latency mean (s), latency p90 (s): " + untimed,
        "energy (J/img), avg power (W), idle power (W): " + gpu,
        "CIDEr-D [90% CI]: too few images",
        "delta vs fp16 [90% CI] of int8: baseline has no scores",
        "idle share (%): chunk_generate_s missing in a chunk",
        "CPU threads: not set on a cuda run (torch's default)"]


# ---------------------------------------------------------------- references.json is checked like any input
def _rotated(refs: dict) -> dict:
    """Each image gets the next image's references: the same captions, moved between images."""
    keys, values = list(refs), list(refs.values())
    return dict(zip(keys, values[1:] + values[:1]))


TAMPERED_REFERENCES = {
    "nested 200,000 deep": (lambda refs: "[" * 200_000 + "]" * 200_000, "is nested too deeply to be references"),
    "captions as a string": (lambda refs: json.dumps({**refs, "1": "a red circle"}),
                             "1 malformed entries: image 1: 'a red circle' is not a non-empty list of captions"),
    "a key that is no id": (lambda refs: json.dumps({"one": ["x"], **refs}), "key 'one' is not an integer image id"),
    "a caption that is no string": (lambda refs: json.dumps({**refs, "2": [7]}), "image 2: [7] holds something"),
    "not an object": (lambda refs: json.dumps(list(refs.values())), "holds list"),
    "rotated between images": (lambda refs: json.dumps(_rotated(refs)),
                               "does not match this experiment's data: the digest of its references"),
    "another experiment's images": (lambda refs: json.dumps({str(int(k) + 100): v for k, v in refs.items()}),
                                    "does not match this experiment's data: the digest of its references"),
}


@pytest.mark.parametrize("case", TAMPERED_REFERENCES)
def test_a_tampered_references_file_refuses_the_report_with_the_fix(case, tmp_path, capsys):
    """Nested deep it crashed vlmbench-report (RecursionError); rotated it changed CIDEr silently (6.3 -> 0.534)."""
    from tests.results_factory import tiny_config, write_results
    from vlmbench.cli import main
    write_results(tiny_config(tmp_path, 12), tmp_path)
    make, message = TAMPERED_REFERENCES[case]
    path = tmp_path / "references.json"
    path.write_text(make(json.loads(path.read_text())))
    assert main([str(tmp_path), "--tokenizer", "ptb-python"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Fix: rerun `pytest benchmarks` with this experiment's config" in err
    assert "Traceback" not in err and not list(tmp_path.glob("summary_*.json"))


def test_a_references_file_larger_than_any_experiment_needs_is_not_read(tmp_path, monkeypatch):
    import vlmbench.results.references as references
    from vlmbench.config import ConfigError
    (tmp_path / "references.json").write_text(json.dumps({"1": ["x" * 200]}))
    monkeypatch.setattr(references, "MAX_BYTES", 100)
    with pytest.raises(ConfigError, match="is 2.. bytes, more than the 100 a references file can need"):
        references.load_references(tmp_path)


def test_a_run_records_the_digest_of_the_references_it_writes(tmp_path):
    """The snapshot a run writes holds references_sha256; the report accepts the file as written and
    refuses it rotated."""
    from tests.conftest import TINY, merge
    from vlmbench.config import ConfigError, ExperimentConfig, build
    from vlmbench.results.references import load_references
    from vlmbench.run.session import BenchSession
    session = BenchSession(build(ExperimentConfig, merge(TINY, {"results_dir": str(tmp_path)})), tmp_path)
    session.start()
    snapshot = next(tmp_path.glob("experiment_config_*.yaml")).read_text()
    assert "references_sha256:" in snapshot
    refs = load_references(tmp_path, session.cfg.fingerprint)
    assert list(refs) == [r.image_id for r in session.rows]
    path = tmp_path / "references.json"
    path.write_text(json.dumps(_rotated(json.loads(path.read_text()))))
    with pytest.raises(ConfigError, match="does not match this experiment's data"):
        load_references(tmp_path, session.cfg.fingerprint)


@pytest.mark.parametrize("require_checks", [False, True])
def test_a_gate_that_checks_nothing_says_so_and_fails_only_when_checks_are_required(tmp_path, require_checks):
    """No threshold set: 0 checks, outcome 'nothing checked' (never 'passed'); thresholds.require_checks fails it."""
    path = tmp_path / "base.json"
    path.write_text(json.dumps(_summary()))
    cfg = load_config(overrides={"thresholds": {"require_checks": require_checks}})
    verdict = gate(_summary(cider=0.1), str(path), cfg)
    assert verdict.checks == 0 and "passed" not in verdict.text and "nothing checked" in verdict.text
    assert verdict.failed is require_checks
    assert verdict.outcome == ("failed" if require_checks else "nothing checked")


def test_a_gate_whose_every_threshold_is_undecided_checks_nothing(tmp_path):
    base = _summary()
    base["variants"]["int8"]["throughput_img_s"] = None
    base["variants"]["fp16"]["throughput_img_s"] = None
    path = tmp_path / "base.json"
    path.write_text(json.dumps(base))
    cfg = load_config(overrides={"thresholds": {"default": {"throughput_drop_pct": 5}}})
    verdict = gate(_summary(), str(path), cfg)
    assert verdict.checks == 0 and verdict.outcome == "nothing checked" and len(verdict.undecided) == 2
    assert "every threshold set could not be decided" in verdict.text


def test_a_references_file_that_is_a_fifo_is_refused_without_opening_it(tmp_path):
    """A FIFO under references.json would make a plain read wait forever for a writer."""
    import os
    from vlmbench.config import ConfigError
    from vlmbench.results.references import load_references
    os.mkfifo(tmp_path / "references.json")
    with pytest.raises(ConfigError, match="FIFO|regular file"):
        load_references(tmp_path)
