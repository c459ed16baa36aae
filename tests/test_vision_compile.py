"""The fast engine's compiled vision tower (regional compilation) and torch's compile caches (CPU, tiny model).

One shared compilation (dynamo with the aot_eager backend: tracing, functionalisation and
decomposition as inductor gets them, without C++ code generation, which takes about 40 s on a CPU)."""
from __future__ import annotations

import os

import pytest
import torch

from vlmbench.engines import compile_cache, vision_attention as va
from vlmbench.engines.vision_compile import (compile_vision_blocks, eager_vision_blocks, vision_compiled,
                                             vision_plan)


@pytest.fixture(scope="module")
def tiny_fast(tmp_path_factory):
    """The tiny Qwen2.5-VL (fp16 on CPU) with varlen vision attention, its processor and 3 images of 112 px."""
    import numpy as np
    from PIL import Image
    from vlmbench.config import from_plain
    from vlmbench.models.loading import build_processor, load_variant_model, random_weights_dir
    from vlmbench.quantize.variants import get_variant
    from tests.conftest import TINY, merge
    cfg = from_plain(merge(TINY, {"inference": {"img_size": 112}, "results_dir": str(tmp_path_factory.mktemp("r"))}))
    processor = build_processor(cfg)
    model = load_variant_model(cfg, get_variant("fp16"), str(random_weights_dir(cfg, processor)), "cpu")
    va.use_for_vision(model)
    images = [Image.fromarray(np.random.RandomState(i).randint(0, 255, (112, 112, 3), dtype=np.uint8))
              for i in range(3)]
    return processor, model, images


def _greedy(model, processor, images):
    from transformers import GenerationConfig
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>Caption:"] * len(images), images=images,
                       return_tensors="pt", padding=True)
    config = GenerationConfig(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        return model.generate(**inputs, generation_config=config)


def test_regional_compilation_has_no_graph_break_and_keeps_greedy_tokens(tiny_fast):
    """Each vision block compiled: one traced graph serves every block and both micro-batch sizes (3 images,
    then 1: dynamic shapes), with no graph break (max_seqlen comes from outside the blocks, the attention
    kernel is a custom op); greedy tokens equal the eager tower's."""
    processor, model, images = tiny_fast
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    assert compile_vision_blocks(model, backend="aot_eager") == model.config.vision_config.depth
    try:
        with eager_vision_blocks(model):  # the same weights, blocks uncompiled
            assert not vision_compiled(model)
            eager = [_greedy(model, processor, images), _greedy(model, processor, images[:1])]
        assert vision_compiled(model) and counters["stats"]["unique_graphs"] == 0
        compiled = [_greedy(model, processor, images), _greedy(model, processor, images[:1])]
        again = _greedy(model, processor, images)
    finally:
        for block in model.model.visual.blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1  # 2 blocks (window and full attention), 2 micro-batch sizes
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled)) and torch.equal(again, eager[0])


def test_cuda_varlen_kernel_path_traces_as_one_graph_with_a_symbolic_max_length():
    """The branch the H200 takes (torch's varlen_attn, fp16), traced on meta tensors with fullgraph=True:
    a graph break or an int() of the symbolic max length would fail here."""
    kernel = va._choose_kernel("cuda", torch.float16)
    if not kernel[0].startswith("torch"):
        pytest.skip(f"this torch has no varlen_attn ({kernel[0]})")
    va._CHOSEN[("meta", torch.float16)] = kernel
    try:
        traced = torch.compile(va.varlen_attention, backend="eager", fullgraph=True, dynamic=True)
        for tokens, segments, longest in ((192, 4, 48), (300, 3, 100)):
            q = torch.empty(1, 2, tokens, 8, dtype=torch.float16, device="meta")
            cu = torch.arange(0, tokens + 1, tokens // segments, dtype=torch.int32)
            out, _ = traced(None, q, q, q, None, scaling=None, cu_seq_lens_q=cu, max_length_q=longest)
            assert out.shape == (1, tokens, 2, 8)
    finally:
        del va._CHOSEN[("meta", torch.float16)]
        torch._dynamo.reset()


def test_vision_plan_per_switch_device_and_int8_tower():
    assert vision_plan("cuda", True, False) == (True, vision_plan("cuda", True, False)[1])
    compiled, why = vision_plan("cuda", True, True)  # int8 and int8_vit: bitsandbytes layers in the tower
    assert compiled and "bitsandbytes" in why and "1.30x" in why
    compiled, why = vision_plan("cuda", False, False)
    assert not compiled and "inference.compile_vision is false" in why
    compiled, why = vision_plan("cpu", True, False)
    assert not compiled and "no CUDA device" in why


def test_fast_engine_records_the_vision_plan_and_the_switch(tiny_fast, tmp_path):
    from vlmbench.config import from_plain
    from vlmbench.engines.fast import FastEngine
    from tests.conftest import TINY, merge
    processor, model, _ = tiny_fast
    cfg = from_plain(merge(TINY, {"inference": {"compile_vision": False}, "results_dir": str(tmp_path)}))
    report = FastEngine(model, processor, cfg, None, "cpu").report
    assert report["vision_compiled"] is False and "compile_vision is false" in report["vision_compiled_reason"]
    assert not vision_compiled(model)
    assert "inference.compile_vision" not in cfg.result_fields()  # a speed setting, recorded per variant


def test_compile_cache_goes_to_the_vlmbench_cache_unless_the_user_chose_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("VLMBENCH_CACHE", str(tmp_path / "vc"))
    monkeypatch.delenv(compile_cache.CACHE_ENV, raising=False)
    used = compile_cache.use_compile_cache()
    assert used["dir"] == str(tmp_path / "vc" / "torch-compile") == os.environ[compile_cache.CACHE_ENV]
    assert (tmp_path / "vc" / "torch-compile").is_dir() and "vlmbench cache" in used["dir_source"]
    assert used["fx_graph_cache"] is True  # torch's default, which vlmbench relies on
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    monkeypatch.setenv(compile_cache.CACHE_ENV, default_cache_dir())  # what importing bitsandbytes leaves there
    assert compile_cache.use_compile_cache()["dir"] == str(tmp_path / "vc" / "torch-compile")
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / "mine"))
    used = compile_cache.use_compile_cache()
    assert used["dir"] == str(tmp_path / "mine") and "set in the environment" in used["dir_source"]


def test_cache_state_reads_hits_and_misses_of_one_warm_up():
    zero = {"fxgraph_cache_hit": 0, "fxgraph_cache_miss": 0, "autograd_cache_hit": 0, "autograd_cache_miss": 0,
            "graphs_compiled": 0, "graph_breaks": 0}
    warm = compile_cache.cache_state(zero, {**zero, "fxgraph_cache_hit": 1, "autograd_cache_hit": 1,
                                            "autograd_cache_miss": 1})  # what a warm second run counted (CPU)
    assert warm["state"] == "warm" and warm["autograd_cache_miss"] == 1
    cold = compile_cache.cache_state({**zero, "fxgraph_cache_hit": 5}, {**zero, "fxgraph_cache_hit": 5,
                                                                         "fxgraph_cache_miss": 2})
    assert cold["state"] == "cold" and cold["fxgraph_cache_miss"] == 2 and cold["fxgraph_cache_hit"] == 0
    assert compile_cache.cache_state(zero, {**zero, "fxgraph_cache_hit": 1, "fxgraph_cache_miss": 1})["state"] == \
        "partly warm"
    assert compile_cache.cache_state(zero, zero)["state"] == "nothing compiled"
    assert set(compile_cache.cache_counts()) == set(zero)
