"""Inference engines: selection and fingerprint, varlen vision attention against the stock path, the
fast engine's decode plan and its padding of a short last micro-batch (CPU, tiny model)."""
from __future__ import annotations

import pytest
import torch
import yaml

from vlmbench.config import ConfigError, load_config
from vlmbench.engines import build_engine, resolve_engine
from vlmbench.engines import vision_attention as va
from vlmbench.engines.fast import FastEngine, decode_plan
from vlmbench.engines.stock import StockEngine


# ---------------------------------------------------------------- selection
def test_auto_resolves_per_device_and_the_engine_is_in_the_fingerprint():
    cfg = load_config()
    assert cfg.inference.engine == "auto"
    assert resolve_engine("auto", "cuda") == "fast" and resolve_engine("auto", "cpu") == "stock"
    assert resolve_engine("fast", "cpu") == "fast"
    fast, stock = cfg.with_engine("cuda"), cfg.with_engine("cpu")
    assert (fast.inference.engine, stock.inference.engine) == ("fast", "stock")
    assert fast.fingerprint != stock.fingerprint
    assert "inference.engine" in fast.result_fields()


def test_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="inference.engine.*auto, stock, fast"):
        load_config(overrides={"inference.engine": "turbo"})


def test_session_records_requested_and_resolved_engine(write_config, tmp_path):
    from vlmbench.run.session import BenchSession
    session = BenchSession(load_config(write_config()), tmp_path / "r")
    assert session.cfg.inference.engine == "stock"  # auto on a CPU machine
    session.claim_folder()
    session.start()
    session.release_folder()
    snapshot = yaml.safe_load(next((tmp_path / "r").glob("experiment_config_*.yaml")).read_text())
    assert snapshot["inference"]["engine"] == "stock"
    assert snapshot["resolved"]["engine_requested"] == "auto" and snapshot["resolved"]["engine"] == "stock"
    assert snapshot["fingerprint"] == session.cfg.fingerprint


def test_micro_batch_size_accepts_auto_and_null_but_not_zero():
    assert load_config(overrides={"inference.micro_batch_size": "auto"}).inference.micro_batch_size is None
    assert load_config(overrides={"inference.micro_batch_size": None}).inference.micro_batch_size is None
    with pytest.raises(ConfigError, match="micro_batch_size.*auto"):
        load_config(overrides={"inference.micro_batch_size": 0})


# ---------------------------------------------------------------- decode plan
def test_decode_plan_compiles_only_on_cuda_and_not_where_decoding_runs_bitsandbytes_layers():
    assert decode_plan("cuda", None, False)[0] is True
    compiled, why = decode_plan("cuda", False, True)
    assert compiled is False and why.startswith("not compiled:") and "bitsandbytes" in why
    compiled, why = decode_plan("cuda", False, False)  # int8_vit: int8 in the vision tower only
    assert compiled is True and "vision tower only" in why
    compiled, why = decode_plan("cpu", None, False)
    assert compiled is False and "no CUDA device" in why


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory):
    """The tiny Qwen2.5-VL as int8 and int8_vit (bitsandbytes on CPU), with its config and processor."""
    from vlmbench.config import from_plain
    from vlmbench.models.loading import build_processor, load_variant_model, random_weights_dir
    from vlmbench.quantize.variants import get_variant
    from tests.conftest import TINY, merge
    cfg = from_plain(merge(TINY, {"results_dir": str(tmp_path_factory.mktemp("r"))}))
    processor = build_processor(cfg)
    source = str(random_weights_dir(cfg, processor))
    return cfg, processor, {name: load_variant_model(cfg, get_variant(name), source, "cpu")
                            for name in ("int8", "int8_vit")}


def test_only_int8_vit_decodes_without_bitsandbytes_layers(tiny_int8):
    from vlmbench.engines.fast import decode_path_int8, quantizer_compileable
    _, _, models = tiny_int8
    assert quantizer_compileable(models["int8_vit"]) is False  # transformers' model-wide verdict
    assert decode_path_int8(models["int8"]) is True and decode_path_int8(models["int8_vit"]) is False


