"""Scoring never loses the summary, and CIDEr-D is not reported on too few images (issue 8, items 2 and 3)."""
import errno
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from tests.results_factory import references, tiny_config, write_results
from vlmbench.cli import main as report_main
from vlmbench.scoring.metrics import MIN_CIDER_IMAGES, TokenizerError, cider, java_available
from vlmbench.results.report import gate, markdown_table, report

needs_java = pytest.mark.skipif(not java_available(), reason="Java is needed for the official PTB tokenizer")
MACOS_STUB = "The operation couldn't be completed. Unable to locate a Java Runtime."


@pytest.fixture
def broken_java(tmp_path, monkeypatch):
    """A `java` first on the PATH that prints an error and exits 1, like macOS's stub without a JDK."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho \"{MACOS_STUB}\" >&2\nexit 1\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return java


@pytest.fixture
def read_only_pycocoevalcap(tmp_path, monkeypatch):
    """pycocoevalcap (tokenizer and CIDEr) imported from a copy whose folder refuses new files.

    Tests run as root here, where file modes do not stop writes: creating a temporary file inside
    the copy is refused the way a read-only file system refuses it (EROFS), and the modes are set too.
    """
    import pycocoevalcap.tokenizer.ptbtokenizer as original
    source = Path(original.__file__).resolve().parents[1]
    site = tmp_path / "ro-site"
    for part in ("tokenizer", "cider"):
        shutil.copytree(source / part, site / "pycocoevalcap" / part, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "pycocoevalcap" / "__init__.py").write_text("")
    package = site / "pycocoevalcap"
    for path in [package, *package.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)

    def refuse_inside(real):
        def wrapper(*args, **kwargs):
            folder = kwargs.get("dir")
            if folder is not None and Path(folder).resolve().is_relative_to(package):
                raise OSError(errno.EROFS, "Read-only file system", str(folder))
            return real(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse_inside(tempfile.NamedTemporaryFile))
    monkeypatch.setattr(tempfile, "mkstemp", refuse_inside(tempfile.mkstemp))
    for name in [m for m in sys.modules if m == "pycocoevalcap" or m.startswith("pycocoevalcap.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))
    yield package
    for path in [package, *package.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _refs_and_predictions(n=12):
    refs = references(n)
    return {i: r[1:] for i, r in refs.items()}, {i: r[0] for i, r in refs.items()}


def _written_folder(tmp_path: Path, images: int = 12, **sections):
    """A results folder written by hand (tests/results_factory.py) and its config."""
    results = tmp_path / "results"
    cfg = tiny_config(results, images, **sections)
    write_results(cfg, results)
    return results, cfg


def _latest_summary(results_dir: Path) -> dict:
    return json.loads(sorted(results_dir.glob("summary_*.json"))[-1].read_text())


# ---------------------------------------------------------------- item 2: scoring never loses the summary
def test_a_java_that_does_not_run_falls_back_with_the_reason(broken_java):
    refs, preds = _refs_and_predictions()
    result = cider(refs, preds)  # auto: java is on the PATH, but it is the stub
    assert result.tokenizer == "ptb-python" and result.score > 1.0
    assert "exited with status 1" in result.fallback_reason and "Unable to locate a Java Runtime" in result.fallback_reason
    assert result.score == cider(refs, preds, "nltk-treebank").score
    with pytest.raises(TokenizerError, match="exited with status 1"):
        cider(refs, preds, "ptb-java")  # the official tokenizer demanded: no silent substitute


def test_vlmbench_report_with_a_broken_java_writes_summary_table_and_plots(broken_java, tmp_path, capsys):
    results = tmp_path / "results"
    write_results(tiny_config(results, 12), results)
    assert report_main([str(results)]) == 0
    summary = _latest_summary(results)
    assert summary["cider_scoring"]["tokenizer"] == "ptb-python"
    assert "Unable to locate a Java Runtime" in summary["cider_scoring"]["tokenizer_fallback_reason"]
    assert summary["variants"]["fp16"]["cider"] > 1.0
    assert (results / "plots" / "cider.png").is_file()
    table = (results / "summary_latest.md").read_text()
    assert "ptb-python tokenizer" in table and "note: PTB tokenizer (Java) failed" in table
    assert "Traceback" not in capsys.readouterr().err


@needs_java
def test_official_tokenizer_works_from_a_read_only_install(read_only_pycocoevalcap):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    assert Path(sys.modules["pycocoevalcap"].__file__).resolve().is_relative_to(read_only_pycocoevalcap)
    with pytest.raises(OSError, match="Read-only file system"):  # what pycocoevalcap itself does there
        PTBTokenizer().tokenize({1: [{"caption": "A dog."}]})
    refs, preds = _refs_and_predictions()
    result = cider(refs, preds)
    assert result.tokenizer == "ptb-java" and result.fallback_reason is None and result.score > 1.0


def test_a_scorer_that_raises_leaves_cider_null_and_the_rest_written(tmp_path, monkeypatch):
    def broken_scorer(refs, preds):
        raise RuntimeError("scorer exploded")
    monkeypatch.setattr("vlmbench.results.summary.cider_from_tokens", broken_scorer)
    results, cfg = _written_folder(tmp_path)
    summary, verdict = report(results, cfg, 0.0, None, "nltk-treebank")
    for entry in summary["variants"].values():
        assert entry["cider"] is None and entry["cider_null_reason"] == "scoring failed: RuntimeError: scorer exploded"
        assert entry["throughput_img_s"] == pytest.approx(1.0)
    assert _latest_summary(results)["variants"]["int8"]["cider"] is None
    assert ("n/a CIDEr-D, CIDEr-D [95% CI]: scoring failed: RuntimeError: scorer exploded"  # the interval's reason is
            in (results / "summary_latest.md").read_text())                                   # the score's: one line
    assert (results / "plots" / "throughput_img_s.png").is_file()


def test_a_tokenizer_that_raises_leaves_cider_null_with_the_reason(tmp_path, monkeypatch):
    def broken_tokenizer(captions):
        raise LookupError("tokenizer data missing")
    monkeypatch.setattr("vlmbench.scoring.metrics.tokenize_python", broken_tokenizer)
    results, cfg = _written_folder(tmp_path)
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    assert summary["variants"]["fp16"]["cider"] is None
    assert "tokenizing failed (LookupError: tokenizer data missing)" in summary["variants"]["fp16"]["cider_null_reason"]


def test_broken_plotting_still_writes_the_summary(tmp_path, monkeypatch):
    def broken_plots(summary, plot_dir, unwritten=None):
        raise RuntimeError("no display")
    monkeypatch.setattr("vlmbench.results.report.write_plots", broken_plots)
    results, cfg = _written_folder(tmp_path)
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    assert summary["plots"] == [] and summary["plots_null_reason"] == "plotting failed: RuntimeError: no display"
    assert _latest_summary(results)["variants"]["fp16"]["cider"] > 1.0


# ---------------------------------------------------------------- one tokenization per summary, drift included
@pytest.mark.parametrize("tokenizer", ["ptb-python", pytest.param("ptb-java", marks=needs_java)])
@pytest.mark.parametrize("failed_in_int8_vit", [0, 3])
def test_one_tokenizer_call_per_summary_and_drift_as_before(tmp_path, monkeypatch, tokenizer, failed_in_int8_vit):
    """CIDEr-D and every variant's drift come from one tokenizer call (one JVM start with Java), also when
    CIDEr-D is null (int8_vit failed on 3 of 12 images: 9 common) and drift has more images; drift's
    numbers equal those of the old path, which tokenized each variant on its own (metrics.cider)."""
    import vlmbench.scoring.metrics as metrics
    target = "_run_ptb" if tokenizer == "ptb-java" else "tokenize_python"
    real, calls = getattr(metrics, target), []
    monkeypatch.setattr(metrics, target, lambda captions: calls.append(len(captions)) or real(captions))
    results = tmp_path / "results"
    cfg = tiny_config(results, 12, variants=["fp16", "int8", "int8_vit"])
    failed = {"status": "failed", "error": "OSError: broken", "caption": ""}
    changed = {("int8", i): {"caption": f"A shape, number {i}."} for i in range(1, 7)}
    refs = write_results(cfg, results, image_cells=changed | {("int8_vit", i): failed
                                                              for i in range(1, failed_in_int8_vit + 1)})
    summary, _ = report(results, cfg, 0.0, None, tokenizer)
    assert len(calls) == 1
    assert (summary["variants"]["int8"]["cider"] is None) == (failed_in_int8_vit > 0)
    int8 = summary["variants"]["int8"]["drift"]
    assert int8["images"] == 12 and int8["identical_pct"] == 50.0
    captions = {i: changed.get(("int8", i), {}).get("caption", refs[i][0]) for i in refs}
    calls.clear()
    old = cider({i: [refs[i][0]] for i in refs}, captions, tokenizer).score
    assert int8["cider_vs_baseline"] == old and len(calls) == 1


# ---------------------------------------------------------------- item 3: too few images for CIDEr-D
@pytest.mark.parametrize("images", [1, MIN_CIDER_IMAGES - 1])
def test_cider_on_too_few_common_images_is_null_with_the_reason(tmp_path, images):
    results, cfg = _written_folder(tmp_path, images)
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    assert summary["cider_scoring"]["common_images"] == images
    for entry in summary["variants"].values():
        assert entry["cider"] is None
        assert entry["cider_null_reason"].startswith(f"only {images} image(s) captioned by every variant; CIDEr-D needs "
                                                     f"at least {MIN_CIDER_IMAGES}")
    assert f"n/a CIDEr-D, CIDEr-D [95% CI]: only {images} image(s)" in (results / "summary_latest.md").read_text()
    for metrics in summary["metrics"].values():  # the other COCO metrics: the same image set, so null with it
        assert set(metrics[n] for n in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")) == {None}
        assert metrics["BLEU-4_null_reason"].startswith(f"the common image set was not scored: only {images} image(s)")
    assert "n/a BLEU-1, BLEU-2, BLEU-3, BLEU-4, METEOR, ROUGE-L, CIDEr-D, SPICE: the common image set was not scored" \
        in (results / "summary_latest.md").read_text()  # one line for the one reason


def test_cider_at_the_minimum_is_reported(tmp_path):
    results, cfg = _written_folder(tmp_path, MIN_CIDER_IMAGES)
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    assert summary["variants"]["fp16"]["cider"] > 1.0 and "cider_null_reason" not in summary["variants"]["fp16"]


def test_gate_makes_no_cider_decision_on_too_few_images(tmp_path):
    """A 12-image baseline whose captions scored well against a run that shares one image: no CIDEr verdict."""
    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    thresholds = {"default": {"cider_drop_abs": 0.05, "throughput_drop_pct": 50}}
    base_cfg = tiny_config(base_dir, 12, thresholds=thresholds)
    write_results(base_cfg, base_dir)
    report(base_dir, base_cfg, 0.0, None, "nltk-treebank")
    baseline = sorted(base_dir.glob("summary_*.json"))[-1]
    # the same experiment, of which only one image was captioned by every variant
    failed = {"status": "failed", "error": "OSError: broken", "caption": ""}
    write_results(base_cfg, run_dir, image_cells={("int8", i): failed for i in range(2, 13)})
    summary, verdict = report(run_dir, base_cfg, 0.0, str(baseline), "nltk-treebank")
    assert summary["cider_scoring"]["common_images"] == 1 and summary["variants"]["fp16"]["cider"] is None
    assert not verdict.failed, verdict.text
    assert any(line.startswith("fp16: cider_drop_abs not decided: cider null in this run (only 1 image(s)")
               for line in verdict.undecided), verdict.undecided
    assert "(no decision) fp16: cider_drop_abs not decided" in verdict.text
    assert summary["regression_gate"]["undecided"] == verdict.undecided


def test_gate_makes_no_cider_decision_against_a_baseline_scored_on_one_image(tmp_path):
    results, cfg = _written_folder(tmp_path, 12, thresholds={"default": {"cider_drop_abs": 0.05}})
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    old = json.loads(json.dumps(summary))
    for entry in old["variants"].values():
        entry.update(cider=0.0 if entry is old["variants"]["int8"] else 9.9, cider_images=1)
    path = tmp_path / "old-baseline.json"
    path.write_text(json.dumps(old))
    verdict = gate(summary, str(path), cfg)
    assert not verdict.failed and len(verdict.undecided) == 2
    assert "computed on 1 image(s), fewer than the 10 needed" in verdict.undecided[0]
    assert markdown_table(summary)  # still renders


def test_gate_names_a_variant_the_baseline_lacks_instead_of_passing_it_silently(tmp_path):
    """A baseline summary of fp16 alone: int8's thresholds are not decided, and the verdict says so."""
    results, cfg = _written_folder(tmp_path, 12, thresholds={"default": {"throughput_drop_pct": 50}})
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    fp16_only = {**summary, "variants": {"fp16": summary["variants"]["fp16"]}}
    baseline = tmp_path / "fp16_only_summary.json"
    baseline.write_text(json.dumps(fp16_only))
    _, verdict = report(results, cfg, 0.0, str(baseline), "nltk-treebank")
    assert not verdict.failed, verdict.text
    assert "(no decision) int8: not in the baseline (it holds fp16); no threshold compared" in verdict.text
    assert not any(line.startswith("fp16:") for line in verdict.undecided)


