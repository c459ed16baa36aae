"""The quantization methods (issue 18): variant_definitions, hardware refusals, and one end-to-end run of every
method a CPU runs (bitsandbytes NF4/FP4, torchao W8A16/W8A8, two prequantized checkpoints) with its census."""
import json
import shutil

import pytest

from tests.conftest import ROOT, TINY, merge
from vlmbench.config import ConfigError, ExperimentConfig, build, from_plain
from vlmbench.quantize.methods import get_method, unmet_requirement


def _config(**extra):
    return build(ExperimentConfig, merge(TINY, extra))


@pytest.mark.parametrize("definitions, variants, message", [
    ({"lm4": {"method": "nf5", "components": ["language_model"]}}, ["fp16", "lm4"],
     r"variant_definitions': variant 'lm4': unknown quantization method 'nf5'\. Did you mean 'nf4'\? Known methods: int8, nf4, fp4, w8a16, w8a8, fp8, w4a16, prequantized\.$"),
    ({"lm4": {"method": "nf4", "components": ["langauge_model"]}}, ["fp16", "lm4"],
     r"unknown component\(s\) 'langauge_model'; Did you mean 'langauge_model' -> 'language_model'\? allowed: vision, language_model"),
    ({"v4": {"method": "nf4", "components": ["vit"]}}, ["fp16", "v4"], r"Did you mean 'vit' -> 'vision'\?"),
    ({"lm4": {"method": "nf4"}}, ["fp16", "lm5"], r"unknown variant 'lm5'\. Did you mean 'lm4'\?.*Known variants: .*lm4"),
    ({"pq": {"method": "prequantized"}}, ["fp16", "pq"], r"model_id is required for method prequantized"),
    ({"lm4": {"method": "nf4", "options": {"group_size": 64}}}, ["fp16", "lm4"], r"method 'nf4' has no option\(s\) 'group_size'"),
    ({"nf4": {"method": "nf4"}}, ["fp16", "nf4"], r"variant 'nf4' is built in"),
    # a name becomes a file name: "../evil" wrote its chunks beside the results folder
    ({"../evil": {"method": "w8a16"}}, ["fp16", "../evil"], r"variant name '\.\./evil' is not allowed: use 1-64 letters"),
    ({"a b": {"method": "w8a16"}}, ["fp16", "a b"], r"variant name 'a b' is not allowed"),
    ({"x_batch_1": {"method": "w8a16"}}, ["fp16", "x_batch_1"], r"without '_batch_'"),
    # option values are checked before any model loads (they failed in the library after fp16 had run)
    ({"t": {"method": "int8", "options": {"threshold": "abc"}}}, ["fp16", "t"],
     r"option 'threshold' of method 'int8' is 'abc', but must be a number \(the default is 6\.0\)"),
    ({"t": {"method": "int8", "options": {"threshold": -1}}}, ["fp16", "t"], r"but must be 0 or more"),
    ({"t": {"method": "int8", "options": {"threshold": float("nan")}}}, ["fp16", "t"], r"but must be a finite number"),
    ({"q": {"method": "nf4", "options": {"double_quant": "yes_please"}}}, ["fp16", "q"], r"but must be true or false"),
    ({"g": {"method": "w4a16", "options": {"group_size": 100}}}, ["fp16", "g"], r"but must be one of 32, 64, 128, 256"),
])
def test_bad_variant_definitions_are_refused_with_the_fix(definitions, variants, message):
    with pytest.raises(ConfigError, match=message):
        _config(variants=variants, variant_definitions=definitions)


def test_an_integer_threshold_is_passed_to_bitsandbytes_as_a_float():
    import torch
    from vlmbench.quantize.bnb import quantization_config
    from vlmbench.quantize.variants import get_variant
    definitions = {"t4": {"method": "int8", "options": {"threshold": 4}}}
    _config(variants=["fp16", "t4"], variant_definitions=definitions)  # accepted
    from vlmbench.models.families import FAMILIES
    config = quantization_config(get_variant("t4", definitions), torch.float16, FAMILIES["qwen2_5_vl"].components)
    assert config.llm_int8_threshold == 4.0 and isinstance(config.llm_int8_threshold, float)


def test_int8_has_a_language_model_only_placement_like_every_method():
    from vlmbench.quantize.variants import get_variant
    assert get_variant("int8_lm").components == frozenset({"language_model"})
    from vlmbench.models.families import FAMILIES
    assert get_variant("int8_lm").skip_modules(FAMILIES["qwen2_5_vl"].components) == ["model.visual", "lm_head"]


