"""The `fast` engine: what the variant supports of varlen vision attention, a static KV cache with
a compiled decode step, padded micro-batches and the image processor on the device.

Why it exists: plain `generate` spends most of a micro-batch in the vision tower's per-window
attention loop and in Python between decode steps (docs/PERFORMANCE.md); the fixes are transformers'
own extension points, chosen per variant, with the reason recorded where one is not used:
- vision attention: vlmbench.engines.vision_attention (every variant);
- decoding: `cache_implementation="static"`, which makes transformers compile the decode step on
  CUDA; not for models whose quantizer transformers marks as not compileable (bitsandbytes: a
  static cache without compilation was measured slower, 5.39 vs 6.35 img/s for int8 on an H200, and
  a forced compilation broke into graphs per layer and was slower still);
- padding: with a compiled decode step every new batch size compiles again (52-72 s on an H200), so
  a chunk's last, smaller micro-batch is padded to the full size with copies of its last image, and
  the extra outputs are dropped;
- preprocessing: the processor runs on the device (`device="cuda"`, torchvision backend), on a side
  stream, in the prefetch threads; it took 0.11 s instead of 0.66 s per 32 images on an H200.
"""
from __future__ import annotations

from typing import Optional


from vlmbench.engines import vision_attention
from vlmbench.engines.stock import StockEngine


def decode_plan(device: str, quantizer_compileable: Optional[bool]) -> tuple[bool, str]:
    """(compile the decode step with a static KV cache?, why / why not).

    `quantizer_compileable` is None for an unquantized model, else the quantizer's `is_compileable`.
    """
    if device != "cuda":
        return False, "not compiled: no CUDA device (transformers compiles the decode step on CUDA only)"
    if quantizer_compileable is False:
        return False, ("not compiled: transformers does not compile a model whose quantizer has "
                       "is_compileable=False (bitsandbytes 8-bit); forced, the decode step broke into a graph per "
                       "layer, hit dynamo's recompile limit and was slower (H200, 2026-11-29: 11.2 s vs about 6.7 s "
                       "per micro-batch of 8, docs/perf/h200-2026-11-29-fast-check); a static cache alone was slower "
                       "too, so the cache stays dynamic")
    return True, "compiled: cache_implementation='static' (transformers' automatic compile of the decode step)"


def quantizer_compileable(model) -> Optional[bool]:
    """None for a model without a quantizer, else its quantizer's `is_compileable`."""
    quantizer = getattr(model, "hf_quantizer", None)
    return None if quantizer is None else bool(quantizer.is_compileable)


class FastEngine(StockEngine):
    """StockEngine plus what the variant supports; `report` records each choice and its reason."""

    name = "fast"

    def __init__(self, model, processor, cfg, variant, device: str):
        super().__init__(model, processor, cfg, variant, device)
        kernel = vision_attention.use_for_vision(model)
        self.compiled, why = decode_plan(device, quantizer_compileable(model))
        if self.compiled:
            self.generation_config.cache_implementation = "static"
        self.preprocess_device = device if device == "cuda" and cfg.inference.device_preprocessing else None
        self.report = {"engine": self.name, "vision_attention": f"{vision_attention.VARLEN_ATTENTION}: {kernel}",
                       "kv_cache": "static" if self.compiled else "dynamic", "decode_compiled": self.compiled,
                       "decode_compiled_reason": why, "pad_last_micro_batch": self.compiled,
                       "preprocess_device": self.preprocess_device or "cpu"}

    def padded_size(self, images: int, micro_batch_size: int) -> Optional[int]:
        """`micro_batch_size` when the decode step is compiled and the batch is smaller; else None."""
        if self.compiled and 0 < images < micro_batch_size:
            return micro_batch_size
        return None
