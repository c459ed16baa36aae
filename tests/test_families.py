"""Every supported family (vlmbench.models.families) on a CPU: its table row against the installed transformers,
its tiny model through fp16, int8 and int8_vit end to end, its processor built in code, and the refusals.

A family whose in-code module (vlmbench/models/tiny/<module>.py) is not in this checkout is skipped with the
reason, so the table can name it before that module is merged.
"""
import copy
import hashlib
import json
import shutil

import pytest

from tests.conftest import ROOT, TINY, merge
from tests.inprocess import run_pytest
from vlmbench.config import ConfigError, from_plain, load_config
from vlmbench.models.families import FAMILIES, get_family, known_families

EARLIER_TINY_KEY = "70fcf417555608de"  # the random-weight cache key of TINY before families existed (commit 859e66a)
EARLIER_TINY_FINGERPRINT = "d2f318bf3fb8dcc1"  # TINY's fingerprint then


def _family(model_type: str):
    return FAMILIES[model_type]


def _tiny_cfg(model_type: str, extra: dict | None = None):
    """TINY (random weights, tiny) of `model_type`, with `extra` merged in."""
    return from_plain(merge(merge(TINY, {"model": {"architecture": model_type}}), extra or {}))


@pytest.fixture(scope="session")
def tiny_models():
    """model_type -> (config, processor, the tiny fp16 model with random weights), built once per session and cached
    on disk, where the end-to-end runs below find the same weights."""
    from vlmbench.models.loading import build_processor, load_variant_model, random_weights_dir
    from vlmbench.quantize.variants import get_variant
    built = {}

    def get(model_type):
        if model_type not in built:
            cfg = _tiny_cfg(_family(model_type).model_type)
            processor = build_processor(cfg)
            model = load_variant_model(cfg, get_variant("fp16"), str(random_weights_dir(cfg, processor)), "cpu")
            built[model_type] = cfg, processor, model
        return built[model_type]
    return get


# ---------------------------------------------------------------- the table against transformers
@pytest.mark.parametrize("model_type", known_families())
def test_prefixes_name_modules_and_cover_every_linear(model_type, tiny_models):
    """Each prefix is a module of the family's model; every Linear falls in vision, language_model or lm_head."""
    from torch import nn
    from vlmbench.quantize.census import take_census
    _, _, model = tiny_models(model_type)
    names = dict(model.named_modules())
    for component, prefixes in FAMILIES[model_type].components.items():
        assert all(p in names for p in prefixes), (component, prefixes)
    census = take_census(model)
    assert "other" not in census and census["lm_head"]["linear"] == 1
    assert census["vision"]["linear"] > 0 and census["language_model"]["linear"] > 0
    linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(entry["linear"] for entry in census.values()) == linear