def test_a_definition_enters_its_own_variants_fingerprint_only():
    """Per-variant fingerprints: a definition changes its variant's fingerprint, never the experiment's nor
    another variant's, so an experiment can be extended by a new variant without starting over."""
    lm4_def = {"method": "nf4", "components": ["language_model"]}
    plain = _config(variants=["fp16", "nf4_lm"])
    lm4 = _config(variants=["fp16", "lm4"], variant_definitions={"lm4": lm4_def})
    lm4_vision = _config(variants=["fp16", "lm4"], variant_definitions={"lm4": {**lm4_def, "components": ["vision"]}})
    extended = _config(variants=["fp16", "lm4", "vit4"],
                       variant_definitions={"lm4": lm4_def, "vit4": {"method": "nf4", "components": ["vision"]}})
    assert plain.fingerprint == lm4.fingerprint == lm4_vision.fingerprint == extended.fingerprint
    assert {c.variant_fingerprint("fp16") for c in (lm4, lm4_vision, extended)} == {plain.fingerprint}
    assert plain.variant_fingerprint("nf4_lm") == plain.fingerprint  # built in: the experiment's
    assert lm4.variant_fingerprint("lm4") == extended.variant_fingerprint("lm4") != plain.fingerprint
    assert lm4_vision.variant_fingerprint("lm4") != lm4.variant_fingerprint("lm4")
    assert extended.variant_fingerprint("vit4") not in (lm4.variant_fingerprint("lm4"), plain.fingerprint)
    assert "variant_definitions" not in json.dumps(plain.result_fields())
    assert "variant_definitions" not in json.dumps(lm4.experiment_fields())
    assert lm4.variant_fields("lm4")["variant_definitions.lm4.components"] == ["language_model"]


def test_a_config_without_definitions_keeps_the_fingerprint_it_had_before_per_variant_fingerprints():
    """Pinned values computed before the change: finished results without definitions stay this experiment's."""
    assert _config().fingerprint == "d2f318bf3fb8dcc1"
    assert _config().with_engine("cpu").fingerprint == "6c8a1045055b0a46"


@pytest.mark.parametrize("same", [
    {"method": "nf4", "components": ["language_model"], "options": {"double_quant": False}},  # a default spelt out
    {"method": "nf4", "components": ["language_model"], "description": "my 4-bit language model"},  # words only
])
def test_a_definition_written_another_way_keeps_its_fingerprint(same):
    """A trial found `threshold: 4` then `4.0`, a default spelt out, or components reordered refusing finished
    chunks as another definition: the fingerprint hashes the canonical definition."""
    lm4 = {"method": "nf4", "components": ["language_model"]}
    assert _config(variants=["fp16", "lm4"], variant_definitions={"lm4": lm4}).variant_fingerprint("lm4") \
        == _config(variants=["fp16", "lm4"], variant_definitions={"lm4": same}).variant_fingerprint("lm4")


def test_threshold_4_and_4_0_and_reordered_components_are_one_definition():
    def fingerprint(spec):
        return _config(variants=["fp16", "t"], variant_definitions={"t": spec}).variant_fingerprint("t")
    assert fingerprint({"method": "int8", "options": {"threshold": 4}}) == fingerprint(
        {"method": "int8", "options": {"threshold": 4.0}, "components": ["language_model", "vision"]}) \
        == fingerprint({"method": "int8", "options": {"threshold": 4.0}, "components": ["vision", "language_model"]})
    assert fingerprint({"method": "int8", "options": {"threshold": 5}}) != fingerprint({"method": "int8"})


def test_gpu_only_methods_are_refused_on_a_cpu_before_any_model_loads(tmp_path, monkeypatch):
    from vlmbench.models import loading
    from vlmbench.run.session import BenchSession
    monkeypatch.setattr(loading, "load_variant_model", lambda *a, **k: pytest.fail("a model was loaded"))
    cfg = _config(variants=["fp16", "fp8", "w4a16_vit"], model={"device": "cpu"})
    with pytest.raises(ConfigError) as refused:
        BenchSession(cfg, tmp_path)
    assert "variant 'fp8' cannot run here: method 'fp8'" in str(refused.value)
    assert "needs a CUDA GPU of compute capability 8.9 or more (H100, H200, L4, RTX 40xx); this run's device is cpu" \
        in str(refused.value)
    assert "so its variants run in bf16)) needs a CUDA GPU; this run's device is cpu" in str(refused.value)
    assert "variant 'w4a16_vit' cannot run here" in str(refused.value)


def test_fp8_needs_compute_capability_8_9():
    fp8 = get_method("fp8")
    assert "compute capability 8.9 or more" in unmet_requirement(fp8, "cuda", (8, 0))
    assert unmet_requirement(fp8, "cuda", (9, 0)) is None
    assert unmet_requirement(get_method("nf4"), "cpu", None) is None