def test_a_cpu_folder_says_why_plots_and_the_gate_are_missing(tmp_path):
    """Every absent output carries its reason: plots of metrics no variant has, the gate without a baseline."""
    results, cfg = _written_folder(tmp_path, 12)
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    saved = _latest_summary(results)
    assert saved["plots_not_drawn"]["peak_vram_mib.png"].startswith("peak_vram_mib is null for every variant: no CUDA")
    assert "tradeoff_cider_vs_energy_j_per_image.png" in saved["plots_not_drawn"]
    assert "cider.png" in saved["plots"] and "cider.png" not in saved["plots_not_drawn"]
    assert saved["regression_gate"]["baseline"] is None
    assert saved["regression_gate"]["baseline_null_reason"].startswith("no baseline given")
    assert "regression gate not applied" in (results / "summary_latest.md").read_text()
    table = (results / "summary_latest.md").read_text()
    assert "COCO caption metrics (pycocoevalcap) on the 12 images every variant captioned" in table
    assert "| variant | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr-D | SPICE |" in table
    assert "n/a METEOR: quality.meteor is false" in table and "n/a SPICE: " in table
    assert saved["metrics"]["int8"]["BLEU-4"] > 0 and saved["metrics"]["int8"]["CIDEr-D"] == summary["variants"]["int8"]["cider"]


def test_summary_latest_json_is_a_copy_of_the_newest_timestamped_summary(tmp_path, monkeypatch):
    """Each report writes summary_<timestamp>.json and its copy summary_latest.json (plots list included)."""
    results, cfg = _written_folder(tmp_path, 12)
    report(results, cfg, 0.0, None, "nltk-treebank")
    monkeypatch.setattr("vlmbench.results.report.timestamp", lambda: "20991231T235959")  # the rerun's stamp
    report(results, cfg, 0.0, None, "nltk-treebank")
    stamped = sorted(results.glob("summary_2*.json"))
    assert len(stamped) == 2 and stamped[-1].name == "summary_20991231T235959.json"
    latest = (results / "summary_latest.json").read_text()
    assert latest == stamped[-1].read_text() and "cider.png" in json.loads(latest)["plots"]
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]