@pytest.mark.parametrize("model_type", known_families())
def test_flash_attention_support_is_transformers_own(model_type):
    """no_flash_reason is set exactly where transformers' class refuses flash_attention_2."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as NAMES
    model_class = getattr(transformers, NAMES[model_type])
    assert (FAMILIES[model_type].no_flash_reason is None) == bool(model_class._supports_flash_attn)


@pytest.mark.parametrize("model_type", known_families())
def test_cu_seqlens_families_are_those_with_qwens_varlen_vision_path(model_type, tiny_models):
    """cu_seqlens_vision is set exactly where the vision tower has `model.visual.blocks` whose attention takes
    cu_seqlens (what vlmbench.engines.vision_attention and vision_compile plug into)."""
    import inspect
    _, _, model = tiny_models(model_type)
    blocks = getattr(getattr(model.model, "visual", None), "blocks", None)
    takes = blocks is not None and "cu_seqlens" in inspect.signature(blocks[0].attn.forward).parameters
    assert FAMILIES[model_type].cu_seqlens_vision == takes


# ---------------------------------------------------------------- processors built in code
@pytest.mark.parametrize("model_type,size,tokens", [("qwen2_5_vl", 112, 16), ("qwen2_5_vl", 224, 64),
                                                    ("qwen2_vl", 224, 64), ("qwen3_vl", 112, 16),
                                                    ("qwen3_vl", 224, 49)])
def test_qwen_processors_built_in_code_give_the_family_image_tokens(model_type, size, tokens, monkeypatch):
    """No files and no network (the Hub is switched off); the image becomes Family.image_tokens tokens."""
    from huggingface_hub import constants
    from PIL import Image
    from vlmbench.models.loading import build_builtin_processor
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    family = FAMILIES[model_type]
    processor = build_builtin_processor(family)
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                           "text": "Caption:"}]}], add_generation_prompt=True, tokenize=False)
    ids = processor(text=[prompt], images=[[Image.new("RGB", (size, size))]], return_tensors="pt")["input_ids"][0]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((ids == image_id).sum()) == tokens == family.image_tokens(size)


def test_the_qwen25_shapes_and_cache_key_are_what_they_were():
    """The tiny Qwen2.5-VL moved to vlmbench/models/tiny: same config dict (hence cached weights) and fingerprint."""
    from vlmbench.models.loading import build_processor, random_model_config_dict
    for cfg in (from_plain(dict(TINY)), _tiny_cfg("qwen2_5_vl")):
        data = random_model_config_dict(cfg, build_processor(cfg))
        key = json.dumps([data, cfg.seed, cfg.precision.language_model, "cpu"], sort_keys=True).encode()
        assert hashlib.sha256(key).hexdigest()[:16] == EARLIER_TINY_KEY
    assert from_plain(dict(TINY)).fingerprint == EARLIER_TINY_FINGERPRINT  # null architecture stays out of it
    assert _tiny_cfg("qwen2_5_vl").fingerprint != EARLIER_TINY_FINGERPRINT  # a set one is a result field


def test_the_real_qwen25_shape_is_the_checkpoints(qwen_files):
    """real_config_dict's Qwen2.5-VL-3B against the checkpoint's config.json (in ../shared)."""
    from vlmbench.models.loading import build_builtin_processor
    real = json.loads((qwen_files / "config.json").read_text())
    ours = FAMILIES["qwen2_5_vl"].tiny().real_config_dict(build_builtin_processor())
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "max_position_embeddings", "rope_scaling", "tie_word_embeddings"):
        assert ours[key] == real[key], key
    assert {k: ours["vision_config"][k] for k in real["vision_config"] if k != "spatial_patch_size"} == \
        {k: v for k, v in real["vision_config"].items() if k != "spatial_patch_size"}


@pytest.mark.parametrize("model_type,billions", [("qwen2_5_vl", 3.75), ("qwen2_vl", 2.21)])
def test_real_shapes_have_the_published_parameter_count(model_type, billions):
    """Built on the meta device (no memory): within 1% of the count on the checkpoint's Hub page."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    from vlmbench.models.loading import build_builtin_processor
    family = FAMILIES[model_type]
    data = family.tiny().real_config_dict(build_builtin_processor(family))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(**copy.deepcopy(data)))
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, rel=0.01)


def test_a_tiny_model_from_a_config_dir_takes_its_family_tiny_shape_and_in_code_processor(tmp_path):
    """config_dir's config.json picks the family; model.tiny shrinks it to the family's tiny shape, whose
    processor (null: none named) is the in-code one; the context check reads the tiny shape's context."""
    from vlmbench.models.context import context_length
    from vlmbench.models.loading import build_builtin_processor, build_processor, random_model_config_dict
    family = FAMILIES["qwen3_vl"]
    (tmp_path / "config.json").write_text(json.dumps(family.tiny().real_config_dict(build_builtin_processor(family))))
    cfg = from_plain(merge(TINY, {"model": {"config_dir": str(tmp_path), "processor": None}}))
    processor = build_processor(cfg)
    assert type(processor).__name__ == "Qwen3VLProcessor" and len(processor.tokenizer) < 300  # byte-level, in code
    assert random_model_config_dict(cfg, processor) == family.tiny().tiny_config_dict(processor)
    assert context_length(cfg) == (4096, "the tiny Qwen3-VL model's text config")