def test_hidden_quantizer_makes_transformers_compile_int8_vit_decoding_with_equal_tokens(tiny_int8):
    """The bypass against the installed transformers: its compile check flips, the quantizer comes back,
    and greedy tokens of the compiled decode step (dynamo, eager backend on CPU) equal plain decoding."""
    from transformers import CompileConfig, GenerationConfig
    from vlmbench.engines.fast import quantizer_hidden_from_compile_check
    _, processor, models = tiny_int8
    model = models["int8_vit"]
    compile_config = CompileConfig(backend="eager")
    compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told

    class CompileableCache:
        is_compileable = True
    plan = GenerationConfig(compile_config=compile_config)
    assert model._valid_auto_compile_criteria({"cache": CompileableCache()}, plan) is False
    with quantizer_hidden_from_compile_check(model):
        assert model.hf_quantizer is None
        assert model._valid_auto_compile_criteria({"cache": CompileableCache()}, plan) is True
    assert model.hf_quantizer is not None
    with pytest.raises(RuntimeError), quantizer_hidden_from_compile_check(model):
        raise RuntimeError("generate failed")
    assert model.hf_quantizer is not None
    import numpy as np
    from PIL import Image
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (56, 56, 3), dtype=np.uint8))
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>Caption:"] * 2, images=[image, image],
                       return_tensors="pt", padding=True)
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        plain = model.generate(**inputs, generation_config=GenerationConfig(**greedy))
        torch._dynamo.reset()
        counters = torch._dynamo.utils.counters
        counters.clear()
        with quantizer_hidden_from_compile_check(model):
            compiled = model.generate(**inputs, generation_config=GenerationConfig(
                **greedy, cache_implementation="static", compile_config=compile_config))
    assert counters["stats"]["unique_graphs"] >= 1  # the decode step went through dynamo
    assert torch.equal(plain, compiled)


def test_int8_vision_blocks_compile_in_a_bounded_number_of_pieces(tiny_int8):
    """int8_vit's vision blocks under regional compilation (dynamo, eager backend): the graph breaks at the
    bitsandbytes int8 ops into pieces shared by both blocks; a piece recompiles when an outlier count or
    a size is first seen again differently (0/1 specialisation), but once a micro-batch size has run
    twice, new images of that size compile nothing; the output equals the eager tower's. About 10 s on
    a CPU (dynamo traces bitsandbytes' Python): the only check of the int8 path short of a GPU."""
    import numpy as np
    from PIL import Image
    from vlmbench.engines.vision_compile import compile_vision_blocks
    _, processor, models = tiny_int8
    visual = models["int8_vit"].model.visual

    def tower(seed, n):
        images = [Image.fromarray(np.random.RandomState(seed + i).randint(0, 255, (56, 56, 3), dtype=np.uint8))
                  for i in range(n)]
        inputs = processor.image_processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            return visual(inputs["pixel_values"].half(), grid_thw=inputs["image_grid_thw"]).pooler_output
    eager = tower(0, 2)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compile_vision_blocks(models["int8_vit"], backend="eager")
    try:
        compiled = tower(0, 2)
        tower(10, 2)
        frames = [counters["frames"]["total"]]
        tower(20, 2)
        frames.append(counters["frames"]["total"])
        tower(30, 1), tower(60, 1)
        frames.append(counters["frames"]["total"])
        tower(40, 2), tower(70, 1)
        frames.append(counters["frames"]["total"])
    finally:
        for block in visual.blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()
    assert sum(counters["graph_break"].values()) > 0  # bitsandbytes' outlier ops: data-dependent shapes
    assert frames[0] == frames[1] and frames[2] == frames[3], frames  # sizes seen twice: nothing compiles
    assert frames[2] - frames[0] <= 4, frames  # batch 1 after batch 2: a few pieces recompile (seen: 2)
    assert torch.equal(compiled, eager)


# ---------------------------------------------------------------- vision attention
def test_reference_varlen_equals_attention_per_window():
    torch.manual_seed(0)
    q, k, v = (torch.randn(30, 4, 8) for _ in range(3))
    cu = torch.tensor([0, 7, 19, 30], dtype=torch.int32)
    out = va.reference_varlen(q, k, v, cu, scale=None)
    for start, end in ((0, 7), (7, 19), (19, 30)):
        scores = (q[start:end].transpose(0, 1) @ k[start:end].transpose(0, 1).transpose(1, 2)) / 8 ** 0.5
        expected = (scores.softmax(-1) @ v[start:end].transpose(0, 1)).transpose(0, 1)
        assert torch.allclose(out[start:end], expected, atol=1e-5)


def test_varlen_attention_refuses_calls_without_segments():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        va.varlen_attention(None, q, q, q, None)


