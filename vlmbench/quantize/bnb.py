"""bitsandbytes methods: LLM.int8 (`int8`) and 4-bit NF4/FP4 (`nf4`, `fp4`), as transformers' BitsAndBytesConfig.

Why it exists: the one place that knows how a bitsandbytes variant is configured (which modules
to skip, which options) and how its layers look once loaded (for the census). bitsandbytes itself is
imported by transformers when the config is used, never here at import time.
"""
from __future__ import annotations

import sys
from typing import Optional

from torch import nn

LABEL_PREFIX = "bitsandbytes"


def quantization_config(variant, dtype, components):
    """transformers' BitsAndBytesConfig for `variant` (Variant) computing in `dtype` (torch dtype), for a model
    whose components have the module-name prefixes `components` (Family.components).

    The skip list holds full module-name prefixes (see Variant.skip_modules): transformers 5 matches
    a prefix from the start of the name or a suffix, and any list replaces the default one.
    """
    from transformers import BitsAndBytesConfig
    options = variant.option_values()
    if variant.method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=variant.skip_modules(components),
                                  llm_int8_threshold=options["threshold"])
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=variant.method, bnb_4bit_compute_dtype=dtype,
                              bnb_4bit_use_double_quant=options["double_quant"],
                              llm_int8_skip_modules=variant.skip_modules(components))


def layer_kind(module: nn.Module) -> Optional[str]:
    """The census label of a bitsandbytes layer ('bitsandbytes Linear8bitLt (int8)', '... Linear4bit (nf4)'), else None."""
    kind = type(module).__name__
    if kind == "Linear8bitLt":
        return f"{LABEL_PREFIX} Linear8bitLt (int8)"
    if kind == "Linear4bit":
        return f"{LABEL_PREFIX} Linear4bit ({getattr(module.weight, 'quant_type', '?')})"
    return None


def after_load(model, device: str) -> None:
    """Keeps 4-bit layers whose input width is not a multiple of the quantization block off bitsandbytes'
    AVX512-BF16 CPU path, which repacks the weight assuming it is and fails on the first forward
    ("shape '[288, 1]' is invalid for input of size 432", bitsandbytes 0.50.2, functional.py
    _convert_weight_packed_for_cpu). Qwen2.5-VL-3B's vision MLP (width 3420) and the embedded captioner
    (96) have such widths; those layers then take bitsandbytes' generic CPU path. No effect on a GPU.
    """
    if device != "cpu":
        return
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if type(module).__name__ == "Linear4bit" and state is not None and module.in_features % state.blocksize:
            module.support_avx512bf16_for_cpu = False


CPU_4BIT_DEFECT = "bitsandbytes_cpu_4bit_unaligned"  # quality_warning kind
BLOCK = 64  # bitsandbytes' default 4-bit quantization block (values), when a layer's quant_state does not say


def _is_linear4bit(module: nn.Module) -> bool:
    return any(cls.__name__ == "Linear4bit" for cls in type(module).__mro__)


def _blocksize(module: nn.Module) -> int:
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    return getattr(state, "blocksize", None) or BLOCK


def cpu_4bit_quality_warning(model, device: str) -> Optional[dict]:
    """The variant's `quality_warning` (variant_<name>.json, the summary) when its captions cannot be read as its
    method's quality: on a CPU, bitsandbytes' 4-bit kernels (0.50.2) dequantize a weight wrongly when its row width
    (`in_features`) is not a multiple of the quantization block (README "Quantization methods"; the strict xfail
    tests/test_methods.py::test_bitsandbytes_cpu_4bit_is_right_on_unaligned_widths turns red on a fixed release,
    and then this warning is to be dropped with the README's paragraph). Counts such Linear4bit layers of any
    origin (nf4/fp4 variants and prequantized bitsandbytes 4-bit checkpoints); None on a GPU or when there are none.
    """
    if device != "cpu":
        return None
    layers = {name: m for name, m in model.named_modules() if _is_linear4bit(m)}
    unaligned = {name: m for name, m in layers.items() if m.in_features % _blocksize(m)}
    if not unaligned:
        return None
    name, first = next(iter(unaligned.items()))
    version = getattr(sys.modules.get("bitsandbytes"), "__version__", "?")
    kinds = sorted({str(getattr(m.weight, "quant_type", "4-bit")) for m in layers.values()})
    short = (f"bitsandbytes CPU 4-bit defect on {len(unaligned)} of {len(layers)} 4-bit Linear layers: its CIDEr-D "
             f"is not {'/'.join(kinds)}'s quality")
    reason = (f"on a CPU, bitsandbytes {version}'s 4-bit kernels dequantize a weight wrongly when its row width "
              f"(in_features) is not a multiple of the {_blocksize(first)}-value block; {len(unaligned)} of this "
              f"variant's {len(layers)} 4-bit Linear layers have such widths (e.g. {name}: in_features "
              f"{first.in_features}), so its captions and CIDEr-D show that defect, not {'/'.join(kinds)}'s quality; "
              "its latency and throughput too, where the wrong weights make captions longer or shorter. "
              "Measure 4-bit quality on a GPU (README, Quantization methods)")
    return {"kind": CPU_4BIT_DEFECT, "reason": reason, "short": short, "affected_layers": len(unaligned),
            "linear4bit_layers": len(layers), "bitsandbytes": version}