def test_a_prequantized_checkpoint_names_its_missing_package(tmp_path):
    from vlmbench.run.session import BenchSession
    (tmp_path / "awq").mkdir()
    (tmp_path / "awq" / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    cfg = _config(variants=["fp16", "qwen_awq"], model={"device": "cpu"},
                  variant_definitions={"qwen_awq": {"method": "prequantized", "model_id": str(tmp_path / "awq")}})
    with pytest.raises(ConfigError, match=r"is a awq checkpoint and needs gptqmodel: pip install gptqmodel"):
        BenchSession(cfg, tmp_path / "results")


# ---------------------------------------------------------------- one end-to-end run of the CPU methods
def _save_quantized(source, target, quantization_config):
    """A tiny checkpoint quantized by transformers and saved with save_pretrained (what a user downloads)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(source, dtype=torch.float16,
                                                               quantization_config=quantization_config)
    model.save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def prequantized_checkpoints(tmp_path_factory):
    """A bitsandbytes NF4 checkpoint (language model only) and a torchao W8A16 checkpoint (everything but lm_head)."""
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import BitsAndBytesConfig, TorchAoConfig
    from vlmbench.models.loading import build_processor, weights_dir
    cfg = _config()
    source = weights_dir(cfg, build_processor(cfg), "cpu")
    folder = tmp_path_factory.mktemp("prequantized")
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             llm_int8_skip_modules=["model.visual", "lm_head"])
    ao = TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=["lm_head"])
    return {"pq_nf4": _save_quantized(source, folder / "nf4", nf4), "pq_w8a16": _save_quantized(source, folder / "ao", ao)}


ALL, NONE = "all", 0
EXPECTED = {  # variant -> (vision, language_model) quantized layers, and the method the census must name
    "fp16": ((NONE, NONE), None), "nf4": ((ALL, ALL), "bitsandbytes Linear4bit (nf4)"),
    "fp4_lm": ((NONE, ALL), "bitsandbytes Linear4bit (fp4)"), "w8a16_vit": ((ALL, NONE), "torchao Int8Tensor"),
    "w8a8": ((ALL, ALL), "torchao Int8Tensor + dynamic activations"), "lm4": ((NONE, ALL), "bitsandbytes Linear4bit (nf4)"),
    "pq_nf4": ((NONE, ALL), "bitsandbytes Linear4bit (nf4)"), "pq_w8a16": ((ALL, ALL), "torchao Int8Tensor"),
}


@pytest.mark.slow
def test_every_cpu_method_runs_end_to_end_with_its_census(pytester, write_config, prequantized_checkpoints):
    shutil.copytree(ROOT / "benchmarks", pytester.path / "benchmarks")
    results = pytester.path / "results"
    definitions = {"lm4": {"method": "nf4", "components": ["language_model"]},
                   **{name: {"method": "prequantized", "model_id": path} for name, path in prequantized_checkpoints.items()}}
    config = write_config({"results_dir": str(results), "variants": list(EXPECTED), "variant_definitions": definitions,
                           "dataset": {"limit": 2}, "inference": {"batch_size": 2}, "measure": {"model_size": True}})
    run = pytester.runpytest_subprocess("benchmarks", "--vlm-config", str(config), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=len(EXPECTED))
    summary = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())["variants"]
    for name, ((vision, lm), method) in EXPECTED.items():
        census = summary[name]["census"]
        for component, want in (("vision", vision), ("language_model", lm)):
            entry = census[component]
            assert entry["quantized"] == (entry["linear"] if want == ALL else 0), (name, component, census)
        assert census["lm_head"]["quantized"] == 0, name
        assert sorted({m for e in census.values() for m in e["methods"]}) == ([method] if method else []), name
    sizes = {name: summary[name]["model_size_mb"] for name in EXPECTED}
    assert sizes["nf4"] < sizes["w8a8"] < sizes["fp16"], sizes
    assert all(summary[name]["warmup_s"] is not None for name in EXPECTED)
    run.stdout.fnmatch_lines(["*| pq_nf4 |*language_model:*(bitsandbytes Linear4bit (nf4))*"])


def test_a_model_transformers_cannot_save_gets_a_null_size_with_the_reason():
    from vlmbench.run.measure import size_on_disk_mb

    class Unsaveable:
        def save_pretrained(self, *args, **kwargs):
            raise NotImplementedError

    reading = size_on_disk_mb(Unsaveable())
    assert reading.value is None and "transformers cannot save this model again" in reading.reason


def test_the_fast_engine_compiles_torchao_decoding_and_records_why_not_for_bitsandbytes_4bit():
    from vlmbench.engines.fast import decode_path_int8, decode_plan, quantizer_compileable
    from vlmbench.models.loading import build_processor, load_variant_model, weights_dir
    from vlmbench.quantize.variants import get_variant
    cfg = _config()
    source = weights_dir(cfg, build_processor(cfg), "cpu")
    w8a16, nf4_lm = (load_variant_model(cfg, get_variant(name), source, "cpu") for name in ("w8a16", "nf4_lm"))
    assert decode_plan("cuda", quantizer_compileable(w8a16), decode_path_int8(w8a16))[0] is True
    compiled, why = decode_plan("cuda", quantizer_compileable(nf4_lm), decode_path_int8(nf4_lm))
    assert compiled is False and "is_compileable=False (bitsandbytes 8-bit and 4-bit)" in why


def test_the_methods_table_sets_each_variant_against_fp16():
    from vlmbench.results.perf_table import methods_table
    census = {"vision": {"linear": 2, "quantized": 2, "methods": {"torchao Float8Tensor": 2}},
              "language_model": {"linear": 3, "quantized": 0, "methods": {}}, "lm_head": {"linear": 1, "quantized": 0, "methods": {}}}
    summary = {"variants": {"fp16": {"throughput_img_s": 10.0, "model_size_mb": 1000.0, "warmup_s": 60.0},
                            "fp8_vit": {"throughput_img_s": 12.0, "model_size_mb": 900.0, "warmup_s": 276.0,
                                        "engine": {"decode_compiled": True}, "census": census}}}
    row = methods_table(summary).splitlines()[-1]
    assert row.startswith("| fp8_vit | 12.00 | 1.20 |") and "| 90.0% |" in row and "| 276 | True |" in row
    assert "vision:2/2 language_model:0/3 lm_head:0/1 (torchao Float8Tensor)" in row
    summary["variants"]["bf16"] = {"throughput_img_s": 6.0, "model_size_mb": 1800.0}
    summary["quality"] = {"baseline": "bf16"}  # a run whose baseline is bf16: the ratios are against it
    table = methods_table(summary).splitlines()
    assert "| x bf16 |" in table[0] and table[3].startswith("| fp8_vit | 12.00 | 2.00 |") and "| 50.0% |" in table[3]


def test_4bit_layers_whose_width_is_not_a_multiple_of_the_block_run_on_a_cpu():
    """The embedded captioner's decoder width (96) is not a multiple of bitsandbytes' 64-value block; its
    AVX512-BF16 CPU path failed on such layers ("shape '[288, 1]' is invalid") until vlmbench kept them off it."""
    import torch
    from vlmbench.models.loading import EMBEDDED_CAPTIONER_DIR, load_variant_model
    from vlmbench.quantize.variants import get_variant
    model = load_variant_model(_config(), get_variant("nf4_lm"), str(EMBEDDED_CAPTIONER_DIR), "cpu")
    layer = model.model.language_model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == "Linear4bit" and layer.in_features % layer.weight.quant_state.blocksize
    with torch.no_grad():
        assert layer(torch.randn(2, layer.in_features, dtype=torch.float16)).shape == (2, layer.out_features)


@pytest.mark.xfail(strict=True, reason="bitsandbytes 0.50.2's CPU 4-bit kernels: a row width that is not a multiple "
                                       "of the 64-value block comes back with 2.5x NF4's usual error (README, "
                                       "Quantization methods); strict, so a fixed release makes this fail and the "
                                       "README's CPU 4-bit numbers are redone (and bnb.cpu_4bit_quality_warning "
                                       "is dropped)")
def test_bitsandbytes_cpu_4bit_is_right_on_unaligned_widths():
    import torch
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit
    generator = torch.Generator().manual_seed(0)

    def nf4_error(shape):
        weight = torch.randn(*shape, generator=generator).half()
        restored = dequantize_4bit(*quantize_4bit(weight, blocksize=64, quant_type="nf4"))
        return float((restored.float() - weight.float()).norm() / weight.float().norm())

    assert nf4_error((96, 128)) < 0.12  # aligned rows: NF4's usual error, about 0.09
    assert nf4_error((96, 96)) < 0.12  # unaligned rows: about 0.24 on this bitsandbytes


def test_a_run_without_its_baseline_is_told_before_anything_runs():
    from vlmbench.run.session import baseline_notes
    assert baseline_notes(_config(variants=["fp16", "int8"])) == []
    note, = baseline_notes(_config(variants=["int8", "nf4"]))
    assert note.startswith("the baseline 'fp16' is not in variants (int8, nf4): every delta against it will be n/a")
    assert "add fp16 to variants, or set baseline to one of them" in note


def test_the_gate_compares_definitions_in_their_canonical_form():
    """The regression gate diffs summaries' configs with result_fields_of: 4 and 4.0 must not read as a change."""
    from vlmbench.config import differing_fields, result_fields_of
    old = {"variant_definitions": {"t": {"method": "int8", "options": {"threshold": 4}}}}
    new = {"variant_definitions": {"t": {"method": "int8", "options": {"threshold": 4.0}}}}
    assert differing_fields(result_fields_of(old), result_fields_of(new)) == {}
    assert result_fields_of({"seed": 1}) == result_fields_of({"seed": 1, "variant_definitions": {}})
