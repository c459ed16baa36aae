"""A variant whose CIDEr-D is known not to measure its method carries a `quality_warning` from its load to every
place its numbers are read: variant_<name>.json, the summary, summary_latest.md, the terminal and report.html, whose
Pareto fronts leave it out.

The case today: on a CPU, bitsandbytes 0.50.2's 4-bit kernels dequantize a weight wrongly when its row width is not
a multiple of the 64-value block (README, Quantization methods; tests/test_methods.py's strict xfail). The embedded
captioner's widths (96) are such; TINY's (64, 128, 256) are not, and get no warning.
"""
import json
import shutil

import pytest

from tests.conftest import ROOT, TINY
from tests.inprocess import run_pytest
from vlmbench.config import build, ExperimentConfig, load_config
from vlmbench.quantize.bnb import CPU_4BIT_DEFECT, cpu_4bit_quality_warning
from vlmbench.quantize.variants import get_variant

SMOKE = ROOT / "configs" / "smoke.yaml"


def _loaded(cfg, name: str):
    from vlmbench.models.loading import build_processor, load_variant_model, weights_dir
    return load_variant_model(cfg, get_variant(name), weights_dir(cfg, build_processor(cfg), "cpu"), "cpu")


def test_only_4bit_layers_of_unaligned_width_on_a_cpu_are_warned_about():
    embedded = load_config(SMOKE)
    nf4 = _loaded(embedded, "nf4")
    warning = cpu_4bit_quality_warning(nf4, "cpu")
    assert warning["kind"] == CPU_4BIT_DEFECT and 0 < warning["affected_layers"] <= warning["linear4bit_layers"] == 33
    assert "not a multiple of the 64-value block" in warning["reason"] and "in_features 96" in warning["reason"]
    assert cpu_4bit_quality_warning(nf4, "cuda") is None  # the GPU kernels are not known to share the defect
    assert cpu_4bit_quality_warning(_loaded(embedded, "int8"), "cpu") is None
    assert cpu_4bit_quality_warning(_loaded(build(ExperimentConfig, TINY), "nf4"), "cpu") is None  # widths 64/128/256


def test_a_prequantized_bitsandbytes_4bit_checkpoint_is_warned_about_too(tmp_path):
    """The defect is in the kernels, not in how the layers were made: a checkpoint saved already in NF4 gets it."""
    import torch
    from transformers import BitsAndBytesConfig, Qwen2_5_VLForConditionalGeneration
    from vlmbench.models.loading import EMBEDDED_CAPTIONER_DIR, load_variant_model
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=["model.visual", "lm_head"])
    Qwen2_5_VLForConditionalGeneration.from_pretrained(str(EMBEDDED_CAPTIONER_DIR), dtype=torch.float16,
                                                       quantization_config=nf4).save_pretrained(tmp_path / "pq")
    definitions = {"pq_nf4": {"method": "prequantized", "model_id": str(tmp_path / "pq")}}
    cfg = load_config(SMOKE, overrides={"variants": ["fp16", "pq_nf4"], "variant_definitions": definitions})
    model = load_variant_model(cfg, get_variant("pq_nf4", definitions), str(tmp_path / "pq"), "cpu")
    warning = cpu_4bit_quality_warning(model, "cpu")
    assert warning["linear4bit_layers"] == 21 and 0 < warning["affected_layers"] < 21  # the language model's


@pytest.mark.slow
def test_the_warning_reaches_the_summary_terminal_and_report_for_nf4_and_not_int8(tmp_path):
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"
    settings = ("variants=[fp16, int8, nf4]", "dataset.limit=10", "inference.batch_size=10",
                "inference.micro_batch_size=10", "inference.max_new_tokens=12", "measure.latency_images=1",
                "measure.model_size=false", "quality.meteor=false")
    run = run_pytest(sandbox, "benchmarks", "--vlm-config", str(SMOKE), "-p", "no:cacheprovider",
                     "--vlm-results", str(results), *[f"--vlm-set={s}" for s in settings])
    assert run.ret == 0, "\n".join(run.outlines[-30:] + run.errlines[-30:])
    records = {name: json.loads((results / f"variant_{name}.json").read_text())["writers"] for name in ("int8", "nf4")}
    (nf4_record,), (int8_record,) = records["nf4"].values(), records["int8"].values()
    assert nf4_record["quality_warning"]["kind"] == CPU_4BIT_DEFECT and int8_record["quality_warning"] is None
    summary = json.loads((results / "summary_latest.json").read_text())["variants"]
    assert summary["nf4"]["quality_warning"]["affected_layers"] > 0
    assert summary["int8"]["quality_warning"] is None and summary["fp16"]["quality_warning"] is None
    table = (results / "summary_latest.md").read_text()
    assert "WARNING nf4: on a CPU, bitsandbytes" in table and "WARNING nf4: bitsandbytes CPU 4-bit defect on" in table
    assert "WARNING int8" not in table and "WARNING fp16" not in table
    run.stdout.fnmatch_lines(["WARNING nf4: on a CPU, bitsandbytes * 4-bit kernels dequantize a weight wrongly*"])
    page = (results / "report.html").read_text()
    pareto = page.split("<h2>Which variant")[1].split("<h2>")[0]
    assert "nf4 is left out of every front: bitsandbytes CPU 4-bit defect on" in pareto
    assert "Pareto-optimal" in pareto and "Pareto-optimal nf4" not in pareto and "nf4 (CIDEr-D" not in pareto
    assert "nf4 (quality warning: its CIDEr-D does not measure its method)" in pareto
    assert page.count('class="flag" title="on a CPU, bitsandbytes') == 2  # the headline and the intervals tables