def test_kernel_choice_on_cpu_and_fp32_is_the_reference():
    assert va.kernel_name("cpu", torch.float16).startswith("reference")
    assert va.kernel_name("cuda", torch.float32).startswith("reference")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny Qwen2.5-VL in fp32 on CPU, its processor and 3 images of 224 px (4 windows each)."""
    import numpy as np
    from PIL import Image
    from vlmbench.config import from_plain
    from vlmbench.models.loading import build_processor, load_variant_model, random_weights_dir
    from vlmbench.quantize.variants import get_variant
    from tests.conftest import TINY, merge
    cfg = from_plain(merge(TINY, {"precision": {"language_model": "fp32"}, "inference": {"img_size": 224},
                                  "results_dir": str(tmp_path_factory.mktemp("r"))}))
    processor = build_processor(cfg)
    model = load_variant_model(cfg, get_variant("fp16"), str(random_weights_dir(cfg, processor)), "cpu")
    images = [Image.fromarray(np.random.RandomState(i).randint(0, 255, (224, 224, 3), dtype=np.uint8))
              for i in range(3)]
    return cfg, processor, model, images


def _vision(model, inputs):
    with torch.no_grad():
        return model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output


def test_varlen_vision_attention_is_selected_for_vision_only_and_equals_stock(tiny, monkeypatch):
    cfg, processor, model, images = tiny
    inputs = processor.image_processor(images=images, return_tensors="pt")
    stock = _vision(model, inputs)
    calls = []
    real = va.run_varlen
    monkeypatch.setattr(va, "run_varlen", lambda q, k, v, cu, m, s: calls.append(cu.tolist()) or real(q, k, v, cu, m, s))
    try:
        kernel = va.use_for_vision(model)
        assert kernel.startswith("reference")
        assert model.config.vision_config._attn_implementation == va.VARLEN_ATTENTION
        assert model.config.text_config._attn_implementation == "sdpa"
        fast = _vision(model, inputs)
    finally:
        model.set_attn_implementation({"vision_config": "sdpa"})
    depth = model.config.vision_config.depth
    assert len(calls) == depth  # one call per layer, not one per window
    assert len(calls[0]) - 1 == 3 * 4  # window layer: 4 windows per 224 px image
    assert len(calls[1]) - 1 == 3  # full-attention layer: one segment per image
    assert float((fast - stock).norm() / stock.norm()) < 1e-5


# ---------------------------------------------------------------- fast engine padding
class PadTo4(FastEngine):
    def padded_size(self, images, micro_batch_size):
        return 4 if images < 4 else None


def test_short_last_micro_batch_is_padded_and_extra_outputs_dropped(tiny):
    from vlmbench.data.sources import ImageRow
    from vlmbench.data.images import LoadedImage
    from vlmbench.run.runner import Captioner, MicroBatch
    cfg, processor, model, images = tiny
    engine = PadTo4(model, processor, cfg, None, "cpu")
    try:
        assert engine.report["engine"] == "fast" and engine.report["decode_compiled"] is False
        captioner = Captioner(model, processor, cfg, "cpu", engine, micro_batch_size=4)
        ok = [LoadedImage(ImageRow(i, f"{i}.jpg", "", ()), image=img, error="") for i, img in enumerate(images)]
        batch = MicroBatch(0, ok, [])
        batch.padding = 1
        batch.inputs, batch.ready = captioner._process(images + [images[-1]])
        assert batch.inputs["input_ids"].shape[0] == 4
        captions, generate_s = captioner.generate(batch)
        assert len(captions) == 3 and generate_s > 0
    finally:
        model.set_attn_implementation({"vision_config": "sdpa"})


def test_build_engine_needs_a_resolved_name(tiny):
    cfg, processor, model, _ = tiny
    assert isinstance(build_engine("stock", model, processor, cfg, None, "cpu"), StockEngine)
    with pytest.raises(ValueError, match="resolve_engine"):
        build_engine("auto", model, processor, cfg, None, "cpu")


def test_report_resolves_auto_as_the_run_did(tmp_path):
    from vlmbench.cli import engine_as_run
    from vlmbench.results.records import write_config_snapshot
    cfg = load_config()
    write_config_snapshot(tmp_path, cfg.with_engine("cuda"), "20261129T000000")  # a GPU run's folder
    assert engine_as_run(cfg, tmp_path).inference.engine == "fast"
    assert engine_as_run(cfg.with_engine("cpu"), tmp_path).inference.engine == "stock"  # a named engine is kept


def test_report_resolves_the_engine_of_a_gpu_run_after_its_model_identity(tmp_path):
    """vlmbench-report --config on a CPU machine, for a folder a GPU run made with the embedded model: the
    recorded fingerprint holds the identity, so the identity must be known before the engine is matched."""
    from vlmbench.cli import engine_as_run, identity_as_run
    from vlmbench.models.loading import with_model_identity
    from vlmbench.results.records import write_config_snapshot
    cfg = load_config("configs/smoke.yaml")
    gpu_run = with_model_identity(cfg).with_engine("cuda")
    write_config_snapshot(tmp_path, gpu_run, "20260101T000000")
    resolved = engine_as_run(identity_as_run(cfg), tmp_path)
    assert resolved.inference.engine == "fast" and resolved.fingerprint == gpu_run.fingerprint
