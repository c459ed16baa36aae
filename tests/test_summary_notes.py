"""What the summary's header says about the run: which model family ran (a random-weight family run is not the
label model_id), and when a variant's delta mixes its own dtype with quantization."""
import json
import shutil

import pytest

from tests.conftest import ROOT, TINY, merge
from tests.inprocess import run_pytest
from vlmbench.config import from_plain
from vlmbench.results.report import model_label, table_caption
from vlmbench.results.summary import model_section

SMOKE = ROOT / "configs" / "smoke.yaml"


# ---------------------------------------------------------------- the family in the header
def _records(family: str) -> dict:
    return {"fp16": {"main on CPU": {"family": family}}}


def test_the_label_names_the_family_where_model_id_does_not():
    gemma = from_plain(merge(TINY, {"model": {"architecture": "gemma3"}}))
    section = model_section(gemma, _records("gemma3"))
    assert section["family"] == "gemma3" and section["family_title"] == "Gemma 3"
    assert section["label"] == "Gemma 3, model_type gemma3, tiny random weights"
    assert model_section(gemma, {})["label"] == section["label"]  # before any variant record: model.architecture
    qwen = from_plain(dict(TINY))  # the default family, no architecture set: model_id is enough, as before
    assert model_section(qwen, _records("qwen2_5_vl"))["label"] == qwen.model_id
    assert model_section(from_plain(merge(TINY, {"model": {"architecture": "qwen2_5_vl"}})), {})["label"] == \
        "Qwen2.5-VL, model_type qwen2_5_vl, tiny random weights"  # set explicitly: named
    pretrained = from_plain({"model_id": "google/gemma-3-4b-it"})
    assert model_section(pretrained, _records("gemma3"))["label"] == "google/gemma-3-4b-it, Gemma 3, model_type gemma3"
    assert model_section(pretrained, {})["label"] == "google/gemma-3-4b-it"  # nothing loaded: nothing to say
    summary = {"experiment_name": "smoke", "model_id": qwen.model_id, "model": section, "variants": {}}
    assert table_caption(summary).startswith("smoke (Gemma 3, model_type gemma3, tiny random weights) on : CIDEr-D")
    assert model_label({"model_id": "old/summary"}) == "old/summary"  # a summary without the section


@pytest.mark.slow
def test_a_family_run_names_its_family_in_the_terminal_summary_and_report(tmp_path):
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"
    settings = ("model.weights=random", "model.tiny=true", "model.architecture=gemma3", "variants=[fp16]",
                "dataset.limit=2", "inference.batch_size=2", "inference.micro_batch_size=2",
                "inference.max_new_tokens=3", "measure.latency_images=1", "measure.model_size=false",
                "quality.meteor=false")
    run = run_pytest(sandbox, "benchmarks", "--vlm-config", str(SMOKE), "-p", "no:cacheprovider",
                     "--vlm-results", str(results), *[f"--vlm-set={s}" for s in settings])
    assert run.ret == 0, "\n".join(run.outlines[-30:] + run.errlines[-30:])
    label = "Gemma 3, model_type gemma3, tiny random weights"
    run.stdout.fnmatch_lines([f"smoke ({label}) on cpu: CIDEr-D on the *"])
    assert (results / "summary_latest.md").read_text().startswith(f"smoke ({label}) on cpu:")
    summary = json.loads((results / "summary_latest.json").read_text())
    assert summary["model"]["family"] == "gemma3" and summary["model"]["label"] == label
    page = (results / "report.html").read_text()
    assert f"<title>vlmbench: smoke ({label})</title>" in page and "vlmbench/tiny-captioner)" not in page
    assert "<td>Gemma 3 (gemma3)</td>" in page


# ---------------------------------------------------------------- variants in their own dtype
def test_a_variant_in_its_own_dtype_against_an_fp16_baseline_gets_a_note_not_a_refusal(tmp_path):
    """fp8 and w4a16 run in bf16 whatever precision.language_model says: against fp16 their delta mixes the dtype
    change with quantization. The run goes on, and the summary, summary_latest.md and the terminal say so, with the
    run that isolates quantization; bf16 (unquantized: a dtype comparison by design) and int8 (fp16) are not named."""
    from tests.results_factory import tiny_config, write_results
    from vlmbench.results.report import report
    cfg = tiny_config(tmp_path, 12, variants=("fp16", "int8", "fp8", "w4a16_vit", "bf16"))
    write_results(cfg, tmp_path)
    summary, verdict = report(tmp_path, cfg, 0.0, None)
    mix = summary["dtype_mix"]
    assert mix["baseline"] == "fp16" and mix["baseline_dtype"] == "fp16"
    assert mix["variants"] == {"fp8": "bf16", "w4a16_vit": "bf16"}
    note = ("note: fp8, w4a16_vit run in bf16 (the dtype their method takes), the baseline fp16 in fp16: their delta "
            "vs fp16 mixes the dtype change with quantization; variants: [bf16, fp8, w4a16_vit, ...] with baseline: "
            "bf16 (and precision.language_model: bf16 for int8) isolates quantization")
    assert mix["note"] == note
    assert note in (tmp_path / "summary_latest.md").read_text().splitlines() and note in verdict.text.splitlines()
    assert not verdict.failed


def test_the_run_that_isolates_quantization_is_accepted_and_needs_no_note(tmp_path):
    """variants: [bf16, fp8, ...] with baseline: bf16 was refused while precision.language_model stayed fp16 (the
    refusal counted fp8 as a variant that keeps its other layers in precision.language_model, which it does not)."""
    from vlmbench.config import ConfigError
    from vlmbench.results.summary import dtype_mix
    cfg = from_plain(merge(TINY, {"variants": ["bf16", "fp8", "w4a16_lm"], "baseline": "bf16"}))
    assert dtype_mix(cfg, {name: {} for name in cfg.variants}) is None
    with pytest.raises(ConfigError, match=r"always runs in bf16: int8 would keep their other layers in fp16.*Either "
                                          r"set precision.language_model: bf16, or run the baseline in fp16 \(variants: "
                                          r"\[fp16, fp8, int8\], baseline: fp16\)"):
        from_plain(merge(TINY, {"variants": ["bf16", "fp8", "int8"], "baseline": "bf16"}))
    both = from_plain(merge(TINY, {"variants": ["bf16", "fp8", "int8"], "baseline": "bf16",
                                   "precision": {"language_model": "bf16"}}))
    assert dtype_mix(both, {name: {} for name in both.variants}) is None
