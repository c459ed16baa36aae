"""The `fast` engine: what the variant supports of varlen vision attention, a static KV cache with
a compiled decode step, padded micro-batches and the image processor on the device.

Why it exists: plain `generate` spends most of a micro-batch in the vision tower's per-window
attention loop and in Python between decode steps (docs/PERFORMANCE.md); the fixes are transformers'
own extension points, chosen per variant, with the reason recorded where one is not used:
- vision attention: vlmbench.engines.vision_attention (every variant of a family with a cu_seqlens vision
  tower: Qwen2-VL, Qwen2.5-VL, Qwen3-VL; the other families' towers attend over fixed-size images in one
  padded batch, which sdpa runs as one kernel already: their record says so);
- vision tower: each vision block compiled (regional compilation, vlmbench.engines.vision_compile) on
  CUDA unless `inference.compile_vision` is false (the cu_seqlens towers only); torch's compile caches
  in vlmbench's cache folder (vlmbench.engines.compile_cache);
- decoding: `cache_implementation="static"`, which makes transformers compile the decode step on
  CUDA; not for a model class transformers marks `_can_compile_fullgraph = False` (SmolVLM), and not
  where the decode step runs bitsandbytes layers (int8: a static cache without compilation was measured
  slower, 5.39 vs 6.35 img/s on an H200, and a forced compilation broke into graphs per layer and was
  slower still); int8_vit's decode step runs only 16-bit layers (census), so it is
  compiled, with the quantizer's model-wide refusal hidden from transformers' check during generate;
- padding: with a compiled decode step every new batch size compiles again (52-72 s on an H200), so
  a chunk's last, smaller micro-batch is padded to the full size with copies of its last image, and
  the extra outputs are dropped;
- preprocessing: the processor runs on the device (`device="cuda"`, torchvision backend), on a side
  stream, in the prefetch threads; it took 0.11 s instead of 0.66 s per 32 images on an H200.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import torch

from vlmbench.models.families import family_of_model
from vlmbench.quantize.census import has_method, take_census
from vlmbench.engines import vision_attention, vision_compile
from vlmbench.engines.compile_cache import use_compile_cache
from vlmbench.engines.stock import StockEngine


DECODE_UNUSED_COMPONENTS = ("vision",)  # census components a decode step never runs (pixels enter at prefill only)


NO_VARLEN = ("not replaced: {title}'s vision tower attends over each image's fixed patch grid as one padded batch, "
             "with no cu_seqlens segments for a varlen kernel to join")
NO_VISION_COMPILE = ("not compiled: regional compilation is implemented for the cu_seqlens vision towers "
                     "(model.visual.blocks) only; {title}'s tower runs eagerly")


def vision_report(model, family, cfg, device: str) -> dict:
    """Varlen vision attention and compiled vision blocks where `family` has a cu_seqlens vision tower
    (Qwen2-VL, Qwen2.5-VL, Qwen3-VL); the report's fields `vision_attention`, `vision_compiled` and
    `vision_compiled_reason`, each with its reason where not used."""
    if not family.cu_seqlens_vision:
        return {"vision_attention": f"transformers' own ({family.vision_loop} with {cfg.model.attn_implementation}): "
                                    f"{NO_VARLEN.format(title=family.title)}",
                "vision_compiled": False, "vision_compiled_reason": NO_VISION_COMPILE.format(title=family.title)}
    kernel = vision_attention.use_for_vision(model)
    return {"vision_attention": f"{vision_attention.VARLEN_ATTENTION}: {kernel}",
            **vision_compile_report(model, cfg, device)}


def vision_compile_report(model, cfg, device: str) -> dict:
    """Compiles the vision blocks where `vision_compile.vision_plan` says so; returns the report's fields
    `vision_compiled` and `vision_compiled_reason`."""
    vision_int8 = has_method(take_census(model), "vision", "bitsandbytes Linear8bitLt")
    compile_it, why = vision_compile.vision_plan(device, cfg.inference.compile_vision, vision_int8)
    if compile_it:
        vision_compile.compile_vision_blocks(model)
    return {"vision_compiled": compile_it, "vision_compiled_reason": why}


def decode_plan(device: str, quantizer_compileable: Optional[bool], decode_path_int8: bool,
                model_class: Optional[type] = None) -> tuple[bool, str]:
    """(compile the decode step with a static KV cache?, why / why not).

    `quantizer_compileable` is None for an unquantized model, else the quantizer's `is_compileable`;
    `decode_path_int8` says whether the census found bitsandbytes layers outside the vision tower;
    `model_class` is the loaded model's class, whose `_can_compile_fullgraph` says whether transformers
    compiles its forward as one graph (its own tests do); None: not asked.
    """
    if device != "cuda":
        return False, "not compiled: no CUDA device (transformers compiles the decode step on CUDA only)"
    if model_class is not None and not getattr(model_class, "_can_compile_fullgraph", False):
        return False, (f"not compiled: transformers marks {model_class.__name__} _can_compile_fullgraph = False (its "
                       "forward is not known to compile as one graph), so the cache stays dynamic")
    if quantizer_compileable is False and decode_path_int8:
        return False, ("not compiled: transformers does not compile a model whose quantizer has "
                       "is_compileable=False (bitsandbytes 8-bit and 4-bit); forced, the decode step broke into a graph per "
                       "layer, hit dynamo's recompile limit and was slower (H200, 2026-11-29: 11.2 s vs about 6.7 s "
                       "per micro-batch of 8, docs/perf/h200-2026-11-29-fast-check); a static cache alone was slower "
                       "too, so the cache stays dynamic")
    if quantizer_compileable is False:
        return True, ("compiled: cache_implementation='static'; the quantizer says is_compileable=False for the whole "
                      "model, but the census finds bitsandbytes layers in the vision tower only, which the decode "
                      "step never runs, so the quantizer is hidden from transformers' compile check during generate")
    return True, "compiled: cache_implementation='static' (transformers' automatic compile of the decode step)"


def quantizer_compileable(model) -> Optional[bool]:
    """None for a model without a quantizer, else its quantizer's `is_compileable`."""
    quantizer = getattr(model, "hf_quantizer", None)
    return None if quantizer is None else bool(quantizer.is_compileable)


