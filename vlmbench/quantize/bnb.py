"""bitsandbytes methods: LLM.int8 (`int8`) and 4-bit NF4/FP4 (`nf4`, `fp4`), as transformers' BitsAndBytesConfig.

Why it exists: the one place that knows how a bitsandbytes variant is configured (which modules
to skip, which options) and how its layers look once loaded (for the census). bitsandbytes itself is
imported by transformers when the config is used, never here at import time.
"""
from __future__ import annotations

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