# ---------------------------------------------------------------- refusals before any model loads
def test_an_unknown_architecture_is_refused_with_the_known_names_and_a_hint():
    with pytest.raises(ConfigError, match=r"model type 'qwen3vl'.*Did you mean 'qwen3_vl'\? Known families: "
                                          + ", ".join(known_families())):
        _tiny_cfg("qwen3vl")
    with pytest.raises(ConfigError, match=r"model type 'internvl'.*Known families: qwen2_5_vl, qwen2_vl"):
        get_family("internvl", "config key 'model.architecture'")


@pytest.mark.parametrize("given, meant", [("llava", "llava_onevision"), ("Qwen2.5-VL", "qwen2_5_vl"),
                                          ("Gemma 3", "gemma3"), ("SmolVLM", "smolvlm")])
def test_a_family_named_by_its_title_or_a_prefix_gets_a_did_you_mean(given, meant):
    with pytest.raises(ConfigError, match=rf"Did you mean '{meant}'\?"):
        get_family(given, "config key 'model.architecture'")


def test_an_unknown_architecture_is_refused_before_torch_is_imported(tmp_path):
    from tests.test_early_errors import _refused
    import yaml
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, {"model": {"architecture": "internvl"}})))
    found, stderr = _refused(path, tmp_path)
    assert found == {"exit": pytest.ExitCode.USAGE_ERROR, "heavy": []}, stderr
    assert "model type 'internvl'" in stderr and "Known families: qwen2_5_vl, qwen2_vl, qwen3_vl" in stderr


def test_architecture_is_refused_where_a_config_json_decides(tmp_path):
    with pytest.raises(ConfigError, match="picks the architecture of model.weights: random without model.config_dir"):
        load_config(overrides={"model": {"architecture": "gemma3"}})
    with pytest.raises(ConfigError, match="model.config_dir"):
        from_plain(merge(TINY, {"model": {"architecture": "gemma3", "config_dir": str(tmp_path)}}))


@pytest.mark.parametrize("weights", ["pretrained", "random"])
def test_a_checkpoint_of_an_unknown_model_type_is_refused_before_any_model_loads(weights, tmp_path, monkeypatch):
    """A local model (or config_dir) whose config.json names a model type outside the table: refused when the
    session identifies the model, and by load_variant_model before any quantization config or weights."""
    from transformers import AutoModelForImageTextToText
    from vlmbench.models import loading
    from vlmbench.quantize.variants import get_variant
    from vlmbench.run.session import BenchSession
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "internvl_chat", "max_position_embeddings": 4096}))
    (folder / "model.safetensors").write_bytes(b"\x00" * 8)
    key = "config_dir" if weights == "random" else "processor"
    cfg = from_plain(merge(TINY, {"model_id": str(folder), "model": {"weights": weights, "tiny": False,
                                                                     key: str(folder)}}))
    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    monkeypatch.setattr(loading, "quantization_config", lambda *a, **k: pytest.fail("quantization config built"))
    with pytest.raises(ConfigError, match=r"model type 'internvl_chat'.*Known families: qwen2_5_vl"):
        BenchSession(cfg, tmp_path / "results").identify_model()
    with pytest.raises(ConfigError, match=r"model type 'internvl_chat'"):
        loading.load_variant_model(cfg, get_variant("int8"), str(folder), "cpu")


# ---------------------------------------------------------------- attention and the fast engine
def test_flash_attention_2_is_refused_with_the_reason(monkeypatch, tmp_path):
    from vlmbench.models import loading
    from vlmbench.run.session import BenchSession
    flash = {"model": {"attn_implementation": "flash_attention_2", "device": "cpu"}}
    cfg = _tiny_cfg("gemma3", flash)
    monkeypatch.setattr(loading, "flash_attn_import_error", lambda: "flash_attn does not import (test)")
    with pytest.raises(ConfigError, match=r"'flash_attention_2' cannot run here: flash_attn does not import"):
        BenchSession(cfg, tmp_path / "results")  # refused at the session's start, before any model loads
    monkeypatch.setattr(loading, "flash_attn_import_error", lambda: None)
    assert "CUDA only" in loading.attention_refusal(cfg, "cpu")
    assert "bidirectional mask over image tokens" in loading.attention_refusal(cfg, "cuda")
    assert loading.attention_refusal(_tiny_cfg("qwen3_vl", flash), "cuda") is None


