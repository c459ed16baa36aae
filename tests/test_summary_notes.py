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