def decode_path_int8(model) -> bool:
    """True when the census finds a quantized Linear layer in a component the decode step runs."""
    census = take_census(model)
    return any(entry["quantized"] for name, entry in census.items() if name not in DECODE_UNUSED_COMPONENTS)


@contextmanager
def quantizer_hidden_from_compile_check(model) -> Iterator[None]:
    """`model.hf_quantizer` is None inside, restored after (also on error).

    transformers decides whether to compile the decode step in `_valid_auto_compile_criteria`, which
    refuses any model whose quantizer has is_compileable=False; the quantizer is read nowhere else in
    `generate`. Used only when `decode_path_int8` is False (int8_vit): the compiled graph then holds no
    bitsandbytes layer. Checked against the installed transformers in tests/test_engines.py.
    """
    saved = model.hf_quantizer
    model.hf_quantizer = None
    try:
        yield
    finally:
        model.hf_quantizer = saved


class FastEngine(StockEngine):
    """StockEngine plus what the variant supports; `report` records each choice and its reason."""

    name = "fast"

    def __init__(self, model, processor, cfg, variant, device: str):
        super().__init__(model, processor, cfg, variant, device)
        if device == "cuda":  # before anything compiles: torch's compile caches in vlmbench's cache folder
            use_compile_cache()
        family = family_of_model(model)
        compileable = quantizer_compileable(model)
        self.compiled, why = decode_plan(device, compileable, compileable is False and decode_path_int8(model),
                                         type(model))
        self.hide_quantizer = self.compiled and compileable is False
        if self.compiled:
            self.generation_config.cache_implementation = "static"
        self.preprocess_device = device if device == "cuda" and cfg.inference.device_preprocessing else None
        self.report = {"engine": self.name, "family": family.model_type,
                       "kv_cache": "static" if self.compiled else "dynamic", "decode_compiled": self.compiled,
                       "decode_compiled_reason": why, "quantizer_hidden_from_compile_check": self.hide_quantizer,
                       "pad_last_micro_batch": self.compiled,
                       "preprocess_device": self.preprocess_device or "cpu"}
        self.report.update(vision_report(model, family, cfg, device))

    def padded_size(self, images: int, micro_batch_size: int) -> Optional[int]:
        """`micro_batch_size` when the decode step is compiled and the batch is smaller; else None."""
        if self.compiled and 0 < images < micro_batch_size:
            return micro_batch_size
        return None

    def generate(self, on_device: dict) -> torch.Tensor:
        """As StockEngine.generate; with the quantizer hidden from the compile check where planned."""
        hidden = quantizer_hidden_from_compile_check(self.model) if self.hide_quantizer else nullcontext()
        with hidden:
            return super().generate(on_device)