@pytest.mark.parametrize("model_type", known_families())
def test_fast_engine_uses_what_applies_and_records_why_not(model_type, tiny_models):
    """Varlen vision attention for the cu_seqlens towers only; the others keep transformers' own, with the
    reason; on CUDA the decode step is compiled where transformers' class allows it (a CPU can only plan it)."""
    from vlmbench.engines.fast import FastEngine, decode_plan
    cfg, processor, model = tiny_models(model_type)
    family = FAMILIES[model_type]
    report = FastEngine(model, processor, cfg, None, "cpu").report
    assert report["family"] == model_type and report["vision_compiled"] is False
    if family.cu_seqlens_vision:
        assert report["vision_attention"].startswith("vlmbench_flash_varlen: reference")
    else:
        assert "not replaced" in report["vision_attention"] and "runs eagerly" in report["vision_compiled_reason"]
    compiled, why = decode_plan("cuda", None, False, type(model))
    assert compiled == type(model)._can_compile_fullgraph
    assert compiled or "_can_compile_fullgraph = False" in why
    model.set_attn_implementation("sdpa")  # the shared model back as it was


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("model_type", known_families())
def test_each_family_runs_fp16_int8_int8_vit_end_to_end(model_type, tmp_path, tiny_models):
    """The done-when run of issue 21 on 2 images: a summary whose census shows the vision tower quantized in both
    int8 variants and the language model in int8 alone, every Linear layer counted in a component."""
    tiny_models(model_type)  # skips a family without its module; the weights are cached for the run
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"
    settings = ("model.weights=random", "model.tiny=true", f"model.architecture={model_type}",
                "variants=[fp16, int8, int8_vit]", "dataset.limit=2", "inference.batch_size=2",
                "inference.micro_batch_size=2", "inference.max_new_tokens=3", "measure.latency_images=1",
                "measure.model_size=false", "quality.meteor=false")
    run = run_pytest(sandbox, "benchmarks", "--vlm-config", str(ROOT / "configs" / "smoke.yaml"), "-p",
                     "no:cacheprovider", "--vlm-results", str(results), *[f"--vlm-set={s}" for s in settings])
    assert run.ret == 0, "\n".join(run.outlines[-30:] + run.errlines[-30:])
    run.assert_outcomes(passed=3)
    summary = json.loads((results / "summary_latest.json").read_text())["variants"]
    quantized = {name: {c: (e["quantized"], e["linear"]) for c, e in summary[name]["census"].items()}
                 for name in ("fp16", "int8", "int8_vit")}
    vision, lm = quantized["fp16"]["vision"][1], quantized["fp16"]["language_model"][1]
    assert quantized == {"fp16": {"vision": (0, vision), "language_model": (0, lm), "lm_head": (0, 1)},
                         "int8": {"vision": (vision, vision), "language_model": (lm, lm), "lm_head": (0, 1)},
                         "int8_vit": {"vision": (vision, vision), "language_model": (0, lm), "lm_head": (0, 1)}}
    assert all(summary[name]["images_captioned"] == 2 for name in quantized)


@pytest.mark.parametrize("model_type", known_families())
def test_every_cpu_method_quantizes_each_family_where_its_definition_says(model_type, tiny_models):
    """Beyond int8: bitsandbytes 4-bit and torchao int8 on each family's components, proven by the census."""
    from vlmbench.models.loading import load_variant_model, random_weights_dir
    from vlmbench.quantize.census import check_census, take_census
    from vlmbench.quantize.variants import get_variant
    cfg, processor, _ = tiny_models(model_type)
    source = str(random_weights_dir(cfg, processor))
    for name in ("nf4", "fp4_lm", "w8a16_vit", "w8a8"):
        variant = get_variant(name)
        census = take_census(load_variant_model(cfg, variant, source, "cpu"), variant)
        check_census(census, variant)  # CensusMismatch unless exactly the named components are quantized
        assert census["vision"]["quantized"] == (census["vision"]["linear"] if "vision" in variant.components else 0)
